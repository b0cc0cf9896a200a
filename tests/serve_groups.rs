//! Consumer groups of several members on the wire: two real clients (kafka-python,
//! confluent-kafka / librdkafka through tests/kafka/clients.py, kafkajs through
//! tests/kafka/kafkajs.js, each in its own process) join one group of `trailkeep serve`.
//!
//! Every trailkeep topic has exactly one partition, so the members subscribe to four
//! topics and the round-robin assignor spreads the topics. The test process appends the
//! records with the library (the server only reads and commits those topics) and watches
//! the members' JSON lines. Each member commits every record before it looks at the next.
//! Proved, with the exact offsets and bytes every member consumed:
//! - a second member joining while records keep arriving splits the topics two and two;
//!   it takes its topics over at the first member's last commits, and every record is
//!   consumed exactly once (by the first member up to that commit, by the second after);
//! - a paused member that leaves (LeaveGroup) or is killed (SIGKILL; its session of 6 s,
//!   the server's minimum, runs out) hands its topics to the other, which resumes at the
//!   committed offsets: the records appended meanwhile are neither lost nor re-delivered;
//! - the committed offsets are trailkeep cursors at the end of every topic.
//!
//! Without the clients the tests fail under CI (`CI` set) and print "skipped: ..."
//! otherwise, as tests/serve.rs does.

#[path = "kafka/support.rs"]
mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;
use trailkeep::{NewRecord, Offset, Store, Topic};

/// The topics every member subscribes to (one partition each).
const TOPICS: [&str; 4] = ["audit-a", "audit-b", "audit-c", "audit-d"];
/// Records appended to every topic before the second member joins, after the topics are
/// split, and while the first member is paused.
const BATCH_ALONE: u64 = 2;
const BATCH_SPLIT: u64 = 3;
const BATCH_PAUSED: u64 = 2;
/// While the second member joins, a record is appended to every topic this often, at
/// most this many times.
const FLOWING_INTERVAL_MS: u64 = 25;
const FLOWING_ROUNDS_MAX: u64 = 400;
/// Longest wait for a member's next expected line (a session timeout of 6 s, a rebalance
/// and a client's backoffs fit well within it).
const WAIT_S_MAX: u64 = 30;
/// Session timeouts of the members: the server's minimum (`SESSION_TIMEOUT_MIN_MS`) when a
/// killed member's session must run out; longer than any wait when only a LeaveGroup can
/// hand the topics over in time.
const KILL_SESSION_TIMEOUT_MS: u64 = 6_000;
const LEAVE_SESSION_TIMEOUT_MS: u64 = 60_000;
const _: () = assert!(LEAVE_SESSION_TIMEOUT_MS > WAIT_S_MAX * 1000);
const _: () = assert!(KILL_SESSION_TIMEOUT_MS < WAIT_S_MAX * 1000);

#[derive(Clone, Copy, Debug)]
enum Client {
    KafkaPython,
    Confluent,
    Kafkajs,
}

/// How the first member goes away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ending {
    Leave,
    Kill,
}

impl Ending {
    fn session_timeout_ms(self) -> u64 {
        match self {
            Ending::Leave => LEAVE_SESSION_TIMEOUT_MS,
            Ending::Kill => KILL_SESSION_TIMEOUT_MS,
        }
    }
}

/// The command running a member of `group` with `client`, or `None` (skipped) without it.
fn member_command(client: Client, addr: &str, group: &str, session_timeout_ms: u64) -> Option<Command> {
    let topics = TOPICS.join(",");
    let session = session_timeout_ms.to_string();
    let name = match client {
        Client::KafkaPython => "kafka-python",
        Client::Confluent => "confluent",
        Client::Kafkajs => {
            let modules = kafkajs_modules()?;
            let mut command = Command::new("node");
            command
                .arg(script("kafkajs.js"))
                .args(["member", addr, &topics, group, &session])
                .env("NODE_PATH", modules)
                .env("KAFKAJS_NO_PARTITIONER_WARNING", "1");
            return Some(command);
        }
    };
    let mut command = Command::new(python()?);
    command
        .arg(script("clients.py"))
        .args(["member", name, addr, &topics, group, &session]);
    Some(command)
}

