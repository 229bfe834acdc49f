#!/usr/bin/env bash
# Figures of the `http` sink (BENCHMARKS.md, "http sink"): run from the repository
# root after `cargo build --release`.
#
#   bash scripts/measure-http-sink.sh [WINDOWS] [STACKS] [OUTAGE_SECS]
#
# 1. Throughput: WINDOWS (default 200) files of STACKS (2000) distinct 12-frame
#    stacks, read by a `file` source (one window per file) and sent by one http
#    sink per target (pyroscope folded, gprofiler gzip JSON, generic json+gzip) to
#    scripts/http-receiver.py; `/usr/bin/time -v` gives wall time and peak RSS,
#    the receiver the bytes on the wire.
# 2. Outage: the receiver answers 503 (`Retry-After: 1`) for OUTAGE_SECS (120);
#    the agent's RSS is sampled every second from /proc while it is down, and the
#    drain time is from the end of the outage to the agent's exit (every window
#    delivered).
set -euo pipefail
source scripts/measure-lib.sh
windows=${1:-200}
stacks=${2:-2000}
outage=${3:-120}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

mkdir -p "$work/in"
python3 - "$work/in" "$windows" "$stacks" <<'PY'
import random, sys
out, windows, stacks = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(7)
mods = ["app", "db", "http", "json", "cache", "auth", "io", "sched"]
for w in range(windows):
    lines = []
    for s in range(stacks):
        frames = ["python3", "main"] + ["%s.%s_%d" % (rng.choice(mods), "fn", rng.randrange(400)) for _ in range(9)] + ["leaf_%d_%d" % (w, s)]
        lines.append(";".join(frames) + " %d\n" % rng.randrange(1, 50))
    with open("%s/w-%04d.folded" % (out, w), "w") as f:
        f.writelines(lines)
PY
input_bytes=$(cat "$work"/in/*.folded | wc -c)

start_receiver() { # outage_secs -> sets port, stats
  rm -f "$work/port" "$work/stats"
  python3 scripts/http-receiver.py "$work/port" "$work/stats" "$1" &
  receiver=$!
  for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.05; done
  port=$(cat "$work/port")
}

pipeline() { # target-lines -> config path
  cat > "$work/agent.toml" <<TOML
[agent]
state_dir = "$work/state"
shutdown_timeout = "10m"

$(file_source_toml in "$work/in/*.folded" collapsed)

[sinks.out]
type = "http"
inputs = ["in"]
$1
TOML
  echo "$work/agent.toml"
}

echo "input: $windows windows x $stacks stacks, $((input_bytes / 1024 / 1024)) MiB of folded text"
printf '%-10s %10s %10s %14s %10s\n' target profiles/s MB/s wire_B/profile peak_RSS_MiB
for target in pyroscope gprofiler generic; do
  start_receiver 0
  case $target in
    pyroscope) lines="target = \"pyroscope\"
endpoint = \"http://127.0.0.1:$port\"" ;;
    gprofiler) lines="target = \"gprofiler\"
endpoint = \"http://127.0.0.1:$port\"
api_key = { env = \"MEASURE_KEY\" }" ;;
    generic) lines="target = \"generic\"
endpoint = \"http://127.0.0.1:$port/in\"
encoding = \"json\"
compression = \"gzip\"" ;;
  esac
  MEASURE_KEY=k timed_run "$(pipeline "$lines")" "$work"
  read -r requests bytes _ <<< "$(cat "$work/stats")"
  kill "$receiver"; wait "$receiver" 2>/dev/null || true
  awk -v t="$target" -v w="$windows" -v s="$secs" -v ib="$input_bytes" -v b="$bytes" -v rss="$rss_kb" \
    'BEGIN { printf "%-10s %10.1f %10.1f %14d %10.1f\n", t, w/s, ib/s/1e6, b/w, rss/1024 }'
done

echo
echo "outage: receiver down (503, Retry-After: 1) for ${outage}s, target pyroscope, when_full = block"
start_receiver "$outage"
t0=$(date +%s.%N)
config=$(pipeline "target = \"pyroscope\"
endpoint = \"http://127.0.0.1:$port\"
request = { retry_max_backoff = \"5s\" }")
"$bin" --log warn run --config "$config" 2> "$work/outage.log" &
agent=$!
max_rss=0
while kill -0 "$agent" 2>/dev/null; do
  now=$(date +%s.%N)
  if awk -v n="$now" -v t="$t0" -v o="$outage" 'BEGIN { exit !(n - t < o) }'; then
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$agent/status" 2>/dev/null || echo 0)
    [ "${rss:-0}" -gt "$max_rss" ] && max_rss=$rss
  fi
  sleep 1
done
wait "$agent" || { cat "$work/outage.log" >&2; exit 1; }
t_end=$(date +%s.%N)
read -r requests bytes first last refused <<< "$(cat "$work/stats")"
awk -v m="$max_rss" -v t0="$t0" -v o="$outage" -v e="$t_end" -v r="$requests" -v f="$refused" -v w="$windows" \
  'BEGIN { printf "agent RSS while down: max %.1f MiB; refused attempts: %d; delivered %d of %d windows; drain after the outage: %.1f s\n", m/1024, f, r, w, e - (t0 + o) }'
