//! Kafka record batches (magic 2) to and from trailkeep records. Pure: no I/O.
//!
//! Produce: a partition's data is exactly one batch (Produce v3+, as Kafka brokers
//! require), each of its records becomes a [`NewRecord`]; the producer's timestamp
//! (milliseconds) becomes the event time, keys and headers are kept, a null value becomes
//! an empty one. Fetch and mirroring: trailkeep records become one batch whose records
//! carry their offsets and their append time (milliseconds) as a CreateTime timestamp.

use std::cell::Cell;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record as KafkaRecord, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::decompress::decompress;
use crate::{NewRecord, Record};

/// Most records one produced batch may declare. Checked on the batch header before the
/// decoder sizes anything by the count.
pub const BATCH_RECORDS_MAX: usize = 1 << 20;
/// Bytes of a v2 batch header up to and including the record count.
const BATCH_HEADER_BYTES: usize = 61;
/// Bytes before a v2 batch's length-counted part (base offset, length).
const BATCH_PREFIX_BYTES: usize = 12;
/// Attribute bits of a v2 batch: part of a transaction, control records.
const ATTRIBUTE_TRANSACTIONAL: i16 = 1 << 4;
const ATTRIBUTE_CONTROL: i16 = 1 << 5;

/// One produced batch: who produced it and its records.
#[derive(Debug)]
pub struct ProducedBatch {
    /// Idempotent producer id, or -1.
    pub producer_id: i64,
    /// Producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence of the first record, or -1.
    pub base_sequence: i32,
    /// Part of a transaction (not supported by the server).
    pub transactional: bool,
    /// The batch's records (at least one; control batches are refused).
    pub records: Vec<NewRecord>,
}

/// Why one partition's records of a Produce are refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    /// Bytes that do not decode: truncated, a bad checksum or magic, an unknown codec, a
    /// bad record, over the decompression budget (Kafka's `CORRUPT_MESSAGE`).
    #[error("{0}")]
    Corrupt(String),
    /// A well-formed batch that Kafka brokers refuse from a client: not exactly one batch
    /// (Produce v3+), no records, an offset range that does not match the record count,
    /// control records, a producer id without a sequence (Kafka's `INVALID_RECORD`).
    #[error("{0}")]
    Invalid(String),
}

/// The fields of a v2 batch header the server checks before decoding the batch.
#[derive(Clone, Copy, Debug)]
struct BatchHeader {
    attributes: i16,
    last_offset_delta: i32,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    record_count: i32,
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(bytes)
}

/// Checks every batch header in `bytes` (complete batches, magic 2, a sane record count)
/// without decoding records, and returns them. The checksum is the decoder's to check;
/// it covers every field returned here but the base offset and length.
fn check_batch_headers(bytes: &[u8]) -> Result<Vec<BatchHeader>, String> {
    let mut headers = Vec::new();
    let mut pos = 0usize;
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        if rest.len() < BATCH_HEADER_BYTES {
            return Err(format!("truncated record batch at byte {pos}"));
        }
        let length = be_i32(rest, 8);
        let magic = rest[16] as i8;
        if magic != 2 {
            return Err(format!(
                "record batch at byte {pos} has magic {magic}; only magic 2 is supported"
            ));
        }
        let length = usize::try_from(length).map_err(|_| format!("negative record batch length at byte {pos}"))?;
        if length < BATCH_HEADER_BYTES - BATCH_PREFIX_BYTES || rest.len() - BATCH_PREFIX_BYTES < length {
            return Err(format!(
                "record batch at byte {pos} claims {length} bytes, {} are there",
                rest.len() - BATCH_PREFIX_BYTES
            ));
        }
        let record_count = be_i32(rest, 57);
        if record_count < 0 || record_count as usize > BATCH_RECORDS_MAX {
            return Err(format!(
                "record batch at byte {pos} claims {record_count} records (limit {BATCH_RECORDS_MAX})"
            ));
        }
        headers.push(BatchHeader {
            attributes: be_i16(rest, 21),
            last_offset_delta: be_i32(rest, 23),
            producer_id: be_i64(rest, 43),
            producer_epoch: be_i16(rest, 51),
            base_sequence: be_i32(rest, 53),
            record_count,
        });
        pos += BATCH_PREFIX_BYTES + length;
    }
    Ok(headers)
}

