//! Proves the generator is deterministic by seed, different across seeds, keeps its own
//! invariants, covers every kind with realistic sizes, and that the assertion helpers
//! catch a broken trail with a message naming the trace.

use super::*;
use crate::events::{ApprovalDecision, Event, EventBody, EventError, EventKind, PolicyDecision};
use proptest::prelude::*;
use std::collections::HashSet;

fn lines(events: &[Event]) -> Vec<String> {
    events.iter().map(|e| e.to_json().unwrap()).collect()
}

#[test]
fn same_seed_same_json_different_seed_different_json() {
    let a = lines(&TrailGenerator::new(9).agents(4).sessions(25).generate());
    let b = lines(&TrailGenerator::new(9).agents(4).sessions(25).generate());
    let c = lines(&TrailGenerator::new(10).agents(4).sessions(25).generate());
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert!(a.len() > 100, "25 sessions give {} events", a.len());
}

#[test]
fn a_pinned_seed_gives_a_pinned_trail() {
    // Guards portability: the PRNG and the output must not drift between platforms or
    // versions. If this fails after a deliberate change to the generator, update the hash.
    use sha2::{Digest, Sha256};
    let events = TrailGenerator::new(1).sessions(3).generate();
    let text = lines(&events).join("\n");
    let digest: String = Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(events[0].kind(), EventKind::UserInput);
    assert_eq!(
        digest, "07900ae8d8835f721c3cd101b01eefb3e5ede2858ef05f8b7a324d340f32612b",
        "seed 1 now gives:\n{text}"
    );
}

#[test]
fn a_large_trail_covers_every_kind_and_outcome() {
    let events = TrailGenerator::new(2024).agents(4).sessions(150).generate();
    check_trail(&events).unwrap();
    let kinds: HashSet<EventKind> = events.iter().map(Event::kind).collect();
    for kind in EventKind::ALL {
        assert!(kinds.contains(&kind), "no {kind} in 150 sessions");
    }
    let decisions: HashSet<String> = events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::PolicyCheck(c) => Some(format!("{:?}", c.decision)),
            EventBody::Approval(a) => Some(format!("{:?}", a.decision)),
            _ => None,
        })
        .collect();
    for wanted in ["Allow", "Deny", "Flag", "Approved", "Rejected"] {
        assert!(decisions.contains(wanted), "no {wanted} decision");
    }
    let agents: HashSet<&str> = events.iter().map(Event::agent_id).collect();
    assert_eq!(agents.len(), 4);
    let delegated = events.iter().any(|e| {
        let first_of_trace = events.iter().find(|f| f.trace_id == e.trace_id).unwrap();
        e.kind() == EventKind::Retrieval && e.agent_id != first_of_trace.agent_id
    });
    assert!(delegated, "no retrieval by a second agent");
}

#[test]
fn content_sizes_are_realistic() {
    let events = TrailGenerator::new(5).sessions(200).generate();
    let sizes: Vec<usize> = events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::UserInput(u) => Some(u.input_messages[0]["parts"][0]["content"].as_str()?.len()),
            EventBody::ModelOutput(o) => Some(o.output_messages.as_ref()?.to_string().len()),
            _ => None,
        })
        .collect();
    let mean = sizes.iter().sum::<usize>() / sizes.len();
    assert!(sizes.iter().all(|&s| (100..=2200).contains(&s)), "sizes out of range");
    assert!((200..=360).contains(&mean), "mean content size {mean}");
    assert!(sizes.iter().any(|&s| s > 1000), "no large values");
}

#[test]
fn sessions_start_in_bursts() {
    let events = TrailGenerator::new(8).sessions(60).generate();
    let mut starts: Vec<i64> = Vec::new();
    let mut seen = HashSet::new();
    for e in &events {
        if seen.insert(e.conversation_id.clone()) {
            starts.push(e.time_us);
        }
    }
    let gaps: Vec<i64> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.iter().any(|&g| g < 500_000),
        "no two sessions within half a second"
    );
    assert!(gaps.iter().any(|&g| g > 2_000_000), "no quiet gap between bursts");
}

