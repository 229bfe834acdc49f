//! The pipe protocol between the agent and a sampler child: one JSON object per line
//! in each direction (serde escapes newlines inside strings, so a line is a message).
//!
//! Agent → child, on the child's stdin:
//!
//! ```text
//! {"targets":[{"pid":1234,"start_ticks":98765}]}     the whole set to sample from now on
//! {"flush":7}                                         send what was sampled since the last flush
//! ```
//!
//! Child → agent, on its stdout, one answer per flush, in order:
//!
//! ```text
//! {"batch":7,"dropped":0,"targets":[{"pid":1234,"start_ticks":98765,"samples":55,
//!   "overflow":0,"errors":0,"attach_error":null,"ended":false,
//!   "stacks":[{"tid":140,"thread":null,"idle":false,
//!              "frames":[["<module>","app.py",12],["work","app.py",3]],"count":41}]}]}
//! ```
//!
//! Frames are root first, as the CLIs print them; a frame's line is `null` when the
//! runtime has none (py-spy prints no line for line 0). `samples` counts every
//! sample taken of the target since the last flush (kept, idle-filtered or
//! overflowed); `overflow` the samples of stacks beyond the per-target map's bound;
//! `dropped` the samples of earlier batches the child could not write because the
//! pipe was full (it never blocks sampling on the pipe).

use serde::{Deserialize, Serialize};

/// One process, as discovery identified it: a pid reused by another process has
/// another start time, so it is another target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TargetId {
    pub pid: u32,
    pub start_ticks: u64,
}

/// A message from the agent to the child.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Control {
    /// Sample exactly these targets from now on: new ones are attached, missing ones
    /// detached.
    Targets(Vec<TargetId>),
    /// Answer with a [`Batch`] of this number holding everything since the last one.
    Flush(u64),
}

/// One frame: function, file, line (`None`: the runtime has no line for it).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FrameRecord(pub String, pub String, pub Option<i64>);

/// One distinct stack of one thread, and how many samples saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackRecord {
    pub tid: u64,
    pub thread: Option<String>,
    pub idle: bool,
    pub frames: Vec<FrameRecord>,
    pub count: u64,
}

/// What the child sampled of one target since the last flush.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetBatch {
    pub pid: u32,
    pub start_ticks: u64,
    pub samples: u64,
    pub overflow: u64,
    pub errors: u64,
    /// Why the child could not attach (the library's error text), once per attempt.
    pub attach_error: Option<String>,
    /// The process ended (or exec'd into something that is not the runtime).
    pub ended: bool,
    pub stacks: Vec<StackRecord>,
}

impl TargetBatch {
    pub fn id(&self) -> TargetId {
        TargetId {
            pid: self.pid,
            start_ticks: self.start_ticks,
        }
    }
}

/// The child's answer to one [`Control::Flush`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    pub batch: u64,
    pub dropped: u64,
    pub targets: Vec<TargetBatch>,
}

impl Batch {
    /// Samples this batch carries (for the drop count when it cannot be written).
    pub fn samples(&self) -> u64 {
        self.targets.iter().map(|t| t.samples).sum()
    }
}

/// How a runtime's CLI prints a frame; the agent folds records with it so profiles
/// read as they did when each window ran the CLI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameStyle {
    /// py-spy `--format raw`: `name (file:line)`, `name (file)`, or `name`.
    PySpy,
    /// rbspy `--format collapsed`: `name - path:line` or `name - path`.
    RbSpy,
}

impl FrameStyle {
    /// The frames of a stack, root first, joined with `;` as the CLI writes them.
    pub fn fold(self, frames: &[FrameRecord], out: &mut String) {
        use std::fmt::Write;
        for (i, FrameRecord(name, file, line)) in frames.iter().enumerate() {
            if i > 0 {
                out.push(';');
            }
            let _ = match (self, line) {
                (FrameStyle::PySpy, Some(l)) => write!(out, "{name} ({file}:{l})"),
                (FrameStyle::PySpy, None) if !file.is_empty() => write!(out, "{name} ({file})"),
                (FrameStyle::PySpy, None) => write!(out, "{name}"),
                (FrameStyle::RbSpy, Some(l)) => write!(out, "{name} - {file}:{l}"),
                (FrameStyle::RbSpy, None) => write!(out, "{name} - {file}"),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_one_json_line_each() {
        let c = Control::Targets(vec![TargetId {
            pid: 1,
            start_ticks: 2,
        }]);
        let text = serde_json::to_string(&c).unwrap();
        assert_eq!(text, r#"{"targets":[{"pid":1,"start_ticks":2}]}"#);
        assert_eq!(serde_json::from_str::<Control>(&text).unwrap(), c);
        assert_eq!(
            serde_json::from_str::<Control>(r#"{"flush":7}"#).unwrap(),
            Control::Flush(7)
        );
        let b = Batch {
            batch: 3,
            dropped: 0,
            targets: vec![TargetBatch {
                pid: 1,
                stacks: vec![StackRecord {
                    tid: 9,
                    thread: None,
                    idle: false,
                    frames: vec![FrameRecord("a\nb".into(), "x.py".into(), Some(1))],
                    count: 2,
                }],
                ..TargetBatch::default()
            }],
        };
        let line = serde_json::to_string(&b).unwrap();
        assert!(!line.contains('\n'));
        assert_eq!(serde_json::from_str::<Batch>(&line).unwrap(), b);
    }

    #[test]
    fn frames_fold_as_the_clis_print_them() {
        let frames = [
            FrameRecord("<module>".into(), "app.py".into(), Some(12)),
            FrameRecord("native".into(), "libx.so".into(), None),
            FrameRecord("anon".into(), String::new(), None),
        ];
        let mut s = String::new();
        FrameStyle::PySpy.fold(&frames, &mut s);
        assert_eq!(s, "<module> (app.py:12);native (libx.so);anon");
        let mut s = String::new();
        FrameStyle::RbSpy.fold(&frames[..2], &mut s);
        assert_eq!(s, "<module> - app.py:12;native - libx.so");
    }
}
