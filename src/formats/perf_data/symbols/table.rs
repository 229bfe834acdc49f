//! A sorted symbol table with perf's lookup rules, shared by ELF files, kallsyms and
//! perf maps.

/// One symbol: `[start, end)` in the table's address space (file offsets for ELF
/// files, absolute addresses for kallsyms and perf maps).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Symbol {
    pub start: u64,
    pub end: u64,
    pub name: Box<str>,
}

/// A symbol's ELF binding, which decides between symbols at the same address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binding {
    Local,
    Global,
    Weak,
}

/// perf's `symbols__fixup_duplicate` over symbols sorted by start (stably, so the
/// source's order decides ties): of symbols with the same start one is kept, by
/// [`keep_first`].
pub fn dedup(sorted: Vec<Symbol>, binds: Vec<Binding>) -> Vec<Symbol> {
    let mut kept: Vec<(Symbol, Binding)> = Vec::with_capacity(sorted.len());
    for r in sorted.into_iter().zip(binds) {
        match kept.last_mut() {
            Some(last) if last.0.start == r.0.start => {
                if !keep_first(last, &r) {
                    *last = r;
                }
            }
            _ => kept.push(r),
        }
    }
    kept.into_iter().map(|(s, _)| s).collect()
}

/// perf's `choose_best_symbol`: true keeps `a`. Prefers a symbol with a size, then
/// non-weak, then global, then fewer leading underscores, then the longer name; on
/// a tie the first.
pub fn keep_first(a: &(Symbol, Binding), b: &(Symbol, Binding)) -> bool {
    let (sa, sb) = (a.0.end - a.0.start, b.0.end - b.0.start);
    if (sa == 0) != (sb == 0) {
        return sa > 0;
    }
    let (wa, wb) = (a.1 == Binding::Weak, b.1 == Binding::Weak);
    if wa != wb {
        return !wa;
    }
    let (ga, gb) = (a.1 == Binding::Global, b.1 == Binding::Global);
    if ga != gb {
        return ga;
    }
    let underscores = |s: &str| s.bytes().take_while(|&c| c == b'_').count();
    let (ua, ub) = (underscores(&a.0.name), underscores(&b.0.name));
    if ua != ub {
        return ua < ub;
    }
    a.0.name.len() >= b.0.name.len()
}

/// Symbols sorted by start address.
#[derive(Debug, Default)]
pub struct SymbolTable {
    syms: Vec<Symbol>,
    bytes: usize,
}

/// How far back [`SymbolTable::find`] looks for an enclosing symbol when the nearest
/// one below the address ends before it (nested or overlapping symbols).
const ENCLOSING_SCAN: usize = 8;

impl SymbolTable {
    /// A table of `syms` as they are (sorted here, stably; no end fix-up).
    pub fn new(mut syms: Vec<Symbol>) -> Self {
        syms.sort_by_key(|s| s.start);
        let bytes = syms
            .iter()
            .map(|s| std::mem::size_of::<Symbol>() + s.name.len())
            .sum();
        syms.shrink_to_fit();
        SymbolTable { syms, bytes }
    }

    /// The symbol holding `addr`: `start <= addr < end`, or `addr == start` for a
    /// symbol without size.
    pub fn find(&self, addr: u64) -> Option<&Symbol> {
        let i = self.syms.partition_point(|s| s.start <= addr);
        self.syms[..i]
            .iter()
            .rev()
            .take(ENCLOSING_SCAN)
            .find(|s| addr < s.end || addr == s.start)
    }

    pub fn len(&self) -> usize {
        self.syms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.syms.is_empty()
    }

    /// Approximate heap bytes held.
    pub fn memory_bytes(&self) -> usize {
        self.bytes
    }

    pub fn symbols(&self) -> &[Symbol] {
        &self.syms
    }
}

