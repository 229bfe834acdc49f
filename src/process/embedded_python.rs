//! Embedded Python: processes that map libpython without being a Python interpreter
//! (Envoy, Bazel-built tools, vim, services with a scripting hook). py-spy pointed at
//! them fails (gProfiler logged 200+ such errors a day), so discovery marks them and
//! selection skips them.
//!
//! The rules are gProfiler's (pinterest fork), applied to the exe, the command line
//! and the pathnames of `/proc/PID/maps`:
//! 1. **Not embedded** if the exe's file name matches `^python[\d.]*$`, `-config` or
//!    `^(uwsgi|gunicorn|uvicorn)$`, or the command line matches `python.*\.py`,
//!    `python.*-m\s+\w+` or `python.*-c\s+`. A ` (deleted)` suffix of the exe (the
//!    interpreter was upgraded under a running process) is ignored.
//! 2. Otherwise **embedded** if a mapping matches one of [`EMBEDDED_MARKERS`]
//!    (Bazel runfiles, deleted `.so.1.0` libraries, `embedded-python` paths, ...),
//! 3. or if Python libraries are mapped but no `/bin/python` or `/usr/bin/python`
//!    binary is. (This can misfire for a statically linked Python whose binary has
//!    another name; rule 1 catches the usual names first.)
//!
//! Everything here is a pure function of (exe, cmdline, maps text); discovery feeds
//! the same [`EmbeddedEvidence`] line by line while streaming the maps file. The
//! whole decision over a maps text is `discovery::is_embedded_python`, next to
//! the classifier it runs: this module is the rules only, and imports nothing from
//! discovery (discovery imports it).

use std::sync::LazyLock;

use regex::bytes::Regex as BytesRegex;
use regex::Regex;

/// Exe file names of real interpreters (rule 1).
pub const INTERPRETER_EXE_PATTERNS: [&str; 3] =
    [r"^python[\d.]*$", r"-config", r"^(uwsgi|gunicorn|uvicorn)$"];
/// Command lines of real interpreters (rule 1).
pub const INTERPRETER_CMDLINE_PATTERNS: [&str; 3] =
    [r"python.*\.py", r"python.*-m\s+\w+", r"python.*-c\s+"];
/// Mapped paths that mark embedded Python (rule 2).
pub const EMBEDDED_MARKERS: [&str; 6] = [
    r"/runfiles/python\d+_",
    r"/tmp/.*runfiles.*python",
    r"\.so\.1\.0.*\(deleted\)",
    r"/embedded[_-]python/",
    r"\.so.*python.*embedded",
    r"/app/.*python.*/bin/python",
];
/// A mapped interpreter binary (rule 3).
pub const BIN_PYTHON: &str = r"^/(usr/)?bin/python";

static INTERPRETER_EXE: LazyLock<Regex> = LazyLock::new(|| any_of(&INTERPRETER_EXE_PATTERNS));
static INTERPRETER_CMDLINE: LazyLock<Regex> =
    LazyLock::new(|| any_of(&INTERPRETER_CMDLINE_PATTERNS));
static MARKERS: LazyLock<BytesRegex> = LazyLock::new(|| {
    BytesRegex::new(&EMBEDDED_MARKERS.map(|p| format!("(?:{p})")).join("|")).expect("valid regex")
});
static BIN_PYTHON_RE: LazyLock<BytesRegex> =
    LazyLock::new(|| BytesRegex::new(BIN_PYTHON).expect("valid regex"));

fn any_of(patterns: &[&str]) -> Regex {
    Regex::new(
        &patterns
            .iter()
            .map(|p| format!("(?:{p})"))
            .collect::<Vec<_>>()
            .join("|"),
    )
    .expect("valid regex")
}

/// The file name of an exe path, without the ` (deleted)` suffix the kernel appends
/// when the file was removed or replaced.
pub fn exe_basename(exe: &str) -> &str {
    let exe = exe.strip_suffix(" (deleted)").unwrap_or(exe);
    exe.rsplit('/').next().unwrap_or(exe)
}

/// Rule 1: the exe or command line says this is a real Python interpreter.
pub fn is_interpreter_by_name(exe: Option<&str>, cmdline: &str) -> bool {
    exe.is_some_and(|e| INTERPRETER_EXE.is_match(exe_basename(e)))
        || INTERPRETER_CMDLINE.is_match(cmdline)
}

/// What the mapped paths of one process say, accumulated one path at a time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EmbeddedEvidence {
    /// A path matched [`EMBEDDED_MARKERS`].
    pub marker: bool,
    /// A path matched [`BIN_PYTHON`].
    pub bin_python: bool,
}

impl EmbeddedEvidence {
    /// Looks at one mapped pathname (as it appears in maps, ` (deleted)` included).
    pub fn observe(&mut self, path: &[u8]) {
        if !self.marker && MARKERS.is_match(path) {
            self.marker = true;
        }
        if !self.bin_python && BIN_PYTHON_RE.is_match(path) {
            self.bin_python = true;
        }
    }

    /// Rules 2 and 3, for a process that maps Python and failed rule 1.
    pub fn is_embedded(&self) -> bool {
        self.marker || !self.bin_python
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpreter_names() {
        assert!(is_interpreter_by_name(Some("/usr/bin/python3.11"), ""));
        assert!(is_interpreter_by_name(
            Some("/usr/bin/python3.11 (deleted)"),
            ""
        ));
        assert!(is_interpreter_by_name(Some("/usr/local/bin/python"), ""));
        assert!(is_interpreter_by_name(
            Some("/usr/bin/uwsgi"),
            "uwsgi --ini app.ini"
        ));
        assert!(is_interpreter_by_name(Some("/opt/venv/bin/gunicorn"), ""));
        assert!(is_interpreter_by_name(
            Some("/usr/bin/x86_64-linux-gnu-python3.11-config"),
            ""
        ));
        assert!(is_interpreter_by_name(
            Some("/opt/py/bin/py3"),
            "python3 /srv/app.py"
        ));
        assert!(is_interpreter_by_name(None, "python -m http.server"));
        assert!(is_interpreter_by_name(None, "python3 -c import time"));
        assert!(!is_interpreter_by_name(
            Some("/usr/local/bin/envoy"),
            "envoy -c /etc/envoy.yaml"
        ));
        assert!(!is_interpreter_by_name(
            Some("/usr/bin/python3-something"),
            ""
        ));
        assert!(!is_interpreter_by_name(
            Some("/usr/bin/vim.basic"),
            "vim notes.txt"
        ));
    }

    #[test]
    fn markers_and_bin_python() {
        let mut e = EmbeddedEvidence::default();
        e.observe(b"/usr/lib/x86_64-linux-gnu/libpython3.8.so.1.0");
        assert_eq!(
            e,
            EmbeddedEvidence {
                marker: false,
                bin_python: false
            }
        );
        assert!(e.is_embedded(), "python mapped, no interpreter binary");
        e.observe(b"/usr/bin/python3.8");
        assert!(!e.is_embedded());
        e.observe(b"/tmp/x/libfoo.so.1.0 (deleted)");
        assert!(e.is_embedded());
    }
}
