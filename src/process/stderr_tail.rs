//! The bounded tail of a child's stderr: the last N bytes it wrote plus the total
//! count, so a profiler that prints megabytes of warnings costs at most N bytes of
//! agent memory, while the end of its output (where the fatal error usually is) is
//! kept for classification.

use std::collections::VecDeque;

/// Keeps the last `capacity` bytes pushed into it and counts all of them.
///
/// Memory grows with what was written, up to `capacity`; a child that writes
/// nothing costs nothing.
#[derive(Debug)]
pub struct StderrTail {
    buf: VecDeque<u8>,
    capacity: usize,
    total: u64,
}

impl StderrTail {
    pub fn new(capacity: usize) -> Self {
        StderrTail {
            buf: VecDeque::new(),
            capacity,
            total: 0,
        }
    }

    /// Appends `data`, dropping the oldest bytes beyond the capacity.
    pub fn push(&mut self, data: &[u8]) {
        self.total += data.len() as u64;
        if self.capacity == 0 {
            return;
        }
        // Only the last `capacity` bytes of `data` can survive.
        let data = &data[data.len().saturating_sub(self.capacity)..];
        let excess = (self.buf.len() + data.len()).saturating_sub(self.capacity);
        self.buf.drain(..excess);
        self.buf.extend(data);
    }

    /// Every byte ever pushed, kept or not.
    pub fn total_bytes(&self) -> u64 {
        self.total
    }

    /// Whether older bytes were dropped.
    pub fn truncated(&self) -> bool {
        self.total > self.buf.len() as u64
    }

    /// The kept bytes as text (invalid UTF-8 replaced). When older bytes were dropped
    /// the cut may fall inside a multi-byte character: its orphaned continuation bytes
    /// are skipped so the text starts on a character boundary.
    pub fn into_string(mut self) -> String {
        let truncated = self.truncated();
        let bytes = self.buf.make_contiguous();
        let mut start = 0;
        if truncated {
            while start < bytes.len().min(3) && (bytes[start] & 0xC0) == 0x80 {
                start += 1;
            }
        }
        String::from_utf8_lossy(&bytes[start..]).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn keeps_everything_below_capacity() {
        let mut t = StderrTail::new(16);
        t.push(b"hello ");
        t.push(b"world");
        assert_eq!(t.total_bytes(), 11);
        assert!(!t.truncated());
        assert_eq!(t.into_string(), "hello world");
    }

    #[test]
    fn keeps_the_last_bytes() {
        let mut t = StderrTail::new(4);
        t.push(b"abc");
        t.push(b"defgh");
        t.push(b"i");
        assert_eq!(t.total_bytes(), 9);
        assert!(t.truncated());
        assert_eq!(t.into_string(), "fghi");
    }

    #[test]
    fn zero_capacity_only_counts() {
        let mut t = StderrTail::new(0);
        t.push(b"abc");
        assert_eq!(t.total_bytes(), 3);
        assert_eq!(t.into_string(), "");
    }

    #[test]
    fn cut_inside_a_character_starts_on_a_boundary() {
        let mut t = StderrTail::new(4);
        // "é" is two bytes; keeping 4 bytes of "xé€" (1+2+3) cuts "é" in half.
        t.push("xé€".as_bytes());
        assert_eq!(t.into_string(), "€");
    }

    proptest! {
        #[test]
        fn tail_is_the_suffix_of_all_pushes(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..20),
            cap in 0usize..64,
        ) {
            let mut t = StderrTail::new(cap);
            let mut all = Vec::new();
            for c in &chunks {
                t.push(c);
                all.extend_from_slice(c);
            }
            prop_assert_eq!(t.total_bytes(), all.len() as u64);
            let kept: Vec<u8> = t.buf.iter().copied().collect();
            prop_assert_eq!(&kept[..], &all[all.len().saturating_sub(cap)..]);
        }
    }
}
