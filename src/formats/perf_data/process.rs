//! What perf knows about processes while it reads a data file, rebuilt from the
//! records the way `perf script` does (`tools/perf/util/machine.c`, `thread.c`):
//!
//! - `COMM`: a thread's name (perf keeps a thread's maps across `exec`; new `MMAP2`
//!   records replace what they overlap);
//! - `FORK`: a new thread takes its parent's name; a new process also a copy of its
//!   parent's maps;
//! - `MMAP` / `MMAP2`: an executable mapping of a process (or, with pid -1, of the
//!   kernel), replacing the parts of older mappings it overlaps;
//! - `EXIT`: nothing is dropped: samples of the window may still name the process,
//!   and its files are usually still on disk.
//!
//! A thread never named reads `:TID`, and thread 0 `swapper`, as in perf.

use std::collections::BTreeMap;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::symbols::FileKey;

/// What a mapping holds, which decides how its addresses are symbolized.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MapKind {
    /// A file: symbols from its ELF tables by file offset.
    File(FileKey),
    /// Anonymous executable memory (JIT code), `[heap]`, `[stack`…: symbols from
    /// `/tmp/perf-PID.map`, by absolute address.
    PerfMap,
    /// The vDSO.
    Vdso,
    /// Any other `[name]` (`[vsyscall]`, `[uprobes]`): no symbols.
    Special,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    pub pgoff: u64,
    /// The process that mapped it (whose `/proc/PID/root` and perf map apply).
    pub pid: u32,
    /// The module name perf prints: the path, `[vdso]`, or `/tmp/perf-PID.map`.
    pub module: Arc<str>,
    /// The path as the kernel reported it (may end in ` (deleted)`).
    pub path: Arc<str>,
    pub kind: MapKind,
}

impl Mapping {
    /// `path` as the record gives it, classified as perf's `map__new` does.
    pub fn new(
        pid: u32,
        start: u64,
        len: u64,
        pgoff: u64,
        path: &str,
        file: Option<FileKey>,
    ) -> Mapping {
        let anon =
            path == "//anon" || path.starts_with("/dev/zero") || path.starts_with("/anon_hugepage");
        let no_dso = path.starts_with("[stack") || path.starts_with("/SYSV") || path == "[heap]";
        let (kind, module): (MapKind, Arc<str>) = if anon || no_dso {
            (MapKind::PerfMap, format!("/tmp/perf-{pid}.map").into())
        } else if path == "[vdso]" {
            (MapKind::Vdso, path.into())
        } else if path.starts_with('[') {
            (MapKind::Special, path.into())
        } else {
            let key = file.unwrap_or_else(|| FileKey::Path(path.into()));
            (MapKind::File(key), path.into())
        };
        Mapping {
            start,
            end: start.saturating_add(len),
            pgoff,
            pid,
            module,
            path: path.into(),
            kind,
        }
    }

    pub fn contains(&self, addr: u64) -> bool {
        addr >= self.start && addr < self.end
    }
}

/// The executable mappings of one process, by start address (non-overlapping).
#[derive(Clone, Debug, Default)]
pub struct Maps {
    by_start: BTreeMap<u64, Arc<Mapping>>,
}

impl Maps {
    /// Inserts `m`, cutting away the parts of older mappings it overlaps.
    pub fn insert(&mut self, m: Mapping) {
        if m.end <= m.start {
            return;
        }
        let overlapping: Vec<u64> = self
            .by_start
            .range(..m.end)
            .rev()
            .take_while(|(_, o)| o.end > m.start)
            .map(|(&s, _)| s)
            .collect();
        for s in overlapping {
            let old = self.by_start.remove(&s).expect("present");
            if old.start < m.start {
                self.by_start
                    .insert(old.start, Arc::new(cut(&old, old.start, m.start)));
            }
            if old.end > m.end {
                self.by_start
                    .insert(m.end, Arc::new(cut(&old, m.end, old.end)));
            }
        }
        self.by_start.insert(m.start, Arc::new(m));
    }

    pub fn find(&self, addr: u64) -> Option<&Arc<Mapping>> {
        let (_, m) = self.by_start.range(..=addr).next_back()?;
        m.contains(addr).then_some(m)
    }

    pub fn len(&self) -> usize {
        self.by_start.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_start.is_empty()
    }
}

/// The part `[start, end)` of `m`.
fn cut(m: &Mapping, start: u64, end: u64) -> Mapping {
    Mapping {
        start,
        end,
        pgoff: m.pgoff + (start - m.start),
        pid: m.pid,
        module: m.module.clone(),
        path: m.path.clone(),
        kind: m.kind.clone(),
    }
}

/// Threads (names) and processes (maps) of one data file.
#[derive(Default)]
pub struct Machine {
    comms: FxHashMap<u32, Arc<str>>,
    maps: FxHashMap<u32, Maps>,
    /// The kernel's maps from its `MMAP` records (pid -1): its text,
    /// `[kernel.kallsyms]`, and modules, `[name]`.
    kernel_maps: Vec<(u64, u64, Arc<str>)>,
}

impl Machine {
    pub fn comm(&mut self, tid: u32, name: &str) {
        self.comms.insert(tid, name.into());
    }

    pub fn fork(&mut self, pid: u32, ppid: u32, tid: u32, ptid: u32) {
        match self.comms.get(&ptid).cloned() {
            Some(c) => {
                self.comms.insert(tid, c);
            }
            None => {
                self.comms.remove(&tid);
            }
        }
        if pid != ppid {
            let maps = self.maps.get(&ppid).cloned().unwrap_or_default();
            self.maps.insert(pid, maps);
        }
    }

