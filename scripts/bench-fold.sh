#!/usr/bin/env bash
# Throughput of `profpipe fold` against `inferno-collapse-perf` on a large real capture.
#
# Usage: scripts/bench-fold.sh            (run from the repository root, as root)
#
# Environment:
#   PROFPIPE_BENCH_DIR   where the capture is made or reused   [/tmp/profpipe-bench]
#   PROFPIPE             profpipe binary    [${CARGO_TARGET_DIR:-target}/release/profpipe]
#   INFERNO              inferno-collapse-perf binary [~/.cache/profpipe-tools/bin/inferno-collapse-perf]
#   BENCH_MIN_MB         smallest capture to accept, in MB       [100]
#   BENCH_RUNS           timed runs per command (median is reported) [5]
#
# The capture (capture.txt, `perf script -F +pid --no-inline` text) is recorded on this
# machine with `perf record -e cpu-clock -F 1999 -a -g` while a CPU workload (a C
# program with deep call chains, compiled with frame pointers) and some shell
# pipelines run; recordings are appended until the text is at least BENCH_MIN_MB.
# It is reused on later runs. Prints a Markdown table with MB/s and ratios, and the
# peak RSS of `profpipe fold` (from /usr/bin/time -v).
set -euo pipefail

dir=${PROFPIPE_BENCH_DIR:-/tmp/profpipe-bench}
profpipe=${PROFPIPE:-${CARGO_TARGET_DIR:-target}/release/profpipe}
inferno=${INFERNO:-$HOME/.cache/profpipe-tools/bin/inferno-collapse-perf}
min_mb=${BENCH_MIN_MB:-100}
runs=${BENCH_RUNS:-5}
nproc=$(nproc)

for bin in "$profpipe" "$inferno"; do
  [ -x "$bin" ] || { echo "bench-fold: $bin not found or not executable" >&2; exit 2; }
done
command -v perf >/dev/null || { echo "bench-fold: perf is not installed" >&2; exit 2; }
mkdir -p "$dir"
capture=$dir/capture.txt

