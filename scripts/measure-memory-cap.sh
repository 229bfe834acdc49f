#!/usr/bin/env bash
# Peak RSS and wall time of `profpipe run` under a small `[agent] memory_limit` with
# 1.5 million distinct stacks: one collapsed file (`proc;f<i>;g<i> 1`, one window)
# through file source -> file sink (collapsed + folded). What does not fit the
# limit goes to the window's `[overflow]` stack; the script checks that the folded
# file's total is still the number of input samples.
#
#   bash scripts/measure-memory-cap.sh      # STACKS=1500000 LIMIT=16MiB by default
#
# Prints a Markdown row. Uses the release binary (builds it when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
stacks=${STACKS:-1500000}
limit=${LIMIT:-16MiB}
. scripts/measure-lib.sh
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
awk -v n="$stacks" 'BEGIN { for (i = 0; i < n; i++) printf "proc;f%d;g%d 1\n", i, i }' > "$out/stacks.col"
{
  printf '[agent]\nmemory_limit = "%s"\nstate_dir = "%s"\n\n' "$limit" "$out/state"
  file_source_toml files "$out/stacks.col" collapsed
  echo
  file_sink_toml files "$out/profiles" '"collapsed", "folded"'
} > "$out/pipeline.toml"
bytes=$(stat -c %s "$out/stacks.col")
timed_run "$out/pipeline.toml" "$out"
folded=$(ls "$out"/profiles/profile_*.folded)
read -r total lines overflow < <(awk '{ s += $NF; if ($0 ~ /\[overflow\]/) o += $NF } END { print s, NR, o + 0 }' $folded)
if [ "$total" != "$stacks" ]; then
  echo "measure-memory-cap: folded total $total != $stacks input samples" >&2
  exit 1
fi
printf '| input stacks | input MB | memory_limit | wall s | peak RSS MiB | stacks written | samples in [overflow] |\n|---|---|---|---|---|---|---|\n'
awk -v n="$stacks" -v b="$bytes" -v l="$limit" -v s="$secs" -v r="$rss_kb" -v w="$lines" -v o="$overflow" \
  'BEGIN { printf "| %d | %.1f | %s | %.2f | %.1f | %d | %d |\n", n, b/1e6, l, s, r/1024, w, o }'
