//! A raw Kafka client for tests/serve.rs and tests/serve_wire.rs: one connection, requests
//! of any API and version encoded with kafka-protocol (the request header version that
//! version needs, flexible or not), and responses that must decode at exactly that
//! version, every byte used; Produce and Fetch requests, and a fetched partition checked
//! record for record against what was produced and what the store holds.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::produce_response::PartitionProduceResponse;
use kafka_protocol::messages::{
    ApiVersionsRequest, FetchRequest, ProduceRequest, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions};

/// How long a response may take (no test request long-polls for longer).
const RESPONSE_WAIT_MAX: Duration = Duration::from_secs(30);

/// One connection to a server; correlation ids count up from 1.
pub struct Wire {
    socket: TcpStream,
    correlation_id: i32,
}

impl Wire {
    pub fn connect(addr: &str) -> Wire {
        let socket = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
        socket.set_read_timeout(Some(RESPONSE_WAIT_MAX)).unwrap();
        Wire {
            socket,
            correlation_id: 0,
        }
    }

    /// As [`Wire::call`], or `None` when the connection breaks before the response's size
    /// arrives (a killed server).
    pub fn try_call<R: Request>(&mut self, version: i16, request: &R) -> Option<R::Response> {
        self.send_checked(version, request).ok()?;
        let mut size = [0u8; 4];
        self.socket.read_exact(&mut size).ok()?;
        Some(self.read_response::<R>(version, u32::from_be_bytes(size) as usize))
    }

    /// Sends `request` in `version` and returns the response, which must carry the
    /// request's correlation id and decode at `version` with no byte left over.
    pub fn call<R: Request>(&mut self, version: i16, request: &R) -> R::Response {
        let what = format!("api {} v{version}", R::KEY);
        self.send(version, request);
        let mut size = [0u8; 4];
        self.socket
            .read_exact(&mut size)
            .unwrap_or_else(|e| panic!("{what}: no response: {e}"));
        self.read_response::<R>(version, u32::from_be_bytes(size) as usize)
    }

    /// Reads a response body of `size` bytes to `R` in `version` (see [`Wire::call`]).
    fn read_response<R: Request>(&mut self, version: i16, size: usize) -> R::Response {
        let what = format!("api {} v{version}", R::KEY);
        let mut body = vec![0u8; size];
        self.socket.read_exact(&mut body).unwrap();
        let mut body = Bytes::from(body);
        let header = ResponseHeader::decode(&mut body, R::Response::header_version(version))
            .unwrap_or_else(|e| panic!("{what}: response header: {e}"));
        assert_eq!(
            header.correlation_id, self.correlation_id,
            "{what}: correlation id (an earlier request was answered late, or twice?)"
        );
        let response =
            R::Response::decode(&mut body, version).unwrap_or_else(|e| panic!("{what}: response does not decode: {e}"));
        assert_eq!(
            body.remaining(),
            0,
            "{what}: bytes left after the response decoded at its version"
        );
        response
    }

    /// Sends `request` in `version` and reads nothing (a Produce with acks=0 gets no
    /// response: the next `call` fails if one comes).
    pub fn send<R: Request>(&mut self, version: i16, request: &R) {
        self.send_checked(version, request).unwrap();
    }

