//! [`Event`] -> JSON, after validating what the Rust types cannot express.

use super::decode::{check_hex_id, check_id, check_version};
use super::fields::field_spec;
use super::schema::*;
use super::time::{format_rfc3339_us, TIME_US_MAX};
use super::{canonical_json, EventError, Result};
use serde_json::{Map, Value};

impl Event {
    /// Writes the event as one line of canonical JSON: compact, keys sorted by byte order,
    /// no newline.
    ///
    /// # Errors
    /// [`EventError::InvalidField`] when the event would not read back: an empty or
    /// malformed id, a time out of range, or an `extra` key that is a schema field.
    pub fn to_json(&self) -> Result<String> {
        // Canonical (sorted keys): the bytes do not depend on serde_json's `preserve_order`
        // feature, so the same event always hashes the same.
        Ok(canonical_json(&Value::Object(self.to_map()?)))
    }

    /// The event as a JSON object, ready for redaction and encryption.
    ///
    /// # Errors
    /// As [`Event::to_json`].
    pub fn to_value(&self) -> Result<Value> {
        Ok(Value::Object(self.to_map()?))
    }

    /// Checks what the types cannot: id forms, lengths, time range, `extra` keys.
    ///
    /// # Errors
    /// [`EventError::InvalidField`] naming the field.
    pub fn validate(&self) -> Result<()> {
        check_version(u64::from(self.schema_version))?;
        check_id("event_id", &self.event_id)?;
        check_hex_id("trace_id", &self.trace_id, 32)?;
        check_hex_id("span_id", &self.span_id, 16)?;
        if let Some(parent) = &self.parent_span_id {
            check_hex_id("parent_span_id", parent, 16)?;
        }
        if !(0..=TIME_US_MAX).contains(&self.time_us) {
            return Err(EventError::field("time", "out of range 1970 to 9999"));
        }
        check_id("gen_ai.conversation.id", &self.conversation_id)?;
        check_id("gen_ai.agent.id", &self.agent_id)?;
        check_id("actor.id", &self.actor.id)?;
        if let Some(subject) = &self.subject_id {
            check_id("subject.id", subject)?;
        }
        if let Some(op) = &self.operation_name {
            check_id("gen_ai.operation.name", op.as_str())?;
        }
        let kind = self.kind();
        for key in self.extra.keys() {
            if field_spec(key).is_some_and(|spec| spec.is_used_in(kind)) {
                return Err(EventError::field(
                    key.as_str(),
                    format!("is a schema field of kind {kind}; it cannot be an extra field"),
                ));
            }
        }
        Ok(())
    }

    fn to_map(&self) -> Result<Map<String, Value>> {
        self.validate()?;
        let mut map: Map<String, Value> = self.extra.clone().into_iter().collect();
        let mut put = |key: &str, value: Value| {
            map.insert(key.to_owned(), value);
        };
        put("schema_version", self.schema_version.into());
        put("event_id", self.event_id.as_str().into());
        put("kind", self.kind().as_str().into());
        put("time", format_rfc3339_us(self.time_us).into());
        put("trace_id", self.trace_id.as_str().into());
        put("span_id", self.span_id.as_str().into());
        put_opt(&mut put, "parent_span_id", self.parent_span_id.clone());
        put("gen_ai.conversation.id", self.conversation_id.as_str().into());
        put("gen_ai.agent.id", self.agent_id.as_str().into());
        put("actor.id", self.actor.id.as_str().into());
        put("actor.type", self.actor.actor_type.as_str().into());
        put_opt(&mut put, "subject.id", self.subject_id.clone());
        let op = self.operation_name.as_ref().map(|op| op.as_str().to_owned());
        put_opt(&mut put, "gen_ai.operation.name", op);
        write_body(&self.body, &mut put);
        Ok(map)
    }
}

impl serde::Serialize for Event {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        self.to_map().map_err(S::Error::custom)?.serialize(serializer)
    }
}

impl<'de> serde::Deserialize<'de> for Event {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let value = Value::deserialize(deserializer)?;
        Event::from_value(value).map_err(D::Error::custom)
    }
}

fn put_opt<T: Into<Value>>(put: &mut impl FnMut(&str, Value), key: &str, value: Option<T>) {
    if let Some(value) = value {
        put(key, value.into());
    }
}

