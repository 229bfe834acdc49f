//! perf.data → `perf script -F +pid --no-inline` text, in this process.
//!
//! Records are read in time order; each sample's callchain is turned into frame keys
//! (mapping + address, or kernel address) while the process state is that of the
//! sample's time; unique frames are symbolized in batches (one table load per file);
//! then the samples are written out as the text `perf script` prints, which the
//! `fold` transform and `profpipe fold` already turn into stacks:
//!
//! ```text
//! work 8964/8964 501.663562: 2004008 cpu-clock:
//!     13d4 sorter+0x24 (/tmp/pp/work)
//!     ffffffff81b7b44b chacha_block_generic+0xab ([kernel.kallsyms])
//!
//! ```
//!
//! Writing text rather than handing the folder decoded samples keeps one folder, one
//! set of naming rules and one event kind on pipeline edges; what made `perf script`
//! expensive was loading symbols, not the text (see the README).

use std::io::{Read, Seek};
use std::sync::Arc;

use linux_perf_data::linux_perf_event_reader::{
    CpuMode, EventRecord, Mmap2FileId, RawData, SampleRecord,
};
use linux_perf_data::{PerfFileReader, PerfFileRecord};
use rustc_hash::FxHashMap;

use super::process::{Machine, MapKind, Mapping};
use super::symbols::{makedev, FileKey, Symbolizer, KERNEL_DSO};
use super::{Layout, PerfDataError};

/// Text written before it is handed on (whole records only).
pub const PIECE_BYTES: usize = 256 * 1024;
/// Frames of buffered samples before their unique frames are symbolized and the
/// samples written.
const BATCH_FRAMES: usize = 256 * 1024;
/// Unique frames remembered within one file; past it the memo starts over between
/// batches.
const MAX_FRAME_MEMO: usize = 1 << 20;
/// perf's default `kernel.perf_event_max_stack`: frames `perf script` prints at most.
const DEFAULT_MAX_STACK: usize = 127;

// Callchain context markers (`enum perf_callchain_context`).
const PERF_CONTEXT_HV: u64 = (-32i64) as u64;
const PERF_CONTEXT_KERNEL: u64 = (-128i64) as u64;
const PERF_CONTEXT_USER: u64 = (-512i64) as u64;
const PERF_CONTEXT_MAX: u64 = (-4095i64) as u64;

/// What one conversion saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConvertStats {
    /// Sample records read.
    pub samples: u64,
    /// Samples written with at least one frame.
    pub written: u64,
    /// Frames written, and how many distinct (mapping, address) were symbolized.
    pub frames: u64,
    pub unique_frames: u64,
    /// Records the parser could not decode (skipped).
    pub bad_records: u64,
    /// Samples the kernel lost (`LOST` records), as perf reports them.
    pub lost_samples: u64,
    /// The file ended early (a truncated recording): what came before is kept.
    pub truncated: bool,
}

/// Where a frame's name comes from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum FrameKey {
    User { map: u32, ip: u64 },
    Kernel { ip: u64 },
    Unknown { ip: u64 },
}

struct Pending {
    thread: Arc<str>,
    pid: u32,
    tid: u32,
    time: u64,
    period: Option<u64>,
    event: u32,
    /// Range in `Batch::frames`, leaf first.
    frames: (u32, u32),
}

#[derive(Default)]
struct Batch {
    samples: Vec<Pending>,
    frames: Vec<u32>,
}

/// Converts perf.data files into `perf script` text; keep one for the life of a
/// source so its symbol caches serve every window.
pub struct Converter {
    pub symbolizer: Symbolizer,
    max_stack: usize,
}

impl Converter {
    pub fn new(symbolizer: Symbolizer) -> Self {
        let max_stack = std::fs::read_to_string("/proc/sys/kernel/perf_event_max_stack")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(DEFAULT_MAX_STACK);
        Converter {
            symbolizer,
            max_stack,
        }
    }

