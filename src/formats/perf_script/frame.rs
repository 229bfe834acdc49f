//! Naming frames: from the symbol and module of one `perf script` stack line to the
//! frame names that appear in a folded stack.
//!
//! A stack line looks like
//!
//! ```text
//!     7f533952bc77 _dl_check_map_versions+0x597 (/usr/lib/ld-2.28.so)
//!     ffffffff8103ce3b native_safe_halt ([kernel.kallsyms])
//!     7f722d142778 Ljava/io/PrintStream;::print (/tmp/perf-19982.map)
//!     5528335 [unknown] (/usr/lib/librustc_driver.so)
//! ```
//!
//! By the time the functions here run, the line has been split into its address, its
//! symbol (with any `+0x…` offset already removed) and its module (without the
//! parentheses). Everything here runs only on an interning-cache miss, so it favours
//! being obviously right over being fast.

use std::borrow::Cow;

use super::options::FoldOptions;

/// Appends to `out` the frame names for one stack line, in line order (callee first
/// when a line carries several inlined Java frames joined by `->`).
///
/// `java` is whether the process name starts with `java` (Java symbol tidying).
pub(super) fn name_frames(
    symbol: &str,
    module: &str,
    pc: &str,
    java: bool,
    opts: &FoldOptions,
    out: &mut Vec<String>,
) {
    let symbol = fix_rust_symbol(symbol);
    for (i, part) in symbol.split("->").enumerate() {
        let mut frame = match unknown_fallback(part, module, pc, opts) {
            Fallback::Symbol => tidy_generic(part),
            Fallback::Bracketed(name) => tidy_generic(&name),
            // `(/path/to/dso)` is kept whole: it is not an argument list.
            Fallback::Dso(name) => name,
        };
        if java {
            tidy_java(&mut frame);
        }
        if i > 0 {
            // Every part after the first of a Java `a->b->c` line is an inlined frame.
            if !frame.contains("_[i]") {
                frame.push_str("_[i]");
            }
        } else if opts.annotate_kernel && is_kernel_module(module) {
            frame.push_str("_[k]");
        } else if opts.annotate_jit && is_jit_module(module) && !frame.contains(JIT_SUFFIX) {
            frame.push_str(JIT_SUFFIX);
        }
        out.push(frame);
    }
}

enum Fallback {
    /// The symbol is known: use it.
    Symbol,
    /// `[unknown]` replaced by `[dso-basename]` or `[unknown <pc>]` style names.
    Bracketed(String),
    /// `[unknown]` replaced by `(/full/path/of/dso)` (gProfiler's convention).
    Dso(String),
}

/// Names an `[unknown]` symbol after its module where there is one:
///
/// ```text
///     4cb6 [unknown] (/usr/bin/gzip)      ->  [gzip]          (--addrs: [gzip <4cb6>])
///     ad8e80 [unknown] ([unknown])        ->  [unknown]       (--addrs: [unknown <ad8e80>])
/// ```
fn unknown_fallback(symbol: &str, module: &str, pc: &str, opts: &FoldOptions) -> Fallback {
    if symbol != "[unknown]" {
        return Fallback::Symbol;
    }
    let name = if module == "[unknown]" {
        if !opts.include_addrs {
            return Fallback::Symbol;
        }
        "unknown"
    } else {
        if opts.unknown_as_dso {
            return Fallback::Dso(format!("({})", module.replace(';', ":")));
        }
        module.rsplit('/').next().unwrap_or(module)
    };
    let mut out = String::with_capacity(name.len() + pc.len() + 5);
    out.push('[');
    out.push_str(name);
    if opts.include_addrs {
        out.push_str(" <");
        out.push_str(pc);
        out.push('>');
    }
    out.push(']');
    Fallback::Bracketed(out)
}

