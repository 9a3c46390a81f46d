//! Wall-clock time without reading a clock.
//!
//! The core works in monotonic [`Instant`]s that come in with every input.
//! History records also need calendar time; the backend supplies one anchor
//! pair (an `Instant` and the Unix time at that instant) when the server is
//! built and may re-anchor later. Calendar time is derived from the anchor,
//! so the same script with the same anchor gives byte-identical output.

use std::time::Instant;

/// Maps monotonic instants to Unix milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    anchor: Instant,
    anchor_unix_ms: u64,
}

impl WallClock {
    /// Anchors `unix_ms` (milliseconds since 1970-01-01 UTC) at `now`.
    pub fn new(now: Instant, unix_ms: u64) -> Self {
        Self {
            anchor: now,
            anchor_unix_ms: unix_ms,
        }
    }

    /// The Unix time in milliseconds at the anchor (when the server
    /// started, unless re-anchored since).
    pub fn anchor_unix_ms(&self) -> u64 {
        self.anchor_unix_ms
    }

    /// The Unix time in milliseconds at `now`.
    pub fn unix_ms(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.anchor).as_millis();
        self.anchor_unix_ms
            .saturating_add(u64::try_from(elapsed).unwrap_or(u64::MAX))
    }
}

/// Formats Unix milliseconds as `YYYY-MM-DD HH:MM:SS` in UTC.
pub fn format_utc(unix_ms: u64) -> String {
    let secs = unix_ms / 1_000;
    let (days, day_secs) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        day_secs / 3_600,
        day_secs % 3_600 / 60,
        day_secs % 60
    )
}

/// Formats Unix milliseconds as IRCv3 `server-time` wants them:
/// `YYYY-MM-DDTHH:MM:SS.sssZ`.
pub fn format_iso8601(unix_ms: u64) -> String {
    let mut text = format_utc(unix_ms).replacen(' ', "T", 1);
    text.push_str(&format!(".{:03}Z", unix_ms % 1_000));
    text
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.sss]Z` (IRCv3 timestamps) into Unix
/// milliseconds; `None` if it is not one, or before 1970.
pub fn parse_iso8601(text: &str) -> Option<u64> {
    let text = text.strip_suffix('Z')?;
    let (date, time) = text.split_once('T')?;
    let mut date_parts = date.splitn(3, '-').map(|p| p.parse::<u64>().ok());
    let (year, month, day) = (
        date_parts.next()??,
        date_parts.next()??,
        date_parts.next()??,
    );
    let (time, millis) = match time.split_once('.') {
        Some((time, fraction)) => {
            let digits: String = fraction.chars().take(3).collect();
            let scale = 10u64.pow(3 - u32::try_from(digits.len()).ok()?);
            (time, digits.parse::<u64>().ok()? * scale)
        }
        None => (time, 0),
    };
    let mut time_parts = time.splitn(3, ':').map(|p| p.parse::<u64>().ok());
    let (hour, minute, second) = (
        time_parts.next()??,
        time_parts.next()??,
        time_parts.next()??,
    );
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if !(1970..=9999).contains(&year)
        || !(1..=12).contains(&month)
        || !(1..=month_days).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(((days * 86_400 + hour * 3_600 + minute * 60 + second) * 1_000) + millis)
}

/// The inverse of `civil_from_days` (H. Hinnant's `days_from_civil`), for
/// dates on or after the epoch.
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year / 400;
    let yoe = year - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's
/// `civil_from_days`, restricted to dates on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn formats_known_dates() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00");
        assert_eq!(format_utc(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(format_utc(1_795_000_000_123), "2026-11-18 11:06:40");
        assert_eq!(
            format_iso8601(1_795_000_000_123),
            "2026-11-18T11:06:40.123Z"
        );
        assert_eq!(
            parse_iso8601("2026-11-18T11:06:40.123Z"),
            Some(1_795_000_000_123)
        );
        assert_eq!(parse_iso8601("2000-02-29T00:00:00Z"), Some(951_782_400_000));
        assert_eq!(parse_iso8601("2000-02-29 00:00:00"), None);
        assert_eq!(parse_iso8601("1970-02-31T00:00:00Z"), None);
        assert_eq!(parse_iso8601("2100-02-29T00:00:00Z"), None);
        assert_eq!(parse_iso8601("1969-12-31T23:59:59Z"), None);
    }

    #[test]
    fn wall_clock_follows_the_monotonic_clock() {
        let start = crate::test_support::epoch();
        let clock = WallClock::new(start, 1_000);
        assert_eq!(clock.unix_ms(start + Duration::from_millis(250)), 1_250);
        assert_eq!(clock.unix_ms(start), 1_000);
    }
}
