//! Symbols for perf samples, with caches that live as long as the perf source (or
//! the `profpipe fold` run): ELF symbol tables per file identity, kernel symbols
//! read once, JIT perf maps re-read only when they change, and the vDSO read from
//! this process's own copy (one kernel, one vDSO).
//!
//! Everything cached is bounded by [`SymbolizerLimits::max_bytes`]: past it the
//! least recently used tables are dropped (counted in [`CacheStats::evictions`]).

mod demangle;
pub mod elf;
pub mod kallsyms;
pub mod perf_map;
pub mod table;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustc_hash::FxHashMap;

pub use demangle::demangle;
pub use kallsyms::{Kallsyms, KERNEL_DSO};
pub use table::{Symbol, SymbolTable};

/// Where a mapped file's symbols are cached: by its identity, not its path, so a
/// library replaced on disk (a new inode) is read again and one opened under two
/// paths (a container's root) is read once.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum FileKey {
    /// From an `MMAP2` record: device and inode.
    Inode { dev: u64, ino: u64 },
    /// From an `MMAP2` record with an inline build id.
    BuildId(Box<[u8]>),
    /// From an old-style `MMAP` record: only the path is known.
    Path(Arc<str>),
}

/// Bounds of the caches.
#[derive(Clone, Debug)]
pub struct SymbolizerLimits {
    /// Most bytes of symbol tables (ELF files and perf maps) kept between windows.
    pub max_bytes: usize,
    /// Most demangled names remembered (the memo is cleared past it).
    pub max_demangled: usize,
}

impl Default for SymbolizerLimits {
    fn default() -> Self {
        SymbolizerLimits {
            max_bytes: 128 << 20,
            max_demangled: 100_000,
        }
    }
}

/// What the caches hold and did, for metrics and benchmarks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// ELF files whose tables are held (including ones that gave no symbols).
    pub files: u64,
    /// JIT perf maps held.
    pub perf_maps: u64,
    /// Bytes of the ELF and perf map tables held (what the limit bounds).
    pub bytes: u64,
    /// Bytes of the kernel's symbols (read once, not bounded by the limit: one
    /// table of the size of `/proc/kallsyms`).
    pub kernel_bytes: u64,
    /// Lookups of a file's table that found it cached / had to read it.
    pub hits: u64,
    pub misses: u64,
    /// Tables dropped to stay under the byte limit.
    pub evictions: u64,
    /// Files that could not be read or parsed (their frames stay `[unknown]`).
    pub load_failures: u64,
}

struct Cached {
    /// None: the file could not be read; not tried again while cached.
    table: Option<Arc<SymbolTable>>,
    bytes: usize,
    last_used: u64,
}

struct PerfMapCached {
    path: PathBuf,
    len: u64,
    mtime: Option<std::time::SystemTime>,
    /// The generation it was last checked against the file in.
    checked: u64,
    cached: Cached,
}

/// Fixed accounting cost of a cache entry on top of its table.
const ENTRY_BYTES: usize = 128;

pub struct Symbolizer {
    limits: SymbolizerLimits,
    /// Bumped for every perf.data file: the clock of the LRU.
    generation: u64,
    files: FxHashMap<FileKey, Cached>,
    perf_maps: FxHashMap<u32, PerfMapCached>,
    kallsyms: Option<Kallsyms>,
    kallsyms_path: PathBuf,
    vdso: Option<Option<Arc<SymbolTable>>>,
    demangled: FxHashMap<Box<str>, Box<str>>,
    bytes: usize,
    stats: CacheStats,
}

impl Default for Symbolizer {
    fn default() -> Self {
        Self::new(SymbolizerLimits::default())
    }
}

impl Symbolizer {
    pub fn new(limits: SymbolizerLimits) -> Self {
        Symbolizer {
            limits,
            generation: 0,
            files: FxHashMap::default(),
            perf_maps: FxHashMap::default(),
            kallsyms: None,
            kallsyms_path: PathBuf::from("/proc/kallsyms"),
            vdso: None,
            demangled: FxHashMap::default(),
            bytes: 0,
            stats: CacheStats::default(),
        }
    }

    /// Starts a new perf.data file (a new LRU generation).
    pub fn begin(&mut self) {
        self.generation += 1;
    }

    pub fn stats(&self) -> CacheStats {
        let kernel = self.kallsyms.as_ref().map_or(0, Kallsyms::memory_bytes);
        CacheStats {
            files: self.files.len() as u64,
            perf_maps: self.perf_maps.len() as u64,
            bytes: self.bytes as u64,
            kernel_bytes: kernel as u64,
            ..self.stats.clone()
        }
    }

    /// Kernel symbols, read from `/proc/kallsyms` on first use and kept.
    pub fn kallsyms(&mut self) -> &Kallsyms {
        let path = &self.kallsyms_path;
        self.kallsyms.get_or_insert_with(|| {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            Kallsyms::parse(&text)
        })
    }

