//! `event_line`: one line of a `.jsonl` trail through the event decoder, and decoded events
//! back through the encoder.

use serde_json::Value;
use trailkeep::events::Event;

/// Relative difference allowed between a float and the same float after an encode and
/// decode: serde_json without its `float_roundtrip` feature may parse the shortest
/// representation of a double one or two ulps off (regressions/event_line).
const FLOAT_DRIFT_MAX: f64 = 4.0 * f64::EPSILON;

/// `event_line`: the input (lossy UTF-8) is one JSON line. Decoding must not panic; an
/// event that decodes encodes (`to_json`) to canonical JSON that decodes to an equal event
/// (floats up to [`FLOAT_DRIFT_MAX`]) and, when equal, encodes to the same bytes.
pub fn check_event_line(data: &[u8]) {
    let line = String::from_utf8_lossy(data);
    let Ok(event) = Event::from_json_line(&line) else {
        return;
    };
    let json = event.to_json().expect("a decoded event encodes");
    let again = Event::from_json_line(&json).expect("an encoded event decodes");
    // The typed form and the JSON value form agree (no text in between: exactly).
    let value = event.to_value().expect("a decoded event converts to a value");
    assert_eq!(Event::from_value(value.clone()).ok().as_ref(), Some(&event));
    if again == event {
        assert_eq!(again.to_json().expect("encoding again"), json, "encoding is not stable");
        return;
    }
    let again_value = again.to_value().expect("a decoded event converts to a value");
    assert!(
        same_but_float_drift(&value, &again_value),
        "decode(encode(event)) differs from the event:\n{event:?}\n{again:?}"
    );
}

/// Equal JSON, except that floats may differ by [`FLOAT_DRIFT_MAX`] (relative).
fn same_but_float_drift(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (Some(x), Some(y)) = (x.as_f64(), y.as_f64()) else {
                return false;
            };
            x == y || (x - y).abs() <= FLOAT_DRIFT_MAX * x.abs().max(y.abs())
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_but_float_drift(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(key, x)| y.get(key).is_some_and(|y| same_but_float_drift(x, y)))
        }
        _ => a == b,
    }
}
