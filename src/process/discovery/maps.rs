//! Runtime detection from `/proc/PID/maps`, one line at a time.
//!
//! A maps line is `address perms offset dev inode pathname`:
//!
//! ```text
//! 7f2c1a000000-7f2c1a021000 r--p 00000000 08:01 1835023    /usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0
//! 7f2c1b000000-7f2c1b021000 r-xp 00000000 08:01 1835099    /tmp/bazel/libpython3.9.so.1.0 (deleted)
//! 7ffd5c9e4000-7ffd5ca05000 rw-p 00000000 00:00 0          [stack]
//! ```
//!
//! Only the pathname matters. The patterns are gProfiler's:
//! - Python: `(^.+/(lib)?python[^/]*$)|(^.+/site-packages/.+?$)|(^.+/dist-packages/.+?$)`
//! - Ruby: `^.+/(lib)?ruby[^/]*$` (the `ruby` binary or `libruby`)
//! - Java (HotSpot): a `/libjvm.so`, unless an OpenJ9 `libj9vm` is mapped too
//!   (OpenJ9 has another attach mechanism, and answers SIGQUIT with a javacore);
//! - Node.js: the `node`/`nodejs` executable or a `libnode.so`.
//!
//! The first runtime whose pattern matches, in maps order (the exe is mapped first),
//! is the process's runtime. The classifier says when more lines cannot change the
//! answer, so the scanner stops reading there: at the first Ruby mapping; at the first
//! Python mapping of a process already known as an interpreter by name; at the first
//! embedded-Python marker otherwise. Other processes are read to the end (there is
//! no way to know a library is absent without reading all of it), line by line.

use std::sync::LazyLock;

use regex::bytes::Regex;

use super::info::Runtime;
use crate::process::embedded_python::{is_interpreter_by_name, EmbeddedEvidence};

/// Mapped paths of a Python interpreter or library.
pub const PYTHON_MAPS_PATTERN: &str =
    r"(^.+/(lib)?python[^/]*$)|(^.+/site-packages/.+?$)|(^.+/dist-packages/.+?$)";
/// Mapped paths of a Ruby interpreter or library.
pub const RUBY_MAPS_PATTERN: &str = r"^.+/(lib)?ruby[^/]*$";
/// Mapped paths of a Node.js executable or library.
pub const NODE_MAPS_PATTERN: &str = r"^.+/(node|nodejs|libnode\.so[^/]*)$";

static PYTHON: LazyLock<Regex> = LazyLock::new(|| Regex::new(PYTHON_MAPS_PATTERN).expect("valid"));
static RUBY: LazyLock<Regex> = LazyLock::new(|| Regex::new(RUBY_MAPS_PATTERN).expect("valid"));
static NODE: LazyLock<Regex> = LazyLock::new(|| Regex::new(NODE_MAPS_PATTERN).expect("valid"));

/// What the maps say about a process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Classification {
    pub runtime: Option<Runtime>,
    /// Python is mapped, but the process is not a Python interpreter.
    pub embedded_python: bool,
}

/// Accumulates maps lines of one process.
pub(crate) struct MapsClassifier {
    interpreter_by_name: bool,
    runtime: Option<Runtime>,
    evidence: EmbeddedEvidence,
    last_path: Vec<u8>,
    /// An OpenJ9 VM library was seen: not a HotSpot JVM.
    openj9: bool,
}

impl MapsClassifier {
    pub(crate) fn new(exe: Option<&str>, cmdline: &str) -> MapsClassifier {
        MapsClassifier {
            interpreter_by_name: is_interpreter_by_name(exe, cmdline),
            runtime: None,
            evidence: EmbeddedEvidence::default(),
            last_path: Vec::new(),
            openj9: false,
        }
    }

    /// Feeds one line (with or without its newline). Returns true once further lines
    /// cannot change the classification.
    pub(crate) fn feed_line(&mut self, line: &[u8]) -> bool {
        let path = pathname(line);
        // Anonymous mappings, [heap], [stack], [vdso]...; consecutive segments of one
        // file repeat its path: look at each file once.
        if !path.starts_with(b"/") || path == self.last_path.as_slice() {
            return false;
        }
        self.last_path.clear();
        self.last_path.extend_from_slice(path);
        if self.runtime.is_none() {
            if PYTHON.is_match(path) {
                self.runtime = Some(Runtime::Python);
            } else if RUBY.is_match(path) {
                self.runtime = Some(Runtime::Ruby);
            } else if path.ends_with(b"/libjvm.so") {
                self.runtime = Some(Runtime::Java);
            } else if NODE.is_match(path) {
                self.runtime = Some(Runtime::Node);
            }
        }
        if memchr::memmem::find(path, b"libj9vm").is_some() {
            self.openj9 = true;
        }
        if !self.interpreter_by_name {
            self.evidence.observe(path);
        }
        self.decided()
    }

