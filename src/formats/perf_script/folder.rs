//! The folder itself: a state machine over `perf script` bytes that turns records
//! into counts keyed by interned frame ids, and builds strings only when drained.

use std::mem;

use rustc_hash::FxHashMap;

use super::frame;
use super::lines::{split_event_line, split_stack_line, trim_end};
use super::options::{FoldOptions, MAX_LINE_BYTES, MAX_STACK_FRAMES};
use super::output::{FoldStats, Folded};

/// A streaming folder: feed it `perf script` output in slices of any size, then take
/// the aggregated stacks.
///
/// ```
/// use profpipe::formats::perf_script::{FoldOptions, PerfFolder};
/// let mut folder = PerfFolder::new(FoldOptions::default());
/// folder.feed(b"work 42/42 [000] 1.5: 100 cpu-clock:\n\t11cf main+0x12f (/tmp/work)\n\t2724a __libc_start_call_main+0x7a (/usr/lib/libc.so.6)\n\n");
/// folder.finish();
/// let folded = folder.drain();
/// assert_eq!(folded[0].stack, "work;__libc_start_call_main;main");
/// assert_eq!(folded[0].count, 100);
/// ```
pub struct PerfFolder {
    opts: FoldOptions,
    /// Only samples of this event are counted; set by the first event line that names one.
    event_filter: Option<Box<str>>,

    // Per-record state.
    /// Lines up to the next empty line are stack lines.
    in_event: bool,
    /// The record's event is filtered out: ignore its stack lines.
    skip_record: bool,
    /// The period of the current record. Like the reference tools, it is only
    /// updated by event lines that carry an event field, and reset when a record ends.
    period: Option<u64>,
    /// The current record's root frame (`comm`, `comm-PID`...), interned.
    pname: u32,
    /// Whether the process name starts with `java` (Java symbol tidying).
    java: bool,
    pid: u32,
    /// The frame ids of the current record, leaf first (reversed on emission).
    stack: Vec<u32>,

    // Streaming state.
    /// A partial line from the end of the previous `feed`.
    pub(super) carry: Vec<u8>,
    /// Inside a line over `MAX_LINE_BYTES`: drop bytes up to the next newline.
    skipping_long_line: bool,

    // Interning and aggregation.
    names: Names,
    /// Stack-line caches, both giving a range in `cached_ids` (frame ids in reverse line
    /// order). The first level is keyed by the raw text after the address, exactly as
    /// printed (`sorter+0x24 (/tmp/pp/work)`), one map without and one with Java
    /// tidying; a hit needs no parsing. The second is keyed by symbol without offset and
    /// module (see [`PerfFolder::on_stack_line_slow`]), so each symbol is named once.
    raw_cache: [LineCache; 2],
    line_cache: LineCache,
    cached_ids: Vec<u32>,
    line_cache_bytes: usize,
    /// `[pid, pname, frames root..leaf]` -> weight.
    counts: FxHashMap<Box<[u32]>, u64>,
    counts_key_bytes: usize,

    // Reused buffers.
    key: Vec<u8>,
    ids: Vec<u32>,
    frames: Vec<String>,
    pname_buf: String,
    lossy: String,

    stats: FoldStats,
}

/// Bytes of keys the stack-line caches may hold before they are cleared (their
/// memory is about three times this with hash-table overhead).
pub const LINE_CACHE_LIMIT_BYTES: usize = 2 << 20;

/// Stack-line text -> range of frame ids in `PerfFolder::cached_ids`.
type LineCache = FxHashMap<Box<[u8]>, (u32, u32)>;

/// Interned frame and process names.
#[derive(Default)]
pub(super) struct Names {
    by_name: FxHashMap<Box<str>, u32>,
    names: Vec<Box<str>>,
    bytes: usize,
}

impl Names {
    fn intern(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.by_name.get(name) {
            return id;
        }
        let id = u32::try_from(self.names.len()).expect("fewer than 2^32 distinct frame names");
        self.names.push(name.into());
        self.by_name.insert(name.into(), id);
        self.bytes += 2 * name.len();
        id
    }

    fn get(&self, id: u32) -> &str {
        &self.names[id as usize]
    }
}