    /// Reads a perf.data file of either layout and hands `out` its text in pieces of
    /// whole records; `out` returns false to stop early.
    pub fn convert<R: Read + Seek>(
        &mut self,
        mut input: R,
        out: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<ConvertStats, PerfDataError> {
        let mut magic = [0u8; 16];
        input
            .read_exact(&mut magic)
            .map_err(|_| PerfDataError::NotPerfData)?;
        let layout = super::detect(&magic).ok_or(PerfDataError::NotPerfData)?;
        if layout == Layout::File {
            // A perf killed before it finished its file left a data size of 0: read
            // up to the end of the file, as `perf script` does.
            if let Some(fixed) = super::unfinished_file(&mut input)? {
                return self.convert_layout(std::io::Cursor::new(fixed), layout, out);
            }
            super::check_file_header(&mut input)?;
        }
        self.convert_layout(input, layout, out)
    }

    fn convert_layout<R: Read + Seek>(
        &mut self,
        mut input: R,
        layout: Layout,
        out: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<ConvertStats, PerfDataError> {
        input.seek(std::io::SeekFrom::Start(0))?;
        // The parser trusts sizes it reads; damage it still trips on is an error of
        // this file, not of the agent.
        let parsed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match layout {
            Layout::File => PerfFileReader::parse_file(input),
            Layout::Pipe => PerfFileReader::parse_pipe(input),
        }));
        let reader = match parsed {
            Ok(r) => r.map_err(|e| PerfDataError::Header(e.to_string()))?,
            Err(_) => return Err(PerfDataError::Header("malformed header".into())),
        };
        self.symbolizer.begin();
        let mut run = Run::new(self.max_stack);
        let PerfFileReader {
            mut perf_file,
            mut record_iter,
        } = reader;
        run.events = perf_file
            .event_attributes()
            .iter()
            .enumerate()
            .map(|(i, a)| event_name(a.name(), i))
            .collect();
        let symbolizer = &mut self.symbolizer;
        let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| loop {
            let record = match record_iter.next_record(&mut perf_file) {
                Ok(Some(r)) => r,
                Ok(None) => return true,
                Err(_) => {
                    run.stats.truncated = true;
                    return true;
                }
            };
            let PerfFileRecord::EventRecord { attr_index, record } = record else {
                continue;
            };
            let parsed = match record.parse() {
                Ok(p) => p,
                Err(_) => {
                    run.stats.bad_records += 1;
                    continue;
                }
            };
            run.record(attr_index, parsed);
            if run.batch.frames.len() >= BATCH_FRAMES && !run.flush(symbolizer, out) {
                return false;
            }
        }));
        match read {
            Ok(true) => {}
            Ok(false) => return Ok(run.stats),
            // The parser tripped on damage: what was read before is kept.
            Err(_) => run.stats.truncated = true,
        }
        run.flush(&mut self.symbolizer, out);
        if !run.text.is_empty() {
            out(&run.text);
        }
        Ok(run.stats)
    }
}

/// The state of one file's conversion.
struct Run {
    machine: Machine,
    max_stack: usize,
    events: Vec<Box<str>>,
    mappings: Vec<Arc<Mapping>>,
    /// Mapping identity → index in `mappings` (a mapping shared by a fork keeps one).
    mapping_ids: FxHashMap<*const Mapping, u32>,
    frame_ids: FxHashMap<FrameKey, u32>,
    frame_keys: Vec<FrameKey>,
    /// Text of each frame line after the address, once symbolized.
    frame_text: Vec<Option<Box<str>>>,
    batch: Batch,
    text: Vec<u8>,
    stats: ConvertStats,
}

impl Run {
    fn new(max_stack: usize) -> Self {
        Run {
            machine: Machine::default(),
            max_stack,
            events: Vec::new(),
            mappings: Vec::new(),
            mapping_ids: FxHashMap::default(),
            frame_ids: FxHashMap::default(),
            frame_keys: Vec::new(),
            frame_text: Vec::new(),
            batch: Batch::default(),
            text: Vec::with_capacity(PIECE_BYTES + 4096),
            stats: ConvertStats::default(),
        }
    }

