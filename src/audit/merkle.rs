//! RFC 6962 hashing, the canonical leaf encoding of a record, and the
//! [`Frontier`] (compact range) that yields the root of a growing tree.
//!
//! Everything here is pure: no I/O.

use sha2::{Digest, Sha256};

use crate::audit::{AuditError, Result};

/// A SHA-256 output.
pub type Hash = [u8; HASH_BYTES];

/// Width of every hash in this module.
pub const HASH_BYTES: usize = 32;

/// Most leaves a tree may hold. Far above any real log, and low enough that
/// node positions in the tree file (`2n` entries of 32 bytes) fit a u64.
pub const TREE_SIZE_MAX: u64 = 1 << 48;

/// Most levels a tree of [`TREE_SIZE_MAX`] leaves has above its leaves.
pub const TREE_HEIGHT_MAX: usize = 48;

/// First byte of every leaf encoding: format version and domain tag.
pub const LEAF_VERSION: u8 = 0x01;

/// Most bytes a key, header name, header value or value may have: the leaf
/// encoding's u32 length prefix. The header count shares the limit.
pub const LEAF_FIELD_BYTES_MAX: u64 = u32::MAX as u64;

const FRONTIER_VERSION: u8 = 0x01;
const FRONTIER_HEADER_BYTES: usize = 1 + 8;

const _: () = assert!(TREE_SIZE_MAX == 1u64 << TREE_HEIGHT_MAX);
const _: () = assert!(TREE_SIZE_MAX.checked_mul(2 * HASH_BYTES as u64).is_some());

/// RFC 6962 leaf hash: SHA-256(0x00 || bytes).
pub fn leaf_hash(bytes: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x00]);
    hasher.update(bytes);
    hasher.finalize().into()
}

/// RFC 6962 interior node hash: SHA-256(0x01 || left || right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x01]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// RFC 6962 root of the empty tree: SHA-256 of no bytes.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The canonical leaf encoding of one record (layout in FORMAT.md, "Leaf bytes").
///
/// # Errors
/// [`AuditError::FieldTooLong`] if a field exceeds [`LEAF_FIELD_BYTES_MAX`].
pub fn leaf_bytes(
    offset: u64,
    timestamp_us: u64,
    event_time_us: Option<i64>,
    key: Option<&[u8]>,
    headers: &[(String, Vec<u8>)],
    value: &[u8],
) -> Result<Vec<u8>> {
    let record = LeafRecord {
        offset,
        timestamp_us,
        event_time_us,
        key,
        headers,
        value,
    };
    record.check_lengths()?;
    let mut out = Vec::with_capacity(record.encoded_len());
    record.encode_into(&mut out);
    Ok(out)
}

/// `leaf_hash(leaf_bytes(...))` without building the encoding in memory.
///
/// # Errors
/// [`AuditError::FieldTooLong`] if a field exceeds [`LEAF_FIELD_BYTES_MAX`].
pub fn record_leaf_hash(
    offset: u64,
    timestamp_us: u64,
    event_time_us: Option<i64>,
    key: Option<&[u8]>,
    headers: &[(String, Vec<u8>)],
    value: &[u8],
) -> Result<Hash> {
    LeafRecord {
        offset,
        timestamp_us,
        event_time_us,
        key,
        headers,
        value,
    }
    .leaf_hash()
}

/// A record's headers as the leaf encoding reads them: `(name, value)` pairs in the
/// record's order. Iterated twice per record (lengths are checked first), so headers
/// can stay wherever the caller keeps them — owned, or still encoded in a segment.
pub trait LeafHeaders<'a> {
    /// The headers, in order.
    fn leaf_headers(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])>;
}

impl<'a> LeafHeaders<'a> for &'a [(String, Vec<u8>)] {
    fn leaf_headers(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
        self.iter().map(|(name, value)| (name.as_bytes(), value.as_slice()))
    }
}

/// Where encoded bytes go; one encoder serves both the byte form and the
/// streaming hash so the two can never disagree.
/// Leaf bytes besides the key, headers and value: version, offset, append time, event
/// time flag and value, key flag, header count, value length.
const LEAF_FIXED_BYTES: usize = 1 + 8 + 8 + 1 + 8 + 1 + 4 + 4;

trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

impl Sink for Sha256 {
    fn put(&mut self, bytes: &[u8]) {
        self.update(bytes);
    }
}

