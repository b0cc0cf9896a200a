//! JSON -> [`Event`]: parsing with an error naming the field for every problem.
//!
//! A JSON `null` means "absent" for every field. The checks on ids, hex ids and versions
//! are shared with `encode.rs`, so anything [`Event::to_json`] writes reads back.

use super::schema::*;
use super::time::{parse_rfc3339_us, TIME_US_MAX};
use super::{EventError, Result};
use serde_json::{Map, Value};

impl Event {
    /// Parses and validates one JSON event (one line of a `.jsonl` trail).
    ///
    /// # Errors
    /// [`EventError`] naming the field: invalid JSON, a missing required field for the
    /// kind, a field of the wrong type or form, an unknown kind or a newer schema version.
    pub fn from_json_line(line: &str) -> Result<Event> {
        if line.len() > EVENT_JSON_BYTES_MAX {
            return Err(EventError::TooLarge {
                bytes: line.len(),
                max: EVENT_JSON_BYTES_MAX,
            });
        }
        let value: Value = serde_json::from_str(line).map_err(|e| EventError::InvalidJson { detail: e.to_string() })?;
        Event::from_value(value)
    }

    /// Validates and converts a JSON value (after [`crate::events::decrypt_fields`], for
    /// example) into an event.
    ///
    /// # Errors
    /// As [`Event::from_json_line`].
    pub fn from_value(value: Value) -> Result<Event> {
        let map = match value {
            Value::Object(map) => map,
            other => {
                return Err(EventError::NotAnObject {
                    found: json_type(&other),
                })
            }
        };
        parse_event(map)
    }
}

/// The object being parsed; every `take` removes its key, so what is left is `extra`.
struct Fields {
    map: Map<String, Value>,
    kind: &'static str,
}

impl Fields {
    fn take(&mut self, name: &str) -> Option<Value> {
        self.map.remove(name).filter(|value| !value.is_null())
    }

    fn required(&mut self, name: &'static str) -> Result<Value> {
        self.take(name).ok_or_else(|| EventError::MissingField {
            field: name,
            kind: self.kind.to_owned(),
        })
    }

    fn req_str(&mut self, name: &'static str) -> Result<String> {
        let value = self.required(name)?;
        as_string(name, value)
    }

    fn opt_str(&mut self, name: &'static str) -> Result<Option<String>> {
        self.take(name).map(|value| as_string(name, value)).transpose()
    }

    fn req_id(&mut self, name: &'static str) -> Result<String> {
        let id = self.req_str(name)?;
        check_id(name, &id)?;
        Ok(id)
    }

    fn opt_id(&mut self, name: &'static str) -> Result<Option<String>> {
        let id = self.opt_str(name)?;
        id.as_deref().map(|id| check_id(name, id)).transpose()?;
        Ok(id)
    }

    fn opt_u64(&mut self, name: &'static str) -> Result<Option<u64>> {
        self.take(name).map(|value| as_u64(name, &value)).transpose()
    }

    fn opt_f64(&mut self, name: &'static str) -> Result<Option<f64>> {
        let value = self.take(name);
        value
            .map(|value| {
                value
                    .as_f64()
                    .ok_or_else(|| EventError::field(name, format!("expected a number, got {}", json_type(&value))))
            })
            .transpose()
    }

    fn opt_str_list(&mut self, name: &'static str) -> Result<Option<Vec<String>>> {
        let Some(value) = self.take(name) else {
            return Ok(None);
        };
        let Value::Array(items) = value else {
            let detail = format!("expected an array of strings, got {}", json_type(&value));
            return Err(EventError::field(name, detail));
        };
        let list = items.into_iter().enumerate().map(|(i, item)| match item {
            Value::String(s) => Ok(s),
            other => Err(EventError::field(
                format!("{name}[{i}]"),
                format!("expected a string, got {}", json_type(&other)),
            )),
        });
        list.collect::<Result<Vec<_>>>().map(Some)
    }
}

