//! What kind of data an edge carries, so that validation can reject a wiring that
//! cannot work (a `perf` source straight into a `file` sink) before anything runs.

use std::fmt;

/// One kind of data event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DataType {
    /// Raw `perf script` text ([`super::PerfScriptChunk`]): only `fold` reads it.
    PerfScript,
    /// Folded stacks ([`super::Profile`]).
    Profile,
    /// A profiler run that failed ([`super::Diagnostic`]).
    Diagnostic,
}

impl DataType {
    pub const ALL: [DataType; 3] = [
        DataType::PerfScript,
        DataType::Profile,
        DataType::Diagnostic,
    ];

    /// The name used in configs and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            DataType::PerfScript => "perf_script text",
            DataType::Profile => "profiles",
            DataType::Diagnostic => "diagnostics",
        }
    }

    const fn bit(self) -> u8 {
        1 << self as u8
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of data types: what a component consumes, or produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct DataTypes(u8);

impl DataTypes {
    pub const NONE: DataTypes = DataTypes(0);
    pub const PERF_SCRIPT: DataTypes = DataTypes(DataType::PerfScript.bit());
    pub const PROFILE: DataTypes = DataTypes(DataType::Profile.bit());
    pub const DIAGNOSTIC: DataTypes = DataTypes(DataType::Diagnostic.bit());
    pub const ALL: DataTypes = DataTypes(0b111);
    /// What every stage after `fold` handles: folded stacks and failed runs.
    pub const PROFILES_AND_DIAGNOSTICS: DataTypes = DataTypes::PROFILE.with(DataTypes::DIAGNOSTIC);

    pub const fn with(self, other: DataTypes) -> DataTypes {
        DataTypes(self.0 | other.0)
    }

    pub fn contains(self, t: DataType) -> bool {
        self.0 & t.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The types in both.
    pub fn intersect(self, other: DataTypes) -> DataTypes {
        DataTypes(self.0 & other.0)
    }

    /// The types in `self` that `other` lacks.
    pub fn without(self, other: DataTypes) -> DataTypes {
        DataTypes(self.0 & !other.0)
    }

    pub fn iter(self) -> impl Iterator<Item = DataType> {
        DataType::ALL.into_iter().filter(move |t| self.contains(*t))
    }
}

impl fmt::Display for DataTypes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(DataType::as_str).collect();
        match names.as_slice() {
            [] => f.write_str("nothing"),
            [one] => f.write_str(one),
            [rest @ .., last] => write!(f, "{} and {last}", rest.join(", ")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets() {
        let s = DataTypes::PROFILE.with(DataTypes::DIAGNOSTIC);
        assert!(s.contains(DataType::Profile) && !s.contains(DataType::PerfScript));
        assert_eq!(DataTypes::ALL.without(s), DataTypes::PERF_SCRIPT);
        assert_eq!(s.to_string(), "profiles and diagnostics");
        assert_eq!(DataTypes::PERF_SCRIPT.to_string(), "perf_script text");
    }
}
