//! One function per Kafka API: ApiVersions, Metadata, CreateTopics, InitProducerId and
//! ListOffsets here; Produce and Fetch in `data.rs`; the group APIs in `groups.rs`.

use std::sync::Arc;

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, CreateTopicsRequest, CreateTopicsResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, InitProducerIdRequest, InitProducerIdResponse, ListOffsetsRequest, ListOffsetsResponse,
    MetadataRequest, MetadataResponse, RequestKind, ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::conn::Request;
use super::{data, State};
use crate::{Error, Offset, TopicConfig};

/// Kafka error codes the server answers with.
pub(crate) mod code {
    pub const NONE: i16 = 0;
    pub const UNKNOWN_SERVER_ERROR: i16 = -1;
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
    pub const CORRUPT_MESSAGE: i16 = 2;
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const MESSAGE_TOO_LARGE: i16 = 10;
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    pub const INVALID_TOPIC_EXCEPTION: i16 = 17;
    pub const ILLEGAL_GENERATION: i16 = 22;
    pub const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
    pub const INVALID_GROUP_ID: i16 = 24;
    pub const UNKNOWN_MEMBER_ID: i16 = 25;
    pub const INVALID_SESSION_TIMEOUT: i16 = 26;
    pub const REBALANCE_IN_PROGRESS: i16 = 27;
    pub const UNSUPPORTED_VERSION: i16 = 35;
    pub const TOPIC_ALREADY_EXISTS: i16 = 36;
    pub const INVALID_PARTITIONS: i16 = 37;
    pub const INVALID_REPLICATION_FACTOR: i16 = 38;
    pub const INVALID_REQUEST: i16 = 42;
    pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
    pub const INVALID_PRODUCER_EPOCH: i16 = 47;
    pub const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
    pub const KAFKA_STORAGE_ERROR: i16 = 56;
    pub const INVALID_RECORD: i16 = 87;
}

/// FindCoordinator key types: a consumer group, a transactional id.
const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

/// The one broker's node id.
pub(crate) const NODE_ID: i32 = 0;

/// (api, min version, max version) the server implements; ApiVersions advertises exactly
/// these, and a request outside them is refused.
const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 6),
    (ApiKey::Metadata, 0, 9),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 7),
    (ApiKey::FindCoordinator, 0, 3),
    (ApiKey::JoinGroup, 0, 7),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 4),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 5),
    (ApiKey::InitProducerId, 0, 4),
];

/// The versions of `api` the server implements, if any.
pub(crate) fn supported_versions(api: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED
        .iter()
        .find(|(k, _, _)| *k == api)
        .map(|&(_, lo, hi)| (lo, hi))
}

/// The Kafka error code for an engine error; logs errors that are not the client's fault.
pub(crate) fn error_code(e: &Error, what: &str) -> i16 {
    match e {
        Error::LimitExceeded { .. } => code::MESSAGE_TOO_LARGE,
        Error::NoSuchTopic(_) => code::UNKNOWN_TOPIC_OR_PARTITION,
        Error::InvalidTopicName { .. } => code::INVALID_TOPIC_EXCEPTION,
        Error::OffsetOutOfRange { .. } => code::OFFSET_OUT_OF_RANGE,
        Error::TopicExists(_) => code::TOPIC_ALREADY_EXISTS,
        Error::InvalidConfig(_) => code::INVALID_REQUEST,
        Error::Io { .. } | Error::Poisoned { .. } | Error::Corrupt { .. } | Error::Gap { .. } => {
            tracing::error!("{what}: {e}");
            code::KAFKA_STORAGE_ERROR
        }
        other => {
            tracing::warn!("{what}: {other}");
            code::UNKNOWN_SERVER_ERROR
        }
    }
}

pub(crate) fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_owned()))
}

pub(crate) fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

/// Runs the request; `None` when Kafka sends no response (Produce with acks=0).
pub(crate) async fn handle(state: &Arc<State>, request: Request) -> Option<ResponseKind> {
    let version = request.version;
    let client = request.client_id;
    Some(match request.body {
        RequestKind::ApiVersions(_) => ResponseKind::ApiVersions(api_versions()),
        RequestKind::Metadata(r) => ResponseKind::Metadata(metadata(state, r, version).await),
        RequestKind::CreateTopics(r) => ResponseKind::CreateTopics(create_topics(state, r).await),
        RequestKind::InitProducerId(r) => ResponseKind::InitProducerId(init_producer_id(state, r)),
        RequestKind::FindCoordinator(r) => ResponseKind::FindCoordinator(find_coordinator(state, r)),
        RequestKind::ListOffsets(r) => ResponseKind::ListOffsets(list_offsets(state, r).await),
        RequestKind::Produce(r) => return data::produce(state, r).await.map(ResponseKind::Produce),
        RequestKind::Fetch(r) => ResponseKind::Fetch(data::fetch(state, r).await),
        RequestKind::OffsetCommit(r) => ResponseKind::OffsetCommit(super::groups::offset_commit(state, r).await),
        RequestKind::OffsetFetch(r) => ResponseKind::OffsetFetch(super::groups::offset_fetch(state, r, version).await),
        RequestKind::JoinGroup(r) => ResponseKind::JoinGroup(state.groups.join(r, &client).await),
        RequestKind::SyncGroup(r) => ResponseKind::SyncGroup(state.groups.sync(r).await),
        RequestKind::Heartbeat(r) => ResponseKind::Heartbeat(state.groups.heartbeat(r)),
        RequestKind::LeaveGroup(r) => ResponseKind::LeaveGroup(state.groups.leave(r)),
        other => {
            // decode_request admits only the APIs of SUPPORTED, all matched above.
            tracing::error!(
                "no handler for an admitted request {:?}",
                std::mem::discriminant(&other)
            );
            return None;
        }
    })
}

