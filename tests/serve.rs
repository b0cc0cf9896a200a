//! `trailkeep serve` driven by real Kafka clients: kafka-python and confluent-kafka
//! (librdkafka) through tests/kafka/clients.py, from the venv `$TRAILKEEP_KAFKA_PYTHON`
//! (scripts/kafka.sh install). The real binary runs on a free port; the test process opens
//! the same store as a reader (and as the appender of topics the server does not write)
//! and compares every field of every record both ways: produced by a client and read
//! with the library, appended with the library and consumed by a client. Also: consumer
//! group commits visible to `trailkeep groups` and resumed by a restarted consumer,
//! ListOffsets by time, long-poll Fetch woken by appends (the server's own and another
//! process's), records over the store's limits refused whole, bad frames closing only
//! their connection, SIGTERM closing the store, and idempotent producers: real clients'
//! pipelined batches taken once and in order, a producer going on across a server
//! restart, and retries, gaps and stale epochs answered on the wire; kafkajs
//! (`$TRAILKEEP_NODE_MODULES`, tests/kafka/kafkajs.js) round trip and idempotent producer.
//! Raw requests (tests/kafka/wire.rs) go through every version of every API the server's
//! ApiVersions advertises, Produce, Fetch and ListOffsets in depth (compressed batches and
//! long polls in every Produce and Fetch version: tests/serve_wire.rs). Without the
//! clients the tests fail under CI (`CI` set) and print "skipped: ..." otherwise.

#[path = "kafka/support.rs"]
mod support;
#[path = "kafka/wire.rs"]
mod wire;

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use support::*;
use trailkeep::{NewRecord, Offset, Store};

fn check_round_trip(client: &str, other: &str) {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = serve(dir.path(), &[]);
    let store = Store::open(dir.path()).unwrap();
    let made = format!("{client}-made");

    // Produced by one client, consumed by the other and read with the library.
    let sent = sample_records(12, 7);
    let acks = client_run(&python, &["produce", client, &addr, &made], &to_stdin(&sent));
    let offsets: Vec<u64> = acks.iter().map(|a| a["offset"].as_u64().unwrap()).collect();
    assert_eq!(offsets, (0..12).collect::<Vec<_>>());
    let consumed = client_run(&python, &["consume", other, &addr, &made, "12"], "");
    let topic = store.topic(&made).unwrap();
    topic.refresh().unwrap();
    assert_eq!(topic.end_offset(), Offset(12));
    for (i, (want, got)) in sent.iter().zip(&consumed).enumerate() {
        let record = topic.read(Offset(i as u64)).unwrap();
        assert_eq!(got, &as_json(&record), "record {i}: consumed vs store");
        assert_eq!(got["key"], want["key"], "record {i}");
        assert_eq!(got["value"], want["value"], "record {i}");
        assert_eq!(got["headers"], want["headers"], "record {i}");
        assert_eq!(
            record.event_time_us,
            Some(want["timestamp"].as_i64().unwrap() * 1000),
            "record {i}"
        );
    }

    // Consumer group: commit after 5, `trailkeep groups` shows it, a restart resumes there.
    let group = format!("g-{client}");
    let first = client_run(&python, &["consume", client, &addr, &made, "5", &group], "");
    assert_eq!(offsets_of(&first), (0..5).collect::<Vec<_>>());
    let groups = trailkeep(dir.path()).args(["groups", &made]).output().unwrap();
    let listing = String::from_utf8_lossy(&groups.stdout);
    let row: Vec<&str> = listing
        .lines()
        .find(|l| l.split_whitespace().next() == Some(group.as_str()))
        .unwrap_or_else(|| panic!("group {group} not in `trailkeep groups`:\n{listing}"))
        .split_whitespace()
        .collect();
    assert_eq!(&row[1..4], &["5", "12", "7"], "position, end, lag: {listing}");
    let second = client_run(&python, &["consume", client, &addr, &made, "4", &group], "");
    assert_eq!(offsets_of(&second), (5..9).collect::<Vec<_>>());
    assert_eq!(topic.committed(&group).unwrap(), Some(Offset(9)));

    // ListOffsets by time: the first record appended at or after T.
    let times: Vec<i64> = consumed.iter().map(|r| r["timestamp"].as_i64().unwrap()).collect();
    let t = times[6];
    let expect = times.iter().position(|&x| x >= t).unwrap() as i64;
    let found = client_run(&python, &["offset_for_time", client, &addr, &made, &t.to_string()], "");
    assert_eq!(found[0]["offset"], expect);
    let none = client_run(
        &python,
        &[
            "offset_for_time",
            client,
            &addr,
            &made,
            &(times[11] + 60_000).to_string(),
        ],
        "",
    );
    assert_eq!(none[0]["offset"], -1);

    // Appended with the library (this process holds the append lock), consumed by a client.
    let lib = format!("{client}-lib");
    let lib_topic = store.topic_or_create(&lib).unwrap();
    for i in 0..6u8 {
        let mut record = NewRecord::new(vec![b'v', i, 0xfe]).with_event_time_us(1_600_000_000_000_000 + i64::from(i));
        if i % 2 == 0 {
            record = record.with_key(format!("trace-{i}")).with_header("agent", vec![i]);
        }
        lib_topic.append(&record).unwrap();
    }
    let got = client_run(&python, &["consume", client, &addr, &lib, "6"], "");
    for (i, got) in got.iter().enumerate() {
        assert_eq!(
            got,
            &as_json(&lib_topic.read(Offset(i as u64)).unwrap()),
            "library record {i}"
        );
    }

    // Long poll: a waiting Fetch gets a record appended later by this process (another
    // process to the server) and one produced through the server.
    let late = long_poll(&python, client, &addr, &lib, || {
        lib_topic.append(&NewRecord::new("late").with_key("k")).unwrap();
    });
    assert_eq!(late, as_json(&lib_topic.read(Offset(6)).unwrap()));
    let late = long_poll(&python, client, &addr, &made, || {
        client_run(
            &python,
            &["produce", other, &addr, &made],
            &to_stdin(&sample_records(1, 9)),
        );
    });
    assert_eq!(late["offset"], 12);
    assert_eq!(late["value"], sample_records(1, 9)[0]["value"]);

    // Over a store limit (a key over 1 KiB): refused whole with MESSAGE_TOO_LARGE.
    let big_key = serde_json::json!({"key": hex(&[b'k'; 2000]), "value": "00", "headers": [], "expect_error": true});
    let refused = client_run(&python, &["produce", client, &addr, &made], &to_stdin(&[big_key]));
    let error = refused[0]["error"]
        .as_str()
        .unwrap_or_else(|| panic!("not refused: {refused:?}"));
    assert!(
        error.to_uppercase().contains("TOO_LARGE") || error.contains("TooLarge"),
        "{error}"
    );
    topic.refresh().unwrap();
    assert_eq!(
        topic.end_offset(),
        Offset(13),
        "nothing of the refused record was appended"
    );

    // SIGTERM closes the store: the topics' append locks are free again.
    let status = server.terminate();
    assert!(status.success(), "serve after SIGTERM: {status}");
    let mut append = trailkeep(dir.path())
        .args(["append", &made])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    append.stdin.take().unwrap().write_all(b"after\n").unwrap();
    let output = wait_output(append, Duration::from_secs(20));
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

fn client_run(python: &Path, args: &[&str], stdin: &str) -> Vec<Value> {
    client(python, args, stdin)
}

fn offsets_of(records: &[Value]) -> Vec<u64> {
    records.iter().map(|r| r["offset"].as_u64().unwrap()).collect()
}

/// Starts a long-polling consumer at the end of `topic`, runs `append` once it is waiting,
/// and returns the record it received.
fn long_poll(python: &Path, client: &str, addr: &str, topic: &str, append: impl FnOnce()) -> Value {
    let mut child = std::process::Command::new(python)
        .arg(script("clients.py"))
        .args(["longpoll", client, addr, topic])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    assert_eq!(next_json(&mut stdout), serde_json::json!({"ready": true}));
    std::thread::sleep(Duration::from_millis(300));
    append();
    let record = next_json(&mut stdout);
    let output = wait_output(child, Duration::from_secs(30));
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    record
}

#[test]
fn kafka_python_produces_and_consumes() {
    check_round_trip("kafka-python", "confluent");
}

#[test]
fn confluent_kafka_produces_and_consumes() {
    check_round_trip("confluent", "kafka-python");
}

/// A request frame: size, api key, version, correlation id, client id, body.
fn frame(api_key: i16, version: i16, correlation_id: i32, body: &[u8]) -> Vec<u8> {
    let mut payload = Vec::new();
    payload.extend_from_slice(&api_key.to_be_bytes());
    payload.extend_from_slice(&version.to_be_bytes());
    payload.extend_from_slice(&correlation_id.to_be_bytes());
    payload.extend_from_slice(&4i16.to_be_bytes());
    payload.extend_from_slice(b"test");
    payload.extend_from_slice(body);
    let mut out = (payload.len() as i32).to_be_bytes().to_vec();
    out.extend(payload);
    out
}

/// Sends `request` as API `api_key` in `version` on a new connection and returns the
/// response after its size prefix (the correlation id first).
fn send_request(addr: &str, api_key: i16, version: i16, request: &impl kafka_protocol::protocol::Encodable) -> Vec<u8> {
    let mut body = bytes::BytesMut::new();
    request.encode(&mut body, version).unwrap();
    let mut socket = TcpStream::connect(addr).unwrap();
    socket.write_all(&frame(api_key, version, 5, &body)).unwrap();
    let mut size = [0u8; 4];
    socket.read_exact(&mut size).unwrap();
    let mut response = vec![0u8; i32::from_be_bytes(size) as usize];
    socket.read_exact(&mut response).unwrap();
    response
}

fn closed_by_server(mut socket: TcpStream) -> bool {
    socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 64];
    let read = socket.read(&mut buf);
    read.is_err() || read.is_ok_and(|n| n == 0)
}

