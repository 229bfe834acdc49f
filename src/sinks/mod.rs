//! Sinks: where profiles go.

use crate::component::{Kind, SinkConfig};

pub static KINDS: &[Kind<dyn SinkConfig>] = &[];
