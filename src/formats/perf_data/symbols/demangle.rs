//! Demangling as `perf script` 6.1 (Debian, libiberty's demangler) prints names: C++
//! without parameters or return type (`DMGL_NO_OPTS`), Rust (legacy `_ZN…17h<hash>E`
//! and v0 `_R…`) without hashes, everything else (C) as it is.

use std::borrow::Cow;

pub fn demangle(name: &str) -> Cow<'_, str> {
    // Rust symbols lose a `.suffix` (`.llvm.123`, BOLT's `.warm`), as libiberty's
    // Rust demangler drops it.
    let (base, _) = name.split_once('.').unwrap_or((name, ""));
    if base.starts_with("_R") || is_rust_legacy(base) {
        if let Ok(d) = rustc_demangle::try_demangle(base) {
            let mut out = format!("{d:#}");
            // A legacy path element that starts with an escape keeps the `_` put in
            // front of it here (`::_{{closure}}`, `::_<impl …>`); perf drops it.
            if base.starts_with("_ZN") && out.contains("_") {
                out = out.replace("::_{", "::{").replace("::_<", "::<");
                if let Some(rest) = out.strip_prefix("_<") {
                    out = format!("<{rest}");
                }
            }
            return Cow::Owned(out);
        }
        if base.starts_with("_R") {
            return Cow::Borrowed(name);
        }
    }
    if !name.starts_with("_Z") {
        return Cow::Borrowed(name);
    }
    let opts = cpp_demangle::DemangleOptions::new()
        .no_params()
        .no_return_type();
    match cpp_demangle::Symbol::new(name).map(|s| s.demangle_with_options(&opts)) {
        Ok(Ok(s)) => Cow::Owned(like_libiberty(s)),
        _ => Cow::Borrowed(name),
    }
}

/// Integer literals `(TYPE)N` that libiberty prints as `N` plus a suffix.
const LITERAL_SUFFIXES: &[(&str, &str)] = &[
    ("(int)", ""),
    ("(unsigned int)", "u"),
    ("(long)", "l"),
    ("(unsigned long)", "ul"),
    ("(long long)", "ll"),
    ("(unsigned long long)", "ull"),
];

/// Where cpp_demangle's spelling differs from libiberty's (which perf prints):
/// `{anonymous}` is `(anonymous namespace)`, `(unsigned int)1` is `1u`, `(bool)1` is
/// `true`.
fn like_libiberty(mut s: String) -> String {
    if s.contains("{anonymous}") {
        s = s.replace("{anonymous}", "(anonymous namespace)");
    }
    // An empty template pack: `f<int, >` is `f<int>`.
    if s.contains(", >") {
        s = s.replace(", >", ">");
    }
    // Without parameters libiberty prints no method qualifiers either.
    loop {
        let trimmed = [" const", " volatile", " &&", " &"]
            .iter()
            .find_map(|q| s.strip_suffix(q).map(str::len));
        match trimmed {
            Some(len) => s.truncate(len),
            None => break,
        }
    }
    if !s.contains(")") {
        return s;
    }
    // A function type inside template arguments: libiberty writes `R (A)`.
    if s.contains("(") {
        let mut spaced = String::with_capacity(s.len() + 8);
        let mut depth = 0i32;
        let mut prev = ' ';
        for c in s.chars() {
            match c {
                '<' => depth += 1,
                '>' => depth -= 1,
                '(' if depth > 0 && (prev.is_alphanumeric() || matches!(prev, '>' | '*' | '&')) => {
                    spaced.push(' ')
                }
                _ => {}
            }
            spaced.push(c);
            prev = c;
        }
        s = spaced;
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s.as_str();
    'scan: while let Some(open) = rest.find('(') {
        let (head, tail) = rest.split_at(open);
        out.push_str(head);
        for (ty, suffix) in LITERAL_SUFFIXES.iter().chain(&[("(bool)", "")]) {
            if let Some(after) = tail.strip_prefix(ty) {
                let digits = after
                    .char_indices()
                    .take_while(|&(i, c)| c.is_ascii_digit() || (i == 0 && c == '-'))
                    .count();
                if digits > 0 && after[..digits] != *"-" {
                    let n = &after[..digits];
                    match (*ty, n) {
                        ("(bool)", "0") => out.push_str("false"),
                        ("(bool)", "1") => out.push_str("true"),
                        ("(bool)", _) => {
                            out.push_str(ty);
                            out.push_str(n);
                        }
                        _ => {
                            out.push_str(n);
                            out.push_str(suffix);
                        }
                    }
                    rest = &after[digits..];
                    continue 'scan;
                }
            }
        }
        out.push('(');
        rest = &tail[1..];
    }
    out.push_str(rest);
    out
}

/// `_ZN…17h` + 16 hex digits + `E`: what rustc's legacy mangling ends with.
fn is_rust_legacy(name: &str) -> bool {
    let b = name.as_bytes();
    b.starts_with(b"_ZN")
        && b.len() > 24
        && b.ends_with(b"E")
        && &b[b.len() - 20..b.len() - 17] == b"17h"
        && b[b.len() - 17..b.len() - 1]
            .iter()
            .all(u8::is_ascii_hexdigit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_perf() {
        assert_eq!(demangle("main"), "main");
        assert_eq!(demangle("_ZN2ns1W4spinElRSt6vectorIiSaIiEE"), "ns::W::spin");
        assert_eq!(
            demangle("_ZN3std2rt10lang_start28_$u7b$$u7b$closure$u7d$$u7d$17h0123456789abcdefE"),
            "std::rt::lang_start::{{closure}}"
        );
        assert_eq!(
            demangle("_RNvNtCsjrHSEGnQ3l9_3std2rt19lang_start_internal"),
            "std::rt::lang_start_internal"
        );
        assert_eq!(demangle("_Znot a symbol"), "_Znot a symbol");
        assert_eq!(
            like_libiberty("f<int_hash<unsigned int, (unsigned int)0, (int)-1>, (bool)1>".into()),
            "f<int_hash<unsigned int, 0u, -1>, true>"
        );
        assert_eq!(
            like_libiberty("std::function<std::unique_ptr<M>(llvm::StringRef)>::x".into()),
            "std::function<std::unique_ptr<M> (llvm::StringRef)>::x"
        );
        assert_eq!(
            like_libiberty("A::f<int const&, > const".into()),
            "A::f<int const&>"
        );
        assert_eq!(
            demangle("_ZN4core4iter8adapters10take_while5check28_$u7b$$u7b$closure$u7d$$u7d$17h0123456789abcdefE"),
            "core::iter::adapters::take_while::check::{{closure}}"
        );
        assert_eq!(
            demangle("_RNvNtCsjrHSEGnQ3l9_3std2rt19lang_start_internal.warm"),
            "std::rt::lang_start_internal"
        );
        assert_eq!(
            like_libiberty("{anonymous}::X::run (int)".into()),
            "(anonymous namespace)::X::run (int)"
        );
    }
}
