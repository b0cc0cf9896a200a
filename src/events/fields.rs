//! The table of every JSON key of the schema: its type, the kinds that carry it and the
//! kinds that require it. Redaction and shredding rules are checked against it, and a
//! test checks the parser against it key by key.

use super::schema::EventKind;

/// The JSON type of a schema field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    /// A JSON string.
    String,
    /// A JSON integer >= 0.
    UnsignedInteger,
    /// A JSON number.
    Number,
    /// RFC 3339 text or integer epoch milliseconds.
    Time,
    /// An array of strings.
    StringList,
    /// An array of `{"id": string, "score": number?}`.
    Documents,
    /// Any JSON value (content: messages, arguments, results, reasons). Only these fields
    /// may be encrypted, and redaction rules may reach inside them.
    Any,
}

/// One key of the schema: its type, the kinds that carry it and the kinds that require it.
#[derive(Clone, Copy, Debug)]
pub struct FieldSpec {
    /// The JSON key.
    pub name: &'static str,
    /// Its type.
    pub field_type: FieldType,
    /// Kinds that carry it; empty means every kind.
    pub used_in: &'static [EventKind],
    /// Kinds that require it; [`EventKind::ALL`] for the common required fields.
    pub required_in: &'static [EventKind],
}

impl FieldSpec {
    /// Whether `kind` carries this field.
    pub fn is_used_in(&self, kind: EventKind) -> bool {
        self.used_in.is_empty() || self.used_in.contains(&kind)
    }
    /// Whether `kind` requires this field.
    pub fn is_required_in(&self, kind: EventKind) -> bool {
        self.required_in.contains(&kind)
    }
}

use EventKind as K;
use FieldType as T;

const fn spec(
    name: &'static str,
    field_type: FieldType,
    used_in: &'static [EventKind],
    required_in: &'static [EventKind],
) -> FieldSpec {
    FieldSpec {
        name,
        field_type,
        used_in,
        required_in,
    }
}

const ALL: &[EventKind] = &K::ALL;
const NONE: &[EventKind] = &[];
const TOOL_CALL_AND_RESULT: &[EventKind] = &[K::ToolCall, K::ToolResult];

static FIELDS: &[FieldSpec] = &[
    spec("schema_version", T::UnsignedInteger, NONE, ALL),
    spec("event_id", T::String, NONE, ALL),
    spec("kind", T::String, NONE, ALL),
    spec("time", T::Time, NONE, ALL),
    spec("trace_id", T::String, NONE, ALL),
    spec("span_id", T::String, NONE, ALL),
    spec("parent_span_id", T::String, NONE, NONE),
    spec("gen_ai.conversation.id", T::String, NONE, ALL),
    spec("gen_ai.agent.id", T::String, NONE, ALL),
    spec("actor.id", T::String, NONE, ALL),
    spec("actor.type", T::String, NONE, ALL),
    spec("subject.id", T::String, NONE, NONE),
    spec("gen_ai.operation.name", T::String, NONE, &[K::ModelCall]),
    // user_input, system_prompt
    spec(
        "gen_ai.input.messages",
        T::Any,
        &[K::UserInput, K::ModelCall],
        &[K::UserInput],
    ),
    spec("trailkeep.prompt.id", T::String, &[K::SystemPrompt], &[K::SystemPrompt]),
    spec("trailkeep.prompt.version", T::String, &[K::SystemPrompt], NONE),
    spec("trailkeep.prompt.sha256", T::String, &[K::SystemPrompt], NONE),
    spec(
        "gen_ai.system_instructions",
        T::Any,
        &[K::SystemPrompt, K::ModelCall],
        NONE,
    ),
    // model_call, model_output
    spec(
        "gen_ai.provider.name",
        T::String,
        &[K::ModelCall, K::ModelOutput],
        &[K::ModelCall, K::ModelOutput],
    ),
    spec("gen_ai.request.model", T::String, &[K::ModelCall], &[K::ModelCall]),
    spec("gen_ai.request.temperature", T::Number, &[K::ModelCall], NONE),
    spec("gen_ai.request.max_tokens", T::UnsignedInteger, &[K::ModelCall], NONE),
    spec("gen_ai.response.model", T::String, &[K::ModelOutput], &[K::ModelOutput]),
    spec("gen_ai.response.id", T::String, &[K::ModelOutput], NONE),
    spec("gen_ai.response.finish_reasons", T::StringList, &[K::ModelOutput], NONE),
    spec("gen_ai.usage.input_tokens", T::UnsignedInteger, &[K::ModelOutput], NONE),
    spec(
        "gen_ai.usage.output_tokens",
        T::UnsignedInteger,
        &[K::ModelOutput],
        NONE,
    ),
    spec("gen_ai.output.messages", T::Any, &[K::ModelOutput], NONE),
    // tool_call, tool_result
    spec(
        "gen_ai.tool.name",
        T::String,
        TOOL_CALL_AND_RESULT,
        TOOL_CALL_AND_RESULT,
    ),
    spec(
        "gen_ai.tool.call.id",
        T::String,
        &[K::ToolCall, K::ToolResult, K::PolicyCheck, K::Approval],
        TOOL_CALL_AND_RESULT,
    ),
    spec("gen_ai.tool.type", T::String, &[K::ToolCall], NONE),
    spec("gen_ai.tool.call.arguments", T::Any, &[K::ToolCall], NONE),
    spec("gen_ai.tool.call.result", T::Any, &[K::ToolResult], NONE),
    // retrieval
    spec("gen_ai.data_source.id", T::String, &[K::Retrieval], &[K::Retrieval]),
    spec("gen_ai.retrieval.query.text", T::Any, &[K::Retrieval], NONE),
    spec(
        "gen_ai.retrieval.documents",
        T::Documents,
        &[K::Retrieval],
        &[K::Retrieval],
    ),
    spec("gen_ai.retrieval.top_k", T::UnsignedInteger, &[K::Retrieval], NONE),
    // policy_check, approval
    spec("trailkeep.policy.id", T::String, &[K::PolicyCheck], &[K::PolicyCheck]),
    spec(
        "trailkeep.policy.decision",
        T::String,
        &[K::PolicyCheck],
        &[K::PolicyCheck],
    ),
    spec("trailkeep.policy.reason", T::Any, &[K::PolicyCheck], NONE),
    spec("trailkeep.approval.decision", T::String, &[K::Approval], &[K::Approval]),
    spec("trailkeep.approval.approver", T::String, &[K::Approval], &[K::Approval]),
    spec("trailkeep.approval.reason", T::Any, &[K::Approval], NONE),
    // final_action, error
    spec("trailkeep.action.name", T::String, &[K::FinalAction], &[K::FinalAction]),
    spec("trailkeep.action.arguments", T::Any, &[K::FinalAction], NONE),
    spec("trailkeep.action.outcome", T::String, &[K::FinalAction], NONE),
    spec("error.type", T::String, &[K::ToolResult, K::Error], &[K::Error]),
    spec("error.message", T::Any, &[K::Error], NONE),
];

/// Every key of the schema, common fields first.
pub fn fields() -> impl Iterator<Item = &'static FieldSpec> {
    FIELDS.iter()
}

/// The spec of the key `name`, if the schema knows it.
pub fn field_spec(name: &str) -> Option<&'static FieldSpec> {
    fields().find(|spec| spec.name == name)
}