    fn record(&mut self, attr_index: usize, record: EventRecord<'_>) {
        match record {
            EventRecord::Sample(s) => self.sample(attr_index, &s),
            EventRecord::Comm(c) => self.machine.comm(c.tid as u32, &string(&c.name)),
            EventRecord::Fork(f) => {
                self.machine
                    .fork(f.pid as u32, f.ppid as u32, f.tid as u32, f.ptid as u32)
            }
            EventRecord::Mmap(m) => {
                let path = string(&m.path);
                self.mmap(
                    m.pid,
                    m.address,
                    m.length,
                    m.page_offset,
                    &path,
                    None,
                    m.cpu_mode,
                );
            }
            EventRecord::Mmap2(m) => {
                let path = string(&m.path);
                let key = match &m.file_id {
                    Mmap2FileId::InodeAndVersion(i) => FileKey::Inode {
                        dev: makedev(i.major, i.minor),
                        ino: i.inode,
                    },
                    Mmap2FileId::BuildId(b) => FileKey::BuildId(b.clone().into_boxed_slice()),
                };
                self.mmap(
                    m.pid,
                    m.address,
                    m.length,
                    m.page_offset,
                    &path,
                    Some(key),
                    m.cpu_mode,
                );
            }
            EventRecord::Lost(l) => self.stats.lost_samples += l.count,
            _ => {}
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn mmap(
        &mut self,
        pid: i32,
        start: u64,
        len: u64,
        pgoff: u64,
        path: &str,
        key: Option<FileKey>,
        mode: CpuMode,
    ) {
        if pid == -1 || mode == CpuMode::Kernel {
            self.machine.kernel_mmap(start, len, path);
            return;
        }
        self.machine
            .mmap(Mapping::new(pid as u32, start, len, pgoff, path, key));
    }

    fn sample(&mut self, attr_index: usize, s: &SampleRecord<'_>) {
        self.stats.samples += 1;
        // A sample without a task (pid -1: a task caught while it exits) has no
        // thread for perf to print; `perf script` leaves it out, and so does this.
        let (Some(pid), Some(tid)) = (s.pid, s.tid) else {
            return;
        };
        if pid < 0 || tid < 0 {
            return;
        }
        let (pid, tid) = (pid as u32, tid as u32);
        let start = self.batch.frames.len() as u32;
        match &s.callchain {
            Some(chain) => {
                // perf starts in user mode; markers switch the mode and are not frames.
                let mut mode = CpuMode::User;
                let mut n = 0;
                for i in 0..chain.len() {
                    let Some(ip) = chain.get(i) else { break };
                    if ip >= PERF_CONTEXT_MAX {
                        mode = match ip {
                            PERF_CONTEXT_KERNEL => CpuMode::Kernel,
                            PERF_CONTEXT_USER => CpuMode::User,
                            PERF_CONTEXT_HV => CpuMode::Hypervisor,
                            // perf drops a chain with any other marker as corrupt.
                            _ => {
                                self.batch.frames.truncate(start as usize);
                                break;
                            }
                        };
                        continue;
                    }
                    if n == self.max_stack {
                        break;
                    }
                    n += 1;
                    let f = self.frame(pid, mode, ip);
                    self.batch.frames.push(f);
                }
            }
            None => {
                if let Some(ip) = s.ip {
                    let f = self.frame(pid, s.cpu_mode, ip);
                    self.batch.frames.push(f);
                }
            }
        }
        let end = self.batch.frames.len() as u32;
        self.batch.samples.push(Pending {
            thread: self.machine.thread_name(tid),
            pid,
            tid,
            time: s.timestamp.unwrap_or(0),
            period: s.period,
            event: attr_index as u32,
            frames: (start, end - start),
        });
    }

    /// The frame id of `ip` in `pid` (perf's `thread__find_map`).
    fn frame(&mut self, pid: u32, mode: CpuMode, ip: u64) -> u32 {
        let kernel_start = self.machine.kernel_start().unwrap_or(KERNEL_SPACE);
        let key = match mode {
            CpuMode::Kernel if ip >= kernel_start => FrameKey::Kernel { ip },
            CpuMode::User => match self.machine.find_map(pid, ip) {
                Some(m) => {
                    let next = self.mappings.len() as u32;
                    let id = *self.mapping_ids.entry(Arc::as_ptr(m)).or_insert(next);
                    if id == next {
                        self.mappings.push(m.clone());
                    }
                    FrameKey::User { map: id, ip }
                }
                // A user-mode address in the kernel's range (vsyscall): perf looks
                // in the kernel.
                None if ip >= kernel_start => FrameKey::Kernel { ip },
                None => FrameKey::Unknown { ip },
            },
            _ => FrameKey::Unknown { ip },
        };
        let next = self.frame_keys.len() as u32;
        let id = *self.frame_ids.entry(key.clone()).or_insert(next);
        if id == next {
            self.frame_keys.push(key);
            self.frame_text.push(None);
        }
        id
    }

    /// Symbolizes the batch's new frames, writes its samples, and empties it. False
    /// when `out` asked to stop.
    fn flush(&mut self, sym: &mut Symbolizer, out: &mut dyn FnMut(&[u8]) -> bool) -> bool {
        self.symbolize(sym);
        let batch = std::mem::take(&mut self.batch);
        for p in &batch.samples {
            let (start, len) = (p.frames.0 as usize, p.frames.1 as usize);
            write_header(&mut self.text, p, &self.events);
            for &f in &batch.frames[start..start + len] {
                let text = self.frame_text[f as usize]
                    .as_deref()
                    .unwrap_or("0 [unknown] ([unknown])");
                self.text.push(b'\t');
                self.text.extend_from_slice(text.as_bytes());
                self.text.push(b'\n');
            }
            self.text.push(b'\n');
            if len > 0 {
                self.stats.written += 1;
                self.stats.frames += len as u64;
            }
            if self.text.len() >= PIECE_BYTES {
                let go_on = out(&self.text);
                self.text.clear();
                if !go_on {
                    return false;
                }
            }
        }
        self.batch = Batch {
            samples: Vec::new(),
            frames: Vec::new(),
        };
        if self.frame_keys.len() > MAX_FRAME_MEMO {
            self.frame_ids.clear();
            self.frame_keys.clear();
            self.frame_text.clear();
            self.mappings.clear();
            self.mapping_ids.clear();
        }
        true
    }

    /// Names every frame not named yet, one table lookup per file.
    fn symbolize(&mut self, sym: &mut Symbolizer) {
        let todo: Vec<u32> = (0..self.frame_keys.len() as u32)
            .filter(|&i| self.frame_text[i as usize].is_none())
            .collect();
        self.stats.unique_frames += todo.len() as u64;
        // Group by mapping so each file's table is fetched once.
        let mut by_map: FxHashMap<u32, Vec<u32>> = FxHashMap::default();
        for &f in &todo {
            match self.frame_keys[f as usize] {
                FrameKey::User { map, .. } => by_map.entry(map).or_default().push(f),
                FrameKey::Kernel { ip } => {
                    // Without kernel MMAP records (a pipe capture may lack them) every
                    // kernel-space address is taken as the kernel's.
                    let map = match self.machine.kernel_start() {
                        Some(_) => self.machine.kernel_map(ip).map(|m| &**m),
                        None => Some(KERNEL_DSO),
                    };
                    let text = match (map, sym.kallsyms().find(ip)) {
                        (None, _) => format!("{ip:x} [unknown] ([unknown])"),
                        (Some(_), Some((name, module, start))) => {
                            format!("{ip:x} {}+0x{:x} ({module})", clean(name), ip - start)
                        }
                        (Some(map), None) => format!("{ip:x} [unknown] ({map})"),
                    };
                    self.frame_text[f as usize] = Some(text.into());
                }
                FrameKey::Unknown { ip } => {
                    self.frame_text[f as usize] =
                        Some(format!("{ip:x} [unknown] ([unknown])").into());
                }
            }
        }
        for (map, frames) in by_map {
            let m = self.mappings[map as usize].clone();
            let (table, base) = match &m.kind {
                MapKind::File(key) => (
                    sym.file(key, &candidates(&m)),
                    m.pgoff.wrapping_sub(m.start),
                ),
                MapKind::PerfMap => (sym.perf_map(m.pid), 0),
                MapKind::Vdso => (sym.vdso(), m.pgoff.wrapping_sub(m.start)),
                MapKind::Special => (None, m.pgoff.wrapping_sub(m.start)),
            };
            // The folder splits a frame line at its last space: a module with spaces
            // (`/lib/x.so (deleted)`) would not survive, so the suffix goes.
            let module = m.module.strip_suffix(" (deleted)").unwrap_or(&m.module);
            for f in frames {
                let FrameKey::User { ip, .. } = self.frame_keys[f as usize] else {
                    continue;
                };
                // perf prints user addresses relative to their map (`map_ip`).
                let addr = ip.wrapping_add(base);
                let text = match table.as_ref().and_then(|t| t.find(addr)) {
                    Some(s) => {
                        let name = if matches!(m.kind, MapKind::PerfMap) {
                            &*s.name
                        } else {
                            sym.demangle(&s.name)
                        };
                        format!(
                            "{addr:x} {}+0x{:x} ({})",
                            clean(name),
                            addr - s.start,
                            module
                        )
                    }
                    None => format!("{addr:x} [unknown] ({module})"),
                };
                self.frame_text[f as usize] = Some(text.into());
            }
        }
    }
}

/// Where the kernel's map starts when the file has no kernel `MMAP` record: the
/// lowest kernel-space address on x86_64.
const KERNEL_SPACE: u64 = 0xffff_8000_0000_0000;

/// Where to read a mapped file: through the process's root while it runs (another
/// mount namespace, or `/proc/PID/map_files` for a deleted file), else the path.
fn candidates(m: &Mapping) -> Vec<std::path::PathBuf> {
    let proc = std::path::PathBuf::from(format!("/proc/{}", m.pid));
    let alive = proc.exists();
    let mut out = Vec::with_capacity(2);
    if m.path.ends_with(" (deleted)") {
        if alive {
            out.push(proc.join(format!("map_files/{:x}-{:x}", m.start, m.end)));
        }
        return out;
    }
    if alive {
        out.push(proc.join("root").join(m.path.trim_start_matches('/')));
    }
    out.push(std::path::PathBuf::from(&*m.path));
    out
}

/// A symbol name safe to print on one line.
fn clean(name: &str) -> std::borrow::Cow<'_, str> {
    if name.contains('\n') {
        std::borrow::Cow::Owned(name.replace('\n', " "))
    } else {
        std::borrow::Cow::Borrowed(name)
    }
}

/// `comm PID/TID TIME: [PERIOD] EVENT:`, as `perf script -F +pid` prints it.
fn write_header(text: &mut Vec<u8>, p: &Pending, events: &[Box<str>]) {
    use std::io::Write;
    let event = events.get(p.event as usize).map_or("event", |e| e);
    let (secs, nanos) = (p.time / 1_000_000_000, p.time % 1_000_000_000);
    let _ = write!(
        text,
        "{} {}/{} {secs}.{:06}: ",
        p.thread,
        p.pid,
        p.tid,
        nanos / 1000
    );
    if let Some(period) = p.period {
        let _ = write!(text, "{period} ");
    }
    let _ = writeln!(text, "{event}:");
}

/// An event's name as one word without `:` (the text's field separator).
fn event_name(name: Option<&str>, index: usize) -> Box<str> {
    match name {
        Some(n) if !n.is_empty() => n.split(':').next().unwrap_or(n).replace(' ', "_").into(),
        _ => format!("event{index}").into(),
    }
}

fn string(raw: &RawData<'_>) -> String {
    String::from_utf8_lossy(&raw.as_slice()).into_owned()
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader};
    use std::os::unix::fs::MetadataExt;
    use std::process::{Command, Stdio};