fn api_versions() -> ApiVersionsResponse {
    let mut response = ApiVersionsResponse::default();
    response.api_keys = SUPPORTED
        .iter()
        .map(|&(key, lo, hi)| {
            ApiVersion::default()
                .with_api_key(key as i16)
                .with_min_version(lo)
                .with_max_version(hi)
        })
        .collect();
    response
}

/// ApiVersions in a version the server does not speak: UNSUPPORTED_VERSION plus the list.
pub(crate) fn api_versions_unsupported() -> ResponseKind {
    let mut response = api_versions();
    response.error_code = code::UNSUPPORTED_VERSION;
    ResponseKind::ApiVersions(response)
}

fn broker(state: &State) -> MetadataResponseBroker {
    let mut b = MetadataResponseBroker::default();
    b.node_id = BrokerId(NODE_ID);
    b.host = str_bytes(&state.advertised.0);
    b.port = i32::from(state.advertised.1);
    b
}

fn topic_metadata(topic: &str, error: i16) -> MetadataResponseTopic {
    let mut t = MetadataResponseTopic::default();
    t.name = Some(name(topic));
    t.error_code = error;
    if error == code::NONE {
        let mut p = MetadataResponsePartition::default();
        p.partition_index = 0;
        p.leader_id = BrokerId(NODE_ID);
        p.replica_nodes = vec![BrokerId(NODE_ID)];
        p.isr_nodes = vec![BrokerId(NODE_ID)];
        t.partitions = vec![p];
    }
    t
}

async fn metadata(state: &Arc<State>, request: MetadataRequest, version: i16) -> MetadataResponse {
    let st = Arc::clone(state);
    let topics = tokio::task::spawn_blocking(move || {
        let wanted: Option<Vec<String>> = match request.topics {
            Some(list) if !(version == 0 && list.is_empty()) => Some(
                list.into_iter()
                    .filter_map(|t| t.name.map(|n| n.0.to_string()))
                    .collect(),
            ),
            _ => None,
        };
        let auto = version < 4 || request.allow_auto_topic_creation;
        match wanted {
            None => match st.store.topic_names() {
                Ok(names) => names.iter().map(|n| topic_metadata(n, code::NONE)).collect(),
                Err(e) => {
                    error_code(&e, "listing topics");
                    Vec::new()
                }
            },
            Some(names) => names
                .iter()
                .map(|n| match st.topic(n, auto) {
                    Ok(_) => topic_metadata(n, code::NONE),
                    Err(e) => topic_metadata(n, error_code(&e, &format!("metadata of topic {n:?}"))),
                })
                .collect(),
        }
    })
    .await
    .unwrap_or_default();
    let mut response = MetadataResponse::default();
    response.brokers = vec![broker(state)];
    response.cluster_id = Some(str_bytes(&state.cluster_id));
    response.controller_id = BrokerId(NODE_ID);
    response.topics = topics;
    response
}

async fn create_topics(state: &Arc<State>, request: CreateTopicsRequest) -> CreateTopicsResponse {
    let st = Arc::clone(state);
    let topics = tokio::task::spawn_blocking(move || {
        request
            .topics
            .into_iter()
            .map(|t| {
                let topic = t.name.0.to_string();
                let mut result = CreatableTopicResult::default();
                result.name = t.name;
                result.num_partitions = 1;
                result.replication_factor = 1;
                let refuse = |code: i16, message: &str| (code, Some(str_bytes(message)));
                // -1 asks for the default (one partition); 0 or below -1 is no count at all.
                let (code, message) = if t.num_partitions == 0 || t.num_partitions < -1 {
                    refuse(
                        code::INVALID_PARTITIONS,
                        "number of partitions must be 1, or -1 for the default",
                    )
                } else if t.num_partitions > 1 {
                    refuse(code::INVALID_PARTITIONS, "trailkeep topics have exactly one partition")
                } else if t.replication_factor > 1 {
                    refuse(
                        code::INVALID_REPLICATION_FACTOR,
                        "trailkeep is a single node: replication factor 1",
                    )
                } else if request.validate_only {
                    match crate::topic::validate_topic_name(&topic) {
                        Ok(()) if st.store.topic(&topic).is_ok() => refuse(code::TOPIC_ALREADY_EXISTS, "exists"),
                        Ok(()) => (code::NONE, None),
                        Err(e) => refuse(code::INVALID_TOPIC_EXCEPTION, &e.to_string()),
                    }
                } else {
                    match st.store.create_topic(&topic, TopicConfig::default()) {
                        Ok(_) => {
                            tracing::info!(topic, "topic created by CreateTopics");
                            (code::NONE, None)
                        }
                        Err(e) => (error_code(&e, "creating a topic"), Some(str_bytes(&e.to_string()))),
                    }
                };
                result.error_code = code;
                result.error_message = message;
                result
            })
            .collect()
    })
    .await
    .unwrap_or_default();
    let mut response = CreateTopicsResponse::default();
    response.topics = topics;
    response
}

