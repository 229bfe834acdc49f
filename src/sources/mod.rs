//! Sources: where events come from.

use crate::component::{Kind, SourceConfig};

pub static KINDS: &[Kind<dyn SourceConfig>] = &[];
