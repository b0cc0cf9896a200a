//! Proves the schema round-trips every kind (unknown fields included), that the parser and
//! the field table agree key by key, and that bad input gives an error naming the field —
//! never a panic.

use super::testing::TrailGenerator;
use super::*;
use proptest::prelude::*;
use serde_json::{json, Value};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SPAN: &str = "00f067aa0ba902b7";
const PARENT: &str = "b7ad6b7169203331";

/// An event of `kind` with every optional field set.
fn full_sample(kind: EventKind) -> Event {
    let body = match kind {
        EventKind::UserInput => EventBody::UserInput(UserInput {
            input_messages: json!([{"role": "user", "parts": [{"type": "text", "content": "hi"}]}]),
        }),
        EventKind::SystemPrompt => EventBody::SystemPrompt(SystemPrompt {
            prompt_id: "support-system".into(),
            prompt_version: Some("v3".into()),
            prompt_sha256: Some("ab".repeat(32)),
            system_instructions: Some(json!("be kind")),
        }),
        EventKind::ModelCall => EventBody::ModelCall(ModelCall {
            provider_name: "openai".into(),
            request_model: "gpt-4o".into(),
            input_messages: Some(json!([{"role": "user", "content": "hi"}])),
            system_instructions: Some(json!("be kind")),
            temperature: Some(0.2),
            max_tokens: Some(512),
        }),
        EventKind::ModelOutput => EventBody::ModelOutput(ModelOutput {
            provider_name: "openai".into(),
            response_model: "gpt-4o-2024-08-06".into(),
            response_id: Some("chatcmpl-1".into()),
            finish_reasons: Some(vec!["stop".into()]),
            input_tokens: Some(10),
            output_tokens: Some(20),
            output_messages: Some(json!([{"role": "assistant", "content": "hello"}])),
        }),
        EventKind::ToolCall => EventBody::ToolCall(ToolCall {
            tool_name: "send_email".into(),
            call_id: "call_1".into(),
            tool_type: Some("function".into()),
            arguments: Some(json!({"to": "a@example.com"})),
        }),
        EventKind::ToolResult => EventBody::ToolResult(ToolResult {
            tool_name: "send_email".into(),
            call_id: "call_1".into(),
            result: Some(json!({"status": "error"})),
            error_type: Some("timeout".into()),
        }),
        EventKind::Retrieval => EventBody::Retrieval(Retrieval {
            data_source_id: "kb-support".into(),
            query_text: Some(json!("refund policy")),
            documents: vec![
                RetrievedDocument {
                    id: "doc-1".into(),
                    score: Some(0.91),
                },
                RetrievedDocument {
                    id: "doc-2".into(),
                    score: None,
                },
            ],
            top_k: Some(2),
        }),
        EventKind::PolicyCheck => EventBody::PolicyCheck(PolicyCheck {
            policy_id: "pii-egress-v2".into(),
            decision: PolicyDecision::Flag,
            reason: Some(json!("email address in arguments")),
            tool_call_id: Some("call_1".into()),
        }),
        EventKind::Approval => EventBody::Approval(Approval {
            decision: ApprovalDecision::Rejected,
            approver: "reviewer-1".into(),
            reason: Some(json!("not justified")),
            tool_call_id: Some("call_1".into()),
        }),
        EventKind::FinalAction => EventBody::FinalAction(FinalAction {
            action_name: "reply".into(),
            arguments: Some(json!({"channel": "chat"})),
            outcome: Some("succeeded".into()),
        }),
        EventKind::Error => EventBody::Error(ErrorEvent {
            error_type: "timeout".into(),
            message: Some(json!("model call timed out")),
        }),
    };
    Event {
        schema_version: SCHEMA_VERSION,
        event_id: format!("evt-{kind}"),
        time_us: 1_735_689_600_123_456,
        trace_id: TRACE.into(),
        span_id: SPAN.into(),
        parent_span_id: Some(PARENT.into()),
        conversation_id: "conv-1".into(),
        agent_id: "agent-support-00".into(),
        actor: Actor::new("agent-support-00", ActorType::Agent),
        subject_id: Some("user-0001".into()),
        operation_name: Some(OperationName::Chat),
        body,
        extra: Default::default(),
    }
}

fn sample_json(kind: EventKind) -> serde_json::Map<String, Value> {
    match full_sample(kind).to_value().unwrap() {
        Value::Object(map) => map,
        _ => unreachable!(),
    }
}

#[test]
fn every_kind_round_trips() {
    for kind in EventKind::ALL {
        let event = full_sample(kind);
        let line = event.to_json().unwrap();
        let back = Event::from_json_line(&line).unwrap();
        assert_eq!(back, event, "{kind}");
        assert_eq!(back.to_json().unwrap(), line, "{kind}");
        assert_eq!(back.kind(), kind);
        assert_eq!(back.trace_id(), TRACE);
        assert_eq!(back.conversation_id(), "conv-1");
        assert_eq!(back.agent_id(), "agent-support-00");
        assert_eq!(back.subject_id(), Some("user-0001"));
        assert_eq!(back.time_us(), 1_735_689_600_123_456);
    }
}

