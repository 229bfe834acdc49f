#!/usr/bin/env bash
# Figures of the `s3` sink against a local s3s-fs (path-style, SigV4-checking):
#
# 1. Throughput: WINDOWS collapsed files of STACKS distinct stacks each (one window
#    per file) through file source -> s3 sink (json, no compression) under
#    `/usr/bin/time -v`: profiles/s (windows/s) and MB/s of object bytes stored.
# 2. Outage: a follow-mode file source (1 s windows) reads a file a writer appends
#    to (LINES lines every 0.1 s); after 10 s s3s-fs is killed for OUTAGE seconds
#    (120 by default): the agent's peak RSS while it is down (under `[agent]
#    memory_limit`, the edge `block`s), and the seconds from the restart until the
#    backlog is delivered (sink edge empty, no request in flight, objects sent since
#    the restart).
#
#   bash scripts/measure-s3.sh     # WINDOWS=300 STACKS=2000 OUTAGE=120 LINES=500
#
# Prints Markdown rows. Uses the release binary (builds it when missing) and
# s3s-fs from ~/.cache/profpipe-tools/bin (scripts/setup-test-env.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
windows=${WINDOWS:-300}
stacks=${STACKS:-2000}
outage=${OUTAGE:-120}
lines=${LINES:-500}
limit=${LIMIT:-64MiB}
. scripts/measure-lib.sh
s3s=${S3S_FS:-$HOME/.cache/profpipe-tools/bin/s3s-fs}
[ -x "$s3s" ] || { echo "measure-s3: $s3s missing: run scripts/setup-test-env.sh" >&2; exit 1; }
out=$(mktemp -d)
server=
agent=
writer=
cleanup() {
  for p in $writer $agent $server; do kill "$p" 2>/dev/null || true; done
  rm -rf "$out"
}
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$out/data/profiles"
start_server() {
  "$s3s" --host 127.0.0.1 --port "$port" --access-key K --secret-key S "$out/data" >/dev/null 2>&1 &
  server=$!
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do sleep 0.05; done
}
objects() { find "$out/data/profiles" -type f ! -name '.*' | wc -l; }
object_bytes() { find "$out/data/profiles" -type f ! -name '.*' -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }'; }
sink_toml() { # input
  cat <<TOML
[sinks.archive]
type = "s3"
inputs = ["$1"]
bucket = "profiles"
endpoint = "http://127.0.0.1:$port"
access_key_id = "K"
secret_access_key = "S"
key = "{host}/{window_start}-{profile_id}.{ext}"
request = { concurrency = 4, retry_max_backoff = "10s" }
TOML
}
start_server

# 1. Throughput.
mkdir -p "$out/in"
awk -v w="$windows" -v n="$stacks" -v d="$out/in" 'BEGIN {
  for (f = 0; f < w; f++) {
    file = sprintf("%s/w%05d.col", d, f)
    for (i = 0; i < n; i++)
      printf "app-%d;main;handler_%d;service::work_%d;lib::leaf_%d %d\n", f % 7, i % 97, i, (i * 31 + f) % 1000, i % 50 + 1 > file
    close(file)
  }
}'
{
  printf '[agent]\nmemory_limit = "%s"\nstate_dir = "%s"\n\n' "$limit" "$out/state"
  file_source_toml files "$out/in/*.col" collapsed
  echo
  sink_toml files
} > "$out/throughput.toml"
timed_run "$out/throughput.toml" "$out"
n=$(objects)
[ "$n" = "$windows" ] || { echo "measure-s3: $n objects for $windows windows" >&2; exit 1; }
bytes=$(object_bytes)
printf '| windows | stacks/window | object MB | wall s | profiles/s | MB/s | peak RSS MiB |\n|---|---|---|---|---|---|---|\n'
awk -v w="$windows" -v n="$stacks" -v b="$bytes" -v s="$secs" -v r="$rss_kb" \
  'BEGIN { printf "| %d | %d | %.1f | %.2f | %.0f | %.1f | %.1f |\n", w, n, b/1e6, s, w/s, b/1e6/s, r/1024 }'

# 2. Outage.
before=$(objects)
awk -v n="$lines" 'BEGIN { for (i = 0; i < n; i++) printf "app;main;handler_%d;leaf_%d 1\n", i % 50, i }' > "$out/block.col"
: > "$out/live.col"
{
  printf '[agent]\nmemory_limit = "%s"\nstate_dir = "%s"\n\n' "$limit" "$out/state2"
  printf '[telemetry]\nlisten = "127.0.0.1:%s"\n\n' "$mport"
  file_source_toml live "$out/live.col" collapsed
  printf 'follow = true\nwindow = "1s"\npoll_interval = "100ms"\n\n'
  sink_toml live
} > "$out/outage.toml"
(while :; do cat "$out/block.col" >> "$out/live.col"; sleep 0.1; done) &
writer=$!
"$bin" --log warn run --config "$out/outage.toml" 2> "$out/agent.log" &
agent=$!
metric() { # name
  curl -s "http://127.0.0.1:$mport/metrics" | awk -v m="$1" '$1 ~ "^profpipe_"m"[{]" && $1 ~ /component_id="archive"/ { v = $2 } END { print v + 0 }'
}
sleep 10
kill "$server"; wait "$server" 2>/dev/null || true
peak=0
for _ in $(seq "$outage"); do
  rss=$(awk '/VmRSS/ { print $2 }' "/proc/$agent/status")
  [ "$rss" -gt "$peak" ] && peak=$rss
  sleep 1
done
sent_at_restart=$(metric component_sent_events_total)
start_server
t0=$(date +%s.%N)
while :; do
  sent=$(metric component_sent_events_total)
  inflight=$(metric component_requests_in_flight)
  buffered=$(metric buffer_size_bytes)
  if [ "$sent" -gt "$sent_at_restart" ] && [ "$inflight" = 0 ] && [ "$buffered" = 0 ]; then break; fi
  sleep 0.2
done
t1=$(date +%s.%N)
kill "$writer"; writer=
kill -TERM "$agent"; wait "$agent" || true; agent=
printf '\n| outage s | memory_limit | peak RSS while down MiB | drain s after restart | objects |\n|---|---|---|---|---|\n'
awk -v o="$outage" -v l="$limit" -v p="$peak" -v a="$t0" -v b="$t1" -v n="$(( $(objects) - before ))" \
  'BEGIN { printf "| %d | %s | %.1f | %.1f | %d |\n", o, l, p/1024, b-a, n - 0 }'