fn write_body(body: &EventBody, put: &mut impl FnMut(&str, Value)) {
    match body.clone() {
        EventBody::UserInput(b) => put("gen_ai.input.messages", b.input_messages),
        EventBody::SystemPrompt(b) => {
            put("trailkeep.prompt.id", b.prompt_id.into());
            put_opt(put, "trailkeep.prompt.version", b.prompt_version);
            put_opt(put, "trailkeep.prompt.sha256", b.prompt_sha256);
            put_opt(put, "gen_ai.system_instructions", b.system_instructions);
        }
        EventBody::ModelCall(b) => {
            put("gen_ai.provider.name", b.provider_name.into());
            put("gen_ai.request.model", b.request_model.into());
            put_opt(put, "gen_ai.input.messages", b.input_messages);
            put_opt(put, "gen_ai.system_instructions", b.system_instructions);
            put_opt(put, "gen_ai.request.temperature", b.temperature);
            put_opt(put, "gen_ai.request.max_tokens", b.max_tokens);
        }
        EventBody::ModelOutput(b) => {
            put("gen_ai.provider.name", b.provider_name.into());
            put("gen_ai.response.model", b.response_model.into());
            put_opt(put, "gen_ai.response.id", b.response_id);
            put_opt(put, "gen_ai.response.finish_reasons", b.finish_reasons);
            put_opt(put, "gen_ai.usage.input_tokens", b.input_tokens);
            put_opt(put, "gen_ai.usage.output_tokens", b.output_tokens);
            put_opt(put, "gen_ai.output.messages", b.output_messages);
        }
        EventBody::ToolCall(b) => {
            put("gen_ai.tool.name", b.tool_name.into());
            put("gen_ai.tool.call.id", b.call_id.into());
            put_opt(put, "gen_ai.tool.type", b.tool_type);
            put_opt(put, "gen_ai.tool.call.arguments", b.arguments);
        }
        EventBody::ToolResult(b) => {
            put("gen_ai.tool.name", b.tool_name.into());
            put("gen_ai.tool.call.id", b.call_id.into());
            put_opt(put, "gen_ai.tool.call.result", b.result);
            put_opt(put, "error.type", b.error_type);
        }
        EventBody::Retrieval(b) => {
            put("gen_ai.data_source.id", b.data_source_id.into());
            put_opt(put, "gen_ai.retrieval.query.text", b.query_text);
            let docs = b.documents.into_iter().map(|doc| {
                let mut obj = Map::new();
                obj.insert("id".into(), doc.id.into());
                if let Some(score) = doc.score {
                    obj.insert("score".into(), score.into());
                }
                Value::Object(obj)
            });
            put("gen_ai.retrieval.documents", Value::Array(docs.collect()));
            put_opt(put, "gen_ai.retrieval.top_k", b.top_k);
        }
        EventBody::PolicyCheck(b) => {
            let decision = match b.decision {
                PolicyDecision::Allow => "allow",
                PolicyDecision::Deny => "deny",
                PolicyDecision::Flag => "flag",
            };
            put("trailkeep.policy.id", b.policy_id.into());
            put("trailkeep.policy.decision", decision.into());
            put_opt(put, "trailkeep.policy.reason", b.reason);
            put_opt(put, "gen_ai.tool.call.id", b.tool_call_id);
        }
        EventBody::Approval(b) => {
            let decision = match b.decision {
                ApprovalDecision::Approved => "approved",
                ApprovalDecision::Rejected => "rejected",
            };
            put("trailkeep.approval.decision", decision.into());
            put("trailkeep.approval.approver", b.approver.into());
            put_opt(put, "trailkeep.approval.reason", b.reason);
            put_opt(put, "gen_ai.tool.call.id", b.tool_call_id);
        }
        EventBody::FinalAction(b) => {
            put("trailkeep.action.name", b.action_name.into());
            put_opt(put, "trailkeep.action.arguments", b.arguments);
            put_opt(put, "trailkeep.action.outcome", b.outcome);
        }
        EventBody::Error(b) => {
            put("error.type", b.error_type.into());
            put_opt(put, "error.message", b.message);
        }
    }
}
