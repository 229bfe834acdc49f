#!/usr/bin/env bash
# Whole-host overhead of the agent: `profpipe run` with the embedded default pipeline
# (perf + py_spy + rbspy at 11 Hz, 60 s windows) under `/usr/bin/time`, which counts
# the agent and every child it reaped (perf, the sampler children, or the py-spy /
# rbspy CLI runs in per-window mode), with busy Python and Ruby targets started here.
#
#   bash scripts/measure-overhead.sh [python] [ruby] [seconds]   # one point
#   bash scripts/measure-overhead.sh                             # the table: POINTS
#
#   POINTS="0:0 4:0 16:0 48:0 16:4"   python:ruby targets per point (the table)
#   SECONDS_PER_POINT=130             seconds per point (the table)
#   MODE=attached|per_window          how the runtime sources sample
#   SKIP_IDLE=1                       skip_idle_targets = true
#   IDLE_TARGETS=1                    targets sleep instead of spinning
#   NO_PERF=1                         the runtime sources only (no perf, no fold)
#   WINDOW=60s                        the sources' window
#
# Targets spin at nice 19 (so the agent, at nice 0, is not starved by them on a
# small machine); discovery takes processes older than 10 s, so they start 12 s
# before the agent. Per point it prints the agent tree's CPU seconds (user+system of
# the agent and its reaped children), that as a share of one core over the wall
# time, the agent's peak RSS, and the largest RSS seen of any child (sampled every
# 2 s). The table ends with the least-squares slope of share vs targets.
# Needs root (perf -a). Uses the release binary (builds it when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${PROFPIPE_BIN:-${CARGO_TARGET_DIR:-target}/release/profpipe}
command -v /usr/bin/time >/dev/null || { apt-get install -y -qq time >/dev/null; }
[ -x "$bin" ] || cargo build --release --quiet
bin=$(realpath "$bin")
export PATH="${PROFPIPE_TOOLS:-$HOME/.cache/profpipe-tools}/bin:$PATH"
mode=${MODE:-attached}
out=$(mktemp -d /tmp/profpipe-overhead.XXXXXX)
workers=()
agent=
cleanup() {
  for p in "${workers[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -n "$agent" ] && kill "$agent" 2>/dev/null || true
  rm -rf "$out"
}
trap cleanup EXIT

start_targets() { # python ruby
  local busy_py busy_rb
  if [ -n "${IDLE_TARGETS:-}" ]; then
    busy_py='import time
while True: time.sleep(1)'
    busy_rb='loop { sleep 1 }'
  else
    busy_py='def leaf(n):
    return sum(i * i for i in range(n))
def mid():
    while True:
        leaf(20000)
mid()'
    busy_rb='def leaf(n) = (1..n).reduce(0) { |a, i| a + i * i }
def mid = loop { leaf(20000) }
mid'
  fi
  for _ in $(seq "$1"); do nice -n 19 python3 -c "$busy_py" & workers+=($!); done
  for _ in $(seq "$2"); do nice -n 19 ruby -e "$busy_rb" & workers+=($!); done
}

stop_targets() {
  for p in "${workers[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${workers[@]}"; do wait "$p" 2>/dev/null || true; done
  workers=()
}

config() {
  local extra="mode = \"$mode\""
  [ -n "${SKIP_IDLE:-}" ] && extra="$extra
skip_idle_targets = true"
  if [ -n "${NO_PERF:-}" ]; then
    cat > "$out/agent.toml" <<TOML
[agent]
state_dir = "$out/state"
[sources.python]
type = "py_spy"
frequency = 11
window = "${WINDOW:-60s}"
$extra
[sources.ruby]
type = "rbspy"
frequency = 11
window = "${WINDOW:-60s}"
$extra
[transforms.classify]
type = "classify"
inputs = ["python", "ruby"]
[sinks.local]
type = "file"
inputs = ["classify"]
path = "$out/profiles"
formats = ["collapsed"]
TOML
    return
  fi
  sed -e "s|window = \"60s\"|window = \"${WINDOW:-60s}\"|" -e "s|state_dir = \"/var/lib/profpipe\"|state_dir = \"$out/state\"|" \
      -e "s|path = \"profiles\"|path = \"$out/profiles\"|" \
      -e "s|^type = \"py_spy\"|type = \"py_spy\"\n$extra|" \
      -e "s|^type = \"rbspy\"|type = \"rbspy\"\n$extra|" \
      pipelines/default.toml > "$out/agent.toml"
}

# One point: sets cpu_s, share, rss_kb, child_kb.
measure() { # python ruby seconds
  rm -rf "$out/state" "$out/profiles"
  start_targets "$1" "$2"
  [ "$(( $1 + $2 ))" -gt 0 ] && sleep 12
  config
  /usr/bin/time -f "%U %S %e %M" -o "$out/time.txt" "$bin" --log warn run --config "$out/agent.toml" \
    2> "$out/agent.log" &
  local timer=$!
  # The agent is /usr/bin/time's child.
  for _ in $(seq 50); do agent=$(pgrep -P "$timer" -x profpipe || true); [ -n "$agent" ] && break; sleep 0.1; done
  child_kb=0
  local end=$((SECONDS + $3))
  while [ $SECONDS -lt $end ]; do
    sleep 2
    local kb
    kb=$(ps --ppid "$agent" -o rss= 2>/dev/null | sort -n | tail -1 || true)
    [ -n "$kb" ] && [ "$kb" -gt "$child_kb" ] && child_kb=$kb
  done
  kill -INT "$agent"
  wait "$timer" || { cat "$out/agent.log" >&2; exit 1; }
  agent=
  stop_targets
  read -r user sys wall rss_kb < "$out/time.txt"
  cpu_s=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')
  share=$(awk -v c="$cpu_s" -v w="$wall" 'BEGIN { printf "%.3f", 100 * c / w }')
}

row() { # python ruby seconds
  measure "$1" "$2" "$3"
  printf '| %d | %d | %d | %s | %s%% | %d | %d |\n' "$1" "$2" "$3" "$cpu_s" "$share" \
    "$((rss_kb / 1024))" "$((child_kb / 1024))"
}

echo "mode=$mode skip_idle=${SKIP_IDLE:-0} idle_targets=${IDLE_TARGETS:-0} no_perf=${NO_PERF:-0} $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo '| python | ruby | seconds | agent tree CPU-s | share of one core | agent peak RSS MB | largest child RSS MB |'
echo '|---|---|---|---|---|---|---|'
if [ $# -gt 0 ]; then
  row "${1:-0}" "${2:-0}" "${3:-130}"
  exit 0
fi
points=${POINTS:-0:0 4:0 16:0 48:0 16:4}
secs=${SECONDS_PER_POINT:-130}
for p in $points; do
  row "${p%:*}" "${p#*:}" "$secs" > "$out/row.md"
  cat "$out/row.md"
  cat "$out/row.md" >> "$out/rows.md"
done
# Least squares over the rows printed: share (column 6) against targets (2 + 3).
awk -F'|' 'NF > 7 { t = $2 + $3; s = $6 + 0; n++; x += t; y += s; xx += t * t; xy += t * s }
  END { if (n > 1 && n * xx != x * x) { b = (n * xy - x * y) / (n * xx - x * x); a = (y - b * x) / n;
        printf "fit: share = %.3f%% + %.4f%% per target\n", a, b } }' "$out/rows.md"
