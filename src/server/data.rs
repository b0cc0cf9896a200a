//! Produce and Fetch: records in and out.
//!
//! Produce appends the one record batch of a partition's data (Kafka refuses more in
//! Produce v3+) with one write (one append time; under a limit error nothing is written)
//! and answers only once it is acknowledged: under `Durability::Always` the connection's
//! task waits for the sync as an async appender does (`Topic::acknowledged`), so
//! concurrent produces share fdatasyncs without a thread each. A batch of an idempotent
//! producer is first checked against what `producers` knows of it: a retry of one of its
//! last batches is answered with that batch's offset and not appended again, a gap or a
//! stale epoch is refused.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{FetchRequest, FetchResponse, ProduceRequest, ProduceResponse};

use super::handlers::{code, error_code, name, str_bytes, to_offset};
use super::producers::{self, Sequenced, Taken};
use super::records::{decode_partition, encode_batch, BatchError, ProducedBatch};
use super::DECOMPRESSED_BYTES_MAX;
use super::{State, FETCH_BYTES_MAX, FETCH_POLL_MS, FETCH_WAIT_MAX_MS};
use crate::{Record, RecordFields, Topic};

/// Estimated framing bytes of one record in a fetched batch, on top of key, headers, value.
const RECORD_OVERHEAD_BYTES: usize = 24;

/// A partition's records taken: the first offset they have (a retried batch's original
/// one), the topic's start offset, whether anything was appended, and the topic and end
/// offset to wait for before answering (written, maybe not yet durable).
struct Accepted {
    first: u64,
    start: u64,
    appended: bool,
    topic: Topic,
    end: u64,
}

/// A partition's records refused: the Kafka error code and, when the client should
/// know more, what was wrong (the response's error message, Produce v8 and later).
struct Refused {
    code: i16,
    message: Option<String>,
}

impl From<i16> for Refused {
    fn from(code: i16) -> Refused {
        Refused { code, message: None }
    }
}

pub(crate) async fn produce(state: &Arc<State>, request: ProduceRequest) -> Option<ProduceResponse> {
    let acks = request.acks;
    let transactional = request.transactional_id.is_some();
    let mut responses = Vec::with_capacity(request.topic_data.len());
    let mut appended_any = false;
    let mut budget = DECOMPRESSED_BYTES_MAX;
    for topic_data in request.topic_data {
        let topic_name = topic_data.name.0.to_string();
        let mut partitions = Vec::with_capacity(topic_data.partition_data.len());
        for partition in topic_data.partition_data {
            let mut r = PartitionProduceResponse::default();
            r.index = partition.index;
            r.base_offset = -1;
            r.log_append_time_ms = -1;
            r.log_start_offset = -1;
            let outcome = if transactional {
                tracing::warn!(
                    topic = topic_name,
                    "refusing a transactional produce: transactions are not supported"
                );
                Err(Refused::from(code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED))
            } else if partition.index != 0 {
                Err(Refused::from(code::UNKNOWN_TOPIC_OR_PARTITION))
            } else {
                let st = Arc::clone(state);
                let name = topic_name.clone();
                let records = partition.records.unwrap_or_default();
                let left = budget;
                let (outcome, left) = tokio::task::spawn_blocking(move || append_partition(&st, &name, &records, left))
                    .await
                    .unwrap_or((Err(Refused::from(code::UNKNOWN_SERVER_ERROR)), 0));
                budget = left;
                acknowledged(outcome, &topic_name).await
            };
            match outcome {
                Ok(accepted) => {
                    r.base_offset = accepted.first as i64;
                    r.log_start_offset = accepted.start as i64;
                    appended_any |= accepted.appended;
                }
                Err(refused) => {
                    r.error_code = refused.code;
                    r.error_message = refused.message.as_deref().map(str_bytes);
                }
            }
            partitions.push(r);
        }
        let mut t = TopicProduceResponse::default();
        t.name = name(&topic_name);
        t.partition_responses = partitions;
        responses.push(t);
    }
    if appended_any {
        state.appended.notify_waiters();
    }
    if acks == 0 {
        return None;
    }
    let mut response = ProduceResponse::default();
    response.responses = responses;
    Some(response)
}

