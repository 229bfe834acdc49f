#!/usr/bin/env bash
# Bytes per profile and encode throughput of the shared encodings (json, collapsed,
# pprof, otlp_proto; none and gzip) for one realistic window, through `benches/encode.rs`
# (criterion; `Encoder::parts` as the sinks call it).
#
# The window: by default a fresh 10 s system-wide capture of this machine,
# `perf record -e cpu-clock -F 99 -a -g -- sleep 10` then `perf script -F +pid
# --no-inline` (as root), folded as the default pipeline folds (kernel frames
# marked, samples counted), kept and reused by later runs. MEASURE_RECORD=0 (or no perf / not root) uses the bundled
# pipelines/captures/host-sample.perf.txt instead.
#
# Usage: scripts/measure-encodings.sh         (from the repository root)
# Environment:
#   MEASURE_RECORD    1 = record a capture (default), 0 = bundled capture
#   MEASURE_SECONDS   recording length [10]
#   MEASURE_DIR       where the capture is kept and reused [/tmp/profpipe-encodings]
#   MEASURE_QUICK     1 = criterion --quick (a rough figure in seconds, not minutes)
#   MEASURE_SIZES     1 = the size table only, from a debug build of the bench run
#                     once as a test (sizes do not depend on the build; no release
#                     build, no timing)
# Prints the size table (Markdown) and criterion's time and throughput lines (not
# its comparison with the previous run).
set -euo pipefail

record=${MEASURE_RECORD:-1}
secs=${MEASURE_SECONDS:-10}
work=${MEASURE_DIR:-/tmp/profpipe-encodings}
mkdir -p "$work"

capture=""
if [ "$record" = 1 ] && [ -s "$work/capture.perf.txt" ]; then
  echo "measure-encodings: reusing $work/capture.perf.txt (delete it to record anew)" >&2
  capture="$work/capture.perf.txt"
elif [ "$record" = 1 ] && command -v perf >/dev/null && [ "$(id -u)" -eq 0 ]; then
  echo "measure-encodings: recording ${secs}s with perf record -e cpu-clock -F 99 -a -g" >&2
  perf record -q -e cpu-clock -F 99 -a -g -o "$work/perf.data" -- sleep "$secs" 2>/dev/null
  perf script -F +pid --no-inline -i "$work/perf.data" >"$work/capture.perf.txt" 2>/dev/null
  rm -f "$work/perf.data"
  capture="$work/capture.perf.txt"
else
  echo "measure-encodings: using the bundled capture (MEASURE_RECORD=0, or no perf/root)" >&2
fi

if [ "${MEASURE_SIZES:-0}" = 1 ]; then
  PROFPIPE_BENCH_CAPTURE=${capture:-} cargo test --quiet --bench encode 2>/dev/null \
    | grep -E '^(encode:|\|)' \
    || { echo "measure-encodings: bench failed" >&2; exit 1; }
  exit 0
fi

args=(--noplot)
[ "${MEASURE_QUICK:-0}" = 1 ] && args+=(--quick)
PROFPIPE_BENCH_CAPTURE=${capture:-} cargo bench --quiet --bench encode -- "${args[@]}" 2>/dev/null \
  | grep -E '^(encode:|\||encode/)|time:|thrpt' | grep -v '%' \
  || { echo "measure-encodings: bench failed" >&2; exit 1; }