/// Replaces `;` (the folded-stack separator) and removes a C/C++ argument list:
///
/// ```text
///     std::vector<int>::push_back(int const&)        ->  std::vector<int>::push_back
///     net/http.(*Client).Do                          ->  unchanged (Go method receiver)
///     (anonymous namespace)::helper(int)             ->  (anonymous namespace)::helper
///     std::_Function_handler<void (int), main::{lambda(int)#1}>::_M_invoke(...)
///                                                    ->  std::_Function_handler<void (int), main::{lambda(int)#1}>::_M_invoke
/// ```
///
/// Only a `(` outside `<>`, `{}`, `[]` and earlier parentheses starts an argument list.
fn tidy_generic(symbol: &str) -> String {
    let mut s = symbol.replace(';', ":");
    let bytes = s.as_bytes();
    let mut depth: i64 = 0;
    // Index just past the most recent '.', to recognise Go's `pkg.(*T).M`.
    let mut after_dot = usize::MAX;
    let mut cut = bytes.len();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'<' | b'{' | b'[' => depth += 1,
            b'>' | b'}' | b']' | b')' => depth -= 1,
            b'(' => {
                if depth == 0 && after_dot != i && !s[i..].starts_with("(anonymous namespace)") {
                    cut = i;
                    break;
                }
                depth += 1;
            }
            b'.' => after_dot = i + 1,
            _ => {}
        }
    }
    s.truncate(cut);
    s
}

/// Java class names lose their JVM `L` prefix: `Lorg/mozilla/Foo:.call` -> `org/mozilla/Foo:.call`.
fn tidy_java(frame: &mut String) {
    if frame.starts_with('L') && frame.contains('/') {
        frame.remove(0);
    }
}

/// Kernel modules: `[kernel.kallsyms]`, `[nf_conntrack_ipv4]`, `foo.ko`, and vmlinux images
/// such as `/usr/lib/debug/boot/vmlinux-5.4.14-cloudflare-2020.1.11`.
pub(super) fn is_kernel_module(module: &str) -> bool {
    module != "[unknown]"
        && !is_jit_module(module)
        && (module.starts_with('[') || module.ends_with(".ko") || is_vmlinux(module))
}

/// `vmlinux`, optionally followed by a version made of `[A-Za-z0-9._-]`.
fn is_vmlinux(module: &str) -> bool {
    match module.rfind("vmlinux") {
        Some(at) => module.as_bytes()[at..]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')),
        None => false,
    }
}

/// The suffix of JIT frames: gProfiler's Java frames and inferno's `--jit`.
pub const JIT_SUFFIX: &str = "_[j]";

/// Whether frames of `module` are JIT code and get [`JIT_SUFFIX`] (with
/// `annotate_jit`): the one place this is decided, for `perf script` text and for
/// anything else that names perf's frames.
///
/// ```text
///     7feb68ec7dbe long Busy.spin(long)+0x19e (/tmp/perf-14902.map)  <- a JVM's compiled method
///     7feb6894132f Interpreter+0x7af (/tmp/perf-14902.map)           <- its interpreter
///     7feb68938cc9 StubRoutines (1)+0xc9 (/tmp/perf-14902.map)       <- its call stub
///     3a1c2f LazyCompile:*spin /srv/app.js:3 (/tmp/perf-88.map)       <- Node.js
///     7f12 [unknown] ([JIT] tid 88)                                  <- newer perf's name
///     1 foo (/root/.debug/jit/java-jit-x/jitted-88-12.so)            <- a jitdump
///     8282d2 JavaCalls::call_helper+0x302 (.../libjvm.so)            <- not JIT: the VM's C++
/// ```
///
/// Everything a JVM or Node.js puts in its perf map is JIT-generated code: compiled
/// and inlined methods (a HotSpot map has no inline frames: an inlined method is part
/// of its caller's code), the template interpreter and stubs; so all of them are
/// `_[j]`, as gProfiler's Java profiler (async-profiler with `ann`) marks its Java
/// frames. The VM's own C++ frames in `libjvm.so` carry no suffix there either.
/// Unresolved frames of a map (`[unknown]`) are JIT code too and are marked alike.
pub fn is_jit_module(module: &str) -> bool {
    (module.starts_with("/tmp/perf-") && module.ends_with(".map"))
        || (module.contains("/jitted-") && module.ends_with(".so"))
        || module.starts_with("[JIT] tid ")
}

