//! A component as declared, with what the loader made of it: what the reading of
//! one component table produces and the checks across tables consume.

use std::ops::Range;

use toml::de::DeValue;
use toml::Spanned;

use super::buffer::SizeAt;
use super::graph::Role;
use crate::buffer::BufferConfig;
use crate::component::{SinkConfig, SourceConfig, TransformConfig};
use crate::event::LabelSet;

pub(super) struct Declared<'d> {
    pub role: Role,
    pub id: &'d str,
    pub table: &'d Spanned<DeValue<'d>>,
    pub inputs: Vec<(&'d str, Range<usize>)>,
    /// The `buffer` table, if one was written and it is valid.
    pub buffer: Option<BufferConfig>,
    /// `buffer.max_bytes`, if it was written and is valid (even if other fields of
    /// `buffer` are not), with the span of its value.
    pub buffer_size: Option<SizeAt>,
    /// A source's `labels` (empty if absent or invalid; always empty for others).
    pub labels: LabelSet,
    /// The table as TOML text, after `${NAME}` substitution.
    pub text: String,
    /// The typed config, if `type` named a kind and its table parsed and validated.
    pub built: Option<Built>,
}

/// A component's typed config with the `type` name it was declared with.
pub(super) enum Built {
    Source(&'static str, Box<dyn SourceConfig>),
    Transform(&'static str, Box<dyn TransformConfig>),
    Sink(&'static str, Box<dyn SinkConfig>),
}
