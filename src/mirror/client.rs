//! A small blocking Kafka producer client: ApiVersions, Metadata (to find partition 0's
//! leader), CreateTopics (when the remote topic is missing) and Produce with acks=all.
//! Just what mirroring needs; written on kafka-protocol's message types.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, CreateTopicsRequest, CreateTopicsResponse, MetadataRequest,
    MetadataResponse, ProduceRequest, ProduceResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::MirrorError;

/// Longest a remote call may take before the connection is dropped and retried.
pub const REMOTE_TIMEOUT_MS: u64 = 30_000;
/// Largest response frame accepted from the remote cluster.
const RESPONSE_BYTES_MAX: usize = 100 << 20;
/// Highest versions this client speaks (it takes the lower of these and the broker's).
const PRODUCE_VERSION_MAX: i16 = 9;
const METADATA_VERSION_MAX: i16 = 9;
const CREATE_TOPICS_VERSION_MAX: i16 = 5;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const TOPIC_ALREADY_EXISTS: i16 = 36;

struct Connection {
    stream: TcpStream,
    address: String,
    versions: HashMap<i16, (i16, i16)>,
    correlation_id: i32,
}

impl Connection {
    fn open(address: &str) -> Result<Connection, MirrorError> {
        let io = |what: &str| {
            let context = format!("{what} {address}");
            move |source| MirrorError::Io { context, source }
        };
        let addr = address
            .to_socket_addrs()
            .map_err(io("resolving"))?
            .next()
            .ok_or_else(|| MirrorError::Remote(format!("{address} resolves to no address")))?;
        let stream =
            TcpStream::connect_timeout(&addr, Duration::from_millis(REMOTE_TIMEOUT_MS)).map_err(io("connecting to"))?;
        let timeout = Some(Duration::from_millis(REMOTE_TIMEOUT_MS));
        stream.set_read_timeout(timeout).map_err(io("configuring"))?;
        stream.set_write_timeout(timeout).map_err(io("configuring"))?;
        let _ = stream.set_nodelay(true);
        let mut conn = Connection {
            stream,
            address: address.to_owned(),
            versions: HashMap::new(),
            correlation_id: 0,
        };
        let versions: ApiVersionsResponse = conn.call(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default())?;
        if versions.error_code != 0 {
            return Err(MirrorError::Kafka {
                what: format!("ApiVersions at {address}"),
                code: versions.error_code,
            });
        }
        conn.versions = versions
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        Ok(conn)
    }

    /// The highest version of `api` both sides speak.
    fn version(&self, api: ApiKey, ours_min: i16, ours_max: i16) -> Result<i16, MirrorError> {
        let (lo, hi) = self.versions.get(&(api as i16)).copied().unwrap_or((-1, -1));
        let version = hi.min(ours_max);
        if version < ours_min || version < lo {
            return Err(MirrorError::Remote(format!(
                "{} speaks {api:?} versions {lo}..={hi}; this client needs {ours_min}..={ours_max}",
                self.address
            )));
        }
        Ok(version)
    }

    fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        request: &Req,
    ) -> Result<Resp, MirrorError> {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let encode_err = |e: String| MirrorError::Remote(format!("encoding {api:?} v{version}: {e}"));
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&[0; 4]);
        let mut header = RequestHeader::default();
        header.request_api_key = api as i16;
        header.request_api_version = version;
        header.correlation_id = self.correlation_id;
        header.client_id = Some(StrBytes::from_static_str("trailkeep-mirror"));
        header
            .encode(&mut buf, api.request_header_version(version))
            .map_err(|e| encode_err(e.to_string()))?;
        request
            .encode(&mut buf, version)
            .map_err(|e| encode_err(e.to_string()))?;
        let size = (buf.len() - 4) as u32;
        buf[..4].copy_from_slice(&size.to_be_bytes());
        let io = |what: &'static str, address: &str| {
            let context = format!("{what} {api:?} with {address}");
            move |source| MirrorError::Io { context, source }
        };
        self.stream.write_all(&buf).map_err(io("sending", &self.address))?;
        let mut size = [0u8; 4];
        self.stream
            .read_exact(&mut size)
            .map_err(io("awaiting", &self.address))?;
        let size = u32::from_be_bytes(size) as usize;
        if size > RESPONSE_BYTES_MAX {
            return Err(MirrorError::Remote(format!(
                "{} sent a {size}-byte {api:?} response (limit {RESPONSE_BYTES_MAX})",
                self.address
            )));
        }
        let mut body = vec![0u8; size];
        self.stream
            .read_exact(&mut body)
            .map_err(io("reading", &self.address))?;
        let mut body = Bytes::from(body);
        let decode_err = |e: String| MirrorError::Remote(format!("decoding {api:?} v{version} response: {e}"));
        let header = ResponseHeader::decode(&mut body, api.response_header_version(version))
            .map_err(|e| decode_err(e.to_string()))?;
        if header.correlation_id != self.correlation_id {
            return Err(decode_err(format!(
                "correlation id {} where {} was expected",
                header.correlation_id, self.correlation_id
            )));
        }
        let response = Resp::decode(&mut body, version).map_err(|e| decode_err(e.to_string()))?;
        if body.has_remaining() {
            tracing::debug!("{api:?} v{version} response has {} trailing bytes", body.remaining());
        }
        Ok(response)
    }
}

/// Produces to partition 0 of topics on one Kafka-compatible cluster.
pub struct Producer {
    bootstrap: String,
    /// Connection to the leader of partition 0 of each topic (one cluster, usually one node).
    leader: Option<Connection>,
    create_topics: bool,
}