/// The one batch of a partition's records, refused as Kafka's `LogValidator` refuses a
/// client's batch: Produce v3+ carries exactly one batch per partition.
fn the_one_batch(headers: &[BatchHeader]) -> Result<BatchHeader, BatchError> {
    let header = match headers {
        [one] => *one,
        [] => {
            return Err(BatchError::Invalid(
                "no record batch: Produce v3+ needs exactly one per partition".into(),
            ))
        }
        many => {
            return Err(BatchError::Invalid(format!(
                "{} record batches: Produce v3+ allows exactly one per partition",
                many.len()
            )))
        }
    };
    let count = header.record_count;
    if count == 0 {
        return Err(BatchError::Invalid("a record batch with no records".into()));
    }
    if i64::from(header.last_offset_delta) != i64::from(count) - 1 {
        return Err(BatchError::Invalid(format!(
            "record batch with last offset delta {} and {count} records: they must match",
            header.last_offset_delta
        )));
    }
    if header.attributes & ATTRIBUTE_CONTROL != 0 {
        return Err(BatchError::Invalid("clients may not write control records".into()));
    }
    if header.producer_id >= 0 && (header.base_sequence < 0 || header.producer_epoch < 0) {
        return Err(BatchError::Invalid(format!(
            "record batch of producer id {} with sequence {} and epoch {}: both must be >= 0",
            header.producer_id, header.base_sequence, header.producer_epoch
        )));
    }
    Ok(header)
}

/// Decodes the one record batch of one partition of a Produce request.
///
/// A compressed batch may decompress to at most `budget` bytes; `budget` is left with
/// what remains (one budget serves a whole request, see
/// [`DECOMPRESSED_BYTES_MAX`](super::DECOMPRESSED_BYTES_MAX)).
///
/// # Errors
/// [`BatchError::Corrupt`] for bytes that do not decode (truncated, bad checksum, unknown
/// codec, bad record, over the budget); [`BatchError::Invalid`] for a batch Kafka refuses
/// from a client (not exactly one batch, no records, control records, a producer id
/// without a sequence).
pub fn decode_partition(bytes: &Bytes, budget: &mut usize) -> Result<ProducedBatch, BatchError> {
    let headers = check_batch_headers(bytes).map_err(BatchError::Corrupt)?;
    let header = the_one_batch(&headers)?;
    let mut buf = bytes.clone();
    let start = *budget;
    // What was decompressed is charged even when the batch fails; after a panic the rest
    // of the request gets nothing.
    *budget = 0;
    // The decoder is a third-party parser of untrusted bytes: a panic in it must not take
    // the server down, only fail this request.
    let (set, left) = std::panic::catch_unwind(move || {
        let budget = Cell::new(start);
        let decompress = |records: &mut Bytes, compression| {
            Ok(decompress(records, compression, &budget).map_err(std::io::Error::other)?)
        };
        let set = RecordBatchDecoder::decode_with_custom_compression(&mut buf, Some(&decompress));
        (set.map_err(|e| e.to_string()), budget.get())
    })
    .map_err(|_| BatchError::Corrupt("the record batch decoder gave up".into()))?;
    *budget = left;
    let set = set.map_err(BatchError::Corrupt)?;
    if set.records.len() != header.record_count as usize {
        return Err(BatchError::Corrupt(format!(
            "record batch claims {} records, {} decode",
            header.record_count,
            set.records.len()
        )));
    }
    let mut records = Vec::with_capacity(set.records.len());
    for record in set.records {
        records.push(to_new_record(record).map_err(BatchError::Corrupt)?);
    }
    Ok(ProducedBatch {
        producer_id: header.producer_id,
        producer_epoch: header.producer_epoch,
        base_sequence: header.base_sequence,
        transactional: header.attributes & ATTRIBUTE_TRANSACTIONAL != 0,
        records,
    })
}

/// [`decode_partition`] as a list, for the fuzz targets: the one batch, or why the
/// partition's records are refused.
///
/// # Errors
/// What [`decode_partition`] refuses, as text.
pub fn decode_produced(bytes: &Bytes, budget: &mut usize) -> Result<Vec<ProducedBatch>, String> {
    decode_partition(bytes, budget)
        .map(|batch| vec![batch])
        .map_err(|e| e.to_string())
}

