//! `trailkeep serve` on the wire in every Produce and Fetch version its ApiVersions
//! advertises, with raw requests built with kafka-protocol (tests/kafka/wire.rs); no
//! external client is needed. Proved:
//! - batches compressed with each codec kafka-protocol's encoder has (gzip, snappy, lz4,
//!   zstd), of records with and without keys, headers and values, are appended at the
//!   offset each Produce version answers and come back field for field at their offsets;
//! - a batch whose compressed records are cut short, or carry another codec's id (length
//!   and CRC made to fit, so only the compressed bytes are wrong), gets CORRUPT_MESSAGE,
//!   appends nothing, and the same connection goes on serving;
//! - a Fetch waiting at the end of a topic answers with the records another connection
//!   produces meanwhile, well before its max wait, and with no records once its max wait
//!   has passed when nothing comes. The elapsed times are checked only against bounds a
//!   slow machine keeps: at least most of the max wait when nothing comes, at most half
//!   of a long max wait when records come.

#[path = "kafka/support.rs"]
mod support;
#[path = "kafka/wire.rs"]
mod wire;

use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::{FetchRequest, ProduceRequest};
use kafka_protocol::protocol::Request;
use kafka_protocol::records::Compression;
use support::serve;
use trailkeep::{Offset, Store};

