//! `event_line`: one line of a `.jsonl` trail through the event decoder, and decoded events
//! back through the encoder.

use trailkeep::events::Event;

/// `event_line`: the input (lossy UTF-8) is one JSON line. Decoding must not panic; an
/// event that decodes encodes (`to_json`) to canonical JSON that decodes to an equal event
/// (floats included: serde_json's `float_roundtrip`), which encodes to the same bytes.
pub fn check_event_line(data: &[u8]) {
    let line = String::from_utf8_lossy(data);
    let Ok(event) = Event::from_json_line(&line) else {
        return;
    };
    let json = event.to_json().expect("a decoded event encodes");
    let again = Event::from_json_line(&json).expect("an encoded event decodes");
    // The typed form and the JSON value form agree (no text in between: exactly).
    let value = event.to_value().expect("a decoded event converts to a value");
    assert_eq!(Event::from_value(value).ok().as_ref(), Some(&event));
    assert_eq!(again, event, "decode(encode(event)) differs from the event");
    assert_eq!(again.to_json().expect("encoding again"), json, "encoding is not stable");
}
