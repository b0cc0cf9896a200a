//! The seeded trail generator. Its random numbers come from SplitMix64 written here, not
//! from `rand`, so a seed gives the same trail on every platform and every version of
//! every dependency.

use super::catalog::{Rng, ERROR_TYPES, MODELS, POLICIES, ROLES};
use crate::events::schema::*;
use serde_json::json;
use sha2::{Digest, Sha256};

/// 2025-01-01T00:00:00Z, the default start of a generated trail.
pub const DEFAULT_START_TIME_US: i64 = 1_735_689_600_000_000;

/// Builds realistic multi-agent audit trails, deterministically from a seed.
///
/// A trail is a set of sessions (conversations), started in bursts; each session has one
/// or more turns, and each turn is one trace: user input → (system prompt) → optional
/// retrieval, sometimes by a second agent → model call and output → tool calls, each with
/// a policy check (some deny or flag) and, for sensitive tools, a human approval or
/// rejection → a tool result unless denied or rejected → a final model answer and final
/// action, unless a step was rejected or the turn failed with an error. Content fields
/// (messages, arguments, results) are 100 B to 2 KB, about 256 B on average.
///
/// Invariants every generated trail keeps (checked by
/// [`check_trail`](super::check_trail)): events are in non-decreasing time order, and
/// within a trace no final action follows a rejection, no tool result follows a denial or
/// rejection of its call, and every tool result follows its call.
#[derive(Clone, Debug)]
pub struct TrailGenerator {
    seed: u64,
    agents: usize,
    sessions: usize,
    turns_max: usize,
    subjects: usize,
    start_time_us: i64,
    deny_percent: u64,
    reject_percent: u64,
    error_percent: u64,
}

impl TrailGenerator {
    /// A generator for `seed` with 3 agents, 10 sessions of 1 to 3 turns, 20 subjects,
    /// starting at [`DEFAULT_START_TIME_US`].
    pub fn new(seed: u64) -> Self {
        TrailGenerator {
            seed,
            agents: 3,
            sessions: 10,
            turns_max: 3,
            subjects: 20,
            start_time_us: DEFAULT_START_TIME_US,
            deny_percent: 8,
            reject_percent: 25,
            error_percent: 5,
        }
    }

    /// Number of agents (default 3, at least 1).
    pub fn agents(mut self, n: usize) -> Self {
        self.agents = n.max(1);
        self
    }

    /// Number of sessions (default 10).
    pub fn sessions(mut self, n: usize) -> Self {
        self.sessions = n;
        self
    }

    /// Most turns (traces) per session (default 3, at least 1).
    pub fn turns_per_session(mut self, n: usize) -> Self {
        self.turns_max = n.max(1);
        self
    }

    /// Number of distinct data subjects (users) (default 20, at least 1).
    pub fn subjects(mut self, n: usize) -> Self {
        self.subjects = n.max(1);
        self
    }

    /// Time of the first session (default [`DEFAULT_START_TIME_US`]).
    pub fn start_time_us(mut self, time_us: i64) -> Self {
        self.start_time_us = time_us;
        self
    }

    /// Percent of tool calls a policy denies (default 8; as many again are flagged).
    pub fn deny_percent(mut self, percent: u64) -> Self {
        self.deny_percent = percent.min(50);
        self
    }

    /// Percent of sensitive tool calls a human rejects (default 25).
    pub fn reject_percent(mut self, percent: u64) -> Self {
        self.reject_percent = percent.min(100);
        self
    }

    /// Percent of tool calls and of turns that fail with an error (default 5).
    pub fn error_percent(mut self, percent: u64) -> Self {
        self.error_percent = percent.min(100);
        self
    }

    /// The whole trail, in non-decreasing time order.
    pub fn generate(&self) -> Vec<Event> {
        let mut state = State {
            rng: Rng(self.seed),
            config: self.clone(),
            events: Vec::new(),
            sequence: 0,
        };
        let agents: Vec<Agent> = (0..self.agents).map(|i| Agent::new(i, &mut state.rng)).collect();
        let mut burst_time_us = self.start_time_us;
        let mut started = 0;
        while started < self.sessions {
            let burst = (state.rng.range(1, 6) as usize).min(self.sessions - started);
            for _ in 0..burst {
                let session_start_us = burst_time_us + state.rng.range(0, 500_000) as i64;
                state.session(&agents, session_start_us);
            }
            started += burst;
            burst_time_us += state.rng.range(2_000_000, 120_000_000) as i64;
        }
        let mut events = state.events;
        // Stable: events of one trace have strictly increasing times already.
        events.sort_by_key(|(time_us, sequence, _)| (*time_us, *sequence));
        events.into_iter().map(|(_, _, event)| event).collect()
    }
}

