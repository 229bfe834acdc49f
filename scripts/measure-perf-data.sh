#!/usr/bin/env bash
# The perf path's cost per window: `perf script -F +pid --no-inline` + the text fold
# against profpipe's in-process reader (`profpipe fold capture.data`), on the same
# perf.data, with `/usr/bin/time -v` (CPU seconds = user + sys, peak RSS), and the
# number and size of the binaries that have samples (what perf script's cost follows).
#
#   scripts/measure-perf-data.sh [seconds] [frequency] [perf.data]
#
# Without a perf.data argument it records one system-wide window itself
# (`perf record -e cpu-clock -F <frequency> -a -g -- sleep <seconds>`) while a C
# program, Python and a syscall loop run. Needs root and perf. The in-process figures
# are for a cold cache (every `profpipe fold` starts empty); in the agent the symbol
# caches live across windows, so later windows only pay for binaries not seen yet.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
freq=${2:-11}
data=${3:-}
bin=${PROFPIPE_BIN:-${CARGO_TARGET_DIR:-target}/release/profpipe}
command -v /usr/bin/time >/dev/null || { apt-get install -y -qq time >/dev/null; }
[ -x "$bin" ] || cargo build --release --quiet
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [ -z "$data" ]; then
  data=$work/window.data
  cc -O1 -fno-omit-frame-pointer -o "$work/hot" tests/programs/hot.c
  "$work/hot" "$((secs + 2))" & hot=$!
  python3 tests/programs/busy.py "$((secs + 2))" >/dev/null 2>&1 & py=$!
  timeout "$((secs + 2))" dd if=/dev/zero of=/dev/null bs=1 2>/dev/null & dd=$!
  perf record -q -e cpu-clock -F "$freq" -a -g -o "$data" -- sleep "$secs" 2>/dev/null
  wait $hot $py $dd 2>/dev/null || true
fi

# cpu_s and rss_kb of one `/usr/bin/time -v` report.
report() { # file
  cpu_s=$(awk -F': ' '/User time/ {u=$2} /System time/ {s=$2} END {printf "%.2f", u+s}' "$1")
  rss_kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$1")
}

/usr/bin/time -v perf script -F +pid --no-inline -i "$data" > "$work/script.txt" 2> "$work/t_script" || true
report "$work/t_script"; script_cpu=$cpu_s; script_rss=$rss_kb
/usr/bin/time -v "$bin" fold -n 1 "$work/script.txt" > "$work/text.folded" 2> "$work/t_fold"
report "$work/t_fold"; fold_cpu=$cpu_s; fold_rss=$rss_kb
/usr/bin/time -v "$bin" fold -n 1 "$data" > "$work/data.folded" 2> "$work/t_data"
report "$work/t_data"; data_cpu=$cpu_s; data_rss=$rss_kb

samples=$(grep -c '^[^[:space:]]' "$work/script.txt" || true)
# Binaries with samples: the modules of the frame lines that are files on disk.
sed -n 's/.*(\(\/[^ )]*\))$/\1/p' "$work/script.txt" | sort -u > "$work/dsos"
ndso=0; dso_mb=0
while read -r f; do
  [ -f "$f" ] || continue
  ndso=$((ndso + 1))
  dso_mb=$(awk -v a="$dso_mb" -v b="$(stat -c %s "$f")" 'BEGIN {printf "%.1f", a + b / 1048576}')
done < "$work/dsos"
same=$(python3 - "$work/text.folded" "$work/data.folded" <<'PY'
import collections, sys
def load(p):
    c = collections.Counter()
    for l in open(p):
        s, _, n = l.rstrip('\n').rpartition(' ')
        c[s] += int(n)
    return c
a, b = load(sys.argv[1]), load(sys.argv[2])
same = sum(min(a[k], b[k]) for k in a)
print(f"{100 * same / max(sum(a.values()), 1):.2f}% identical, totals {sum(a.values())} / {sum(b.values())}")
PY
)
echo "window: $(stat -c %s "$data") bytes of perf.data, $samples samples, $ndso binaries with samples ($dso_mb MB)"
printf '| path | CPU s | peak RSS MiB |\n|---|---|---|\n'
printf '| perf script -F +pid --no-inline | %s | %s |\n' "$script_cpu" "$((script_rss / 1024))"
printf '| + profpipe fold -n 1 of its text | %s | %s |\n' "$fold_cpu" "$((fold_rss / 1024))"
printf '| profpipe fold -n 1 capture.data (in-process, cold cache) | %s | %s |\n' "$data_cpu" "$((data_rss / 1024))"
echo "agreement: $same"
