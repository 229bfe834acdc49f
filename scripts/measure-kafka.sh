#!/usr/bin/env bash
# Figures of the kafka sink against a local tansu broker (memory storage):
#
#  1. throughput: N collapsed files (one window each, S distinct stacks) through
#     file source -> kafka sink (json, zstd), wall time of the whole run under
#     /usr/bin/time -v: profiles/s and input MB/s into the sink, peak RSS;
#  2. outage: a followed, growing collapsed file (1 s windows) -> kafka sink with
#     `when_full = "block"`, the broker frozen (SIGSTOP) for OUTAGE s: the agent's
#     peak RSS during it (against memory_limit), then the time from SIGCONT until
#     the sink has delivered everything it had received before (its metrics,
#     scraped with curl).
#
#   bash scripts/measure-kafka.sh        # N=2000 S=200 OUTAGE=120 by default
#
# Needs tansu from scripts/setup-test-env.sh. Builds the release binary if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/measure-lib.sh
N=${N:-2000}
S=${S:-200}
OUTAGE=${OUTAGE:-120}
tansu=${TANSU:-$HOME/.cache/profpipe-tools/bin/tansu}
[ -x "$tansu" ] || { echo "tansu not installed: run scripts/setup-test-env.sh" >&2; exit 1; }
command -v curl >/dev/null || { echo "curl is needed" >&2; exit 1; }

out=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -CONT "$p" 2>/dev/null || true; kill "$p" 2>/dev/null || true; done
  rm -rf "$out"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

port=$(free_port)
"$tansu" broker --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://127.0.0.1:$port" \
  --storage-engine memory://tansu/ > "$out/tansu.log" 2>&1 &
broker=$!
pids+=("$broker")
for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
"$tansu" topic create bench --partitions 3 --broker "tcp://127.0.0.1:$port" >/dev/null
"$tansu" topic create outage --partitions 3 --broker "tcp://127.0.0.1:$port" >/dev/null

kafka_sink() { # input topic [extra lines]
  printf '\n[sinks.kafka]\ntype = "kafka"\ninputs = ["%s"]\nbrokers = ["127.0.0.1:%s"]\ntopic = "%s"\n%s\n' \
    "$1" "$port" "$2" "${3:-}"
}

# --- 1. throughput -----------------------------------------------------------
mkdir -p "$out/in"
awk -v n="$N" -v s="$S" -v dir="$out/in" 'BEGIN {
  for (f = 0; f < n; f++) {
    file = sprintf("%s/w_%05d.col", dir, f)
    for (i = 0; i < s; i++)
      printf "python3;main;handler_%d;service_%03d;work_%03d %d\n", f % 17, i % 50, i, 1 + (f * 7 + i) % 13 > file
    close(file)
  }
}'
input_bytes=$(cat "$out"/in/*.col | wc -c)
{
  printf '[agent]\nstate_dir = "%s/state"\nmemory_limit = "64MiB"\n\n' "$out"
  file_source_toml files "$out/in/*.col" collapsed
  kafka_sink files bench
} > "$out/throughput.toml"
timed_run "$out/throughput.toml" "$out"
echo "## throughput: $N windows of $S stacks, json + zstd"
printf '| windows | input MB | wall s | profiles/s | input MB/s | peak RSS MiB |\n|---|---|---|---|---|---|\n'
awk -v n="$N" -v b="$input_bytes" -v s="$secs" -v r="$rss_kb" \
  'BEGIN { printf "| %d | %.1f | %.2f | %.0f | %.1f | %.1f |\n", n, b/1e6, s, n/s, b/1e6/s, r/1024 }'

# --- 2. outage -----------------------------------------------------------------
mport=$(free_port)
: > "$out/live.col"
{
  printf '[agent]\nstate_dir = "%s/state2"\nmemory_limit = "64MiB"\n\n' "$out"
  printf '[telemetry]\nlisten = "127.0.0.1:%s"\n\n' "$mport"
  printf '[sources.live]\ntype = "file"\npaths = ["%s/live.col"]\nformat = "collapsed"\nfollow = true\nwindow = "1s"\npoll_interval = "200ms"\n' "$out"
  kafka_sink live outage 'buffer = { max_bytes = "8MiB", when_full = "block" }'
} > "$out/outage.toml"
# The workload: 2,000 stack lines a second, 500 distinct stacks.
(
  i=0
  while :; do
    awk -v i="$i" 'BEGIN { for (k = 0; k < 200; k++) printf "python3;main;handler_%d;work_%03d 1\n", (i + k) % 5, k % 100 }' >> "$out/live.col"
    i=$((i + 1))
    sleep 0.1
  done
) &
pids+=("$!")
"$bin" --log "${OUTAGE_LOG:-warn}" run --config "$out/outage.toml" 2> "$out/outage.log" &
agent=$!
pids+=("$agent")

metric() { # name -> value for component kafka (0 when absent)
  curl -s "http://127.0.0.1:$mport/metrics" \
    | awk -v m="profpipe_$1" '$1 ~ "^"m"\\{" && $1 ~ /component_id="kafka"/ { s += $2 } END { print s + 0 }'
}
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$agent/status"; }

for _ in $(seq 300); do [ "$(metric component_sent_events_total)" -gt 0 ] 2>/dev/null && break; sleep 0.2; done
sleep 5
before=$(rss_kib)
kill -STOP "$broker"
peak=$before
for _ in $(seq "$OUTAGE"); do
  r=$(rss_kib); [ "$r" -gt "$peak" ] && peak=$r
  sleep 1
done
received=$(metric component_received_events_total)
sent_at_thaw=$(metric component_sent_events_total)
kill -CONT "$broker"
t0=$(date +%s.%N)
while :; do
  done_=$(( $(metric component_sent_events_total) + $(metric component_discarded_events_total) + $(metric component_rejected_events_total) ))
  [ "$done_" -ge "$received" ] && break
  now=$(date +%s.%N)
  if awk -v a="$t0" -v b="$now" -v l="${DRAIN_LIMIT:-600}" 'BEGIN { exit !(b - a > l) }'; then echo "no drain within 600 s" >&2; tail -50 "$out/outage.log" >&2; exit 1; fi
  sleep 0.2
done
t1=$(date +%s.%N)
discarded=$(metric component_discarded_events_total)
kill -TERM "$agent"; wait "$agent" || true
echo
echo "## outage: broker frozen ${OUTAGE} s, when_full = block, memory_limit 64 MiB"
printf '| RSS before MiB | peak RSS during outage MiB | backlog events at thaw | drain s | discarded |\n|---|---|---|---|---|\n'
awk -v a="$before" -v p="$peak" -v r="$received" -v s="$sent_at_thaw" -v t0="$t0" -v t1="$t1" -v d="$discarded" \
  'BEGIN { printf "| %.1f | %.1f | %d | %.1f | %d |\n", a/1024, p/1024, r - s, t1 - t0, d }'
