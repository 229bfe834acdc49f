//! The control plane's heartbeat replies, from a server the agent does not trust:
//! the JSON (depth-checked before serde sees it), the command's allow-list, and
//! for a start command the pipeline it becomes. Any reply is a command or a
//! refusal; a command the allow-list takes always makes a valid pipeline.
//!
//! Input: the reply's body.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use profpipe::config::Registry;

fuzz_target!(|data: &[u8]| {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    let registry = REGISTRY.get_or_init(profpipe::registry::registry);
    if let Err(e) = profpipe::control::read_heartbeat_reply(data, registry) {
        panic!("{e}");
    }
});