    /// As [`Wire::send`]; the socket's error if the write fails.
    fn send_checked<R: Request>(&mut self, version: i16, request: &R) -> std::io::Result<()> {
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("wire-test")));
        let mut frame = BytesMut::new();
        frame.extend_from_slice(&[0; 4]);
        header.encode(&mut frame, R::header_version(version)).unwrap();
        request
            .encode(&mut frame, version)
            .unwrap_or_else(|e| panic!("encoding api {} v{version}: {e}", R::KEY));
        let size = u32::try_from(frame.len() - 4).unwrap();
        frame[..4].copy_from_slice(&size.to_be_bytes());
        self.socket.write_all(&frame)
    }

    /// Sends a request of `api_key` in `version` with an empty body, and says whether the
    /// server closed the connection without an answer (as it does for a version it did
    /// not advertise).
    pub fn closed_after(mut self, api_key: i16, version: i16, header_version: i16) -> bool {
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(api_key)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id);
        let mut frame = BytesMut::new();
        frame.extend_from_slice(&[0; 4]);
        header.encode(&mut frame, header_version).unwrap();
        let size = u32::try_from(frame.len() - 4).unwrap();
        frame[..4].copy_from_slice(&size.to_be_bytes());
        self.socket.write_all(&frame).unwrap();
        let mut buf = [0u8; 16];
        match self.socket.read(&mut buf) {
            Ok(0) | Err(_) => true,
            Ok(_) => false,
        }
    }

    /// The versions the server advertises, per API key: ApiVersions v0 (which every
    /// server answers), checked against what every other advertised ApiVersions version
    /// answers.
    pub fn advertised(&mut self) -> BTreeMap<i16, (i16, i16)> {
        let ranges = |response: kafka_protocol::messages::ApiVersionsResponse| -> BTreeMap<i16, (i16, i16)> {
            assert_eq!(response.error_code, 0, "ApiVersions error");
            response
                .api_keys
                .iter()
                .map(|k| (k.api_key, (k.min_version, k.max_version)))
                .collect()
        };
        let advertised = ranges(self.call(0, &ApiVersionsRequest::default()));
        let &(low, high) = advertised
            .get(&ApiVersionsRequest::KEY)
            .expect("ApiVersions advertises itself");
        for version in low..=high {
            let request = ApiVersionsRequest::default()
                .with_client_software_name(StrBytes::from_static_str("wire-test"))
                .with_client_software_version(StrBytes::from_static_str("1"));
            assert_eq!(
                ranges(self.call(version, &request)),
                advertised,
                "ApiVersions v{version} answers another list than v0"
            );
        }
        advertised
    }
}

/// The advertised versions of `api_key`, all of them.
pub fn versions_of(advertised: &BTreeMap<i16, (i16, i16)>, api_key: i16) -> std::ops::RangeInclusive<i16> {
    let &(low, high) = advertised
        .get(&api_key)
        .unwrap_or_else(|| panic!("api {api_key} is not advertised"));
    assert!(low <= high, "api {api_key}: empty range {low}..={high}");
    low..=high
}

/// Records for a raw Produce in `version`, their keys and values naming `tag`: a key,
/// headers (one empty) and a timestamp; no key and a null header value; a binary key and
/// a null value. No producer id: sequences run from -1 (the encoder starts a new batch
/// where offset minus sequence changes).
pub fn wire_batch(version: i16, tag: &str) -> Vec<Record> {
    use trailkeep::server::records::kafka_record;

    let timestamp_ms = 1_700_000_000_000 + i64::from(version);
    let headers = vec![
        (
            StrBytes::from_string(format!("h-v{version}")),
            Some(Bytes::from(format!("x{version}"))),
        ),
        (StrBytes::from_static_str("empty"), Some(Bytes::new())),
    ];
    let key = Some(Bytes::from(format!("key-v{version}-{tag}")));
    let value = Some(Bytes::from(format!("value-v{version}-{tag}")));
    let binary = Some(Bytes::from(vec![0xff, 0, version as u8]));
    let null_header = vec![(StrBytes::from_static_str("null"), None)];
    vec![
        kafka_record(0, -1, timestamp_ms, key, value, headers),
        kafka_record(1, 0, timestamp_ms + 1, None, binary, null_header),
        kafka_record(
            2,
            1,
            timestamp_ms + 2,
            Some(Bytes::from_static(&[0, 1, 2])),
            None,
            Vec::new(),
        ),
    ]
}

/// `records` as magic-2 record batches compressed with `compression` (one batch, for
/// records from [`wire_batch`]).
pub fn record_batch(records: &[Record], compression: Compression) -> Bytes {
    let mut batch = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression,
    };
    RecordBatchEncoder::encode(&mut batch, records, &options).unwrap();
    batch.freeze()
}

/// `records` as one uncompressed batch.
pub fn uncompressed(records: &[Record]) -> Bytes {
    record_batch(records, Compression::None)
}

/// A Produce of `batch` to `partition` of `topic`, with `acks`.
pub fn produce_request(topic: &str, partition: i32, acks: i16, batch: Bytes) -> ProduceRequest {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};

    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(batch))])])
}

