#!/usr/bin/env bash
# The one command that installs what the tests need and runs all of them.
# .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
export PROFPIPE_TOOLS=${PROFPIPE_TOOLS:-$HOME/.cache/profpipe-tools}
export PATH="$PROFPIPE_TOOLS/bin:$PATH"
target=${CARGO_TARGET_DIR:-target}
# A one-shot build gains nothing from incremental state but gigabytes of disk.
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
conformance=${PROFPIPE_CONFORMANCE:-../shared/conformance}

step() { printf '\n==> %s\n' "$*"; }

step "setup"
PROFPIPE_SKIP_SERVERS=1 bash scripts/setup-test-env.sh
# The servers build for a long time on a fresh machine; the project's own build has
# long single-threaded stretches (fat LTO), so they build side by side.
mkdir -p "$target"
servers_log="$target/setup-servers.log"
bash scripts/setup-servers.sh >"$servers_log" 2>&1 &
servers=$!

step "format and lints"
cargo fmt --check
cargo clippy --all-targets --quiet -- -D warnings

step "build (release)"
cargo build --release --quiet

step "example pipelines validate"
"$target/release/profpipe" validate pipelines/*.toml

step "folding conformance (FlameGraph + inferno suites)"
bash "$conformance/collapse-perf/check.sh" "$target/release/profpipe" fold

step "folding equivalence with inferno on a fresh capture from this machine"
PROFPIPE_BIN="$target/release/profpipe" bash scripts/fold-equivalence.sh

step "test servers (tansu, s3s-fs)"
if ! wait "$servers"; then
  cat "$servers_log"
  echo "setup-servers failed" >&2
  exit 1
fi
tail -n 1 "$servers_log"

step "unit and integration tests"
df -h "$target" | tail -n 1
cargo test --quiet 2>&1 | tee "$target/test-output.txt"

# Last, so a finding never hides the tests' results: one build of the fuzz targets
# (about 7 minutes), then each target briefly on its seeds (FUZZ_SECONDS each).
step "fuzz targets (${FUZZ_SECONDS:-20}s each)"
case "$target" in /*) fuzz_dir="$target/fuzz" ;; *) fuzz_dir="$PWD/$target/fuzz" ;; esac
CARGO_FUZZ_TARGET_DIR="$fuzz_dir" bash scripts/fuzz.sh all "${FUZZ_SECONDS:-20}s"
