//! Redaction: per-field rules applied to an event's JSON before it is hashed or written.
//!
//! A rule names a dotted field path and an action:
//! - [`RedactAction::Drop`] removes the field;
//! - [`RedactAction::Mask`] replaces its value with `"***"`;
//! - [`RedactAction::Pseudonymize`] replaces its value with
//!   `hmac-sha256:<key id>:<64 hex>`, the HMAC-SHA256 under a [`PseudonymKey`] of the
//!   value's canonical JSON text. Equal values give equal pseudonyms under one key, so
//!   records stay joinable; nobody without the key can recover or test a guess.
//!
//! Path resolution: at each object, the longest run of path segments that is a key of that
//! object is taken (so `gen_ai.tool.call.arguments.email` finds the key
//! `gen_ai.tool.call.arguments`, then `email` inside it). Arrays are transparent: the rest
//! of the path applies to every element. A JSON string holding JSON is a leaf.

use super::fields::{field_spec, FieldSpec, FieldType};
use super::{canonical_json, split_path, EventError, Result};
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

/// The text a masked value becomes.
pub const MASK: &str = "***";

/// The prefix of every pseudonym.
pub const PSEUDONYM_PREFIX: &str = "hmac-sha256:";

/// Shortest pseudonym secret accepted.
pub const PSEUDONYM_SECRET_BYTES_MIN: usize = 16;

/// Longest pseudonym key id accepted.
pub const PSEUDONYM_KEY_ID_BYTES_MAX: usize = 64;

/// String fields whose values are checked for form (hex ids, enums): a masked or
/// pseudonymized value would make the event unreadable.
const STRUCTURAL_FIELDS: [&str; 8] = [
    "kind",
    "trace_id",
    "span_id",
    "parent_span_id",
    "actor.type",
    "trailkeep.policy.decision",
    "trailkeep.approval.decision",
    "trailkeep.prompt.sha256",
];

/// What a rule does to the field it names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedactAction {
    /// Remove the field.
    Drop,
    /// Replace the value with `"***"`.
    Mask,
    /// Replace the value with a keyed pseudonym.
    Pseudonymize,
}

/// A named HMAC key for pseudonyms. The id is written into every pseudonym, so keys can be
/// rotated: new records use the new id, old pseudonyms keep naming the old one.
#[derive(Clone)]
pub struct PseudonymKey {
    id: String,
    secret: Vec<u8>,
}

impl std::fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PseudonymKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl PseudonymKey {
    /// A key named `id` (1 to 64 bytes of `A-Z a-z 0-9 . _ -`) with a secret of at least
    /// [`PSEUDONYM_SECRET_BYTES_MIN`] bytes (use 32 random bytes).
    ///
    /// # Errors
    /// [`EventError::InvalidRule`] for a bad id or a short secret.
    pub fn new(id: impl Into<String>, secret: impl Into<Vec<u8>>) -> Result<Self> {
        let id = id.into();
        let secret = secret.into();
        let id_ok = !id.is_empty()
            && id.len() <= PSEUDONYM_KEY_ID_BYTES_MAX
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !id_ok {
            return Err(EventError::InvalidRule {
                path: "(pseudonym key)".into(),
                detail: format!("key id {id:?} must be 1 to 64 characters of A-Z a-z 0-9 . _ -"),
            });
        }
        if secret.len() < PSEUDONYM_SECRET_BYTES_MIN {
            return Err(EventError::InvalidRule {
                path: "(pseudonym key)".into(),
                detail: format!(
                    "secret of key {id} is {} bytes; at least {PSEUDONYM_SECRET_BYTES_MIN} are needed",
                    secret.len()
                ),
            });
        }
        Ok(PseudonymKey { id, secret })
    }

    /// The key id written into pseudonyms.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The pseudonym of `value`: `hmac-sha256:<key id>:<hex of HMAC-SHA256(secret,
    /// canonical JSON of value)>`. A string `"a"` is hashed as the 3 bytes `"a"`.
    pub fn pseudonym(&self, value: &Value) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("hmac accepts keys of any length");
        mac.update(canonical_json(value).as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut out = format!("{PSEUDONYM_PREFIX}{}:", self.id);
        for byte in digest {
            out.push_str(&format!("{byte:02x}"));
        }
        out
    }

