//! `server_frame`: Kafka request frames through the server's decoding and, on demand,
//! its request handlers against a temporary store.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::RecordEncodeOptions;
use kafka_protocol::records::{Compression as KafkaCompression, Record as KafkaRecord, RecordBatchEncoder};
use trailkeep::server::records::{decode_produced, kafka_record};
use trailkeep::server::DECOMPRESSED_BYTES_MAX;
use trailkeep::{NewRecord, Offset, Store};

use super::Input;

/// The topic of the Produce requests this target builds.
pub const FUZZ_TOPIC: &str = "fuzz-topic";
/// Most records one built batch holds.
const BUILT_RECORDS_MAX: u8 = 8;
/// Most XOR patches applied to a built batch.
const PATCHES_MAX: usize = 8;
/// Byte of a v2 batch where the CRC-32C coverage starts (attributes), and where the CRC is.
const BATCH_CRC_START: usize = 21;
const BATCH_CRC_POS: usize = 17;
/// The ApiVersions versions the server speaks (src/server/handlers.rs).
const API_VERSIONS_SUPPORTED: std::ops::RangeInclusive<i16> = 0..=3;
/// Bytes before a v2 batch's length-counted part (base offset, length).
const BATCH_PREFIX_BYTES: usize = 12;

/// `server_frame`: `[mode] [...]`; mode & 3 picks the input:
/// - 0: the rest is a request frame (the bytes after the size prefix);
/// - 1: the rest is one partition's record batches, given to `decode_produced` alone;
/// - 2: `[version] [acks] [topic length] [topic] [batch bytes...]`, a Produce around them;
/// - 3: `[version] [acks] [compression] [count] [patch count] [patches...] [record data...]`:
///   a Produce of a valid batch built from the data, then XOR patches `[pos u16][xor u8]`.
///
/// mode & 4 rewrites the batches' CRC-32C (after the patches), mode & 8 runs the frame
/// through the request handlers against a temporary store. Nothing may panic; a handled
/// request's response must decode; a Produce of [`FUZZ_TOPIC`] appends exactly the records
/// `decode_produced` reads, or nothing when it refuses them.
pub fn check_server_frame(data: &[u8]) {
    let mut input = Input::new(data);
    let mode = input.u8();
    let (fix_crc, handle) = (mode & 4 != 0, mode & 8 != 0);
    let frame = match mode & 3 {
        0 => input.rest().to_vec(),
        1 => {
            let mut batches = input.rest().to_vec();
            if fix_crc {
                fix_batch_crcs(&mut batches);
            }
            check_decode_produced(&Bytes::from(batches));
            return;
        }
        2 => {
            let (version, acks) = (input.u8(), input.u8());
            let topic_len = usize::from(input.u8());
            let topic = String::from_utf8_lossy(input.take(topic_len)).into_owned();
            let mut batches = input.rest().to_vec();
            if fix_crc {
                fix_batch_crcs(&mut batches);
            }
            produce_frame(version, acks, &topic, Bytes::from(batches))
        }
        _ => built_produce_frame(&mut input, fix_crc),
    };
    let decoded = trailkeep::server::fuzz_decode_frame(&frame);
    if handle {
        check_handled(&frame, decoded.is_ok());
    }
}

/// `decode_produced` alone: every batch it returns holds records, as many as it says.
fn check_decode_produced(bytes: &Bytes) {
    let mut budget = DECOMPRESSED_BYTES_MAX;
    let Ok(batches) = decode_produced(bytes, &mut budget) else {
        return;
    };
    let decompressed: usize = batches.iter().flat_map(|b| &b.records).map(|r| r.value.len()).sum();
    assert!(
        decompressed <= DECOMPRESSED_BYTES_MAX - budget + bytes.len(),
        "record values hold more bytes than were received and decompressed"
    );
    assert!(batches.len() <= bytes.len() / 61 + 1, "more batches than bytes allow");
}

/// Runs the frame through the handlers on a new temporary store and checks the response.
fn check_handled(frame: &[u8], decoded: bool) {
    let store = Store::temporary().expect("a temporary store");
    let response = trailkeep::server::fuzz_handle_frame(&store, frame);
    if decoded {
        // A request the decoder took gets an answer (or none for acks=0), never a closed
        // connection: every response the handlers build encodes.
        assert!(response.is_ok(), "a decoded request failed: {:?}", response.err());
    }
    if let Ok(Some(bytes)) = &response {
        check_response(frame, bytes);
    }
    check_produced_records(&store, frame, response.is_ok());
    store.close().expect("closing the store");
}