/// Batches compressed by librdkafka with each codec Kafka has, and by kafka-python with
/// gzip, are decompressed by the server's own bounded readers (src/server/decompress.rs)
/// and stored record for record.
#[test]
fn compressed_batches_from_a_real_client() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = serve(dir.path(), &[]);
    let store = Store::open(dir.path()).unwrap();
    let sent = sample_records(40, 3);
    // kafka-python compresses with gzip from Python's standard library (its other codecs
    // need extra packages), librdkafka with its own builds of all four.
    let runs = [
        ("kafka-python", "gzip"),
        ("confluent", "gzip"),
        ("confluent", "snappy"),
        ("confluent", "lz4"),
        ("confluent", "zstd"),
    ];
    for (client, codec) in runs {
        let name = format!("zipped-{client}-{codec}");
        let run = format!("{client} {codec}");
        let acks = client_run(&python, &["produce", client, &addr, &name, codec], &to_stdin(&sent));
        assert_eq!(offsets_of(&acks), (0..40).collect::<Vec<_>>(), "{run}");
        let topic = store.topic(&name).unwrap();
        topic.refresh().unwrap();
        assert_eq!(topic.end_offset(), Offset(40), "{run}");
        for (i, want) in sent.iter().enumerate() {
            let record = topic.read(Offset(i as u64)).unwrap();
            let got = as_json(&record);
            for field in ["key", "value", "headers"] {
                assert_eq!(got[field], want[field], "{run} record {i} {field}");
            }
            let event_ms = want["timestamp"].as_i64().unwrap();
            assert_eq!(record.event_time_us, Some(event_ms * 1000), "{run} record {i}");
        }
    }
    let status = server.terminate();
    assert!(status.success(), "serve after SIGTERM: {status}");
}

/// A Fetch asking for 2 GiB of a 64 MB topic gets at most the server's 55 MiB
/// (`FETCH_BYTES_MAX`), then the rest on the next Fetch.
#[test]
fn a_fetch_response_is_capped_whatever_the_client_asks() {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{FetchRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;

    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = serve(dir.path(), &[]);
    let store = Store::open(dir.path()).unwrap();
    let topic = store.create_topic("big", Default::default()).unwrap();
    let value = vec![b'v'; 4_000_000];
    for _ in 0..16 {
        topic.append(&NewRecord::new(value.clone())).unwrap();
    }
    let fetch_from = |offset: i64| {
        let partition = FetchPartition::default()
            .with_fetch_offset(offset)
            .with_partition_max_bytes(i32::MAX);
        let request = FetchRequest::default()
            .with_replica_id((-1).into())
            .with_max_bytes(i32::MAX)
            .with_min_bytes(1)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_static_str("big")))
                .with_partitions(vec![partition])]);
        send_request(&addr, 1, 4, &request).len()
    };
    let first = fetch_from(0);
    assert!(
        first <= trailkeep::server::FETCH_BYTES_MAX + (64 << 10),
        "{first} bytes"
    );
    assert!(
        first >= 13 * value.len(),
        "{first} bytes: fewer records than the cap holds"
    );
    // The rest (two or three records) comes with the next fetch from where it stopped.
    let rest = fetch_from((first / value.len()) as i64);
    assert!(rest >= 2 * value.len() && rest < 4 * value.len(), "{rest} bytes");
    let status = server.terminate();
    assert!(status.success(), "serve after SIGTERM: {status}");
}

