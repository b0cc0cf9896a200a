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

fn fix_crc(batch: &mut [u8]) {
    let crc = crc32c::crc32c(&batch[CRC_START..]);
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

/// A retried batch (same producer, epoch, first and last sequence) of one of the
/// producer's last 5 is answered with the offset it was appended at and not appended
/// again, as Kafka brokers answer it; an older one is out of sequence.
#[test]
fn a_retried_batch_gets_its_first_offset_and_is_not_appended_again() {
    let state = state();
    let producer = (PID, 0);
    assert_taken(&send(&state, batch(producer, 0, 2)), 0, "seq 0-1");
    assert_taken(&send(&state, batch(producer, 2, 3)), 2, "seq 2-4");
    assert_taken(&send(&state, batch(producer, 0, 2)), 0, "retry of seq 0-1");
    assert_taken(&send(&state, batch(producer, 2, 3)), 2, "retry of seq 2-4");
    assert_eq!(values(&state, TOPIC).len(), 5, "the retries appended nothing");
    // The same first sequence with another last one is no retry.
    let other = send(&state, batch(producer, 2, 2));
    assert_refused(&other, code::OUT_OF_ORDER_SEQUENCE_NUMBER, "expected 5", "seq 2-3");

    for (i, sequence) in (5..10).enumerate() {
        assert_taken(&send(&state, batch(producer, sequence, 1)), 5 + i as i64, "seq 5-9");
    }
    assert_taken(&send(&state, batch(producer, 9, 1)), 9, "retry of the newest");
    assert_taken(&send(&state, batch(producer, 5, 1)), 5, "retry of the 5th newest");
    let old = send(&state, batch(producer, 2, 3));
    assert_refused(
        &old,
        code::OUT_OF_ORDER_SEQUENCE_NUMBER,
        "expected 10",
        "past the window",
    );
    assert_eq!(values(&state, TOPIC).len(), 10);
}

/// A batch that does not start right after the producer's last one (a lost batch in
/// between) gets OUT_OF_ORDER_SEQUENCE_NUMBER (45) and is not appended; the batch that
/// fills the gap is. Sequences are per topic (per partition, in Kafka).
#[test]
fn a_gap_in_a_producers_sequence_is_refused() {
    let state = state();
    let producer = (PID, 3);
    assert_taken(&send(&state, batch(producer, 0, 1)), 0, "seq 0");
    let gap = send(&state, batch(producer, 2, 1));
    assert_refused(
        &gap,
        code::OUT_OF_ORDER_SEQUENCE_NUMBER,
        "sequence 2, expected 1",
        "seq 2",
    );
    assert_eq!(values(&state, TOPIC), [format!("{PID}.3.0/0")]);
    assert_taken(&send(&state, batch(producer, 1, 1)), 1, "seq 1");
    assert_taken(&send(&state, batch(producer, 2, 1)), 2, "seq 2 after 1");
    assert_taken(&produce_to(&state, "other", batch(producer, 0, 1)), 0, "another topic");
}

/// A batch of an epoch older than the producer's newest gets INVALID_PRODUCER_EPOCH (47),
/// retries of the old epoch included (what Kafka brokers since 2.7 answer to a produce,
/// and what clients recover from by bumping the epoch; PRODUCER_FENCED is fatal to
/// them). A newer epoch must start at sequence 0, else OUT_OF_ORDER_SEQUENCE_NUMBER.
#[test]
fn a_stale_epoch_is_fenced_and_a_new_one_starts_at_zero() {
    let state = state();
    assert_taken(&send(&state, batch((PID, 1), 0, 2)), 0, "epoch 1");
    let stale = send(&state, batch((PID, 0), 2, 1));
    assert_refused(
        &stale,
        code::INVALID_PRODUCER_EPOCH,
        "epoch 0 is older than its epoch 1",
        "epoch 0",
    );
    let late = send(&state, batch((PID, 2), 2, 1));
    assert_refused(
        &late,
        code::OUT_OF_ORDER_SEQUENCE_NUMBER,
        "new epoch 2 at sequence 2",
        "epoch 2",
    );
    assert_taken(&send(&state, batch((PID, 2), 0, 1)), 2, "epoch 2 at 0");
    let retry = send(&state, batch((PID, 1), 0, 2));
    assert_refused(&retry, code::INVALID_PRODUCER_EPOCH, "older", "retry of epoch 1");
    assert_taken(&send(&state, batch((PID, 2), 1, 1)), 3, "epoch 2 goes on");
    assert_eq!(values(&state, TOPIC).len(), 4);
}

/// A producer the server knows nothing of may start at any sequence (as Kafka brokers
/// since 2.5 accept): after a restart the server has forgotten every producer, and
/// refusing their next batch would stop them for nothing. It goes on from there.
#[test]
fn an_unknown_producer_may_start_at_any_sequence() {
    let state = state();
    assert_taken(&send(&state, batch((PID, 4), 17, 3)), 0, "first seen at 17");
    let gap = send(&state, batch((PID, 4), 21, 1));
    assert_refused(&gap, code::OUT_OF_ORDER_SEQUENCE_NUMBER, "expected 20", "then a gap");
    assert_taken(&send(&state, batch((PID, 4), 20, 1)), 3, "then 20");
}

/// Sequences wrap from i32::MAX to 0, also inside one batch, as in Kafka.
#[test]
fn sequences_wrap_from_i32_max_to_zero() {
    let state = state();
    let producer = (PID, 0);
    // i32::MAX - 1, i32::MAX, 0: the next batch starts at 1.
    assert_taken(&send(&state, batch(producer, i32::MAX - 1, 3)), 0, "across the wrap");
    assert_taken(&send(&state, batch(producer, i32::MAX - 1, 3)), 0, "its retry");
    assert_taken(&send(&state, batch(producer, 1, 1)), 3, "after the wrap");
    // A batch ending at i32::MAX: the next starts at 0.
    let other = (PID + 1, 0);
    assert_taken(&produce_to(&state, "b", batch(other, i32::MAX - 1, 2)), 0, "up to MAX");
    let gap = produce_to(&state, "b", batch(other, 1, 1));
    assert_refused(&gap, code::OUT_OF_ORDER_SEQUENCE_NUMBER, "expected 0", "skipping 0");
    assert_taken(&produce_to(&state, "b", batch(other, 0, 1)), 2, "0 after MAX");
}

/// The same batch produced on two connections at once (a client's retry while the first
/// send is still being written) is appended once; both are answered with its offset.
#[test]
fn the_same_batch_on_two_connections_at_once_is_appended_once() {
    const ROUNDS: i32 = 20;
    let state = state();
    // Made first: concurrent creation of a topic is not what this test is about.
    state.topic(TOPIC, true).expect("creating the topic");
    for sequence in 0..ROUNDS {
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let senders: Vec<_> = (0..2)
            .map(|_| {
                let (state, barrier) = (Arc::clone(&state), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    barrier.wait();
                    send(&state, batch((PID, 0), sequence, 1))
                })
            })
            .collect();
        for sender in senders {
            let answer = sender.join().expect("a sender");
            assert_taken(&answer, i64::from(sequence), &format!("sequence {sequence}"));
        }
    }
    assert_eq!(values(&state, TOPIC).len(), ROUNDS as usize);
}