/// Waits (without holding a thread) until what `outcome` took is acknowledged: under
/// `Durability::Always` its records are durable (a retried batch's too), else at once.
async fn acknowledged(outcome: Result<Accepted, Refused>, topic_name: &str) -> Result<Accepted, Refused> {
    let accepted = outcome?;
    accepted
        .topic
        .acknowledged(crate::Offset(accepted.end))
        .await
        .map_err(|e| Refused::from(error_code(&e, &format!("produce to {topic_name:?}"))))?;
    Ok(accepted)
}

/// Decodes and writes one partition's batch, which may decompress to at most `budget`
/// bytes; the outcome, and what is left of the budget.
fn append_partition(
    state: &State,
    topic_name: &str,
    bytes: &bytes::Bytes,
    mut budget: usize,
) -> (Result<Accepted, Refused>, usize) {
    let outcome = match decode_partition(bytes, &mut budget) {
        Ok(batch) => append_batch(state, topic_name, &batch),
        Err(e) => {
            tracing::warn!(topic = topic_name, "refusing a produce: {e}");
            let code = match e {
                BatchError::Invalid(_) => code::INVALID_RECORD,
                BatchError::Corrupt(_) => code::CORRUPT_MESSAGE,
            };
            Err(Refused {
                code,
                message: Some(format!("topic {topic_name:?} partition 0: {e}")),
            })
        }
    };
    (outcome, budget)
}

/// Appends a partition's decoded batch, unless it is a retry of one already appended.
fn append_batch(state: &State, topic_name: &str, batch: &ProducedBatch) -> Result<Accepted, Refused> {
    if batch.transactional {
        tracing::warn!(
            topic = topic_name,
            "refusing a transactional batch: transactions are not supported"
        );
        return Err(Refused::from(code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED));
    }
    let topic = state
        .topic(topic_name, true)
        .map_err(|e| error_code(&e, &format!("produce to {topic_name:?}")))?;
    // Written here; the caller waits for the sync without holding a thread, so that the
    // produces of many connections share fdatasyncs as async appenders do.
    let append = || {
        let fields: Vec<RecordFields<'_>> = batch.records.iter().map(|r| r.as_fields()).collect();
        topic
            .write_fields(&fields)
            .map(|appended| appended.first.0)
            .map_err(|e| Refused::from(error_code(&e, &format!("produce to {topic_name:?}"))))
    };
    let accepted = |first: u64, appended: bool| Accepted {
        first,
        start: topic.start_offset().0,
        appended,
        topic: topic.clone(),
        end: first + batch.records.len() as u64,
    };
    let Some(sequenced) = Sequenced::of(batch) else {
        return Ok(accepted(append()?, true));
    };
    let slot = state.producers.lock().slot(topic_name, sequenced.producer_id);
    match producers::append_checked(&slot, &sequenced, append)? {
        Taken::Appended(first) => Ok(accepted(first, true)),
        Taken::Duplicate(first) => {
            tracing::debug!(
                topic = topic_name,
                ?sequenced,
                first,
                "a retried batch answered, not appended"
            );
            // Answered once the original is durable (it may still be syncing).
            Ok(accepted(first, false))
        }
        Taken::Refused(code, reason) => {
            tracing::warn!(topic = topic_name, "refusing a produce: {reason}");
            Err(Refused {
                code,
                message: Some(format!("topic {topic_name:?} partition 0: {reason}")),
            })
        }
    }
}

/// One partition a Fetch asks for, and what was read for it.
struct Want {
    topic: String,
    partition: i32,
    offset: i64,
    max_bytes: usize,
    error: i16,
    high_watermark: i64,
    start: i64,
    records: Vec<Record>,
    bytes: usize,
}

