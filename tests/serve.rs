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
//! restart, and retries, gaps and stale epochs answered on the wire. Without the clients the tests fail
//! under CI (`CI` set) and print "skipped: ..." otherwise.

#[path = "kafka/support.rs"]
mod support;

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
    use kafka_protocol::records::{Compression, RecordBatchEncoder, RecordEncodeOptions};
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
    let mut batch = bytes::BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::Zstd,
    };
    RecordBatchEncoder::encode(&mut batch, &records, &options).unwrap();
    assert!(batch.len() < 64 << 10, "{} bytes compressed", batch.len());
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("bomb")))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch.freeze()))])]);
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

/// kafkajs (node): produce with acks=-1, then a consumer group (subscribe, commit) reads
/// everything back; the store holds the same bytes and `trailkeep groups` the commit.
#[test]
fn kafkajs_produces_and_consumes() {
    let Some(modules) = tool("TRAILKEEP_NODE_MODULES", ".node/node_modules", "kafkajs") else {
        return;
    };
    if !modules.join("kafkajs").exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "kafkajs missing in {}",
            modules.display()
        );
        eprintln!("skipped: no kafkajs in {}", modules.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = serve(dir.path(), &[]);
    let child = std::process::Command::new("node")
        .arg(script("kafkajs.js"))
        .args([addr.as_str(), "js-made", "g-js", "6"])
        .env("NODE_PATH", &modules)
        .env("KAFKAJS_NO_PARTITIONER_WARNING", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting node");
    let output = wait_output(child, Duration::from_secs(60));
    assert!(
        output.status.success(),
        "kafkajs: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines = json_lines(&output.stdout);
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
/// (where UNKNOWN_PRODUCER_ID would stop or reset it), by kafka-python and librdkafka.
#[test]
fn an_idempotent_producer_goes_on_after_a_server_restart() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut server = serve_at(dir.path(), &addr, &[]);
    let sent = sample_records(6, 5);
    for client in ["kafka-python", "confluent"] {
        let name = format!("restarted-{client}");
        let mut child = std::process::Command::new(&python)
            .arg(script("clients.py"))
            .args(["idempotent", client, &addr, &name])
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
        let topic = store.topic(&name).unwrap();
        assert_eq!(topic.end_offset(), Offset(6), "{client}");
        for (i, want) in sent.iter().enumerate() {
            assert_eq!(as_json(&topic.read(Offset(i as u64)).unwrap())["value"], want["value"]);
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
    use kafka_protocol::records::{Compression, RecordBatchEncoder, RecordEncodeOptions};

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
    let mut batch = bytes::BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut batch, &records, &options).unwrap();
    let partition = PartitionProduceData::default()
        .with_index(0)
        .with_records(Some(batch.freeze()));
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
