//! The typed, versioned audit event: one JSON object per event, flat dotted keys.
//!
//! Keys follow the OpenTelemetry GenAI semantic conventions where a name exists
//! (`gen_ai.request.model`, `gen_ai.tool.call.id`, ...); approvals, policy decisions,
//! prompts and actions, which OTel does not name, live under `trailkeep.`. The table
//! returned by [`fields`](super::fields) is the single list of every key, its type and the kinds that
//! require it; `docs/events.md` is its prose form. Parsing and writing live in `decode.rs`
//! and `encode.rs`.

use serde_json::Value;
use std::collections::BTreeMap;

/// The schema version this code writes. A reader accepts versions `1..=SCHEMA_VERSION`.
/// Adding an optional field or a kind does not bump it (old readers keep unknown fields
/// in [`Event::extra`]); changing the meaning or type of an existing field does.
pub const SCHEMA_VERSION: u32 = 1;

/// Longest event JSON accepted by [`Event::from_json_line`].
pub const EVENT_JSON_BYTES_MAX: usize = 4 << 20;

/// Longest id accepted in any identifier field (`event_id`, `actor.id`, ...).
pub const ID_BYTES_MAX: usize = 1024;

/// What an event records. The JSON value of `kind` is the snake_case name.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    /// A message from the user to the agent (`user_input`).
    UserInput,
    /// Which system prompt (id, version, hash) the agent runs with (`system_prompt`).
    SystemPrompt,
    /// A request to a model (`model_call`).
    ModelCall,
    /// A model's response (`model_output`).
    ModelOutput,
    /// The agent invokes a tool (`tool_call`).
    ToolCall,
    /// A tool returns (`tool_result`).
    ToolResult,
    /// Documents fetched from a data source (`retrieval`).
    Retrieval,
    /// A policy or guardrail check and its decision (`policy_check`).
    PolicyCheck,
    /// A human approves or rejects a step (`approval`).
    Approval,
    /// The action the agent finally takes in the world (`final_action`).
    FinalAction,
    /// Something failed (`error`).
    Error,
}

impl EventKind {
    /// Every kind, in the order of a typical turn.
    pub const ALL: [EventKind; 11] = [
        EventKind::UserInput,
        EventKind::SystemPrompt,
        EventKind::ModelCall,
        EventKind::ModelOutput,
        EventKind::ToolCall,
        EventKind::ToolResult,
        EventKind::Retrieval,
        EventKind::PolicyCheck,
        EventKind::Approval,
        EventKind::FinalAction,
        EventKind::Error,
    ];

    /// The JSON name, e.g. `tool_call`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::UserInput => "user_input",
            EventKind::SystemPrompt => "system_prompt",
            EventKind::ModelCall => "model_call",
            EventKind::ModelOutput => "model_output",
            EventKind::ToolCall => "tool_call",
            EventKind::ToolResult => "tool_result",
            EventKind::Retrieval => "retrieval",
            EventKind::PolicyCheck => "policy_check",
            EventKind::Approval => "approval",
            EventKind::FinalAction => "final_action",
            EventKind::Error => "error",
        }
    }

    /// The kind with this JSON name, if any.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who performed the step (`actor.type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ActorType {
    /// A person (`user`).
    User,
    /// An AI agent (`agent`).
    Agent,
    /// A non-AI service such as a policy engine (`service`).
    Service,
}

impl ActorType {
    /// The JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            ActorType::User => "user",
            ActorType::Agent => "agent",
            ActorType::Service => "service",
        }
    }
}

/// The identity that performed the step (`actor.id`, `actor.type`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Actor {
    /// `actor.id`.
    pub id: String,
    /// `actor.type`.
    pub actor_type: ActorType,
}

impl Actor {
    /// An actor of the given type.
    pub fn new(id: impl Into<String>, actor_type: ActorType) -> Self {
        Actor {
            id: id.into(),
            actor_type,
        }
    }
}

