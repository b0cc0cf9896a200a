//! Idempotent producers: what the server remembers of each (topic, producer id) to refuse
//! sequence gaps and stale epochs, and to answer a retried batch with the offset it was
//! appended at, as a Kafka broker's producer state does.
//!
//! Per (topic, producer id): the newest epoch seen and the first and last sequence and
//! first offset of that epoch's last [`PRODUCER_BATCHES_KEPT`] batches. A batch of that
//! epoch must start right after the last one (sequences wrap from `i32::MAX` to 0), a
//! newer epoch must start at 0, an older epoch is fenced. A producer the server knows
//! nothing of (first batch, or forgotten by a restart) may start at any sequence, as
//! Kafka brokers since 2.5 (KIP-360) accept. Memory only.

use std::collections::{HashMap, VecDeque};

use super::handlers::code;
use super::records::ProducedBatch;

/// Batches remembered per idempotent producer and topic (Kafka keeps 5, the most requests
/// a producer may have in flight).
pub const PRODUCER_BATCHES_KEPT: usize = 5;
/// (topic, producer id) pairs remembered; the oldest is forgotten past this.
pub const PRODUCERS_MAX: usize = 10_000;
/// Kafka sequences run from 0 to `i32::MAX`, then start at 0 again.
const SEQUENCES: i64 = i32::MAX as i64 + 1;

/// The sequence `n` after `sequence`, wrapping from `i32::MAX` to 0 as Kafka does.
pub(crate) fn sequence_after(sequence: i32, n: u32) -> i32 {
    // rem_euclid leaves 0..2^31, which an i32 holds.
    (i64::from(sequence) + i64::from(n)).rem_euclid(SEQUENCES) as i32
}

/// The producer fields of an idempotent producer's batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Sequenced {
    pub producer_id: i64,
    pub epoch: i16,
    /// Sequence of the first record and of the last one.
    pub first: i32,
    pub last: i32,
}

impl Sequenced {
    /// The producer fields of `batch`, or `None` when it has no producer id (the batch
    /// decoder refused a producer id without sequence and epoch).
    pub fn of(batch: &ProducedBatch) -> Option<Sequenced> {
        if batch.producer_id < 0 || batch.base_sequence < 0 || batch.producer_epoch < 0 {
            return None;
        }
        let span = u32::try_from(batch.records.len().saturating_sub(1)).unwrap_or(u32::MAX);
        Some(Sequenced {
            producer_id: batch.producer_id,
            epoch: batch.producer_epoch,
            first: batch.base_sequence,
            last: sequence_after(batch.base_sequence, span),
        })
    }
}

/// A batch of the producer's current epoch, already appended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SeenBatch {
    first: i32,
    last: i32,
    first_offset: u64,
}

/// What is known of one producer on one topic.
#[derive(Debug)]
pub(crate) struct ProducerState {
    epoch: i16,
    /// The epoch's last batches, oldest first; never empty.
    batches: VecDeque<SeenBatch>,
}

/// What to do with a producer's batch.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Append,
    /// A retry of a batch appended at this first offset: answer with it, append nothing.
    Duplicate(u64),
    /// Refuse with this Kafka error code, for this reason.
    Refuse(i16, String),
}

/// Kafka's checks of a producer's batch against what is known of the producer (in this
/// order: a retry of one of the last batches, a stale epoch, a new epoch not at sequence
/// 0, a gap in the sequence).
pub(crate) fn check(known: Option<&ProducerState>, batch: &Sequenced) -> Verdict {
    let Some(known) = known else {
        return Verdict::Append;
    };
    let (id, epoch, first) = (batch.producer_id, batch.epoch, batch.first);
    if epoch < known.epoch {
        return Verdict::Refuse(
            code::INVALID_PRODUCER_EPOCH,
            format!("producer {id} epoch {epoch} is older than its epoch {}", known.epoch),
        );
    }
    if epoch > known.epoch {
        if first == 0 {
            return Verdict::Append;
        }
        return Verdict::Refuse(
            code::OUT_OF_ORDER_SEQUENCE_NUMBER,
            format!("producer {id} starts its new epoch {epoch} at sequence {first}, not 0"),
        );
    }
    if let Some(seen) = known.batches.iter().find(|b| b.first == first && b.last == batch.last) {
        return Verdict::Duplicate(seen.first_offset);
    }
    let last = known.batches.back().map_or(-1, |b| b.last);
    let expected = sequence_after(last, 1);
    if first == expected {
        return Verdict::Append;
    }
    Verdict::Refuse(
        code::OUT_OF_ORDER_SEQUENCE_NUMBER,
        format!("producer {id} epoch {epoch} sent sequence {first}, expected {expected}"),
    )
}

/// Notes that `batch` was appended at `first_offset`: the producer's epoch becomes the
/// batch's, and the batch the newest of it.
pub(crate) fn record(known: &mut Option<ProducerState>, batch: &Sequenced, first_offset: u64) {
    let seen = SeenBatch {
        first: batch.first,
        last: batch.last,
        first_offset,
    };
    match known {
        Some(state) if state.epoch == batch.epoch => {
            state.batches.push_back(seen);
            while state.batches.len() > PRODUCER_BATCHES_KEPT {
                state.batches.pop_front();
            }
        }
        _ => {
            *known = Some(ProducerState {
                epoch: batch.epoch,
                batches: VecDeque::from([seen]),
            });
        }
    }
}

/// (topic, producer id).
type ProducerKey = (String, i64);

/// The known idempotent producers, at most [`PRODUCERS_MAX`].
#[derive(Default)]
pub(crate) struct Producers {
    known: HashMap<ProducerKey, ProducerState>,
    order: VecDeque<ProducerKey>,
}

impl Producers {
    /// What is known of `producer_id` on `topic`, if anything.
    pub fn get(&self, topic: &str, producer_id: i64) -> Option<&ProducerState> {
        self.known.get(&(topic.to_owned(), producer_id))
    }

    /// Records `batch`, appended to `topic` at `first_offset` (see [`record`]).
    pub fn record(&mut self, topic: &str, batch: &Sequenced, first_offset: u64) {
        let key = (topic.to_owned(), batch.producer_id);
        let mut state = self.known.remove(&key);
        if state.is_none() {
            self.order.push_back(key.clone());
        }
        record(&mut state, batch, first_offset);
        if let Some(state) = state {
            self.known.insert(key, state);
        }
        while self.order.len() > PRODUCERS_MAX {
            if let Some(old) = self.order.pop_front() {
                self.known.remove(&old);
            }
        }
    }
}