/// A Produce of a few kilobytes that zstd-decompresses to 168 MB (more than
/// `DECOMPRESSED_BYTES_MAX` allows one request) is refused with CORRUPT_MESSAGE before it
/// fills memory; nothing is appended and the server serves on.
#[test]
fn a_decompression_bomb_is_refused() {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ProduceRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    use trailkeep::server::records::{kafka_record, KafkaHeaders};

    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = serve(dir.path(), &[]);
    let zeros = bytes::Bytes::from(vec![0u8; 4_000_000]);
    let records: Vec<_> = (0..42)
        .map(|i| {
            kafka_record(
                i,
                i as i32 - 1,
                1_700_000_000_000,
                None,
                Some(zeros.clone()),
                KafkaHeaders::new(),
            )
        })
        .collect();
    let batch = wire::record_batch(&records, kafka_protocol::records::Compression::Zstd);
    assert!(batch.len() < 64 << 10, "{} bytes compressed", batch.len());
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("bomb")))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch))])]);
    let response = send_request(&addr, 0, 3, &request);
    // v3: correlation id, topic array (1), name "bomb", partition array (1), index 0, then
    // the partition's error code.
    let error = &response[4 + 4 + 2 + 4 + 4 + 4..][..2];
    assert_eq!(i16::from_be_bytes([error[0], error[1]]), 2, "CORRUPT_MESSAGE");
    // Refused before the topic is even created.
    let store = Store::open(dir.path()).unwrap();
    assert!(store.topic("bomb").is_err(), "the topic exists");
    // Still serving: an ApiVersions request is answered.
    let versions = kafka_protocol::messages::ApiVersionsRequest::default();
    assert_eq!(send_request(&addr, 18, 0, &versions)[4..6], [0, 0]);
    let status = server.terminate();
    assert!(status.success(), "serve after SIGTERM: {status}");
}

/// JoinGroup with a session timeout outside Kafka's default bounds (6 s ..= 30 min) gets
/// INVALID_SESSION_TIMEOUT (26), so no member can stay forever without heartbeats; one
/// inside them joins.
#[test]
fn join_group_session_timeouts_are_bounded() {
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use kafka_protocol::messages::{GroupId, JoinGroupRequest};
    use kafka_protocol::protocol::StrBytes;

    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = serve(dir.path(), &[]);
    let join = |session_timeout_ms: i32| {
        let request = JoinGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("g")))
            .with_session_timeout_ms(session_timeout_ms)
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_protocols(vec![
                JoinGroupRequestProtocol::default().with_name(StrBytes::from_static_str("range"))
            ]);
        let response = send_request(&addr, 11, 0, &request);
        i16::from_be_bytes([response[4], response[5]])
    };
    assert_eq!(join(1_000), 26, "1 s");
    assert_eq!(join(i32::MAX), 26, "24 days");
    assert_eq!(join(-1), 26, "negative");
    assert_eq!(join(10_000), 0, "10 s");
    let status = server.terminate();
    assert!(status.success(), "serve after SIGTERM: {status}");
}

/// SIGTERM sent the moment `serve` says it is ready stops it cleanly: its handler is in
/// place before that line (it used to be installed when the server first polled it, and a
/// signal in between killed the process: "signal: 15 (SIGTERM)" under load).
#[test]
fn sigterm_right_after_the_ready_line_stops_cleanly() {
    for round in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let (server, _addr) = serve(dir.path(), &[]);
        // SAFETY-free: libc::kill of our own child, straight from the thread that read the line.
        let sent = unsafe { libc::kill(server.0.id() as libc::pid_t, libc::SIGTERM) };
        assert_eq!(sent, 0, "round {round}: kill");
        let status = server.terminate();
        assert!(
            status.success(),
            "round {round}: serve after an early SIGTERM: {status}"
        );
    }
}

/// Bad frames close their own connection with a log line; other clients go on. An
/// ApiVersions in an unknown version gets UNSUPPORTED_VERSION, as Kafka answers.
#[test]
fn bad_frames_close_only_their_connection() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = serve(dir.path(), &[]);
    let healthy = TcpStream::connect(&addr).unwrap();

    let mut oversized = TcpStream::connect(&addr).unwrap();
    oversized.write_all(&(200i32 << 20).to_be_bytes()).unwrap();
    assert!(
        closed_by_server(oversized),
        "an oversized frame must close the connection"
    );

    let mut unknown_api = TcpStream::connect(&addr).unwrap();
    unknown_api.write_all(&frame(9999, 0, 1, &[])).unwrap();
    assert!(closed_by_server(unknown_api));

    let mut malformed = TcpStream::connect(&addr).unwrap();
    // Metadata v1 whose topic array claims 1000 entries that are not there.
    malformed.write_all(&frame(3, 1, 2, &1000i32.to_be_bytes())).unwrap();
    assert!(closed_by_server(malformed));

    // An array length of 2^31 - 1 in a 26-byte frame: sized by the bytes left, not by the
    // length (the released kafka-protocol 0.18 reserved ~100 GB and aborted the server).
    let mut huge_array = TcpStream::connect(&addr).unwrap();
    huge_array.write_all(&frame(3, 1, 3, &i32::MAX.to_be_bytes())).unwrap();
    assert!(closed_by_server(huge_array));

    let mut future = TcpStream::connect(&addr).unwrap();
    future.write_all(&frame(18, 99, 77, &[])).unwrap();
    let mut size = [0u8; 4];
    future.read_exact(&mut size).unwrap();
    let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
    future.read_exact(&mut body).unwrap();
    assert_eq!(i32::from_be_bytes(body[0..4].try_into().unwrap()), 77, "correlation id");
    assert_eq!(
        i16::from_be_bytes(body[4..6].try_into().unwrap()),
        35,
        "UNSUPPORTED_VERSION"
    );

    // The server still serves: the idle connection is open and a client works.
    drop(healthy);
    let acks = client(
        &python,
        &["produce", "confluent", &addr, "after-bad"],
        &to_stdin(&sample_records(2, 1)),
    );
    assert_eq!(acks.len(), 2);
    let status = server.terminate();
    assert!(status.success(), "serve after SIGTERM: {status}");
}

