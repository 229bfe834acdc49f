//! Kernel symbols from `/proc/kallsyms`, read once and kept (perf re-reads them in
//! every `perf script`).
//!
//! ```text
//! ffffffff81000000 T _stext
//! ffffffff81001000 t xen_hypercall_set_trap_table
//! ffffffffc0a01000 t nf_conntrack_init [nf_conntrack]
//! ```
//!
//! As perf does (`map__process_kallsym_symbol`, `__dso__load_kallsyms`): only types
//! `T`, `W`, `D` and `B` (either case) are kept; module symbols keep their `\t[mod]`
//! until the end fix-up (which leaves the gap between kernel and modules unknown);
//! size-less symbols stretch to the next one, then duplicates are resolved.

use super::table::{dedup, fixup_end, Binding, Symbol, SymbolTable};

/// Kernel symbols: lookups give the name and the module to print
/// (`[kernel.kallsyms]` or `[mod]`).
#[derive(Debug, Default)]
pub struct Kallsyms {
    table: SymbolTable,
}

/// The module name perf prints for core kernel frames.
pub const KERNEL_DSO: &str = "[kernel.kallsyms]";

impl Kallsyms {
    pub fn parse(text: &str) -> Kallsyms {
        let mut syms = Vec::new();
        let mut binds = Vec::new();
        for line in text.lines() {
            let mut it = line.splitn(3, ' ');
            let (Some(addr), Some(ty), Some(name)) = (it.next(), it.next(), it.next()) else {
                continue;
            };
            let Ok(start) = u64::from_str_radix(addr, 16) else {
                continue;
            };
            let Some(t) = ty.bytes().next() else { continue };
            if !matches!(t.to_ascii_uppercase(), b'T' | b'W' | b'D' | b'B') {
                continue;
            }
            binds.push(match t {
                b'W' | b'w' => Binding::Weak,
                b'A'..=b'Z' => Binding::Global,
                _ => Binding::Local,
            });
            syms.push(Symbol {
                start,
                end: start,
                name: name.into(),
            });
        }
        // Stable: kallsyms order decides ties, as in perf's tree.
        let mut order: Vec<usize> = (0..syms.len()).collect();
        order.sort_by_key(|&i| syms[i].start);
        let mut sorted: Vec<Symbol> = order.iter().map(|&i| syms[i].clone()).collect();
        let binds: Vec<Binding> = order.iter().map(|&i| binds[i]).collect();
        fixup_end(&mut sorted, true);
        Kallsyms {
            table: SymbolTable::new(dedup(sorted, binds)),
        }
    }

    /// The symbol name, module and symbol start of a kernel address.
    pub fn find(&self, addr: u64) -> Option<(&str, &str, u64)> {
        let s = self.table.find(addr)?;
        Some(match s.name.split_once('\t') {
            Some((name, module)) => (name, module.trim(), s.start),
            None => (&*s.name, KERNEL_DSO, s.start),
        })
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    pub fn memory_bytes(&self) -> usize {
        self.table.memory_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_types_modules_and_sizes() {
        let k = Kallsyms::parse(
            "ffffffff81000000 T _stext\n\
             ffffffff81000000 t startup_64\n\
             ffffffff81000100 t do_one\n\
             ffffffff81000200 r some_rodata\n\
             ffffffff81000300 W weak_fn\n\
             ffffffff81000400 T _etext\n\
             ffffffffc0001000 t m_fn\t[nf_nat]\n\
             ffffffffc0001100 t m_fn2\t[nf_nat]\n\
             garbage line\n",
        );
        // r (read-only data) is dropped. Of _stext and startup_64 (one address),
        // the end fix-up gives only the last a size, and a sized symbol wins: perf
        // fixes ends before it resolves duplicates.
        assert_eq!(k.len(), 6);
        assert_eq!(
            k.find(0xffffffff81000010),
            Some(("startup_64", KERNEL_DSO, 0xffffffff81000000))
        );
        assert_eq!(k.find(0xffffffff81000250).map(|s| s.0), Some("do_one"));
        assert_eq!(k.find(0xffffffff81000300).map(|s| s.0), Some("weak_fn"));
        assert_eq!(
            k.find(0xffffffffc0001010).map(|s| (s.0, s.1)),
            Some(("m_fn", "[nf_nat]"))
        );
        // Between the kernel's last symbol (plus its page) and the first module: unknown.
        assert_eq!(k.find(0xffffffff81000500).map(|s| s.0), Some("_etext"));
        assert_eq!(k.find(0xffffffff90000000), None);
        assert_eq!(k.find(0x1000), None);
    }
}
