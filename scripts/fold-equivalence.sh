#!/usr/bin/env bash
# Equivalence of `profpipe fold` with `inferno-collapse-perf` on a fresh capture of
# this machine.
#
# Records `perf record -e cpu-clock -F 999 -a -g` for a few seconds while a small C
# program (frame pointers, deep call chains) and some shell pipelines run, converts
# it with `perf script -F +pid --no-inline`, then folds it with both tools for every
# flag set (none, --pid, --tid, --kernel, --jit, --all, --addrs), profpipe with 1 and
# with all threads, and compares the outputs line for line.
#
# Usage: scripts/fold-equivalence.sh     (as root; takes well under a minute)
#
# Environment:
#   PROFPIPE       profpipe binary   [${CARGO_TARGET_DIR:-target}/release/profpipe]
#   INFERNO        inferno-collapse-perf binary [~/.cache/profpipe-tools/bin/inferno-collapse-perf]
#   EQUIV_SECONDS  recording length in seconds [3]
#   EQUIV_KEEP     if set, keep the work directory (capture and outputs) for inspection
#
# Exit status: 0 when every output is identical, 1 on any difference, 2 when a tool
# is missing or the recording fails.
set -euo pipefail

profpipe=${PROFPIPE:-${CARGO_TARGET_DIR:-target}/release/profpipe}
inferno=${INFERNO:-$HOME/.cache/profpipe-tools/bin/inferno-collapse-perf}
secs=${EQUIV_SECONDS:-3}

die() { echo "fold-equivalence: $*" >&2; exit 2; }
[ -x "$profpipe" ] || die "$profpipe not found (build with: cargo build --release)"
[ -x "$inferno" ] || die "$inferno not found (install with: bash scripts/setup-test-env.sh, or cargo install --root ~/.cache/profpipe-tools inferno --version 0.12.8)"
command -v perf >/dev/null || die "perf is not installed (Debian: linux-perf)"

work=$(mktemp -d /tmp/fold-equivalence.XXXXXX)
if [ -z "${EQUIV_KEEP:-}" ]; then trap 'rm -rf "$work"' EXIT; else echo "work directory: $work"; fi

# --- workload: a C program with varied call chains, plus shell pipelines ------------
workload_pids=()
if command -v cc >/dev/null; then
  cat > "$work/work.c" <<'EOF'
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
__attribute__((noinline)) static unsigned long descend(int d, char *b, size_t n) {
  if (d <= 0) return hash_bytes(b, n);
  unsigned long r = descend(d - 1, b, n); b[d % n] ^= (char)r; return r + 1;
}
__attribute__((noinline)) static void quick_sort(int *a, int lo, int hi) {
  while (lo < hi) {
    int p = a[(lo + hi) / 2], i = lo, j = hi;
    while (i <= j) { while (a[i] < p) i++; while (a[j] > p) j--; if (i <= j) { int t = a[i]; a[i++] = a[j]; a[j--] = t; } }
    if (j - lo < hi - i) { quick_sort(a, lo, j); lo = i; } else { quick_sort(a, i, hi); hi = j; }
  }
}
__attribute__((noinline)) static void sort_task(void) {
  int a[3000]; for (int i = 0; i < 3000; i++) a[i] = rand();
  quick_sort(a, 0, 2999); sink += a[0];
}
__attribute__((noinline)) static void alloc_task(void) {
  for (int i = 0; i < 300; i++) { char *p = malloc(64 + i * 11); memset(p, i, 64 + i * 11); sink += p[i]; free(p); }
}
int main(int argc, char **argv) {
  double secs = argc > 1 ? atof(argv[1]) : 2.0;
  char buf[4096]; memset(buf, 'x', sizeof buf);
  time_t end = time(NULL) + (time_t)secs + 1;
  for (unsigned long it = 0; time(NULL) < end; it++) {
    sink += descend((int)(it % 30), buf, 256 + it % 3000);
    if (it % 4 == 0) sort_task();
    if (it % 3 == 0) alloc_task();
  }
  printf("%lu\n", sink);
  return 0;
}
EOF
  cc -O2 -g -fno-omit-frame-pointer -o "$work/work" "$work/work.c"
  "$work/work" "$secs" > /dev/null & workload_pids+=($!)
fi
( end=$((SECONDS + secs)); while [ $SECONDS -lt "$end" ]; do
    head -c 4000000 /dev/urandom | gzip -1 | sort -S 4M | sha256sum > /dev/null
    find /usr/lib -maxdepth 2 -type f 2>/dev/null | head -200 | xargs -r cat 2>/dev/null | md5sum > /dev/null
  done ) & workload_pids+=($!)

if ! perf record -q -e cpu-clock -F 999 -a -g -o "$work/perf.data" -- sleep "$secs" 2> "$work/record.err"; then
  cat "$work/record.err" >&2
  die "perf record failed (run as root, or lower kernel.perf_event_paranoid)"
fi
wait "${workload_pids[@]}" 2>/dev/null || true
perf script -i "$work/perf.data" -F +pid --no-inline > "$work/capture.txt" 2> /dev/null
records=$(grep -c '^$' "$work/capture.txt" || true)
[ "$records" -gt 0 ] || die "the capture has no samples"
echo "capture: $(du -h "$work/capture.txt" | cut -f1), $records records"

# --- compare ------------------------------------------------------------------------
failed=0
for flag in "" --pid --tid --kernel --jit --all --addrs; do
  name=${flag:---default}; name=${name#--}
  "$inferno" $flag "$work/capture.txt" > "$work/inferno-$name.txt" 2> /dev/null
  for threads in 1 "$(nproc)"; do
    out=$work/profpipe-$name-n$threads.txt
    "$profpipe" fold $flag -n "$threads" "$work/capture.txt" > "$out" 2> "$out.err"
    if cmp -s "$work/inferno-$name.txt" "$out"; then
      echo "ok    ${flag:-(no flag)} -n $threads: $(wc -l < "$out") stacks identical"
    else
      failed=1
      echo "DIFF  ${flag:-(no flag)} -n $threads (< inferno, > profpipe):"
      diff "$work/inferno-$name.txt" "$out" | head -20 || true
    fi
  done
done

if [ "$failed" -ne 0 ]; then
  echo "fold-equivalence: FAILED (set EQUIV_KEEP=1 to keep the capture)" >&2
  exit 1
fi
echo "fold-equivalence: all outputs identical"
