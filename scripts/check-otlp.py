#!/usr/bin/env python3
"""Decodes files of OTLP profiles (the bytes of one ExportProfilesServiceRequest
each, as the `file` sink's `otlp` format and the `otlp_proto` encoding write them)
with an independent decoder: OpenTelemetry's own generated classes, the PyPI
package opentelemetry-proto (installed by scripts/setup-test-env.sh into
$PROFPIPE_TOOLS/otel-proto).

Prints, per file, its stacks as folded lines, root first, summed over every
resource and profile of the request:

    bash;main;read_[k] 3

With --json, one JSON line per file instead:
    {"file":..., "total":N, "samples":N, "stacks":{"root;...;leaf":N},
     "resources":[{"host.name":..., ...}], "frame_types":{"frame":"kernel", ...},
     "thread_names":{"root;...;leaf":"comm"}, "sample_type":"samples/count",
     "period_type":"cpu/nanoseconds", "period":N, "time_unix_nano":N,
     "duration_nano":N, "profile_attributes":{...}}

It also checks what the proto requires of a dictionary: every table starts with
its zero value, every index is in range, each sample has one value per sample
type. A file that fails a check is reported on stderr and makes the exit status 1.

Usage: scripts/check-otlp.py [--json] FILE...
Environment: PROFPIPE_TOOLS  tools dir [~/.cache/profpipe-tools]
Exit status: 0 all good, 1 a file is not a valid request, 2 the decoder missing.
"""
import json
import os
import sys

tools = os.environ.get("PROFPIPE_TOOLS") or os.path.expanduser("~/.cache/profpipe-tools")
sys.path.insert(0, os.path.join(tools, "otel-proto"))
try:
    from opentelemetry.proto.collector.profiles.v1development import profiles_service_pb2
except ImportError as e:
    print(f"check-otlp: opentelemetry-proto not found in {tools}/otel-proto ({e}); "
          "run: bash scripts/setup-test-env.sh", file=sys.stderr)
    sys.exit(2)


class Invalid(Exception):
    pass


def at(table, i, what):
    if not 0 <= i < len(table):
        raise Invalid(f"{what} index {i} out of range (table of {len(table)})")
    return table[i]


def any_value(v):
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    return getattr(v, kind)


def check_file(path):
    req = profiles_service_pb2.ExportProfilesServiceRequest()
    with open(path, "rb") as f:
        req.ParseFromString(f.read())
    d = req.dictionary
    strings = list(d.string_table)
    if not strings or strings[0] != "":
        raise Invalid('string_table[0] is not ""')
    for name in ("mapping_table", "location_table", "function_table", "link_table",
                 "attribute_table", "stack_table"):
        table = getattr(d, name)
        if len(table) == 0:
            raise Invalid(f"{name} has no zero value at index 0")
        first = table[0]
        if name == "link_table":
            if any(first.trace_id) or any(first.span_id):
                raise Invalid("link_table[0] is not zero")
        elif first.ByteSize() != 0:
            raise Invalid(f"{name}[0] is not the zero value")

    def s(i):
        return at(strings, i, "string")

    def attr(i):
        a = at(d.attribute_table, i, "attribute")
        return s(a.key_strindex), any_value(a.value)

    def frame(loc_i):
        loc = at(d.location_table, loc_i, "location")
        if len(loc.lines) != 1:
            raise Invalid(f"location {loc_i} has {len(loc.lines)} lines")
        fn = at(d.function_table, loc.lines[0].function_index, "function")
        name = s(fn.name_strindex)
        for ai in loc.attribute_indices:
            k, v = attr(ai)
            if k == "profile.frame.type":
                frame_types[name] = v
        return name

    stacks, thread_names, frame_types, resources = {}, {}, {}, []
    total = samples = 0
    summary = {}
    for rp in req.resource_profiles:
        resources.append({kv.key: any_value(kv.value) for kv in rp.resource.attributes})
        for sp in rp.scope_profiles:
            for p in sp.profiles:
                summary["sample_type"] = f"{s(p.sample_type.type_strindex)}/{s(p.sample_type.unit_strindex)}"
                summary["period_type"] = f"{s(p.period_type.type_strindex)}/{s(p.period_type.unit_strindex)}"
                summary["period"] = p.period
                summary["time_unix_nano"] = p.time_unix_nano
                summary["duration_nano"] = p.duration_nano
                summary["profile_attributes"] = dict(attr(i) for i in p.attribute_indices)
                for sample in p.samples:
                    if len(sample.values) != 1:
                        raise Invalid(f"a sample has {len(sample.values)} values for one sample type")
                    st = at(d.stack_table, sample.stack_index, "stack")
                    # Locations are leaf first; folded stacks root first.
                    key = ";".join(frame(i) for i in reversed(st.location_indices))
                    stacks[key] = stacks.get(key, 0) + sample.values[0]
                    for ai in sample.attribute_indices:
                        k, v = attr(ai)
                        if k == "thread.name":
                            thread_names[key] = v
                    total += sample.values[0]
                    samples += 1
    out = {"file": path, "total": total, "samples": samples, "stacks": stacks,
           "resources": resources, "frame_types": frame_types,
           "thread_names": thread_names}
    out.update(summary)
    return out


def main(argv):
    as_json = "--json" in argv
    files = [a for a in argv if a != "--json"]
    if not files:
        print("usage: scripts/check-otlp.py [--json] FILE...", file=sys.stderr)
        return 2
    status = 0
    for path in files:
        try:
            out = check_file(path)
        except Exception as e:  # Invalid, OSError, protobuf DecodeError
            print(f"check-otlp: {path}: {e}", file=sys.stderr)
            status = 1
            continue
        if as_json:
            print(json.dumps(out, sort_keys=True))
        else:
            for stack in sorted(out["stacks"]):
                print(f"{stack} {out['stacks'][stack]}")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
