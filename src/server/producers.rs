//! Idempotent producers: what the server remembers of each (topic, producer id) to refuse
//! sequence gaps and stale epochs, and to answer a retried batch with the offset it was
//! appended at, as a Kafka broker's producer state does.
//!
//! Per (topic, producer id): the newest epoch seen and the first and last sequence and
//! first offset of that epoch's last [`PRODUCER_BATCHES_KEPT`] batches. A batch of that
//! epoch must start right after the last one (sequences wrap from `i32::MAX` to 0), a
//! newer epoch must start at 0, an older epoch is fenced. A producer the server knows
//! nothing of (first batch, or forgotten by a restart) may start at any sequence, as
//! Kafka brokers since 2.5 (KIP-360) accept. Memory only, and at most [`PRODUCERS_MAX`]
//! producers.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;

use super::handlers::code;
use super::records::ProducedBatch;

/// Batches remembered per idempotent producer and topic (Kafka keeps 5, the most requests
/// a producer may have in flight).
pub const PRODUCER_BATCHES_KEPT: usize = 5;
/// (topic, producer id) pairs remembered; the least recently used is forgotten past this.
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
enum Verdict {
    Append,
    /// A retry of a batch appended at this first offset: answer with it, append nothing.
    Duplicate(u64),
    /// Refuse with this Kafka error code, for this reason.
    Refuse(i16, String),
}

