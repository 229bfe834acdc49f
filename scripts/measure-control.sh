#!/usr/bin/env bash
# Figures of the control plane (`[control]`), against scripts/heartbeat-server.py:
#
# 1. idle: RSS of an idle agent (no command) heartbeating every second for IDLE
#    seconds (3600 by default), VmRSS from /proc/PID/status every SAMPLE seconds:
#    first, min, median, max, last, samples above 5,000 kB (and the
#    anonymous/file-backed split at the end); the agent's CPU time meanwhile.
# 2. stop: a continuous perf command (49 Hz, 2 s windows) runs; then a stop
#    command: seconds from the heartbeat that carried it until the agent has no
#    child left (needs root and perf; skipped otherwise).
# 3. reload: SIGHUP with a changed sink while the continuous command runs: the
#    agent's own `millis` of the reload (validate, build the new sink, switch;
#    the profilers keep running).
# 4. history: COMMANDS (5000) stop commands, one per heartbeat at 10 ms: the
#    command history's size and RSS afterwards.
#
#   bash scripts/measure-control.sh          # IDLE=3600 SAMPLE=10 COMMANDS=5000
#   IDLE=60 bash scripts/measure-control.sh  # a quick run
#
# Uses the release binary (builds it when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
idle=${IDLE:-3600}
sample=${SAMPLE:-10}
commands=${COMMANDS:-5000}
. scripts/measure-lib.sh
out=$(mktemp -d)
server=
agent=
cleanup() {
  for p in $agent $server; do kill "$p" 2>/dev/null || true; done
  rm -rf "$out"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
mport=$(free_port)
echo secret-token > "$out/token"
python3 scripts/heartbeat-server.py "$port" "$out" & server=$!

config() { # interval sink-dir
  cat > "$out/config.toml" <<TOML
[control]
server = "http://127.0.0.1:$port"
token = { file = "$out/token" }
service = "measure"
interval = "$1"

[agent]
state_dir = "$out/state"
shutdown_timeout = "5s"

[telemetry]
listen = "127.0.0.1:$mport"

[sinks.local]
type = "file"
path = "$out/$2"
formats = ["collapsed"]
TOML
}
start_agent() {
  "$bin" run --config "$out/config.toml" 2>> "$out/agent.log" & agent=$!
  sleep 1
}
stop_agent() {
  kill -TERM "$agent"; wait "$agent" || true; agent=
}
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$agent/status"; }
metric() { curl -s "127.0.0.1:$mport/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
send() { printf '%s' "$1" > "$out/reply.json"; }
start_cmd() { # id continuous
  send "{\"success\":true,\"message\":\"x\",\"command_id\":\"$1\",\"profiling_command\":{\"command_type\":\"start\",\"combined_config\":{\"duration\":2,\"frequency\":49,\"continuous\":$2,\"profiler_configs\":{\"perf\":{\"mode\":\"enabled_restricted\"},\"pyspy\":\"disabled\",\"rbspy\":\"disabled\"}}}}"
}
children() { ps -o pid= --ppid "$agent" | wc -l; }

# 1. idle
config 1s profiles
start_agent
cpu_ticks() { awk '{print $14 + $15}' "/proc/$agent/stat"; }
cpu0=$(cpu_ticks)
: > "$out/rss.txt"
end=$((SECONDS + idle))
while [ $SECONDS -lt $end ]; do
  rss_kb >> "$out/rss.txt"
  sleep "$sample"
done
cpu=$(( $(cpu_ticks) - cpu0 ))
beats=$(grep -c heartbeat "$out/events.log")
split=$(awk '/^RssAnon|^RssFile/ {printf "%s %s kB ", $1, $2}' "/proc/$agent/status")
stats=$(sort -n "$out/rss.txt" | awk '{v[NR] = $1} END {
  over = 0; for (i = 1; i <= NR; i++) if (v[i] > 5000) over++
  printf "%d samples: min %d, median %d, max %d kB; %d above 5,000 kB", NR, v[1], v[int((NR + 1) / 2)], v[NR], over }')
echo "| idle, ${idle} s at 1 s interval ($beats heartbeats) | VmRSS first $(head -1 "$out/rss.txt") kB, last $(tail -1 "$out/rss.txt") kB; $stats; at the end $split| CPU $(awk -v t="$cpu" -v hz="$(getconf CLK_TCK)" -v s="$idle" 'BEGIN {printf "%.2f s in %d s (%.2f%%)", t / hz, s, 100 * t / hz / s}'); children $(children) |"

# 2. stop
if [ "$(id -u)" = 0 ] && command -v perf >/dev/null; then
  start_cmd cont-1 true
  until [ "$(children)" -gt 0 ]; do sleep 0.05; done
  sleep 5
  during=$(rss_kb)
  # 3. reload (while the continuous command runs)
  config 1s profiles-2
  kill -HUP "$agent"
  until grep -q "configuration reloaded" "$out/agent.log"; do sleep 0.05; done
  reload=$(grep "configuration reloaded" "$out/agent.log" | tail -1 | sed 's/.*millis=\([0-9]*\).*/\1/')
  until [ "$(children)" -gt 0 ]; do sleep 0.05; done
  sleep 3
  send '{"success":true,"message":"x","command_id":"stop-1","profiling_command":{"command_type":"stop","combined_config":{}}}'
  until grep -q " heartbeat stop-1" "$out/events.log"; do sleep 0.01; done
  sent=$(grep " heartbeat stop-1" "$out/events.log" | head -1 | cut -d' ' -f1)
  until [ "$(children)" -eq 0 ]; do sleep 0.01; done
  gone=$(date +%s.%N)
  echo "| stop: continuous perf command -> every child gone | $(awk "BEGIN {printf \"%.2f\", $gone - $sent}") s (RSS while profiling: $during kB) |"
  echo "| reload: SIGHUP with a changed sink, continuous perf running | $reload ms (validate, build the new sink, switch; perf keeps running: $([ "$(grep -c 'in_place=1' "$out/agent.log")" -ge 1 ] && echo yes || echo no)) |"
  send '{"success":true,"message":"idle","profiling_command":null,"command_id":null}'
else
  echo "| stop, reload | skipped: needs root and perf |"
fi
stop_agent

# 4. history
config 10ms profiles
start_agent
base=$(grep -c ' completion ' "$out/events.log" || true)
send '{"mode":"stops"}'
t0=$SECONDS
until [ "$(grep -c ' completion ' "$out/events.log")" -ge $((base + commands)) ]; do sleep 0.5; done
send '{"success":true,"message":"idle","profiling_command":null,"command_id":null}'
sleep 1
size=$(metric profpipe_control_command_history_size)
persisted=$(python3 -c "import json; print(len(json.load(open('$out/state/control.json'))['executed']))")
echo "| history after $commands commands ($((SECONDS - t0)) s) | profpipe_control_command_history_size $size, $persisted ids in control.json, VmRSS $(rss_kb) kB |"
stop_agent