fn parse_event(map: Map<String, Value>) -> Result<Event> {
    let mut f = Fields { map, kind: "any" };
    let version = f.required("schema_version")?;
    let version = as_u64("schema_version", &version)?;
    check_version(version)?;
    let kind_name = f.req_str("kind")?;
    let kind = EventKind::from_name(&kind_name).ok_or(EventError::UnknownKind {
        kind: kind_name.clone(),
    })?;
    f.kind = kind.as_str();
    let time_us = parse_time(f.required("time")?)?;
    let event_id = f.req_id("event_id")?;
    let trace_id = f.req_str("trace_id")?;
    check_hex_id("trace_id", &trace_id, 32)?;
    let span_id = f.req_str("span_id")?;
    check_hex_id("span_id", &span_id, 16)?;
    let parent_span_id = f.opt_str("parent_span_id")?;
    if let Some(parent) = &parent_span_id {
        check_hex_id("parent_span_id", parent, 16)?;
    }
    let conversation_id = f.req_id("gen_ai.conversation.id")?;
    let agent_id = f.req_id("gen_ai.agent.id")?;
    let actor_id = f.req_id("actor.id")?;
    let actor_type = match f.req_str("actor.type")?.as_str() {
        "user" => ActorType::User,
        "agent" => ActorType::Agent,
        "service" => ActorType::Service,
        other => return Err(enum_error("actor.type", "user, agent or service", other)),
    };
    let subject_id = f.opt_id("subject.id")?;
    let operation_name = f.opt_id("gen_ai.operation.name")?;
    if kind == EventKind::ModelCall && operation_name.is_none() {
        return Err(EventError::MissingField {
            field: "gen_ai.operation.name",
            kind: kind_name,
        });
    }
    let body = parse_body(kind, &mut f)?;
    Ok(Event {
        schema_version: u32::try_from(version).unwrap_or(SCHEMA_VERSION),
        event_id,
        time_us,
        trace_id,
        span_id,
        parent_span_id,
        conversation_id,
        agent_id,
        actor: Actor::new(actor_id, actor_type),
        subject_id,
        operation_name: operation_name.map(|name| OperationName::from_name(&name)),
        body,
        extra: f.map.into_iter().collect(),
    })
}

fn parse_body(kind: EventKind, f: &mut Fields) -> Result<EventBody> {
    Ok(match kind {
        EventKind::UserInput => EventBody::UserInput(UserInput {
            input_messages: f.required("gen_ai.input.messages")?,
        }),
        EventKind::SystemPrompt => EventBody::SystemPrompt(SystemPrompt {
            prompt_id: f.req_id("trailkeep.prompt.id")?,
            prompt_version: f.opt_str("trailkeep.prompt.version")?,
            prompt_sha256: match f.opt_str("trailkeep.prompt.sha256")? {
                Some(hex) => Some(check_hex("trailkeep.prompt.sha256", hex, 64)?),
                None => None,
            },
            system_instructions: f.take("gen_ai.system_instructions"),
        }),
        EventKind::ModelCall => EventBody::ModelCall(ModelCall {
            provider_name: f.req_id("gen_ai.provider.name")?,
            request_model: f.req_id("gen_ai.request.model")?,
            input_messages: f.take("gen_ai.input.messages"),
            system_instructions: f.take("gen_ai.system_instructions"),
            temperature: f.opt_f64("gen_ai.request.temperature")?,
            max_tokens: f.opt_u64("gen_ai.request.max_tokens")?,
        }),
        EventKind::ModelOutput => EventBody::ModelOutput(ModelOutput {
            provider_name: f.req_id("gen_ai.provider.name")?,
            response_model: f.req_id("gen_ai.response.model")?,
            response_id: f.opt_str("gen_ai.response.id")?,
            finish_reasons: f.opt_str_list("gen_ai.response.finish_reasons")?,
            input_tokens: f.opt_u64("gen_ai.usage.input_tokens")?,
            output_tokens: f.opt_u64("gen_ai.usage.output_tokens")?,
            output_messages: f.take("gen_ai.output.messages"),
        }),
        EventKind::ToolCall => EventBody::ToolCall(ToolCall {
            tool_name: f.req_id("gen_ai.tool.name")?,
            call_id: f.req_id("gen_ai.tool.call.id")?,
            tool_type: f.opt_str("gen_ai.tool.type")?,
            arguments: f.take("gen_ai.tool.call.arguments"),
        }),
        EventKind::ToolResult => EventBody::ToolResult(ToolResult {
            tool_name: f.req_id("gen_ai.tool.name")?,
            call_id: f.req_id("gen_ai.tool.call.id")?,
            result: f.take("gen_ai.tool.call.result"),
            error_type: f.opt_str("error.type")?,
        }),
        EventKind::Retrieval => EventBody::Retrieval(Retrieval {
            data_source_id: f.req_id("gen_ai.data_source.id")?,
            query_text: f.take("gen_ai.retrieval.query.text"),
            documents: parse_documents(f.required("gen_ai.retrieval.documents")?)?,
            top_k: f.opt_u64("gen_ai.retrieval.top_k")?,
        }),
        EventKind::PolicyCheck => EventBody::PolicyCheck(PolicyCheck {
            policy_id: f.req_id("trailkeep.policy.id")?,
            decision: match f.req_str("trailkeep.policy.decision")?.as_str() {
                "allow" => PolicyDecision::Allow,
                "deny" => PolicyDecision::Deny,
                "flag" => PolicyDecision::Flag,
                other => return Err(enum_error("trailkeep.policy.decision", "allow, deny or flag", other)),
            },
            reason: f.take("trailkeep.policy.reason"),
            tool_call_id: f.opt_id("gen_ai.tool.call.id")?,
        }),
        EventKind::Approval => EventBody::Approval(Approval {
            decision: match f.req_str("trailkeep.approval.decision")?.as_str() {
                "approved" => ApprovalDecision::Approved,
                "rejected" => ApprovalDecision::Rejected,
                other => return Err(enum_error("trailkeep.approval.decision", "approved or rejected", other)),
            },
            approver: f.req_id("trailkeep.approval.approver")?,
            reason: f.take("trailkeep.approval.reason"),
            tool_call_id: f.opt_id("gen_ai.tool.call.id")?,
        }),
        EventKind::FinalAction => EventBody::FinalAction(FinalAction {
            action_name: f.req_id("trailkeep.action.name")?,
            arguments: f.take("trailkeep.action.arguments"),
            outcome: f.opt_str("trailkeep.action.outcome")?,
        }),
        EventKind::Error => EventBody::Error(ErrorEvent {
            error_type: f.req_id("error.type")?,
            message: f.take("error.message"),
        }),
    })
}

