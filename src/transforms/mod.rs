//! Transforms: bounded stages between sources and sinks.

use crate::component::{Kind, TransformConfig};

pub static KINDS: &[Kind<dyn TransformConfig>] = &[];
