//! Wall-clock times as ferry writes them: the one home of time formatting.
//!
//! Every time in a state, journal, lock, alert or message is RFC 3339 in UTC to the second
//! (`2026-11-29T08:15:00Z`), a date alone its first ten characters. Formatting is pure: these
//! functions take the time, they never read the clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The last second RFC 3339's four-digit year can show: 9999-12-31T23:59:59Z.
const LAST_SHOWN_SECOND: u64 = 253_402_300_799;

/// A wall-clock time the way every ferry file and alert shows it: RFC 3339, UTC, whole
/// seconds (`2026-11-29T08:15:00Z`).
///
/// A time before 1970 shows as 1970-01-01T00:00:00Z and one past the year 9999 as its last
/// second, so a clock set wrong never makes ferry panic.
pub fn format_time(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(shown(time)).to_string()
}

/// The UTC date of a time, for people: `2026-11-29` (the date part of [`format_time`]).
pub fn format_date(time: SystemTime) -> String {
    let mut text = format_time(time);
    text.truncate("yyyy-mm-dd".len());
    text
}

/// The time `seconds` after 1970-01-01T00:00:00Z (how certificates and DNS count), or the last
/// second [`format_time`] shows when that is past what the system's clock type holds.
pub fn from_unix_seconds(seconds: u64) -> SystemTime {
    UNIX_EPOCH
        .checked_add(Duration::from_secs(seconds))
        .unwrap_or_else(|| UNIX_EPOCH + Duration::from_secs(LAST_SHOWN_SECOND))
}

/// A time as [`format_time`] writes it (any RFC 3339 time in UTC is read); `None` for
/// anything else.
pub fn parse_time(text: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(text.trim()).ok()
}

/// `time` within the range RFC 3339 (and humantime) can show.
fn shown(time: SystemTime) -> SystemTime {
    match time.duration_since(UNIX_EPOCH) {
        Err(_) => UNIX_EPOCH,
        Ok(since) if since.as_secs() > LAST_SHOWN_SECOND => {
            UNIX_EPOCH + Duration::from_secs(LAST_SHOWN_SECOND)
        }
        Ok(_) => time,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn times_are_rfc3339_in_utc_to_the_second() {
        assert_eq!(format_time(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(format_time(at(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(format_time(at(1_764_374_460)), "2025-11-29T00:01:00Z");
        // Fractions of a second are cut, never rounded up.
        assert_eq!(
            format_time(at(1_577_836_799) + Duration::from_millis(999)),
            "2019-12-31T23:59:59Z"
        );
    }

    #[test]
    fn dates_are_calendar_dates() {
        assert_eq!(format_date(UNIX_EPOCH), "1970-01-01");
        assert_eq!(format_date(at(951_782_400)), "2000-02-29");
        assert_eq!(format_date(at(1_577_836_799)), "2019-12-31");
        assert_eq!(format_date(at(4_102_444_800)), "2100-01-01");
    }

    #[test]
    fn times_outside_what_rfc3339_shows_are_clamped_not_a_panic() {
        assert_eq!(
            format_time(UNIX_EPOCH - Duration::from_secs(1)),
            "1970-01-01T00:00:00Z"
        );
        assert_eq!(format_time(at(LAST_SHOWN_SECOND)), "9999-12-31T23:59:59Z");
        assert_eq!(
            format_time(at(LAST_SHOWN_SECOND + 86_400)),
            "9999-12-31T23:59:59Z"
        );
        assert_eq!(format_date(from_unix_seconds(u64::MAX)), "9999-12-31");
        assert_eq!(from_unix_seconds(951_782_400), at(951_782_400));
    }
}