/// `gen_ai.operation.name`: the OTel well-known values, or any other name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum OperationName {
    /// `chat`
    Chat,
    /// `generate_content`
    GenerateContent,
    /// `text_completion`
    TextCompletion,
    /// `embeddings`
    Embeddings,
    /// `retrieval`
    Retrieval,
    /// `execute_tool`
    ExecuteTool,
    /// `invoke_agent`
    InvokeAgent,
    /// `create_agent`
    CreateAgent,
    /// `invoke_workflow`
    InvokeWorkflow,
    /// Any other non-empty name, kept as written.
    Other(String),
}

impl OperationName {
    const KNOWN: [OperationName; 9] = [
        OperationName::Chat,
        OperationName::GenerateContent,
        OperationName::TextCompletion,
        OperationName::Embeddings,
        OperationName::Retrieval,
        OperationName::ExecuteTool,
        OperationName::InvokeAgent,
        OperationName::CreateAgent,
        OperationName::InvokeWorkflow,
    ];

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        match self {
            OperationName::Chat => "chat",
            OperationName::GenerateContent => "generate_content",
            OperationName::TextCompletion => "text_completion",
            OperationName::Embeddings => "embeddings",
            OperationName::Retrieval => "retrieval",
            OperationName::ExecuteTool => "execute_tool",
            OperationName::InvokeAgent => "invoke_agent",
            OperationName::CreateAgent => "create_agent",
            OperationName::InvokeWorkflow => "invoke_workflow",
            OperationName::Other(name) => name,
        }
    }

    /// The well-known variant for `name`, else [`OperationName::Other`].
    pub fn from_name(name: &str) -> Self {
        Self::KNOWN
            .into_iter()
            .find(|known| known.as_str() == name)
            .unwrap_or_else(|| OperationName::Other(name.to_owned()))
    }
}

/// `trailkeep.policy.decision`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PolicyDecision {
    /// `allow`: the step may proceed.
    Allow,
    /// `deny`: the step must not happen.
    Deny,
    /// `flag`: the step may proceed but is marked for review.
    Flag,
}

/// `trailkeep.approval.decision`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ApprovalDecision {
    /// `approved`
    Approved,
    /// `rejected`
    Rejected,
}

/// `user_input`: the user's message(s).
#[derive(Clone, Debug, PartialEq)]
pub struct UserInput {
    /// `gen_ai.input.messages` (required): OTel message objects or any JSON.
    pub input_messages: Value,
}

/// `system_prompt`: a reference to the system prompt in force.
#[derive(Clone, Debug, PartialEq)]
pub struct SystemPrompt {
    /// `trailkeep.prompt.id` (required).
    pub prompt_id: String,
    /// `trailkeep.prompt.version`.
    pub prompt_version: Option<String>,
    /// `trailkeep.prompt.sha256`: lowercase hex SHA-256 of the prompt text.
    pub prompt_sha256: Option<String>,
    /// `gen_ai.system_instructions`: the text itself, when it is logged.
    pub system_instructions: Option<Value>,
}

/// `model_call`: a request to a model.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelCall {
    /// `gen_ai.provider.name` (required), e.g. `openai`, `anthropic`.
    pub provider_name: String,
    /// `gen_ai.request.model` (required).
    pub request_model: String,
    /// `gen_ai.input.messages`.
    pub input_messages: Option<Value>,
    /// `gen_ai.system_instructions`.
    pub system_instructions: Option<Value>,
    /// `gen_ai.request.temperature`.
    pub temperature: Option<f64>,
    /// `gen_ai.request.max_tokens`.
    pub max_tokens: Option<u64>,
}

/// `model_output`: a model's response.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelOutput {
    /// `gen_ai.provider.name` (required).
    pub provider_name: String,
    /// `gen_ai.response.model` (required).
    pub response_model: String,
    /// `gen_ai.response.id`.
    pub response_id: Option<String>,
    /// `gen_ai.response.finish_reasons`.
    pub finish_reasons: Option<Vec<String>>,
    /// `gen_ai.usage.input_tokens`.
    pub input_tokens: Option<u64>,
    /// `gen_ai.usage.output_tokens`.
    pub output_tokens: Option<u64>,
    /// `gen_ai.output.messages`.
    pub output_messages: Option<Value>,
}

