#!/usr/bin/env python3
"""A stand-in for PyPerf, for tests of profpipe's `pyperf` source.

Accepts PyPerf's command line (`--output F`, `-F HZ`; every other argument is
ignored) and behaves like PyPerf's collapsed printer:

- writes one sample line every 50 ms to F:
      <comm>-<pid>/<pid>;<module>_[p];standin_main_[p];PyEval_EvalFrameDefault_[pn] 1
  where <comm> and <pid> are the stand-in's own (so a test can predict them);
- on SIGUSR2 closes F, renames it to F.<YYYYmmddHHMMSS><2 digits> and opens a new F;
- on SIGTERM/SIGINT exits 0, leaving F in place.

Test switches (the environment variable or the extra argument):
- PYPERF_STANDIN_DELETED_ELF=1 / --standin-deleted-elf: after the first rotation,
  print PyPerf's deleted-library error to stderr and exit 1;
- PYPERF_STANDIN_PIDFILE=P / --standin-pidfile P: write "<pid>\t<comm>\n" to P at start;
- PYPERF_STANDIN_NO_ROTATE=1 / --standin-no-rotate: ignore SIGUSR2 (a hung PyPerf).
"""

import os
import signal
import sys
import time


def main():
    args = sys.argv[1:]
    output = None
    pidfile = os.environ.get("PYPERF_STANDIN_PIDFILE")
    deleted_elf = os.environ.get("PYPERF_STANDIN_DELETED_ELF") == "1"
    no_rotate = os.environ.get("PYPERF_STANDIN_NO_ROTATE") == "1"
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--output" and i + 1 < len(args):
            output = args[i + 1]
            i += 1
        elif a == "--standin-pidfile" and i + 1 < len(args):
            pidfile = args[i + 1]
            i += 1
        elif a == "--standin-deleted-elf":
            deleted_elf = True
        elif a == "--standin-no-rotate":
            no_rotate = True
        i += 1
    if output is None:
        print("usage: pyperf_standin.py --output FILE [-F HZ] ...", file=sys.stderr)
        return 2

    pid = os.getpid()
    with open("/proc/self/comm") as f:
        comm = f.read().strip()
    if pidfile:
        with open(pidfile, "w") as f:
            f.write(f"{pid}\t{comm}\n")

    # Handlers first, output file second: like PyPerf, the file existing means the
    # stand-in is ready for SIGUSR2 (whose default action would kill it).
    state = {"out": None, "rotations": 0, "stop": False}

    def rotate(_sig, _frame):
        if no_rotate:
            return
        state["out"].close()
        stamp = time.strftime("%Y%m%d%H%M%S") + "%02d" % (state["rotations"] % 100)
        os.rename(output, f"{output}.{stamp}")
        state["out"] = open(output, "w")
        state["rotations"] += 1
        print(f"{state['rotations']} samples collected", file=sys.stderr, flush=True)

    def stop(_sig, _frame):
        state["stop"] = True

    signal.signal(signal.SIGUSR2, rotate)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    state["out"] = open(output, "w")

    line = f"{comm}-{pid}/{pid};<module>_[p];standin_main_[p];PyEval_EvalFrameDefault_[pn] 1\n"
    while not state["stop"]:
        if deleted_elf and state["rotations"] >= 1:
            print(
                "Failed to iterate over ELF symbols: /tmp/libfoo.so (deleted)",
                file=sys.stderr,
                flush=True,
            )
            return 1
        state["out"].write(line)
        state["out"].flush()
        time.sleep(0.05)
    state["out"].close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