/// Runs tests/kafka/kafkajs.js with `args`; its JSON lines, or a panic with its stderr.
fn kafkajs_run(modules: &Path, args: &[&str]) -> Vec<Value> {
    let child = std::process::Command::new("node")
        .arg(script("kafkajs.js"))
        .args(args)
        .env("NODE_PATH", modules)
        .env("KAFKAJS_NO_PARTITIONER_WARNING", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting node");
    let output = wait_output(child, Duration::from_secs(60));
    assert!(
        output.status.success(),
        "kafkajs {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    json_lines(&output.stdout)
}

/// kafkajs (node): produce with acks=-1, then a consumer group (subscribe, commit) reads
/// everything back; the store holds the same bytes and `trailkeep groups` the commit.
#[test]
fn kafkajs_produces_and_consumes() {
    let Some(modules) = kafkajs_modules() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = serve(dir.path(), &[]);
    let lines = kafkajs_run(&modules, &["roundtrip", &addr, "js-made", "g-js", "6"]);
    assert_eq!(lines[0], serde_json::json!({"offset": 0}));
    let store = Store::open(dir.path()).unwrap();
    let topic = store.topic("js-made").unwrap();
    topic.refresh().unwrap();
    assert_eq!(topic.end_offset(), Offset(6));
    for (i, got) in lines[1..].iter().enumerate() {
        let record = topic.read(Offset(i as u64)).unwrap();
        assert_eq!(got, &as_json(&record), "record {i}");
        assert_eq!(record.value, format!("{{\"js\":{i}}}").into_bytes());
        assert_eq!(record.event_time_us, Some((1_700_000_000_000 + i as i64) * 1000));
    }
    assert_eq!(lines.len(), 7);
    assert_eq!(topic.committed("g-js").unwrap(), Some(Offset(6)));
    let status = server.terminate();
    assert!(status.success(), "serve after SIGTERM: {status}");
}

/// What kafkajs.js's idempotent mode sent as record `i` of a call: key (none for record
/// 1), value and headers, as `as_json` shows them.
fn kafkajs_sent(topic: &str, round: u64, call: &str, i: u64) -> Value {
    let key = (i != 1).then(|| hex(format!("{topic}/{round}/{call}/{i}").as_bytes()));
    let value = format!("{{\"topic\":\"{topic}\",\"round\":{round},\"call\":\"{call}\",\"i\":{i}}}");
    let headers = if i.is_multiple_of(2) {
        serde_json::json!([
            ["round", hex(round.to_string().as_bytes())],
            ["bin", hex(&[0, 255, i as u8])]
        ])
    } else {
        serde_json::json!([])
    };
    serde_json::json!({"key": key, "value": hex(value.as_bytes()), "headers": headers})
}

/// kafkajs's idempotent producer (idempotent: true, maxInFlightRequests: 1, acks=-1),
/// rounds of a sendBatch to three topics and a concurrent send to the first: every call's
/// records are taken once, at the offsets its ack names, the acks of a topic tile its
/// offsets without gap or overlap in round order, and a consumer group reads each topic
/// back exactly once, every field as sent.
#[test]
fn kafkajs_idempotent_producer_is_taken_once_in_order() {
    const ROUNDS: u64 = 8;
    let Some(modules) = kafkajs_modules() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = serve(dir.path(), &[]);
    let topics = ["js-idem-a", "js-idem-b", "js-idem-c"];
    let lines = kafkajs_run(
        &modules,
        &["idempotent", &addr, &topics.join(","), "g-js-idem", &ROUNDS.to_string()],
    );
    let (acks, consumed): (Vec<&Value>, Vec<&Value>) = lines.iter().partition(|l| l.get("ack").is_some());
    let store = Store::open(dir.path()).unwrap();
    for name in topics {
        let topic = store.topic(name).unwrap();
        topic.refresh().unwrap();
        let end = check_kafkajs_acks(&topic, name, acks.iter().map(|a| &a["ack"]));
        assert_eq!(topic.end_offset(), Offset(end), "{name}: a batch was appended twice");
        let got: Vec<&Value> = consumed.iter().copied().filter(|r| r["topic"] == name).collect();
        assert_eq!(got.len() as u64, end, "{name}: records consumed");
        for (offset, got) in got.iter().enumerate() {
            let mut want = as_json(&topic.read(Offset(offset as u64)).unwrap());
            want["topic"] = Value::from(name);
            assert_eq!(*got, &want, "{name} record {offset}: consumed vs store");
        }
    }
    assert_eq!(consumed.len(), lines.len() - acks.len());
    let status = server.terminate();
    assert!(status.success(), "serve after SIGTERM: {status}");
}

/// Checks kafkajs's acks for topic `name` against the store: they tile 0..end in round
/// order, and each call's records sit at its ack's offsets in the order sent. Returns end.
fn check_kafkajs_acks<'a>(topic: &trailkeep::Topic, name: &str, acks: impl Iterator<Item = &'a Value>) -> u64 {
    let mut acks: Vec<&Value> = acks.filter(|a| a["topic"] == name).collect();
    acks.sort_by_key(|a| a["offset"].as_u64().unwrap());
    let mut end = 0;
    let mut last_round = 0;
    for ack in &acks {
        let (round, call) = (ack["round"].as_u64().unwrap(), ack["call"].as_str().unwrap());
        assert_eq!(ack["offset"].as_u64(), Some(end), "{name}: gap or overlap at {ack}");
        assert!(round >= last_round, "{name}: round {round} after round {last_round}");
        last_round = round;
        for i in 0..ack["count"].as_u64().unwrap() {
            let record = as_json(&topic.read(Offset(end + i)).unwrap());
            let want = kafkajs_sent(name, round, call, i);
            for field in ["key", "value", "headers"] {
                assert_eq!(record[field], want[field], "{name} offset {} ({ack}) {field}", end + i);
            }
        }
        end += ack["count"].as_u64().unwrap();
    }
    end
}

/// FindCoordinator for a transactional id (key type 1), which transactional producers send
/// before InitProducerId, gets TRANSACTIONAL_ID_AUTHORIZATION_FAILED (53) saying
/// transactions are not supported, so clients fail at once (INVALID_REQUEST had
/// confluent-kafka retry forever); a group (key type 0) still finds this server.
#[test]
fn find_coordinator_for_a_transaction_is_refused() {
    use kafka_protocol::messages::FindCoordinatorRequest;
    use kafka_protocol::protocol::StrBytes;

    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = serve(dir.path(), &[]);
    // v1 and v2 (send_request writes the non-flexible request header of versions < 3).
    for version in 1..=2 {
        let request = FindCoordinatorRequest::default()
            .with_key(StrBytes::from_static_str("tx-1"))
            .with_key_type(1);
        let response = send_request(&addr, 10, version, &request);
        // Correlation id, throttle time, error code, error message.
        let error = i16::from_be_bytes([response[8], response[9]]);
        assert_eq!(error, 53, "v{version}: TRANSACTIONAL_ID_AUTHORIZATION_FAILED");
        let message = String::from_utf8_lossy(&response[10..]);
        assert!(
            message.contains("transactions are not supported"),
            "v{version}: {message}"
        );
        let group = FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("g"));
        let found = send_request(&addr, 10, version, &group);
        assert_eq!(i16::from_be_bytes([found[8], found[9]]), 0, "v{version}: a group");
    }
    let status = server.terminate();
    assert!(status.success(), "serve after SIGTERM: {status}");
}

