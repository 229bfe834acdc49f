#!/usr/bin/env bash
# Resource use of `profpipe run` (the embedded default: perf at 11 Hz + py-spy +
# rbspy, 60 s windows) on a host with 10 busy Python and 5 busy Ruby processes.
#
#   bash scripts/measure-live.sh            # 300 s, as recorded in BENCHMARKS.md
#   DURATION=60 bash scripts/measure-live.sh
#
# Every 5 s it samples, from /proc: the agent's RSS, its own CPU time (utime+stime of
# the agent process only: children's time is not in these fields), its open fds and
# live children, and the largest RSS of any perf child. Prints a Markdown summary and
# leaves the samples in $OUT/samples.csv.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${DURATION:-300}
bin=${PROFPIPE_BIN:-${CARGO_TARGET_DIR:-target}/release/profpipe}
out=${OUT:-$(mktemp -d /tmp/profpipe-live.XXXXXX)}
export PATH="${PROFPIPE_TOOLS:-$HOME/.cache/profpipe-tools}/bin:$PATH"
[ -x "$bin" ] || cargo build --release --quiet
bin=$(realpath "$bin")
mkdir -p "$out"
workers=()
cleanup() {
  for p in "${workers[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -n "${agent:-}" ] && kill "$agent" 2>/dev/null || true
}
trap cleanup EXIT

for i in $(seq 10); do
  python3 -c "
def leaf(n):
    return sum(i * i for i in range(n))
def mid():
    while True:
        leaf(20000)
mid()" &
  workers+=($!)
done
for i in $(seq 5); do
  ruby -e 'def leaf(n) = (1..n).reduce(0) { |a, i| a + i * i }
def mid = loop { leaf(20000) }
mid' &
  workers+=($!)
done
sleep 12 # older than discovery's default min_age (10 s)

cd "$out"
"$bin" --log info run > agent.log 2>&1 &
agent=$!
cd - >/dev/null
hz=$(getconf CLK_TCK)
echo "t,rss_kb,cpu_ticks,fds,children,perf_rss_kb" > "$out/samples.csv"
start=$(date +%s)
while [ $(( $(date +%s) - start )) -lt "$duration" ]; do
  kill -0 "$agent" 2>/dev/null || { echo "agent exited early" >&2; cat "$out/agent.log" >&2; exit 1; }
  rss=$(awk '/^VmRSS/ {print $2}' /proc/$agent/status)
  ticks=$(awk '{print $14 + $15}' /proc/$agent/stat)
  fds=$(ls /proc/$agent/fd | wc -l)
  kids=$(ps -o pid= --ppid "$agent" | wc -l)
  perf_rss=0
  for p in $(ps -o pid=,comm= --ppid "$agent" | awk '$2 == "perf" {print $1}'); do
    r=$(awk '/^VmRSS/ {print $2}' /proc/$p/status 2>/dev/null || echo 0)
    [ "$r" -gt "$perf_rss" ] && perf_rss=$r
  done
  echo "$(( $(date +%s) - start )),$rss,$ticks,$fds,$kids,$perf_rss" >> "$out/samples.csv"
  sleep 5
done
kill -INT "$agent"; wait "$agent" || true; agent=

awk -F, -v hz="$hz" -v d="$duration" 'NR > 1 {
    n++; if ($2 > rss) rss = $2; if (n == 1) { t0 = $1; c0 = $3 } t1 = $1; c1 = $3;
    if ($4 > fmax) fmax = $4; if (fmin == "" || $4 < fmin) fmin = $4;
    if ($6 > perf) perf = $6; if ($5 > kids) kids = $5
  } END {
    cpu = (c1 - c0) / hz / (t1 - t0) * 100
    printf "| run | agent peak RSS MiB | agent CPU %% of one core | perf peak RSS MiB | open fds min-max | children max |\n"
    printf "|---|---|---|---|---|---|\n"
    printf "| %d s, 11 Hz, 10 Python + 5 Ruby | %.1f | %.2f | %.1f | %d-%d | %d |\n", d, rss / 1024, cpu, perf / 1024, fmin, fmax, kids
  }' "$out/samples.csv"
echo "samples: $out/samples.csv; profiles: $out/profiles; log: $out/agent.log"
grep -cE ' (WARN|ERROR) ' "$out/agent.log" | sed 's/^/agent log lines above INFO: /' || true