impl Producer {
    /// A producer for the cluster at `bootstrap` (host:port). Connects lazily.
    pub fn new(bootstrap: &str, create_topics: bool) -> Producer {
        Producer {
            bootstrap: bootstrap.to_owned(),
            leader: None,
            create_topics,
        }
    }

    /// Drops the connection (the next call reconnects and asks for the leader again).
    pub fn reset(&mut self) {
        self.leader = None;
    }

    fn connect_leader(&mut self, topic: &str) -> Result<&mut Connection, MirrorError> {
        if self.leader.is_none() {
            let mut bootstrap = Connection::open(&self.bootstrap)?;
            let leader = self.find_leader(&mut bootstrap, topic)?;
            let conn = if leader == self.bootstrap {
                bootstrap
            } else {
                Connection::open(&leader)?
            };
            tracing::info!(topic, leader, "mirror connected to the leader of partition 0");
            self.leader = Some(conn);
        }
        self.leader
            .as_mut()
            .ok_or_else(|| MirrorError::Remote("no connection".into()))
    }

    fn find_leader(&self, conn: &mut Connection, topic: &str) -> Result<String, MirrorError> {
        for attempt in 0..2 {
            let version = conn.version(ApiKey::Metadata, 1, METADATA_VERSION_MAX)?;
            let mut request = MetadataRequest::default();
            let mut t = MetadataRequestTopic::default();
            t.name = Some(TopicName(StrBytes::from_string(topic.to_owned())));
            request.topics = Some(vec![t]);
            request.allow_auto_topic_creation = false;
            let response: MetadataResponse = conn.call(ApiKey::Metadata, version, &request)?;
            let found = response
                .topics
                .iter()
                .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic));
            let code = found.map_or(UNKNOWN_TOPIC_OR_PARTITION, |t| t.error_code);
            if code == UNKNOWN_TOPIC_OR_PARTITION && self.create_topics && attempt == 0 {
                create_topic(conn, topic)?;
                continue;
            }
            if code != 0 {
                return Err(MirrorError::Kafka {
                    what: format!("metadata of remote topic {topic:?}"),
                    code,
                });
            }
            let leader_id = found
                .and_then(|t| t.partitions.iter().find(|p| p.partition_index == 0))
                .map(|p| p.leader_id)
                .ok_or_else(|| MirrorError::Remote(format!("remote topic {topic:?} has no partition 0")))?;
            let broker = response
                .brokers
                .iter()
                .find(|b| b.node_id == leader_id)
                .ok_or_else(|| {
                    MirrorError::Remote(format!("the leader of {topic:?} (node {}) is not listed", leader_id.0))
                })?;
            return Ok(format!("{}:{}", broker.host.as_str(), broker.port));
        }
        Err(MirrorError::Remote(format!(
            "remote topic {topic:?} does not appear after creating it"
        )))
    }

    /// Produces one record batch to partition 0 of `topic` with acks=all; the base offset
    /// the cluster assigned.
    ///
    /// # Errors
    /// I/O errors and Kafka error codes; the caller retries (the batch may then be
    /// written twice: at-least-once).
    pub fn produce(&mut self, topic: &str, batch: Bytes) -> Result<i64, MirrorError> {
        let conn = self.connect_leader(topic)?;
        let version = conn.version(ApiKey::Produce, 3, PRODUCE_VERSION_MAX)?;
        let mut partition = PartitionProduceData::default();
        partition.index = 0;
        partition.records = Some(batch);
        let mut topic_data = TopicProduceData::default();
        topic_data.name = TopicName(StrBytes::from_string(topic.to_owned()));
        topic_data.partition_data = vec![partition];
        let mut request = ProduceRequest::default();
        request.acks = -1;
        request.timeout_ms = REMOTE_TIMEOUT_MS as i32;
        request.topic_data = vec![topic_data];
        let response: ProduceResponse = conn.call(ApiKey::Produce, version, &request)?;
        let partition = response
            .responses
            .iter()
            .flat_map(|t| t.partition_responses.iter())
            .find(|p| p.index == 0)
            .ok_or_else(|| MirrorError::Remote(format!("produce response for {topic:?} has no partition 0")))?;
        if partition.error_code != 0 {
            return Err(MirrorError::Kafka {
                what: format!("produce to remote topic {topic:?}"),
                code: partition.error_code,
            });
        }
        Ok(partition.base_offset)
    }
}

fn create_topic(conn: &mut Connection, topic: &str) -> Result<(), MirrorError> {
    let version = conn.version(ApiKey::CreateTopics, 2, CREATE_TOPICS_VERSION_MAX)?;
    let mut t = CreatableTopic::default();
    t.name = TopicName(StrBytes::from_string(topic.to_owned()));
    t.num_partitions = 1;
    // -1 (the cluster's default) exists from v4 on.
    t.replication_factor = if version >= 4 { -1 } else { 1 };
    let mut request = CreateTopicsRequest::default();
    request.topics = vec![t];
    request.timeout_ms = REMOTE_TIMEOUT_MS as i32;
    let response: CreateTopicsResponse = conn.call(ApiKey::CreateTopics, version, &request)?;
    let code = response.topics.first().map_or(0, |t| t.error_code);
    if code != 0 && code != TOPIC_ALREADY_EXISTS {
        return Err(MirrorError::Kafka {
            what: format!("creating remote topic {topic:?}"),
            code,
        });
    }
    tracing::info!(topic, "created the remote topic (1 partition)");
    Ok(())
}