    /// Whether `text` is already a pseudonym made with this key's id.
    fn is_own_pseudonym(&self, text: &str) -> bool {
        text.strip_prefix(PSEUDONYM_PREFIX)
            .and_then(|rest| rest.strip_prefix(self.id.as_str()))
            .and_then(|rest| rest.strip_prefix(':'))
            .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
    }
}

#[derive(Clone, Debug)]
struct Rule {
    path: String,
    segments: Vec<String>,
    action: RedactAction,
}

/// An ordered list of redaction rules. Build it once, apply it to every event.
#[derive(Clone, Debug, Default)]
pub struct Redactor {
    rules: Vec<Rule>,
    key: Option<PseudonymKey>,
}

impl Redactor {
    /// A redactor with no rules (it changes nothing).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the key used by [`RedactAction::Pseudonymize`] rules. Set it before adding
    /// such rules.
    pub fn with_pseudonym_key(mut self, key: PseudonymKey) -> Self {
        self.key = Some(key);
        self
    }

    /// Adds a rule. Rules apply in the order added.
    ///
    /// # Errors
    /// [`EventError::InvalidPath`] for a malformed path; [`EventError::InvalidRule`] when
    /// the rule would make events unreadable (dropping a field some kind requires, masking
    /// a structural field such as `trace_id`, reaching inside a field that is not
    /// free-form JSON) or is a pseudonym rule without a key.
    pub fn rule(mut self, path: &str, action: RedactAction) -> Result<Self> {
        let segments = split_path(path)?;
        check_rule(path, &segments, action)?;
        if action == RedactAction::Pseudonymize && self.key.is_none() {
            return Err(EventError::InvalidRule {
                path: path.into(),
                detail: "pseudonymize needs a key: call with_pseudonym_key first".into(),
            });
        }
        self.rules.push(Rule {
            path: path.to_owned(),
            segments,
            action,
        });
        Ok(self)
    }

    /// Adds a [`RedactAction::Drop`] rule. See [`Redactor::rule`].
    ///
    /// # Errors
    /// As [`Redactor::rule`].
    pub fn drop_field(self, path: &str) -> Result<Self> {
        self.rule(path, RedactAction::Drop)
    }

    /// Adds a [`RedactAction::Mask`] rule. See [`Redactor::rule`].
    ///
    /// # Errors
    /// As [`Redactor::rule`].
    pub fn mask(self, path: &str) -> Result<Self> {
        self.rule(path, RedactAction::Mask)
    }

    /// Adds a [`RedactAction::Pseudonymize`] rule. See [`Redactor::rule`].
    ///
    /// # Errors
    /// As [`Redactor::rule`].
    pub fn pseudonymize(self, path: &str) -> Result<Self> {
        self.rule(path, RedactAction::Pseudonymize)
    }

    /// The rules, as (path, action), in order.
    pub fn rules(&self) -> impl Iterator<Item = (&str, RedactAction)> {
        self.rules.iter().map(|rule| (rule.path.as_str(), rule.action))
    }

    /// Applies every rule to `value` in place. Pure: no I/O, no randomness, the same input
    /// always gives the same output. Fields a rule names but the value lacks are skipped.
    /// Already-redacted values (`"***"`, a pseudonym with this key's id) are left as they
    /// are, so applying twice equals applying once.
    pub fn apply(&self, value: &mut Value) {
        for rule in &self.rules {
            visit(value, &rule.segments, &mut |parent, key| match rule.action {
                RedactAction::Drop => {
                    parent.remove(key);
                }
                RedactAction::Mask => {
                    parent.insert(key.to_owned(), Value::String(MASK.into()));
                }
                RedactAction::Pseudonymize => {
                    let Some(pseudo_key) = &self.key else {
                        return;
                    };
                    let target = &parent[key];
                    let done = target.as_str().is_some_and(|s| pseudo_key.is_own_pseudonym(s));
                    if !done {
                        let pseudonym = pseudo_key.pseudonym(target);
                        parent.insert(key.to_owned(), Value::String(pseudonym));
                    }
                }
            });
        }
    }
}