/// Kafka's checks of a producer's batch against what is known of the producer: a stale
/// epoch, a new epoch not at sequence 0, a retry of one of the epoch's last batches, a
/// gap in the sequence.
fn check(known: Option<&ProducerState>, batch: &Sequenced) -> Verdict {
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
fn record(known: &mut Option<ProducerState>, batch: &Sequenced, first_offset: u64) {
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

/// What became of a producer's batch.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Taken {
    /// Appended; its records start at this offset.
    Appended(u64),
    /// A retry of a batch appended at this first offset: nothing appended.
    Duplicate(u64),
    /// Refused with this Kafka error code, for this reason; nothing appended.
    Refused(i16, String),
}

/// Checks `batch` against what `slot` knows of its producer and, when the batch is to be
/// appended, runs `append` (which returns the first offset of the appended records) and
/// records the batch, all with the slot locked: the same batch sent again meanwhile (a
/// client's retry on another connection while the first is still being written) waits,
/// then is answered as a retry instead of being appended twice. An `append` error
/// records nothing.
///
/// # Errors
/// `append`'s.
pub(crate) fn append_checked<E>(
    slot: &ProducerSlot,
    batch: &Sequenced,
    append: impl FnOnce() -> Result<u64, E>,
) -> Result<Taken, E> {
    let mut known = slot.lock();
    match check(known.as_ref(), batch) {
        Verdict::Duplicate(first) => Ok(Taken::Duplicate(first)),
        Verdict::Refuse(code, reason) => Ok(Taken::Refused(code, reason)),
        Verdict::Append => {
            let first = append()?;
            record(&mut known, batch, first);
            Ok(Taken::Appended(first))
        }
    }
}

/// (topic, producer id).
type ProducerKey = (String, i64);

/// What is known of one producer on one topic, `None` until its first batch is appended.
pub(crate) type ProducerSlot = Arc<Mutex<Option<ProducerState>>>;

/// The known idempotent producers: at most [`PRODUCERS_MAX`] (plus those an append holds,
/// at most one per blocking thread), the least recently used forgotten first, so that a
/// client cycling through producer ids cannot make the server hold more, and an active
/// producer is not forgotten for the new ones.
#[derive(Default)]
pub(crate) struct Producers {
    /// Each producer's slot and its last use.
    slots: HashMap<ProducerKey, (ProducerSlot, u64)>,
    /// The producers by last use, least recent first.
    by_use: BTreeMap<u64, ProducerKey>,
    /// Counts uses: the next use's number.
    uses: u64,
}

impl Producers {
    /// The slot of `producer_id` on `topic`, now the most recently used; a new, empty one
    /// when the producer is not known, forgetting the least recently used past
    /// [`PRODUCERS_MAX`].
    pub fn slot(&mut self, topic: &str, producer_id: i64) -> ProducerSlot {
        let key = (topic.to_owned(), producer_id);
        self.uses += 1;
        let used = self.uses;
        if let Some((slot, last_use)) = self.slots.get_mut(&key) {
            self.by_use.remove(last_use);
            *last_use = used;
            let slot = Arc::clone(slot);
            self.by_use.insert(used, key);
            return slot;
        }
        let slot = ProducerSlot::default();
        self.slots.insert(key.clone(), (Arc::clone(&slot), used));
        self.by_use.insert(used, key);
        self.forget_least_recently_used();
        slot
    }

    /// Forgets the least recently used producers past [`PRODUCERS_MAX`]. A slot in use
    /// (held by an append, so its count of references is above the map's one) is kept and
    /// counts as used now: forgetting it would let a retry of the batch being appended
    /// find a new, empty slot and be appended too. References are only made under the
    /// lock the caller holds on `self`, so a slot seen unused stays unused.
    fn forget_least_recently_used(&mut self) {
        let mut looked = 0;
        while self.slots.len() > PRODUCERS_MAX && looked < self.slots.len() {
            looked += 1;
            let Some((_, oldest)) = self.by_use.pop_first() else {
                break;
            };
            let in_use = match self.slots.get_mut(&oldest) {
                Some((slot, last_use)) if Arc::strong_count(slot) > 1 => {
                    self.uses += 1;
                    *last_use = self.uses;
                    true
                }
                _ => false,
            };
            if in_use {
                self.by_use.insert(self.uses, oldest);
            } else {
                self.slots.remove(&oldest);
            }
        }
    }

    /// How many producers are known.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;

    fn batch_at(producer_id: i64, sequence: i32) -> Sequenced {
        Sequenced {
            producer_id,
            epoch: 0,
            first: sequence,
            last: sequence,
        }
    }

    /// Appends `producer_id`'s one-record batch at `sequence` (at offset 0) through `slot`.
    fn append_at(slot: &ProducerSlot, producer_id: i64, sequence: i32) {
        let taken = append_checked(slot, &batch_at(producer_id, sequence), || Ok::<u64, Infallible>(0));
        assert_eq!(taken, Ok(Taken::Appended(0)), "producer {producer_id}");
    }

    /// Whether `producer_id` is known on topic "t" (has a batch recorded); not a use.
    fn known(producers: &Producers, producer_id: i64) -> bool {
        let key = ("t".to_owned(), producer_id);
        producers.slots.get(&key).is_some_and(|(slot, _)| slot.lock().is_some())
    }

    /// A client cycling through producer ids makes the server keep at most PRODUCERS_MAX
    /// of them; the least recently used is forgotten first, so a producer that keeps
    /// producing stays known while others come and go.
    #[test]
    fn producers_are_bounded_and_the_least_recently_used_forgotten() {
        let mut producers = Producers::default();
        let active = i64::MAX;
        let total = PRODUCERS_MAX as i64 + PRODUCERS_MAX as i64 / 2;
        for producer_id in 0..total {
            if producer_id % 1000 == 0 {
                let sequence = i32::try_from(producer_id / 1000).expect("a small sequence");
                append_at(&producers.slot("t", active), active, sequence);
            }
            append_at(&producers.slot("t", producer_id), producer_id, 0);
            assert!(producers.len() <= PRODUCERS_MAX, "{} producers", producers.len());
        }
        assert_eq!(producers.len(), PRODUCERS_MAX);
        assert!(known(&producers, active), "the active producer was forgotten");
        assert!(known(&producers, total - 1), "the newest");
        // The active one and the newest PRODUCERS_MAX - 1 are kept.
        let kept_from = total - PRODUCERS_MAX as i64 + 1;
        assert!(!known(&producers, 0), "the oldest idle producer is kept");
        assert!(!known(&producers, kept_from - 1));
        assert!(known(&producers, kept_from));
    }

    /// Two producers appended with a slot in use (held by an append under way) in
    /// between: the slot is kept while held, so a retry of the batch being appended finds
    /// it; once released it is forgotten like any other.
    #[test]
    fn a_producer_whose_append_is_under_way_is_not_forgotten() {
        let mut producers = Producers::default();
        let held = producers.slot("t", 1);
        let more = PRODUCERS_MAX as i64 + 100;
        for producer_id in 2..more {
            producers.slot("t", producer_id);
        }
        assert_eq!(producers.len(), PRODUCERS_MAX);
        let again = producers.slot("t", 1);
        assert!(
            Arc::ptr_eq(&held, &again),
            "the slot of an append under way was replaced"
        );
        drop((held, again));
        for producer_id in more..more + PRODUCERS_MAX as i64 {
            producers.slot("t", producer_id);
        }
        assert_eq!(producers.len(), PRODUCERS_MAX);
        assert!(
            !producers.slots.contains_key(&("t".to_owned(), 1)),
            "released, then forgotten"
        );
    }

    /// A retry of a batch arriving while the batch is being appended (its answer lost, the
    /// client sent it again on another connection) waits for that append and is answered
    /// with its offset; it never runs an append of its own.
    #[test]
    fn a_retry_during_the_append_waits_and_is_answered_as_a_retry() {
        let slot = ProducerSlot::default();
        let batch = batch_at(9, 0);
        let (in_append, in_append_seen) = mpsc::channel();
        let (go, go_seen) = mpsc::channel::<()>();
        let first = {
            let slot = Arc::clone(&slot);
            std::thread::spawn(move || {
                append_checked(&slot, &batch, || {
                    in_append.send(()).expect("the test waits");
                    go_seen.recv().expect("the test says go");
                    Ok::<u64, Infallible>(40)
                })
            })
        };
        in_append_seen.recv().expect("the first append starts");
        let (retry_appends, retry_append_seen) = mpsc::channel();
        let retry = {
            let slot = Arc::clone(&slot);
            std::thread::spawn(move || {
                append_checked(&slot, &batch, || {
                    retry_appends.send(()).expect("the test listens");
                    Ok::<u64, Infallible>(41)
                })
            })
        };
        // Time for the retry to append if the slot were not locked across the first
        // append (the outcome below does not depend on it).
        let appended_meanwhile = retry_append_seen.recv_timeout(Duration::from_millis(200)).is_ok();
        go.send(()).expect("the first append waits");
        assert_eq!(first.join().expect("first"), Ok(Taken::Appended(40)));
        assert_eq!(retry.join().expect("retry"), Ok(Taken::Duplicate(40)));
        assert!(!appended_meanwhile, "the retry appended during the first append");
    }

    #[test]
    fn sequences_wrap_at_i32_max() {
        assert_eq!(sequence_after(0, 1), 1);
        assert_eq!(sequence_after(i32::MAX - 1, 1), i32::MAX);
        assert_eq!(sequence_after(i32::MAX, 1), 0);
        assert_eq!(sequence_after(i32::MAX - 1, 3), 1);
        assert_eq!(sequence_after(-1, 1), 0);
        assert_eq!(sequence_after(i32::MAX, u32::MAX), i32::MAX - 1);
    }
}
