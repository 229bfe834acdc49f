//! How an event is written into a disk buffer record, and read back.
//!
//! The record's payload: a format version byte ([`VERSION`]), a kind byte, then the
//! event's fields in a fixed order. Integers are LEB128 varints; strings and byte
//! strings are a varint length then the bytes (strings must be UTF-8). Delivery
//! tokens are not written: they belong to the process that made them, and the
//! buffer gives every record read back a token of its own.
//!
//! A payload that does not decode (a new version, a field out of range) is an
//! error, which the buffer counts as a corrupted record: the CRC guards the bytes,
//! this guards their meaning.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;

use crate::event::{
    Diagnostic, Event, LabelSet, Labels, PerfScriptChunk, Profile, RunEnd, Stack, Watermark,
    Window, MAX_LABELS,
};

/// Version of the payload layout, first byte of every payload.
pub const VERSION: u8 = 1;

const PERF_SCRIPT: u8 = 1;
const PROFILE: u8 = 2;
const WATERMARK: u8 = 3;
const DIAGNOSTIC: u8 = 4;

/// Most distinct diagnostic reasons interned when read back (see [`intern`]).
const MAX_REASONS: usize = 64;

/// Why a payload could not be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("payload version {0} is not {VERSION}")]
    Version(u8),
    #[error("unknown event kind {0}")]
    Kind(u8),
    #[error("payload ends inside a field")]
    Truncated,
    #[error("a varint is longer than 10 bytes or above 2^64")]
    Varint,
    #[error("a string is not UTF-8")]
    Utf8,
    #[error("bad label: {0}")]
    Label(String),
    #[error("{0} bytes after the event")]
    Trailing(usize),
    #[error("bad value of {0}")]
    Value(&'static str),
}

/// Appends the payload of `event` to `out`.
pub fn encode(event: &Event, out: &mut Vec<u8>) {
    out.push(VERSION);
    match event {
        // A chunk's process labels are not kept: disk buffers sit in front of
        // sinks, and no sink takes perf script text to fold.
        Event::PerfScript(c) => {
            out.push(PERF_SCRIPT);
            put_window(out, c.window);
            put_labels(out, &c.labels);
            put_bytes(out, &c.data);
        }
        Event::Profile(p) => {
            out.push(PROFILE);
            put_window(out, p.window);
            put_labels(out, &p.labels);
            put_u64(out, p.stacks.len() as u64);
            for s in &p.stacks {
                put_u64(out, s.pid.into());
                match &s.container {
                    Some(c) => {
                        out.push(1);
                        put_str(out, c);
                    }
                    None => out.push(0),
                }
                put_str(out, &s.frames);
                put_u64(out, s.count);
            }
        }
        Event::Watermark(w) => {
            out.push(WATERMARK);
            put_str(out, &w.source);
            put_u64(out, w.complete_until_ms);
        }
        Event::Diagnostic(d) => {
            out.push(DIAGNOSTIC);
            put_window(out, d.window);
            put_labels(out, &d.labels);
            put_u64(out, d.pid.into());
            put_opt_str(out, d.comm.as_deref());
            match &d.end {
                RunEnd::Exited(code) => {
                    out.push(0);
                    put_i64(out, (*code).into());
                }
                RunEnd::Signaled(sig) => {
                    out.push(1);
                    put_i64(out, (*sig).into());
                }
                RunEnd::TimedOut => out.push(2),
                RunEnd::SpawnFailed(msg) => {
                    out.push(3);
                    put_str(out, msg);
                }
            }
            put_str(out, &d.stderr);
            out.push(match d.target_alive {
                None => 0,
                Some(false) => 1,
                Some(true) => 2,
            });
            put_opt_str(out, d.reason);
        }
    }
}

