#!/usr/bin/env bash
# Figures of the disk buffer (BENCHMARKS.md, "Disk buffer"):
#
# 1. Write and replay throughput with each sync policy: `cargo bench --bench
#    disk_buffer` (criterion; events of ~27 KB).
# 2. The outage of tests/disk_buffer.rs at full size, with the release agent:
#    10,000 pushes at 40/s to the `http_server` gateway, whose kafka (tansu) or s3
#    (s3s-fs) sink has a disk buffer; the back end is down from the 2,500th to the
#    7,500th acknowledged push (about two minutes) and the agent is `kill -9`ed and
#    restarted in the middle of it. Prints, per sink: pushes delivered, duplicates,
#    records replayed after the kill, peak RSS, peak disk.
# 3. A 1 GB backlog: with s3s-fs down, `examples/http_push` (4 clients, 10,000-line
#    bodies) fills the disk buffer of http_server -> s3 to BACKLOG bytes; s3s-fs
#    comes back; the seconds until every record is delivered
#    (`profpipe_buffer_disk_records` = 0), and the agent's peak RSS meanwhile.
#
#   bash scripts/measure-disk-buffer.sh            # PARTS="1 2 3" BACKLOG=1000000000
#
# Needs the tools of scripts/setup-test-env.sh (tansu, s3s-fs).
set -euo pipefail
cd "$(dirname "$0")/.."
parts=${PARTS:-1 2 3}
backlog=${BACKLOG:-1000000000}
tools=${PROFPIPE_TOOLS:-$HOME/.cache/profpipe-tools}
export PATH="$tools/bin:$PATH"
target=${CARGO_TARGET_DIR:-target}
cargo build --release --quiet --bin profpipe --example http_push
bin=$(realpath "$target/release/profpipe")

for part in $parts; do case $part in
1)
  echo "## write and replay throughput"
  cargo bench --quiet --bench disk_buffer 2>&1 | grep -E 'one event|^disk_buffer|time:|thrpt:'
  ;;
2)
  echo "## two-minute outage with a kill -9, release agent"
  PROFPIPE_BIN=$bin PROFPIPE_OUTAGE_PUSHES=10000 PROFPIPE_OUTAGE_RATE=40 \
    cargo test --quiet --test disk_buffer -- --nocapture --test-threads 1 2>&1 \
    | grep -E 'pushes delivered|test result|panicked'
  ;;
3)
  echo "## draining a backlog of $backlog bytes into s3"
  out=$(mktemp -d)
  agent= server= pusher=
  cleanup() { for p in $pusher $agent $server; do kill "$p" 2>/dev/null || true; done; rm -rf "$out"; }
  trap cleanup EXIT
  free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
  s3port=$(free_port) gport=$(free_port) mport=$(free_port)
  mkdir -p "$out/data/profiles"
  cat > "$out/agent.toml" <<TOML
[agent]
state_dir = "$out/state"
memory_limit = "64MiB"

[telemetry]
listen = "127.0.0.1:$mport"

[sources.push]
type = "http_server"
address = "127.0.0.1:$gport"
max_body_size = "4MiB"

[sinks.archive]
type = "s3"
inputs = ["push"]
bucket = "profiles"
endpoint = "http://127.0.0.1:$s3port"
access_key_id = "K"
secret_access_key = "S"
key = "{host}/{window_start}-{profile_id}.{ext}"
request = { concurrency = 4, retry_initial_backoff = "200ms", retry_max_backoff = "2s" }
buffer = { type = "disk", max_bytes = "2GiB" }
TOML
  # The back end is down from the start: the healthcheck fails, the agent starts anyway.
  "$bin" --log warn run --config "$out/agent.toml" 2> "$out/agent.log" &
  agent=$!
  until (exec 3<>"/dev/tcp/127.0.0.1/$gport") 2>/dev/null; do sleep 0.1; done
  # The first sample of metric $1 (awk reads to the end: curl must not hit a closed pipe).
  metric() { curl -s "http://127.0.0.1:$mport/metrics" | awk -v m="$1" '!done && ($1 == m || index($1, m"{") == 1) { print $2; done = 1 }'; }
  rss() { awk '/VmRSS/ { print $2 }' "/proc/$agent/status"; }
  peak=0
  "$target/release/examples/http_push" "http://127.0.0.1:$gport" 3600 4 10000 > "$out/push.txt" &
  pusher=$!
  fill_start=$(date +%s.%N)
  while :; do
    bytes=$(metric profpipe_buffer_disk_bytes); bytes=${bytes:-0}
    r=$(rss); [ "$r" -gt "$peak" ] && peak=$r
    [ "${bytes%.*}" -ge "$backlog" ] && break
    sleep 0.5
  done
  # (SIGTERM: a background job of a script ignores SIGINT.)
  kill "$pusher"; wait "$pusher" 2>/dev/null || true; pusher=
  fill_end=$(date +%s.%N)
  sleep 1 # the disk gauges follow the buffer's sync tick (500 ms)
  bytes=$(metric profpipe_buffer_disk_bytes)
  records=$(metric profpipe_buffer_disk_records)
  echo "backlog: $bytes bytes, $records records, filled in $(echo "$fill_end - $fill_start" | bc) s; peak RSS while filling $((peak / 1024)) MiB"
  "$tools/bin/s3s-fs" --host 127.0.0.1 --port "$s3port" --access-key K --secret-key S "$out/data" >/dev/null 2>&1 &
  server=$!
  t0=$(date +%s.%N)
  peak=0
  while :; do
    left=$(metric profpipe_buffer_disk_records); left=${left:-1}
    r=$(rss); [ "$r" -gt "$peak" ] && peak=$r
    [ "${left%.*}" -eq 0 ] && break
    sleep 0.2
  done
  t1=$(date +%s.%N)
  secs=$(echo "$t1 - $t0" | bc)
  objects=$(find "$out/data/profiles" -type f ! -name '.*' | wc -l)
  # Keys are <host>/<window_start>-<profile_id>: how many distinct windows.
  windows=$(cd "$out/data/profiles" && find . -type f ! -name '.*' | sed 's/-[^-\/]*$//' | sort -u | wc -l)
  stored=$(find "$out/data/profiles" -type f ! -name '.*' -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')
  echo "drained $records records ($bytes bytes on disk) in $secs s: $(echo "$bytes / $secs / 1000000" | bc) MB/s; $objects objects for $windows windows, $stored bytes stored; peak RSS while draining $((peak / 1024)) MiB"
  echo "records written: $(metric profpipe_buffer_disk_records_written_total); disk after draining: $(metric profpipe_buffer_disk_bytes) bytes"
  ;;
esac; done