fn parse_documents(value: Value) -> Result<Vec<RetrievedDocument>> {
    const FIELD: &str = "gen_ai.retrieval.documents";
    let Value::Array(items) = value else {
        let detail = format!("expected an array of documents, got {}", json_type(&value));
        return Err(EventError::field(FIELD, detail));
    };
    let mut documents = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let Value::Object(mut obj) = item else {
            let detail = format!("expected an object, got {}", json_type(&item));
            return Err(EventError::field(format!("{FIELD}[{i}]"), detail));
        };
        let id = match obj.remove("id") {
            Some(Value::String(id)) if !id.is_empty() => id,
            _ => {
                let detail = "expected a non-empty string";
                return Err(EventError::field(format!("{FIELD}[{i}].id"), detail));
            }
        };
        let score = match obj.remove("score") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => n.as_f64(),
            Some(_) => {
                let detail = "expected a number";
                return Err(EventError::field(format!("{FIELD}[{i}].score"), detail));
            }
        };
        documents.push(RetrievedDocument { id, score });
    }
    Ok(documents)
}

fn parse_time(value: Value) -> Result<i64> {
    match &value {
        Value::String(text) => parse_rfc3339_us(text, "time"),
        Value::Number(n) => n
            .as_i64()
            .and_then(|ms| ms.checked_mul(1000))
            .filter(|us| (0..=TIME_US_MAX).contains(us))
            .ok_or_else(|| {
                EventError::field(
                    "time",
                    format!("expected epoch milliseconds as an integer from 0 to year 9999, got {n}"),
                )
            }),
        other => Err(EventError::field(
            "time",
            format!("expected rfc 3339 text or epoch milliseconds, got {}", json_type(other)),
        )),
    }
}

pub(super) fn check_version(version: u64) -> Result<()> {
    if version == 0 {
        return Err(EventError::field("schema_version", "must be 1 or more"));
    }
    if version > u64::from(SCHEMA_VERSION) {
        return Err(EventError::UnsupportedVersion {
            version,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(())
}

pub(super) fn check_id(name: &str, id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(EventError::field(name, "must not be empty"));
    }
    if id.len() > ID_BYTES_MAX {
        let detail = format!("is {} bytes, more than the limit of {ID_BYTES_MAX}", id.len());
        return Err(EventError::field(name, detail));
    }
    Ok(())
}

/// W3C trace context ids: lowercase hex of a fixed length, not all zeros.
pub(super) fn check_hex_id(name: &str, id: &str, digits: usize) -> Result<()> {
    check_hex(name, id.to_owned(), digits)?;
    if id.bytes().all(|b| b == b'0') {
        return Err(EventError::field(name, "must not be all zeros"));
    }
    Ok(())
}

fn check_hex(name: &str, hex: String, digits: usize) -> Result<String> {
    let is_lower_hex = hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if hex.len() != digits || !is_lower_hex {
        let detail = format!("expected {digits} lowercase hex digits, got {hex:?}");
        return Err(EventError::field(name, detail));
    }
    Ok(hex)
}

fn as_string(name: &str, value: Value) -> Result<String> {
    match value {
        Value::String(s) => Ok(s),
        other => Err(EventError::field(
            name,
            format!("expected a string, got {}", json_type(&other)),
        )),
    }
}

fn as_u64(name: &str, value: &Value) -> Result<u64> {
    value.as_u64().ok_or_else(|| {
        let got = match value {
            Value::Number(n) => n.to_string(),
            other => json_type(other).to_owned(),
        };
        EventError::field(name, format!("expected an integer >= 0, got {got}"))
    })
}

fn enum_error(name: &str, expected: &str, got: &str) -> EventError {
    EventError::field(name, format!("expected {expected}, got {got:?}"))
}

pub(crate) fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
