//! Produce as a Kafka broker answers it, proved with requests built here from raw record
//! batches (producer id, epoch, base sequence and attributes written into the batch header
//! and its CRC-32C made right) and run through `produce` against a temporary store; what
//! the topic holds afterwards is read back.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::ProduceRequest;
use kafka_protocol::records::{Compression, RecordBatchEncoder, RecordEncodeOptions};

use super::*;
use crate::server::block_on;
use crate::server::records::{kafka_record, KafkaHeaders};
use crate::{Offset, Store};

const TOPIC: &str = "audit";
/// Where a v2 batch's CRC-32C sits, and where what it covers starts (attributes).
const CRC_POS: usize = 17;
const CRC_START: usize = 21;
const ATTRIBUTES_POS: usize = 21;
const PRODUCER_ID_POS: usize = 43;
const EPOCH_POS: usize = 51;
const BASE_SEQUENCE_POS: usize = 53;
const RECORD_COUNT_POS: usize = 57;
/// A producer id nobody handed out; the server tracks whatever id a batch carries.
const PID: i64 = 4_000;

/// CRC-32C (Castagnoli), bit by bit: test batches are small.
fn crc32c(bytes: &[u8]) -> u32 {
    const POLY: u32 = 0x82F6_3B78;
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (POLY & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

fn fix_crc(batch: &mut [u8]) {
    let crc = crc32c(&batch[CRC_START..]);
    batch[CRC_POS..CRC_START].copy_from_slice(&crc.to_be_bytes());
}

/// One uncompressed batch of `count` records whose values are `tag/0`, `tag/1`, ...
/// without a producer (id and epoch -1, base sequence -1).
fn plain_batch(tag: &str, count: usize) -> Vec<u8> {
    let records: Vec<_> = (0..count)
        .map(|i| {
            let value = Some(Bytes::from(format!("{tag}/{i}")));
            // offset - sequence constant: one batch (see records::encode_batch).
            kafka_record(
                i as i64,
                i as i32 - 1,
                1_700_000_000_000,
                None,
                value,
                KafkaHeaders::new(),
            )
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options).expect("encoding a test batch");
    buf.to_vec()
}

/// A batch of `count` records of producer `(id, epoch)` starting at `base_sequence`.
fn batch(producer: (i64, i16), base_sequence: i32, count: usize) -> Vec<u8> {
    let mut bytes = plain_batch(&format!("{}.{}.{base_sequence}", producer.0, producer.1), count);
    bytes[PRODUCER_ID_POS..PRODUCER_ID_POS + 8].copy_from_slice(&producer.0.to_be_bytes());
    bytes[EPOCH_POS..EPOCH_POS + 2].copy_from_slice(&producer.1.to_be_bytes());
    bytes[BASE_SEQUENCE_POS..BASE_SEQUENCE_POS + 4].copy_from_slice(&base_sequence.to_be_bytes());
    fix_crc(&mut bytes);
    bytes
}

fn state() -> Arc<State> {
    let store = Store::temporary().expect("a temporary store");
    Arc::new(State::new(
        store,
        true,
        ("127.0.0.1".to_owned(), 9092),
        "trailkeep-test".to_owned(),
    ))
}

fn request(topic: &str, records: Vec<u8>) -> ProduceRequest {
    let mut partition = PartitionProduceData::default();
    partition.index = 0;
    partition.records = Some(Bytes::from(records));
    let mut topic_data = TopicProduceData::default();
    topic_data.name = name(topic);
    topic_data.partition_data = vec![partition];
    let mut request = ProduceRequest::default();
    request.acks = -1;
    request.timeout_ms = 1000;
    request.topic_data = vec![topic_data];
    request
}

/// What the server answered for the one partition of a Produce.
#[derive(Debug)]
struct Answer {
    error: i16,
    base_offset: i64,
    message: Option<String>,
}

fn produce_to(state: &Arc<State>, topic: &str, records: Vec<u8>) -> Answer {
    let response = block_on(produce(state, request(topic, records))).expect("acks=-1 is answered");
    let partition = &response.responses[0].partition_responses[0];
    Answer {
        error: partition.error_code,
        base_offset: partition.base_offset,
        message: partition.error_message.as_ref().map(|m| m.to_string()),
    }
}

fn send(state: &Arc<State>, records: Vec<u8>) -> Answer {
    produce_to(state, TOPIC, records)
}

/// Asserts the batch was taken at `offset` (appended there, or a retry of what is there).
fn assert_taken(answer: &Answer, offset: i64, what: &str) {
    assert_eq!(
        (answer.error, answer.base_offset),
        (code::NONE, offset),
        "{what}: {answer:?}"
    );
}

/// Asserts the batch was refused with `error`, the message naming `reason`.
fn assert_refused(answer: &Answer, error: i16, reason: &str, what: &str) {
    assert_eq!((answer.error, answer.base_offset), (error, -1), "{what}: {answer:?}");
    let message = answer.message.as_deref().unwrap_or_default();
    assert!(message.contains(reason), "{what}: {message:?} lacks {reason:?}");
}

/// The values the topic holds, in offset order.
fn values(state: &State, topic: &str) -> Vec<String> {
    let Ok(topic) = state.store.topic(topic) else {
        return Vec::new();
    };
    topic
        .iter(Offset(0))
        .map(|r| String::from_utf8(r.expect("reading back").value).expect("utf-8 test values"))
        .collect()
}

/// Kafka brokers answer INVALID_RECORD (87) to a partition whose data is not exactly one
/// batch (Produce v3+), or whose batch has no records, a record count its offset range
/// does not match, control records, or a producer id without a sequence; nothing of it is
/// appended, and a Produce of one batch still is.
#[test]
fn a_partition_must_hold_exactly_one_well_formed_batch() {
    let state = state();
    let two = [plain_batch("a", 2), plain_batch("b", 1)].concat();
    assert_refused(
        &send(&state, two),
        code::INVALID_RECORD,
        "2 record batches",
        "two batches",
    );
    assert_refused(
        &send(&state, Vec::new()),
        code::INVALID_RECORD,
        "no record batch",
        "no batch",
    );

    let mut control = plain_batch("c", 1);
    control[ATTRIBUTES_POS + 1] |= 1 << 5;
    fix_crc(&mut control);
    assert_refused(
        &send(&state, control),
        code::INVALID_RECORD,
        "control records",
        "control",
    );

    let mut miscounted = plain_batch("d", 2);
    miscounted[RECORD_COUNT_POS..RECORD_COUNT_POS + 4].copy_from_slice(&1i32.to_be_bytes());
    fix_crc(&mut miscounted);
    assert_refused(&send(&state, miscounted), code::INVALID_RECORD, "must match", "count");

    let mut empty = plain_batch("e", 1);
    empty[RECORD_COUNT_POS..RECORD_COUNT_POS + 4].copy_from_slice(&0i32.to_be_bytes());
    fix_crc(&mut empty);
    assert_refused(&send(&state, empty), code::INVALID_RECORD, "no records", "empty batch");

    let unsequenced = batch((PID, 0), -1, 1);
    assert_refused(
        &send(&state, unsequenced),
        code::INVALID_RECORD,
        "sequence -1",
        "no sequence",
    );
    assert_eq!(
        values(&state, TOPIC),
        Vec::<String>::new(),
        "nothing of a refused batch"
    );

    assert_taken(&send(&state, plain_batch("ok", 2)), 0, "one batch");
    assert_eq!(values(&state, TOPIC), ["ok/0", "ok/1"]);
}
