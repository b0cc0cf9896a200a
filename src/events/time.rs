//! RFC 3339 text <-> microseconds since the Unix epoch, without a calendar crate.
//!
//! Only 1970-01-01T00:00:00Z to 9999-12-31T23:59:59.999999Z is accepted: audit events
//! before the epoch are a bug, and the range keeps every value inside `i64` microseconds.

use super::{EventError, Result};

/// Largest accepted time: 9999-12-31T23:59:59.999999Z in microseconds.
pub const TIME_US_MAX: i64 = 253_402_300_799_999_999;

/// Formats microseconds since the epoch as RFC 3339 UTC with six fraction digits,
/// e.g. `2025-01-01T00:00:00.000250Z`. Values outside the accepted range are clamped.
pub fn format_rfc3339_us(time_us: i64) -> String {
    let time_us = time_us.clamp(0, TIME_US_MAX);
    let secs = time_us / 1_000_000;
    let micros = time_us % 1_000_000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Parses RFC 3339 text (`2025-01-01T12:00:00Z`, `2025-01-01t12:00:00.5+02:00`, a space
/// instead of `T` is accepted) into microseconds since the epoch. Fraction digits past the
/// sixth are truncated.
///
/// # Errors
/// [`EventError::InvalidField`] naming `field` when the text is not RFC 3339 or is out of
/// range.
pub fn parse_rfc3339_us(text: &str, field: &str) -> Result<i64> {
    parse(text.as_bytes()).ok_or_else(|| {
        EventError::field(
            field,
            format!("expected rfc 3339 time from 1970 to 9999 such as 2025-01-01T00:00:00Z, got {text:?}"),
        )
    })
}

fn parse(b: &[u8]) -> Option<i64> {
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let year = digits(&b[0..4])?;
    let month = digits(&b[5..7])?;
    let day = digits(&b[8..10])?;
    let hour = digits(&b[11..13])?;
    let minute = digits(&b[14..16])?;
    let second = digits(&b[17..19])?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut rest = &b[19..];
    let mut micros = 0i64;
    if rest.first() == Some(&b'.') {
        let count = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if count == 0 {
            return None;
        }
        for i in 0..6 {
            let digit = rest.get(1 + i).filter(|_| i < count).map_or(0, |c| c - b'0');
            micros = micros * 10 + i64::from(digit);
        }
        rest = &rest[1 + count..];
    }
    let offset_s = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let hours = digits(&[*h1, *h2])?;
            let minutes = digits(&[*m1, *m2])?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            let offset = hours * 3600 + minutes * 60;
            if *sign == b'-' {
                -offset
            } else {
                offset
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_s;
    let time_us = secs.checked_mul(1_000_000)?.checked_add(micros)?;
    (0..=TIME_US_MAX).contains(&time_us).then_some(time_us)
}

fn digits(b: &[u8]) -> Option<i64> {
    b.iter().try_fold(0i64, |acc, c| {
        c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
    })
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's days_from_civil / civil_from_days, proleptic Gregorian calendar.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
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
    use proptest::prelude::*;

    #[test]
    fn known_instants() {
        assert_eq!(parse_rfc3339_us("1970-01-01T00:00:00Z", "time").unwrap(), 0);
        assert_eq!(
            parse_rfc3339_us("2025-01-01T00:00:00Z", "time").unwrap(),
            1_735_689_600_000_000
        );
        assert_eq!(
            parse_rfc3339_us("2025-01-01T02:00:00.5+02:00", "time").unwrap(),
            1_735_689_600_500_000
        );
        assert_eq!(
            parse_rfc3339_us("2024-02-29t00:00:00.1234567z", "time").unwrap(),
            1_709_164_800_123_456
        );
        assert_eq!(format_rfc3339_us(1_735_689_600_000_250), "2025-01-01T00:00:00.000250Z");
    }

    #[test]
    fn rejects_bad_text_naming_the_field() {
        for bad in [
            "",
            "2025-01-01",
            "2025-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2025-01-01T24:00:00Z",
            "2025-01-01T00:00:00",
            "2025-01-01T00:00:00.Z",
            "2025-01-01T00:00:00+0200",
            "1969-12-31T23:59:59Z",
            "２０２５-01-01T00:00:00Z",
        ] {
            let err = parse_rfc3339_us(bad, "time").unwrap_err();
            assert!(err.to_string().starts_with("invalid field time:"), "{bad}: {err}");
        }
    }

    proptest! {
        #[test]
        fn format_then_parse_is_identity(time_us in 0..=TIME_US_MAX) {
            let text = format_rfc3339_us(time_us);
            prop_assert_eq!(parse_rfc3339_us(&text, "time").unwrap(), time_us);
        }
    }
}