/// `batch` produced with acks=-1 in `version` to `partition` of `topic`; the partition's
/// answer, after checking the topic and partition it names.
pub fn produce_at(
    wire: &mut Wire,
    version: i16,
    (topic, partition): (&str, i32),
    batch: Bytes,
) -> PartitionProduceResponse {
    let mut response = wire.call(version, &produce_request(topic, partition, -1, batch));
    let what = format!("Produce v{version} to {topic}/{partition}");
    assert_eq!(response.responses.len(), 1, "{what}: topics answered");
    let mut answer = response.responses.remove(0);
    assert_eq!(answer.name.0.as_str(), topic, "{what}: topic");
    assert_eq!(answer.partition_responses.len(), 1, "{what}: partitions");
    let answer = answer.partition_responses.remove(0);
    assert_eq!(answer.index, partition, "{what}: partition");
    answer
}

/// Fetch v`version` of `partition` of `topic` from `from` (at least one byte, waiting up
/// to `max_wait_ms` for it); the partition's answer, after checking the response's own
/// fields.
pub fn fetch_at(
    wire: &mut Wire,
    version: i16,
    (topic, partition): (&str, i32),
    from: i64,
    max_wait_ms: i32,
) -> PartitionData {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};

    let asked = FetchPartition::default()
        .with_partition(partition)
        .with_fetch_offset(from)
        .with_partition_max_bytes(1 << 20);
    let request = FetchRequest::default()
        .with_replica_id((-1).into())
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_owned())))
            .with_partitions(vec![asked])]);
    let mut response = wire.call(version, &request);
    let what = format!("Fetch v{version} of {topic}/{partition} from {from}");
    assert_eq!(response.error_code, 0, "{what}: error");
    assert_eq!(response.session_id, 0, "{what}: no fetch sessions");
    assert_eq!(response.responses.len(), 1, "{what}: topics answered");
    let mut answer = response.responses.remove(0);
    assert_eq!(answer.topic.0.as_str(), topic, "{what}: topic");
    assert_eq!(answer.partitions.len(), 1, "{what}: partitions");
    let answer = answer.partitions.remove(0);
    assert_eq!(answer.partition_index, partition, "{what}: partition");
    answer
}

/// A Kafka record's key, value and headers as the server gives them back: a null value
/// or header value is an empty one.
pub fn wire_fields(record: &Record) -> (Option<Bytes>, Bytes, Vec<(String, Bytes)>) {
    let headers = record
        .headers
        .iter()
        .map(|(name, value)| (name.to_string(), value.clone().unwrap_or_default()))
        .collect();
    (record.key.clone(), record.value.clone().unwrap_or_default(), headers)
}

/// Checks a fetched partition from `from` against `sent` (all records of the topic, in
/// offset order) and the store: offsets, keys, values, headers, CreateTime timestamps
/// equal to the append times, and the partition's offsets.
pub fn check_fetched(
    what: &str,
    version: i16,
    partition: &PartitionData,
    from: usize,
    sent: &[Record],
    topic: &trailkeep::Topic,
) {
    use kafka_protocol::records::{RecordBatchDecoder, TimestampType};

    let end = sent.len() as i64;
    assert_eq!(partition.error_code, 0, "{what}: error");
    assert_eq!(partition.high_watermark, end, "{what}: high watermark");
    assert_eq!(partition.last_stable_offset, end, "{what}: last stable offset");
    if version >= 5 {
        assert_eq!(partition.log_start_offset, 0, "{what}: log start offset");
    }
    if version >= 11 {
        assert_eq!(partition.preferred_read_replica, -1, "{what}: preferred read replica");
    }
    let mut bytes = partition.records.clone().unwrap_or_default();
    let sets = RecordBatchDecoder::decode_all(&mut bytes).unwrap_or_else(|e| panic!("{what}: records: {e}"));
    let fetched: Vec<_> = sets.into_iter().flat_map(|s| s.records).collect();
    let offsets: Vec<i64> = fetched.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, (from as i64..end).collect::<Vec<_>>(), "{what}: offsets");
    for (got, want) in fetched.iter().zip(&sent[from..]) {
        let at = got.offset;
        assert_eq!(wire_fields(got), wire_fields(want), "{what}: record {at}");
        let stored = topic.read(trailkeep::Offset(at as u64)).unwrap();
        let append_ms = trailkeep::server::records::timestamp_ms(stored.timestamp_us);
        assert_eq!(got.timestamp, append_ms, "{what}: record {at} timestamp");
        assert_eq!(got.timestamp_type, TimestampType::Creation, "{what}: record {at}");
        assert_eq!(
            stored.event_time_us,
            Some(want.timestamp * 1000),
            "{what}: record {at} event time"
        );
    }
}