/// CreateTopics with 0 partitions (or fewer than -1) gets INVALID_PARTITIONS (37) and
/// creates nothing, as Kafka answers; -1 (the default) and 1 create the topic.
#[test]
fn create_topics_refuses_zero_partitions() {
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    use kafka_protocol::messages::{CreateTopicsRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;

    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = serve(dir.path(), &[]);
    let create = |name: &'static str, num_partitions: i32| {
        let topic = CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_static_str(name)))
            .with_num_partitions(num_partitions)
            .with_replication_factor(-1);
        let request = CreateTopicsRequest::default()
            .with_timeout_ms(5000)
            .with_topics(vec![topic]);
        let response = send_request(&addr, 19, 2, &request);
        // v2: correlation id, throttle time, topic array (1), name, error code.
        let at = 4 + 4 + 4 + 2 + name.len();
        i16::from_be_bytes([response[at], response[at + 1]])
    };
    assert_eq!(create("zero", 0), 37, "0 partitions");
    assert_eq!(create("minus-two", -2), 37, "-2 partitions");
    assert_eq!(create("default", -1), 0, "-1: the default");
    assert_eq!(create("one", 1), 0, "1 partition");
    let store = Store::open(dir.path()).unwrap();
    assert!(store.topic("zero").is_err(), "a topic was created for 0 partitions");
    assert!(store.topic("default").is_ok());
    let status = server.terminate();
    assert!(status.success(), "serve after SIGTERM: {status}");
}

/// Idempotent producers of kafka-python and librdkafka (confluent-kafka), hundreds of
/// records in small batches with up to 5 requests in flight, are taken whole and in
/// order: the server's sequence checks (src/server/producers.rs) refuse nothing a real
/// client sends.
#[test]
fn idempotent_producers_from_real_clients_are_taken_once_in_order() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = serve(dir.path(), &[]);
    let store = Store::open(dir.path()).unwrap();
    let sent = sample_records(300, 11);
    for client in ["kafka-python", "confluent"] {
        let name = format!("idempotent-{client}");
        let acks = client_run(
            &python,
            &["idempotent", client, &addr, &name, "pipelined"],
            &to_stdin(&sent),
        );
        assert_eq!(offsets_of(&acks), (0..300).collect::<Vec<_>>(), "{client}");
        let topic = store.topic(&name).unwrap();
        topic.refresh().unwrap();
        assert_eq!(topic.end_offset(), Offset(300), "{client}: a batch was appended twice");
        for (i, want) in sent.iter().enumerate() {
            let got = as_json(&topic.read(Offset(i as u64)).unwrap());
            assert_eq!(got["value"], want["value"], "{client} record {i}");
        }
    }
    let status = server.terminate();
    assert!(status.success(), "serve after SIGTERM: {status}");
}

/// A restarted server has forgotten every producer (docs/server.md): an idempotent
/// producer that goes on producing after the restart, at its next sequence, is taken
/// (where UNKNOWN_PRODUCER_ID would stop or reset it), by kafka-python, librdkafka and
/// kafkajs (when its modules are there).
#[test]
fn an_idempotent_producer_goes_on_after_a_server_restart() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut server = serve_at(dir.path(), &addr, &[]);
    let sent = sample_records(6, 5);
    let mut clients: Vec<(&str, std::process::Command)> = Vec::new();
    for client in ["kafka-python", "confluent"] {
        let mut command = std::process::Command::new(&python);
        let name = format!("restarted-{client}");
        command
            .arg(script("clients.py"))
            .args(["idempotent", client, &addr, &name]);
        clients.push((client, command));
    }
    if let Some(modules) = kafkajs_modules() {
        let mut command = std::process::Command::new("node");
        command
            .arg(script("kafkajs.js"))
            .args(["idempotent-lines", &addr, "restarted-kafkajs"])
            .env("NODE_PATH", &modules)
            .env("KAFKAJS_NO_PARTITIONER_WARNING", "1");
        clients.push(("kafkajs", command));
    }
    for (client, mut command) in clients {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        for (i, record) in sent.iter().enumerate() {
            if i == 3 {
                let status = server.terminate();
                assert!(status.success(), "{client}: serve after SIGTERM: {status}");
                server = serve_at(dir.path(), &addr, &[]);
            }
            writeln!(stdin, "{record}").unwrap();
            let ack = next_json(&mut stdout);
            assert_eq!(ack, serde_json::json!({"offset": i}), "{client} record {i}");
        }
        drop(stdin);
        let output = wait_output(child, Duration::from_secs(60));
        assert!(
            output.status.success(),
            "{client}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let store = Store::open(dir.path()).unwrap();
        let topic = store.topic(&format!("restarted-{client}")).unwrap();
        assert_eq!(topic.end_offset(), Offset(6), "{client}");
        for (i, want) in sent.iter().enumerate() {
            let got = as_json(&topic.read(Offset(i as u64)).unwrap());
            for field in ["key", "value", "headers"] {
                assert_eq!(got[field], want[field], "{client} record {i} {field}");
            }
        }
    }
    let status = server.terminate();
    assert!(status.success(), "serve after SIGTERM: {status}");
}

/// A Produce of one raw batch of `count` records from (producer id, epoch) at
/// `sequence`, in `version`; the partition's answer.
fn produce_sequenced(
    addr: &str,
    version: i16,
    producer: (i64, i16),
    sequence: i32,
    count: i32,
) -> kafka_protocol::messages::produce_response::PartitionProduceResponse {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ProduceRequest, ProduceResponse, TopicName};
    use kafka_protocol::protocol::{Decodable, StrBytes};

    let records: Vec<_> = (0..count)
        .map(|i| {
            let value = Some(bytes::Bytes::from(format!(
                "{}.{}.{}",
                producer.0,
                producer.1,
                sequence + i
            )));
            let mut record = trailkeep::server::records::kafka_record(i64::from(i), 0, 0, None, value, Vec::new());
            record.producer_id = producer.0;
            record.producer_epoch = producer.1;
            record.sequence = sequence + i;
            record
        })
        .collect();
    let partition = PartitionProduceData::default()
        .with_index(0)
        .with_records(Some(wire::uncompressed(&records)));
    let topic = TopicProduceData::default()
        .with_name(TopicName(StrBytes::from_static_str("sequenced")))
        .with_partition_data(vec![partition]);
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![topic]);
    let response = send_request(addr, 0, version, &request);
    // After the correlation id (response header v0: Produce is not flexible before v9).
    let mut body = bytes::Bytes::copy_from_slice(&response[4..]);
    let mut decoded = ProduceResponse::decode(&mut body, version).unwrap();
    decoded.responses.remove(0).partition_responses.remove(0)
}

