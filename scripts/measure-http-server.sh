#!/usr/bin/env bash
# Throughput and peak RSS of the http_server source: `examples/http_push.rs` pushes
# folded bodies of LINES distinct stacks from CLIENTS concurrent clients for SECS
# seconds into `profpipe run` (http_server -> SINK: a `file` sink writing folded
# files, which fsyncs one file per push, or a `console` sink to /dev/null). Every
# request is answered only once its data is written, so this is the end-to-end rate.
#
#   bash scripts/measure-http-server.sh 10 4 1000            # SINK=file by default
#   SINK=console bash scripts/measure-http-server.sh 10 4 1000
#
# Prints a Markdown row: requests/s, MB/s of bodies, peak RSS of the agent.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:?SECS}; clients=${2:?CLIENTS}; lines=${3:?LINES}
sink=${SINK:-file}
target=${CARGO_TARGET_DIR:-target}
bin=${PROFPIPE_BIN:-$target/release/profpipe}
push=$target/release/examples/http_push
command -v /usr/bin/time >/dev/null || { apt-get install -y -qq time >/dev/null; }
# Built when missing (as measure-lib.sh does); rebuild by hand after changes.
[ -x "$bin" ] && [ -x "$push" ] || cargo build --release --quiet --bin profpipe --example http_push
out=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill $(ps -o pid= --ppid "$pid") 2>/dev/null; rm -rf "$out"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
{
  printf '[agent]\nstate_dir = "%s/state"\nmemory_limit = "256MiB"\n\n' "$out"
  printf '[sources.gateway]\ntype = "http_server"\naddress = "127.0.0.1:%s"\nmax_concurrent_requests = %s\n\n' "$port" $((clients * 2))
  if [ "$sink" = file ]; then
    printf '[sinks.out]\ntype = "file"\ninputs = ["gateway"]\npath = "%s/profiles"\nformats = ["folded"]\nretain_files = 50\n' "$out"
  else
    printf '[sinks.out]\ntype = "console"\ninputs = ["gateway"]\n'
  fi
} > "$out/pipeline.toml"
/usr/bin/time -v "$bin" --log warn run --config "$out/pipeline.toml" \
  > /dev/null 2> "$out/time.txt" &
pid=$!
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$port/ready" >/dev/null && break
  sleep 0.1
done
result=$("$push" "http://127.0.0.1:$port" "$secs" "$clients" "$lines")
# GNU time ignores SIGINT: signal the agent itself, its one child.
agent=$(ps -o pid= --ppid "$pid" | tr -d ' ')
kill -INT "$agent"; wait "$pid" || true; pid=
rss_kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$out/time.txt")
eval "$(echo "$result" | tr ' ' '\n' | sed 's/^/r_/')"
printf '| sink | clients | lines/push | body KiB | requests | errors | req/s | MB/s | peak RSS MiB |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n'
awk -v s="$sink" -v c="$clients" -v l="$lines" -v n="$r_requests" -v ok="$r_ok" -v e="$r_errors" \
    -v b="$r_bytes" -v t="$r_secs" -v r="$rss_kb" \
  'BEGIN { printf "| %s | %d | %d | %.1f | %d | %d | %.0f | %.1f | %.1f |\n", s, c, l, (ok ? b/ok : 0)/1024, n, e, ok/t, b/1e6/t, r/1024 }'
