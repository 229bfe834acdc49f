//! Picking events of one kind out of what a sink collected.

use profpipe::event::{Diagnostic, Event, Profile, Watermark};

pub fn profiles(events: &[Event]) -> Vec<&Profile> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Profile(p) => Some(p),
            _ => None,
        })
        .collect()
}

pub fn diagnostics(events: &[Event]) -> Vec<&Diagnostic> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Diagnostic(d) => Some(d),
            _ => None,
        })
        .collect()
}

pub fn watermark_events(events: &[Event]) -> Vec<&Watermark> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Watermark(w) => Some(w),
            _ => None,
        })
        .collect()
}

/// `complete_until_ms` of every watermark, in order.
pub fn watermarks(events: &[Event]) -> Vec<u64> {
    watermark_events(events)
        .iter()
        .map(|w| w.complete_until_ms)
        .collect()
}

/// Every stack line, `frames count`, with its pid, as a sink writes them: the
/// profiles' stacks, and each classified diagnostic as gProfiler's error stack.
pub fn stacks(events: &[Event]) -> Vec<(u32, String)> {
    let errors = diagnostics(events)
        .into_iter()
        .filter(|d| d.reason.is_some() && d.pid != 0)
        .map(profpipe::sinks::pending::error_stack);
    profiles(events)
        .iter()
        .flat_map(|p| p.stacks.iter().cloned())
        .chain(errors)
        .map(|s| (s.pid, format!("{} {}", s.frames, s.count)))
        .collect()
}

/// Bytes the buffers charge for these data events (watermarks left out).
pub fn budget_bytes<'a>(events: impl IntoIterator<Item = &'a Event>) -> u64 {
    events
        .into_iter()
        .filter(|e| !e.is_watermark())
        .map(|e| e.size_bytes() as u64)
        .sum()
}

/// The stacks of one `profpipe.profile.v1` json document (the sinks' `json`
/// encoding): frames joined with `;`, and counts, in document order.
pub fn json_stacks(doc: &serde_json::Value) -> Vec<(String, u64)> {
    doc["stacks"]
        .as_array()
        .expect("a json profile has stacks")
        .iter()
        .map(|s| {
            let frames: Vec<&str> = s["frames"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f.as_str().unwrap())
                .collect();
            (frames.join(";"), s["count"].as_u64().unwrap())
        })
        .collect()
}
