"""A CPU-bound Python workload with distinctive function names, profiled by
tests/runtime_sources.rs. Runs until killed (or for argv[1] seconds). With
PROFPIPE_READY_FILE set, creates that file once its hot functions have run; with
PROFPIPE_EXIT_FILE set, ends one second after that file appears."""

import os
import sys
import time


def profpipe_py_leaf(n):
    total = 0
    for i in range(n):
        total += i * i
    return total


def profpipe_py_mid():
    return profpipe_py_leaf(20000)


def main():
    limit = float(sys.argv[1]) if len(sys.argv) > 1 else None
    start = time.monotonic()
    ready = os.environ.get("PROFPIPE_READY_FILE")
    exit_file = os.environ.get("PROFPIPE_EXIT_FILE")
    while limit is None or time.monotonic() - start < limit:
        profpipe_py_mid()
        if ready:
            open(ready, "w").close()
            ready = None
        if exit_file and os.path.exists(exit_file):
            limit = time.monotonic() - start + 1.0
            exit_file = None


if __name__ == "__main__":
    main()
