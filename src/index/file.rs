//! The framing of sealed index files: a 40-byte header (magic, version, flags, the
//! segment it describes, entry count, CRC-32 of the entries) before the entries, so a
//! sealed segment's index can be trusted as a whole after one checksum (see FORMAT.md,
//! "Index file header"). Pure: no I/O.
//!
//! Files without the header (written by older versions, and the active segment's
//! append-only index files) are *legacy*: plain entries, hints confirmed against the log
//! on use.

use crate::segment::batch::{read_u16, read_u32, read_u64};

/// "TKO1" as a little-endian u32: a framed offset index.
pub const OFFSET_INDEX_MAGIC: u32 = u32::from_le_bytes(*b"TKO1");
/// "TKT1" as a little-endian u32: a framed time index.
pub const TIME_INDEX_MAGIC: u32 = u32::from_le_bytes(*b"TKT1");
/// Version of the framed index files.
pub const INDEX_FILE_VERSION: u16 = 1;
/// Size of the header before the entries.
pub const INDEX_HEADER_BYTES: usize = 40;
/// Header flag of a time index: it has an entry for every batch whose append time is
/// greater than the previous batch's, so the first entry at or after T is the answer.
pub const FLAG_TIME_EXACT: u16 = 1;
/// Most entries one index file may hold (one per record at most; 2^32 records per segment).
pub const INDEX_ENTRIES_MAX: u64 = u32::MAX as u64;

/// Which of the two index files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexKind {
    /// `.index`: 8-byte offset entries.
    Offset,
    /// `.timeindex`: 12-byte time entries.
    Time,
}

impl IndexKind {
    fn magic(self) -> u32 {
        match self {
            IndexKind::Offset => OFFSET_INDEX_MAGIC,
            IndexKind::Time => TIME_INDEX_MAGIC,
        }
    }

    fn entry_bytes(self) -> usize {
        match self {
            IndexKind::Offset => super::OFFSET_ENTRY_BYTES,
            IndexKind::Time => super::TIME_ENTRY_BYTES,
        }
    }
}

/// What a framed header says about the segment it describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexHeader {
    /// Header flags ([`FLAG_TIME_EXACT`]).
    pub flags: u16,
    /// Base offset of the segment.
    pub base_offset: u64,
    /// Size of the segment's `.log` when the index was written.
    pub log_bytes: u64,
    /// Number of entries after the header.
    pub entry_count: u32,
}

/// An index file's bytes, classified.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// No header: plain entries (older versions, or an active segment's file).
    Legacy(&'a [u8]),
    /// A header that checks, and the entry bytes it covers.
    Framed(IndexHeader, &'a [u8]),
    /// Starts with the magic but the header or entries do not check: not to be used.
    Bad(&'static str),
}

/// Encodes a framed index file: header, then `entries` (already encoded, whole entries).
pub fn encode(kind: IndexKind, header: IndexHeader, entries: &[u8]) -> Vec<u8> {
    debug_assert_eq!(entries.len() % kind.entry_bytes(), 0);
    debug_assert_eq!(entries.len() / kind.entry_bytes(), header.entry_count as usize);
    let mut out = Vec::with_capacity(INDEX_HEADER_BYTES + entries.len());
    out.extend_from_slice(&kind.magic().to_le_bytes());
    out.extend_from_slice(&INDEX_FILE_VERSION.to_le_bytes());
    out.extend_from_slice(&header.flags.to_le_bytes());
    out.extend_from_slice(&header.base_offset.to_le_bytes());
    out.extend_from_slice(&header.log_bytes.to_le_bytes());
    out.extend_from_slice(&header.entry_count.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(entries).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    let header_crc = crc32fast::hash(&out[..36]);
    out.extend_from_slice(&header_crc.to_le_bytes());
    debug_assert_eq!(out.len(), INDEX_HEADER_BYTES);
    out.extend_from_slice(entries);
    out
}

/// Classifies `bytes` as a legacy file, a framed file whose header and entry checksum
/// check, or a bad one. Reads only what the length allows; never panics.
pub fn parse(kind: IndexKind, bytes: &[u8]) -> Parsed<'_> {
    if bytes.len() < 4 || read_u32(bytes, 0) != kind.magic() {
        return Parsed::Legacy(bytes);
    }
    if bytes.len() < INDEX_HEADER_BYTES {
        return Parsed::Bad("index file shorter than its header");
    }
    if crc32fast::hash(&bytes[..36]) != read_u32(bytes, 36) {
        return Parsed::Bad("index file header checksum mismatch");
    }
    let version = read_u16(bytes, 4);
    let flags = read_u16(bytes, 6);
    let allowed_flags = if kind == IndexKind::Time { FLAG_TIME_EXACT } else { 0 };
    if version != INDEX_FILE_VERSION || flags & !allowed_flags != 0 || read_u32(bytes, 32) != 0 {
        return Parsed::Bad("index file of an unknown version or with unknown flags");
    }
    let header = IndexHeader {
        flags,
        base_offset: read_u64(bytes, 8),
        log_bytes: read_u64(bytes, 16),
        entry_count: read_u32(bytes, 24),
    };
    let entries = &bytes[INDEX_HEADER_BYTES..];
    // u32 count times at most 12 bytes fits in u64; compared, never allocated.
    if entries.len() as u64 != u64::from(header.entry_count) * kind.entry_bytes() as u64 {
        return Parsed::Bad("index file size does not match its entry count");
    }
    if crc32fast::hash(entries) != read_u32(bytes, 28) {
        return Parsed::Bad("index file entries checksum mismatch");
    }
    Parsed::Framed(header, entries)
}

/// True when `head` starts with a complete header of `kind` whose own checksum checks
/// (the entries are not looked at).
pub fn header_checks(kind: IndexKind, head: &[u8]) -> bool {
    head.len() >= INDEX_HEADER_BYTES
        && read_u32(head, 0) == kind.magic()
        && crc32fast::hash(&head[..36]) == read_u32(head, 36)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (IndexHeader, Vec<u8>) {
        let header = IndexHeader {
            flags: FLAG_TIME_EXACT,
            base_offset: 4096,
            log_bytes: 1 << 20,
            entry_count: 2,
        };
        (header, (0..24u8).collect())
    }

    #[test]
    fn round_trips() {
        let (header, entries) = sample();
        let bytes = encode(IndexKind::Time, header, &entries);
        assert_eq!(parse(IndexKind::Time, &bytes), Parsed::Framed(header, &entries[..]));
    }

    #[test]
    fn every_flipped_byte_and_every_cut_is_detected() {
        let (header, entries) = sample();
        let bytes = encode(IndexKind::Time, header, &entries);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(
                !matches!(parse(IndexKind::Time, &bad), Parsed::Framed(..)),
                "flip at {i}"
            );
        }
        for len in 0..bytes.len() {
            assert!(
                !matches!(parse(IndexKind::Time, &bytes[..len]), Parsed::Framed(..)),
                "cut at {len}"
            );
        }
    }

    #[test]
    fn kinds_are_not_confused_and_legacy_is_recognised() {
        let (header, entries) = sample();
        let time = encode(IndexKind::Time, header, &entries);
        assert!(matches!(parse(IndexKind::Offset, &time), Parsed::Legacy(_)));
        assert!(matches!(parse(IndexKind::Offset, &[0u8; 16]), Parsed::Legacy(_)));
        assert!(matches!(parse(IndexKind::Time, &[]), Parsed::Legacy(_)));
    }
}