fn to_new_record(record: KafkaRecord) -> Result<NewRecord, String> {
    let mut headers = Vec::with_capacity(record.headers.len());
    for (name, value) in record.headers {
        headers.push((name.to_string(), value.map(|v| v.to_vec()).unwrap_or_default()));
    }
    Ok(NewRecord {
        event_time_us: (record.timestamp >= 0).then(|| record.timestamp.saturating_mul(1000)),
        key: record.key.map(|k| k.to_vec()),
        headers,
        value: record.value.map(|v| v.to_vec()).unwrap_or_default(),
    })
}

/// Milliseconds of a trailkeep timestamp.
pub fn timestamp_ms(timestamp_us: u64) -> i64 {
    i64::try_from(timestamp_us / 1000).unwrap_or(i64::MAX)
}

/// Header names and values of a Kafka record, in order; a name may repeat.
pub type KafkaHeaders = Vec<(kafka_protocol::protocol::StrBytes, Option<Bytes>)>;

/// A Kafka record outside any transaction and of no idempotent producer (producer id and
/// epoch -1), with a CreateTime `timestamp_ms`.
pub fn kafka_record(
    offset: i64,
    sequence: i32,
    timestamp_ms: i64,
    key: Option<Bytes>,
    value: Option<Bytes>,
    headers: KafkaHeaders,
) -> KafkaRecord {
    KafkaRecord {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset,
        sequence,
        timestamp: timestamp_ms,
        key,
        value,
        headers,
    }
}