impl PerfFolder {
    pub fn new(mut opts: FoldOptions) -> Self {
        opts.include_pid |= opts.include_tid;
        Self {
            opts,
            event_filter: None,
            in_event: false,
            skip_record: false,
            period: None,
            pname: 0,
            java: false,
            pid: 0,
            stack: Vec::with_capacity(128),
            carry: Vec::new(),
            skipping_long_line: false,
            names: Names::default(),
            raw_cache: Default::default(),
            line_cache: FxHashMap::default(),
            cached_ids: Vec::new(),
            line_cache_bytes: 0,
            counts: FxHashMap::default(),
            counts_key_bytes: 0,
            key: Vec::with_capacity(256),
            ids: Vec::with_capacity(128),
            frames: Vec::new(),
            pname_buf: String::new(),
            lossy: String::new(),
            stats: FoldStats::default(),
        }
    }

    /// A folder for one chunk of a stream whose event filter is already known.
    pub(super) fn with_event_filter(opts: FoldOptions, event_filter: Option<Box<str>>) -> Self {
        let mut folder = Self::new(opts);
        folder.event_filter = event_filter;
        folder
    }

    /// The options in force (`include_pid` is set when `include_tid` is).
    pub fn options(&self) -> &FoldOptions {
        &self.opts
    }

    /// The event being counted (the first one seen), once known.
    pub fn event_filter(&self) -> Option<&str> {
        self.event_filter.as_deref()
    }

    /// Feed any slice of the stream: may end mid-line or mid-record; the remainder is kept.
    pub fn feed(&mut self, mut data: &[u8]) {
        self.stats.bytes += data.len() as u64;
        if self.skipping_long_line {
            match memchr::memchr(b'\n', data) {
                None => return,
                Some(nl) => {
                    data = &data[nl + 1..];
                    self.skipping_long_line = false;
                }
            }
        }
        if !self.carry.is_empty() {
            match memchr::memchr(b'\n', data) {
                None => {
                    if self.carry.len() + data.len() > MAX_LINE_BYTES {
                        self.start_skipping_long_line();
                    } else {
                        self.carry.extend_from_slice(data);
                    }
                    return;
                }
                Some(nl) => {
                    if self.carry.len() + nl > MAX_LINE_BYTES {
                        self.stats.oversized_lines += 1;
                        self.carry.clear();
                    } else {
                        self.carry.extend_from_slice(&data[..nl]);
                        let line = mem::take(&mut self.carry);
                        self.on_line(&line);
                        self.carry = line;
                        self.carry.clear();
                    }
                    data = &data[nl + 1..];
                }
            }
        }
        // Checking the whole slice once is much cheaper than validating UTF-8 per line.
        let ascii = data.is_ascii();
        let mut start = 0;
        for nl in memchr::memchr_iter(b'\n', data) {
            let line = &data[start..nl];
            start = nl + 1;
            if ascii && line.len() <= MAX_LINE_BYTES && line.first() != Some(&b'#') {
                // SAFETY: `data` is all ASCII, so every sub-slice is valid UTF-8.
                let line = unsafe { std::str::from_utf8_unchecked(line) };
                self.on_text_line(line);
            } else {
                self.on_line(line);
            }
        }
        let tail = &data[start..];
        if tail.len() > MAX_LINE_BYTES {
            self.start_skipping_long_line();
        } else {
            self.carry.extend_from_slice(tail);
        }
    }

    fn start_skipping_long_line(&mut self) {
        self.stats.oversized_lines += 1;
        self.carry.clear();
        self.carry.shrink_to(4096);
        self.skipping_long_line = true;
    }

    /// End of stream: process what remains (a last line without newline, a last
    /// record without its empty line). The folder may then be fed a new stream; the
    /// event filter stays.
    pub fn finish(&mut self) {
        if !self.carry.is_empty() {
            self.stats.truncated_lines += 1;
            let line = mem::take(&mut self.carry);
            self.on_line(&line);
            self.carry = line;
            self.carry.clear();
        }
        self.skipping_long_line = false;
        if !self.stack.is_empty() {
            self.end_record();
        }
        self.in_event = false;
        self.skip_record = false;
        self.stack.clear();
    }

