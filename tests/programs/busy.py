"""A CPU-bound Python workload with distinctive function names, profiled by
tests/runtime_sources.rs. Runs until killed (or for argv[1] seconds)."""

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
    while limit is None or time.monotonic() - start < limit:
        profpipe_py_mid()


if __name__ == "__main__":
    main()
