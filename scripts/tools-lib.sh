# Sourced by the setup scripts: where pinned tools go, and the version stamps that
# make a pin change reinstall.
tools=${PROFPIPE_TOOLS:-$HOME/.cache/profpipe-tools}
mkdir -p "$tools"
installed() { [ "$(cat "$tools/.version-$1" 2>/dev/null)" = "$2" ]; }
stamp() { echo "$2" >"$tools/.version-$1"; }