fn init_producer_id(state: &State, request: InitProducerIdRequest) -> InitProducerIdResponse {
    let mut response = InitProducerIdResponse::default();
    if request.transactional_id.as_ref().is_some_and(|id| id.is_empty()) {
        // As a Kafka broker answers: an empty transactional id is a malformed request.
        tracing::warn!("refusing InitProducerId with an empty transactional id");
        response.error_code = code::INVALID_REQUEST;
        return response;
    }
    if request.transactional_id.is_some() {
        tracing::warn!("refusing InitProducerId with a transactional id: transactions are not supported");
        response.error_code = code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
        return response;
    }
    response.producer_id = kafka_protocol::messages::ProducerId(state.next_producer_id());
    response.producer_epoch = 0;
    response
}

fn find_coordinator(state: &State, request: FindCoordinatorRequest) -> FindCoordinatorResponse {
    let mut response = FindCoordinatorResponse::default();
    // Only versions 0-3 are advertised, so the one key is `key`; the batched
    // `coordinator_keys` of v4+ never arrive.
    if request.key_type == KEY_TYPE_TRANSACTION {
        // As docs/server.md promises for transactional ids: clients give up at once on
        // this code, where INVALID_REQUEST had confluent-kafka retry forever.
        tracing::warn!("refusing FindCoordinator for a transactional id: transactions are not supported");
        response.error_code = code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
        response.error_message = Some(str_bytes("transactions are not supported by trailkeep serve"));
        return response;
    }
    if request.key_type != KEY_TYPE_GROUP {
        response.error_code = code::INVALID_REQUEST;
        response.error_message = Some(str_bytes("only group coordinators (key type 0) exist here"));
        return response;
    }
    response.node_id = BrokerId(NODE_ID);
    response.host = str_bytes(&state.advertised.0);
    response.port = i32::from(state.advertised.1);
    response
}

/// ListOffsets: -1 = latest (the end), -2 = earliest, T >= 0 = first record appended at or
/// after T milliseconds (`Topic::seek_time`), offset -1 when there is none.
async fn list_offsets(state: &Arc<State>, request: ListOffsetsRequest) -> ListOffsetsResponse {
    let st = Arc::clone(state);
    let topics = tokio::task::spawn_blocking(move || {
        request
            .topics
            .into_iter()
            .map(|t| {
                let topic_name = t.name.0.to_string();
                let topic = st.store.topic(&topic_name);
                let partitions = t
                    .partitions
                    .into_iter()
                    .map(|p| {
                        let mut r = ListOffsetsPartitionResponse::default();
                        r.partition_index = p.partition_index;
                        let found = match &topic {
                            _ if p.partition_index != 0 => Err(code::UNKNOWN_TOPIC_OR_PARTITION),
                            Err(e) => Err(error_code(e, "list offsets")),
                            Ok(topic) => offset_for_time(topic, p.timestamp)
                                .map_err(|e| error_code(&e, &format!("list offsets of {topic_name:?}"))),
                        };
                        match found {
                            Ok((offset, timestamp)) => {
                                r.offset = offset;
                                r.timestamp = timestamp;
                            }
                            Err(code) => r.error_code = code,
                        }
                        r
                    })
                    .collect();
                let mut tr = ListOffsetsTopicResponse::default();
                tr.name = t.name;
                tr.partitions = partitions;
                tr
            })
            .collect()
    })
    .await
    .unwrap_or_default();
    let mut response = ListOffsetsResponse::default();
    response.topics = topics;
    response
}

fn offset_for_time(topic: &crate::Topic, timestamp_ms: i64) -> crate::Result<(i64, i64)> {
    topic.refresh()?;
    Ok(match timestamp_ms {
        -1 => (topic.end_offset().0 as i64, -1),
        -2 => (topic.start_offset().0 as i64, -1),
        t if t >= 0 => match topic.seek_time((t as u64).saturating_mul(1000))? {
            Some(offset) => {
                let record = topic.read(offset)?;
                (offset.0 as i64, super::records::timestamp_ms(record.timestamp_us))
            }
            None => (-1, -1),
        },
        _ => (-1, -1),
    })
}

/// Offsets as Kafka's i64, refusing negative ones.
pub(crate) fn to_offset(offset: i64) -> Option<Offset> {
    u64::try_from(offset).ok().map(Offset)
}
