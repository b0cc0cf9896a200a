//! Text forms used by the command line: JSON lines of records, times and durations.

use serde_json::{json, Map, Value};

use crate::events::{format_rfc3339_us, parse_rfc3339_us, TIME_US_MAX};
use crate::Record;

/// Parses a time given as RFC 3339 or as epoch milliseconds, into epoch microseconds.
///
/// # Errors
/// A message saying what was expected.
pub fn parse_time_us(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let us = if let Ok(ms) = text.parse::<u64>() {
        ms.saturating_mul(1000)
    } else {
        // Full RFC 3339: an offset such as +02:00 counts (it used to be ignored).
        let us = parse_rfc3339_us(text, "time").map_err(|_| {
            format!(
                "time {text:?} is neither RFC 3339 (1970 to 9999, e.g. 2025-01-01T00:00:00Z) nor epoch milliseconds"
            )
        })?;
        u64::try_from(us).map_err(|_| format!("time {text:?} is before 1970"))?
    };
    if us > TIME_US_MAX as u64 {
        return Err(format!("time {text} is after 9999-12-31T23:59:59.999999Z"));
    }
    Ok(us)
}

/// Parses a duration such as `7d`, `12h`, `30m`, `90s` into milliseconds.
///
/// # Errors
/// A message saying what was expected.
pub fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let d = humantime::parse_duration(text.trim())
        .map_err(|e| format!("duration {text:?} is not like 7d, 12h, 30m or 90s: {e}"))?;
    // A duration too long for u64 milliseconds used to wrap to a short one.
    u64::try_from(d.as_millis()).map_err(|_| format!("duration {text:?} is too long"))
}

/// RFC 3339 with microseconds, UTC; `None` after 9999-12-31T23:59:59.999999Z, which the
/// format cannot write (a library caller may store any time; the CLI refuses such input).
pub fn format_time_us(us: u64) -> Option<String> {
    i64::try_from(us)
        .ok()
        .filter(|&us| us <= TIME_US_MAX)
        .map(format_rfc3339_us)
}

fn bytes_value(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(s) => Value::String(s.to_owned()),
        Err(_) => {
            use base64::Engine;
            json!({ "base64": base64::engine::general_purpose::STANDARD.encode(bytes) })
        }
    }
}

/// One record as a JSON object: offset, timestamp, timestamp_us, key, value (strings when
/// UTF-8, else `{"base64": ...}`), and event_time / headers when present. Headers are an
/// object by name; a name that repeats (Kafka producers may send that) maps to the array
/// of its values in order.
pub fn record_json(record: &Record) -> Value {
    let mut object = Map::new();
    object.insert("offset".into(), json!(record.offset.0));
    // A time the format cannot write is null; the `_us` field beside it is exact.
    object.insert("timestamp".into(), json!(format_time_us(record.timestamp_us)));
    object.insert("timestamp_us".into(), json!(record.timestamp_us));
    object.insert("key".into(), record.key.as_deref().map_or(Value::Null, bytes_value));
    if let Some(t) = record.event_time_us {
        let formatted = json!(u64::try_from(t).ok().and_then(format_time_us));
        object.insert("event_time".into(), formatted);
        object.insert("event_time_us".into(), json!(t));
    }
    if !record.headers.is_empty() {
        object.insert("headers".into(), headers_json(&record.headers));
    }
    object.insert("value".into(), bytes_value(&record.value));
    Value::Object(object)
}

fn headers_json(headers: &[(String, Vec<u8>)]) -> Value {
    let mut object = Map::new();
    for (name, value) in headers {
        let value = bytes_value(value);
        match object.get_mut(name) {
            None => {
                object.insert(name.clone(), value);
            }
            // A single value is a string or a base64 object, never an array.
            Some(Value::Array(values)) => values.push(value),
            Some(first) => *first = Value::Array(vec![first.take(), value]),
        }
    }
    Value::Object(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(parse_time_us("1700000000000").unwrap(), 1_700_000_000_000_000);
        assert_eq!(parse_time_us("2023-11-14T22:13:20Z").unwrap(), 1_700_000_000_000_000);
        assert_eq!(
            format_time_us(1_700_000_000_000_001).as_deref(),
            Some("2023-11-14T22:13:20.000001Z")
        );
        assert_eq!(format_time_us(TIME_US_MAX as u64 + 1), None);
        assert_eq!(format_time_us(u64::MAX), None);
        assert!(parse_time_us("253402300800000").is_err(), "year 10000");
        assert!(parse_time_us("18446744073709551615").is_err());
        assert!(parse_time_us("10000-01-01T00:00:00Z").is_err());
        assert_eq!(parse_time_us("253402300799999").unwrap(), 253_402_300_799_999_000);
        assert!(parse_time_us("yesterday").is_err());
        assert_eq!(parse_duration_ms("2h").unwrap(), 7_200_000);
        assert!(parse_duration_ms("soon").is_err());
        assert!(parse_duration_ms("18446744073709553s").is_err(), "wrapped to 1,384 ms");
        assert_eq!(
            parse_time_us("2024-01-02T03:04:05.5+02:00").unwrap(),
            parse_time_us("2024-01-02T01:04:05.5Z").unwrap()
        );
        assert_eq!(parse_time_us("2023-11-14t22:13:20z").unwrap(), 1_700_000_000_000_000);
    }

    #[test]
    fn a_repeated_header_name_keeps_every_value_in_order() {
        let headers = [("a", "1"), ("dup", "x"), ("b", "2"), ("dup", "y"), ("dup", "z")]
            .map(|(n, v)| (n.to_owned(), v.as_bytes().to_vec()));
        assert_eq!(
            headers_json(&headers),
            json!({"a": "1", "dup": ["x", "y", "z"], "b": "2"})
        );
        let binary = [("k".to_owned(), vec![0xff]), ("k".to_owned(), b"t".to_vec())];
        assert_eq!(headers_json(&binary), json!({"k": [{"base64": "/w=="}, "t"]}));
    }
}