    /// Take the aggregated stacks so far, sorted by pid then stack (the folder is then
    /// empty but keeps its options, event filter and interning).
    pub fn drain(&mut self) -> Vec<Folded> {
        let mut out: Vec<Folded> = Vec::with_capacity(self.counts.len());
        for (key, count) in self.counts.drain() {
            let ids = &key[1..];
            let mut stack = String::with_capacity(ids.len() * 24);
            self.names.join(ids, &mut stack);
            // The estimate above over-allocates; thousands of stacks are held at once.
            stack.shrink_to_fit();
            out.push(Folded {
                pid: key[0],
                stack,
                count,
            });
        }
        self.counts_key_bytes = 0;
        out.sort_unstable_by(|a, b| (a.pid, &a.stack).cmp(&(b.pid, &b.stack)));
        // A `;` in a process name can make two id sequences spell the same stack.
        out.dedup_by(|later, kept| {
            let same = later.pid == kept.pid && later.stack == kept.stack;
            if same {
                kept.count = kept.count.saturating_add(later.count);
            }
            same
        });
        out
    }

    /// Calls `f(stack, count)` for every aggregated stack (in no particular order;
    /// the same stack string may come twice) and empties the aggregation.
    pub(super) fn drain_into(&mut self, mut f: impl FnMut(&Names, &[u32], u64)) {
        for (key, count) in self.counts.drain() {
            f(&self.names, &key[1..], count);
        }
        self.counts_key_bytes = 0;
    }

    /// Drops the interning caches, to bound memory in a long-running process. Only
    /// possible between records with nothing aggregated (right after [`drain`]);
    /// returns whether it happened.
    ///
    /// [`drain`]: PerfFolder::drain
    pub fn clear_interning(&mut self) -> bool {
        if !self.counts.is_empty() || self.in_event || !self.stack.is_empty() {
            return false;
        }
        self.names = Names::default();
        self.raw_cache = Default::default();
        self.line_cache = FxHashMap::default();
        self.cached_ids = Vec::new();
        self.line_cache_bytes = 0;
        true
    }

    /// Frees the stack-line caches (they only speed up parsing) while keeping what is
    /// aggregated, so a finished window costs only its stacks while it is drained.
    pub fn release_caches(&mut self) {
        self.raw_cache = Default::default();
        self.line_cache = FxHashMap::default();
        self.cached_ids = Vec::new();
        self.line_cache_bytes = 0;
        self.carry = Vec::new();
    }

    pub fn stats(&self) -> &FoldStats {
        &self.stats
    }

    /// Approximate heap bytes held (aggregation map + interning + carry-over), so
    /// callers can bound memory.
    pub fn memory_bytes(&self) -> usize {
        const SLOT: usize = mem::size_of::<(Box<[u32]>, u64)>() + 1;
        const NAME_SLOT: usize = mem::size_of::<(Box<str>, u32)>() + 1 + 16;
        const LINE_SLOT: usize = mem::size_of::<(Box<[u8]>, (u32, u32))>() + 1;
        self.counts.capacity() * SLOT
            + self.counts_key_bytes
            + self.names.by_name.capacity() * NAME_SLOT
            + self.names.bytes
            + (self.line_cache.capacity()
                + self.raw_cache[0].capacity()
                + self.raw_cache[1].capacity())
                * LINE_SLOT
            + self.line_cache_bytes
            + self.cached_ids.capacity() * 4
            + self.carry.capacity()
            + self.stack.capacity() * 4
    }

    /// The number of distinct stacks aggregated.
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    // ---------------------------------------------------------------------------
    // The state machine.

    /// One line, without its newline.
    fn on_line(&mut self, raw: &[u8]) {
        if raw.len() > MAX_LINE_BYTES {
            self.stats.oversized_lines += 1;
            return;
        }
        // Comments (the `perf script --header` block) start with '#'.
        if raw.first() == Some(&b'#') {
            return;
        }
        match std::str::from_utf8(raw) {
            Ok(line) => self.on_text_line(line),
            Err(_) => {
                self.stats.non_utf8_lines += 1;
                let mut lossy = mem::take(&mut self.lossy);
                lossy.clear();
                lossy.push_str(&String::from_utf8_lossy(raw));
                self.on_text_line(&lossy);
                self.lossy = lossy;
            }
        }
    }

