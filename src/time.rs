//! RFC 3339 timestamps: the one place meshid reads and writes them (verification errors,
//! [`CertificateInfo`](crate::CertificateInfo), the `meshid` CLI); and lifetimes such as
//! `1h` ([`parse_duration`]: the CLI's options, registration entries).
//!
//! Only what X.509 validity needs: UTC times from 1970 to 9999, to the second. Reading
//! accepts a fraction (dropped) and a `±hh:mm` offset; writing is always
//! `YYYY-MM-DDTHH:MM:SSZ`.
//!
//! ```
//! use std::time::{Duration, UNIX_EPOCH};
//! use meshid::time::{parse_rfc3339, Rfc3339};
//!
//! let t = parse_rfc3339("2026-11-21T12:00:00+02:00")?;
//! assert_eq!(t, UNIX_EPOCH + Duration::from_secs(1_795_255_200));
//! assert_eq!(Rfc3339(t).to_string(), "2026-11-21T10:00:00Z");
//! # Ok::<(), meshid::time::TimeError>(())
//! ```

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use thiserror::Error;

/// Why a timestamp or a duration was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TimeError {
    /// The text is not an RFC 3339 date-time with a `Z` or `±hh:mm` offset.
    #[error("{0:?} is not an RFC 3339 time such as 2026-11-21T10:00:00Z")]
    Malformed(String),
    /// The time is before 1970-01-01T00:00:00Z.
    #[error("{0:?} is before 1970")]
    BeforeEpoch(String),
    /// The text is not a duration: a whole number followed by `s`, `m`, `h` or `d`.
    #[error(
        "{0:?} is not a duration like 30s, 10m, 1h, 24h or 7d (a whole number, then s, m, h or d)"
    )]
    MalformedDuration(String),
    /// The duration is zero (`0s`, `0h`).
    #[error("{0:?}: a duration must be more than zero")]
    ZeroDuration(String),
    /// The duration does not fit in 64-bit seconds.
    #[error("{0:?} is too long")]
    DurationTooLong(String),
}

/// Parses a lifetime: a whole number and one unit, `s`, `m`, `h` or `d` (`30s`, `10m`,
/// `1h`, `24h`, `7d`). Zero, combinations (`1h30m`), signs and fractions are refused.
///
/// ```
/// use std::time::Duration;
/// use meshid::time::{parse_duration, TimeError};
///
/// assert_eq!(parse_duration("10m")?, Duration::from_secs(600));
/// assert!(matches!(parse_duration("1h30m"), Err(TimeError::MalformedDuration(_))));
/// # Ok::<(), TimeError>(())
/// ```
pub fn parse_duration(s: &str) -> Result<Duration, TimeError> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let scale: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(TimeError::MalformedDuration(s.to_owned())),
    };
    if digits.is_empty() {
        return Err(TimeError::MalformedDuration(s.to_owned()));
    }
    // Only ASCII digits are left: parsing fails only by overflow.
    let secs = digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale));
    match secs {
        Some(0) => Err(TimeError::ZeroDuration(s.to_owned())),
        Some(secs) => Ok(Duration::from_secs(secs)),
        None => Err(TimeError::DurationTooLong(s.to_owned())),
    }
}

/// Parses an RFC 3339 date-time (`2026-11-21T10:00:00Z`; an optional fraction, which is
/// dropped; `Z` or a `±hh:mm` offset).
pub fn parse_rfc3339(s: &str) -> Result<SystemTime, TimeError> {
    let bad = || TimeError::Malformed(s.to_owned());
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| -> Result<i64, TimeError> {
        s.get(r)
            .filter(|t| t.bytes().all(|c| c.is_ascii_digit()))
            .and_then(|t| t.parse().ok())
            .ok_or_else(bad)
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=days_in_month(year, month)).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(bad());
    }
    let mut rest = s.get(19..).ok_or_else(bad)?;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        rest = &frac[digits..];
    }
    let offset = match rest.as_bytes() {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let two = |a: u8, b: u8| -> Result<i64, TimeError> {
                if a.is_ascii_digit() && b.is_ascii_digit() {
                    Ok(i64::from(a - b'0') * 10 + i64::from(b - b'0'))
                } else {
                    Err(bad())
                }
            };
            let (h, m) = (two(*h1, *h2)?, two(*m1, *m2)?);
            if h > 23 || m > 59 {
                return Err(bad());
            }
            let sign = if *sign == b'-' { -1 } else { 1 };
            sign * (h * 3600 + m * 60)
        }
        _ => return Err(bad()),
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset;
    u64::try_from(secs)
        .map(|secs| UNIX_EPOCH + Duration::from_secs(secs))
        .map_err(|_| TimeError::BeforeEpoch(s.to_owned()))
}