impl IntoIterator for TrailGenerator {
    type Item = Event;
    type IntoIter = std::vec::IntoIter<Event>;
    fn into_iter(self) -> Self::IntoIter {
        self.generate().into_iter()
    }
}

struct Agent {
    id: String,
    role: usize,
    provider: &'static str,
    model: &'static str,
}

impl Agent {
    fn new(index: usize, rng: &mut Rng) -> Agent {
        let role = index % ROLES.len();
        let (provider, model) = *rng.pick(&MODELS);
        Agent {
            id: format!("agent-{}-{index:02}", ROLES[role].0),
            role,
            provider,
            model,
        }
    }
}

struct State {
    rng: Rng,
    config: TrailGenerator,
    events: Vec<(i64, u64, Event)>,
    sequence: u64,
}

impl State {
    fn session(&mut self, agents: &[Agent], start_us: i64) {
        let agent = self.rng.pick(agents);
        let helper = (agents.len() > 1).then(|| {
            let offset = self.rng.range(1, agents.len() as u64 - 1) as usize;
            &agents[(agents.iter().position(|a| a.id == agent.id).unwrap_or(0) + offset) % agents.len()]
        });
        let subject = format!("user-{:04}", self.rng.range(0, self.config.subjects as u64 - 1));
        let conversation = format!("conv-{}", self.rng.hex(12));
        let turns = self.rng.range(1, self.config.turns_max as u64);
        let mut time_us = start_us;
        for turn in 0..turns {
            let mut trace = Turn {
                state: self,
                trace_id: String::new(),
                root_span: String::new(),
                conversation: &conversation,
                subject: &subject,
                agent,
                time_us,
            };
            trace.trace_id = trace.state.rng.hex(32);
            trace.root_span = trace.state.rng.hex(16);
            trace.run(helper, turn == 0);
            let end_us = trace.time_us;
            time_us = end_us + self.rng.range(5_000_000, 180_000_000) as i64;
        }
    }
}

/// One turn of a session: one trace.
struct Turn<'a> {
    state: &'a mut State,
    trace_id: String,
    root_span: String,
    conversation: &'a str,
    subject: &'a str,
    agent: &'a Agent,
    time_us: i64,
}