/// One record's fields as the leaf encoding sees them, borrowed.
#[derive(Clone, Copy, Debug)]
pub struct LeafRecord<'a, H> {
    /// The record's offset (= leaf index).
    pub offset: u64,
    /// Append time, µs since the Unix epoch.
    pub timestamp_us: u64,
    /// Producer-supplied event time, if any.
    pub event_time_us: Option<i64>,
    /// Key, if any (absent and empty encode differently).
    pub key: Option<&'a [u8]>,
    /// The headers.
    pub headers: H,
    /// The value as stored.
    pub value: &'a [u8],
}

impl<'a, H: LeafHeaders<'a>> LeafRecord<'a, H> {
    /// `leaf_hash` of the canonical leaf bytes, streamed into the hasher.
    ///
    /// # Errors
    /// [`AuditError::FieldTooLong`] if a field exceeds [`LEAF_FIELD_BYTES_MAX`].
    pub fn leaf_hash(&self) -> Result<Hash> {
        self.check_lengths()?;
        let mut hasher = Sha256::new();
        hasher.update([0x00]);
        self.encode_into(&mut hasher);
        Ok(hasher.finalize().into())
    }

    /// Appends the canonical leaf bytes to `out`.
    ///
    /// # Errors
    /// [`AuditError::FieldTooLong`] if a field exceeds [`LEAF_FIELD_BYTES_MAX`]
    /// (nothing is appended then).
    pub fn encode_to(&self, out: &mut Vec<u8>) -> Result<()> {
        // One pass over the headers (the hot path of the tree thread: headers stored in
        // a batch are parsed on every walk): the count is patched in after them, and a
        // field over the limit takes back what was appended.
        check_len("key", self.key.map_or(0, <[u8]>::len))?;
        let start = out.len();
        out.reserve(LEAF_FIXED_BYTES + self.key.map_or(0, <[u8]>::len) + self.value.len());
        self.encode_head(out);
        let count_at = out.len();
        out.put(&[0; 4]);
        let mut count = 0usize;
        let mut checked = Ok(());
        for (name, value) in self.headers.leaf_headers() {
            checked = check_len("header name", name.len()).and_then(|()| check_len("header value", value.len()));
            if checked.is_err() {
                break;
            }
            put_bytes(out, name);
            put_bytes(out, value);
            count += 1;
        }
        let checked = checked
            .and_then(|()| check_len("header count", count))
            .and_then(|()| check_len("value", self.value.len()));
        if let Err(e) = checked {
            out.truncate(start);
            return Err(e);
        }
        out[count_at..count_at + 4].copy_from_slice(&(count as u32).to_le_bytes());
        put_bytes(out, self.value);
        Ok(())
    }

    fn check_lengths(&self) -> Result<()> {
        check_len("key", self.key.map_or(0, <[u8]>::len))?;
        let mut count = 0usize;
        for (name, value) in self.headers.leaf_headers() {
            check_len("header name", name.len())?;
            check_len("header value", value.len())?;
            count += 1;
        }
        check_len("header count", count)?;
        check_len("value", self.value.len())
    }

    fn encoded_len(&self) -> usize {
        let headers: usize = self.headers.leaf_headers().map(|(n, v)| 8 + n.len() + v.len()).sum();
        let key = self.key.map_or(0, |k| 4 + k.len());
        LEAF_FIXED_BYTES + key + headers + self.value.len()
    }

    /// Version, offset, times and key: everything before the header count.
    fn encode_head(&self, sink: &mut impl Sink) {
        sink.put(&[LEAF_VERSION]);
        sink.put(&self.offset.to_le_bytes());
        sink.put(&self.timestamp_us.to_le_bytes());
        match self.event_time_us {
            None => sink.put(&[0]),
            Some(t) => {
                sink.put(&[1]);
                sink.put(&t.to_le_bytes());
            }
        }
        match self.key {
            None => sink.put(&[0]),
            Some(k) => {
                sink.put(&[1]);
                put_bytes(sink, k);
            }
        }
    }

    /// Lengths must have passed `check_lengths`, so the `as u32` casts are exact.
    fn encode_into(&self, sink: &mut impl Sink) {
        self.encode_head(sink);
        sink.put(&(self.headers.leaf_headers().count() as u32).to_le_bytes());
        for (name, value) in self.headers.leaf_headers() {
            put_bytes(sink, name);
            put_bytes(sink, value);
        }
        put_bytes(sink, self.value);
    }
}

fn put_bytes(sink: &mut impl Sink, bytes: &[u8]) {
    sink.put(&(bytes.len() as u32).to_le_bytes());
    sink.put(bytes);
}