/// Reads an event back; its delivery tokens are empty.
pub fn decode(payload: &[u8]) -> Result<Event, DecodeError> {
    let mut r = Reader(payload);
    let version = r.byte()?;
    if version != VERSION {
        return Err(DecodeError::Version(version));
    }
    let event = match r.byte()? {
        PERF_SCRIPT => Event::PerfScript(PerfScriptChunk {
            process_labels: Default::default(),
            window: r.window()?,
            labels: r.labels()?,
            data: Bytes::copy_from_slice(r.bytes()?),
            finalizers: Default::default(),
        }),
        PROFILE => {
            let window = r.window()?;
            let labels = r.labels()?;
            let n = r.u64()?;
            // Each stack takes at least 4 bytes: a corrupt count cannot make us
            // reserve more than the payload could hold.
            let mut stacks = Vec::with_capacity((n as usize).min(r.0.len() / 4));
            for _ in 0..n {
                let pid = r.u32("pid")?;
                let container = match r.byte()? {
                    0 => None,
                    1 => Some(Arc::from(r.str()?)),
                    _ => return Err(DecodeError::Value("container")),
                };
                let frames: Box<str> = r.str()?.into();
                let count = r.u64()?;
                stacks.push(Stack {
                    pid,
                    container,
                    frames,
                    count,
                });
            }
            Event::Profile(Profile {
                window,
                labels,
                stacks: stacks.into(),
                finalizers: Default::default(),
            })
        }
        WATERMARK => Event::Watermark(Watermark {
            source: r.str()?.into(),
            complete_until_ms: r.u64()?,
        }),
        DIAGNOSTIC => {
            let window = r.window()?;
            let labels = r.labels()?;
            let pid = r.u32("pid")?;
            let comm = r.opt_str()?.map(Arc::from);
            let end = match r.byte()? {
                0 => RunEnd::Exited(r.i32("exit code")?),
                1 => RunEnd::Signaled(r.i32("signal")?),
                2 => RunEnd::TimedOut,
                3 => RunEnd::SpawnFailed(r.str()?.to_string()),
                _ => return Err(DecodeError::Value("run end")),
            };
            let stderr = Arc::from(r.str()?);
            let target_alive = match r.byte()? {
                0 => None,
                1 => Some(false),
                2 => Some(true),
                _ => return Err(DecodeError::Value("target_alive")),
            };
            let reason = r.opt_str()?.map(intern);
            Event::Diagnostic(Diagnostic {
                window,
                labels,
                pid,
                comm,
                end,
                stderr,
                target_alive,
                reason,
                finalizers: Default::default(),
            })
        }
        kind => return Err(DecodeError::Kind(kind)),
    };
    if !r.0.is_empty() {
        return Err(DecodeError::Trailing(r.0.len()));
    }
    Ok(event)
}

/// A diagnostic's reason is a `&'static str` (one of `classify`'s names). Read back,
/// it is interned: at most [`MAX_REASONS`] distinct strings are ever kept, so a
/// corrupt or hostile buffer cannot grow memory; past that it reads as "unknown".
fn intern(s: &str) -> &'static str {
    static SET: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut set = SET
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(r) = set.get(s) {
        return r;
    }
    if set.len() >= MAX_REASONS {
        return "unknown";
    }
    let leaked: &'static str = Box::leak(s.into());
    set.insert(leaked);
    leaked
}

fn put_u64(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Zigzag, so small negative codes stay small.
fn put_i64(out: &mut Vec<u8>, v: i64) {
    put_u64(out, ((v << 1) ^ (v >> 63)) as u64);
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_u64(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_bytes(out, s.as_bytes());
}

fn put_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => {
            out.push(1);
            put_str(out, s);
        }
        None => out.push(0),
    }
}

fn put_window(out: &mut Vec<u8>, w: Window) {
    put_u64(out, w.start_ms);
    put_u64(out, w.end_ms);
}