/// One member process and every JSON line it printed so far.
struct Member {
    name: &'static str,
    proc: Proc,
    stdin: Option<ChildStdin>,
    lines: Receiver<Value>,
    seen: Vec<Value>,
}

impl Member {
    fn spawn(name: &'static str, mut command: Command) -> Member {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting member {name}: {e}"));
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                let value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad JSON line {line:?}: {e}"));
                if tx.send(value).is_err() {
                    return;
                }
            }
        });
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                eprintln!("[member {name}] {line}");
            }
        });
        let stdin = child.stdin.take();
        Member {
            name,
            proc: Proc(child, None),
            stdin,
            lines,
            seen: Vec::new(),
        }
    }

    fn send(&mut self, command: &str) {
        let stdin = self.stdin.as_mut().expect("member's stdin is open");
        writeln!(stdin, "{command}").unwrap();
        stdin.flush().unwrap();
    }

    /// Takes the lines printed since the last look; a refused commit fails the test (the
    /// record it followed would be delivered again).
    fn pump(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            eprintln!("[member {}] {line}", self.name);
            assert!(line.get("commit_failed").is_none(), "member {}: {line}", self.name);
            self.seen.push(line);
        }
    }

    fn last(&self, key: &str) -> Option<&Value> {
        self.seen.iter().rev().find_map(|line| line.get(key))
    }

    /// The topics of the member's latest assignment.
    fn assigned(&self) -> Option<Vec<String>> {
        self.last("assigned").map(strings)
    }

    /// The offset committed last by this member on each topic.
    fn committed(&self) -> BTreeMap<String, u64> {
        self.seen
            .iter()
            .filter_map(|line| line.get("committed"))
            .map(|c| (c[0].as_str().unwrap().to_owned(), c[1].as_u64().unwrap()))
            .collect()
    }

    /// The records the member consumed, in order.
    fn records(&self) -> impl Iterator<Item = &Value> {
        self.seen.iter().filter_map(|line| line.get("record"))
    }

    /// Offsets consumed on each topic, in the order consumed.
    fn offsets(&self) -> BTreeMap<String, Vec<u64>> {
        let mut offsets = BTreeMap::<String, Vec<u64>>::new();
        for record in self.records() {
            let topic = record["topic"].as_str().unwrap().to_owned();
            offsets
                .entry(topic)
                .or_default()
                .push(record["offset"].as_u64().unwrap());
        }
        offsets
    }

    /// Sends "close" (the client leaves the group) and waits for a clean exit.
    fn close(&mut self) {
        self.send("close");
        wait_for(&mut [&mut *self], "closed", |m| m[0].last("closed").is_some());
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(WAIT_S_MAX);
        let status = loop {
            if let Some(status) = self.proc.0.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "member {} did not exit", self.name);
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success(), "member {}: {status}", self.name);
    }

    /// SIGKILL: no LeaveGroup, no last commit.
    fn kill(&mut self) {
        self.proc.0.kill().unwrap();
        self.proc.0.wait().unwrap();
        self.pump();
    }
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {value}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

