//! Giving back what start-up touched once, so an idle agent's resident memory is
//! what its heartbeat loop uses.
//!
//! Start-up reads and validates the config (the loader, every component type's
//! checks, regex compilation), a stopped pipeline leaves its code paged in, and
//! each heartbeat touches the HTTP, TLS and JSON code again (the kernel maps 64 KiB
//! around each fault): megabytes of the executable's and libraries' read-only
//! pages that stay mapped, and counted in RSS, until memory pressure evicts them.
//! When idle, after each wake, the agent drops its mappings of those pages
//! (`madvise(MADV_DONTNEED)`) and returns free heap to the kernel (`malloc_trim`).
//! Between heartbeats it then holds its own memory and little else; the next
//! heartbeat faults its code back in from the page cache (minor faults, no I/O). This is safe only for pages that are
//! identical to the file: mappings that are read-only, private, file-backed and
//! hold no anonymous (copy-on-write) page — text and read-only data, never the
//! relocated RELRO pages (`Anonymous:` > 0) or anything writable. A page used again
//! is faulted back in from the page cache (a minor fault, no I/O while cached).

/// Drops the mappings of clean read-only file pages and trims the heap. Returns
/// the bytes of mappings released.
pub fn release_idle_pages() -> u64 {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap memory to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return 0;
    };
    let mut released = 0;
    for (start, end) in clean_read_only(&smaps) {
        // SAFETY: the range is a whole mapping of this process that is read-only,
        // private and file-backed with no anonymous page: discarding its pages
        // only makes the next access fault the same bytes in from the file.
        let rc =
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
        if rc == 0 {
            released += (end - start) as u64;
        }
    }
    released
}

/// `(start, end)` of each mapping in `smaps` that may be released.
fn clean_read_only(smaps: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, usize, bool)> = None;
    let flush = |c: Option<(usize, usize, bool)>, out: &mut Vec<(usize, usize)>| {
        if let Some((s, e, true)) = c {
            out.push((s, e));
        }
    };
    for line in smaps.lines() {
        let mut parts = line.split_whitespace();
        let first = parts.next().unwrap_or("");
        if let Some((s, e)) = first
            .split_once('-')
            .filter(|(s, _)| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            flush(current.take(), &mut out);
            let perms = parts.next().unwrap_or("");
            let path = parts.nth(3).unwrap_or("");
            let eligible = (perms == "r-xp" || perms == "r--p") && path.starts_with('/');
            if let (Ok(s), Ok(e)) = (usize::from_str_radix(s, 16), usize::from_str_radix(e, 16)) {
                current = Some((s, e, eligible));
            }
        } else if first == "Anonymous:" || first == "Locked:" {
            let kb: u64 = parts.next().and_then(|v| v.parse().ok()).unwrap_or(1);
            if kb > 0 {
                if let Some(c) = current.as_mut() {
                    c.2 = false;
                }
            }
        }
    }
    flush(current, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_clean_read_only_file_mappings_are_released() {
        let smaps = "\
5600-5700 r-xp 00416000 fe:00 1   /usr/bin/profpipe
Rss:                 100 kB
Anonymous:             0 kB
Locked:                0 kB
5700-5800 r--p 00000000 fe:00 1   /usr/bin/profpipe
Anonymous:             8 kB
Locked:                0 kB
5800-5900 rw-p 00000000 fe:00 1   /usr/bin/profpipe
Anonymous:             0 kB
5900-5a00 r--p 00000000 00:00 0
Anonymous:             0 kB
5a00-5b00 r--p 00000000 fe:00 2   /usr/lib/libc.so.6
Anonymous:             0 kB
Locked:                0 kB
VmFlags: rd mr mw me
";
        assert_eq!(clean_read_only(smaps), [(0x5600, 0x5700), (0x5a00, 0x5b00)]);
    }

    #[test]
    fn releasing_keeps_the_process_working() {
        let before = std::fs::read_to_string("/proc/self/status").unwrap();
        assert!(release_idle_pages() > 0);
        // Code and read-only data fault back in: this runs, formats and allocates.
        let after = std::fs::read_to_string("/proc/self/status").unwrap();
        assert!(before.contains("VmRSS") && after.contains("VmRSS"));
        assert_eq!(format!("{:?}", vec![1, 2]), "[1, 2]");
    }
}