    /// The symbols of a mapped file, read from the first of `candidates` that is the
    /// file `key` names (its inode matches), else from the first that can be read.
    pub fn file(&mut self, key: &FileKey, candidates: &[PathBuf]) -> Option<Arc<SymbolTable>> {
        let generation = self.generation;
        if let Some(c) = self.files.get_mut(key) {
            c.last_used = generation;
            self.stats.hits += 1;
            return c.table.clone();
        }
        self.stats.misses += 1;
        let table = load_file(key, candidates).map(Arc::new);
        if table.is_none() {
            self.stats.load_failures += 1;
        }
        let bytes = ENTRY_BYTES + table.as_ref().map_or(0, |t| t.memory_bytes());
        self.files.insert(
            key.clone(),
            Cached {
                table: table.clone(),
                bytes,
                last_used: generation,
            },
        );
        self.bytes += bytes;
        self.evict();
        table
    }

    /// The JIT perf map of `pid` (`/tmp/perf-PID.map`, through the process's root
    /// while it runs), read again when it changed since the last file.
    pub fn perf_map(&mut self, pid: u32) -> Option<Arc<SymbolTable>> {
        let generation = self.generation;
        if let Some(p) = self.perf_maps.get_mut(&pid) {
            p.cached.last_used = generation;
            if p.checked == generation {
                return p.cached.table.clone();
            }
            p.checked = generation;
            let meta = std::fs::metadata(&p.path).ok();
            let (len, mtime) = (
                meta.as_ref().map_or(0, |m| m.len()),
                meta.and_then(|m| m.modified().ok()),
            );
            if len == p.len && mtime == p.mtime {
                self.stats.hits += 1;
                return p.cached.table.clone();
            }
        }
        self.stats.misses += 1;
        let path = perf_map_path(pid);
        let meta = std::fs::metadata(&path).ok();
        let (len, mtime) = (
            meta.as_ref().map_or(0, |m| m.len()),
            meta.and_then(|m| m.modified().ok()),
        );
        let table = std::fs::read(&path)
            .ok()
            .map(|t| Arc::new(perf_map::parse(&t)));
        let bytes = ENTRY_BYTES + table.as_ref().map_or(0, |t| t.memory_bytes());
        let entry = PerfMapCached {
            path,
            len,
            mtime,
            checked: generation,
            cached: Cached {
                table: table.clone(),
                bytes,
                last_used: generation,
            },
        };
        if let Some(old) = self.perf_maps.insert(pid, entry) {
            self.bytes -= old.cached.bytes;
        }
        self.bytes += bytes;
        self.evict();
        table
    }

    /// The vDSO's symbols, from this process's own mapping of it.
    pub fn vdso(&mut self) -> Option<Arc<SymbolTable>> {
        self.vdso.get_or_insert_with(read_own_vdso).clone()
    }

    /// A symbol name as perf prints it, demangled (remembered, bounded).
    pub fn demangle<'a>(&'a mut self, name: &'a str) -> &'a str {
        if !name.starts_with("_Z") && !name.starts_with("_R") {
            return name;
        }
        if !self.demangled.contains_key(name) {
            if self.demangled.len() >= self.limits.max_demangled {
                self.demangled.clear();
            }
            let d: Box<str> = demangle(name).into();
            self.demangled.insert(name.into(), d);
        }
        &self.demangled[name]
    }

    /// Drops least recently used tables until the held bytes fit the limit.
    fn evict(&mut self) {
        while self.bytes > self.limits.max_bytes {
            let oldest_file = self
                .files
                .iter()
                .map(|(k, c)| (c.last_used, k))
                .min_by_key(|x| x.0);
            let oldest_map = self
                .perf_maps
                .iter()
                .map(|(k, p)| (p.cached.last_used, *k))
                .min_by_key(|x| x.0);
            match (oldest_file, oldest_map) {
                (Some((f, _)), Some((m, pid))) if m < f => {
                    let old = self.perf_maps.remove(&pid).expect("present");
                    self.bytes -= old.cached.bytes;
                }
                (Some((_, key)), _) => {
                    let key = key.clone();
                    let old = self.files.remove(&key).expect("present");
                    self.bytes -= old.bytes;
                }
                (None, Some((_, pid))) => {
                    let old = self.perf_maps.remove(&pid).expect("present");
                    self.bytes -= old.cached.bytes;
                }
                (None, None) => break,
            }
            self.stats.evictions += 1;
        }
    }
}

/// `/proc/PID/root/tmp/perf-NSPID.map` while the process runs (its own mount and
/// pid namespace), else `/tmp/perf-PID.map`.
fn perf_map_path(pid: u32) -> PathBuf {
    let root = PathBuf::from(format!("/proc/{pid}/root"));
    if root.exists() {
        let ns_pid = ns_pid(pid).unwrap_or(pid);
        root.join(format!("tmp/perf-{ns_pid}.map"))
    } else {
        PathBuf::from(format!("/tmp/perf-{pid}.map"))
    }
}