    fn decided(&self) -> bool {
        match self.runtime {
            Some(Runtime::Ruby) | Some(Runtime::Node) => true,
            // Read on: an OpenJ9 library may follow.
            Some(Runtime::Java) => false,
            Some(Runtime::Python) => self.interpreter_by_name || self.evidence.marker,
            None => false,
        }
    }

    pub(crate) fn finish(&self) -> Classification {
        let python = self.runtime == Some(Runtime::Python);
        let runtime = match self.runtime {
            Some(Runtime::Java) if self.openj9 => None,
            r => r,
        };
        Classification {
            runtime,
            embedded_python: python && !self.interpreter_by_name && self.evidence.is_embedded(),
        }
    }
}

/// The pathname field of a maps line: what follows the fifth field, trimmed.
fn pathname(line: &[u8]) -> &[u8] {
    let mut rest = line;
    for _ in 0..5 {
        let start = rest
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(rest.len());
        rest = &rest[start..];
        let end = rest
            .iter()
            .position(|b| b.is_ascii_whitespace())
            .unwrap_or(rest.len());
        rest = &rest[end..];
    }
    rest.trim_ascii()
}

/// Classifies a whole maps text (for tests and callers that already hold it).
pub fn classify(exe: Option<&str>, cmdline: &str, maps: &str) -> Classification {
    let mut c = MapsClassifier::new(exe, cmdline);
    for line in maps.lines() {
        if c.feed_line(line.as_bytes()) {
            break;
        }
    }
    c.finish()
}

