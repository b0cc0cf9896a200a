//! `trailkeep demo`: the whole idea on one machine, in a few seconds.
//!
//! Simulated agents append AI audit events (personal fields encrypted per subject) from
//! several threads; a policy-scanner group follows the head and flags violations; an
//! evaluator group replays the last part of the trail from a time; a subject is erased;
//! then `verify` runs, a copy of the store is tampered with and caught, and a summary
//! prints.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cli::{stdout_err, trail_err, CliError};
use crate::events::testing::TrailGenerator;
use crate::events::{EventBody, EventKind, PolicyDecision};
use crate::trail::{Trail, TrailConfig};
use crate::{ConsumerConfig, Durability, Offset, Store, TopicConfig};

/// Arguments of `demo`.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Number of simulated agents (threads appending), 1 to 64.
    #[arg(long, default_value_t = 4,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=DEMO_AGENTS_MAX))]
    pub agents: usize,
    /// Sessions each agent runs, 1 to 1000.
    #[arg(long, default_value_t = 40,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=DEMO_SESSIONS_MAX))]
    pub sessions: usize,
    /// Seed of the simulated trail.
    #[arg(long, default_value_t = 2026)]
    pub seed: u64,
}

/// Most simulated agents: one appending thread each.
const DEMO_AGENTS_MAX: u64 = 64;
/// Most sessions per agent: each agent's events are generated in memory first.
const DEMO_SESSIONS_MAX: u64 = 1000;

const TOPIC: &str = "agent-trail";
const PERSONAL: [&str; 2] = ["gen_ai.input.messages", "gen_ai.output.messages"];

fn step(out: &mut impl Write, text: &str) -> Result<(), CliError> {
    writeln!(out, "\n== {text}").map_err(stdout_err)
}

/// Runs the demo on `dir`, or on a temporary store when `dir` is None.
///
/// # Errors
/// Any engine error (the demo stops there).
pub fn run(dir: Option<&Path>, args: DemoArgs) -> Result<(), CliError> {
    let temp = tempfile::tempdir().map_err(crate::cli::io_err("creating a temporary directory"))?;
    let dir = dir.unwrap_or(temp.path());
    let out = &mut std::io::stdout().lock();
    let store = Store::builder(dir).durability(Durability::Always).open()?;
    create_topic(&store, dir)?;
    step(
        out,
        &format!(
            "store {} (durable appends, group commit, tamper evidence on)",
            dir.display()
        ),
    )?;
    let config = TrailConfig {
        shredder: Some(crate::events::Shredder::new(PERSONAL).map_err(|e| CliError::Usage(e.to_string()))?),
        ..TrailConfig::default()
    };
    let trail = Arc::new(Trail::open(&store, TOPIC, config).map_err(trail_err)?);
    let start_offset = trail.topic().end_offset();
    let violations = append_and_scan(out, &trail, &args)?;

    let middle = Offset(start_offset.0 + (trail.topic().end_offset().0 - start_offset.0) / 2);
    replay(out, &trail, trail.topic().read(middle)?.timestamp_us)?;
    let forgotten = erase_one_subject(out, &trail)?;
    verify_and_tamper(out, &store, dir)?;

    step(out, "summary")?;
    let topic = trail.topic();
    writeln!(out, "events      {}", topic.end_offset().0 - start_offset.0).map_err(stdout_err)?;
    for g in topic.groups()? {
        writeln!(
            out,
            "group       {:<16} position {:>6}  lag {:>6}",
            g.name, g.committed, g.lag
        )
        .map_err(stdout_err)?;
    }
    writeln!(out, "violations  {violations}").map_err(stdout_err)?;
    writeln!(out, "erased      subject {forgotten}").map_err(stdout_err)?;
    writeln!(out, "checkpoint\n{}", topic.checkpoint()?).map_err(stdout_err)?;
    writeln!(out, "verifier key {}", store.verifier_key()?).map_err(stdout_err)?;
    store.close()?;
    Ok(())
}

/// Creates the demo's topic. A second run on the same store would meet the subject the
/// first one erased (its key is gone for good) and mix both runs in its summary: it is
/// refused before anything changes.
fn create_topic(store: &Store, dir: &Path) -> Result<(), CliError> {
    match store.topic(TOPIC) {
        Ok(_) => {
            return Err(CliError::Usage(format!(
                "{} already holds a demo trail (topic {TOPIC}); run the demo on a new --dir, \
                 or without --dir on a temporary store",
                dir.display()
            )))
        }
        Err(crate::Error::NoSuchTopic(_)) => {}
        Err(e) => return Err(e.into()),
    }
    store.create_topic(
        TOPIC,
        TopicConfig::default()
            .segment_bytes(256 * 1024)
            .checkpoint_every_records(500),
    )?;
    Ok(())
}