#[test]
fn unknown_fields_survive_a_round_trip() {
    for kind in EventKind::ALL {
        let mut map = sample_json(kind);
        map.insert("trailkeep.future.field".into(), json!({"nested": [1, 2.5, "x"]}));
        map.insert("gen_ai.request.seed".into(), json!(7));
        let event = Event::from_value(Value::Object(map)).unwrap();
        assert_eq!(event.extra.len(), 2, "{kind}");
        let again: Value = serde_json::from_str(&event.to_json().unwrap()).unwrap();
        assert_eq!(again["trailkeep.future.field"], json!({"nested": [1, 2.5, "x"]}));
        assert_eq!(again["gen_ai.request.seed"], json!(7));
    }
}

#[test]
fn serde_traits_agree_with_the_explicit_methods() {
    let event = full_sample(EventKind::ToolCall);
    let text = serde_json::to_string(&event).unwrap();
    // Same content; only `to_json` promises sorted keys.
    let via_serde: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(via_serde, event.to_value().unwrap());
    let canonical: Value = serde_json::from_str(&event.to_json().unwrap()).unwrap();
    assert_eq!(via_serde, canonical);
    let back: Event = serde_json::from_str(&text).unwrap();
    assert_eq!(back, event);
}

/// The parser and the field table agree: every key the table gives a kind is written for
/// the full sample and consumed by the parser, every key written is in the table, and
/// removing a required key fails naming exactly that key.
#[test]
fn parser_and_field_table_agree() {
    for kind in EventKind::ALL {
        let map = sample_json(kind);
        for key in map.keys() {
            let spec = field_spec(key).unwrap_or_else(|| panic!("{kind}: {key} not in table"));
            assert!(spec.is_used_in(kind), "{kind}: writes {key}, not in its table");
        }
        for spec in fields().filter(|spec| spec.is_used_in(kind)) {
            assert!(map.contains_key(spec.name), "{kind}: sample lacks {}", spec.name);
            let mut without = map.clone();
            without.remove(spec.name);
            let result = Event::from_value(Value::Object(without));
            if spec.is_required_in(kind) {
                match &result {
                    Err(EventError::MissingField { field, .. }) if *field == spec.name => {}
                    other => panic!("{kind}: removing {} gave {other:?}", spec.name),
                }
            } else {
                assert!(result.is_ok(), "{kind}: {} is optional but {result:?}", spec.name);
            }
        }
        assert!(Event::from_value(Value::Object(map)).unwrap().extra.is_empty());
    }
}

#[test]
fn time_accepts_rfc3339_and_epoch_milliseconds() {
    let mut map = sample_json(EventKind::Error);
    map.insert("time".into(), json!(1_735_689_600_123u64));
    assert_eq!(
        Event::from_value(Value::Object(map.clone())).unwrap().time_us,
        1_735_689_600_123_000
    );
    map.insert("time".into(), json!("2025-01-01T01:00:00.5+01:00"));
    assert_eq!(
        Event::from_value(Value::Object(map.clone())).unwrap().time_us,
        1_735_689_600_500_000
    );
    for bad in [json!(-1), json!(1.5), json!("yesterday"), json!(true)] {
        map.insert("time".into(), bad.clone());
        let err = Event::from_value(Value::Object(map.clone())).unwrap_err();
        assert!(err.to_string().starts_with("invalid field time:"), "{bad}: {err}");
    }
}

fn error_for(kind: EventKind, key: &str, value: Value) -> String {
    let mut map = sample_json(kind);
    map.insert(key.into(), value);
    Event::from_value(Value::Object(map)).unwrap_err().to_string()
}

#[test]
fn bad_fields_give_errors_naming_the_field() {
    let cases = [
        (
            EventKind::ToolCall,
            "trace_id",
            json!(TRACE.to_uppercase()),
            "invalid field trace_id: expected 32 lowercase hex digits",
        ),
        (
            EventKind::ToolCall,
            "trace_id",
            json!("0".repeat(32)),
            "invalid field trace_id: must not be all zeros",
        ),
        (EventKind::ToolCall, "span_id", json!("abc"), "invalid field span_id:"),
        (
            EventKind::ToolCall,
            "gen_ai.tool.name",
            json!(3),
            "invalid field gen_ai.tool.name: expected a string, got a number",
        ),
        (
            EventKind::ToolCall,
            "event_id",
            json!(""),
            "invalid field event_id: must not be empty",
        ),
        (
            EventKind::ModelOutput,
            "gen_ai.usage.input_tokens",
            json!("10"),
            "invalid field gen_ai.usage.input_tokens: expected an integer >= 0, got a string",
        ),
        (
            EventKind::ModelOutput,
            "gen_ai.response.finish_reasons",
            json!(["stop", 1]),
            "invalid field gen_ai.response.finish_reasons[1]",
        ),
        (
            EventKind::Retrieval,
            "gen_ai.retrieval.documents",
            json!([{"score": 1}]),
            "invalid field gen_ai.retrieval.documents[0].id",
        ),
        (
            EventKind::PolicyCheck,
            "trailkeep.policy.decision",
            json!("maybe"),
            "invalid field trailkeep.policy.decision: expected allow, deny or flag",
        ),
        (
            EventKind::Approval,
            "trailkeep.approval.decision",
            json!("ok"),
            "invalid field trailkeep.approval.decision",
        ),
        (
            EventKind::Error,
            "actor.type",
            json!("robot"),
            "invalid field actor.type: expected user, agent or service",
        ),
        (
            EventKind::Error,
            "kind",
            json!("telepathy"),
            "unknown kind \"telepathy\" in field kind",
        ),
        (
            EventKind::Error,
            "schema_version",
            json!(2),
            "unsupported schema_version 2",
        ),
        (
            EventKind::Error,
            "schema_version",
            json!(0),
            "invalid field schema_version",
        ),
    ];
    for (kind, key, value, expected) in cases {
        let message = error_for(kind, key, value);
        assert!(
            message.starts_with(expected),
            "{key}: got {message:?}, want {expected:?}"
        );
    }
}