/// perf's `symbols__fixup_end` over symbols sorted by start: a size-less symbol
/// stretches to the next symbol's start; the last one to the end of its page plus a
/// page. With `kallsyms`, the last symbol before a switch between the kernel and a
/// module (`[mod]` in the name) only gets the page rule, so the gap between them
/// stays unknown.
pub fn fixup_end(syms: &mut [Symbol], kallsyms: bool) {
    let n = syms.len();
    for i in 0..n {
        if syms[i].end != syms[i].start {
            continue;
        }
        if i + 1 < n {
            let next_start = syms[i + 1].start;
            let switch = kallsyms && syms[i].name.contains('[') != syms[i + 1].name.contains('[');
            syms[i].end = if switch {
                round_up_page(syms[i].end + 4096)
            } else {
                next_start
            };
        } else {
            syms[i].end = round_up_page(syms[i].start) + 4096;
        }
    }
}

fn round_up_page(x: u64) -> u64 {
    x.div_ceil(4096) * 4096
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(start: u64, end: u64, name: &str) -> Symbol {
        Symbol {
            start,
            end,
            name: name.into(),
        }
    }

    #[test]
    fn sizeless_symbols_stretch_to_the_next() {
        let mut v = vec![
            sym(0x100, 0x100, "a"),
            sym(0x200, 0x210, "b"),
            sym(0x300, 0x300, "c"),
        ];
        fixup_end(&mut v, false);
        let t = SymbolTable::new(v);
        assert_eq!(t.find(0x1ff).unwrap().name.as_ref(), "a");
        assert_eq!(t.find(0x20f).unwrap().name.as_ref(), "b");
        // A sized symbol keeps its size: the gap after it is unknown.
        assert!(t.find(0x210).is_none());
        assert_eq!(t.find(0x1fff).unwrap().name.as_ref(), "c");
        assert!(t.find(0x2000).is_none());
        assert!(t.find(0xff).is_none());
    }

    #[test]
    fn kallsyms_gap_before_modules_stays_unknown() {
        let mut v = vec![
            sym(0xffff_1000, 0xffff_1000, "_etext"),
            sym(0xffff_f000_0000, 0xffff_f000_0000, "m_init\t[m]"),
        ];
        fixup_end(&mut v, true);
        let t = SymbolTable::new(v);
        assert_eq!(t.find(0xffff_1fff).unwrap().name.as_ref(), "_etext");
        assert!(t.find(0xffff_2000).is_none());
    }

    #[test]
    fn nested_symbols_find_the_enclosing_one() {
        let t = SymbolTable::new(vec![sym(0x100, 0x200, "outer"), sym(0x150, 0x160, "inner")]);
        assert_eq!(t.find(0x155).unwrap().name.as_ref(), "inner");
        assert_eq!(t.find(0x170).unwrap().name.as_ref(), "outer");
    }

    #[test]
    fn choose_best_symbol_order() {
        let r = |name: &str, size: u64, bind: Binding| {
            (
                Symbol {
                    start: 0,
                    end: size,
                    name: name.into(),
                },
                bind,
            )
        };
        use Binding::*;
        assert!(!keep_first(&r("a", 0, Global), &r("b", 4, Local)));
        assert!(!keep_first(
            &r("clock_gettime", 4, Weak),
            &r("__vdso_clock_gettime", 4, Global)
        ));
        assert!(keep_first(&r("g", 4, Global), &r("l", 4, Local)));
        assert!(!keep_first(&r("__x", 4, Global), &r("_x", 4, Global)));
        assert!(!keep_first(&r("ab", 4, Global), &r("abc", 4, Global)));
        assert!(keep_first(&r("ab", 4, Global), &r("cd", 4, Global)));
        let (a, b) = (
            r("clock_gettime", 4, Weak),
            r("__vdso_clock_gettime", 4, Global),
        );
        let kept = dedup(vec![a.0, b.0], vec![a.1, b.1]);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].name.as_ref(), "__vdso_clock_gettime");
    }
}