    use super::*;
    use crate::formats::perf_data::symbols::SymbolizerLimits;

    /// A shared library with one exported function, stripped to `.dynsym` only.
    fn stripped_library(dir: &std::path::Path) -> Option<std::path::PathBuf> {
        let src = dir.join("x.c");
        std::fs::write(
            &src,
            "int profpipe_exported(int x) { int s = 0; for (int i = 0; i < x; i++) s += i * x; return s; }\n",
        )
        .unwrap();
        let lib = dir.join("libx.so");
        let built = Command::new("cc")
            .args(["-O1", "-shared", "-fPIC", "-o"])
            .arg(&lib)
            .arg(&src)
            .status()
            .is_ok_and(|s| s.success())
            && Command::new("strip")
                .arg(&lib)
                .status()
                .is_ok_and(|s| s.success());
        if !built {
            eprintln!("skipping: needs cc and strip");
            return None;
        }
        Some(lib)
    }

    /// The file offset of `name` in a `.dynsym`, read with the system's `nm -D`.
    fn dynsym_offset(lib: &std::path::Path, name: &str) -> u64 {
        let out = Command::new("nm").arg("-D").arg(lib).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find(|l| l.ends_with(name))
            .expect("symbol in nm -D");
        // In a small -shared library the text segment's vaddr equals its offset.
        u64::from_str_radix(line.split(' ').next().unwrap(), 16).unwrap()
    }