/// The codecs of kafka-protocol's record batch encoder (its features "gzip", "snappy",
/// "lz4" and "zstd", all enabled in Cargo.toml).
const CODECS: [Compression; 4] = [
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

/// Where the fields of a magic-2 record batch are (Kafka's `DefaultRecordBatch`): the
/// length (i32, the bytes after it), the CRC-32C (u32, of everything from the attributes
/// on), the attributes (i16, the codec in the low 3 bits), the (compressed) records.
const BATCH_LENGTH_AT: usize = 8;
const BATCH_CRC_AT: usize = 17;
const BATCH_ATTRIBUTES_AT: usize = 21;
const BATCH_RECORDS_AT: usize = 61;
const ATTRIBUTES_CODEC_MASK: i16 = 0x7;

/// One magic-2 `batch` changed by `damage`, with the length and CRC that fit it after.
fn resealed(batch: &Bytes, damage: impl FnOnce(&mut Vec<u8>)) -> Bytes {
    let mut bytes = batch.to_vec();
    damage(&mut bytes);
    let length = i32::try_from(bytes.len() - BATCH_LENGTH_AT - 4).unwrap();
    bytes[BATCH_LENGTH_AT..][..4].copy_from_slice(&length.to_be_bytes());
    let crc = crc32c::crc32c(&bytes[BATCH_ATTRIBUTES_AT..]);
    bytes[BATCH_CRC_AT..][..4].copy_from_slice(&crc.to_be_bytes());
    Bytes::from(bytes)
}

/// Two broken forms of `batch`, compressed with `codec`: its compressed records cut in
/// half, and its whole compressed records said to be of the next codec; each named.
fn broken(batch: &Bytes, codec: Compression) -> [(String, Bytes); 2] {
    assert_eq!(&resealed(batch, |_| {}), batch, "resealing an intact batch changes it");
    let attributes = i16::from_be_bytes([batch[BATCH_ATTRIBUTES_AT], batch[BATCH_ATTRIBUTES_AT + 1]]);
    assert_eq!(
        attributes & ATTRIBUTES_CODEC_MASK,
        codec as i16,
        "{codec:?}: not compressed"
    );
    let half = BATCH_RECORDS_AT + (batch.len() - BATCH_RECORDS_AT) / 2;
    let cut = resealed(batch, |b| b.truncate(half));
    let next = CODECS[(CODECS.iter().position(|&c| c == codec).unwrap() + 1) % CODECS.len()];
    let relabelled = resealed(batch, |b| {
        let attributes = attributes & !ATTRIBUTES_CODEC_MASK | next as i16;
        b[BATCH_ATTRIBUTES_AT..][..2].copy_from_slice(&attributes.to_be_bytes());
    });
    [
        (format!("{codec:?} records cut in half"), cut),
        (format!("{codec:?} records labelled {next:?}"), relabelled),
    ]
}

/// In every advertised Produce version, a batch in each codec goes to topic "zipped"
/// after its two broken forms were refused on the same connection with CORRUPT_MESSAGE
/// (its offset shows that they appended nothing); every advertised Fetch version gives
/// all of them back, field for field at their offsets, as the store holds them.
#[test]
fn every_advertised_produce_version_takes_compressed_batches() {
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = serve(dir.path(), &[]);
    let mut wire = wire::Wire::connect(&addr);
    let advertised = wire.advertised();
    let mut sent = Vec::new();
    for version in wire::versions_of(&advertised, ProduceRequest::KEY) {
        for codec in CODECS {
            let what = format!("Produce v{version} {codec:?}");
            // Long repeated keys and values, so that the codec has something to compress.
            let records = wire::wire_batch(version, &format!("{codec:?} ").repeat(20));
            let batch = wire::record_batch(&records, codec);
            for (damage, bytes) in broken(&batch, codec) {
                let answer = wire::produce_at(&mut wire, version, ("zipped", 0), bytes);
                let got = (answer.error_code, answer.base_offset);
                assert_eq!(got, (2, -1), "Produce v{version} {damage}: CORRUPT_MESSAGE");
                if version >= 8 {
                    let message = answer.error_message.map(|m| m.to_string()).unwrap_or_default();
                    assert!(
                        message.contains("records"),
                        "Produce v{version} {damage}: refused for its records? {message:?}"
                    );
                }
            }
            let answer = wire::produce_at(&mut wire, version, ("zipped", 0), batch);
            assert_eq!(answer.error_code, 0, "{what}: {:?}", answer.error_message);
            assert_eq!(answer.base_offset, sent.len() as i64, "{what}: base offset");
            sent.extend(records);
        }
    }
    let store = Store::open(dir.path()).unwrap();
    let topic = store.topic("zipped").unwrap();
    topic.refresh().unwrap();
    assert_eq!(topic.end_offset(), Offset(sent.len() as u64));
    for version in wire::versions_of(&advertised, FetchRequest::KEY) {
        let partition = wire::fetch_at(&mut wire, version, ("zipped", 0), 0, 0);
        wire::check_fetched(&format!("Fetch v{version}"), version, &partition, 0, &sent, &topic);
    }
    let status = server.terminate();
    assert!(status.success(), "serve after SIGTERM: {status}");
}

/// The max wait of a Fetch that records reach: long, so that an answer at its end is told
/// apart from one when the records come even on a slow machine.
const WAIT_FOR_RECORDS_MS: i32 = 10_000;
/// When the records come after that Fetch is sent: once it surely waits.
const RECORDS_AFTER: Duration = Duration::from_millis(300);
/// The max wait of a Fetch that nothing reaches: short, it is waited out.
const WAIT_FOR_NOTHING_MS: i32 = 500;

/// In every advertised Fetch version, a Fetch at the end of topic "polled" (min bytes 1)
/// answers with the records another connection produces while it waits, and a Fetch
/// that nothing reaches answers with none after its max wait.
#[test]
fn every_advertised_fetch_version_long_polls() {
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = serve(dir.path(), &[]);
    let mut wire = wire::Wire::connect(&addr);
    let advertised = wire.advertised();
    let produce_version = *wire::versions_of(&advertised, ProduceRequest::KEY).end();
    // The topic exists before a Fetch waits at its end (an unknown topic is answered at
    // once, with an error).
    let mut sent = wire::wire_batch(produce_version, "first");
    let first = wire::produce_at(&mut wire, produce_version, ("polled", 0), wire::uncompressed(&sent));
    assert_eq!((first.error_code, first.base_offset), (0, 0), "first produce");
    let store = Store::open(dir.path()).unwrap();
    let topic = store.topic("polled").unwrap();
    for version in wire::versions_of(&advertised, FetchRequest::KEY) {
        let end = sent.len();
        let late = wire::wire_batch(version, "late");
        let producer = {
            let (addr, batch) = (addr.clone(), wire::uncompressed(&late));
            std::thread::spawn(move || {
                std::thread::sleep(RECORDS_AFTER);
                let mut other = wire::Wire::connect(&addr);
                wire::produce_at(&mut other, produce_version, ("polled", 0), batch)
            })
        };
        let asked = Instant::now();
        let partition = wire::fetch_at(&mut wire, version, ("polled", 0), end as i64, WAIT_FOR_RECORDS_MS);
        let waited = asked.elapsed();
        let produced = producer.join().unwrap();
        assert_eq!(
            (produced.error_code, produced.base_offset),
            (0, end as i64),
            "late produce"
        );
        sent.extend(late);
        topic.refresh().unwrap();
        let what = format!("Fetch v{version} waiting at {end}");
        wire::check_fetched(&what, version, &partition, end, &sent, &topic);
        let records_wait_max = Duration::from_millis(WAIT_FOR_RECORDS_MS as u64 / 2);
        assert!(
            waited < records_wait_max,
            "{what}: answered after {waited:?}, not when the records came ({RECORDS_AFTER:?})"
        );

        let asked = Instant::now();
        let partition = wire::fetch_at(
            &mut wire,
            version,
            ("polled", 0),
            sent.len() as i64,
            WAIT_FOR_NOTHING_MS,
        );
        let waited = asked.elapsed();
        let what = format!("Fetch v{version} waiting at {} for nothing", sent.len());
        wire::check_fetched(&what, version, &partition, sent.len(), &sent, &topic);
        let max_wait = Duration::from_millis(WAIT_FOR_NOTHING_MS as u64);
        assert!(waited >= max_wait * 4 / 5, "{what}: answered after {waited:?}");
        assert!(
            waited < max_wait + Duration::from_secs(10),
            "{what}: answered after {waited:?}"
        );
    }
    let status = server.terminate();
    assert!(status.success(), "serve after SIGTERM: {status}");
}

/// How a server of [`concurrent_produces_are_acknowledged_only_when_durable`] ends.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Ending {
    /// SIGTERM once every connection has produced.
    Done,
    /// The fourth group-commit fdatasync fails (`wal.sync:4` injected).
    FailedSync,
    /// SIGKILL once this many produces were answered.
    Killed(usize),
}

