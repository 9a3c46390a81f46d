//! Human-readable durations: `500ms`, `1.5s`, `30s`, `10m`, `2h`, `1d`, `2w`, `1h30m`.
//!
//! One syntax for config files, moderation commands and replies: what
//! [`format`] prints, [`parse`] reads back. Every duration is at most
//! [`MAX`], so adding one to an `Instant` can never overflow: a client's
//! `#ban x 99999999999d` is a clear error, not a panic on the core's thread.

use std::time::Duration;

/// The longest duration accepted anywhere: 3650 days (about ten years).
/// Longer bans are what "no duration" (forever) is for.
pub const MAX: Duration = Duration::from_secs(3_650 * 86_400);

/// Why a duration was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Nothing to parse.
    #[error("empty duration")]
    Empty,
    /// Not of the form NUMBER UNIT ..., with units ms, s, m, h, d, w.
    #[error("{0:?} is not a duration (use e.g. 30s, 10m, 2h, 1d, 2w, 1h30m)")]
    Malformed(String),
    /// Longer than [`MAX`].
    #[error("duration {0:?} is too long (at most 3650d)")]
    TooLong(String),
}

/// Parses a duration. A bare number means seconds.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    let malformed = || DurationError::Malformed(text.to_owned());
    let too_long = || DurationError::TooLong(text.to_owned());
    if text.bytes().all(|b| b.is_ascii_digit()) {
        // Digits only: an overflowing number is simply too long.
        let secs: u64 = text.parse().map_err(|_| too_long())?;
        return capped(Duration::from_secs(secs)).ok_or_else(too_long);
    }
    let mut total_ms: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(malformed());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| too_long())?;
        rest = &rest[digits..];
        let mut fraction = "";
        if let Some(after_dot) = rest.strip_prefix('.') {
            let len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
            if len == 0 {
                return Err(malformed());
            }
            fraction = &after_dot[..len.min(6)];
            rest = &after_dot[len..];
        }
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit_ms: u64 = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            _ => return Err(malformed()),
        };
        rest = &rest[unit_len..];
        let mut part = number.checked_mul(unit_ms).ok_or_else(too_long)?;
        if !fraction.is_empty() {
            // At most six fraction digits and a unit of at most a week:
            // 999_999 * 604_800_000 fits in a u64 with room to spare.
            let scale = 10u64.pow(fraction.len() as u32);
            let digits: u64 = fraction.parse().map_err(|_| malformed())?;
            part = part
                .checked_add(digits * unit_ms / scale)
                .ok_or_else(too_long)?;
        }
        total_ms = total_ms.checked_add(part).ok_or_else(too_long)?;
    }
    capped(Duration::from_millis(total_ms)).ok_or_else(too_long)
}

/// The duration if it is at most [`MAX`].
fn capped(duration: Duration) -> Option<Duration> {
    (duration <= MAX).then_some(duration)
}

/// Formats a duration for people, compactly and in a form [`parse`] reads.
///
/// Below a minute, tenths of a second are shown when present (rounded up,
/// so a retry-after is never too early); from a minute up, whole seconds.
pub fn format(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms < 1_000 {
        return format!("{ms}ms");
    }
    if ms < 60_000 {
        let tenths = ms.div_ceil(100);
        return if tenths.is_multiple_of(10) {
            format!("{}s", tenths / 10)
        } else {
            format!("{}.{}s", tenths / 10, tenths % 10)
        };
    }
    let mut secs = ms.div_ceil(1_000);
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}

/// Serde support for `Duration` fields written as human durations.
pub(crate) mod serde_human {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format(*value))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        super::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_combinations() {
        assert_eq!(parse("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1_500)));
    }

    #[test]
    fn rejects_garbage_and_overflow() {
        assert!(matches!(parse("10x"), Err(DurationError::Malformed(_))));
        assert!(matches!(parse("m"), Err(DurationError::Malformed(_))));
        assert!(matches!(parse("-5s"), Err(DurationError::Malformed(_))));
        assert!(matches!(parse("1.s"), Err(DurationError::Malformed(_))));
        assert_eq!(parse(""), Err(DurationError::Empty));
        for huge in [
            "99999999999999999999d",
            "18446744073709551615",
            "18446744073709551615ms",
            "3651d",
            "3650d1ms",
            "522w",
            "9999999999999999999w",
        ] {
            assert!(
                matches!(parse(huge), Err(DurationError::TooLong(_))),
                "{huge}"
            );
        }
    }

    #[test]
    fn the_maximum_and_weeks_are_accepted() {
        assert_eq!(parse("3650d"), Ok(MAX));
        assert_eq!(parse("2w"), Ok(Duration::from_secs(14 * 86_400)));
        assert_eq!(
            parse("1.5w"),
            Ok(Duration::from_secs(10 * 86_400 + 12 * 3_600))
        );
    }

    #[test]
    fn format_round_trips_through_parse() {
        for ms in [
            0u64, 1, 999, 1_000, 1_234, 59_999, 60_000, 299_500, 90_061_000,
        ] {
            let shown = format(Duration::from_millis(ms));
            let back = parse(&shown).unwrap();
            assert!(back.as_millis() >= u128::from(ms), "{ms} -> {shown}");
        }
        assert_eq!(format(Duration::from_millis(1_201)), "1.3s");
        assert_eq!(format(Duration::from_secs(299)), "4m59s");
        assert_eq!(format(Duration::from_secs(3_600)), "1h");
    }
}