/// Encodes `records` as one uncompressed batch. With `keep_offsets` the batch carries the
/// records' own offsets (Fetch); without, offsets 0, 1, ... (Produce, for mirroring).
///
/// # Errors
/// An encoder error (a record over Kafka's varint limits).
pub fn encode_batch(records: &[Record], keep_offsets: bool) -> Result<Bytes, String> {
    let Some(first) = records.first() else {
        return Ok(Bytes::new());
    };
    let base = if keep_offsets { first.offset.0 } else { 0 };
    let kafka: Vec<KafkaRecord> = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let offset = if keep_offsets { r.offset.0 } else { i as u64 };
            kafka_record(
                offset as i64,
                // The encoder groups records into one batch while offset - sequence stays
                // constant; this keeps it constant and makes the batch's base sequence -1.
                (offset - base) as i32 - 1,
                timestamp_ms(r.timestamp_us),
                r.key.as_ref().map(|k| Bytes::copy_from_slice(k)),
                Some(Bytes::copy_from_slice(&r.value)),
                r.headers
                    .iter()
                    .map(|(n, v)| (n.as_str().to_owned().into(), Some(Bytes::copy_from_slice(v))))
                    .collect(),
            )
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &kafka,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| format!("encoding a record batch: {e}"))?;
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Offset;

    fn record(offset: u64, key: Option<&str>, headers: &[(&str, &str)], value: &str) -> Record {
        Record {
            offset: Offset(offset),
            timestamp_us: 1_700_000_000_123_000 + offset * 1000,
            event_time_us: None,
            key: key.map(|k| k.as_bytes().to_vec()),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
                .collect(),
            value: value.as_bytes().to_vec(),
        }
    }

    use crate::server::DECOMPRESSED_BYTES_MAX;

    fn decode(bytes: &Bytes) -> Result<Vec<ProducedBatch>, String> {
        decode_produced(bytes, &mut { DECOMPRESSED_BYTES_MAX })
    }

    #[test]
    fn a_fetched_batch_decodes_back_to_the_same_records() {
        let records = vec![
            record(7, Some("k1"), &[("h", "v"), ("trace", "t1")], "one"),
            record(8, None, &[], ""),
            record(9, Some(""), &[("x", "")], "three"),
            // Kafka headers are a list: a repeated name keeps every value, in order.
            record(10, None, &[("dup", "a"), ("h", "v"), ("dup", "b")], "four"),
        ];
        let bytes = encode_batch(&records, true).unwrap();
        let batches = decode(&bytes).unwrap();
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].base_sequence, -1);
        let back = &batches[0].records;
        assert_eq!(back.len(), 4);
        for (a, b) in records.iter().zip(back) {
            assert_eq!(a.key, b.key);
            assert_eq!(a.headers, b.headers);
            assert_eq!(a.value, b.value);
            assert_eq!(b.event_time_us, Some(a.timestamp_us as i64));
        }
        let mut sets = bytes.clone();
        let decoded = RecordBatchDecoder::decode_all(&mut sets).unwrap();
        let offsets: Vec<i64> = decoded[0].records.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, vec![7, 8, 9, 10]);
    }

    #[test]
    fn bad_batches_are_errors_not_panics() {
        let good = encode_batch(&[record(0, Some("k"), &[], "v")], false).unwrap();
        for cut in 0..good.len() {
            assert!(decode(&good.slice(..cut)).is_err() || cut == 0);
        }
        let mut huge = good.to_vec();
        huge[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(decode(&Bytes::from(huge)).unwrap_err().contains("records"));
        let mut flipped = good.to_vec();
        let last = flipped.len() - 1;
        flipped[last] ^= 0xff;
        assert!(decode(&Bytes::from(flipped)).is_err());
        let mut magic = good.to_vec();
        magic[16] = 1;
        assert!(decode(&Bytes::from(magic)).unwrap_err().contains("magic"));
    }

    #[test]
    fn compressed_batches_share_one_budget() {
        let value = Some(Bytes::from(vec![b'z'; 10_000]));
        let records: Vec<KafkaRecord> = (0..4)
            .map(|i| kafka_record(i, i as i32 - 1, 0, None, value.clone(), KafkaHeaders::new()))
            .collect();
        let mut buf = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression: Compression::Zstd,
        };
        RecordBatchEncoder::encode(&mut buf, &records, &options).unwrap();
        let batch = buf.freeze();
        assert!(batch.len() < 1_000, "{}", batch.len());
        // The first decode takes the records' ~40 kB from the budget; what is left is too
        // little for the same batch again.
        let mut budget = 60_000;
        assert_eq!(decode_produced(&batch, &mut budget).unwrap()[0].records.len(), 4);
        assert!(budget < 20_000, "{budget}");
        let err = decode_produced(&batch, &mut budget).unwrap_err();
        assert!(err.contains("allowed"), "{err}");
        // Two batches are refused before anything is decompressed.
        let both = Bytes::from([&batch[..], &batch[..]].concat());
        let mut budget = 60_000;
        match decode_partition(&both, &mut budget) {
            Err(BatchError::Invalid(reason)) => assert!(reason.contains("2 record batches"), "{reason}"),
            other => panic!("two batches: {other:?}"),
        }
        assert_eq!(budget, 60_000);
        // Uncompressed batches are not charged.
        let plain = encode_batch(&[record(0, None, &[], "v")], false).unwrap();
        let mut left = 0;
        assert_eq!(decode_produced(&plain, &mut left).unwrap().len(), 1);
    }

    #[test]
    fn compressed_batches_decode_through_the_bounded_codecs() {
        let kafka: Vec<KafkaRecord> = (0..3i64)
            .map(|i| {
                kafka_record(
                    i,
                    // offset - sequence constant: one batch (see encode_batch)
                    i as i32 - 1,
                    1_700_000_000_000 + i,
                    Some(Bytes::from(format!("k{i}"))),
                    Some(Bytes::from(vec![b'v'; 300])),
                    [("h".into(), Some(Bytes::from_static(b"x"))), ("n".into(), None)]
                        .into_iter()
                        .collect(),
                )
            })
            .collect();
        for compression in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let mut buf = BytesMut::new();
            let options = RecordEncodeOptions {
                version: 2,
                compression,
            };
            RecordBatchEncoder::encode(&mut buf, &kafka, &options).unwrap();
            let batches = decode(&buf.freeze()).unwrap();
            assert_eq!(batches.len(), 1, "{compression:?}");
            let records = &batches[0].records;
            assert_eq!(records.len(), 3, "{compression:?}");
            assert_eq!(records[2].key.as_deref(), Some(&b"k2"[..]));
            assert_eq!(
                records[2].headers,
                vec![("h".to_string(), b"x".to_vec()), ("n".to_string(), Vec::new())]
            );
            assert_eq!(records[2].event_time_us, Some(1_700_000_000_002_000));
        }
    }
}