/// On the wire, in Produce v3 and v8 (which carries an error message), to a producer id
/// from InitProducerId: a retried batch gets its first offset, a gap
/// OUT_OF_ORDER_SEQUENCE_NUMBER (45), a stale epoch INVALID_PRODUCER_EPOCH (47), and
/// nothing refused is appended.
#[test]
fn produce_answers_sequence_and_epoch_errors_on_the_wire() {
    use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse};
    use kafka_protocol::protocol::Decodable;

    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = serve(dir.path(), &[]);
    let mut end = 0;
    for version in [3, 8] {
        let request = InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000);
        let response = send_request(&addr, 22, 1, &request);
        let init = InitProducerIdResponse::decode(&mut bytes::Bytes::copy_from_slice(&response[4..]), 1).unwrap();
        assert_eq!((init.error_code, init.producer_epoch), (0, 0), "v{version}");
        let id = init.producer_id.0;
        let first = produce_sequenced(&addr, version, (id, 0), 0, 2);
        assert_eq!((first.error_code, first.base_offset), (0, end), "v{version} first");
        let retry = produce_sequenced(&addr, version, (id, 0), 0, 2);
        assert_eq!((retry.error_code, retry.base_offset), (0, end), "v{version} retry");
        let gap = produce_sequenced(&addr, version, (id, 0), 3, 1);
        assert_eq!((gap.error_code, gap.base_offset), (45, -1), "v{version} gap");
        if version >= 8 {
            let message = gap.error_message.map(|m| m.to_string()).unwrap_or_default();
            assert!(message.contains("expected 2"), "v{version}: {message:?}");
        }
        let bumped = produce_sequenced(&addr, version, (id, 1), 0, 1);
        assert_eq!(
            (bumped.error_code, bumped.base_offset),
            (0, end + 2),
            "v{version} epoch 1"
        );
        let stale = produce_sequenced(&addr, version, (id, 0), 2, 1);
        assert_eq!((stale.error_code, stale.base_offset), (47, -1), "v{version} epoch 0");
        end += 3;
    }
    // An empty transactional id is a malformed request (as Kafka answers), a non-empty
    // one asks for transactions, which are not served.
    for (id, want) in [("", 42), ("tx", 53)] {
        let request = InitProducerIdRequest::default()
            .with_transactional_id(Some(kafka_protocol::messages::TransactionalId(id.into())))
            .with_transaction_timeout_ms(60_000);
        let response = send_request(&addr, 22, 1, &request);
        let init = InitProducerIdResponse::decode(&mut bytes::Bytes::copy_from_slice(&response[4..]), 1).unwrap();
        assert_eq!(init.error_code, want, "transactional id {id:?}");
    }
    let store = Store::open(dir.path()).unwrap();
    let topic = store.topic("sequenced").unwrap();
    assert_eq!(
        topic.end_offset(),
        Offset(end as u64),
        "refused or retried batches appended"
    );
    let status = server.terminate();
    assert!(status.success(), "serve after SIGTERM: {status}");
}

/// Produces in every version of `versions` to topic "wire" on one connection: a batch
/// with acks=-1 (answered with its offset), one with acks=0 (no answer: the next call
/// fails if one comes), and one to partition 1 (UNKNOWN_TOPIC_OR_PARTITION). Returns
/// every record taken, in offset order.
fn produce_every_version(
    wire: &mut wire::Wire,
    versions: std::ops::RangeInclusive<i16>,
) -> Vec<kafka_protocol::records::Record> {
    let mut sent = Vec::new();
    for version in versions {
        let what = format!("Produce v{version}");
        let batch = wire::wire_batch(version, "acked");
        let answer = wire::produce_at(wire, version, ("wire", 0), wire::uncompressed(&batch));
        assert_eq!(answer.error_code, 0, "{what}: {:?}", answer.error_message);
        assert_eq!(answer.base_offset, sent.len() as i64, "{what}: base offset");
        assert_eq!(answer.log_append_time_ms, -1, "{what}: CreateTime topics answer -1");
        if version >= 5 {
            assert_eq!(answer.log_start_offset, 0, "{what}: log start offset");
        }
        sent.extend(batch);
        let unacked = wire::wire_batch(version, "acks0");
        wire.send(
            version,
            &wire::produce_request("wire", 0, 0, wire::uncompressed(&unacked)),
        );
        sent.extend(unacked);
        let elsewhere = wire::produce_at(
            wire,
            version,
            ("wire", 1),
            wire::uncompressed(&wire::wire_batch(version, "p1")),
        );
        let got = (elsewhere.error_code, elsewhere.base_offset);
        assert_eq!(got, (3, -1), "{what} to partition 1: UNKNOWN_TOPIC_OR_PARTITION");
    }
    sent
}

/// Every Produce version the server advertises (read from its ApiVersions, so the test
/// follows the table, and every ApiVersions version must answer the same list) appends
/// batches of records with and without keys, headers and values (acks=-1 at the offset
/// it answers, acks=0 without an answer); every advertised Fetch version gives them back
/// from the start, the middle and the end, each field as produced, and answers a fetch
/// past the end, of partition 1 and of an unknown topic with the error Kafka gives; every
/// response decodes at its version with no byte left over. A version just outside an
/// advertised range closes the connection.
#[test]
fn every_advertised_produce_and_fetch_version_round_trips_records() {
    use kafka_protocol::messages::{FetchRequest, ProduceRequest};
    use kafka_protocol::protocol::Request;

    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = serve(dir.path(), &[]);
    let mut wire = wire::Wire::connect(&addr);
    let advertised = wire.advertised();
    let sent = produce_every_version(&mut wire, wire::versions_of(&advertised, ProduceRequest::KEY));
    let store = Store::open(dir.path()).unwrap();
    let topic = store.topic("wire").unwrap();
    topic.refresh().unwrap();
    assert_eq!(topic.end_offset(), Offset(sent.len() as u64));
    let end = sent.len() as i64;
    for version in wire::versions_of(&advertised, FetchRequest::KEY) {
        for from in [0, sent.len() / 2, sent.len()] {
            let partition = wire::fetch_at(&mut wire, version, ("wire", 0), from as i64, 0);
            wire::check_fetched(
                &format!("Fetch v{version} from {from}"),
                version,
                &partition,
                from,
                &sent,
                &topic,
            );
        }
        let errors = [(("wire", 0), end + 1, 1), (("wire", 1), 0, 3), (("no-such", 0), 0, 3)];
        for (place, from, want) in errors {
            let got = wire::fetch_at(&mut wire, version, place, from, 0);
            assert_eq!(got.error_code, want, "Fetch v{version} of {place:?} from {from}");
            let records = got.records.unwrap_or_default();
            assert!(
                records.is_empty(),
                "Fetch v{version} of {place:?}: records with an error"
            );
        }
    }
    check_versions_outside_refused(&addr, &advertised);
    let status = server.terminate();
    assert!(status.success(), "serve after SIGTERM: {status}");
}

/// Produce, Fetch and ListOffsets just below and above their advertised ranges close
/// the connection without an answer (the server accepts exactly what it advertises).
fn check_versions_outside_refused(addr: &str, advertised: &std::collections::BTreeMap<i16, (i16, i16)>) {
    use kafka_protocol::messages::{FetchRequest, ListOffsetsRequest, ProduceRequest};
    use kafka_protocol::protocol::{HeaderVersion, Request};

    let outside = [
        (ProduceRequest::KEY, ProduceRequest::header_version(3)),
        (FetchRequest::KEY, FetchRequest::header_version(4)),
        (ListOffsetsRequest::KEY, ListOffsetsRequest::header_version(1)),
    ];
    for (key, header_version) in outside {
        let (low, high) = advertised[&key];
        for version in [low - 1, high + 1] {
            assert!(
                wire::Wire::connect(addr).closed_after(key, version, header_version),
                "api {key} v{version} is not advertised but was answered"
            );
        }
    }
}