#[test]
fn missing_and_malformed_input_errors() {
    let mut map = sample_json(EventKind::ToolCall);
    map.remove("gen_ai.tool.name");
    let err = Event::from_value(Value::Object(map)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "missing required field gen_ai.tool.name for kind tool_call"
    );
    let mut map = sample_json(EventKind::ModelCall);
    map.insert("gen_ai.operation.name".into(), Value::Null);
    let err = Event::from_value(Value::Object(map)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "missing required field gen_ai.operation.name for kind model_call"
    );
    assert!(matches!(
        Event::from_json_line("{\"kind\":"),
        Err(EventError::InvalidJson { .. })
    ));
    assert!(matches!(
        Event::from_json_line("[1]"),
        Err(EventError::NotAnObject { found: "an array" })
    ));
    let huge = " ".repeat(EVENT_JSON_BYTES_MAX + 1);
    assert!(matches!(Event::from_json_line(&huge), Err(EventError::TooLarge { .. })));
}

#[test]
fn to_json_refuses_what_would_not_read_back() {
    let mut event = full_sample(EventKind::ToolCall);
    event.extra.insert("gen_ai.tool.name".into(), json!("shadow"));
    let err = event.to_json().unwrap_err();
    assert!(err.to_string().starts_with("invalid field gen_ai.tool.name:"), "{err}");
    let mut event = full_sample(EventKind::ToolCall);
    event.span_id = "XYZ".into();
    assert!(matches!(event.to_json(), Err(EventError::InvalidField { field, .. }) if field == "span_id"));
    // An extra key that is a schema field of *another* kind is a genuine extra.
    let mut event = full_sample(EventKind::FinalAction);
    event.extra.insert("gen_ai.tool.call.id".into(), json!("call_9"));
    let back = Event::from_json_line(&event.to_json().unwrap()).unwrap();
    assert_eq!(back, event);
}

#[test]
fn operation_names_keep_unknown_values() {
    assert_eq!(OperationName::from_name("execute_tool"), OperationName::ExecuteTool);
    assert_eq!(
        OperationName::from_name("rerank"),
        OperationName::Other("rerank".into())
    );
    let mut event = full_sample(EventKind::ModelCall);
    event.operation_name = Some(OperationName::Other("rerank".into()));
    let back = Event::from_json_line(&event.to_json().unwrap()).unwrap();
    assert_eq!(back.operation_name, Some(OperationName::Other("rerank".into())));
}

proptest! {
    #[test]
    fn generated_events_round_trip(seed in any::<u64>()) {
        for event in TrailGenerator::new(seed).sessions(2).generate() {
            let line = event.to_json().unwrap();
            prop_assert_eq!(Event::from_json_line(&line).unwrap(), event);
        }
    }

    #[test]
    fn arbitrary_text_never_panics(text in ".{0,300}") {
        let _ = Event::from_json_line(&text);
    }

    #[test]
    fn damaged_events_never_panic(kind in 0..EventKind::ALL.len(), drop_mask in any::<u64>(), swap in any::<u64>()) {
        let map = sample_json(EventKind::ALL[kind]);
        let keys: Vec<String> = map.keys().cloned().collect();
        let mut damaged = map.clone();
        for (i, key) in keys.iter().enumerate() {
            if drop_mask >> (i % 64) & 1 == 1 {
                damaged.remove(key);
            } else if swap >> (i % 64) & 1 == 1 {
                damaged.insert(key.clone(), json!([{"x": null}]));
            }
        }
        let _ = Event::from_value(Value::Object(damaged));
    }
}

#[test]
fn the_documented_example_parses_and_is_canonical() {
    let doc = include_str!("../../docs/events.md");
    let start = doc.find("### 1.3 Example\n\n```json\n").unwrap() + "### 1.3 Example\n\n```json\n".len();
    let line = &doc[start..start + doc[start..].find("\n```").unwrap()];
    let event = Event::from_json_line(line.trim()).unwrap();
    assert_eq!(event.to_json().unwrap(), line.trim());
}
