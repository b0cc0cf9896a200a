//! The AI-events example from README.md (kept compiling and running here).
fn main() -> Result<(), Box<dyn std::error::Error>> {
    use trailkeep::events::testing::{assert_trace, TrailGenerator};
    use trailkeep::events::Shredder;
    use trailkeep::trail::{Trail, TrailConfig};

    let store = trailkeep::Store::temporary()?; // a temp dir, removed on drop
    let config = TrailConfig {
        shredder: Some(Shredder::new(["gen_ai.input.messages"])?),
        ..Default::default()
    };
    let trail = Trail::open(&store, "agent-trail", config)?;
    let events = TrailGenerator::new(42).sessions(20).generate(); // deterministic by seed
    for event in &events {
        trail.append(event)?; // key = trace id, indexed by conversation/agent/subject
    }
    let trace = events[0].trace_id();
    let seen = trail.trace(trace, 0, u64::MAX)?;
    assert_trace(&seen, trace).no_action_after_rejection();
    trail.forget("user-0003")?; // their encrypted fields now read as erased
    let bundle = trail.topic().prove(trailkeep::Offset(0))?; // c2sp.org/tlog-proof@v1 inclusion proof
    let record = trail.topic().read(trailkeep::Offset(0))?;
    trailkeep::verify_record_inclusion(&record, &bundle, &trail.topic().verifier_key()?)?; // needs only the public key
    Ok(())
}
