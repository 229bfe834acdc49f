//! Decoding the line formats into stacks (placeholder until the formats land).

use crate::event::Stack;

use super::InputFormat;

pub struct LineDecoder {
    _format: InputFormat,
}

impl LineDecoder {
    pub fn new(format: InputFormat, _comm: Option<String>, _annotate: bool) -> Self {
        LineDecoder { _format: format }
    }
    pub fn start_file(&mut self) {}
    pub fn decode(&mut self, _line: &[u8]) -> Option<Stack> {
        None
    }
    pub fn problems(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
}
