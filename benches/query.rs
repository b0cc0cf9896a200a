//! Events of one trace: through the per-segment key index vs a full scan of the topic.
//! 200,000 generated AI events (about 150 MB) in 8 MiB segments; each iteration looks up
//! one trace (all its events, decoded) by each method.

use std::ops::ControlFlow;

use criterion::{criterion_group, criterion_main, Criterion};
use trailkeep::events::testing::TrailGenerator;
use trailkeep::trail::{Trail, TrailConfig};
use trailkeep::{Durability, Offset, Store, TopicConfig};

fn query(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::builder(dir.path())
        .durability(Durability::Buffered)
        .open()
        .expect("store");
    store
        .create_topic(
            "trail",
            TopicConfig::default().segment_bytes(8 << 20).tamper_evidence(false),
        )
        .expect("topic");
    let trail = Trail::open(&store, "trail", TrailConfig::default()).expect("trail");
    let events = TrailGenerator::new(1).agents(8).sessions(20_000).generate();
    let events = &events[..events.len().min(200_000)];
    for chunk in events.chunks(1000) {
        trail.append_batch(chunk).expect("append");
    }
    let traces: Vec<String> = events.iter().step_by(997).map(|e| e.trace_id().to_owned()).collect();
    let topic = trail.topic().clone();
    // Build the key indexes once, as a long-running process would have them.
    trail.trace(&traces[0], 0, u64::MAX).expect("warm");
    let mut group = c.benchmark_group("query");
    group.sample_size(20);
    let mut i = 0;
    group.bench_function("trace/key_index", |b| {
        b.iter(|| {
            i = (i + 1) % traces.len();
            trail.trace(&traces[i], 0, u64::MAX).expect("query").len()
        })
    });
    let mut j = 0;
    group.bench_function("trace/full_scan", |b| {
        b.iter(|| {
            j = (j + 1) % traces.len();
            let key = traces[j].as_bytes();
            let mut found = Vec::new();
            topic
                .scan(Offset(0), |r| {
                    if r.fields.key == Some(key) {
                        found.push(r.to_record());
                    }
                    ControlFlow::Continue(())
                })
                .expect("scan");
            found.iter().filter_map(|r| trail.decode(r).ok().flatten()).count()
        })
    });
    group.finish();
}

criterion_group!(benches, query);
criterion_main!(benches);