/// Produces from many connections at once share fdatasyncs (each waits for its sync as
/// an async task), and every one answered without error is on disk at the offset it was
/// given: after a clean stop, after a failed fdatasync (the produces it covered, and
/// later ones, get KAFKA_STORAGE_ERROR) and after a SIGKILL in mid-stream (records
/// answered before they were synced would be lost with the process's buffer).
#[cfg(feature = "failpoints")]
#[test]
fn concurrent_produces_are_acknowledged_only_when_durable() {
    const STORAGE_ERROR: i16 = 56;
    const CONNECTIONS: usize = 16;
    const PRODUCES: usize = 40;
    for ending in [Ending::Done, Ending::FailedSync, Ending::Killed(150)] {
        let dir = tempfile::tempdir().unwrap();
        let addr = format!("127.0.0.1:{}", support::free_port());
        let mut cmd = support::trailkeep(dir.path());
        if ending == Ending::FailedSync {
            cmd.env("TRAILKEEP_FAILPOINT_ERROR", "wal.sync:4");
        }
        let mut server = support::serve_with(cmd, &addr, &[]);
        let version = {
            let mut wire = wire::Wire::connect(&addr);
            *wire::versions_of(&wire.advertised(), ProduceRequest::KEY).end()
        };
        // (error code, base offset, tag) of every produce answered, as it is answered.
        let answers = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for c in 0..CONNECTIONS {
                let (addr, answers) = (&addr, &answers);
                s.spawn(move || {
                    let mut wire = wire::Wire::connect(addr);
                    for p in 0..PRODUCES {
                        let tag = format!("c{c}-p{p}");
                        let batch = wire::uncompressed(&wire::wire_batch(version, &tag));
                        let request = wire::produce_request("shared", 0, -1, batch);
                        // A killed server answers no more: this connection is done.
                        let Some(answer) = wire.try_call(version, &request) else {
                            return;
                        };
                        let a = &answer.responses[0].partition_responses[0];
                        answers.lock().unwrap().push((a.error_code, a.base_offset, tag));
                    }
                });
            }
            if let Ending::Killed(after) = ending {
                while answers.lock().unwrap().len() < after {
                    std::thread::sleep(Duration::from_micros(200));
                }
                server.0.kill().unwrap();
            }
        });
        let answers = answers.into_inner().unwrap();
        let label = format!("{ending:?}");
        let failed = answers.iter().filter(|a| a.0 != 0).count();
        match ending {
            Ending::Done => {
                assert_eq!(failed, 0, "{label}: {answers:?}");
                assert!(server.terminate().success(), "{label}: serve failed");
            }
            Ending::FailedSync => {
                assert!(failed > 0, "{label}: no produce saw the failed sync");
                assert!(
                    answers.iter().all(|a| a.0 == 0 || a.0 == STORAGE_ERROR),
                    "{label}: {answers:?}"
                );
                server.terminate();
            }
            Ending::Killed(after) => {
                assert_eq!(failed, 0, "{label}: {answers:?}");
                assert!(
                    answers.len() >= after && answers.len() < CONNECTIONS * PRODUCES,
                    "{label}"
                );
            }
        }
        let store = Store::open(dir.path()).unwrap();
        let topic = store.topic("shared").unwrap();
        topic.recover().unwrap();
        for (_, base, tag) in answers.iter().filter(|a| a.0 == 0) {
            for (i, sent) in wire::wire_batch(version, tag).iter().enumerate() {
                let got = topic
                    .read(Offset(*base as u64 + i as u64))
                    .unwrap_or_else(|e| panic!("{label}: {tag} record {i} at {base}: {e}"));
                let (key, value, _) = wire::wire_fields(sent);
                assert_eq!(
                    (got.key.as_deref(), &got.value[..]),
                    (key.as_deref(), &value[..]),
                    "{label}: {tag} record {i} at {base}"
                );
            }
        }
    }
}
