//! UTC timestamps from Unix milliseconds, without a calendar dependency.
//!
//! - [`iso8601`]: `2023-12-03T16:31:00.000Z`, for file headers;
//! - [`file_stamp`]: `20231203T163100.000Z` (ISO 8601 basic format), for file names:
//!   no `:` (invalid on some filesystems), fixed width, so names sort by time.

/// Splits Unix milliseconds into a UTC civil date and time.
fn civil(ms: u64) -> (i64, u32, u32, u32, u32, u32, u32) {
    let millis = (ms % 1000) as u32;
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (hh, mm, ss) = (
        (rem / 3600) as u32,
        (rem % 3600 / 60) as u32,
        (rem % 60) as u32,
    );
    // Days since 1970-01-01 to a proleptic Gregorian date (Hinnant's days→civil).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March-based
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, hh, mm, ss, millis)
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn iso8601(ms: u64) -> String {
    let (y, mo, d, h, mi, s, milli) = civil(ms);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
}

/// `YYYYMMDDTHHMMSS.mmmZ`: safe in file names on every common filesystem.
pub fn file_stamp(ms: u64) -> String {
    let (y, mo, d, h, mi, s, milli) = civil(ms);
    format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}.{milli:03}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(1_701_621_060_123), "2023-12-03T16:31:00.123Z");
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(iso8601(4_107_542_399_999), "2100-02-28T23:59:59.999Z");
        assert_eq!(file_stamp(1_701_621_060_123), "20231203T163100.123Z");
        // Far future values do not panic.
        let _ = iso8601(u64::MAX);
    }

    #[test]
    fn matches_humantime_over_a_range() {
        use std::time::{Duration, UNIX_EPOCH};
        let mut ms = 0u64;
        while ms < 253_402_300_799_000 {
            let want = humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms));
            assert_eq!(iso8601(ms), want.to_string());
            ms += 86_399_999 * 17 + 12_345;
        }
    }
}