#[test]
fn helpers_pass_on_good_traces_and_explain_failures() {
    let events = TrailGenerator::new(42).sessions(40).generate();
    let rejected = find_trace(&events, |t| {
        t.iter()
            .any(|e| matches!(&e.body, EventBody::Approval(a) if a.decision == ApprovalDecision::Rejected))
    })
    .unwrap();
    let trace = assert_trace(&events, rejected)
        .has_rejected_tool_call()
        .no_action_after_rejection()
        .no_result_without_permission()
        .times_non_decreasing()
        .no_final_action()
        .has_kind(EventKind::UserInput)
        .has_count(EventKind::UserInput, 1);
    assert!(trace.check().is_ok());
    let denied = find_trace(&events, |t| {
        t.iter()
            .any(|e| matches!(&e.body, EventBody::PolicyCheck(c) if c.decision == PolicyDecision::Deny))
    });
    if let Some(id) = denied {
        assert_trace(&events, id)
            .has_policy_decision(PolicyDecision::Deny)
            .no_result_without_permission();
    }

    // Break the trail: an action after the rejection.
    let mut broken = events.clone();
    let mut action = broken
        .iter()
        .find(|e| e.kind() == EventKind::FinalAction)
        .unwrap()
        .clone();
    action.trace_id = rejected.to_owned();
    action.time_us = broken.last().unwrap().time_us;
    broken.push(action);
    let err = check_trail(&broken).unwrap_err();
    let EventError::TrailViolation { trace_id, .. } = &err else {
        panic!("expected a trail violation, got {err}");
    };
    assert_eq!(trace_id, rejected, "{err}");
    let message = panic_message(|| {
        assert_trace(&broken, rejected).no_action_after_rejection();
    });
    assert!(
        message.starts_with(&format!("trace {rejected}: final action")),
        "{message}"
    );
    assert!(message.contains("approval(Rejected)"), "{message}");
    let message = panic_message(|| {
        assert_trace(&events, rejected).has_final_action();
    });
    assert!(message.contains("expected a final action"), "{message}");
    let message = panic_message(|| {
        assert_trace(&events, "0123");
    });
    assert!(message.contains("trace 0123: no events"), "{message}");
}

#[test]
fn check_trail_catches_time_going_back_and_unpermitted_results() {
    let events = TrailGenerator::new(11).sessions(20).generate();
    let mut swapped = events.clone();
    swapped.swap(0, 5);
    assert!(matches!(check_trail(&swapped), Err(EventError::TrailViolation { .. })));
    let mut orphan = events.clone();
    let index = orphan.iter().position(|e| e.kind() == EventKind::ToolResult).unwrap();
    if let EventBody::ToolResult(r) = &mut orphan[index].body {
        r.call_id = "call_nobody".into();
    }
    let err = check_trail(&orphan).unwrap_err();
    assert!(
        err.to_string()
            .contains("tool result call_nobody has no earlier tool call"),
        "{err}"
    );
}

fn panic_message(f: impl FnOnce() + std::panic::UnwindSafe) -> String {
    let payload = std::panic::catch_unwind(f).expect_err("the assertion should have failed");
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn every_seed_keeps_the_invariants(seed in any::<u64>(), agents in 1usize..6, sessions in 0usize..12) {
        let events = TrailGenerator::new(seed).agents(agents).sessions(sessions).generate();
        prop_assert!(check_trail(&events).is_ok(), "seed {}: {:?}", seed, check_trail(&events));
        let ids: HashSet<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
        prop_assert_eq!(ids.len(), events.len());
        for id in trace_ids(&events) {
            assert_trace(&events, id).no_action_after_rejection().no_result_without_permission();
        }
    }
}