/// `tool_call`: the agent invokes a tool.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolCall {
    /// `gen_ai.tool.name` (required).
    pub tool_name: String,
    /// `gen_ai.tool.call.id` (required): joins the call to its policy check, approval and
    /// result.
    pub call_id: String,
    /// `gen_ai.tool.type`: `function`, `extension` or `datastore`.
    pub tool_type: Option<String>,
    /// `gen_ai.tool.call.arguments`.
    pub arguments: Option<Value>,
}

/// `tool_result`: a tool returns.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolResult {
    /// `gen_ai.tool.name` (required).
    pub tool_name: String,
    /// `gen_ai.tool.call.id` (required).
    pub call_id: String,
    /// `gen_ai.tool.call.result`.
    pub result: Option<Value>,
    /// `error.type`: present when the tool failed.
    pub error_type: Option<String>,
}

/// One retrieved document: `{"id": "...", "score": 0.87}`.
#[derive(Clone, Debug, PartialEq)]
pub struct RetrievedDocument {
    /// Document id in the data source.
    pub id: String,
    /// Relevance score, when the retriever gives one.
    pub score: Option<f64>,
}

/// `retrieval`: documents fetched from a data source.
#[derive(Clone, Debug, PartialEq)]
pub struct Retrieval {
    /// `gen_ai.data_source.id` (required).
    pub data_source_id: String,
    /// `gen_ai.retrieval.query.text`.
    pub query_text: Option<Value>,
    /// `gen_ai.retrieval.documents` (required, may be empty).
    pub documents: Vec<RetrievedDocument>,
    /// `gen_ai.retrieval.top_k`.
    pub top_k: Option<u64>,
}

/// `policy_check`: a policy or guardrail evaluated a step.
#[derive(Clone, Debug, PartialEq)]
pub struct PolicyCheck {
    /// `trailkeep.policy.id` (required).
    pub policy_id: String,
    /// `trailkeep.policy.decision` (required).
    pub decision: PolicyDecision,
    /// `trailkeep.policy.reason`.
    pub reason: Option<Value>,
    /// `gen_ai.tool.call.id`: the tool call checked, if the check is about one.
    pub tool_call_id: Option<String>,
}

/// `approval`: a human decided on a step.
#[derive(Clone, Debug, PartialEq)]
pub struct Approval {
    /// `trailkeep.approval.decision` (required).
    pub decision: ApprovalDecision,
    /// `trailkeep.approval.approver` (required): who decided.
    pub approver: String,
    /// `trailkeep.approval.reason`.
    pub reason: Option<Value>,
    /// `gen_ai.tool.call.id`: the tool call decided on, if any.
    pub tool_call_id: Option<String>,
}

/// `final_action`: what the agent finally did.
#[derive(Clone, Debug, PartialEq)]
pub struct FinalAction {
    /// `trailkeep.action.name` (required), e.g. `reply`, `issue_refund`.
    pub action_name: String,
    /// `trailkeep.action.arguments`.
    pub arguments: Option<Value>,
    /// `trailkeep.action.outcome`, e.g. `succeeded`.
    pub outcome: Option<String>,
}

/// `error`: something failed.
#[derive(Clone, Debug, PartialEq)]
pub struct ErrorEvent {
    /// `error.type` (required): a low-cardinality class such as `timeout`.
    pub error_type: String,
    /// `error.message`.
    pub message: Option<Value>,
}

