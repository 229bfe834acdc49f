//! Ruby targets through rbspy's library: one `rbspy::sampler::Sampler` per target
//! (rbspy keeps its `RubySpy` private; the sampler is its public way in), started
//! once with `lock_process = false` (the CLI's `--nonblocking`), its traces sent to
//! one bounded channel that the child's loop drains into per-target counts.
//!
//! rbspy's sampler thread ends by itself when its process ends (`Ok`) or when it
//! cannot attach or keeps failing (`Err`, reported as the attach error). A target
//! is started again when its executable changes (exec), and after a failure at the
//! next targets message (once per window).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};
use std::time::{Duration, Instant};

use rbspy::sampler::Sampler;

use super::child::{alive, exe, Engine, Options};
use super::protocol::{FrameRecord, TargetBatch, TargetId};
use super::stacks::TargetStacks;

/// Traces waiting in the channel between rbspy's threads and the child's loop
/// (rbspy's threads block on a full channel; the loop drains it every
/// [`DRAIN_EVERY`]).
const TRACE_QUEUE: usize = 8192;
const DRAIN_EVERY: Duration = Duration::from_millis(50);

struct Running {
    sampler: Sampler,
    result: Receiver<anyhow::Result<()>>,
}

struct Target {
    stacks: TargetStacks,
    running: Option<Running>,
    exe: Option<PathBuf>,
    start_due: bool,
    ended: bool,
}

/// The Ruby side of a sampler child.
pub struct RubyEngine {
    opts: Options,
    targets: BTreeMap<TargetId, Target>,
    tx: SyncSender<rbspy::StackTrace>,
    rx: Receiver<rbspy::StackTrace>,
    /// Stopped samplers whose thread has not reported yet: rbspy's thread panics if
    /// its result has nowhere to go.
    stopping: Vec<Running>,
}

impl RubyEngine {
    pub fn new(opts: &Options) -> RubyEngine {
        let (tx, rx) = mpsc::sync_channel(TRACE_QUEUE);
        RubyEngine {
            opts: opts.clone(),
            targets: BTreeMap::new(),
            tx,
            rx,
            stopping: Vec::new(),
        }
    }

    fn start(&self, id: TargetId, t: &mut Target) {
        t.start_due = false;
        if !alive(id) {
            t.ended = true;
            t.stacks.set_ended();
            return;
        }
        let sampler = Sampler::new(
            id.pid as rbspy::Pid,
            self.opts.rate.max(1),
            false,
            None,
            false,
            None,
            self.opts.on_cpu,
        );
        let (result_tx, result) = mpsc::channel();
        match sampler.start(self.tx.clone(), result_tx) {
            Ok(()) => {
                t.running = Some(Running { sampler, result });
                t.exe = exe(id.pid);
            }
            Err(e) => t.stacks.attach_failed(format!("{e:#}")),
        }
    }

    fn stop(stopping: &mut Vec<Running>, t: &mut Target) {
        if let Some(r) = t.running.take() {
            r.sampler.stop();
            stopping.push(r);
        }
    }
}

impl Drop for RubyEngine {
    fn drop(&mut self) {
        for t in self.targets.values_mut() {
            if let Some(r) = t.running.take() {
                r.sampler.stop();
            }
        }
    }
}

impl Engine for RubyEngine {
    fn set_targets(&mut self, targets: &[TargetId]) {
        let keep: std::collections::BTreeSet<TargetId> = targets.iter().copied().collect();
        for (id, t) in self.targets.iter_mut() {
            if !keep.contains(id) {
                Self::stop(&mut self.stopping, t);
            }
        }
        self.targets.retain(|id, _| keep.contains(id));
        for (i, id) in targets.iter().enumerate() {
            let max_stacks = self.opts.max_stacks;
            if i >= self.opts.max_targets {
                let mut s = TargetStacks::new(*id, 1);
                s.attach_failed(format!(
                    "not sampled: the sampler's max_targets ({}) is reached",
                    self.opts.max_targets
                ));
                self.targets.insert(
                    *id,
                    Target {
                        stacks: s,
                        running: None,
                        exe: None,
                        start_due: false,
                        ended: true,
                    },
                );
                continue;
            }
            let t = self.targets.entry(*id).or_insert_with(|| Target {
                stacks: TargetStacks::new(*id, max_stacks),
                running: None,
                exe: None,
                start_due: true,
                ended: false,
            });
            if t.ended {
                continue;
            }
            if t.running.is_some() && exe(id.pid) != t.exe {
                Self::stop(&mut self.stopping, t);
            }
            if t.running.is_none() {
                t.start_due = true;
            }
        }
        let due: Vec<TargetId> = self
            .targets
            .iter()
            .filter(|(_, t)| t.start_due && !t.ended)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let mut t = self.targets.remove(&id).expect("listed");
            self.start(id, &mut t);
            self.targets.insert(id, t);
        }
    }

    fn step(&mut self) -> Instant {
        // Traces carry their pid; a pid has one live target at a time.
        let by_pid: BTreeMap<u32, TargetId> = self
            .targets
            .iter()
            .filter(|(_, t)| t.running.is_some())
            .map(|(id, _)| (id.pid, *id))
            .collect();
        for trace in self.rx.try_iter() {
            let Some(id) = trace.pid.and_then(|p| by_pid.get(&(p as u32))) else {
                continue;
            };
            let Some(t) = self.targets.get_mut(id) else {
                continue;
            };
            let frames = trace
                .trace
                .iter()
                .rev()
                .map(|f| {
                    FrameRecord(
                        f.name.clone(),
                        f.path().to_string(),
                        f.lineno.map(|l| l as i64),
                    )
                })
                .collect();
            // rbspy knows whether a thread is on a CPU only with `on_cpu`, and then
            // returns no off-CPU samples: every sample it returns is kept, as its CLI does.
            t.stacks.add(
                trace.thread_id.unwrap_or(0) as u64,
                None,
                false,
                frames,
                true,
            );
        }
        for (id, t) in self.targets.iter_mut() {
            let Some(r) = t.running.as_ref() else {
                continue;
            };
            match r.result.try_recv() {
                Err(TryRecvError::Empty) => continue,
                Ok(Err(e)) if alive(*id) => t.stacks.attach_failed(format!("{e:#}")),
                Ok(_) | Err(TryRecvError::Disconnected) => {
                    t.ended = true;
                    t.stacks.set_ended();
                }
            }
            t.running = None;
        }
        self.stopping
            .retain(|r| matches!(r.result.try_recv(), Err(TryRecvError::Empty)));
        Instant::now() + DRAIN_EVERY
    }

    fn flush(&mut self) -> Vec<TargetBatch> {
        self.step();
        let out = self
            .targets
            .values_mut()
            .filter(|t| !t.stacks.is_empty())
            .map(|t| t.stacks.take())
            .collect();
        self.targets.retain(|_, t| !t.ended);
        out
    }
}
