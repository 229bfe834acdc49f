//! Python targets through py-spy's library: one `PythonSpy` per target, attached
//! once, sampled in turn by the child's one sampling thread at the source's rate,
//! never pausing the target (`LockingStrategy::NonBlocking`, the CLI's
//! `--nonblocking`).
//!
//! A target is attached again when its executable changes (exec) or after
//! [`REATTACH_AFTER_ERRORS`] failed samples in a row while it is alive; a failed
//! attach is retried at the next targets message (once per window). At most one
//! attach runs per sampling tick, so many new targets never stall the loop.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use py_spy::config::{LineNo, LockingStrategy};
use py_spy::{Config, PythonSpy};

use super::child::{alive, exe, interval, Engine, Options};
use super::protocol::{FrameRecord, TargetBatch, TargetId};
use super::stacks::TargetStacks;

/// Failed samples in a row, with the process alive, after which it is attached again.
pub const REATTACH_AFTER_ERRORS: u32 = 20;
/// Attempts of one attach, 20 ms apart: as many as the CLI makes, so a process
/// still starting is classified as it was.
const ATTACH_RETRIES: u64 = 20;

struct Target {
    stacks: TargetStacks,
    spy: Option<PythonSpy>,
    exe: Option<PathBuf>,
    errors_in_row: u32,
    attach_due: bool,
    ended: bool,
}

/// The Python side of a sampler child.
pub struct PythonEngine {
    config: Config,
    opts: Options,
    targets: BTreeMap<TargetId, Target>,
    next: Instant,
}

impl PythonEngine {
    pub fn new(opts: &Options) -> PythonEngine {
        // What `py-spy record --format raw --nonblocking` sets.
        let config = Config {
            blocking: LockingStrategy::NonBlocking,
            sampling_rate: opts.rate.max(1) as u64,
            show_line_numbers: true,
            lineno: LineNo::LastInstruction,
            include_idle: opts.idle,
            gil_only: opts.gil,
            full_filenames: opts.full_filenames,
            collect_thread_names: false,
            ..Config::default()
        };
        PythonEngine {
            config,
            opts: opts.clone(),
            targets: BTreeMap::new(),
            next: Instant::now(),
        }
    }

    fn attach(&self, id: TargetId, t: &mut Target) {
        t.attach_due = false;
        if !alive(id) {
            t.ended = true;
            t.stacks.set_ended();
            return;
        }
        match PythonSpy::retry_new(id.pid as py_spy::Pid, &self.config, ATTACH_RETRIES) {
            Ok(spy) => {
                t.spy = Some(spy);
                t.exe = exe(id.pid);
                t.errors_in_row = 0;
            }
            Err(e) => {
                t.stacks.attach_failed(format!("{e:#}"));
                if !alive(id) {
                    t.ended = true;
                    t.stacks.set_ended();
                }
            }
        }
    }

    fn sample(opts: &Options, id: TargetId, t: &mut Target) {
        let Some(spy) = t.spy.as_mut() else { return };
        match spy.get_stack_traces() {
            Ok(traces) => {
                t.errors_in_row = 0;
                for trace in traces {
                    // The CLI's filters, in its order.
                    let keep = (opts.idle || trace.active) && (!opts.gil || trace.owns_gil);
                    let frames = if keep {
                        trace
                            .frames
                            .into_iter()
                            .rev()
                            .map(|f| {
                                let file = f.short_filename.unwrap_or(f.filename);
                                FrameRecord(f.name, file, (f.line != 0).then_some(f.line as i64))
                            })
                            .collect()
                    } else {
                        Vec::new()
                    };
                    t.stacks.add(
                        trace.thread_id,
                        trace.thread_name,
                        !trace.active,
                        frames,
                        keep,
                    );
                }
            }
            Err(_) if !alive(id) => {
                t.spy = None;
                t.ended = true;
                t.stacks.set_ended();
            }
            Err(_) => {
                t.stacks.error();
                t.errors_in_row += 1;
                if t.errors_in_row >= REATTACH_AFTER_ERRORS {
                    t.spy = None;
                    t.attach_due = true;
                }
            }
        }
    }
}

impl Engine for PythonEngine {
    fn set_targets(&mut self, targets: &[TargetId]) {
        let keep: std::collections::BTreeSet<TargetId> = targets.iter().copied().collect();
        self.targets.retain(|id, _| keep.contains(id));
        for (i, id) in targets.iter().enumerate() {
            if i >= self.opts.max_targets {
                let mut s = TargetStacks::new(*id, 1);
                s.attach_failed(format!(
                    "not sampled: the sampler's max_targets ({}) is reached",
                    self.opts.max_targets
                ));
                // Reported once in the next flush, then forgotten.
                self.targets.insert(
                    *id,
                    Target {
                        stacks: s,
                        spy: None,
                        exe: None,
                        errors_in_row: 0,
                        attach_due: false,
                        ended: true,
                    },
                );
                continue;
            }
            let max_stacks = self.opts.max_stacks;
            let t = self.targets.entry(*id).or_insert_with(|| Target {
                stacks: TargetStacks::new(*id, max_stacks),
                spy: None,
                exe: None,
                errors_in_row: 0,
                attach_due: true,
                ended: false,
            });
            if t.ended {
                continue;
            }
            if t.spy.is_some() && exe(id.pid) != t.exe {
                // It exec'd: the interpreter (if any) is another one.
                t.spy = None;
            }
            if t.spy.is_none() {
                t.attach_due = true;
            }
        }
    }

    fn step(&mut self) -> Instant {
        let now = Instant::now();
        if now < self.next {
            return self.next;
        }
        let ids: Vec<TargetId> = self.targets.keys().copied().collect();
        // One attach per tick: an attach can take up to ATTACH_RETRIES × 20 ms, and
        // many at once would hold up sampling and the answers to flushes.
        let mut may_attach = true;
        for id in ids {
            let mut t = self.targets.remove(&id).expect("listed");
            if t.attach_due && !t.ended && may_attach {
                may_attach = false;
                self.attach(id, &mut t);
            }
            Self::sample(&self.opts, id, &mut t);
            self.targets.insert(id, t);
        }
        let step = interval(self.opts.rate);
        self.next += step;
        if self.next < Instant::now() {
            // Behind (a slow attach, a loaded host): skip the missed ticks rather
            // than sampling in a burst.
            self.next = Instant::now() + step;
        }
        self.next
    }

    fn flush(&mut self) -> Vec<TargetBatch> {
        let out = self
            .targets
            .values_mut()
            .filter(|t| !t.stacks.is_empty())
            .map(|t| t.stacks.take())
            .collect();
        // Ended targets have said so; forget them (a new process gets a new id).
        self.targets.retain(|_, t| !t.ended);
        out
    }
}
