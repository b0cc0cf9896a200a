//! Assertion helpers over a slice of events, for users' unit tests.

use crate::events::schema::{ApprovalDecision, Event, EventBody, EventKind, PolicyDecision};
use crate::events::EventError;
use std::collections::HashSet;

/// Trace ids in order of first appearance, each once.
pub fn trace_ids(events: &[Event]) -> Vec<&str> {
    let mut seen = HashSet::new();
    events
        .iter()
        .map(Event::trace_id)
        .filter(|id| seen.insert(*id))
        .collect()
}

/// The first trace (in order of first appearance) whose events satisfy `predicate`.
pub fn find_trace(events: &[Event], mut predicate: impl FnMut(&[&Event]) -> bool) -> Option<&str> {
    trace_ids(events)
        .into_iter()
        .find(|id| predicate(&trace_events(events, id)))
}

/// Checks the invariants of a well-formed trail: the slice is in non-decreasing time
/// order, and within each trace no final action follows a rejected approval, and every
/// tool result follows its tool call, which was neither denied by a policy nor rejected
/// by a person.
///
/// # Errors
/// [`EventError::TrailViolation`] naming the first trace that breaks one, and how.
pub fn check_trail(events: &[Event]) -> Result<(), EventError> {
    for pair in events.windows(2) {
        if pair[1].time_us < pair[0].time_us {
            return Err(EventError::TrailViolation {
                trace_id: pair[1].trace_id.clone(),
                detail: format!(
                    "event {} at {} us comes after event {} at {} us",
                    pair[1].event_id, pair[1].time_us, pair[0].event_id, pair[0].time_us
                ),
            });
        }
    }
    for id in trace_ids(events) {
        if let Some(detail) = trace_violation(&trace_events(events, id)) {
            return Err(EventError::TrailViolation {
                trace_id: id.to_owned(),
                detail,
            });
        }
    }
    Ok(())
}

/// Starts assertions about the events of one trace.
///
/// # Panics
/// If no event has this trace id.
#[track_caller]
pub fn assert_trace<'a>(events: &'a [Event], trace_id: &str) -> TraceAssert<'a> {
    let trace = trace_events(events, trace_id);
    assert!(
        !trace.is_empty(),
        "trace {trace_id}: no events with this trace id among {} events",
        events.len()
    );
    TraceAssert {
        trace_id: trace_id.to_owned(),
        events: trace,
    }
}

/// Assertions about one trace; each method panics with a message naming the trace and
/// listing its events when the assertion fails, and otherwise returns `self` for chaining.
#[derive(Debug)]
pub struct TraceAssert<'a> {
    trace_id: String,
    events: Vec<&'a Event>,
}

impl<'a> TraceAssert<'a> {
    /// The trace's events, in slice order.
    pub fn events(&self) -> &[&'a Event] {
        &self.events
    }

    /// How many events of `kind` the trace has.
    pub fn count(&self, kind: EventKind) -> usize {
        self.events.iter().filter(|e| e.kind() == kind).count()
    }

    /// Checks this trace's invariants (see [`check_trail`]) without panicking.
    ///
    /// # Errors
    /// [`EventError::TrailViolation`].
    pub fn check(&self) -> Result<(), EventError> {
        match trace_violation(&self.events) {
            Some(detail) => Err(EventError::TrailViolation {
                trace_id: self.trace_id.clone(),
                detail,
            }),
            None => Ok(()),
        }
    }

    /// Asserts the trace has at least one event of `kind`.
    #[track_caller]
    pub fn has_kind(self, kind: EventKind) -> Self {
        let found = self.count(kind) > 0;
        self.ensure(found, &format!("expected an event of kind {kind}"))
    }

    /// Asserts the trace has exactly `n` events of `kind`.
    #[track_caller]
    pub fn has_count(self, kind: EventKind, n: usize) -> Self {
        let count = self.count(kind);
        self.ensure(
            count == n,
            &format!("expected {n} events of kind {kind}, found {count}"),
        )
    }

    /// Asserts a person rejected one of the trace's tool calls.
    #[track_caller]
    pub fn has_rejected_tool_call(self) -> Self {
        let found = self.has_approval_of_call(ApprovalDecision::Rejected);
        self.ensure(found, "expected a rejected tool call")
    }

    /// Asserts a person approved one of the trace's tool calls.
    #[track_caller]
    pub fn has_approved_tool_call(self) -> Self {
        let found = self.has_approval_of_call(ApprovalDecision::Approved);
        self.ensure(found, "expected an approved tool call")
    }

    /// Asserts a policy check in the trace decided `decision`.
    #[track_caller]
    pub fn has_policy_decision(self, decision: PolicyDecision) -> Self {
        let found = self
            .events
            .iter()
            .any(|e| matches!(&e.body, EventBody::PolicyCheck(check) if check.decision == decision));
        self.ensure(found, &format!("expected a policy check deciding {decision:?}"))
    }

