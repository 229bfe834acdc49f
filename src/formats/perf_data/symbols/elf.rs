//! Function symbols of an ELF file, with the rules `perf script` applies
//! (`tools/perf/util/symbol-elf.c`, `dso__load_sym_internal`, perf 6.1):
//!
//! - `.symtab` when the file (or its debug file under `/usr/lib/debug/.build-id/`) has
//!   one, else `.dynsym` (stripped libraries);
//! - `STT_FUNC`, `STT_GNU_IFUNC` and `STT_OBJECT` symbols, and visible `STT_NOTYPE`
//!   labels, that have a name, are defined, and live in a section whose name contains
//!   `text`;
//! - addresses turned into file offsets through the `PT_LOAD` header that holds them
//!   (else through their section), because samples are looked up by file offset
//!   (`ip - map start + map pgoff`);
//! - of symbols at the same address one is kept (`choose_best_symbol`), and size-less
//!   ones stretch to the next symbol (`symbols__fixup_end`);
//! - `NAME@plt` symbols for the PLT entries (`dso__synthesize_plt_symbols`).

use object::elf;
use object::read::elf::{FileHeader, ProgramHeader, SectionHeader, Sym};
use object::{Endianness, FileKind};

use super::demangle;
use super::table::{dedup, fixup_end, Binding, Symbol, SymbolTable};
use object::read::elf::Rela;

/// Why an ELF file gave no symbols.
#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    #[error("not an ELF file")]
    NotElf,
    #[error("malformed ELF file: {0}")]
    Malformed(#[from] object::read::Error),
}

/// What [`load`] needs from a file before choosing where its symbols come from.
pub struct ElfInfo {
    pub has_symtab: bool,
    pub build_id: Option<Vec<u8>>,
}

pub fn info(data: &[u8]) -> Result<ElfInfo, ElfError> {
    match FileKind::parse(data).map_err(|_| ElfError::NotElf)? {
        FileKind::Elf32 => info_of::<elf::FileHeader32<Endianness>>(data),
        FileKind::Elf64 => info_of::<elf::FileHeader64<Endianness>>(data),
        _ => Err(ElfError::NotElf),
    }
}

fn info_of<E: FileHeader<Endian = Endianness>>(data: &[u8]) -> Result<ElfInfo, ElfError> {
    let header = E::parse(data)?;
    let endian = header.endian()?;
    let sections = header.sections(endian, data)?;
    let has_symtab = sections
        .iter()
        .any(|s| s.sh_type(endian) == elf::SHT_SYMTAB);
    let mut build_id = None;
    // A malformed note (BOLT-rewritten files have some) only hides the build id.
    for s in sections.iter() {
        if let Ok(Some(mut notes)) = s.notes(endian, data) {
            while let Ok(Some(note)) = notes.next() {
                if note.name() == elf::ELF_NOTE_GNU && note.n_type(endian) == elf::NT_GNU_BUILD_ID {
                    build_id = Some(note.desc().to_vec());
                }
            }
        }
    }
    Ok(ElfInfo {
        has_symtab,
        build_id,
    })
}

/// The function symbols of `runtime` (the mapped file), read from `symbols` (the
/// same file, or its separate debug file) and keyed by file offset in `runtime`.
pub fn load(runtime: &[u8], symbols: &[u8]) -> Result<SymbolTable, ElfError> {
    match FileKind::parse(runtime).map_err(|_| ElfError::NotElf)? {
        FileKind::Elf32 => load_of::<elf::FileHeader32<Endianness>>(runtime, symbols),
        FileKind::Elf64 => load_of::<elf::FileHeader64<Endianness>>(runtime, symbols),
        _ => Err(ElfError::NotElf),
    }
}