impl Turn<'_> {
    fn run(&mut self, helper: Option<&Agent>, first_turn: bool) {
        let root = self.root_span.clone();
        let user = Actor::new(self.subject, ActorType::User);
        let bytes = self.rng().content_bytes();
        let message = self.rng().text(bytes);
        let input = json!([{"role": "user", "parts": [{"type": "text", "content": message}]}]);
        self.emit(
            &root,
            None,
            user,
            Some(OperationName::InvokeAgent),
            EventBody::UserInput(UserInput { input_messages: input }),
        );
        if first_turn {
            self.system_prompt(&root);
        }
        if self.rng().percent(60) {
            let delegate = self.rng().percent(40);
            let by = helper.filter(|_| delegate).unwrap_or(self.agent);
            self.retrieval(by);
        }
        let tool_calls = *self.rng().pick(&[0u64, 1, 1, 1, 2, 2, 3]);
        self.model_turn(tool_calls > 0);
        let mut rejected = false;
        for _ in 0..tool_calls {
            if !self.tool_call() {
                rejected = true;
                break;
            }
        }
        let agent = Actor::new(&self.agent.id, ActorType::Agent);
        if !rejected && self.state.rng.percent(self.state.config.error_percent) {
            let error_type = self.rng().pick(&ERROR_TYPES).to_string();
            let message = json!(format!("model call failed: {error_type}"));
            self.advance(100, 30_000);
            self.emit(
                &root,
                None,
                agent,
                None,
                EventBody::Error(ErrorEvent {
                    error_type,
                    message: Some(message),
                }),
            );
            return;
        }
        self.model_turn(false);
        if rejected {
            return; // a rejected turn ends with the model's explanation, never an action
        }
        self.advance(5, 200);
        let bytes = self.rng().content_bytes() / 2;
        let arguments = json!({"channel": "chat", "message": self.rng().text(bytes)});
        self.emit(
            &root,
            None,
            agent,
            None,
            EventBody::FinalAction(FinalAction {
                action_name: "reply".into(),
                arguments: Some(arguments),
                outcome: Some("succeeded".into()),
            }),
        );
    }

    fn rng(&mut self) -> &mut Rng {
        &mut self.state.rng
    }

    fn advance(&mut self, lo_ms: u64, hi_ms: u64) {
        self.time_us += self.state.rng.range(lo_ms * 1000, hi_ms * 1000) as i64;
    }

    fn emit(&mut self, span: &str, parent: Option<&str>, actor: Actor, op: Option<OperationName>, body: EventBody) {
        let agent: &Agent = self.agent;
        self.emit_as(&agent.id, span, parent, actor, op, body);
    }

    #[allow(clippy::too_many_arguments)]
    fn emit_as(
        &mut self,
        agent_id: &str,
        span: &str,
        parent: Option<&str>,
        actor: Actor,
        op: Option<OperationName>,
        body: EventBody,
    ) {
        self.time_us += 1 + self.rng().range(0, 999) as i64;
        let sequence = self.state.sequence;
        self.state.sequence += 1;
        let suffix = self.rng().hex(6);
        let event = Event {
            schema_version: SCHEMA_VERSION,
            event_id: format!("evt-{sequence:08}-{suffix}"),
            time_us: self.time_us,
            trace_id: self.trace_id.clone(),
            span_id: span.to_owned(),
            parent_span_id: parent.map(str::to_owned),
            conversation_id: self.conversation.to_owned(),
            agent_id: agent_id.to_owned(),
            actor,
            subject_id: Some(self.subject.to_owned()),
            operation_name: op,
            body,
            extra: Default::default(),
        };
        self.state.events.push((self.time_us, sequence, event));
    }

    fn system_prompt(&mut self, root: &str) {
        let role = ROLES[self.agent.role].0;
        let text = format!("You are the {role} agent. Follow company policy. Never reveal secrets.");
        let sha = Sha256::digest(text.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let agent = Actor::new(&self.agent.id, ActorType::Agent);
        let version = self.rng().range(1, 9);
        self.emit(
            root,
            None,
            agent,
            None,
            EventBody::SystemPrompt(SystemPrompt {
                prompt_id: format!("{role}-system"),
                prompt_version: Some(format!("v{version}")),
                prompt_sha256: Some(sha),
                system_instructions: Some(json!(text)),
            }),
        );
    }

    fn retrieval(&mut self, by: &Agent) {
        let span = self.rng().hex(16);
        let root = self.root_span.clone();
        let count = self.rng().range(3, 6);
        let mut score = 1000 - self.rng().range(20, 200);
        let mut documents = Vec::new();
        for _ in 0..count {
            documents.push(RetrievedDocument {
                id: format!("doc-{}", self.rng().hex(8)),
                score: Some(score as f64 / 1000.0),
            });
            score -= self.rng().range(10, 150).min(score);
        }
        let bytes = self.rng().range(20, 120) as usize;
        let query = self.rng().text(bytes);
        self.advance(15, 400);
        let actor = Actor::new(&by.id, ActorType::Agent);
        self.emit_as(
            &by.id,
            &span,
            Some(&root),
            actor,
            Some(OperationName::Retrieval),
            EventBody::Retrieval(Retrieval {
                data_source_id: format!("kb-{}", ROLES[by.role].0),
                query_text: Some(json!(query)),
                documents,
                top_k: Some(count),
            }),
        );
    }

    fn model_turn(&mut self, wants_tools: bool) {
        let span = self.rng().hex(16);
        let root = self.root_span.clone();
        let agent = Actor::new(&self.agent.id, ActorType::Agent);
        let bytes = self.rng().content_bytes();
        let prompt = self.rng().text(bytes);
        let temperature = *self.rng().pick(&[0.0, 0.2, 0.7]);
        self.emit(
            &span,
            Some(&root),
            agent.clone(),
            Some(OperationName::Chat),
            EventBody::ModelCall(ModelCall {
                provider_name: self.agent.provider.into(),
                request_model: self.agent.model.into(),
                input_messages: Some(json!([{"role": "user", "parts": [{"type": "text", "content": prompt}]}])),
                system_instructions: None,
                temperature: Some(temperature),
                max_tokens: Some(1024),
            }),
        );
        self.advance(300, 4000);
        let bytes = self.rng().content_bytes();
        let answer = self.rng().text(bytes);
        let finish = if wants_tools { "tool_calls" } else { "stop" };
        let response_id = format!("resp-{}", self.rng().hex(12));
        let output_tokens = (bytes / 4) as u64 + self.rng().range(0, 20);
        self.emit(&span, Some(&root), agent, Some(OperationName::Chat), EventBody::ModelOutput(ModelOutput {
            provider_name: self.agent.provider.into(),
            response_model: self.agent.model.into(),
            response_id: Some(response_id),
            finish_reasons: Some(vec![finish.into()]),
            input_tokens: Some(prompt.len() as u64 / 4 + 150),
            output_tokens: Some(output_tokens),
            output_messages: Some(json!([{"role": "assistant", "parts": [{"type": "text", "content": answer}], "finish_reason": finish}])),
        }));
    }

    /// One tool call with its policy check, approval and result. Returns false when a
    /// human rejected it (the turn must then end without an action).
    fn tool_call(&mut self) -> bool {
        let role = self.agent.role;
        let tool = self.rng().pick(&ROLES[role].1);
        let span = self.rng().hex(16);
        let root = self.root_span.clone();
        let call_id = format!("call_{}", self.rng().hex(16));
        let agent = Actor::new(&self.agent.id, ActorType::Agent);
        let bytes = self.rng().range(30, 200) as usize;
        let arguments = json!({"email": format!("{}@example.com", self.subject), "note": self.rng().text(bytes)});
        self.advance(5, 50);
        self.emit(
            &span,
            Some(&root),
            agent.clone(),
            Some(OperationName::ExecuteTool),
            EventBody::ToolCall(ToolCall {
                tool_name: tool.name.into(),
                call_id: call_id.clone(),
                tool_type: Some(tool.tool_type.into()),
                arguments: Some(arguments),
            }),
        );
        let deny = self.state.config.deny_percent;
        let roll = self.rng().range(0, 99);
        let decision = if roll < deny {
            PolicyDecision::Deny
        } else if roll < 2 * deny {
            PolicyDecision::Flag
        } else {
            PolicyDecision::Allow
        };
        let reason = (decision != PolicyDecision::Allow)
            .then(|| json!(format!("{} matched: {}", tool.name, self.state.rng.text(40))));
        let check_span = self.rng().hex(16);
        let policy_id = self.rng().pick(&POLICIES).to_string();
        self.advance(1, 30);
        self.emit(
            &check_span,
            Some(&span),
            Actor::new("policy-engine", ActorType::Service),
            None,
            EventBody::PolicyCheck(PolicyCheck {
                policy_id,
                decision,
                reason,
                tool_call_id: Some(call_id.clone()),
            }),
        );
        if decision == PolicyDecision::Deny {
            return true; // the call does not run; the agent carries on without it
        }
        if tool.sensitive {
            let approver = format!("reviewer-{}", self.rng().range(1, 5));
            let rejected = self.state.rng.percent(self.state.config.reject_percent);
            let decision = if rejected {
                ApprovalDecision::Rejected
            } else {
                ApprovalDecision::Approved
            };
            let reason = rejected.then(|| json!("not justified by the conversation"));
            self.advance(5_000, 600_000);
            self.emit(
                &span,
                Some(&root),
                Actor::new(approver.clone(), ActorType::User),
                None,
                EventBody::Approval(Approval {
                    decision,
                    approver,
                    reason,
                    tool_call_id: Some(call_id.clone()),
                }),
            );
            if rejected {
                return false;
            }
        }
        self.advance(20, 1500);
        let failed = self.state.rng.percent(self.state.config.error_percent);
        let bytes = self.rng().content_bytes();
        let result = if failed {
            json!({"status": "error"})
        } else {
            json!({"status": "ok", "data": self.rng().text(bytes)})
        };
        let error_type = failed.then(|| "timeout".to_owned());
        self.emit(
            &span,
            Some(&root),
            agent,
            Some(OperationName::ExecuteTool),
            EventBody::ToolResult(ToolResult {
                tool_name: tool.name.into(),
                call_id,
                result: Some(result),
                error_type,
            }),
        );
        true
    }
}