/// The pid of `pid` inside its own pid namespace (the last `NSpid:` field).
fn ns_pid(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("NSpid:"))?;
    line.split_whitespace().last()?.parse().ok()
}

/// The device number `stat` reports for `major:minor` (glibc's `makedev`).
pub fn makedev(major: u32, minor: u32) -> u64 {
    let (major, minor) = (u64::from(major), u64::from(minor));
    ((major & 0xffff_f000) << 32)
        | ((major & 0xfff) << 8)
        | ((minor & 0xffff_ff00) << 12)
        | (minor & 0xff)
}

fn load_file(key: &FileKey, candidates: &[PathBuf]) -> Option<SymbolTable> {
    use std::os::unix::fs::MetadataExt;
    // The inode decides (not the device: btrfs subvolumes and overlays report another
    // device to `stat` than to perf): a file replaced since it was mapped is not the
    // mapped file, and its symbols would name the wrong code.
    let path = match key {
        FileKey::Inode { ino, .. } => candidates
            .iter()
            .find(|p| std::fs::metadata(p).is_ok_and(|m| m.ino() == *ino))?,
        _ => candidates.iter().find(|p| p.is_file())?,
    };
    let file = std::fs::File::open(path).ok()?;
    // SAFETY: the mapping is read-only and dropped before returning; a file truncated
    // meanwhile could fault, which perf risks alike (it reads the same files).
    let runtime = unsafe { memmap2::Mmap::map(&file) }.ok()?;
    let info = elf::info(&runtime).ok()?;
    if !info.has_symtab {
        if let Some(debug) = info.build_id.as_deref().and_then(|id| debug_file(path, id)) {
            if let Ok(t) = elf::load(&runtime, &debug) {
                return Some(t);
            }
        }
    }
    elf::load(&runtime, &runtime).ok()
}

/// The separate debug file of a build id (`/usr/lib/debug/.build-id/ab/cdef….debug`,
/// as Debian's `-dbg` packages install them), under the same root as `path`.
fn debug_file(path: &Path, build_id: &[u8]) -> Option<memmap2::Mmap> {
    if build_id.len() < 2 {
        return None;
    }
    let hex: String = build_id.iter().map(|b| format!("{b:02x}")).collect();
    let rel = format!("usr/lib/debug/.build-id/{}/{}.debug", &hex[..2], &hex[2..]);
    let root = path
        .to_str()
        .and_then(|p| p.strip_prefix("/proc/"))
        .and_then(|rest| rest.split_once("/root/"))
        .map_or(PathBuf::from("/"), |(pid, _)| {
            PathBuf::from(format!("/proc/{pid}/root"))
        });
    let file = std::fs::File::open(root.join(rel)).ok()?;
    let map = unsafe { memmap2::Mmap::map(&file) }.ok()?;
    elf::info(&map).ok().filter(|i| i.has_symtab)?;
    Some(map)
}

/// The vDSO image this process runs with: the same kernel maps the same vDSO into
/// every process, so its symbols serve every `[vdso]` frame.
fn read_own_vdso() -> Option<Arc<SymbolTable>> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let line = maps.lines().find(|l| l.ends_with("[vdso]"))?;
    let range = line.split_whitespace().next()?;
    let (start, end) = range.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    // SAFETY: the [vdso] mapping is readable for the life of the process and never
    // unmapped.
    let image = unsafe { std::slice::from_raw_parts(start as *const u8, end - start) };
    elf::load(image, image).ok().map(Arc::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vdso_has_clock_gettime() {
        let t = read_own_vdso().expect("a vDSO on x86_64 Linux");
        assert!(t
            .symbols()
            .iter()
            .any(|s| s.name.as_ref() == "__vdso_clock_gettime"));
    }

    #[test]
    fn makedev_matches_stat() {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata("/proc/self/exe").unwrap();
        let (major, minor) = (libc::major(m.dev()), libc::minor(m.dev()));
        assert_eq!(makedev(major, minor), m.dev());
    }

    #[test]
    fn cache_is_bounded_and_evicts_the_oldest() {
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let mut s = Symbolizer::new(SymbolizerLimits {
            max_bytes: 1,
            max_demangled: 2,
        });
        s.begin();
        let key = FileKey::Path("a".into());
        assert!(s.file(&key, std::slice::from_ref(&exe)).is_some());
        s.begin();
        let t2 = s.file(&FileKey::Path("b".into()), &[PathBuf::from("/nonexistent")]);
        assert!(t2.is_none());
        let st = s.stats();
        assert!(st.evictions >= 1, "{st:?}");
        assert_eq!(st.misses, 2);
        assert_eq!(st.load_failures, 1);
        assert!(st.files <= 1);
        // Demangling memo stays bounded.
        for n in ["_ZN1a1bEv", "_ZN1a1cEv", "_ZN1a1dEv"] {
            s.demangle(n);
        }
        assert!(s.demangled.len() <= 2);
    }
}