pub(crate) async fn fetch(state: &Arc<State>, request: FetchRequest) -> FetchResponse {
    let wait_ms = u64::try_from(request.max_wait_ms).unwrap_or(0).min(FETCH_WAIT_MAX_MS);
    let deadline = Instant::now() + Duration::from_millis(wait_ms);
    let min_bytes = usize::try_from(request.min_bytes).unwrap_or(0);
    let max_bytes = usize::try_from(request.max_bytes)
        .unwrap_or(usize::MAX)
        .clamp(1, FETCH_BYTES_MAX);
    let mut wants: Vec<Want> = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| Want {
                topic: t.topic.0.to_string(),
                partition: p.partition,
                offset: p.fetch_offset,
                max_bytes: usize::try_from(p.partition_max_bytes).unwrap_or(0).max(1),
                error: code::NONE,
                high_watermark: -1,
                start: -1,
                records: Vec::new(),
                bytes: 0,
            })
        })
        .collect();
    loop {
        let notified = state.appended.notified();
        let st = Arc::clone(state);
        let (read, total) = tokio::task::spawn_blocking(move || {
            let mut budget = max_bytes;
            for want in &mut wants {
                read_partition(&st, want, budget);
                budget = budget.saturating_sub(want.bytes);
            }
            let total: usize = wants.iter().map(|w| w.bytes).sum();
            (wants, total)
        })
        .await
        .unwrap_or_else(|_| (Vec::new(), 0));
        wants = read;
        let failed = wants.iter().any(|w| w.error != code::NONE);
        let now = Instant::now();
        if total >= min_bytes.max(1) || failed || now >= deadline || wants.is_empty() {
            break;
        }
        let nap = (deadline - now).min(Duration::from_millis(FETCH_POLL_MS));
        tokio::select! {
            () = notified => {}
            () = tokio::time::sleep(nap) => {}
        }
    }
    fetch_response(wants)
}

fn read_partition(state: &State, want: &mut Want, budget: usize) {
    want.records.clear();
    want.bytes = 0;
    want.error = code::NONE;
    if want.partition != 0 {
        want.error = code::UNKNOWN_TOPIC_OR_PARTITION;
        return;
    }
    let topic = match state.store.topic(&want.topic) {
        Ok(topic) => topic,
        Err(e) => {
            want.error = error_code(&e, "fetch");
            return;
        }
    };
    if let Err(e) = read_records(&topic, want, budget) {
        want.records.clear();
        want.bytes = 0;
        want.error = error_code(&e, &format!("fetch from {:?}", want.topic));
    }
}

fn read_records(topic: &Topic, want: &mut Want, budget: usize) -> crate::Result<()> {
    topic.refresh()?;
    let (start, end) = (topic.start_offset(), topic.end_offset());
    want.start = start.0 as i64;
    want.high_watermark = end.0 as i64;
    let Some(from) = to_offset(want.offset).filter(|o| *o >= start && *o <= end) else {
        want.error = code::OFFSET_OUT_OF_RANGE;
        return Ok(());
    };
    if from == end || budget == 0 {
        return Ok(());
    }
    let limit = want.max_bytes.min(budget);
    let records = &mut want.records;
    let bytes = &mut want.bytes;
    topic.scan(from, |r| {
        let size = r.fields.key.map_or(0, <[u8]>::len)
            + r.fields.value.len()
            + r.fields
                .headers
                .iter()
                .map(|(n, v)| n.len() + v.len() + 2)
                .sum::<usize>()
            + RECORD_OVERHEAD_BYTES;
        // Kafka returns at least one record even when it is over the limit.
        if !records.is_empty() && *bytes + size > limit {
            return ControlFlow::Break(());
        }
        *bytes += size;
        records.push(r.to_record());
        if *bytes >= limit {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })?;
    Ok(())
}

fn fetch_response(wants: Vec<Want>) -> FetchResponse {
    let mut topics: Vec<FetchableTopicResponse> = Vec::new();
    for want in wants {
        let mut p = PartitionData::default();
        p.partition_index = want.partition;
        p.error_code = want.error;
        p.high_watermark = want.high_watermark;
        p.last_stable_offset = want.high_watermark;
        p.log_start_offset = want.start;
        p.records = Some(match encode_batch(&want.records, true) {
            Ok(bytes) => bytes,
            Err(reason) => {
                tracing::error!(topic = want.topic, "fetch: {reason}");
                p.error_code = code::UNKNOWN_SERVER_ERROR;
                bytes::Bytes::new()
            }
        });
        match topics.last_mut() {
            Some(t) if t.topic.0.as_str() == want.topic => t.partitions.push(p),
            _ => {
                let mut t = FetchableTopicResponse::default();
                t.topic = name(&want.topic);
                t.partitions = vec![p];
                topics.push(t);
            }
        }
    }
    let mut response = FetchResponse::default();
    response.responses = topics;
    response
}

#[cfg(test)]
#[path = "data_tests.rs"]
mod tests;