fn check_len(field: &'static str, len: usize) -> Result<()> {
    if len as u64 > LEAF_FIELD_BYTES_MAX {
        return Err(AuditError::FieldTooLong {
            field,
            len,
            max: LEAF_FIELD_BYTES_MAX,
        });
    }
    Ok(())
}

/// The roots of the perfect subtrees that make up a tree of `size` leaves,
/// largest (leftmost) first: one per set bit of `size`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    peaks: Vec<Hash>,
}

impl Frontier {
    /// The empty tree.
    pub fn new() -> Frontier {
        Frontier::default()
    }

    /// Builds a frontier from its peaks, largest first.
    ///
    /// # Errors
    /// [`AuditError::Decode`] if the peak count is not `size.count_ones()`
    /// or `size` exceeds [`TREE_SIZE_MAX`].
    pub fn from_peaks(size: u64, peaks: Vec<Hash>) -> Result<Frontier> {
        if size > TREE_SIZE_MAX {
            return Err(frontier_error(1, format!("size {size} above limit")));
        }
        if peaks.len() != size.count_ones() as usize {
            return Err(frontier_error(
                FRONTIER_HEADER_BYTES,
                format!("{} peaks for size {size}", peaks.len()),
            ));
        }
        Ok(Frontier { size, peaks })
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Perfect-subtree roots, largest first.
    pub fn peaks(&self) -> &[Hash] {
        &self.peaks
    }

    /// Appends one leaf hash.
    ///
    /// # Errors
    /// [`AuditError::TreeFull`] at [`TREE_SIZE_MAX`] leaves.
    pub fn push(&mut self, leaf: Hash) -> Result<()> {
        self.push_with(leaf, |_, _| {})
    }

    /// Appends one leaf hash and reports each interior node it completes, as
    /// (level, hash), lowest level first: exactly what the tree file appends.
    pub(crate) fn push_with(&mut self, leaf: Hash, mut on_node: impl FnMut(u32, &Hash)) -> Result<()> {
        if self.size >= TREE_SIZE_MAX {
            return Err(AuditError::TreeFull { size: self.size });
        }
        let mut hash = leaf;
        let mut level = 0;
        // Each trailing one bit of `size` is a peak that the new leaf completes.
        while self.size & (1 << level) != 0 {
            let left = self.peaks.pop().expect("one peak per set bit of size");
            hash = node_hash(&left, &hash);
            level += 1;
            on_node(level, &hash);
        }
        self.peaks.push(hash);
        self.size += 1;
        Ok(())
    }

    /// The RFC 6962 root: peaks folded right to left, so the left subtree is
    /// always the largest power of two below the size.
    pub fn root(&self) -> Hash {
        fold_peaks(&self.peaks)
    }

    /// Pure encoding: version byte, size (u64 LE), then the peaks.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(FRONTIER_HEADER_BYTES + self.peaks.len() * HASH_BYTES);
        out.push(FRONTIER_VERSION);
        out.extend_from_slice(&self.size.to_le_bytes());
        for peak in &self.peaks {
            out.extend_from_slice(peak);
        }
        out
    }

    /// Inverse of [`Frontier::encode`].
    ///
    /// # Errors
    /// [`AuditError::Decode`] on a wrong version, size above the limit, or a
    /// length that is not exactly the header plus one hash per set bit.
    pub fn decode(bytes: &[u8]) -> Result<Frontier> {
        let Some((&version, rest)) = bytes.split_first() else {
            return Err(frontier_error(0, "empty input".into()));
        };
        if version != FRONTIER_VERSION {
            return Err(frontier_error(0, format!("unknown version {version}")));
        }
        let size_bytes: [u8; 8] = rest
            .get(..8)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| frontier_error(bytes.len(), "truncated size".into()))?;
        let size = u64::from_le_bytes(size_bytes);
        let body = &rest[8..];
        let expected = size.count_ones() as usize * HASH_BYTES;
        if body.len() != expected {
            return Err(frontier_error(
                FRONTIER_HEADER_BYTES,
                format!("{} peak bytes for size {size}, expected {expected}", body.len()),
            ));
        }
        let peaks = body
            .chunks_exact(HASH_BYTES)
            .map(|c| c.try_into().expect("chunks are hash-sized"))
            .collect();
        Frontier::from_peaks(size, peaks)
    }
}

