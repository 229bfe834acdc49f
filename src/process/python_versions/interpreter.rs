//! The full version (`3.11.7`) of a Python interpreter, read cheaply.
//!
//! gProfiler searched the whole interpreter binary (23 MB for a pyenv
//! `libpython3.11.so`) for a version string, for every new Python process. Here:
//! - Python 3.11 and later export `Py_Version` (`PY_VERSION_HEX`, e.g. `0x030B07F0`):
//!   the ELF section headers, the dynamic symbol table and its strings are read
//!   (about 100 KB for Debian's 6.8 MB `python3.11`), then the symbol's 4 bytes;
//! - older ones: `<prefix>/include/pythonX.Y/patchlevel.h`'s `PY_VERSION`, when the
//!   headers are installed (official Docker images have them);
//! - otherwise the version is not known and standard-library frames get no tag,
//!   as in gProfiler.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Largest `.dynsym` or `.dynstr` read.
const MAX_TABLE_BYTES: u64 = 4 << 20;
const SHT_DYNSYM: u32 = 11;
const SYMBOL: &[u8] = b"Py_Version";

/// The version from the binary's exported `Py_Version`; None when it has none (a
/// Python before 3.11, a stripped section table, not a 64-bit little-endian ELF).
pub fn from_elf(f: &File) -> io::Result<Option<String>> {
    let mut h = [0u8; 64];
    f.read_exact_at(&mut h, 0)?;
    if &h[..4] != b"\x7fELF" || h[4] != 2 || h[5] != 1 {
        return Ok(None);
    }
    let shoff = u64_at(&h, 0x28);
    let shentsize = u16_at(&h, 0x3A) as usize;
    let shnum = u16_at(&h, 0x3C) as usize;
    if shentsize < 64 || shnum == 0 || shnum > 4096 {
        return Ok(None);
    }
    let mut sh = vec![0u8; shentsize * shnum];
    f.read_exact_at(&mut sh, shoff)?;
    let section = |i: usize| -> Option<Section> {
        let s = sh.get(i * shentsize..i * shentsize + 64)?;
        Some(Section {
            kind: u32_at(s, 4),
            addr: u64_at(s, 16),
            offset: u64_at(s, 24),
            size: u64_at(s, 32),
            link: u32_at(s, 40) as usize,
        })
    };
    let Some(dynsym) = (0..shnum)
        .filter_map(&section)
        .find(|s| s.kind == SHT_DYNSYM)
    else {
        return Ok(None);
    };
    let Some(dynstr) = section(dynsym.link) else {
        return Ok(None);
    };
    if dynsym.size > MAX_TABLE_BYTES || dynstr.size > MAX_TABLE_BYTES {
        return Ok(None);
    }
    let syms = read_at(f, dynsym.offset, dynsym.size)?;
    let strs = read_at(f, dynstr.offset, dynstr.size)?;
    for sym in syms.chunks_exact(24) {
        let name = u32_at(sym, 0) as usize;
        let matches = strs
            .get(name..name + SYMBOL.len() + 1)
            .is_some_and(|n| &n[..SYMBOL.len()] == SYMBOL && n[SYMBOL.len()] == 0);
        if !matches {
            continue;
        }
        let Some(home) = section(u16_at(sym, 6) as usize) else {
            return Ok(None);
        };
        let value = u64_at(sym, 8);
        let Some(offset) = value.checked_sub(home.addr).map(|d| home.offset + d) else {
            return Ok(None);
        };
        let mut hex = [0u8; 4];
        f.read_exact_at(&mut hex, offset)?;
        return Ok(format_hex(u32::from_le_bytes(hex)));
    }
    Ok(None)
}

/// `PY_VERSION` from a `patchlevel.h`: `#define PY_VERSION "3.9.18"`.
pub fn from_patchlevel(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let rest = l.trim().strip_prefix("#define")?.trim_start();
        let v = rest.strip_prefix("PY_VERSION")?.trim();
        let v = v.strip_prefix('"')?.split('"').next()?;
        valid(v).then(|| v.to_string())
    })
}

/// `0x030B07F0` → `3.11.7`; `0x030D00C1` → `3.13.0rc1`.
pub fn format_hex(hex: u32) -> Option<String> {
    let (major, minor, micro) = (hex >> 24, (hex >> 16) & 0xff, (hex >> 8) & 0xff);
    let (level, serial) = ((hex >> 4) & 0xf, hex & 0xf);
    if !(2..=3).contains(&major) {
        return None;
    }
    let pre = match level {
        0xF => String::new(),
        0xA => format!("a{serial}"),
        0xB => format!("b{serial}"),
        0xC => format!("rc{serial}"),
        _ => return None,
    };
    Some(format!("{major}.{minor}.{micro}{pre}"))
}

fn valid(v: &str) -> bool {
    !v.is_empty() && v.len() < 24 && v.starts_with(|c: char| c.is_ascii_digit())
}

struct Section {
    kind: u32,
    addr: u64,
    offset: u64,
    size: u64,
    link: usize,
}

fn read_at(f: &File, offset: u64, len: u64) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len as usize];
    f.read_exact_at(&mut buf, offset)?;
    Ok(buf)
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_versions() {
        assert_eq!(format_hex(0x030B07F0).as_deref(), Some("3.11.7"));
        assert_eq!(format_hex(0x030D00C1).as_deref(), Some("3.13.0rc1"));
        assert_eq!(format_hex(0x030C00A2).as_deref(), Some("3.12.0a2"));
        assert_eq!(format_hex(0), None);
    }

    #[test]
    fn patchlevel_header() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("patchlevel.h");
        std::fs::write(
            &p,
            "/* x */\n#define PY_MINOR_VERSION 9\n#define PY_VERSION      \"3.9.18\"\n",
        )
        .unwrap();
        assert_eq!(from_patchlevel(&p).as_deref(), Some("3.9.18"));
        assert_eq!(from_patchlevel(&d.path().join("none.h")), None);
    }

    #[test]
    fn the_running_python_says_its_version() {
        // The interpreter this machine runs the tests with, and its libpython if it
        // has one: each that exports Py_Version must give the version Python prints.
        let Ok(out) = std::process::Command::new("python3")
            .args(["-c", "import sys,sysconfig; print(sys.executable); print('%d.%d.%d' % sys.version_info[:3]); print(sysconfig.get_config_var('LIBDIR') or ''); print(sysconfig.get_config_var('INSTSONAME') or '')"])
            .output()
        else {
            return;
        };
        let text = String::from_utf8(out.stdout).unwrap();
        let l: Vec<&str> = text.lines().collect();
        let (exe, version) = (l[0], l[1]);
        let lib = Path::new(l[2]).join(l[3]);
        let mut found = 0;
        for bin in [Path::new(exe), lib.as_path()] {
            let Ok(f) = File::open(bin) else { continue };
            if let Some(v) = from_elf(&f).unwrap_or(None) {
                assert_eq!(v, version, "{}", bin.display());
                found += 1;
            }
        }
        let minor: u32 = version.split('.').nth(1).unwrap().parse().unwrap();
        if version.starts_with("3.") && minor >= 11 {
            assert!(found > 0, "no Py_Version in {exe} or {}", lib.display());
        }
        // A binary that is not Python has no Py_Version.
        let me = File::open("/proc/self/exe").unwrap();
        assert_eq!(from_elf(&me).unwrap(), None);
    }
}