/// The response is size-prefixed and decodes as the request's API and version.
fn check_response(frame: &[u8], bytes: &[u8]) {
    assert!(bytes.len() >= 8, "response of {} bytes", bytes.len());
    let size = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    assert_eq!(size, bytes.len() - 4, "size prefix does not match the response");
    let key = i16::from_be_bytes([frame[0], frame[1]]);
    let mut version = i16::from_be_bytes([frame[2], frame[3]]);
    let api_key = ApiKey::try_from(key).expect("a handled request has a known api key");
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let mut buf = Bytes::copy_from_slice(&bytes[4..]);
    if api_key == ApiKey::ApiVersions && !API_VERSIONS_SUPPORTED.contains(&version) {
        version = 0; // answered in v0 with UNSUPPORTED_VERSION, as Kafka does
    }
    let header = ResponseHeader::decode(&mut buf, api_key.response_header_version(version))
        .expect("the response header decodes");
    assert_eq!(header.correlation_id, correlation_id);
    ResponseKind::decode(api_key, &mut buf, version).expect("the response body decodes");
    assert!(buf.is_empty(), "{} bytes after the response body", buf.len());
}

/// After a Produce of [`FUZZ_TOPIC`] built by this target, the topic holds exactly the
/// non-control records of its batches, or none when they were refused.
fn check_produced_records(store: &Store, frame: &[u8], handled: bool) {
    let Some((acks_ok, records)) = built_produce_records(frame) else {
        return;
    };
    let stored = match store.topic(FUZZ_TOPIC) {
        Ok(topic) => {
            let records: Vec<_> = topic.iter(Offset(0)).map(|r| r.expect("reading back")).collect();
            records
        }
        Err(_) => Vec::new(),
    };
    let want: Vec<NewRecord> = match records {
        Ok(batches) if handled && acks_ok && !batches.iter().any(|b| b.transactional) => {
            batches.into_iter().flat_map(|b| b.records).collect()
        }
        _ => {
            assert!(stored.is_empty(), "records appended from a refused produce");
            return;
        }
    };
    assert_eq!(
        stored.len(),
        want.len(),
        "appended records differ from the decoded ones"
    );
    for (got, want) in stored.iter().zip(&want) {
        assert_eq!(got.key, want.key);
        assert_eq!(got.headers, want.headers);
        assert_eq!(got.value, want.value);
        assert_eq!(got.event_time_us, want.event_time_us);
    }
}

type Decoded = Result<Vec<trailkeep::server::records::ProducedBatch>, String>;

/// For a frame that is a Produce of [`FUZZ_TOPIC`] partition 0 only (as this target builds
/// them): whether it is non-transactional, and what `decode_produced` makes of the records.
fn built_produce_records(frame: &[u8]) -> Option<(bool, Decoded)> {
    let (key, version) = (frame.get(0..2)?, frame.get(2..4)?);
    let (key, version) = (
        i16::from_be_bytes([key[0], key[1]]),
        i16::from_be_bytes([version[0], version[1]]),
    );
    if key != ApiKey::Produce as i16 || !(3..=9).contains(&version) {
        return None;
    }
    let mut buf = Bytes::copy_from_slice(frame);
    RequestHeader::decode(&mut buf, ApiKey::Produce.request_header_version(version)).ok()?;
    let RequestKind::Produce(request) = RequestKind::decode(ApiKey::Produce, &mut buf, version).ok()? else {
        return None;
    };
    let [topic] = &request.topic_data[..] else { return None };
    let [partition] = &topic.partition_data[..] else {
        return None;
    };
    if topic.name.0.as_str() != FUZZ_TOPIC || partition.index != 0 {
        return None;
    }
    let records = partition.records.clone().unwrap_or_default();
    Some((
        request.transactional_id.is_none(),
        decode_produced(&records, &mut { DECOMPRESSED_BYTES_MAX }),
    ))
}

/// A Produce frame: `version` 3 to 9 (taken modulo), `acks` -1, 0 or 1 (modulo).
pub fn produce_frame(version: u8, acks: u8, topic: &str, records: Bytes) -> Vec<u8> {
    let version = 3 + i16::from(version % 7);
    let mut request = ProduceRequest::default();
    request.acks = i16::from(acks % 3) - 1;
    request.timeout_ms = 1000;
    let mut partition = PartitionProduceData::default();
    partition.index = 0;
    partition.records = Some(records);
    let mut topic_data = TopicProduceData::default();
    topic_data.name = kafka_protocol::messages::TopicName(StrBytes::from_string(topic.to_owned()));
    topic_data.partition_data = vec![partition];
    request.topic_data = vec![topic_data];
    request_frame(ApiKey::Produce, version, RequestKind::Produce(request))
}

