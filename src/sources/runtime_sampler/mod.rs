//! Runtime samplers that stay attached: the default way the `py_spy` and `rbspy`
//! sources sample (`mode = "attached"`).
//!
//! Instead of one `py-spy record` / `rbspy record` process per target per window,
//! each source runs one long-lived child of profpipe's own binary (`profpipe
//! sampler python|ruby`, hidden from `--help`), which uses py-spy and rbspy as
//! libraries: it attaches once per process (again when the process exec's or keeps
//! failing), samples without pausing the target at the source's frequency, and
//! streams what it sampled to the agent over its stdout ([`protocol`]: JSON lines).
//! Discovery stays in the agent, which tells the child its targets on its stdin
//! each window. The agent folds the child's frames exactly as the CLIs print them
//! and reads them with the same parsers as before, so profiles keep their shape
//! (`comm;frame_[p];...`, line numbers, idle samples only with `idle = true`).
//!
//! The child is a supervised child like any other (own process group,
//! `PR_SET_PDEATHSIG`, reaped, killed at shutdown); a crash, an exit or a stall (no
//! answer to [`driver::STALL_FLUSHES`] flushes) restarts it with backoff, and the
//! windows it leaves behind are closed with a diagnostic per target. Everything is
//! bounded: targets per child (`discovery.max_processes`), distinct stacks per
//! target between flushes ([`stacks::MAX_STACKS_PER_TARGET`]) and per window
//! ([`driver::MAX_STACKS_PER_WINDOW`]), batches queued for the pipe
//! ([`child::OUT_QUEUE`], dropped and counted when full, never blocking sampling).

pub mod child;
pub mod driver;
pub mod protocol;
mod python;
mod ruby;
pub mod stacks;

pub use child::{Kind, Options};
pub use driver::{drive, resolve_self, SamplerSettings};
pub use protocol::FrameStyle;