/// The whole decision over a maps text: does this process embed Python (rather than
/// being an interpreter, or not using Python at all)?
pub fn is_embedded_python(exe: Option<&str>, cmdline: &str, maps: &str) -> bool {
    classify(exe, cmdline, maps).embedded_python
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Python interpreter, and a program that embeds one.
    const PYTHON: Classification = Classification {
        runtime: Some(Runtime::Python),
        embedded_python: false,
    };
    const EMBEDDED: Classification = Classification {
        runtime: Some(Runtime::Python),
        embedded_python: true,
    };

    fn maps(paths: &[&str]) -> String {
        paths
            .iter()
            .enumerate()
            .map(|(i, p)| {
                format!(
                    "7f00{i:08x}000-7f00{i:08x}fff r-xp 00000000 08:01 {} {p}\n",
                    1000 + i
                )
            })
            .collect()
    }

    #[test]
    fn pathname_field() {
        assert_eq!(
            pathname(b"7f2c-7f2d r--p 00000000 08:01 1835023    /usr/lib/libpython3.11.so.1.0\n"),
            b"/usr/lib/libpython3.11.so.1.0"
        );
        assert_eq!(pathname(b"7f2c-7f2d rw-p 00000000 00:00 0 \n"), b"");
        assert_eq!(
            pathname(b"7f2c-7f2d r-xp 00000000 08:01 9 /tmp/my dir/lib.so (deleted)"),
            b"/tmp/my dir/lib.so (deleted)"
        );
    }

    #[test]
    fn normal_python3_is_python_not_embedded() {
        let m = maps(&[
            "/usr/bin/python3.11",
            "/usr/bin/python3.11",
            "[heap]",
            "/usr/lib/python3.11/lib-dynload/_json.cpython-311-x86_64-linux-gnu.so",
            "/usr/lib/x86_64-linux-gnu/libc.so.6",
        ]);
        let c = classify(Some("/usr/bin/python3.11"), "python3 -c import time", &m);
        assert_eq!(c, PYTHON);
    }

    #[test]
    fn python_with_deleted_libpython_after_upgrade_is_not_embedded() {
        let m = maps(&[
            "/usr/bin/python3.9 (deleted)",
            "/usr/lib/x86_64-linux-gnu/libpython3.9.so.1.0 (deleted)",
        ]);
        let c = classify(
            Some("/usr/bin/python3.9 (deleted)"),
            "/usr/bin/python3.9 /srv/worker",
            &m,
        );
        assert_eq!(c, PYTHON);
    }

    #[test]
    fn envoy_with_libpython_is_embedded() {
        let m = maps(&[
            "/usr/local/bin/envoy",
            "/usr/lib/x86_64-linux-gnu/libpython3.8.so.1.0",
            "/usr/lib/x86_64-linux-gnu/libstdc++.so.6.0.30",
            "/usr/lib/x86_64-linux-gnu/libc.so.6",
        ]);
        let c = classify(
            Some("/usr/local/bin/envoy"),
            "envoy -c /etc/envoy/envoy.yaml",
            &m,
        );
        assert_eq!(c, EMBEDDED);
    }

    #[test]
    fn bazel_runfiles_tool_is_embedded() {
        let m = maps(&[
            "/build/bazel-out/k8-opt/bin/services/register/register",
            "/usr/bin/python3.9",
            "/tmp/bazel-sandbox/execroot/runfiles/python3_9_x86_64/lib/libpython3.9.so.1.0",
        ]);
        let c = classify(
            Some("/build/bazel-out/k8-opt/bin/services/register/register"),
            "register --port 9000",
            &m,
        );
        // A /usr/bin/python mapping does not save it: the runfiles marker decides.
        assert_eq!(c, EMBEDDED);
    }

    #[test]
    fn deleted_embedded_libpython_is_embedded() {
        let m = maps(&[
            "/opt/tool/bin/tool",
            "/usr/bin/python3",
            "/opt/tool/lib/libpython3.10.so.1.0 (deleted)",
        ]);
        let c = classify(Some("/opt/tool/bin/tool"), "tool serve", &m);
        assert!(c.embedded_python);
    }

    #[test]
    fn bazel_hermetic_interpreter_is_not_embedded() {
        let m = maps(&[
            "/tmp/bazel/runfiles/python3_11_x86_64/bin/python3",
            "/tmp/bazel/runfiles/python3_11_x86_64/lib/libpython3.11.so.1.0",
        ]);
        let c = classify(
            Some("/tmp/bazel/runfiles/python3_11_x86_64/bin/python3"),
            "python3 app.py",
            &m,
        );
        assert_eq!(c, PYTHON);
    }

    #[test]
    fn uwsgi_is_python_not_embedded() {
        let m = maps(&[
            "/usr/bin/uwsgi-core",
            "/usr/lib/uwsgi/plugins/python3_plugin.so",
            "/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0",
        ]);
        let c = classify(Some("/usr/bin/uwsgi"), "uwsgi --ini /etc/uwsgi/app.ini", &m);
        assert_eq!(c, PYTHON);
    }

    #[test]
    fn site_packages_extension_counts_as_python() {
        let m = maps(&[
            "/opt/app/server",
            "/opt/venv/lib/python3.11/site-packages/numpy/core/_multiarray_umath.so",
            "/usr/bin/python3",
        ]);
        let c = classify(Some("/opt/app/server"), "server", &m);
        assert_eq!(c, PYTHON);
    }

    #[test]
    fn ruby_binary_and_libruby() {
        let m = maps(&[
            "/usr/bin/ruby3.1",
            "/usr/lib/x86_64-linux-gnu/libruby-3.1.so.3.1",
        ]);
        assert_eq!(
            classify(Some("/usr/bin/ruby3.1"), "ruby app.rb", &m).runtime,
            Some(Runtime::Ruby)
        );
        let m = maps(&[
            "/opt/app/bin/puma-server",
            "/usr/lib/x86_64-linux-gnu/libruby-3.1.so.3.1",
        ]);
        assert_eq!(
            classify(Some("/opt/app/bin/puma-server"), "puma", &m).runtime,
            Some(Runtime::Ruby)
        );
    }

    #[test]
    fn hotspot_and_node_but_not_openj9() {
        let jdk = "/usr/lib/jvm/java-17-openjdk-amd64";
        let m = maps(&[
            &format!("{jdk}/bin/java"),
            &format!("{jdk}/lib/server/libjvm.so"),
            "/usr/lib/x86_64-linux-gnu/libc.so.6",
        ]);
        let java = classify(Some(&format!("{jdk}/bin/java")), "java Busy", &m);
        assert_eq!(java.runtime, Some(Runtime::Java));
        let m = maps(&[
            "/opt/ibm/java/bin/java",
            "/opt/ibm/java/lib/server/libjvm.so",
            "/opt/ibm/java/lib/default/libj9vm29.so",
        ]);
        assert_eq!(classify(None, "java X", &m).runtime, None);
        let m = maps(&["/usr/bin/node", "/usr/lib/x86_64-linux-gnu/libc.so.6"]);
        assert_eq!(
            classify(Some("/usr/bin/node"), "node app.js", &m).runtime,
            Some(Runtime::Node)
        );
        let m = maps(&["/usr/bin/nodemon-helper"]);
        assert_eq!(classify(None, "x", &m).runtime, None);
    }

    #[test]
    fn other_processes_have_no_runtime() {
        let m = maps(&[
            "/usr/bin/sleep",
            "/usr/lib/x86_64-linux-gnu/libc.so.6",
            "[vdso]",
        ]);
        assert_eq!(
            classify(Some("/usr/bin/sleep"), "sleep 60", &m),
            Classification::default()
        );
        // "python" elsewhere than at the start of the file name is not Python.
        let m = maps(&["/home/u/.vscode/ms-python/bin/helper"]);
        assert_eq!(classify(Some("/x/helper"), "helper", &m).runtime, None);
    }

    #[test]
    fn stops_early_when_decided() {
        let mut c = MapsClassifier::new(Some("/usr/bin/python3.11"), "");
        assert!(!c.feed_line(b"7f-7f r-xp 0 0:0 0 /usr/lib/x86_64-linux-gnu/libc.so.6"));
        assert!(c.feed_line(b"7f-7f r-xp 0 0:0 0 /usr/bin/python3.11"));
        let mut c = MapsClassifier::new(Some("/usr/local/bin/envoy"), "envoy");
        assert!(
            !c.feed_line(b"7f-7f r-xp 0 0:0 0 /usr/lib/libpython3.8.so.1.0"),
            "needs the whole file"
        );
    }
}