/// ListOffsets v`version` of `partition` of `topic` for `timestamp_ms` (-2 earliest, -1
/// latest); the partition's (error, offset, timestamp).
fn list_offset_at(
    wire: &mut wire::Wire,
    version: i16,
    topic: &str,
    partition: i32,
    timestamp_ms: i64,
) -> (i16, i64, i64) {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::{ListOffsetsRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;

    let request = ListOffsetsRequest::default()
        .with_replica_id((-1).into())
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(partition)
                .with_timestamp(timestamp_ms)])]);
    let mut response = wire.call(version, &request);
    let what = format!("ListOffsets v{version} {topic}/{partition} at {timestamp_ms}");
    assert_eq!(response.topics.len(), 1, "{what}: topics answered");
    let mut answer = response.topics.remove(0);
    assert_eq!(answer.name.0.as_str(), topic, "{what}: topic");
    assert_eq!(answer.partitions.len(), 1, "{what}: partitions");
    let p = answer.partitions.remove(0);
    assert_eq!(p.partition_index, partition, "{what}: partition");
    (p.error_code, p.offset, p.timestamp)
}

/// Every ListOffsets version the server advertises answers earliest (-2) and latest (-1)
/// with the topic's start and end, a timestamp with the first record appended at or after
/// it (and that record's timestamp), a time after the last record with -1, and an unknown
/// topic or partition with UNKNOWN_TOPIC_OR_PARTITION; every response decodes at its
/// version with no byte left over.
#[test]
fn every_advertised_list_offsets_version_answers_by_position_and_time() {
    use kafka_protocol::messages::ListOffsetsRequest;
    use kafka_protocol::protocol::Request;

    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = serve(dir.path(), &[]);
    // Appended by this process (the server does not append to it), a few milliseconds
    // apart so that most records have a millisecond of their own.
    let store = Store::open(dir.path()).unwrap();
    let topic = store.topic_or_create("timed").unwrap();
    for i in 0..6u8 {
        topic.append(&NewRecord::new(vec![i])).unwrap();
        std::thread::sleep(Duration::from_millis(3));
    }
    let times: Vec<i64> = (0..6)
        .map(|i| trailkeep::server::records::timestamp_ms(topic.read(Offset(i)).unwrap().timestamp_us))
        .collect();
    let mut wire = wire::Wire::connect(&addr);
    let advertised = wire.advertised();
    for version in wire::versions_of(&advertised, ListOffsetsRequest::KEY) {
        let mut ask = |name: &str, partition: i32, timestamp_ms: i64| {
            list_offset_at(&mut wire, version, name, partition, timestamp_ms)
        };
        assert_eq!(ask("timed", 0, -2), (0, 0, -1), "v{version} earliest");
        assert_eq!(ask("timed", 0, -1), (0, 6, -1), "v{version} latest");
        for &t in &times {
            let first = times.iter().position(|&x| x >= t).unwrap();
            assert_eq!(ask("timed", 0, t), (0, first as i64, times[first]), "v{version} at {t}");
        }
        assert_eq!(ask("timed", 0, 0), (0, 0, times[0]), "v{version} at 0");
        assert_eq!(
            ask("timed", 0, times[5] + 60_000),
            (0, -1, -1),
            "v{version} after the last"
        );
        assert_eq!(ask("timed", 1, -1), (3, -1, -1), "v{version} partition 1");
        assert_eq!(ask("no-such", 0, -1), (3, -1, -1), "v{version} unknown topic");
    }
    let status = server.terminate();
    assert!(status.success(), "serve after SIGTERM: {status}");
}

/// Metadata (for one topic, created on the way, and for all), FindCoordinator and
/// InitProducerId in every advertised version, and CreateTopics (a new topic, then the
/// same again).
fn check_cluster_apis(wire: &mut wire::Wire, advertised: &std::collections::BTreeMap<i16, (i16, i16)>, port: i32) {
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::{Request, StrBytes};

    let one = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from_static_str("meta"))))
        ]))
        .with_allow_auto_topic_creation(true);
    for version in wire::versions_of(advertised, MetadataRequest::KEY) {
        let all = MetadataRequest::default().with_topics((version == 0).then(Vec::new));
        for (what, request) in [("meta", &one), ("all topics", &all)] {
            let answer = wire.call(version, request);
            assert_eq!(answer.brokers.len(), 1, "Metadata v{version} {what}: brokers");
            assert_eq!(answer.brokers[0].port, port, "Metadata v{version} {what}: port");
            let topic = answer
                .topics
                .iter()
                .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == "meta"));
            let topic = topic.unwrap_or_else(|| panic!("Metadata v{version} {what}: no topic meta"));
            assert_eq!(topic.error_code, 0, "Metadata v{version} {what}");
            let partitions: Vec<(i32, i32)> = topic
                .partitions
                .iter()
                .map(|p| (p.partition_index, p.leader_id.0))
                .collect();
            assert_eq!(
                partitions,
                vec![(0, 0)],
                "Metadata v{version} {what}: partition 0 led by node 0"
            );
        }
    }
    for version in wire::versions_of(advertised, FindCoordinatorRequest::KEY) {
        let answer = wire.call(
            version,
            &FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("g")),
        );
        let got = (answer.error_code, answer.node_id.0, answer.port);
        assert_eq!(got, (0, 0, port), "FindCoordinator v{version}");
    }
    let mut ids = std::collections::BTreeSet::new();
    for version in wire::versions_of(advertised, InitProducerIdRequest::KEY) {
        let request = InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000);
        let answer = wire.call(version, &request);
        assert_eq!(
            (answer.error_code, answer.producer_epoch),
            (0, 0),
            "InitProducerId v{version}"
        );
        assert!(
            ids.insert(answer.producer_id.0),
            "InitProducerId v{version}: an id handed out twice"
        );
    }
    for version in wire::versions_of(advertised, CreateTopicsRequest::KEY) {
        let name = format!("made-v{version}");
        let request = CreateTopicsRequest::default()
            .with_timeout_ms(5000)
            .with_topics(vec![CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_string(name.clone())))
                .with_num_partitions(1)
                .with_replication_factor(1)]);
        for want in [0, 36] {
            let answer = wire.call(version, &request);
            let got: Vec<(String, i16)> = answer
                .topics
                .iter()
                .map(|t| (t.name.0.to_string(), t.error_code))
                .collect();
            assert_eq!(got, vec![(name.clone(), want)], "CreateTopics v{version}");
        }
    }
}

