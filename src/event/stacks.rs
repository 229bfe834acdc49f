//! A profile's stacks, shared by everyone the profile is sent to.
//!
//! A component's output clones each event for every downstream edge but the last
//! (one source fanned out to three sinks: three copies). A [`Stacks`] clone copies
//! a pointer; the stacks themselves (each frame string its own allocation) are
//! copied only when a consumer changes them while another still holds them
//! (copy-on-write, [`Arc::make_mut`] behind `DerefMut`), and taken without a copy
//! by the last holder ([`Stacks::into_vec`]).

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use super::Stack;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stacks(Arc<Vec<Stack>>);

impl Stacks {
    /// The stacks to own: moved out if no one else holds them, else copied.
    pub fn into_vec(self) -> Vec<Stack> {
        Arc::try_unwrap(self.0).unwrap_or_else(|shared| (*shared).clone())
    }

    /// True when another event holds the same stacks.
    pub fn is_shared(&self) -> bool {
        Arc::strong_count(&self.0) > 1
    }
}

impl Deref for Stacks {
    type Target = Vec<Stack>;
    fn deref(&self) -> &Vec<Stack> {
        &self.0
    }
}

/// Copy-on-write: a change while the stacks are shared changes a copy.
impl DerefMut for Stacks {
    fn deref_mut(&mut self) -> &mut Vec<Stack> {
        Arc::make_mut(&mut self.0)
    }
}

impl From<Vec<Stack>> for Stacks {
    fn from(v: Vec<Stack>) -> Self {
        Stacks(Arc::new(v))
    }
}

impl FromIterator<Stack> for Stacks {
    fn from_iter<I: IntoIterator<Item = Stack>>(iter: I) -> Self {
        Stacks(Arc::new(iter.into_iter().collect()))
    }
}

impl IntoIterator for Stacks {
    type Item = Stack;
    type IntoIter = std::vec::IntoIter<Stack>;
    fn into_iter(self) -> Self::IntoIter {
        self.into_vec().into_iter()
    }
}

impl<'a> IntoIterator for &'a Stacks {
    type Item = &'a Stack;
    type IntoIter = std::slice::Iter<'a, Stack>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl PartialEq<Vec<Stack>> for Stacks {
    fn eq(&self, other: &Vec<Stack>) -> bool {
        *self.0 == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_and_a_change_copies() {
        let a: Stacks = vec![Stack::new("a;b", 1)].into();
        let mut b = a.clone();
        assert!(a.is_shared());
        assert!(std::ptr::eq(a[0].frames.as_ptr(), b[0].frames.as_ptr()));
        b[0].count = 5;
        assert_eq!(a[0].count, 1, "the other holder's stacks are unchanged");
        assert!(!a.is_shared() && !b.is_shared());
        let ptr = a[0].frames.as_ptr();
        let owned = a.into_vec();
        assert_eq!(
            owned[0].frames.as_ptr(),
            ptr,
            "the last holder takes them, no copy"
        );
    }
}
