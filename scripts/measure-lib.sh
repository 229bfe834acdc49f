# Shared by scripts/measure-run-rss.sh and scripts/measure-memory-cap.sh (sourced
# from the repository root): the release binary, the file source -> file sink
# pipeline's TOML, and a run under `/usr/bin/time -v`.
bin=${PROFPIPE_BIN:-${CARGO_TARGET_DIR:-target}/release/profpipe}
command -v /usr/bin/time >/dev/null || { apt-get install -y -qq time >/dev/null; }
[ -x "$bin" ] || cargo build --release --quiet

# `[sources.<id>]` of type file reading <path> as <format>.
file_source_toml() { # id path format
  printf '[sources.%s]\ntype = "file"\npaths = ["%s"]\nformat = "%s"\n' "$1" "$2" "$3"
}

# `[sinks.local]` of type file writing <input>'s profiles under <dir> as <formats>
# (a TOML list's inside: `"folded", "collapsed"`).
file_sink_toml() { # input dir formats
  printf '[sinks.local]\ntype = "file"\ninputs = ["%s"]\npath = "%s"\nformats = [%s]\n' "$1" "$2" "$3"
}

# Runs `profpipe run --config <config>` under `/usr/bin/time -v` (its report in
# <dir>/time.txt, shown on failure); sets rss_kb (peak RSS, KiB) and secs (wall).
timed_run() { # config dir
  /usr/bin/time -v "$bin" --log warn run --config "$1" 2> "$2/time.txt" \
    || { cat "$2/time.txt" >&2; exit 1; }
  rss_kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$2/time.txt")
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$2/time.txt")
  secs=$(echo "$wall" | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }')
}