/// Length of the legacy Rust symbol hash suffix, `h` and 16 hex digits.
const RUST_HASH_LEN: usize = 17;

/// Whether `symbol` ends in a legacy Rust hash (`…h0123456789abcdef`).
pub(super) fn has_rust_hash(symbol: &str) -> bool {
    let b = symbol.as_bytes();
    b.len() >= RUST_HASH_LEN
        && b[b.len() - RUST_HASH_LEN] == b'h'
        && b[b.len() - RUST_HASH_LEN + 1..]
            .iter()
            .all(u8::is_ascii_hexdigit)
}

/// Escapes of the legacy Rust mangling scheme.
const RUST_ESCAPES: &[(&str, &str)] = &[
    ("$SP$", "@"),
    ("$BP$", "*"),
    ("$RF$", "&"),
    ("$LT$", "<"),
    ("$GT$", ">"),
    ("$LP$", "("),
    ("$RP$", ")"),
    ("$C$", ","),
    ("$u7e$", "~"),
    ("$u20$", " "),
    ("$u27$", "'"),
    ("$u3d$", "="),
    ("$u5b$", "["),
    ("$u5d$", "]"),
    ("$u7b$", "{"),
    ("$u7d$", "}"),
    ("$u3b$", ";"),
    ("$u2b$", "+"),
    ("$u21$", "!"),
    ("$u22$", "\""),
];