/// The kind-specific part of an event.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq)]
pub enum EventBody {
    /// See [`UserInput`].
    UserInput(UserInput),
    /// See [`SystemPrompt`].
    SystemPrompt(SystemPrompt),
    /// See [`ModelCall`].
    ModelCall(ModelCall),
    /// See [`ModelOutput`].
    ModelOutput(ModelOutput),
    /// See [`ToolCall`].
    ToolCall(ToolCall),
    /// See [`ToolResult`].
    ToolResult(ToolResult),
    /// See [`Retrieval`].
    Retrieval(Retrieval),
    /// See [`PolicyCheck`].
    PolicyCheck(PolicyCheck),
    /// See [`Approval`].
    Approval(Approval),
    /// See [`FinalAction`].
    FinalAction(FinalAction),
    /// See [`ErrorEvent`].
    Error(ErrorEvent),
}

impl EventBody {
    /// The kind this body belongs to.
    pub fn kind(&self) -> EventKind {
        match self {
            EventBody::UserInput(_) => EventKind::UserInput,
            EventBody::SystemPrompt(_) => EventKind::SystemPrompt,
            EventBody::ModelCall(_) => EventKind::ModelCall,
            EventBody::ModelOutput(_) => EventKind::ModelOutput,
            EventBody::ToolCall(_) => EventKind::ToolCall,
            EventBody::ToolResult(_) => EventKind::ToolResult,
            EventBody::Retrieval(_) => EventKind::Retrieval,
            EventBody::PolicyCheck(_) => EventKind::PolicyCheck,
            EventBody::Approval(_) => EventKind::Approval,
            EventBody::FinalAction(_) => EventKind::FinalAction,
            EventBody::Error(_) => EventKind::Error,
        }
    }
}

/// One audit event. Fields map one-to-one to JSON keys (see [`fields`](super::fields)); `extra` keeps
/// every key this version does not know, so newer writers' fields survive a round trip.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// `schema_version`.
    pub schema_version: u32,
    /// `event_id`: unique per event.
    pub event_id: String,
    /// `time`: when the step happened, microseconds since the Unix epoch. Written as RFC
    /// 3339; read from RFC 3339 text or integer epoch milliseconds.
    pub time_us: i64,
    /// `trace_id`: W3C trace id, 32 lowercase hex digits. One trace is one agent turn.
    pub trace_id: String,
    /// `span_id`: 16 lowercase hex digits.
    pub span_id: String,
    /// `parent_span_id`: 16 lowercase hex digits.
    pub parent_span_id: Option<String>,
    /// `gen_ai.conversation.id`: the session or thread.
    pub conversation_id: String,
    /// `gen_ai.agent.id`: the agent on whose behalf the step ran.
    pub agent_id: String,
    /// `actor.id` and `actor.type`.
    pub actor: Actor,
    /// `subject.id`: the person the data is about; the unit of erasure.
    pub subject_id: Option<String>,
    /// `gen_ai.operation.name`.
    pub operation_name: Option<OperationName>,
    /// The kind-specific fields.
    pub body: EventBody,
    /// Keys this version does not know, kept verbatim.
    pub extra: BTreeMap<String, Value>,
}

impl Event {
    /// The event's kind.
    pub fn kind(&self) -> EventKind {
        self.body.kind()
    }
    /// `trace_id`.
    pub fn trace_id(&self) -> &str {
        &self.trace_id
    }
    /// `gen_ai.conversation.id`.
    pub fn conversation_id(&self) -> &str {
        &self.conversation_id
    }
    /// `gen_ai.agent.id`.
    pub fn agent_id(&self) -> &str {
        &self.agent_id
    }
    /// `subject.id`.
    pub fn subject_id(&self) -> Option<&str> {
        self.subject_id.as_deref()
    }
    /// `time` in microseconds since the Unix epoch.
    pub fn time_us(&self) -> i64 {
        self.time_us
    }
    /// `gen_ai.tool.call.id`, for the kinds that carry one.
    pub fn tool_call_id(&self) -> Option<&str> {
        match &self.body {
            EventBody::ToolCall(call) => Some(&call.call_id),
            EventBody::ToolResult(result) => Some(&result.call_id),
            EventBody::PolicyCheck(check) => check.tool_call_id.as_deref(),
            EventBody::Approval(approval) => approval.tool_call_id.as_deref(),
            _ => None,
        }
    }
}