    pub fn mmap(&mut self, m: Mapping) {
        self.maps.entry(m.pid).or_default().insert(m);
    }

    /// A kernel `MMAP` record: `[kernel.kallsyms]_text` or a module's path.
    pub fn kernel_mmap(&mut self, start: u64, len: u64, path: &str) {
        let name: Arc<str> = if path.starts_with("[kernel.kallsyms]") {
            "[kernel.kallsyms]".into()
        } else {
            // perf's `kmod_path__parse_name`: `/lib/…/nf_nat.ko(.xz)` → `[nf_nat]`.
            let base = path.rsplit('/').next().unwrap_or(path);
            let stem = base.split(".ko").next().unwrap_or(base);
            format!("[{}]", stem.replace('-', "_")).into()
        };
        let end = if len == 0 {
            u64::MAX
        } else {
            start.saturating_add(len)
        };
        self.kernel_maps.push((start, end, name));
    }

    /// Where the kernel's text starts (perf's `machine__kernel_start`).
    pub fn kernel_start(&self) -> Option<u64> {
        self.kernel_maps
            .iter()
            .find(|m| &*m.2 == "[kernel.kallsyms]")
            .map(|m| m.0)
    }

    /// The kernel map holding `addr`: its name.
    pub fn kernel_map(&self, addr: u64) -> Option<&Arc<str>> {
        self.kernel_maps
            .iter()
            .find(|m| addr >= m.0 && addr < m.1)
            .map(|m| &m.2)
    }

    /// The name perf prints for a thread.
    pub fn thread_name(&self, tid: u32) -> Arc<str> {
        match self.comms.get(&tid) {
            Some(c) => c.clone(),
            None if tid == 0 => "swapper".into(),
            None => format!(":{tid}").into(),
        }
    }

    pub fn find_map(&self, pid: u32, addr: u64) -> Option<&Arc<Mapping>> {
        self.maps.get(&pid)?.find(addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(start: u64, end: u64, pgoff: u64, path: &str) -> Mapping {
        Mapping::new(7, start, end - start, pgoff, path, None)
    }

    #[test]
    fn overlapping_mappings_are_cut() {
        let mut maps = Maps::default();
        maps.insert(map(0x1000, 0x5000, 0, "/a"));
        maps.insert(map(0x2000, 0x3000, 0x10, "/b"));
        assert_eq!(maps.len(), 3);
        assert_eq!(&*maps.find(0x1fff).unwrap().path, "/a");
        assert_eq!(&*maps.find(0x2000).unwrap().path, "/b");
        let tail = maps.find(0x3000).unwrap();
        assert_eq!(
            (&*tail.path, tail.start, tail.pgoff),
            ("/a", 0x3000, 0x2000)
        );
        assert!(maps.find(0x5000).is_none());
        assert!(maps.find(0xfff).is_none());
        // A mapping covering everything replaces everything.
        maps.insert(map(0x0, 0x10000, 0, "/c"));
        assert_eq!(maps.len(), 1);
    }

    #[test]
    fn kinds_and_modules_follow_perf() {
        assert_eq!(map(0, 1, 0, "//anon").kind, MapKind::PerfMap);
        assert_eq!(&*map(0, 1, 0, "//anon").module, "/tmp/perf-7.map");
        assert_eq!(map(0, 1, 0, "[heap]").kind, MapKind::PerfMap);
        assert_eq!(map(0, 1, 0, "[vdso]").kind, MapKind::Vdso);
        assert_eq!(map(0, 1, 0, "[vsyscall]").kind, MapKind::Special);
        let deleted = map(0, 1, 0, "/usr/lib/x.so (deleted)");
        assert_eq!(&*deleted.module, "/usr/lib/x.so (deleted)");
        assert!(matches!(deleted.kind, MapKind::File(_)));
    }

    #[test]
    fn threads_inherit_names_and_processes_maps() {
        let mut m = Machine::default();
        m.comm(10, "parent");
        m.mmap(Mapping::new(10, 0x1000, 0x1000, 0, "/bin/p", None));
        m.fork(11, 10, 11, 10);
        m.fork(10, 10, 12, 10);
        assert_eq!(&*m.thread_name(11), "parent");
        assert_eq!(&*m.thread_name(12), "parent");
        assert_eq!(&*m.thread_name(99), ":99");
        assert_eq!(&*m.thread_name(0), "swapper");
        assert!(m.find_map(11, 0x1800).is_some());
        assert!(m.find_map(99, 0x1800).is_none());
    }

    #[test]
    fn kernel_maps_and_module_names() {
        let mut m = Machine::default();
        m.kernel_mmap(0xffffffff81000000, 0x1000000, "[kernel.kallsyms]_text");
        m.kernel_mmap(
            0xffffffffc0000000,
            0x1000,
            "/lib/modules/6.1/kernel/nf-nat.ko.xz",
        );
        assert_eq!(m.kernel_start(), Some(0xffffffff81000000));
        assert_eq!(
            m.kernel_map(0xffffffff81000010).map(|n| &**n),
            Some("[kernel.kallsyms]")
        );
        assert_eq!(
            m.kernel_map(0xffffffffc0000010).map(|n| &**n),
            Some("[nf_nat]")
        );
        assert_eq!(m.kernel_map(0xffffffff82000000), None);
    }
}
