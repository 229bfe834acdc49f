#!/usr/bin/env bash
# Java and Node.js naming (issue 17), measured:
# 1. one attach + perf-map write per JVM per window, in-process (the perf source's
#    code, run by examples/jvm_attach) against `jcmd PID Compiler.perfmap`, both under
#    /usr/bin/time, 10 calls each, plus the CPU the JVM's "Attach Listener" thread
#    spent answering them;
# 2. whole-host overhead: `profpipe run` (the embedded default pipeline) for DURATION
#    seconds under /usr/bin/time (agent + every child it reaped), without and then
#    with one busy JVM (-XX:+PreserveFramePointer) and one busy Node.js process
#    (--perf-basic-prof);
# 3. the share of the JVM's samples (comm `java`) whose JIT frames are all named, in
#    the collapsed files of run 2.
#
#   bash scripts/measure-jit.sh            # DURATION=130
#   PARTS=attach bash scripts/measure-jit.sh   # only 1 (no whole-host runs)
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${DURATION:-130}
parts=${PARTS:-attach host}
target=${CARGO_TARGET_DIR:-target}
bin=${PROFPIPE_BIN:-$target/release/profpipe}
attach=${ATTACH_BIN:-$target/release/examples/jvm_attach}
export PATH="${PROFPIPE_TOOLS:-$HOME/.cache/profpipe-tools}/bin:$PATH"
[ -x "$attach" ] || cargo build --release --quiet --example jvm_attach
attach=$(realpath "$attach")
if [[ $parts == *host* ]]; then
  [ -x "$bin" ] || cargo build --release --quiet
  bin=$(realpath "$bin")
fi
out=$(mktemp -d /tmp/profpipe-jit.XXXXXX)
workers=()
cleanup() {
  for p in "${workers[@]}"; do
    kill "$p" 2>/dev/null || true
    rm -f "/tmp/perf-$p.map" # a JVM or Node.js never removes its map
  done
}
trap cleanup EXIT
hz=$(getconf CLK_TCK)

# The whole-host run: CPU % of one core (user+sys of the agent and its reaped
# children over the wall time) and the largest RSS of the agent or any child
# (`time` reports the children's maximum: usually perf script's).
host_run() { # name
  local dir=$out/$1
  mkdir -p "$dir"
  (cd "$dir" && /usr/bin/time -v -o "$dir/time" timeout -s INT "$duration" \
    "$bin" --log info run > "$dir/agent.log" 2>&1) || true
  awk -F': ' '/User time/ {u=$2} /System time/ {s=$2} /Elapsed \(wall/ {w=$2}
    /Maximum resident/ {m=$2}
    END { n = split(w, p, ":"); secs = 0; for (i = 1; i <= n; i++) secs = secs * 60 + p[i];
          printf "%.2f %.1f %.1f\n", (u + s) / secs * 100, m / 1024, u + s }' "$dir/time"
}

if [[ $parts == *host* ]]; then
  echo "== whole host, no JVM or Node.js (${duration}s)"
  read -r base_pct base_rss base_cpu < <(host_run baseline)
fi

javac -d "$out/classes" tests/programs/JitBusy.java
java -XX:+PreserveFramePointer -cp "$out/classes" JitBusy 100000 measure-jit >/dev/null 2>&1 &
jvm=$!; workers+=("$jvm")
# In $out: with --perf-basic-prof V8 also writes an isolate-*.log in its cwd.
(cd "$out" && exec node --perf-basic-prof "$OLDPWD/tests/programs/busy.js" 100000 measure-jit) >/dev/null 2>&1 &
workers+=($!)
sleep 12 # past discovery's default min_age (10 s), and C2 has compiled the hot loop

echo "== one attach + perf map, 10 calls each"
listener_ticks() {
  local t=0
  for task in /proc/$jvm/task/*; do
    if [ "$(cat "$task/comm" 2>/dev/null)" = "Attach Listener" ]; then
      t=$(awk '{print $14 + $15}' "$task/stat")
    fi
  done
  echo "$t"
}
measure() { # label, command...
  local label=$1; shift
  local cpu=0 rss=0 wall=0 t0 t1
  "$@" >/dev/null # the listener exists before counting its ticks
  t0=$(listener_ticks)
  for _ in $(seq 10); do
    /usr/bin/time -f '%U %S %M %e' -o "$out/one" "$@" >/dev/null
    read -r u s m e < "$out/one"
    cpu=$(awk -v a="$cpu" -v u="$u" -v s="$s" 'BEGIN { print a + u + s }')
    wall=$(awk -v a="$wall" -v e="$e" 'BEGIN { print a + e }')
    [ "$m" -gt "$rss" ] && rss=$m
  done
  t1=$(listener_ticks)
  awk -v l="$label" -v c="$cpu" -v r="$rss" -v w="$wall" -v j=$((t1 - t0)) -v hz="$hz" \
    'BEGIN { printf "| %s | %.3f | %.1f | %.3f | %.3f |\n", l, c / 10, r / 1024, w / 10, j / hz / 10 }'
}
{
  echo "| one perf-map write | caller CPU s per call | caller peak RSS MiB | wall s per call | JVM Attach Listener CPU s per call |"
  echo "|---|---|---|---|---|"
  measure "profpipe, in-process attach (examples/jvm_attach)" "$attach" "$jvm" perfmap
  measure "jcmd PID Compiler.perfmap" jcmd "$jvm" Compiler.perfmap
} | tee "$out/attach.md"
map_lines=$(wc -l < "/tmp/perf-$jvm.map")
echo "perf map: $map_lines lines"

[[ $parts == *host* ]] || exit 0
echo "== whole host, one JVM + one Node.js (${duration}s)"
read -r jit_pct jit_rss jit_cpu < <(host_run jit)
{
  echo "| ${duration} s, default pipeline | agent + children CPU % of one core | CPU s | largest RSS of the agent or a child MiB |"
  echo "|---|---|---|---|"
  echo "| no JVM or Node.js | $base_pct | $base_cpu | $base_rss |"
  echo "| + 1 busy JVM + 1 busy Node.js | $jit_pct | $jit_cpu | $jit_rss |"
} | tee "$out/host.md"

# The JVM's samples in the collapsed files: `idx;container;comm;frames count`.
cat "$out"/jit/profiles/profile_*.col | awk '
  /^#/ { next }
  { n = split($0, f, ";"); if (f[3] != "java") next
    c = $NF; total += c
    if ($0 ~ /_\[j\]/) { jit += c; if ($0 !~ /\(\/tmp\/perf-[0-9]+\.map\)/) named += c }
    if ($0 ~ /JitBusy\.profpipeJava/) busy += c }
  END { printf "java samples: %d; with JIT frames: %d; all JIT frames named: %d (%.1f%%); naming JitBusy.profpipeJava*: %d (%.1f%% of all)\n",
        total, jit, named, jit ? named / jit * 100 : 0, busy, total ? busy / total * 100 : 0 }' \
  | tee "$out/named.txt"
grep -cE ' (WARN|ERROR) ' "$out/jit/agent.log" | sed 's/^/agent log lines above INFO: /' || true
echo "results in $out"
