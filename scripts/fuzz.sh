#!/usr/bin/env bash
# Builds the fuzz targets (fuzz/, cargo-fuzz + libFuzzer) once and runs them.
#
#   scripts/fuzz.sh [TARGET|all] [LIMIT]
#
# LIMIT is a time (`30s`, `5m`, `2h`: -max_total_time) or a number of executions
# (`10000000`: -runs); default `30s` per target. TARGET defaults to all of them, one
# after the other. Examples:
#
#   scripts/fuzz.sh all 20s                    # CI: every target briefly
#   nice -n 19 scripts/fuzz.sh perf_script 10000000
#
# Built with debug assertions and overflow checks (`-a`), no sanitizer (the code has
# no unsafe beyond one ASCII fast path; overflow checks are what found the bugs).
# The corpora live in fuzz/corpus/<target> (not committed), seeded from real inputs
# by scripts/fuzz-seeds.py; a crash stops the run, leaves its input in
# fuzz/artifacts/<target>/ and makes this script fail. Each run ends with
# libFuzzer's final stats (executions, time) on stderr.
#
# Environment: CARGO_FUZZ_TARGET_DIR (build output; default fuzz/target),
# PROFPIPE_CONFORMANCE (the public conformance captures used as seeds; default
# ../shared/conformance).
set -euo pipefail
cd "$(dirname "$0")/.."
export PROFPIPE_TOOLS=${PROFPIPE_TOOLS:-$HOME/.cache/profpipe-tools}
export PATH="$PROFPIPE_TOOLS/bin:$PATH"
target_dir=${CARGO_FUZZ_TARGET_DIR:-$PWD/fuzz/target}
conformance=${PROFPIPE_CONFORMANCE:-../shared/conformance}

which=${1:-all}
limit=${2:-30s}
case "$limit" in
  *s) flag="-max_total_time=${limit%s}" ;;
  *m) flag="-max_total_time=$(( ${limit%m} * 60 ))" ;;
  *h) flag="-max_total_time=$(( ${limit%h} * 3600 ))" ;;
  *[!0-9]*|'') echo "fuzz.sh: LIMIT is 30s, 5m, 2h or a number of executions, not '$limit'" >&2; exit 2 ;;
  *) flag="-runs=$limit" ;;
esac

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "fuzz.sh: cargo-fuzz is not installed (scripts/setup-test-env.sh installs it)" >&2
  exit 2
fi

# Stable toolchain: cargo-fuzz needs nightly flags (-Zsanitizer=..., sancov), which
# RUSTC_BOOTSTRAP allows on stable.
build_flags=(--sanitizer none -a --target-dir "$target_dir")
export RUSTC_BOOTSTRAP=1
targets=$(cd fuzz && cargo fuzz list)
if [ "$which" != all ]; then
  grep -qx "$which" <<<"$targets" || { echo "fuzz.sh: no target '$which'; targets: $(echo $targets)" >&2; exit 2; }
  targets=$which
fi
echo "fuzz.sh: building the fuzz targets"
(cd fuzz && cargo fuzz build "${build_flags[@]}")

python3 scripts/fuzz-seeds.py fuzz/corpus "$conformance"

# Inputs past these sizes teach little and run slowly; the disk buffer's directories
# need room for a few segments.
max_len() {
  case "$1" in
    disk_buffer) echo 32768 ;;
    perf_script|line_formats|http_push) echo 16384 ;;
    *) echo 8192 ;;
  esac
}

for t in $targets; do
  echo "fuzz.sh: $t ($limit)"
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  (cd fuzz && cargo fuzz run "${build_flags[@]}" "$t" "corpus/$t" -- \
    "$flag" -max_len="$(max_len "$t")" -rss_limit_mb=2048 -timeout=30 \
    -print_final_stats=1 -artifact_prefix="artifacts/$t/")
done
echo "fuzz.sh: ok"