    fn on_text_line(&mut self, line: &str) {
        let line = trim_end(line);
        if line.is_empty() {
            self.end_record();
        } else if self.in_event {
            self.on_stack_line(line);
        } else {
            self.on_event_line(line);
            if !self.stack.is_empty() {
                // An event line that carried its one frame.
                self.end_record();
            }
        }
    }

    /// An event line, e.g.
    ///
    /// ```text
    /// work  8964/8964  [000]   501.663562:    2004008 cpu-clock:
    /// java 12688 [002] 6544038.708352: cpu-clock:
    /// false 64414 20110.539270:      34467 cycles:u:  ffffffff9aa3c8de [unknown] ([unknown])
    /// ```
    fn on_event_line(&mut self, line: &str) {
        self.in_event = true;
        let Some(ev) = split_event_line(line) else {
            self.stats.bad_header_lines += 1;
            self.in_event = false;
            return;
        };
        if ev.has_event_field {
            self.period = ev.period;
        }
        if let Some(event) = ev.event {
            match &self.event_filter {
                Some(filter) if **filter != *event => {
                    self.stats.other_event_samples += 1;
                    self.skip_record = true;
                    return;
                }
                Some(_) => {}
                None => self.event_filter = Some(event.into()),
            }
        }

        let mut pname = mem::take(&mut self.pname_buf);
        pname.clear();
        for (i, part) in ev.comm.split(' ').enumerate() {
            if i > 0 {
                pname.push('_');
            }
            pname.push_str(part);
        }
        if self.opts.include_tid {
            pname.push('-');
            pname.push_str(ev.pid);
            pname.push('/');
            pname.push_str(ev.tid);
        } else if self.opts.include_pid {
            pname.push('-');
            pname.push_str(ev.pid);
        }
        self.pname = self.names.intern(&pname);
        self.java = pname.starts_with("java");
        self.pname_buf = pname;
        self.pid = if self.opts.key_by_pid {
            ev.pid.parse().unwrap_or(0)
        } else {
            0
        };

        if let Some(frame) = ev.inline_frame {
            self.on_stack_line(frame);
            self.in_event = false;
        }
    }

    /// A stack line, e.g.
    ///
    /// ```text
    ///                 13d4 sorter+0x24 (/tmp/pp/work)
    ///     ffffffff81b7b44b chacha_block_generic+0xab ([kernel.kallsyms])
    ///     ad8e80845fa54644 [unknown] ([unknown])
    /// ```
    fn on_stack_line(&mut self, line: &str) {
        if self.skip_record {
            return;
        }
        if self.stack.len() >= MAX_STACK_FRAMES {
            self.stats.oversized_stacks += 1;
            self.skip_record = true;
            self.stack.truncate(MAX_STACK_FRAMES);
            return;
        }
        // First level: the raw text after the address.
        // Only when the address starts with a printable ASCII byte: after other
        // (Unicode) whitespace, `split_stack_line`'s trimming could find another word.
        let trimmed = line.trim_start_matches([' ', '\t']).as_bytes();
        let raw = match trimmed.first() {
            Some(b'!'..=b'~') => memchr::memchr(b' ', trimmed).map(|sp| &trimmed[sp + 1..]),
            _ => None,
        };
        if let Some(raw) = raw {
            if let Some(&(start, len)) = self.raw_cache[usize::from(self.java)].get(raw) {
                let ids = &self.cached_ids[start as usize..(start + len) as usize];
                self.stack.extend_from_slice(ids);
                return;
            }
        }
        self.on_stack_line_slow(line, raw);
    }