/// Shows a time as RFC 3339 UTC, to the second: `2026-11-21T10:00:00Z`. Times before 1970
/// show as 1970-01-01T00:00:00Z.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rfc3339(pub SystemTime);

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let (days, rem) = (secs / 86_400, secs % 86_400);
        let (year, month, day) = civil_from_days(i64::try_from(days).unwrap_or(i64::MAX / 2));
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        )
    }
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

/// The days of month `m` (1 to 12) of year `y`.
pub(crate) fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days.saturating_add(719_468);
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s)
    }

    #[test]
    fn parses() {
        let t = |s| parse_rfc3339(s).map(|t| t.duration_since(UNIX_EPOCH).unwrap().as_secs());
        assert_eq!(t("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(t("2000-03-01T00:00:00Z"), Ok(951_868_800));
        assert_eq!(t("2026-11-21T10:00:00.123Z"), Ok(1_795_255_200));
        assert_eq!(t("2026-11-21T12:00:00+02:00"), Ok(1_795_255_200));
        assert_eq!(t("2026-11-21T08:30:00-01:30"), Ok(1_795_255_200));
        assert_eq!(t("2024-02-29T00:00:00Z"), Ok(1_709_164_800));
        for bad in [
            "",
            "2026-11-21",
            "2026-13-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2026-11-21T10:00:00",
            "2026-11-21T10:00:00.Z",
            "2026-11-21T10:00:00+2:00",
            "2026-11-21T10:00:00+02:60",
            "2026-11-21T10:00:00+0é:00",
            "2026-11-21T10:00:00é",
            "é026-11-21T10:00:00Z",
        ] {
            assert!(
                matches!(parse_rfc3339(bad), Err(TimeError::Malformed(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_rfc3339("1969-12-31T23:59:59Z"),
            Err(TimeError::BeforeEpoch(_))
        ));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        for bad in [
            "",
            "h",
            "10",
            "10x",
            "-1h",
            "+1h",
            "1h30m",
            "1.5h",
            " 1h",
            "1h ",
            "1H",
            "99999999999999999999",
        ] {
            assert_eq!(
                parse_duration(bad),
                Err(TimeError::MalformedDuration(bad.to_owned())),
                "{bad}"
            );
        }
        assert_eq!(
            parse_duration("0s"),
            Err(TimeError::ZeroDuration("0s".to_owned()))
        );
        for long in ["99999999999999999999d", "213503982334602d"] {
            assert_eq!(
                parse_duration(long),
                Err(TimeError::DurationTooLong(long.to_owned())),
                "{long}"
            );
        }
    }

    #[test]
    fn formats() {
        assert_eq!(Rfc3339(at(0)).to_string(), "1970-01-01T00:00:00Z");
        assert_eq!(Rfc3339(at(951_868_800)).to_string(), "2000-03-01T00:00:00Z");
        assert_eq!(
            Rfc3339(at(1_795_255_201)).to_string(),
            "2026-11-21T10:00:01Z"
        );
        assert_eq!(
            Rfc3339(at(4_107_542_399)).to_string(),
            "2100-02-28T23:59:59Z"
        );
        assert_eq!(
            Rfc3339(at(253_402_300_799)).to_string(),
            "9999-12-31T23:59:59Z"
        );
    }

    #[test]
    fn round_trips() {
        for s in [0, 59, 86_399, 951_782_400, 1_709_164_800, 253_402_300_799] {
            let text = Rfc3339(at(s)).to_string();
            assert_eq!(parse_rfc3339(&text), Ok(at(s)), "{text}");
        }
    }
}