fn check_rule(path: &str, segments: &[String], action: RedactAction) -> Result<()> {
    let invalid = |detail: String| {
        Err(EventError::InvalidRule {
            path: path.into(),
            detail,
        })
    };
    let Some((spec, depth)) = schema_prefix(segments) else {
        return Ok(()); // not a schema field: an extra field, free to redact
    };
    if depth < segments.len() {
        if spec.field_type != FieldType::Any {
            return invalid(format!(
                "{} is not free-form json; rules may reach inside free-form fields only",
                spec.name
            ));
        }
        return Ok(());
    }
    let textual = matches!(spec.field_type, FieldType::String | FieldType::Any);
    let fixed_form = !textual || STRUCTURAL_FIELDS.contains(&spec.name);
    match (action, spec.required_in.first()) {
        (_, Some(kind)) if fixed_form => invalid(format!(
            "{kind} events require it and its value has a fixed form: no redaction rule may change it"
        )),
        (RedactAction::Drop, Some(kind)) => {
            invalid(format!("{kind} events require it; mask or pseudonymize it instead"))
        }
        (RedactAction::Drop, None) => Ok(()),
        (RedactAction::Mask | RedactAction::Pseudonymize, _) if fixed_form => {
            invalid("its value has a fixed form; only drop is possible".into())
        }
        (RedactAction::Mask | RedactAction::Pseudonymize, _) => Ok(()),
    }
}

/// The schema field that the longest prefix of `segments` names, and that prefix's length.
pub(crate) fn schema_prefix(segments: &[String]) -> Option<(&'static FieldSpec, usize)> {
    (1..=segments.len())
        .rev()
        .find_map(|n| field_spec(&segments[..n].join(".")).map(|spec| (spec, n)))
}

