//! The runtime of a frame, named as the OpenTelemetry eBPF profiler names it in
//! the `profile.frame.type` location attribute (semantic conventions, `profile.*`;
//! opentelemetry-ebpf-profiler `libpf/interpretertype.go`).
//!
//! profpipe's frames say their runtime with inferno's and gProfiler's suffixes:
//!
//! ```text
//! do_syscall_64_[k]                         kernel     (perf, `kernel = true`)
//! run (/app/x.py:9)_[p]                     cpython    (py-spy, PyPerf)
//! fib - /tmp/app.rb:1_[rb]                  ruby       (rbspy)
//! java/lang/Thread::run_[j]               jvm        (a JIT frame from a JVM's perf map)
//! java/util/HashMap::get_[i]                jvm        (a frame Java inlined)
//! JS:*fib /tmp/app.js:1:13_[j]              v8js       (a JIT frame from Node's perf map)
//! __libc_start_main                         native     (no suffix)
//! ```
//!
//! A JIT frame (`_[j]`) comes from a perf map, which a JVM and Node.js both
//! write; V8 starts its names with the kind of code (`JS:`, `LazyCompile:`,
//! `Builtin:` ...), the JVM with a class, so the prefix tells them apart.

/// The attribute key, as the semantic conventions spell it.
pub const KEY: &str = "profile.frame.type";

/// A frame's runtime.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FrameType {
    Kernel,
    Native,
    Python,
    Ruby,
    Jvm,
    Node,
}

/// V8's prefixes of code kinds in `--perf-basic-prof` maps (older and newer V8).
const V8_PREFIXES: &[&str] = &[
    "JS:",
    "LazyCompile:",
    "Function:",
    "InterpretedFunction:",
    "Builtin:",
    "BytecodeHandler:",
    "Handler:",
    "Stub:",
    "Script:",
    "Eval:",
    "RegExp:",
    "Baseline:",
    "Maglev:",
    "Turbofan:",
    "Sparkplug:",
];

impl FrameType {
    /// The runtime a frame's suffix says; frames without one are native code.
    pub fn of(frame: &str) -> FrameType {
        if frame.ends_with("_[k]") {
            FrameType::Kernel
        } else if frame.ends_with("_[p]") {
            FrameType::Python
        } else if frame.ends_with("_[rb]") {
            FrameType::Ruby
        } else if frame.ends_with("_[i]") {
            FrameType::Jvm
        } else if frame.ends_with("_[j]") {
            if V8_PREFIXES.iter().any(|p| frame.starts_with(p)) {
                FrameType::Node
            } else {
                FrameType::Jvm
            }
        } else {
            FrameType::Native
        }
    }

    /// The attribute's value, as the eBPF profiler writes it.
    pub fn name(self) -> &'static str {
        match self {
            FrameType::Kernel => "kernel",
            FrameType::Native => "native",
            FrameType::Python => "cpython",
            FrameType::Ruby => "ruby",
            FrameType::Jvm => "jvm",
            FrameType::Node => "v8js",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_name_the_runtime() {
        for (frame, want) in [
            ("do_syscall_64_[k]", "kernel"),
            ("run (/app/x.py:9)_[p]", "cpython"),
            ("fib - /tmp/app.rb:1_[rb]", "ruby"),
            ("java/lang/Thread::run_[j]", "jvm"),
            ("java/util/HashMap::get_[i]", "jvm"),
            ("JS:*fib /tmp/app.js:1:13_[j]", "v8js"),
            ("LazyCompile:~main /tmp/a.js:2_[j]", "v8js"),
            ("__libc_start_main", "native"),
            ("python3", "native"),
            // A suffix counts only at the end.
            ("f_[k]x", "native"),
        ] {
            assert_eq!(FrameType::of(frame).name(), want, "{frame}");
        }
    }
}
