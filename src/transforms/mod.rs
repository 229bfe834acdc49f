//! Transforms: bounded stages between sources and sinks.

pub mod app_id;
pub mod classify;
pub mod dedup;
pub mod fold;
pub mod labels;
pub mod merge;
pub mod symbol_filter;

use crate::component::{Kind, TransformConfig};

pub static KINDS: &[Kind<dyn TransformConfig>] = &[
    Kind::transform::<app_id::AppIdConfig>("app_id"),
    Kind::transform::<classify::ClassifyConfig>("classify"),
    Kind::transform::<dedup::DedupConfig>("dedup"),
    Kind::transform::<fold::FoldConfig>("fold"),
    Kind::transform::<labels::LabelsConfig>("labels"),
    Kind::transform::<merge::MergeConfig>("merge"),
    Kind::transform::<symbol_filter::SymbolFilterConfig>("symbol_filter"),
];