fn put_labels(out: &mut Vec<u8>, l: &Labels) {
    put_str(out, &l.host);
    put_str(out, &l.source);
    put_str(out, &l.profiler);
    put_u64(out, l.extra.len() as u64);
    for (k, v) in l.extra.iter() {
        put_str(out, k);
        put_str(out, v);
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, DecodeError> {
        let (&b, rest) = self.0.split_first().ok_or(DecodeError::Truncated)?;
        self.0 = rest;
        Ok(b)
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = self.byte()?;
            // The tenth byte holds the 64th bit alone: more would be shifted out,
            // a silently wrong value.
            if i == 9 && b > 1 {
                return Err(DecodeError::Varint);
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError::Varint)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        u32::try_from(self.u64()?).map_err(|_| DecodeError::Value(what))
    }

    fn i32(&mut self, what: &'static str) -> Result<i32, DecodeError> {
        let z = self.u64()?;
        let v = ((z >> 1) as i64) ^ -((z & 1) as i64);
        i32::try_from(v).map_err(|_| DecodeError::Value(what))
    }

    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.u64()?;
        let n = usize::try_from(n).map_err(|_| DecodeError::Truncated)?;
        if n > self.0.len() {
            return Err(DecodeError::Truncated);
        }
        let (b, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(b)
    }

    fn str(&mut self) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(self.bytes()?).map_err(|_| DecodeError::Utf8)
    }

    fn opt_str(&mut self) -> Result<Option<&'a str>, DecodeError> {
        match self.byte()? {
            0 => Ok(None),
            1 => Ok(Some(self.str()?)),
            _ => Err(DecodeError::Value("optional string")),
        }
    }

    fn window(&mut self) -> Result<Window, DecodeError> {
        Ok(Window::new(self.u64()?, self.u64()?))
    }

    fn labels(&mut self) -> Result<Labels, DecodeError> {
        let host = Arc::from(self.str()?);
        let source = Arc::from(self.str()?);
        let profiler = Arc::from(self.str()?);
        let n = self.u64()?;
        if n > MAX_LABELS as u64 {
            return Err(DecodeError::Label(format!("{n} labels")));
        }
        let mut extra = LabelSet::default();
        for _ in 0..n {
            let (k, v) = (self.str()?, self.str()?);
            extra = extra
                .with(k, v)
                .map_err(|e| DecodeError::Label(e.to_string()))?;
        }
        Ok(Labels {
            host,
            source,
            profiler,
            extra,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn labels() -> impl Strategy<Value = Labels> {
        (
            "[a-z0-9.-]{0,12}",
            "[a-z_]{1,8}",
            "[a-z-]{0,6}",
            prop::collection::btree_map("[a-z_][a-z0-9_]{0,6}", ".{0,20}", 0..5),
        )
            .prop_map(|(host, source, profiler, extra)| {
                let mut set = LabelSet::default();
                for (k, v) in &extra {
                    set = set.with(k, v).unwrap();
                }
                Labels {
                    host: host.into(),
                    source: source.into(),
                    profiler: profiler.into(),
                    extra: set,
                }
            })
    }

    fn window() -> impl Strategy<Value = Window> {
        (any::<u64>(), any::<u64>()).prop_map(|(a, b)| Window::new(a, b))
    }

    fn stack() -> impl Strategy<Value = Stack> {
        (
            any::<u32>(),
            prop::option::of("[a-z]{1,8}"),
            ".{0,40}",
            any::<u64>(),
        )
            .prop_map(|(pid, container, frames, count)| Stack {
                pid,
                container: container.map(Arc::from),
                frames: frames.into(),
                count,
            })
    }

    fn run_end() -> impl Strategy<Value = RunEnd> {
        prop_oneof![
            any::<i32>().prop_map(RunEnd::Exited),
            any::<i32>().prop_map(RunEnd::Signaled),
            Just(RunEnd::TimedOut),
            ".{0,20}".prop_map(RunEnd::SpawnFailed),
        ]
    }

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            (
                window(),
                labels(),
                prop::collection::vec(any::<u8>(), 0..200)
            )
                .prop_map(|(window, labels, data)| Event::PerfScript(
                    PerfScriptChunk {
                        process_labels: Default::default(),
                        window,
                        labels,
                        data: data.into(),
                        finalizers: Default::default(),
                    }
                )),
            (window(), labels(), prop::collection::vec(stack(), 0..20)).prop_map(
                |(window, labels, stacks)| Event::Profile(Profile::new(window, labels, stacks))
            ),
            ("[a-z]{1,10}", any::<u64>()).prop_map(|(s, t)| Event::Watermark(Watermark {
                source: s.into(),
                complete_until_ms: t,
            })),
            (
                window(),
                labels(),
                any::<u32>(),
                prop::option::of("[a-z]{1,8}"),
                run_end(),
                ".{0,30}",
                prop::option::of(any::<bool>()),
                prop::option::of(prop_oneof![Just("process_exited"), Just("timeout")]),
            )
                .prop_map(
                    |(window, labels, pid, comm, end, stderr, target_alive, reason)| {
                        Event::Diagnostic(Diagnostic {
                            window,
                            labels,
                            pid,
                            comm: comm.map(Arc::from),
                            end,
                            stderr: stderr.into(),
                            target_alive,
                            reason,
                            finalizers: Default::default(),
                        })
                    }
                ),
        ]
    }

    proptest! {
        #[test]
        fn every_event_reads_back_equal(ev in event()) {
            let mut buf = Vec::new();
            encode(&ev, &mut buf);
            prop_assert_eq!(decode(&buf).unwrap(), ev);
        }

        #[test]
        fn a_cut_or_extended_payload_is_an_error_not_a_panic(ev in event(), cut in any::<prop::sample::Index>()) {
            let mut buf = Vec::new();
            encode(&ev, &mut buf);
            let at = cut.index(buf.len());
            prop_assert!(decode(&buf[..at]).is_err());
            buf.push(0);
            prop_assert_eq!(decode(&buf), Err(DecodeError::Trailing(1)));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(&bytes);
        }
    }

    /// Found writing the fuzz target: a tenth varint byte above 1 lost its high bits, so a
    /// damaged count or time read back as another value instead of an error.
    #[test]
    fn a_varint_past_u64_is_an_error() {
        let mut r = Reader(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        assert_eq!(r.u64(), Ok(u64::MAX));
        let mut r = Reader(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02]);
        assert_eq!(r.u64(), Err(DecodeError::Varint));
        let mut r = Reader(&[0xff; 11]);
        assert_eq!(r.u64(), Err(DecodeError::Varint));
    }

    #[test]
    fn another_version_is_refused() {
        let mut buf = Vec::new();
        encode(
            &Event::Watermark(Watermark {
                source: "s".into(),
                complete_until_ms: 1,
            }),
            &mut buf,
        );
        buf[0] = 9;
        assert_eq!(decode(&buf), Err(DecodeError::Version(9)));
    }

    #[test]
    fn reasons_are_interned_once() {
        let a = intern("process_exited");
        let b = intern(&String::from("process_exited"));
        assert!(std::ptr::eq(a, b));
    }
}
