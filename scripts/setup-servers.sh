#!/usr/bin/env bash
# Installs the real servers the sink tests run against, at pinned versions, into
# $PROFPIPE_TOOLS (default ~/.cache/profpipe-tools), skipped when already there.
# The tests start them themselves, on 127.0.0.1 ports of their own.
set -euo pipefail

TANSU_VERSION=0.6.0
S3S_FS_VERSION=0.14.1

. "$(dirname "$0")/tools-lib.sh"

# tansu: a Kafka-protocol broker (13-36 minutes to build on two cores, once per
# machine: the binary is cached in $tools). `dynostore` gives it its memory storage.
if ! installed tansu "$TANSU_VERSION" || [ ! -x "$tools/bin/tansu" ]; then
  echo "setup: cargo install tansu --version $TANSU_VERSION --features dynostore (long: 13-36 min)"
  cargo install --quiet --locked --force --root "$tools" tansu --version "$TANSU_VERSION" --features dynostore
  stamp tansu "$TANSU_VERSION"
fi

# s3s-fs: an S3-protocol server over a directory, checking SigV4 signatures
# (about 3.5 minutes to build).
if ! installed s3s-fs "$S3S_FS_VERSION" || [ ! -x "$tools/bin/s3s-fs" ]; then
  echo "setup: cargo install s3s-fs --version $S3S_FS_VERSION --features binary"
  cargo install --quiet --locked --force --root "$tools" s3s-fs --version "$S3S_FS_VERSION" --features binary
  stamp s3s-fs "$S3S_FS_VERSION"
fi

echo "setup-servers: ok (tansu $TANSU_VERSION, s3s-fs $S3S_FS_VERSION in $tools/bin)"
