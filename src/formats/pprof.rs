//! pprof (`profile.proto`) encoding. Placeholder until the encoder lands.

use crate::event::{LabelSet, Stack, Window};

pub struct PprofInput<'a> {
    pub window: Window,
    pub stacks: &'a [Stack],
    pub labels: &'a LabelSet,
    pub host: &'a str,
    pub sample_rate_hz: u32,
}

pub fn encode(_input: &PprofInput<'_>) -> Vec<u8> {
    Vec::new()
}