    /// A stack line not in the first-level cache: parse it, name it (or find it in the
    /// second-level cache), and remember it under `raw`.
    fn on_stack_line_slow(&mut self, line: &str, raw: Option<&[u8]>) {
        // The caches only save parsing; past their bound they start over, so memory
        // stays bounded on captures with millions of distinct addresses. Frame ids
        // already pushed onto the stack stay valid: names are kept.
        if self.line_cache_bytes > LINE_CACHE_LIMIT_BYTES {
            self.raw_cache = Default::default();
            self.line_cache = FxHashMap::default();
            self.cached_ids.clear();
            self.line_cache_bytes = 0;
        }
        let Some(sl) = split_stack_line(line) else {
            self.stats.bad_frame_lines += 1;
            return;
        };
        // A parenthesised "symbol" is a process name, not a frame.
        if sl.symbol.starts_with('(') {
            return;
        }
        // With --addrs an unknown frame's name includes its address: don't cache it.
        // (A Rust-hashed symbol can demangle to anything, so it is not cached either.)
        if self.opts.include_addrs
            && (sl.symbol.contains("[unknown]") || frame::has_rust_hash(sl.symbol))
        {
            self.name_uncached(sl.symbol, sl.module, sl.pc);
            return;
        }

        // Second-level key: java flag, symbol length, symbol, module.
        self.key.clear();
        self.key.push(u8::from(self.java));
        self.key
            .extend_from_slice(&(sl.symbol.len() as u32).to_le_bytes());
        self.key.extend_from_slice(sl.symbol.as_bytes());
        self.key.extend_from_slice(sl.module.as_bytes());
        let range = match self.line_cache.get(self.key.as_slice()) {
            Some(&range) => range,
            None => {
                let start = self.cached_ids.len();
                self.frames.clear();
                frame::name_frames(
                    sl.symbol,
                    sl.module,
                    sl.pc,
                    self.java,
                    &self.opts,
                    &mut self.frames,
                );
                for f in self.frames.iter().rev() {
                    let id = self.names.intern(f);
                    self.cached_ids.push(id);
                }
                let range = (start as u32, (self.cached_ids.len() - start) as u32);
                self.line_cache_bytes += self.key.len();
                self.line_cache.insert(self.key.as_slice().into(), range);
                range
            }
        };
        let (start, len) = range;
        self.stack
            .extend_from_slice(&self.cached_ids[start as usize..(start + len) as usize]);
        if let Some(raw) = raw {
            self.line_cache_bytes += raw.len();
            self.raw_cache[usize::from(self.java)].insert(raw.into(), range);
        }
    }

    fn name_uncached(&mut self, symbol: &str, module: &str, pc: &str) {
        self.frames.clear();
        frame::name_frames(symbol, module, pc, self.java, &self.opts, &mut self.frames);
        for f in self.frames.iter().rev() {
            let id = self.names.intern(f);
            self.stack.push(id);
        }
    }

    /// An empty line (or the end of input): count the record's stack, if any.
    fn end_record(&mut self) {
        if !self.stack.is_empty() {
            self.ids.clear();
            self.ids.push(self.pid);
            self.ids.push(self.pname);
            self.ids.extend(self.stack.iter().rev());
            let weight = if self.opts.count_samples {
                1
            } else {
                self.period.unwrap_or(1)
            };
            match self.counts.get_mut(self.ids.as_slice()) {
                Some(c) => *c = c.saturating_add(weight),
                None => {
                    self.counts_key_bytes += self.ids.len() * 4;
                    self.counts.insert(self.ids.as_slice().into(), weight);
                }
            }
            self.stats.samples += 1;
        }
        self.in_event = false;
        self.skip_record = false;
        self.stack.clear();
        self.period = None;
    }
}

impl Names {
    /// Writes the names of `ids` joined by `;` into `out` (cleared first).
    fn join(&self, ids: &[u32], out: &mut String) {
        out.clear();
        for (i, &id) in ids.iter().enumerate() {
            if i > 0 {
                out.push(';');
            }
            out.push_str(self.get(id));
        }
    }

    /// Appends the names of `ids` joined by `;` to `out`.
    pub(super) fn append_joined(&self, ids: &[u32], out: &mut Vec<u8>) {
        for (i, &id) in ids.iter().enumerate() {
            if i > 0 {
                out.push(b';');
            }
            out.extend_from_slice(self.get(id).as_bytes());
        }
    }
}