/// The agents append their sessions from one thread each while a policy scanner follows
/// the head; returns the violations the scanner flagged.
fn append_and_scan(out: &mut impl Write, trail: &Arc<Trail>, args: &DemoArgs) -> Result<u64, CliError> {
    step(
        out,
        &format!(
            "{} agents append their sessions while a policy scanner follows the head",
            args.agents
        ),
    )?;
    let done = Arc::new(AtomicBool::new(false));
    let violations = Arc::new(AtomicU64::new(0));
    let scanner = spawn_scanner(Arc::clone(trail), Arc::clone(&done), Arc::clone(&violations))?;
    let began = Instant::now();
    let writers: Vec<_> = (0..args.agents)
        .map(|agent| {
            let trail = Arc::clone(trail);
            let generator = TrailGenerator::new(args.seed + agent as u64)
                .agents(1)
                .sessions(args.sessions);
            std::thread::spawn(move || -> Result<u64, CliError> {
                let mut appended = 0;
                for chunk in generator.generate().chunks(8) {
                    for event in chunk {
                        trail.append(event).map_err(trail_err)?;
                        appended += 1;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                Ok(appended)
            })
        })
        .collect();
    let mut appended = 0;
    for writer in writers {
        appended += writer
            .join()
            .map_err(|_| CliError::Usage("an agent thread panicked".into()))??;
    }
    let elapsed = began.elapsed();
    writeln!(
        out,
        "appended {appended} events in {:.2} s ({:.0} durable appends/s across {} writers)",
        elapsed.as_secs_f64(),
        appended as f64 / elapsed.as_secs_f64(),
        args.agents
    )
    .map_err(stdout_err)?;
    for g in trail.topic().groups()? {
        writeln!(
            out,
            "  group {:<16} position {:>6}  lag {:>6}",
            g.name, g.committed, g.lag
        )
        .map_err(stdout_err)?;
    }
    done.store(true, Ordering::SeqCst);
    let scanned = scanner
        .join()
        .map_err(|_| CliError::Usage("the scanner thread panicked".into()))??;
    let violations = violations.load(Ordering::SeqCst);
    writeln!(
        out,
        "policy-scanner caught up: {scanned} events scanned, {violations} violations flagged"
    )
    .map_err(stdout_err)?;
    Ok(violations)
}

/// Follows the head as group `policy-scanner`: denied or flagged policy checks and
/// rejected approvals count as violations.
fn spawn_scanner(
    trail: Arc<Trail>,
    done: Arc<AtomicBool>,
    violations: Arc<AtomicU64>,
) -> Result<std::thread::JoinHandle<Result<u64, CliError>>, CliError> {
    let mut consumer = trail.topic().consumer("policy-scanner", ConsumerConfig::default())?;
    Ok(std::thread::spawn(move || {
        let mut scanned = 0;
        loop {
            let records = consumer.poll(500, Duration::from_millis(50))?;
            if records.is_empty() && done.load(Ordering::SeqCst) && consumer.lag() == 0 {
                return Ok(scanned);
            }
            for record in &records {
                let Some(event) = trail.decode(record).map_err(trail_err)? else {
                    continue;
                };
                scanned += 1;
                let flagged = match &event.body {
                    EventBody::PolicyCheck(c) => c.decision != PolicyDecision::Allow,
                    EventBody::Approval(a) => a.decision == crate::events::ApprovalDecision::Rejected,
                    _ => false,
                };
                if flagged {
                    violations.fetch_add(1, Ordering::SeqCst);
                }
            }
            consumer.commit()?;
        }
    }))
}

/// Replays, as group `evaluator`, everything appended after `from_us`.
fn replay(out: &mut impl Write, trail: &Trail, from_us: u64) -> Result<(), CliError> {
    let topic = trail.topic();
    let from = topic.seek_time(from_us)?.unwrap_or_else(|| topic.end_offset());
    step(
        out,
        &format!("evaluator replays from the middle of the run: seek by time -> offset {from}"),
    )?;
    topic.reset_group("evaluator", crate::ResetTo::Offset(from))?;
    let mut consumer = topic.consumer("evaluator", ConsumerConfig::default())?;
    let mut by_kind = std::collections::BTreeMap::<&'static str, u64>::new();
    loop {
        let records = consumer.poll(1000, Duration::ZERO)?;
        if records.is_empty() {
            break;
        }
        for record in &records {
            if let Some(event) = trail.decode(record).map_err(trail_err)? {
                *by_kind.entry(event.kind().as_str()).or_default() += 1;
            }
        }
        consumer.commit()?;
    }
    let summary: Vec<String> = by_kind.iter().map(|(k, n)| format!("{k} {n}")).collect();
    writeln!(
        out,
        "replayed {} events: {}",
        by_kind.values().sum::<u64>(),
        summary.join(", ")
    )
    .map_err(stdout_err)
}

/// Erases the subject of the first event that names one and shows its fields erased.
fn erase_one_subject(out: &mut impl Write, trail: &Trail) -> Result<String, CliError> {
    let topic = trail.topic();
    let mut subject = None;
    for record in topic.iter(topic.start_offset()) {
        if let Some(event) = trail.decode(&record?).map_err(trail_err)? {
            if event.kind() == EventKind::UserInput {
                if let Some(s) = event.subject_id() {
                    subject = Some(s.to_owned());
                    break;
                }
            }
        }
    }
    let subject = subject.ok_or_else(|| CliError::Usage("no event names a subject".into()))?;
    step(
        out,
        &format!("erase subject {subject}: destroy its key, append an erasure record"),
    )?;
    let before = trail.subject(&subject, 0, u64::MAX).map_err(trail_err)?;
    let offset = trail.forget(&subject).map_err(trail_err)?;
    let after = trail.subject(&subject, 0, u64::MAX).map_err(trail_err)?;
    let erased = after
        .iter()
        .filter(|e| e.to_json().map(|j| j.contains("trailkeep.erased")).unwrap_or(false))
        .count();
    writeln!(
        out,
        "{} events about the subject; after erasure (record {offset}) {erased} of them show personal fields as erased",
        before.len()
    )
    .map_err(stdout_err)?;
    Ok(subject)
}

/// Verifies the store, then tampers with a copy and shows the copy failing verification.
fn verify_and_tamper(out: &mut impl Write, store: &Store, dir: &Path) -> Result<(), CliError> {
    step(out, "verify: checksums, Merkle leaves, signed checkpoints")?;
    let topic = store.topic(TOPIC)?;
    let report = topic.verify(None, &mut |_| {})?;
    writeln!(
        out,
        "ok: {} records, {} checkpoints, tree size {}",
        report.records, report.checkpoints, report.tree_size
    )
    .map_err(stdout_err)?;
    let external = topic.checkpoint()?;
    step(
        out,
        "tamper: change one byte of a sealed segment in a copy of the store (checksum fixed up)",
    )?;
    let copy = tempfile::tempdir().map_err(crate::cli::io_err("creating a temporary directory"))?;
    copy_dir(dir, copy.path()).map_err(crate::cli::io_err("copying the store"))?;
    let segment = copy
        .path()
        .join("topics")
        .join(TOPIC)
        .join(crate::segment::file_name(Offset(0), "log"));
    let offset = tamper_first_batch(&segment).map_err(crate::cli::io_err("editing the copy"))?;
    writeln!(out, "changed a value byte of record {offset} in {}", segment.display()).map_err(stdout_err)?;
    let copy_store = Store::open(copy.path())?;
    let verifier =
        crate::audit::NoteVerifier::parse(&store.verifier_key()?).map_err(|e| CliError::Usage(e.to_string()))?;
    match copy_store
        .topic(TOPIC)?
        .verify(Some((&external, &verifier)), &mut |_| {})
    {
        Ok(_) => writeln!(out, "verify of the tampered copy PASSED (unexpected)"),
        Err(e) => writeln!(out, "verify of the tampered copy fails: {e}"),
    }
    .map_err(stdout_err)?;
    copy_store.close()?;
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            std::fs::create_dir_all(&target)?;
            copy_dir(&entry.path(), &target)?;
        } else if entry.file_name() != "append.lock" {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Flips the last byte of the first batch's payload and fixes the batch checksum, as an
/// attacker with write access would; returns the batch's last offset.
fn tamper_first_batch(path: &Path) -> std::io::Result<u64> {
    use crate::segment::batch::{read_u32, read_u64};
    let mut bytes = std::fs::read(path)?;
    let len = read_u32(&bytes, 4) as usize;
    if len < 41 || len > bytes.len() {
        return Err(std::io::Error::other("first batch is not where expected"));
    }
    bytes[len - 2] ^= 0x01;
    let crc = crc32fast::hash(&bytes[12..len]);
    bytes[8..12].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(path, &bytes)?;
    Ok(read_u64(&bytes, 16) + u64::from(read_u32(&bytes, 24)) - 1)
}
