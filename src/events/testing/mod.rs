//! Fake trails for unit tests: a seeded [`TrailGenerator`] of realistic multi-agent
//! audit events, and assertion helpers over a slice of events.
//!
//! The helpers panic with a message naming the trace and what was seen, which is what a
//! unit test wants; [`check_trail`] returns the same findings as a `Result`.
//!
//! # Example: unit-testing a toy agent policy
//!
//! ```
//! use trailkeep::events::testing::{assert_trace, check_trail, find_trace, TrailGenerator};
//! use trailkeep::events::{ApprovalDecision, Event, EventBody, PolicyDecision};
//!
//! /// The code under test: a trace needs human review when a policy denied or flagged
//! /// something, or a person rejected a step.
//! fn needs_review(trace: &[&Event]) -> bool {
//!     trace.iter().any(|event| match &event.body {
//!         EventBody::PolicyCheck(check) => check.decision != PolicyDecision::Allow,
//!         EventBody::Approval(approval) => approval.decision == ApprovalDecision::Rejected,
//!         _ => false,
//!     })
//! }
//!
//! # fn main() -> Result<(), trailkeep::events::EventError> {
//! let events = TrailGenerator::new(42).agents(3).sessions(40).generate();
//! check_trail(&events)?; // the generator's own invariants hold
//!
//! // A trace where a human rejected a tool call must be sent to review...
//! let rejected = find_trace(&events, |trace| {
//!     trace.iter().any(|e| matches!(&e.body,
//!         EventBody::Approval(a) if a.decision == ApprovalDecision::Rejected))
//! })
//! .expect("40 sessions with seed 42 contain a rejection");
//! let trace = assert_trace(&events, rejected)
//!     .has_rejected_tool_call()
//!     .no_action_after_rejection();
//! assert!(needs_review(trace.events()));
//!
//! // ...and a plain trace with only allowed checks must not be.
//! let plain = find_trace(&events, |trace| {
//!     let checked = trace.iter().any(|e| matches!(&e.body, EventBody::PolicyCheck(_)));
//!     let acted = trace.iter().any(|e| matches!(&e.body, EventBody::FinalAction(_)));
//!     !checked && acted
//! })
//! .expect("some traces call no tool and end in an action");
//! assert!(!needs_review(assert_trace(&events, plain).has_final_action().events()));
//! # Ok(())
//! # }
//! ```

mod assert;
mod catalog;
mod generator;

pub use assert::{assert_trace, check_trail, find_trace, trace_ids, TraceAssert};
pub use generator::{TrailGenerator, DEFAULT_START_TIME_US};

#[cfg(test)]
mod tests;