/// Calls `f(parent, key)` for every place the path resolves to (see the module docs).
pub(crate) fn visit(value: &mut Value, segments: &[String], f: &mut impl FnMut(&mut Map<String, Value>, &str)) {
    match value {
        Value::Array(items) => {
            for item in items {
                visit(item, segments, f);
            }
        }
        Value::Object(map) => {
            let Some(n) = (1..=segments.len())
                .rev()
                .find(|&n| map.contains_key(&segments[..n].join(".")))
            else {
                return;
            };
            let key = segments[..n].join(".");
            if n == segments.len() {
                f(map, &key);
            } else if let Some(child) = map.get_mut(&key) {
                visit(child, &segments[n..], f);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    //! Proves each action does what it says, pseudonyms are stable per key and differ
    //! across keys, paths reach into nested objects and arrays, and rules that would make
    //! events unreadable are refused.
    use super::*;
    use serde_json::json;

    fn key(id: &str, byte: u8) -> PseudonymKey {
        PseudonymKey::new(id, vec![byte; 32]).unwrap()
    }

    fn event_value() -> Value {
        json!({
            "kind": "tool_call",
            "actor.id": "user-0001",
            "subject.id": "user-0001",
            "gen_ai.input.messages": [{"role": "user", "content": "my email is a@b.c"}],
            "gen_ai.tool.call.arguments": {"email": "a@b.c", "amount": 12, "nested": {"ssn": "123"}},
            "custom.field": "keep me",
        })
    }

    /// Every refusal names an action that works, or says none does: a required key of
    /// fixed form refuses all three without sending the user from one to the other.
    #[test]
    fn refusals_never_suggest_a_refused_action() {
        let actions = [RedactAction::Drop, RedactAction::Mask, RedactAction::Pseudonymize];
        for path in ["kind", "time", "trace_id", "span_id", "schema_version", "actor.type"] {
            for action in actions {
                let e = Redactor::new().rule(path, action).unwrap_err().to_string();
                assert!(e.contains("no redaction rule may change it"), "{path} {action:?}: {e}");
            }
        }
        // A required free-text key may be masked, not dropped.
        let e = Redactor::new().drop_field("actor.id").unwrap_err().to_string();
        assert!(e.contains("mask or pseudonymize it instead"), "{e}");
        Redactor::new().mask("actor.id").unwrap();
    }

    #[test]
    fn drop_mask_and_pseudonymize() {
        let redactor = Redactor::new()
            .with_pseudonym_key(key("k1", 7))
            .drop_field("gen_ai.tool.call.arguments.nested.ssn")
            .unwrap()
            .mask("gen_ai.input.messages.content")
            .unwrap()
            .pseudonymize("gen_ai.tool.call.arguments.email")
            .unwrap()
            .pseudonymize("actor.id")
            .unwrap();
        let mut value = event_value();
        redactor.apply(&mut value);
        assert_eq!(value["gen_ai.tool.call.arguments"]["nested"], json!({}));
        assert_eq!(value["gen_ai.input.messages"][0]["content"], json!(MASK));
        assert_eq!(value["gen_ai.input.messages"][0]["role"], json!("user"));
        let email = value["gen_ai.tool.call.arguments"]["email"].as_str().unwrap();
        assert!(email.starts_with("hmac-sha256:k1:"), "{email}");
        assert_eq!(email.len(), "hmac-sha256:k1:".len() + 64);
        assert_eq!(value["gen_ai.tool.call.arguments"]["amount"], json!(12));
        assert_eq!(value["custom.field"], json!("keep me"));
        // Redacting again changes nothing.
        let once = value.clone();
        redactor.apply(&mut value);
        assert_eq!(value, once);
    }

    #[test]
    fn pseudonyms_are_stable_per_key_and_differ_across_keys() {
        let a = key("k1", 1);
        let b = key("k2", 2);
        let same_secret_new_id = key("k3", 1);
        let email = json!("a@b.c");
        assert_eq!(a.pseudonym(&email), a.pseudonym(&json!("a@b.c")));
        assert_ne!(a.pseudonym(&email), a.pseudonym(&json!("a@b.d")));
        let hex = |p: String| p.rsplit(':').next().unwrap().to_owned();
        assert_ne!(hex(a.pseudonym(&email)), hex(b.pseudonym(&email)));
        assert_eq!(hex(a.pseudonym(&email)), hex(same_secret_new_id.pseudonym(&email)));
        // The canonical form makes key order irrelevant, and keeps types apart.
        let x: Value = serde_json::from_str(r#"{"b":1,"a":2}"#).unwrap();
        let y: Value = serde_json::from_str(r#"{"a":2,"b":1}"#).unwrap();
        assert_eq!(a.pseudonym(&x), a.pseudonym(&y));
        assert_ne!(a.pseudonym(&json!(1)), a.pseudonym(&json!("1")));
        // Known answer: HMAC-SHA256(key = 32 x 0x01, message = "\"a@b.c\"").
        let mut mac = Hmac::<Sha256>::new_from_slice(&[1u8; 32]).unwrap();
        mac.update(b"\"a@b.c\"");
        let expected: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(a.pseudonym(&email), format!("hmac-sha256:k1:{expected}"));
    }

    #[test]
    fn a_foreign_pseudonym_is_hashed_again() {
        let redactor = Redactor::new()
            .with_pseudonym_key(key("k2", 2))
            .pseudonymize("actor.id")
            .unwrap();
        let mut value = json!({"actor.id": key("k1", 1).pseudonym(&json!("x"))});
        redactor.apply(&mut value);
        assert!(value["actor.id"].as_str().unwrap().starts_with("hmac-sha256:k2:"));
    }

    #[test]
    fn missing_fields_are_skipped() {
        let redactor = Redactor::new()
            .mask("gen_ai.tool.call.result")
            .unwrap()
            .drop_field("x.y")
            .unwrap();
        let mut value = event_value();
        redactor.apply(&mut value);
        assert_eq!(value, event_value());
    }

    #[test]
    fn rules_that_break_events_are_refused() {
        let refused = [
            (Redactor::new().drop_field("event_id"), "event_id"),
            (Redactor::new().drop_field("gen_ai.tool.name"), "gen_ai.tool.name"),
            (Redactor::new().mask("trace_id"), "trace_id"),
            (
                Redactor::new().mask("gen_ai.usage.input_tokens"),
                "gen_ai.usage.input_tokens",
            ),
            (Redactor::new().mask("actor.id.deep"), "actor.id.deep"),
            (Redactor::new().pseudonymize("actor.id"), "actor.id"),
        ];
        for (result, path) in refused {
            match result {
                Err(EventError::InvalidRule { path: p, .. }) => assert_eq!(p, path),
                other => panic!("{path}: expected InvalidRule, got {other:?}"),
            }
        }
        assert!(matches!(
            Redactor::new().mask("a..b"),
            Err(EventError::InvalidPath { .. })
        ));
        assert!(Redactor::new().drop_field("gen_ai.usage.input_tokens").is_ok());
        assert!(Redactor::new().mask("gen_ai.input.messages").is_ok());
        assert!(PseudonymKey::new("k:1", vec![0; 32]).is_err());
        assert!(PseudonymKey::new("k1", vec![0; 8]).is_err());
    }

    #[test]
    fn debug_hides_the_secret() {
        let text = format!("{:?}", key("k1", 0xAB));
        assert!(!text.contains("171"), "{text}");
        assert!(text.contains("k1"));
    }
}
