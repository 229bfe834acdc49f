#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine (run as root).
# Idempotent: what is already installed is skipped. Cargo-installed tools go to
# $PROFPIPE_TOOLS (default ~/.cache/profpipe-tools), outside the clone, so later runs
# on the same machine reuse them.
set -euo pipefail

# Pinned versions: a fresh machine runs exactly what the last green run ran.
INFERNO_VERSION=0.12.8
PY_SPY_VERSION=0.4.3
# A small pure-Python distribution the version-tag test imports (tests/programs/versions.py).
ATTRS_VERSION=24.2.0
RBSPY_VERSION=0.55.0
# A pure-JS pprof decoder: the tests check our pprof with a decoder that is not ours.
PPROF_FORMAT_VERSION=2.3.2
# Builds and runs the fuzz targets (fuzz/, scripts/fuzz.sh) on the stable toolchain.
CARGO_FUZZ_VERSION=0.13.2
# OpenTelemetry's generated Python classes (and the protobuf runtime they need): the
# tests decode our OTLP profiles with them (scripts/check-otlp.py). 1.45.2's
# profiles/v1development classes are built from opentelemetry-proto v1.10.0, the
# release src/formats/otlp/proto.rs follows.
OTEL_PROTO_PY_VERSION=1.45.2

. "$(dirname "$0")/tools-lib.sh"

need_apt=()
command -v perf >/dev/null 2>&1 || need_apt+=(linux-perf)
command -v gcc >/dev/null 2>&1 || need_apt+=(gcc)
command -v ruby >/dev/null 2>&1 || need_apt+=(ruby)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3 python3-pip)
[ -x /usr/bin/time ] || need_apt+=(time)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs npm)
# The JVM of tests/jit_runtimes.rs: JDK 17 or later has Compiler.perfmap. Pinned to
# its major version, Debian 12's default JDK (the archive drops superseded point
# releases, so an exact one would not install for long).
command -v javac >/dev/null 2>&1 || need_apt+=(openjdk-17-jdk-headless)
command -v unshare >/dev/null 2>&1 || need_apt+=(util-linux)
# rdkafka builds its bundled librdkafka with cmake against these.
command -v cmake >/dev/null 2>&1 || need_apt+=(cmake)
for pkg in libcurl4-openssl-dev libsasl2-dev libssl-dev zlib1g-dev libzstd-dev; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# inferno: the reference for folding output and speed (about a minute to build).
if ! installed inferno "$INFERNO_VERSION" || [ ! -x "$tools/bin/inferno-collapse-perf" ]; then
  echo "setup: cargo install inferno --version $INFERNO_VERSION"
  cargo install --quiet --locked --force --root "$tools" inferno --version "$INFERNO_VERSION"
  stamp inferno "$INFERNO_VERSION"
fi

# py-spy: the Python profiler (a binary wheel from PyPI).
# Always the pinned one from $tools (which test.sh puts first on PATH), never whatever
# py-spy the machine happens to have.
if ! installed py-spy "$PY_SPY_VERSION" || [ ! -x "$tools/bin/py-spy" ]; then
  echo "setup: pip install py-spy==$PY_SPY_VERSION"
  rm -rf "$tools/py-spy"
  python3 -m pip install --quiet --target "$tools/py-spy" "py-spy==$PY_SPY_VERSION" 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages --target "$tools/py-spy" "py-spy==$PY_SPY_VERSION"
  mkdir -p "$tools/bin"
  ln -sf "$tools/py-spy/bin/py-spy" "$tools/bin/py-spy"
  stamp py-spy "$PY_SPY_VERSION"
fi

# opentelemetry-proto: an independent OTLP profiles decoder, kept apart from the
# system's Python packages (scripts/check-otlp.py puts it on sys.path).
if ! installed opentelemetry-proto "$OTEL_PROTO_PY_VERSION" || [ ! -d "$tools/otel-proto/opentelemetry/proto/profiles" ]; then
  echo "setup: pip install opentelemetry-proto==$OTEL_PROTO_PY_VERSION"
  rm -rf "$tools/otel-proto"
  python3 -m pip install --quiet --target "$tools/otel-proto" "opentelemetry-proto==$OTEL_PROTO_PY_VERSION" 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages --target "$tools/otel-proto" "opentelemetry-proto==$OTEL_PROTO_PY_VERSION"
  stamp opentelemetry-proto "$OTEL_PROTO_PY_VERSION"
fi

# attrs: installed with `pip --target` like py-spy, into a directory the test puts on
# PYTHONPATH; its frames must show `[attrs==$ATTRS_VERSION]` (found through its
# dist-info there).
if ! installed attrs "$ATTRS_VERSION" || [ ! -d "$tools/python-packages/attrs-$ATTRS_VERSION.dist-info" ]; then
  echo "setup: pip install attrs==$ATTRS_VERSION"
  rm -rf "$tools/python-packages"
  python3 -m pip install --quiet --target "$tools/python-packages" "attrs==$ATTRS_VERSION" 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages --target "$tools/python-packages" "attrs==$ATTRS_VERSION"
  stamp attrs "$ATTRS_VERSION"
fi

# rbspy: the Ruby profiler (about 5 minutes to build on two cores).
if ! installed rbspy "$RBSPY_VERSION" || [ ! -x "$tools/bin/rbspy" ]; then
  echo "setup: cargo install rbspy --version $RBSPY_VERSION"
  cargo install --quiet --locked --force --root "$tools" rbspy --version "$RBSPY_VERSION"
  stamp rbspy "$RBSPY_VERSION"
fi

# cargo-fuzz: the fuzz targets' builder and runner (about 2 minutes to build).
if ! installed cargo-fuzz "$CARGO_FUZZ_VERSION" || [ ! -x "$tools/bin/cargo-fuzz" ]; then
  echo "setup: cargo install cargo-fuzz --version $CARGO_FUZZ_VERSION"
  cargo install --quiet --locked --force --root "$tools" cargo-fuzz --version "$CARGO_FUZZ_VERSION"
  stamp cargo-fuzz "$CARGO_FUZZ_VERSION"
fi

# The broker and the S3 server take the longest (tansu 13-36 minutes to build on two
# cores): scripts/test.sh installs them in the background while it builds the
# project (PROFPIPE_SKIP_SERVERS=1 here), everyone else gets them here.
if [ "${PROFPIPE_SKIP_SERVERS:-0}" != 1 ]; then
  bash "$(dirname "$0")/setup-servers.sh"
fi

# pprof-format: decodes pprof in Node, for the pprof decoder check
# (scripts/check-pprof.sh, run by tests/pprof_decoder.rs).
if ! installed pprof-format "$PPROF_FORMAT_VERSION" || [ ! -d "$tools/node/node_modules/pprof-format" ]; then
  echo "setup: npm install pprof-format@$PPROF_FORMAT_VERSION"
  mkdir -p "$tools/node"
  npm install --silent --no-audit --no-fund --prefix "$tools/node" "pprof-format@$PPROF_FORMAT_VERSION" >/dev/null
  stamp pprof-format "$PPROF_FORMAT_VERSION"
fi

# perf must be usable: this agent profiles the host as root.
if [ "$(cat /proc/sys/kernel/perf_event_paranoid)" -gt 1 ] && [ "$(id -u)" -ne 0 ]; then
  echo "setup: warning: perf_event_paranoid > 1 and not root; perf tests will fail" >&2
fi
echo "setup: ok (tools in $tools)"