/// A request frame (no size prefix): header with correlation id 7, then `body`.
pub fn request_frame(api_key: ApiKey, version: i16, body: RequestKind) -> Vec<u8> {
    let mut header = RequestHeader::default();
    header.request_api_key = api_key as i16;
    header.request_api_version = version;
    header.correlation_id = 7;
    header.client_id = Some(StrBytes::from_static_str("fuzz"));
    let mut buf = BytesMut::new();
    header
        .encode(&mut buf, api_key.request_header_version(version))
        .expect("encoding a request header");
    body.encode(&mut buf, version).expect("encoding a request");
    buf.to_vec()
}

/// Mode 3: a valid batch of records made from the input, patched, in a Produce frame.
fn built_produce_frame(input: &mut Input<'_>, fix_crc: bool) -> Vec<u8> {
    let (version, acks, compression) = (input.u8(), input.u8(), input.u8());
    let count = input.u8() % BUILT_RECORDS_MAX + 1;
    let patch_count = usize::from(input.u8()) % (PATCHES_MAX + 1);
    let patches = input.take(patch_count * 3).to_vec();
    let records: Vec<KafkaRecord> = (0..count).map(|i| built_record(input, i)).collect();
    let mut batch = kafka_batch(&records, compression);
    for patch in patches.chunks_exact(3) {
        if batch.is_empty() {
            break;
        }
        let pos = usize::from(u16::from_le_bytes([patch[0], patch[1]])) % batch.len();
        batch[pos] ^= patch[2];
    }
    if fix_crc {
        fix_batch_crcs(&mut batch);
    }
    produce_frame(version, acks, FUZZ_TOPIC, Bytes::from(batch))
}

/// `[flags] [key length] [value length] [key] [value] [header value]`; flags: bit 0 a key,
/// bit 1 a null value, bit 2 a header, bit 3 a negative timestamp.
fn built_record(input: &mut Input<'_>, i: u8) -> KafkaRecord {
    let flags = input.u8();
    let (key_len, value_len) = (usize::from(input.u8() % 32), usize::from(input.u8()));
    let key = Bytes::copy_from_slice(input.take(key_len));
    let value = Bytes::copy_from_slice(input.take(value_len));
    let mut headers = Vec::new();
    if flags & 4 != 0 {
        headers.push((
            StrBytes::from_static_str("h"),
            Some(Bytes::copy_from_slice(input.take(4))),
        ));
    }
    let timestamp = if flags & 8 != 0 {
        -1
    } else {
        1_700_000_000_000 + i64::from(i)
    };
    kafka_record(
        i64::from(i),
        -1,
        timestamp,
        (flags & 1 != 0).then_some(key),
        (flags & 2 == 0).then_some(value),
        headers,
    )
}

/// One v2 batch of `records` with codec `compression` modulo 5 (none, gzip, snappy, lz4,
/// zstd).
pub fn kafka_batch(records: &[KafkaRecord], compression: u8) -> Vec<u8> {
    let compression = match compression % 5 {
        0 => KafkaCompression::None,
        1 => KafkaCompression::Gzip,
        2 => KafkaCompression::Snappy,
        3 => KafkaCompression::Lz4,
        _ => KafkaCompression::Zstd,
    };
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression,
    };
    RecordBatchEncoder::encode(&mut buf, records, &options).expect("encoding a record batch");
    buf.to_vec()
}

/// Rewrites the CRC-32C of every complete v2 batch, walking the batch lengths.
pub fn fix_batch_crcs(bytes: &mut [u8]) {
    let mut pos = 0usize;
    while pos + BATCH_CRC_START <= bytes.len() {
        let length = i32::from_be_bytes([bytes[pos + 8], bytes[pos + 9], bytes[pos + 10], bytes[pos + 11]]);
        let Ok(length) = usize::try_from(length) else { return };
        let end = pos + BATCH_PREFIX_BYTES + length;
        if length < BATCH_CRC_START - BATCH_PREFIX_BYTES || end > bytes.len() {
            return;
        }
        let crc = crc32c::crc32c(&bytes[pos + BATCH_CRC_START..end]);
        bytes[pos + BATCH_CRC_POS..pos + BATCH_CRC_START].copy_from_slice(&crc.to_be_bytes());
        pos = end;
    }
}