/// Waits until `done` holds for the members' lines; panics with them after WAIT_S_MAX.
fn wait_for(members: &mut [&mut Member], what: &str, done: impl Fn(&[&mut Member]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(WAIT_S_MAX);
    loop {
        for member in members.iter_mut() {
            member.pump();
        }
        if done(members) {
            return;
        }
        if Instant::now() >= deadline {
            let seen: Vec<String> = members.iter().map(|m| format!("{}: {:?}", m.name, m.seen)).collect();
            panic!("waited {WAIT_S_MAX} s for {what}; lines:\n{}", seen.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// True when `member` committed `offset` on every topic of `topics`.
fn committed_at(member: &Member, topics: &[String], offset: u64) -> bool {
    let committed = member.committed();
    topics.iter().all(|t| committed.get(t) == Some(&offset))
}

/// Appends `count` records to every topic: value "TOPIC/OFFSET", key "kOFFSET".
fn append(topics: &[Topic], count: u64) {
    for topic in topics {
        for _ in 0..count {
            let offset = topic.end_offset().0;
            let record = NewRecord::new(format!("{}/{offset}", topic.name())).with_key(format!("k{offset}"));
            assert_eq!(topic.append(&record).unwrap(), Offset(offset));
        }
    }
}

fn all_topics() -> Vec<String> {
    TOPICS.iter().map(|t| t.to_string()).collect()
}

/// Every record a member printed is the store's record, byte for byte.
fn check_bytes(member: &Member, store: &Store) {
    for record in member.records() {
        let topic = store.topic(record["topic"].as_str().unwrap()).unwrap();
        let offset = record["offset"].as_u64().unwrap();
        let mut want = as_json(&topic.read(Offset(offset)).unwrap());
        want["topic"] = record["topic"].clone();
        assert_eq!(record, &want, "member {}", member.name);
    }
}

/// The first member alone; then a second joins while records keep arriving and they split
/// the topics; then the first (paused, with records waiting for it) leaves or is killed
/// and the second takes over.
fn check_two_members(clients: [Client; 2], ending: Ending, group: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = serve(dir.path(), &[]);
    let session = ending.session_timeout_ms();
    let Some(first) = member_command(clients[0], &addr, group, session) else {
        return;
    };
    let Some(second) = member_command(clients[1], &addr, group, session) else {
        return;
    };
    let store = Store::open(dir.path()).unwrap();
    let topics: Vec<Topic> = TOPICS.iter().map(|t| store.topic_or_create(t).unwrap()).collect();
    append(&topics, BATCH_ALONE);

    // Alone, the first member gets every topic and consumes what is there.
    let mut a = Member::spawn("a", first);
    wait_for(&mut [&mut a], "a to get every topic and consume them", |m| {
        m[0].assigned() == Some(all_topics()) && committed_at(m[0], &all_topics(), BATCH_ALONE)
    });

    let (mut b, a_topics, b_topics) = join_second(&mut a, second, &topics);
    append(&topics, BATCH_SPLIT);
    let split_end = end_offset(&topics);
    wait_for(&mut [&mut a, &mut b], "each to consume its topics", |m| {
        committed_at(m[0], &a_topics, split_end) && committed_at(m[1], &b_topics, split_end)
    });

    // The first member pauses; records arrive for both; then it goes away.
    a.send("pause");
    wait_for(&mut [&mut a], "a to pause", |m| m[0].last("paused").is_some());
    assert_eq!(strings(a.last("paused").unwrap()), a_topics);
    append(&topics, BATCH_PAUSED);
    let end = end_offset(&topics);
    wait_for(&mut [&mut b], "b to consume its own topics", |m| {
        committed_at(m[0], &b_topics, end)
    });
    match ending {
        Ending::Leave => a.close(),
        Ending::Kill => a.kill(),
    }
    wait_for(&mut [&mut b], "b to take over every topic", |m| {
        m[0].assigned() == Some(all_topics()) && committed_at(m[0], &all_topics(), end)
    });
    check_offsets(&a, &b, &a_topics, split_end, end);
    check_bytes(&a, &store);
    check_bytes(&b, &store);
    for topic in &topics {
        assert_eq!(topic.committed(group).unwrap(), Some(Offset(end)), "{}", topic.name());
    }
    b.close();
    let status = server.terminate();
    assert!(status.success(), "serve after SIGTERM: {status}");
}

/// Starts the second member while a thread appends a record to every topic every
/// [`FLOWING_INTERVAL_MS`], until the two members' assignments split the topics two and
/// two; returns it and both members' topics.
fn join_second(a: &mut Member, second: Command, topics: &[Topic]) -> (Member, Vec<String>, Vec<String>) {
    let stop = AtomicBool::new(false);
    let (b, rounds) = std::thread::scope(|scope| {
        let appender = scope.spawn(|| {
            let mut rounds = 0;
            while !stop.load(Ordering::Relaxed) && rounds < FLOWING_ROUNDS_MAX {
                append(topics, 1);
                rounds += 1;
                std::thread::sleep(Duration::from_millis(FLOWING_INTERVAL_MS));
            }
            rounds
        });
        let mut b = Member::spawn("b", second);
        wait_for(&mut [&mut *a, &mut b], "a and b to split the topics", |m| {
            let (Some(mut ours), Some(theirs)) = (m[0].assigned(), m[1].assigned()) else {
                return false;
            };
            if ours.is_empty() || theirs.is_empty() {
                return false;
            }
            ours.extend(theirs);
            ours.sort();
            ours == all_topics()
        });
        stop.store(true, Ordering::Relaxed);
        (b, appender.join().unwrap())
    });
    assert!(rounds > 0, "no record appended while b joined");
    let (a_topics, b_topics) = (a.assigned().unwrap(), b.assigned().unwrap());
    assert_eq!((a_topics.len(), b_topics.len()), (2, 2), "{a_topics:?} / {b_topics:?}");
    (b, a_topics, b_topics)
}

/// The end offset every topic shares (the test appends to all alike).
fn end_offset(topics: &[Topic]) -> u64 {
    let end = topics[0].end_offset().0;
    for topic in topics {
        assert_eq!(topic.end_offset().0, end, "{}", topic.name());
    }
    end
}

/// The exact offsets each member consumed, topic by topic: the first from 0 up to its
/// last commit there, the second from that commit to the end. On the first's topics that
/// commit is `split_end` (all before the pause); on the second's it lies between the
/// records there before the second joined and `split_end`.
fn check_offsets(a: &Member, b: &Member, a_topics: &[String], split_end: u64, end: u64) {
    let (a_offsets, b_offsets, a_committed) = (a.offsets(), b.offsets(), a.committed());
    for topic in TOPICS {
        let handover = a_committed[topic];
        if a_topics.iter().any(|t| t == topic) {
            assert_eq!(handover, split_end, "first member's last commit on {topic}");
        } else {
            assert!(
                (BATCH_ALONE..split_end).contains(&handover),
                "first member's last commit on {topic}: {handover}"
            );
        }
        let a_want: Vec<u64> = (0..handover).collect();
        let b_want: Vec<u64> = (handover..end).collect();
        assert_eq!(
            a_offsets.get(topic).cloned().unwrap_or_default(),
            a_want,
            "first member on {topic}"
        );
        assert_eq!(
            b_offsets.get(topic).cloned().unwrap_or_default(),
            b_want,
            "second member on {topic}"
        );
    }
}

#[test]
fn kafka_python_members_split_topics_and_one_leaves() {
    check_two_members([Client::KafkaPython, Client::KafkaPython], Ending::Leave, "g-kp");
}

#[test]
fn confluent_members_split_topics_and_one_is_killed() {
    check_two_members([Client::Confluent, Client::Confluent], Ending::Kill, "g-ck");
}

#[test]
fn kafkajs_members_split_topics_and_one_leaves() {
    check_two_members([Client::Kafkajs, Client::Kafkajs], Ending::Leave, "g-js");
}

/// One group, two clients: librdkafka follows the kafka-python leader's assignment, and
/// takes over once the kafka-python member is killed.
#[test]
fn a_kafka_python_member_killed_beside_a_confluent_member() {
    check_two_members([Client::KafkaPython, Client::Confluent], Ending::Kill, "g-mixed");
}

#[test]
fn kafkajs_members_split_topics_and_one_is_killed() {
    check_two_members([Client::Kafkajs, Client::Kafkajs], Ending::Kill, "g-js-killed");
}

/// The librdkafka member leads and leaves; the kafka-python member takes over.
#[test]
fn a_confluent_member_leaves_a_kafka_python_member() {
    check_two_members([Client::Confluent, Client::KafkaPython], Ending::Leave, "g-mixed-left");
}