    #[test]
    fn dynsym_only_library_is_symbolized() {
        let dir = tempfile::tempdir().unwrap();
        let Some(lib) = stripped_library(dir.path()) else {
            return;
        };
        let data = std::fs::read(&lib).unwrap();
        assert!(!super::super::symbols::elf::info(&data).unwrap().has_symtab);
        let off = dynsym_offset(&lib, "profpipe_exported");
        let mut s = Symbolizer::default();
        s.begin();
        let m = std::fs::metadata(&lib).unwrap();
        let key = FileKey::Inode {
            dev: m.dev(),
            ino: m.ino(),
        };
        let t = s
            .file(&key, std::slice::from_ref(&lib))
            .expect("a table from .dynsym");
        assert_eq!(t.find(off + 2).unwrap().name.as_ref(), "profpipe_exported");
        // A second lookup is served from the cache.
        s.file(&key, &[lib]).unwrap();
        assert_eq!((s.stats().hits, s.stats().misses), (1, 1));
    }

    #[test]
    fn deleted_library_is_read_through_map_files_while_its_process_lives() {
        let dir = tempfile::tempdir().unwrap();
        let Some(lib) = stripped_library(dir.path()) else {
            return;
        };
        let off = dynsym_offset(&lib, "profpipe_exported");
        // A process that maps the library, says so, and waits for its stdin to close.
        let script = format!(
            "import ctypes, sys; ctypes.CDLL({:?}); print('loaded', flush=True); sys.stdin.read()",
            lib.to_str().unwrap()
        );
        let Ok(mut child) = Command::new("python3")
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
        else {
            eprintln!("skipping: needs python3");
            return;
        };
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "loaded");
        let m = std::fs::metadata(&lib).unwrap();
        let key = FileKey::Inode {
            dev: m.dev(),
            ino: m.ino(),
        };
        std::fs::remove_file(&lib).unwrap();
        let pid = child.id();
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
        let exec = maps
            .lines()
            .find(|l| {
                l.contains("libx.so (deleted)")
                    && l.split_whitespace().nth(1).is_some_and(|p| p.contains('x'))
            })
            .expect("the deleted library's executable mapping");
        let mut f = exec.split_whitespace();
        let (range, pgoff) = (f.next().unwrap(), f.nth(1).unwrap());
        let (start, end) = range.split_once('-').unwrap();
        let start = u64::from_str_radix(start, 16).unwrap();
        let end = u64::from_str_radix(end, 16).unwrap();
        let pgoff = u64::from_str_radix(pgoff, 16).unwrap();
        let path = format!("{} (deleted)", lib.display());
        let mapping = Mapping::new(pid, start, end - start, pgoff, &path, Some(key.clone()));
        assert_eq!(&*mapping.module, path.as_str());
        let mut s = Symbolizer::new(SymbolizerLimits::default());
        s.begin();
        let t = s
            .file(&key, &candidates(&mapping))
            .expect("read through map_files");
        assert_eq!(t.find(off).unwrap().name.as_ref(), "profpipe_exported");
        drop(child.stdin.take());
        let _ = child.wait();
        // Once the process is gone, there is nothing to read: the frame stays unknown.
        assert!(candidates(&mapping).is_empty());
    }
}
