"""A Python workload that spends its time in an installed distribution (attrs,
installed by scripts/setup-test-env.sh into $PROFPIPE_TOOLS/python-packages and
found through PYTHONPATH) and in the standard library (json), for the version tags
of tests/runtime_sources.rs. Runs for argv[1] seconds; creates PROFPIPE_READY_FILE
once both have run."""

import json
import os
import sys
import time

import attr


def profpipe_versions_loop(limit):
    data = {"k%d" % i: list(range(30)) for i in range(40)}
    ready = os.environ.get("PROFPIPE_READY_FILE")
    start = time.monotonic()
    while time.monotonic() - start < limit:
        for _ in range(20):
            attr.make_class("C", ["a", "b", "c"])
            json.dumps(data)
        if ready:
            open(ready, "w").close()
            ready = None


if __name__ == "__main__":
    profpipe_versions_loop(float(sys.argv[1]))