    /// Asserts the trace ends in at least one final action.
    #[track_caller]
    pub fn has_final_action(self) -> Self {
        let found = self.count(EventKind::FinalAction) > 0;
        self.ensure(found, "expected a final action")
    }

    /// Asserts the trace has no final action.
    #[track_caller]
    pub fn no_final_action(self) -> Self {
        let none = self.count(EventKind::FinalAction) == 0;
        self.ensure(none, "expected no final action")
    }

    /// Asserts no final action follows a rejected approval.
    #[track_caller]
    pub fn no_action_after_rejection(self) -> Self {
        let problem = action_after_rejection(&self.events);
        self.ensure_none(problem)
    }

    /// Asserts every tool result follows its call, and no denied or rejected call has a
    /// result.
    #[track_caller]
    pub fn no_result_without_permission(self) -> Self {
        let problem = result_without_permission(&self.events);
        self.ensure_none(problem)
    }

    /// Asserts the trace's event times never decrease.
    #[track_caller]
    pub fn times_non_decreasing(self) -> Self {
        let problem = time_went_back(&self.events);
        self.ensure_none(problem)
    }

    fn has_approval_of_call(&self, wanted: ApprovalDecision) -> bool {
        let calls: HashSet<&str> = self
            .events
            .iter()
            .filter(|e| e.kind() == EventKind::ToolCall)
            .filter_map(|e| e.tool_call_id())
            .collect();
        self.events.iter().any(|e| match &e.body {
            EventBody::Approval(approval) => {
                approval.decision == wanted && approval.tool_call_id.as_deref().is_some_and(|id| calls.contains(id))
            }
            _ => false,
        })
    }

    #[track_caller]
    fn ensure_none(self, problem: Option<String>) -> Self {
        match problem {
            Some(detail) => self.fail(&detail),
            None => self,
        }
    }

    #[track_caller]
    fn ensure(self, ok: bool, expectation: &str) -> Self {
        if !ok {
            self.fail(expectation);
        }
        self
    }

    #[track_caller]
    fn fail(&self, detail: &str) -> ! {
        let kinds: Vec<String> = self.events.iter().map(|e| describe(e)).collect();
        panic!(
            "trace {}: {detail}; its {} events are: {}",
            self.trace_id,
            self.events.len(),
            kinds.join(", ")
        );
    }
}

fn describe(event: &Event) -> String {
    match &event.body {
        EventBody::ToolCall(call) => format!("tool_call({} {})", call.tool_name, call.call_id),
        EventBody::PolicyCheck(check) => format!("policy_check({:?})", check.decision),
        EventBody::Approval(approval) => format!("approval({:?})", approval.decision),
        _ => event.kind().to_string(),
    }
}

fn trace_events<'a>(events: &'a [Event], trace_id: &str) -> Vec<&'a Event> {
    events.iter().filter(|e| e.trace_id == trace_id).collect()
}

fn trace_violation(trace: &[&Event]) -> Option<String> {
    time_went_back(trace)
        .or_else(|| action_after_rejection(trace))
        .or_else(|| result_without_permission(trace))
}

fn time_went_back(trace: &[&Event]) -> Option<String> {
    trace.windows(2).find(|w| w[1].time_us < w[0].time_us).map(|w| {
        format!(
            "time goes back from {} us (event {}) to {} us (event {})",
            w[0].time_us, w[0].event_id, w[1].time_us, w[1].event_id
        )
    })
}

fn action_after_rejection(trace: &[&Event]) -> Option<String> {
    let rejection = trace
        .iter()
        .position(|e| matches!(&e.body, EventBody::Approval(a) if a.decision == ApprovalDecision::Rejected))?;
    trace[rejection..]
        .iter()
        .find(|e| e.kind() == EventKind::FinalAction)
        .map(|action| {
            format!(
                "final action {} follows the rejection in event {}",
                action.event_id, trace[rejection].event_id
            )
        })
}

fn result_without_permission(trace: &[&Event]) -> Option<String> {
    let mut called = HashSet::new();
    let mut forbidden = HashSet::new();
    for event in trace {
        match &event.body {
            EventBody::ToolCall(call) => {
                called.insert(call.call_id.as_str());
            }
            EventBody::PolicyCheck(check) if check.decision == PolicyDecision::Deny => {
                forbidden.extend(check.tool_call_id.as_deref());
            }
            EventBody::Approval(a) if a.decision == ApprovalDecision::Rejected => {
                forbidden.extend(a.tool_call_id.as_deref());
            }
            EventBody::ToolResult(result) => {
                let id = result.call_id.as_str();
                if !called.contains(id) {
                    return Some(format!("tool result {} has no earlier tool call", id));
                }
                if forbidden.contains(id) {
                    return Some(format!("tool call {id} was denied or rejected yet has a result"));
                }
            }
            _ => {}
        }
    }
    None
}