# --- the workload ------------------------------------------------------------------
build_workload() {
  cat > "$dir/work.c" <<'EOF'
/* A CPU workload with varied, deep call chains (for realistic perf stacks). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
static volatile unsigned long sink;
__attribute__((noinline)) static unsigned long hash_bytes(const char *s, size_t n) {
  unsigned long h = 1469598103934665603UL;
  for (size_t i = 0; i < n; i++) { h ^= (unsigned char)s[i]; h *= 1099511628211UL; }
  return h;
}
__attribute__((noinline)) static unsigned long walk_even(int d, char *b, size_t n);
__attribute__((noinline)) static unsigned long walk_odd(int d, char *b, size_t n) {
  if (d <= 0) return hash_bytes(b, n);
  unsigned long r = walk_even(d - 1, b, n); b[d % n] ^= (char)r; return r + 1;
}
__attribute__((noinline)) static unsigned long walk_even(int d, char *b, size_t n) {
  if (d <= 0) return hash_bytes(b, n / 2);
  unsigned long r = walk_odd(d - 1, b, n); b[(d * 7) % n] ^= (char)r; return r + 3;
}
__attribute__((noinline)) static void insertion_sort(int *a, int n) {
  for (int i = 1; i < n; i++) { int v = a[i], j = i - 1; while (j >= 0 && a[j] > v) { a[j + 1] = a[j]; j--; } a[j + 1] = v; }
}
__attribute__((noinline)) static int cmp_int(const void *x, const void *y) { return *(const int *)x - *(const int *)y; }
__attribute__((noinline)) static void sort_task(int depth) {
  int a[1500];
  if (depth > 0) { sort_task(depth - 1); return; }
  for (int i = 0; i < 1500; i++) a[i] = rand();
  if (rand() & 1) insertion_sort(a, 1500); else qsort(a, 1500, sizeof a[0], cmp_int);
  sink += a[0];
}
__attribute__((noinline)) static void alloc_task(void) {
  for (int i = 0; i < 500; i++) { char *p = malloc(64 + i * 13); memset(p, i, 64 + i * 13); sink += p[i]; free(p); }
}
__attribute__((noinline)) static void format_task(void) {
  char buf[256];
  for (int i = 0; i < 200; i++) { snprintf(buf, sizeof buf, "%d %f %s", i, i * 0.5, "x"); sink += strlen(buf); }
}
int main(int argc, char **argv) {
  double secs = argc > 1 ? atof(argv[1]) : 2.0;
  char buf[4096]; memset(buf, 'x', sizeof buf);
  time_t end = time(NULL) + (time_t)secs;
  unsigned long it = 0;
  while (time(NULL) < end) {
    sink += walk_odd((int)(it % 48), buf, 512 + it % 3000);
    if (it % 5 == 0) sort_task((int)(it % 25));
    if (it % 3 == 0) alloc_task();
    if (it % 4 == 0) format_task();
    it++;
  }
  printf("%lu\n", sink);
  return 0;
}
EOF
  cc -O2 -g -fno-omit-frame-pointer -o "$dir/work" "$dir/work.c"
}

record_once() { # seconds output.txt
  local secs=$1 out=$2 pids=()
  "$dir/work" "$secs" >/dev/null & pids+=($!)
  "$dir/work" "$secs" >/dev/null & pids+=($!)
  ( end=$((SECONDS + secs)); while [ $SECONDS -lt "$end" ]; do
      head -c 8000000 /dev/urandom | gzip -1 | sort -S 8M | sha256sum >/dev/null
      find /usr/lib -maxdepth 3 -name '*.so*' -type f 2>/dev/null | head -400 | xargs -r cat 2>/dev/null | md5sum >/dev/null
    done ) & pids+=($!)
  perf record -q -e cpu-clock -F 1999 -a -g -o "$dir/rec.data" -- sleep "$secs" 2>/dev/null
  wait "${pids[@]}" 2>/dev/null || true
  perf script -i "$dir/rec.data" -F +pid --no-inline 2>/dev/null >> "$out"
  rm -f "$dir/rec.data" "$dir/rec.data.old"
}

size_mb() { echo $(( $(stat -c %s "$1") / 1000000 )); }

if [ ! -s "$capture" ] || [ "$(size_mb "$capture")" -lt "$min_mb" ]; then
  echo "bench-fold: recording a capture of at least $min_mb MB in $dir ..." >&2
  build_workload
  rm -f "$capture.tmp"; touch "$capture.tmp"
  while [ "$(size_mb "$capture.tmp")" -lt "$min_mb" ]; do
    record_once 30 "$capture.tmp"
    echo "bench-fold:   $(size_mb "$capture.tmp") MB so far" >&2
  done
  mv "$capture.tmp" "$capture"
fi
bytes=$(stat -c %s "$capture")
mb=$(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1e6 }')

# --- timing ----------------------------------------------------------------------
# measure CMD... : runs CMD $runs times (after one warm-up), output to /dev/null;
# prints the median wall-clock seconds and the median CPU seconds (user + sys). CPU
# time is the fairer figure when other processes compete for the cores.
measure() {
  "$@" > /dev/null 2>&1
  local walls=() cpus=() t
  for _ in $(seq "$runs"); do
    /usr/bin/time -f '%e %U %S' -o "$dir/time.out" "$@" > /dev/null 2>&1
    read -r t u s < "$dir/time.out"
    walls+=("$t"); cpus+=("$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.2f", u + s }')")
  done
  local wall cpu
  wall=$(printf '%s\n' "${walls[@]}" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
  cpu=$(printf '%s\n' "${cpus[@]}" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
  echo "$wall $cpu"
}

# Same output first: a benchmark of different work means nothing.
if ! cmp -s <("$profpipe" fold "$capture" 2>/dev/null) <("$inferno" "$capture" 2>/dev/null); then
  echo "bench-fold: profpipe and inferno outputs differ on $capture" >&2
  exit 1
fi

load=$(cut -d' ' -f1-3 /proc/loadavg)
declare -A secs cpu
read -r secs[p1] cpu[p1] < <(measure "$profpipe" fold -n 1 "$capture")
read -r secs[pn] cpu[pn] < <(measure "$profpipe" fold -n "$nproc" "$capture")
read -r secs[i1] cpu[i1] < <(measure "$inferno" -n 1 "$capture")
read -r secs[in] cpu[in] < <(measure "$inferno" "$capture")

rss_kb=$( { /usr/bin/time -v "$profpipe" fold "$capture" > /dev/null; } 2>&1 | awk -F: '/Maximum resident/ { gsub(/ /, "", $2); print $2 }')

rate() { awk -v b="$bytes" -v s="$1" 'BEGIN { printf "%.0f", b / 1e6 / s }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b / a }'; }

echo
echo "Capture: $capture, $mb MB ($(grep -c '^$' "$capture") records), $nproc CPUs, median of $runs runs, load average before: $load"
echo
echo "| command | threads | wall s | MB/s | vs inferno -n 1 | CPU s | MB per CPU-s |"
echo "|---|---:|---:|---:|---:|---:|---:|"
row() { # label threads key
  echo "| $1 | $2 | ${secs[$3]} | $(rate "${secs[$3]}") | $(ratio "${secs[$3]}" "${secs[i1]}")× | ${cpu[$3]} | $(rate "${cpu[$3]}") |"
}
row "profpipe fold -n 1" 1 p1
row "profpipe fold" "$nproc" pn
row "inferno-collapse-perf -n 1" 1 i1
row "inferno-collapse-perf" "$nproc" in
echo
echo "profpipe fold (all threads) vs inferno default threads: $(ratio "${secs[pn]}" "${secs[in]}")×"
echo "Peak RSS of profpipe fold (all threads): $((rss_kb / 1024)) MiB"
