//! `type = "symbol_filter"`: drop, keep or rewrite frames by regex, drop whole stacks
//! by regex, cap stack depth.
//!
//! ```toml
//! [transforms.quiet]
//! type = "symbol_filter"
//! inputs = ["fold"]
//! drop_frames = ['^__pfx_', '^\[unknown\]$']
//! rewrite = [{ pattern = '\(/tmp/perf-\d+\.map\)', replacement = "(jit)" }]
//! drop_stacks = ['^swapper;']
//! max_depth = 128
//! ```
//!
//! Frame rules apply to every frame except the first (the process name). Stack rules
//! match the whole folded line `comm;f1;f2` before frames are changed. Stacks that
//! become identical stay separate lines; sinks and `dedup` merge them.

use regex::RegexSet;
use serde::Deserialize;

use crate::component::{
    at_least_one, BuildError, FieldError, Task, TransformConfig, TransformContext,
};
use crate::event::{Event, Profile, Stack};
use crate::units::RegexStr;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rewrite {
    /// Regex matched against each frame.
    pub pattern: RegexStr,
    /// Replacement, with `$1`-style references to groups.
    pub replacement: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
#[serde(deny_unknown_fields)]
pub struct SymbolFilterConfig {
    /// Frames matching any of these are removed.
    pub drop_frames: Vec<RegexStr>,
    /// When set, only frames matching one of these are kept.
    pub keep_frames: Vec<RegexStr>,
    /// Rewrites applied, in order, to the frames that are kept.
    pub rewrite: Vec<Rewrite>,
    /// Stacks whose folded line matches any of these are dropped.
    pub drop_stacks: Vec<RegexStr>,
    /// When set, only stacks whose folded line matches one of these are kept.
    pub keep_stacks: Vec<RegexStr>,
    /// Keep at most this many frames below the process name (the root-most ones).
    pub max_depth: Option<usize>,
}

impl TransformConfig for SymbolFilterConfig {
    fn inputs(&self) -> crate::event::DataTypes {
        crate::event::DataTypes::PROFILES_AND_DIAGNOSTICS
    }

    fn validate(&self) -> Vec<FieldError> {
        let mut e = Vec::new();
        e.extend(self.max_depth.and_then(|n| at_least_one(&["max_depth"], n)));
        e
    }

    fn build(&self, cx: TransformContext) -> Result<Task, BuildError> {
        let filter = Filter::new(self).map_err(|e| BuildError(e.to_string()))?;
        let (cx, mut input, mut out) = cx.into_parts();
        Ok(Box::pin(async move {
            while let Some(ev) = input.recv().await {
                let ev = match ev {
                    Event::Profile(p) => {
                        let before = p.stacks.len();
                        let p = filter.apply(p);
                        cx.metrics
                            .dropped_stacks("filtered", (before - p.stacks.len()) as u64);
                        if p.stacks.is_empty() {
                            continue;
                        }
                        Event::Profile(p)
                    }
                    other => other,
                };
                if out.send(ev).await.is_err() {
                    break;
                }
            }
            Ok(())
        }))
    }
}

/// The compiled rules.
pub struct Filter {
    drop_frames: Option<RegexSet>,
    keep_frames: Option<RegexSet>,
    rewrite: Vec<Rewrite>,
    drop_stacks: Option<RegexSet>,
    keep_stacks: Option<RegexSet>,
    max_depth: usize,
}

fn set(rs: &[RegexStr]) -> Result<Option<RegexSet>, regex::Error> {
    if rs.is_empty() {
        return Ok(None);
    }
    RegexSet::new(rs.iter().map(|r| r.0.as_str())).map(Some)
}

impl Filter {
    pub fn new(c: &SymbolFilterConfig) -> Result<Self, regex::Error> {
        Ok(Filter {
            drop_frames: set(&c.drop_frames)?,
            keep_frames: set(&c.keep_frames)?,
            rewrite: c.rewrite.clone(),
            drop_stacks: set(&c.drop_stacks)?,
            keep_stacks: set(&c.keep_stacks)?,
            max_depth: c.max_depth.unwrap_or(usize::MAX),
        })
    }

    pub fn apply(&self, mut p: Profile) -> Profile {
        p.stacks.retain_mut(|s| self.keep_stack(s));
        p
    }

    /// Rewrites `s` in place; false when the whole stack is to be dropped.
    fn keep_stack(&self, s: &mut Stack) -> bool {
        if self
            .drop_stacks
            .as_ref()
            .is_some_and(|r| r.is_match(&s.frames))
        {
            return false;
        }
        if self
            .keep_stacks
            .as_ref()
            .is_some_and(|r| !r.is_match(&s.frames))
        {
            return false;
        }
        let mut parts = s.frames.split(';');
        let mut out = String::with_capacity(s.frames.len());
        out.push_str(parts.next().unwrap_or(""));
        let mut depth = 0;
        for f in parts {
            if depth == self.max_depth {
                break;
            }
            if self.drop_frames.as_ref().is_some_and(|r| r.is_match(f)) {
                continue;
            }
            if self.keep_frames.as_ref().is_some_and(|r| !r.is_match(f)) {
                continue;
            }
            let mut frame = std::borrow::Cow::Borrowed(f);
            for rw in &self.rewrite {
                if let std::borrow::Cow::Owned(o) =
                    rw.pattern.0.replace_all(&frame, rw.replacement.as_str())
                {
                    frame = std::borrow::Cow::Owned(o);
                }
            }
            out.push(';');
            out.push_str(&frame);
            depth += 1;
        }
        s.frames = out.into_boxed_str();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(toml_text: &str) -> SymbolFilterConfig {
        crate::component::parse_table(toml::from_str::<toml::Value>(toml_text).unwrap()).unwrap()
    }

    fn run(c: &SymbolFilterConfig, stacks: &[&str]) -> Vec<String> {
        let p = Profile {
            stacks: stacks.iter().map(|s| Stack::new(*s, 1)).collect(),
            ..Default::default()
        };
        Filter::new(c)
            .unwrap()
            .apply(p)
            .stacks
            .into_iter()
            .map(|s| s.frames.into())
            .collect()
    }

    #[test]
    fn drops_keeps_rewrites_and_caps() {
        let c = cfg(r#"
            drop_frames = ['^__pfx_']
            rewrite = [{ pattern = '^(\w+)\+0x[0-9a-f]+$', replacement = '$1' }]
            drop_stacks = ['^swapper;']
            max_depth = 2
        "#);
        let out = run(
            &c,
            &["app;main;__pfx_x;work+0x1f;leaf", "swapper;idle", "app"],
        );
        assert_eq!(out, vec!["app;main;work", "app"]);
    }

    #[test]
    fn keep_rules_select() {
        let c = cfg(r#"
            keep_frames = ['_\[p\]$']
            keep_stacks = ['^python']
        "#);
        let out = run(&c, &["python;_start;main (a.py:1)_[p];PyEval", "bash;main"]);
        assert_eq!(out, vec!["python;main (a.py:1)_[p]"]);
    }
}
