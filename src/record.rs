//! Records, offsets and the limits every record must respect.

use std::fmt;

/// A record's number within its topic: dense, starting at 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Offset(pub u64);

impl Offset {
    /// The offset as a plain number.
    pub const fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Largest encoded record (flags, key, headers, value): 4 MiB.
pub const RECORD_BYTES_MAX: usize = 4 << 20;
/// Largest key: 1 KiB.
pub const KEY_BYTES_MAX: usize = 1024;
/// Most headers on one record.
pub const HEADER_COUNT_MAX: usize = 32;
/// Longest header name.
pub const HEADER_NAME_BYTES_MAX: usize = 255;
/// Longest header value: 4 KiB.
pub const HEADER_VALUE_BYTES_MAX: usize = 4096;

/// A record to append: what the producer supplies. The store adds offset and timestamp.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewRecord {
    /// Producer-supplied event time in microseconds since the Unix epoch, kept as data.
    pub event_time_us: Option<i64>,
    /// Optional key (e.g. a trace or subject id).
    pub key: Option<Vec<u8>>,
    /// Small named headers.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The payload.
    pub value: Vec<u8>,
}

impl NewRecord {
    /// A record with a value only.
    pub fn new(value: impl Into<Vec<u8>>) -> Self {
        NewRecord {
            value: value.into(),
            ..NewRecord::default()
        }
    }

    /// Sets the key.
    pub fn with_key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Sets the event time (microseconds since the Unix epoch).
    pub fn with_event_time_us(mut self, event_time_us: i64) -> Self {
        self.event_time_us = Some(event_time_us);
        self
    }

    /// Adds a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Borrows this record's fields.
    pub fn as_fields(&self) -> RecordFields<'_> {
        RecordFields {
            event_time_us: self.event_time_us,
            key: self.key.as_deref(),
            headers: HeaderList::Owned(&self.headers),
            value: &self.value,
        }
    }
}

/// A record read back from a topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The record's offset.
    pub offset: Offset,
    /// Append time in microseconds since the Unix epoch; never decreases within a topic.
    pub timestamp_us: u64,
    /// Producer-supplied event time, if any.
    pub event_time_us: Option<i64>,
    /// The key, if any.
    pub key: Option<Vec<u8>>,
    /// Headers.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The payload.
    pub value: Vec<u8>,
}

/// A record borrowed from a segment (zero-copy reads).
#[derive(Clone, Copy, Debug)]
pub struct RecordRef<'a> {
    /// The record's offset.
    pub offset: Offset,
    /// Append time in microseconds since the Unix epoch.
    pub timestamp_us: u64,
    /// The borrowed fields.
    pub fields: RecordFields<'a>,
}

impl RecordRef<'_> {
    /// Copies the record out.
    pub fn to_record(&self) -> Record {
        Record {
            offset: self.offset,
            timestamp_us: self.timestamp_us,
            event_time_us: self.fields.event_time_us,
            key: self.fields.key.map(<[u8]>::to_vec),
            headers: self.fields.headers.to_vec(),
            value: self.fields.value.to_vec(),
        }
    }
}

/// The producer-supplied fields of a record, borrowed.
#[derive(Clone, Copy, Debug)]
pub struct RecordFields<'a> {
    /// Event time, if any.
    pub event_time_us: Option<i64>,
    /// Key, if any.
    pub key: Option<&'a [u8]>,
    /// Headers.
    pub headers: HeaderList<'a>,
    /// Value.
    pub value: &'a [u8],
}

/// Headers either owned by a [`NewRecord`] or still encoded inside a batch.
#[derive(Clone, Copy, Debug)]
pub enum HeaderList<'a> {
    /// Headers of a record being appended.
    Owned(&'a [(String, Vec<u8>)]),
    /// `count` headers encoded in `bytes` (already validated by the decoder).
    Encoded {
        /// Number of headers.
        count: u16,
        /// Their encoding, see FORMAT.md.
        bytes: &'a [u8],
    },
}

impl<'a> HeaderList<'a> {
    /// Number of headers.
    pub fn len(&self) -> usize {
        match self {
            HeaderList::Owned(list) => list.len(),
            HeaderList::Encoded { count, .. } => usize::from(*count),
        }
    }

    /// True when there are no headers.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Iterates `(name, value)` pairs.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + 'a {
        let (owned, encoded): (&'a [(String, Vec<u8>)], _) = match *self {
            HeaderList::Owned(list) => (list, None),
            HeaderList::Encoded { count, bytes } => (&[], Some((count, bytes))),
        };
        let owned_iter = owned.iter().map(|(n, v)| (n.as_str(), v.as_slice()));
        let encoded_iter = encoded
            .into_iter()
            .flat_map(|(count, bytes)| crate::segment::batch::EncodedHeaders::new(count, bytes));
        owned_iter.chain(encoded_iter)
    }

    /// Copies the headers out.
    pub fn to_vec(&self) -> Vec<(String, Vec<u8>)> {
        self.iter().map(|(n, v)| (n.to_owned(), v.to_vec())).collect()
    }
}

/// Checks a record against the named limits before it is encoded.
/// Returns the record's encoded size (its length prefix included).
pub(crate) fn check_limits(fields: &RecordFields<'_>) -> crate::Result<usize> {
    let too_big = |what, actual: usize, limit: usize| crate::Error::LimitExceeded {
        what,
        actual: actual as u64,
        limit: limit as u64,
    };
    if let Some(key) = fields.key {
        if key.len() > KEY_BYTES_MAX {
            return Err(too_big("key", key.len(), KEY_BYTES_MAX));
        }
    }
    if fields.headers.len() > HEADER_COUNT_MAX {
        return Err(too_big("header count", fields.headers.len(), HEADER_COUNT_MAX));
    }
    // Headers read back from a batch were checked by the decoder; only new ones need it.
    let owned: &[(String, Vec<u8>)] = match fields.headers {
        HeaderList::Owned(list) => list,
        HeaderList::Encoded { .. } => &[],
    };
    for (name, value) in owned {
        if name.len() > HEADER_NAME_BYTES_MAX {
            return Err(too_big("header name", name.len(), HEADER_NAME_BYTES_MAX));
        }
        if value.len() > HEADER_VALUE_BYTES_MAX {
            return Err(too_big("header value", value.len(), HEADER_VALUE_BYTES_MAX));
        }
    }
    let encoded = crate::segment::batch::record_encoded_len(fields);
    if encoded > RECORD_BYTES_MAX {
        return Err(too_big("record", encoded, RECORD_BYTES_MAX));
    }
    Ok(encoded)
}
