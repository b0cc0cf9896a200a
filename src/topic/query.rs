//! Finding records by key or header value through the per-segment key index.
//!
//! Sealed segments get a `.keyindex` file, built from the log on first query (and written
//! by the appending process); the tail segment is scanned. The index is a hint: every
//! candidate record is read back and compared exactly.

use std::ops::ControlFlow;
use std::sync::Arc;

use crate::index::keys::{self, IndexKey, KEY_INDEX_EXT};
use crate::segment::SealedSegment;
use crate::topic::Topic;
use crate::{Offset, Record, RecordRef, Result};

fn matches(record: &RecordRef<'_>, key: &IndexKey<'_>) -> bool {
    match key {
        IndexKey::Key(k) => record.fields.key == Some(*k),
        IndexKey::Header(name, value) => record.fields.headers.iter().any(|(n, v)| n == *name && v == *value),
    }
}

impl Topic {
    /// Every record whose key (or header) equals `key` and whose append time is within
    /// `[from_us, to_us)`, in offset order.
    ///
    /// # Errors
    /// As for [`Topic::scan`].
    pub fn find(&self, key: IndexKey<'_>, from_us: u64, to_us: u64) -> Result<Vec<Record>> {
        let (sealed, tail_base) = {
            let segments = self.shared.segments.read();
            (segments.sealed.clone(), segments.tail.base)
        };
        let hash = key.hash();
        let mut out = Vec::new();
        for segment in &sealed {
            let summary = self.shared.summary(segment)?;
            if summary.last_timestamp_us < from_us || summary.first_timestamp_us >= to_us {
                continue;
            }
            let index = self.key_index(segment)?;
            for relative in keys::lookup(&index, hash).collect::<Vec<_>>() {
                let offset = Offset(segment.base.0 + u64::from(relative));
                self.scan(offset, |r| {
                    if matches(&r, &key) && (from_us..to_us).contains(&r.timestamp_us) {
                        out.push(r.to_record());
                    }
                    ControlFlow::Break(())
                })?;
            }
        }
        if tail_base < self.end_offset() && tail_base >= self.start_offset() {
            for offset in self.tail_candidates(tail_base, hash)? {
                self.scan(offset, |r| {
                    if matches(&r, &key) && (from_us..to_us).contains(&r.timestamp_us) {
                        out.push(r.to_record());
                    }
                    ControlFlow::Break(())
                })?;
            }
        }
        Ok(out)
    }

    /// The sorted key index of a sealed segment: cached with its mapping, else from its
    /// file, else rebuilt from the log.
    fn key_index(&self, segment: &Arc<SealedSegment>) -> Result<Arc<Vec<(u64, u32)>>> {
        let data = self.shared.load_sealed(segment)?;
        if let Some(entries) = data.key_index.get() {
            return Ok(Arc::clone(entries));
        }
        let entries = Arc::new(self.load_key_index(segment)?);
        Ok(Arc::clone(data.key_index.get_or_init(|| entries)))
    }

    fn load_key_index(&self, segment: &Arc<SealedSegment>) -> Result<Vec<(u64, u32)>> {
        let path = segment.path.with_extension(KEY_INDEX_EXT);
        if let Some(entries) = std::fs::read(&path).ok().and_then(|b| keys::decode_key_index(&b)) {
            return Ok(entries);
        }
        let summary = self.shared.summary(segment)?;
        let mut entries = Vec::new();
        self.scan(segment.base, |r| {
            if r.offset >= summary.end_offset {
                return ControlFlow::Break(());
            }
            push_entries(&mut entries, &r, segment.base);
            ControlFlow::Continue(())
        })?;
        entries.sort_unstable();
        if self.is_writer() {
            if let Err(e) = crate::fsutil::write_atomic(&path, &keys::encode_key_index(&entries)) {
                tracing::warn!(file = %path.display(), error = %e, "cannot write a key index");
            }
        }
        Ok(entries)
    }

    /// Offsets in the tail whose key or header hashes to `hash`, from an in-memory index
    /// of the tail extended by scanning only what was appended since the last query.
    fn tail_candidates(&self, tail_base: Offset, hash: u64) -> Result<Vec<Offset>> {
        let end = self.end_offset();
        let mut cache = self.shared.tail_keys.lock();
        // A new tail, or one recovery cut shorter: start over.
        if cache.base != tail_base || cache.scanned < tail_base || cache.scanned > end {
            *cache = TailKeys {
                base: tail_base,
                scanned: tail_base,
                entries: std::collections::HashMap::new(),
            };
        }
        if cache.scanned < end {
            let from = cache.scanned;
            let mut scanned = from;
            let mut fresh = Vec::new();
            self.scan(from, |r| {
                push_entries(&mut fresh, &r, tail_base);
                scanned = Offset(r.offset.0 + 1);
                ControlFlow::Continue(())
            })?;
            for (h, relative) in fresh {
                cache.entries.entry(h).or_default().push(relative);
            }
            cache.scanned = scanned;
        }
        Ok(cache.entries.get(&hash).map_or_else(Vec::new, |v| {
            v.iter().map(|&r| Offset(tail_base.0 + u64::from(r))).collect()
        }))
    }
}

/// An index of the tail's keys, built as queries need it (in memory only).
#[derive(Default)]
pub(crate) struct TailKeys {
    base: Offset,
    scanned: Offset,
    entries: std::collections::HashMap<u64, Vec<u32>>,
}

fn push_entries(entries: &mut Vec<(u64, u32)>, r: &RecordRef<'_>, base: Offset) {
    let relative = (r.offset.0 - base.0) as u32;
    if let Some(k) = r.fields.key {
        entries.push((IndexKey::Key(k).hash(), relative));
    }
    for (name, value) in r.fields.headers.iter() {
        entries.push((IndexKey::Header(name, value).hash(), relative));
    }
}