fn load_of<E: FileHeader<Endian = Endianness>>(
    runtime: &[u8],
    symbols: &[u8],
) -> Result<SymbolTable, ElfError> {
    let rt = E::parse(runtime)?;
    let endian = rt.endian()?;
    let loads: Vec<(u64, u64, u64)> = rt
        .program_headers(endian, runtime)?
        .iter()
        .filter(|p| p.p_type(endian) == elf::PT_LOAD)
        .map(|p| {
            (
                p.p_vaddr(endian).into(),
                p.p_memsz(endian).into(),
                p.p_offset(endian).into(),
            )
        })
        .collect();

    let sf = E::parse(symbols)?;
    let sendian = sf.endian()?;
    let sections = sf.sections(sendian, symbols)?;
    let mut table = sections.symbols(sendian, symbols, elf::SHT_SYMTAB)?;
    if table.is_empty() {
        table = sections.symbols(sendian, symbols, elf::SHT_DYNSYM)?;
    }
    // Per section: whether its name holds `text`, its address and file offset.
    let section_info: Vec<(bool, u64, u64)> = sections
        .iter()
        .map(|sec| {
            let text = sections
                .section_name(sendian, sec)
                .is_ok_and(|n| memchr::memmem::find(n, b"text").is_some());
            (
                text,
                sec.sh_addr(sendian).into(),
                sec.sh_offset(sendian).into(),
            )
        })
        .collect();
    let mut raw = Vec::new();
    for sym in table.iter() {
        let shndx = sym.st_shndx(sendian);
        // perf's `elf_sym__is_label`: assembly labels (`_dl_start_user`) count too.
        let label = sym.st_type() == elf::STT_NOTYPE
            && shndx != elf::SHN_ABS
            && !matches!(sym.st_visibility(), elf::STV_HIDDEN | elf::STV_INTERNAL);
        if !label
            && !matches!(
                sym.st_type(),
                elf::STT_FUNC | elf::STT_GNU_IFUNC | elf::STT_OBJECT
            )
        {
            continue;
        }
        if sym.st_name(sendian) == 0 || shndx == elf::SHN_UNDEF || shndx >= elf::SHN_LORESERVE {
            continue;
        }
        let Some(&(is_text, sh_addr, sh_offset)) = section_info.get(usize::from(shndx)) else {
            continue;
        };
        if !is_text {
            continue;
        }
        let Ok(name) = table.symbol_name(sendian, sym) else {
            continue;
        };
        let value: u64 = sym.st_value(sendian).into();
        let size: u64 = sym.st_size(sendian).into();
        let start = match loads
            .iter()
            .find(|&&(vaddr, memsz, _)| value >= vaddr && value < vaddr + memsz)
        {
            Some(&(vaddr, _, offset)) => value - vaddr + offset,
            None => value.wrapping_sub(sh_addr).wrapping_add(sh_offset),
        };
        let bind = match sym.st_bind() {
            elf::STB_WEAK => Binding::Weak,
            elf::STB_GLOBAL => Binding::Global,
            _ => Binding::Local,
        };
        let sym = Symbol {
            start,
            end: start.saturating_add(size),
            name: String::from_utf8_lossy(name).into(),
        };
        raw.push((sym, bind));
    }
    // A stable sort keeps the file's order among equal starts, as perf's tree does.
    raw.sort_by_key(|r| r.0.start);
    // perf compares the demangled names of symbols at one address (identical code
    // folded into one function has several): demangle those.
    let mut i = 0;
    while i < raw.len() {
        let mut j = i + 1;
        while j < raw.len() && raw[j].0.start == raw[i].0.start {
            j += 1;
        }
        if j - i > 1 {
            for r in &mut raw[i..j] {
                r.0.name = demangle(&r.0.name).into();
            }
        }
        i = j;
    }
    let (syms, binds) = raw.into_iter().unzip();
    let mut syms = dedup(syms, binds);
    fixup_end(&mut syms, false);
    syms.extend(plt_symbols(rt, endian, runtime).unwrap_or_default());
    Ok(SymbolTable::new(syms))
}

/// perf 6.1's `dso__synthesize_plt_symbols`: one `NAME@plt` symbol per `.rela.plt`
/// entry, laid out from the start of `.plt` after a header, each `sh_entsize` long.
fn plt_symbols<E: FileHeader<Endian = Endianness>>(
    header: &E,
    endian: Endianness,
    data: &[u8],
) -> Result<Vec<Symbol>, object::read::Error> {
    let sections = header.sections(endian, data)?;
    let Some((_, plt)) = sections.section_by_name(endian, b".plt") else {
        return Ok(Vec::new());
    };
    let Some((_, rela)) = sections.section_by_name(endian, b".rela.plt") else {
        return Ok(Vec::new());
    };
    let dynsym = sections.symbols(endian, data, elf::SHT_DYNSYM)?;
    if rela.sh_link(endian) as usize != dynsym.section().0 {
        return Ok(Vec::new());
    }
    let Some((relas, _)) = rela.rela(endian, data)? else {
        return Ok(Vec::new());
    };
    let entry: u64 = plt.sh_entsize(endian).into();
    if entry == 0 {
        return Ok(Vec::new());
    }
    let mut offset: u64 = Into::<u64>::into(plt.sh_offset(endian)) + entry;
    let mut out = Vec::with_capacity(relas.len());
    for r in relas {
        let index = r.r_sym(endian, false);
        let name = dynsym
            .symbol(object::SymbolIndex(index as usize))
            .ok()
            .and_then(|s| dynsym.symbol_name(endian, s).ok())
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        out.push(Symbol {
            start: offset,
            end: offset + entry,
            name: format!("{}@plt", demangle(&name)).into(),
        });
        offset += entry;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_elf_is_an_error() {
        assert!(matches!(info(b"hello"), Err(ElfError::NotElf)));
        assert!(matches!(load(b"hello", b"hello"), Err(ElfError::NotElf)));
    }
}