/// Finishes demangling a Rust symbol that a profiler left half-mangled:
///
/// ```text
///     _$LT$grep..Searcher$LT$$u27$s$GT$$GT$::run::h30ecedc997ad7e32  ->  <grep::Searcher<'s>>::run
/// ```
///
/// Symbols without a trailing Rust hash are returned unchanged.
pub(super) fn fix_rust_symbol(symbol: &str) -> Cow<'_, str> {
    if !has_rust_hash(symbol) {
        return Cow::Borrowed(symbol);
    }
    let mut rest = &symbol[..symbol.len() - RUST_HASH_LEN];
    rest = rest.strip_suffix("::").unwrap_or(rest);
    if rest.starts_with("_$") {
        rest = &rest[1..];
    }
    let mut out = String::with_capacity(rest.len());
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("..") {
            out.push_str("::");
            rest = r;
        } else if let Some(r) = rest.strip_prefix('.') {
            out.push('.');
            rest = r;
        } else if rest.starts_with('$') {
            match RUST_ESCAPES.iter().find(|(esc, _)| rest.starts_with(esc)) {
                Some((esc, plain)) => {
                    out.push_str(plain);
                    rest = &rest[esc.len()..];
                }
                None => {
                    out.push_str(rest);
                    break;
                }
            }
        } else {
            let end = rest.find(['$', '.']).unwrap_or(rest.len());
            out.push_str(&rest[..end]);
            rest = &rest[end..];
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tidy_generic_cases() {
        assert_eq!(tidy_generic("foo(int, char)"), "foo");
        assert_eq!(tidy_generic("a;b"), "a:b");
        assert_eq!(
            tidy_generic("net/http.(*Client).Do"),
            "net/http.(*Client).Do"
        );
        assert_eq!(
            tidy_generic("(anonymous namespace)::f(int)"),
            "(anonymous namespace)::f"
        );
        assert_eq!(
            tidy_generic("std::function<void (int)>::operator()(int) const"),
            "std::function<void (int)>::operator"
        );
        assert_eq!(tidy_generic("{lambda(int)#1}::x(y)"), "{lambda(int)#1}::x");
        assert_eq!(tidy_generic("(foo)"), "");
    }

    #[test]
    fn kernel_and_jit_modules() {
        assert!(is_kernel_module("[kernel.kallsyms]"));
        assert!(is_kernel_module("/lib/modules/x/foo.ko"));
        assert!(is_kernel_module(
            "/boot/vmlinux-5.4.14-cloudflare-2020.1.11"
        ));
        assert!(!is_kernel_module("[unknown]"));
        assert!(!is_kernel_module("[JIT] tid 4242"));
        assert!(!is_kernel_module("/boot/vmlinux-5.4)"));
        assert!(is_jit_module("/tmp/perf-123.map"));
        assert!(is_jit_module("/root/.debug/jit/x/jitted-1-2.so"));
        assert!(is_jit_module("[JIT] tid 4242"));
        assert!(!is_jit_module("/usr/lib/libc.so"));
        assert!(!is_jit_module(
            "/usr/lib/jvm/java-17-openjdk-amd64/lib/server/libjvm.so"
        ));
    }

    #[test]
    fn rust_symbols() {
        assert_eq!(
            fix_rust_symbol("_$LT$grep..Searcher$LT$$u27$s$GT$$GT$::run::h30ecedc997ad7e32"),
            "<grep::Searcher<'s>>::run"
        );
        assert_eq!(fix_rust_symbol("main"), "main");
        assert_eq!(
            fix_rust_symbol("std::rt::lang_start::h0123456789abcdef"),
            "std::rt::lang_start"
        );
        assert_eq!(fix_rust_symbol("a$zz$b::h0123456789abcdef"), "a$zz$b");
        // Multi-byte characters before a would-be hash must not panic.
        assert_eq!(fix_rust_symbol("é0123456789abcdef"), "é0123456789abcdef");
    }

    #[test]
    fn unknown_frames() {
        let mut opts = FoldOptions::default();
        let mut out = Vec::new();
        name_frames("[unknown]", "/usr/bin/gzip", "4cb6", false, &opts, &mut out);
        name_frames("[unknown]", "[unknown]", "4cb6", false, &opts, &mut out);
        opts.include_addrs = true;
        name_frames("[unknown]", "/usr/bin/gzip", "4cb6", false, &opts, &mut out);
        name_frames("[unknown]", "[unknown]", "4cb6", false, &opts, &mut out);
        opts.include_addrs = false;
        opts.unknown_as_dso = true;
        name_frames("[unknown]", "/usr/bin/gzip", "4cb6", false, &opts, &mut out);
        assert_eq!(
            out,
            [
                "[gzip]",
                "[unknown]",
                "[gzip <4cb6>]",
                "[unknown <4cb6>]",
                "(/usr/bin/gzip)"
            ]
        );
    }

    #[test]
    fn java_inline_and_annotations() {
        let opts = FoldOptions {
            annotate_kernel: true,
            annotate_jit: true,
            ..FoldOptions::default()
        };
        let mut out = Vec::new();
        name_frames(
            "Lfoo/Bar;::a->Lfoo/Baz;::b",
            "/tmp/perf-1.map",
            "1",
            true,
            &opts,
            &mut out,
        );
        name_frames("schedule", "[kernel.kallsyms]", "1", false, &opts, &mut out);
        assert_eq!(out, ["foo/Bar:::a_[j]", "foo/Baz:::b_[i]", "schedule_[k]"]);
        // What a HotSpot map (Compiler.perfmap) and Node.js name, as perf prints them.
        out.clear();
        let map = "/tmp/perf-14902.map";
        name_frames("long Busy.spin(long)", map, "1", true, &opts, &mut out);
        name_frames("Interpreter", map, "1", true, &opts, &mut out);
        name_frames(
            "LazyCompile:*spin /srv/app.js:3",
            "/tmp/perf-8.map",
            "1",
            false,
            &opts,
            &mut out,
        );
        name_frames(
            "JavaCalls::call_helper",
            "/usr/lib/libjvm.so",
            "1",
            true,
            &opts,
            &mut out,
        );
        assert_eq!(
            out,
            [
                "long Busy.spin_[j]",
                "Interpreter_[j]",
                "LazyCompile:*spin /srv/app.js:3_[j]",
                "JavaCalls::call_helper"
            ]
        );
    }
}