/// The version of `api_key` for step `step` of a walk through all of them: `step` itself
/// inside the advertised range, its nearest end outside it.
fn version_at(advertised: &std::collections::BTreeMap<i16, (i16, i16)>, api_key: i16, step: i16) -> i16 {
    let range = wire::versions_of(advertised, api_key);
    step.clamp(*range.start(), *range.end())
}

/// One member's life in group `group` with the versions of step `step`: JoinGroup (it
/// leads), SyncGroup (its assignment back), Heartbeat, OffsetCommit of offset 3 on topic
/// "meta" with its generation, OffsetFetch of it, LeaveGroup.
fn check_group_apis_at(wire: &mut wire::Wire, advertised: &std::collections::BTreeMap<i16, (i16, i16)>, step: i16) {
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::{Request, StrBytes};

    let group = GroupId(StrBytes::from_string(format!("grp-{step}")));
    let v = |key: i16| version_at(advertised, key, step);
    let what = |key: i16| format!("step {step}: api {key} v{}", v(key));
    let join = JoinGroupRequest::default()
        .with_group_id(group.clone())
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_protocol_type(StrBytes::from_static_str("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(StrBytes::from_static_str("range"))
            .with_metadata(bytes::Bytes::from_static(b"subscription"))]);
    let joined = wire.call(v(JoinGroupRequest::KEY), &join);
    assert_eq!(joined.error_code, 0, "{}", what(JoinGroupRequest::KEY));
    assert_eq!(
        joined.leader,
        joined.member_id,
        "{}: the one member leads",
        what(JoinGroupRequest::KEY)
    );
    assert_eq!(joined.members.len(), 1, "{}: members", what(JoinGroupRequest::KEY));
    let (member, generation) = (joined.member_id.clone(), joined.generation_id);
    let assignment = bytes::Bytes::from(format!("assignment-{step}"));
    let sync = SyncGroupRequest::default()
        .with_group_id(group.clone())
        .with_generation_id(generation)
        .with_member_id(member.clone())
        .with_assignments(vec![SyncGroupRequestAssignment::default()
            .with_member_id(member.clone())
            .with_assignment(assignment.clone())]);
    let synced = wire.call(v(SyncGroupRequest::KEY), &sync);
    assert_eq!(
        (synced.error_code, &synced.assignment),
        (0, &assignment),
        "{}",
        what(SyncGroupRequest::KEY)
    );
    let heartbeat = HeartbeatRequest::default()
        .with_group_id(group.clone())
        .with_generation_id(generation)
        .with_member_id(member.clone());
    let beat = wire.call(v(HeartbeatRequest::KEY), &heartbeat);
    assert_eq!(beat.error_code, 0, "{}", what(HeartbeatRequest::KEY));
    check_offsets_at(wire, advertised, step, (&group, &member, generation));
    let leave = if v(LeaveGroupRequest::KEY) < 3 {
        LeaveGroupRequest::default().with_member_id(member.clone())
    } else {
        LeaveGroupRequest::default().with_members(vec![
            leave_group_request::MemberIdentity::default().with_member_id(member.clone())
        ])
    };
    let left = wire.call(v(LeaveGroupRequest::KEY), &leave.with_group_id(group));
    assert_eq!(left.error_code, 0, "{}", what(LeaveGroupRequest::KEY));
    let members: Vec<i16> = left.members.iter().map(|m| m.error_code).collect();
    let want = if v(LeaveGroupRequest::KEY) < 3 { vec![] } else { vec![0] };
    assert_eq!(members, want, "{}: members' errors", what(LeaveGroupRequest::KEY));
}

/// OffsetCommit of offset 3 of "meta" by a group member, and OffsetFetch of it, in the
/// versions of step `step`.
fn check_offsets_at(
    wire: &mut wire::Wire,
    advertised: &std::collections::BTreeMap<i16, (i16, i16)>,
    step: i16,
    (group, member, generation): (
        &kafka_protocol::messages::GroupId,
        &kafka_protocol::protocol::StrBytes,
        i32,
    ),
) {
    use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::{Request, StrBytes};

    let meta = TopicName(StrBytes::from_static_str("meta"));
    let (commit_version, fetch_version) = (
        version_at(advertised, OffsetCommitRequest::KEY, step),
        version_at(advertised, OffsetFetchRequest::KEY, step),
    );
    let commit = OffsetCommitRequest::default()
        .with_group_id(group.clone())
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(member.clone())
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(meta.clone())
            .with_partitions(vec![
                OffsetCommitRequestPartition::default().with_committed_offset(3)
            ])]);
    let committed = wire.call(commit_version, &commit);
    let errors: Vec<i16> = committed
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
        .collect();
    assert_eq!(errors, vec![0], "step {step}: OffsetCommit v{commit_version}");
    let fetch = OffsetFetchRequest::default()
        .with_group_id(group.clone())
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(meta)
            .with_partition_indexes(vec![0])]));
    let fetched = wire.call(fetch_version, &fetch);
    assert_eq!(fetched.error_code, 0, "step {step}: OffsetFetch v{fetch_version}");
    let offsets: Vec<(i64, i16)> = fetched
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (p.committed_offset, p.error_code)))
        .collect();
    assert_eq!(offsets, vec![(3, 0)], "step {step}: OffsetFetch v{fetch_version}");
}

/// Every advertised version of the other APIs answers and decodes at its version with
/// no byte left over: Metadata, FindCoordinator, InitProducerId, CreateTopics, and a group
/// member's JoinGroup, SyncGroup, Heartbeat, OffsetCommit, OffsetFetch and LeaveGroup,
/// walked through together (step n uses version n of each, or the nearest it has), each
/// answer checked for what it says.
#[test]
fn every_advertised_version_of_the_other_apis_answers() {
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = serve(dir.path(), &[]);
    let port: i32 = addr.rsplit(':').next().unwrap().parse().unwrap();
    let mut wire = wire::Wire::connect(&addr);
    let advertised = wire.advertised();
    check_cluster_apis(&mut wire, &advertised, port);
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::Request;
    let group_apis = [
        JoinGroupRequest::KEY,
        SyncGroupRequest::KEY,
        HeartbeatRequest::KEY,
        OffsetCommitRequest::KEY,
        OffsetFetchRequest::KEY,
        LeaveGroupRequest::KEY,
    ];
    let last = group_apis.iter().map(|key| advertised[key].1).max().unwrap();
    for step in 0..=last {
        check_group_apis_at(&mut wire, &advertised, step);
    }
    let store = Store::open(dir.path()).unwrap();
    let groups = store.topic("meta").unwrap().groups().unwrap();
    assert_eq!(
        groups.len(),
        usize::from(last as u16 + 1),
        "a cursor per group: {groups:?}"
    );
    let status = server.terminate();
    assert!(status.success(), "serve after SIGTERM: {status}");
}
