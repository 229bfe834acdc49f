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
bin=${PROFPIPE_BIN:-${CARGO_TARGET_DIR:-target}/release/profpipe}
capture=$dir/capture.txt
command -v /usr/bin/time >/dev/null || { apt-get install -y -qq time >/dev/null; }
[ -x "$bin" ] || cargo build --release --quiet
if [ ! -s "$capture" ]; then
  bash scripts/bench-fold.sh >/dev/null
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cat > "$out/pipeline.toml" <<TOML
[sources.capture]
type = "file"
paths = ["$capture"]
format = "perf_script"

[transforms.fold]
type = "fold"
inputs = ["capture"]
kernel = true

[sinks.local]
type = "file"
inputs = ["fold"]
path = "$out/profiles"
formats = ["folded", "collapsed", "flamegraph"]
TOML
bytes=$(stat -c %s "$capture")
/usr/bin/time -v "$bin" --log warn run --config "$out/pipeline.toml" 2> "$out/time.txt"
rss_kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$out/time.txt")
wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$out/time.txt")
secs=$(echo "$wall" | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }')
stacks=$(wc -l < "$out/profiles/last_profile.folded")
printf '| capture MB | wall s | MB/s | peak RSS MiB | unique stacks |\n|---|---|---|---|---|\n'
awk -v b="$bytes" -v s="$secs" -v r="$rss_kb" -v n="$stacks" 'BEGIN { printf "| %.1f | %.2f | %.0f | %.1f | %d |\n", b/1e6, s, b/1e6/s, r/1024, n }'
