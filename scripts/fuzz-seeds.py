#!/usr/bin/env python3
"""Fills the fuzz corpora (fuzz/corpus/<target>/, not committed) with real inputs.

    scripts/fuzz-seeds.py CORPUS_DIR [CONFORMANCE_DIR]

Sources: the committed hand-made seeds (fuzz/seeds/<target>/), the project's test
captures (tests/data: real perf, py-spy and PyPerf output, configs), the example
pipelines, and, when present, the public conformance captures
(../shared/conformance: FlameGraph's and inferno's perf captures, a gProfiler
collapsed file), which are read where they are, never copied into the repo.
Disk buffer segments and payloads are written here in the buffer's own format
(src/buffer/disk/{record,codec,ledger}.rs). Large captures are cut into pieces of
whole records (at most MAX_SEED bytes), since libFuzzer mutates small inputs best.
Every seed is prefixed with the target's own header bytes (see each target's doc).
"""
import gzip
import hashlib
import json
import os
import struct
import sys

MAX_SEED = 8192
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def put(corpus, target, data):
    d = os.path.join(corpus, target)
    os.makedirs(d, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def files_under(path, suffixes):
    if not os.path.isdir(path):
        return []
    out = []
    for base, _, names in os.walk(path):
        for n in sorted(names):
            if n.endswith(suffixes):
                out.append(os.path.join(base, n))
    return sorted(out)


def read(path):
    data = open(path, "rb").read()
    return gzip.decompress(data) if path.endswith(".gz") else data


def pieces(data, sep, limit=MAX_SEED, most=12):
    """Cuts `data` at `sep` into pieces of at most `limit` bytes (a few per file)."""
    out, cur = [], b""
    for part in data.split(sep):
        part += sep
        if cur and len(cur) + len(part) > limit:
            out.append(cur)
            cur = b""
            if len(out) >= most:
                break
        cur += part[:limit]
    if cur and len(out) < most:
        out.append(cur)
    return out


# --- the disk buffer's format ------------------------------------------------------

def _crc32c_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t


CRC_TABLE = _crc32c_table()


def crc32c(b):
    c = 0xFFFFFFFF
    for x in b:
        c = CRC_TABLE[(c ^ x) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283


def varint(v):
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def string(s):
    b = s.encode() if isinstance(s, str) else s
    return varint(len(b)) + b


def labels(host, source, profiler, extra=()):
    out = string(host) + string(source) + string(profiler) + varint(len(extra))
    for k, v in extra:
        out += string(k) + string(v)
    return out


def profile_payload(start, end, stacks, extra=()):
    out = bytes([1, 2]) + varint(start) + varint(end)
    out += labels("web-1", "perf", "perf", extra) + varint(len(stacks))
    for pid, container, frames, count in stacks:
        out += varint(pid)
        out += (b"\x01" + string(container)) if container else b"\x00"
        out += string(frames) + varint(count)
    return out


def watermark_payload(source, until):
    return bytes([1, 3]) + string(source) + varint(until)


def perf_script_payload(start, end, text):
    return bytes([1, 1]) + varint(start) + varint(end) + labels("h", "perf", "perf") + string(text)


def diagnostic_payload():
    return (bytes([1, 4]) + varint(0) + varint(60000) + labels("h", "py", "py_spy")
            + varint(42) + b"\x01" + string("python3") + b"\x00" + varint(1)
            + string("Error: no such process") + b"\x01" + b"\x01" + string("process_exited"))


def record(seq, payload, written_ms=1_701_621_000_000):
    head = struct.pack("<IQQI", len(payload), seq, written_ms, crc32c(payload))
    return head + struct.pack("<I", crc32c(head)) + payload


SEG_MAGIC = b"PPDBSEG\x01"


def segment(first, payloads):
    return SEG_MAGIC + b"".join(record(first + i, p) for i, p in enumerate(payloads))


def ledger(acked_through, next_seq, entries=()):
    head = b"PPDBLED\x01" + struct.pack("<QQ", acked_through, next_seq)
    out = head + struct.pack("<I", crc32c(head)) + b"\0" * 4
    for s in entries:
        e = struct.pack("<Q", s)
        out += e + struct.pack("<I", crc32c(e))
    return out


def disk_file(kind_first, data):
    if kind_first is None:
        return b"\x00" + struct.pack("<H", len(data)) + data
    return b"\x01" + struct.pack("<Q", kind_first) + struct.pack("<H", len(data)) + data


def main():
    corpus = sys.argv[1]
    conformance = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "..", "shared", "conformance")
    data = os.path.join(ROOT, "tests", "data")

    # Hand-made seeds, committed.
    seeds = os.path.join(ROOT, "fuzz", "seeds")
    for target in sorted(os.listdir(seeds)) if os.path.isdir(seeds) else []:
        for path in files_under(os.path.join(seeds, target), ("",)):
            put(corpus, target, read(path))

    # perf script: real captures, whole records, with every option byte in turn.
    captures = files_under(os.path.join(data, "perf"), (".txt",))
    captures = [c for c in captures if "/results/" not in c]
    for sub in ("flamegraph", "inferno"):
        captures += [c for c in files_under(os.path.join(conformance, "collapse-perf", sub), (".txt", ".txt.gz"))
                     if "/results/" not in c]
    n = 0
    for path in captures:
        for piece in pieces(read(path), b"\n\n"):
            put(corpus, "perf_script", bytes([n % 256, (n * 37) % 256]) + piece)
            n += 1

    # Line formats: folded results, gProfiler collapsed, py-spy raw, PyPerf.
    line_inputs = [(0, p) for p in files_under(os.path.join(data, "perf", "results"), (".txt",))[:6]]
    line_inputs += [(0, p) for p in files_under(os.path.join(conformance, "collapse-perf", "inferno", "results"), (".txt",))[:6]]
    line_inputs += [(1, p) for p in files_under(os.path.join(conformance, "gprofiler-format"), ("",))]
    line_inputs += [(1, p) for p in files_under(os.path.join(data, "pyperf"), (".col",))]
    line_inputs += [(2, p) for p in files_under(os.path.join(data, "py-spy"), (".raw",))]
    line_inputs += [(3, p) for p in files_under(os.path.join(data, "pyperf"), (".col",))]
    for fmt, path in line_inputs:
        for i, piece in enumerate(pieces(read(path), b"\n", most=3)):
            put(corpus, "line_formats", bytes([fmt | (i % 2) << 3 | (i % 4) << 4]) + piece)

    # Push gateway: Pyroscope pushes of real folded text, gProfiler uploads of the
    # real collapsed file (gzipped JSON, as the agent sends them).
    folded = [pieces(read(p), b"\n", 2048, 1)[0] for p in files_under(os.path.join(data, "perf", "results"), (".txt",))[:3]]
    for i, body in enumerate(folded):
        q = [b"name=checkout.cpu%7Benv%3Dprod%2Chostname%3Dweb-1%7D&from=1701621000&until=1701621010&spyName=pyspy",
             b"name=app&format=lines&from=1701621000000&until=1701621010000",
             b"name=svc.alloc_space{k=v}&from=1701621000000000000&until=1701621010000000000&format=folded"][i % 3]
        put(corpus, "http_push", b"\x00\n" + q + b"\ntext/plain\n\n\n" + body)
    stackfiles = files_under(os.path.join(conformance, "gprofiler-format"), ("",))
    profiles = [pieces(read(p), b"\n", 4096, 1)[0].decode("utf-8", "replace") for p in stackfiles]
    profiles.append('# {"metadata": {"hostname": "h"}}\n0;web;app;main;run 7\n1;;app;main 2\n')
    for i, prof in enumerate(profiles):
        for start, end in [("2023-12-03T16:30:00.000000", "2023-12-03T16:31:00.000000"),
                           ("2023-12-03T18:30:00+02:00", "2023-12-03T18:31:00+0200"),
                           ("2023-12-03T16:30:00Z", None)]:
            body = {"start_time": start, "hostname": "web-1", "profile": prof, "gpid": "" if i else 12,
                    "cpu_avg": 1.5, "mem_avg": 20, "spawn_time": "2023-12-03T16:00:00"}
            if end:
                body["end_time"] = end
            raw = json.dumps(body).encode()
            put(corpus, "http_push", b"\x02\nkey=k&service=checkout&hostname=web-1\napplication/json\ncheckout\ngzip\n" + gzip.compress(raw))
            put(corpus, "http_push", b"\x03\nservice=q\napplication/json\n\n\n" + raw)

    # Configs: every test config and example pipeline.
    for path in files_under(os.path.join(data, "config"), (".toml",)) + files_under(os.path.join(ROOT, "pipelines"), (".toml",)) \
            + [os.path.join(data, "miswired.toml")]:
        if os.path.exists(path):
            put(corpus, "config_toml", read(path))

    # Disk buffer payloads and directories, in its own format.
    payloads = [
        profile_payload(1_701_621_000_000, 1_701_621_060_000,
                        [(42, None, "python;main;run", 7), (43, "web", "app;handle", 2)], [("service", "checkout")]),
        profile_payload(0, 60_000, [(0, None, "a;b;c", 1)]),
        watermark_payload("perf", 1_701_621_060_000),
        perf_script_payload(0, 60_000, b"perf 1/1 [000] 1.0: 1 cpu-clock:\n\tffff f+0x1 (k)\n\n"),
        diagnostic_payload(),
    ]
    for p in payloads:
        put(corpus, "disk_codec", p)
    dirs = [
        [disk_file(0, segment(0, payloads))],
        [disk_file(0, segment(0, payloads[:3])), disk_file(None, ledger(1, 3, [2]))],
        [disk_file(0, segment(0, payloads[:2])), disk_file(2, segment(2, payloads[2:])), disk_file(None, ledger(0, 5))],
        [disk_file(10, segment(10, payloads[:2])[:-5])],  # a torn last record
        [disk_file(0, segment(0, payloads)[:40] + b"\xff" * 8 + segment(0, payloads)[48:])],  # a damaged header
        [disk_file(None, ledger(7, 9, [8]))],
    ]
    for files in dirs:
        put(corpus, "disk_buffer", b"".join(files) + b"one\xfftwo\xffthree")


if __name__ == "__main__":
    main()
