//! Transforms: bounded stages between sources and sinks.

pub mod classify;
pub mod dedup;
pub mod fold;
pub mod labels;
pub mod merge;
pub mod symbol_filter;

use crate::component::{parse_transform, Kind, TransformConfig};

pub static KINDS: &[Kind<dyn TransformConfig>] = &[
    Kind {
        name: "classify",
        parse: parse_transform::<classify::ClassifyConfig>,
    },
    Kind {
        name: "dedup",
        parse: parse_transform::<dedup::DedupConfig>,
    },
    Kind {
        name: "fold",
        parse: parse_transform::<fold::FoldConfig>,
    },
    Kind {
        name: "labels",
        parse: parse_transform::<labels::LabelsConfig>,
    },
    Kind {
        name: "merge",
        parse: parse_transform::<merge::MergeConfig>,
    },
    Kind {
        name: "symbol_filter",
        parse: parse_transform::<symbol_filter::SymbolFilterConfig>,
    },
];