/// Root of a sequence of perfect-subtree roots, largest first; the empty
/// sequence is the empty tree.
pub(crate) fn fold_peaks(peaks: &[Hash]) -> Hash {
    let Some((last, rest)) = peaks.split_last() else {
        return empty_root();
    };
    rest.iter().rev().fold(*last, |acc, left| node_hash(left, &acc))
}

fn frontier_error(byte: usize, reason: String) -> AuditError {
    AuditError::Decode {
        what: "frontier",
        byte,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(h: &Hash) -> String {
        h.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// RFC 6962 MTH written straight from the recursive definition.
    pub(crate) fn naive_root(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let mut k = 1;
                while k * 2 < n {
                    k *= 2;
                }
                node_hash(&naive_root(&leaves[..k]), &naive_root(&leaves[k..]))
            }
        }
    }

    #[test]
    fn known_answers() {
        assert_eq!(
            hex(&empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex(&leaf_hash(b"")),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
        assert_eq!(Frontier::new().root(), empty_root());
    }

    #[test]
    fn leaf_bytes_layout_is_exact() {
        let headers = vec![("n".to_string(), vec![7u8, 8])];
        let got = leaf_bytes(0x0102, 0x0304, Some(-1), Some(b"k"), &headers, b"val").unwrap();
        let mut want = vec![0x01];
        want.extend_from_slice(&[0x02, 0x01, 0, 0, 0, 0, 0, 0]);
        want.extend_from_slice(&[0x04, 0x03, 0, 0, 0, 0, 0, 0]);
        want.extend_from_slice(&[1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        want.extend_from_slice(&[1, 1, 0, 0, 0, b'k']);
        want.extend_from_slice(&[1, 0, 0, 0]);
        want.extend_from_slice(&[1, 0, 0, 0, b'n', 2, 0, 0, 0, 7, 8]);
        want.extend_from_slice(&[3, 0, 0, 0, b'v', b'a', b'l']);
        assert_eq!(got, want);

        let bare = leaf_bytes(5, 6, None, None, &[], b"").unwrap();
        let mut want = vec![0x01, 5, 0, 0, 0, 0, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(bare, want);
    }

    #[test]
    fn absent_and_empty_key_differ() {
        let none = leaf_bytes(0, 0, None, None, &[], b"").unwrap();
        let empty = leaf_bytes(0, 0, None, Some(b""), &[], b"").unwrap();
        assert_ne!(none, empty);
    }

    #[test]
    fn frontier_matches_naive_root_for_small_sizes() {
        let mut leaves = Vec::new();
        let mut frontier = Frontier::new();
        for i in 0u32..=300 {
            assert_eq!(frontier.root(), naive_root(&leaves), "size {i}");
            let leaf = leaf_hash(&i.to_le_bytes());
            leaves.push(leaf);
            frontier.push(leaf).unwrap();
        }
    }

    #[test]
    fn frontier_decode_rejects_bad_lengths() {
        let mut f = Frontier::new();
        for i in 0u8..5 {
            f.push(leaf_hash(&[i])).unwrap();
        }
        let enc = f.encode();
        assert_eq!(Frontier::decode(&enc).unwrap(), f);
        assert!(matches!(
            Frontier::decode(&enc[..enc.len() - 1]),
            Err(AuditError::Decode { .. })
        ));
        assert!(matches!(Frontier::decode(&[]), Err(AuditError::Decode { .. })));
        let mut huge = enc.clone();
        huge[1..9].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(Frontier::decode(&huge), Err(AuditError::Decode { .. })));
    }

    proptest! {
        #[test]
        fn record_leaf_hash_equals_hash_of_leaf_bytes(
            offset: u64, ts: u64, et: Option<i64>,
            key: Option<Vec<u8>>,
            headers: Vec<(String, Vec<u8>)>,
            value: Vec<u8>,
        ) {
            let bytes = leaf_bytes(offset, ts, et, key.as_deref(), &headers, &value).unwrap();
            let streamed = record_leaf_hash(offset, ts, et, key.as_deref(), &headers, &value).unwrap();
            prop_assert_eq!(leaf_hash(&bytes), streamed);
        }

        #[test]
        fn frontier_decode_never_panics(bytes: Vec<u8>) {
            let _ = Frontier::decode(&bytes);
        }

        #[test]
        fn frontier_round_trips(n in 0u32..2000) {
            let mut f = Frontier::new();
            for i in 0..n {
                f.push(leaf_hash(&i.to_le_bytes())).unwrap();
            }
            prop_assert_eq!(Frontier::decode(&f.encode()).unwrap(), f);
        }
    }
}
