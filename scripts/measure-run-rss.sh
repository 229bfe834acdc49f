#!/usr/bin/env bash
# Peak RSS and throughput of `profpipe run` folding a 100+ MB `perf script` capture
# through file source -> fold -> file sink (folded + collapsed + flame graph).
#
#   bash scripts/measure-run-rss.sh            # reuses /tmp/profpipe-bench/capture.txt
#
# The capture is recorded by scripts/bench-fold.sh when missing. Prints a Markdown row.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${PROFPIPE_BENCH_DIR:-/tmp/profpipe-bench}
capture=$dir/capture.txt
. scripts/measure-lib.sh
if [ ! -s "$capture" ]; then
  bash scripts/bench-fold.sh >/dev/null
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
{
  file_source_toml capture "$capture" perf_script
  printf '\n[transforms.fold]\ntype = "fold"\ninputs = ["capture"]\nkernel = true\n\n'
  file_sink_toml fold "$out/profiles" '"folded", "collapsed", "flamegraph"'
} > "$out/pipeline.toml"
bytes=$(stat -c %s "$capture")
timed_run "$out/pipeline.toml" "$out"
stacks=$(wc -l < "$out/profiles/last_profile.folded")
printf '| capture MB | wall s | MB/s | peak RSS MiB | unique stacks |\n|---|---|---|---|---|\n'
awk -v b="$bytes" -v s="$secs" -v r="$rss_kb" -v n="$stacks" 'BEGIN { printf "| %.1f | %.2f | %.0f | %.1f | %d |\n", b/1e6, s, b/1e6/s, r/1024, n }'
