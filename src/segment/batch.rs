//! Batch framing: the bytes of one append call, as they sit in a segment file.
//!
//! Pure encoding and decoding, no I/O. The layout is in FORMAT.md ("Batch").

use crate::record::RECORD_BYTES_MAX;
use crate::Offset;

pub use super::record_codec::{encode_record, record_encoded_len, EncodedHeaders, RecordIter};

/// "TKB1" read as a little-endian u32.
pub const BATCH_MAGIC: u32 = u32::from_le_bytes(*b"TKB1");
/// Size of the fixed batch header.
pub const BATCH_HEADER_BYTES: usize = 40;
/// Largest batch on disk, header included: 32 MiB.
pub const BATCH_BYTES_MAX: usize = 32 << 20;
/// Most records in one batch.
pub const BATCH_RECORDS_MAX: usize = 65_536;
/// Uncompressed payload at which an `append_batch` call starts a new batch: 1 MiB.
pub const BATCH_PAYLOAD_TARGET_BYTES: usize = 1 << 20;
/// The only batch version written so far.
pub const BATCH_VERSION: u8 = 1;

const _: () = assert!(RECORD_BYTES_MAX + 4 + BATCH_HEADER_BYTES <= BATCH_BYTES_MAX);
const _: () = assert!(BATCH_PAYLOAD_TARGET_BYTES < BATCH_BYTES_MAX);

const COMPRESSION_MASK: u8 = 0b11;

/// How a batch's payload is stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Stored as is (the default).
    #[default]
    None,
    /// zstd, one frame per batch.
    Zstd,
}

impl Compression {
    fn code(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Zstd => 1,
        }
    }
}

/// A decoding failure, with the byte position inside the buffer that was decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// Position of the problem, relative to the start of the decoded bytes.
    pub byte_pos: u64,
    /// What is wrong.
    pub reason: String,
    /// True when the bytes simply end early (a torn tail), false when they are wrong.
    pub truncated: bool,
}

impl DecodeError {
    pub(crate) fn bad(byte_pos: usize, reason: impl Into<String>) -> Self {
        DecodeError {
            byte_pos: byte_pos as u64,
            reason: reason.into(),
            truncated: false,
        }
    }
}

/// The fixed header of a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    /// Total bytes of the batch, header included.
    pub batch_bytes: u32,
    /// CRC-32 (IEEE) of bytes `[12, batch_bytes)`.
    pub crc: u32,
    /// Compression code (low two bits of the flags byte).
    pub compression: Compression,
    /// Offset of the first record.
    pub base_offset: Offset,
    /// Number of records.
    pub record_count: u32,
    /// Payload size after decompression.
    pub payload_bytes: u32,
    /// Append time shared by every record of the batch.
    pub timestamp_us: u64,
}

impl BatchHeader {
    /// Offset one past the last record.
    pub fn end_offset(&self) -> Offset {
        Offset(self.base_offset.0 + u64::from(self.record_count))
    }

    /// Decodes and checks a header from the start of `bytes` (which may hold more).
    ///
    /// # Errors
    /// `truncated` when `bytes` ends inside the header or inside the announced batch.
    pub fn decode(bytes: &[u8]) -> Result<BatchHeader, DecodeError> {
        let header = BatchHeader::decode_header_only(bytes)?;
        if bytes.len() < header.batch_bytes as usize {
            return Err(DecodeError {
                byte_pos: bytes.len() as u64,
                reason: format!("batch of {} bytes cut short after {}", header.batch_bytes, bytes.len()),
                truncated: true,
            });
        }
        Ok(header)
    }

    /// Decodes and checks the fixed header alone; the batch body need not be present.
    ///
    /// # Errors
    /// `truncated` when `bytes` ends inside the header.
    pub fn decode_header_only(bytes: &[u8]) -> Result<BatchHeader, DecodeError> {
        if bytes.len() < BATCH_HEADER_BYTES {
            return Err(DecodeError {
                byte_pos: bytes.len() as u64,
                reason: format!("batch header cut short after {} bytes", bytes.len()),
                truncated: true,
            });
        }
        let magic = read_u32(bytes, 0);
        if magic != BATCH_MAGIC {
            return Err(DecodeError::bad(0, format!("bad batch magic {magic:#010x}")));
        }
        let batch_bytes = read_u32(bytes, 4);
        let version = bytes[12];
        let flags = bytes[13];
        let header = BatchHeader {
            batch_bytes,
            crc: read_u32(bytes, 8),
            compression: match flags & COMPRESSION_MASK {
                0 => Compression::None,
                1 => Compression::Zstd,
                other => return Err(DecodeError::bad(13, format!("unknown compression {other}"))),
            },
            base_offset: Offset(read_u64(bytes, 16)),
            record_count: read_u32(bytes, 24),
            payload_bytes: read_u32(bytes, 28),
            timestamp_us: read_u64(bytes, 32),
        };
        if version != BATCH_VERSION {
            return Err(DecodeError::bad(12, format!("unknown batch version {version}")));
        }
        if flags & !COMPRESSION_MASK != 0 {
            return Err(DecodeError::bad(13, "reserved batch flags are set"));
        }
        let check = header_check(&bytes[..BATCH_HEADER_BYTES]);
        if read_u16(bytes, 14) != check {
            return Err(DecodeError::bad(
                14,
                format!(
                    "header check mismatch (stored {:#06x}, computed {check:#06x})",
                    read_u16(bytes, 14)
                ),
            ));
        }
        header.check_bounds()?;
        Ok(header)
    }

    fn check_bounds(&self) -> Result<(), DecodeError> {
        let size = self.batch_bytes as usize;
        if !(BATCH_HEADER_BYTES..=BATCH_BYTES_MAX).contains(&size) {
            return Err(DecodeError::bad(4, format!("batch length {size} out of bounds")));
        }
        if self.record_count == 0 || self.record_count as usize > BATCH_RECORDS_MAX {
            return Err(DecodeError::bad(
                24,
                format!("record count {} out of bounds", self.record_count),
            ));
        }
        if self.payload_bytes as usize > BATCH_BYTES_MAX {
            return Err(DecodeError::bad(
                28,
                format!("payload length {} out of bounds", self.payload_bytes),
            ));
        }
        if self.base_offset.0.checked_add(u64::from(self.record_count)).is_none() {
            return Err(DecodeError::bad(16, "base offset + record count overflows"));
        }
        if self.compression == Compression::None && self.payload_bytes as usize != size - BATCH_HEADER_BYTES {
            return Err(DecodeError::bad(28, "payload length disagrees with batch length"));
        }
        Ok(())
    }
}

/// The 16-bit header check: the low 16 bits of CRC-32 over the 40 header bytes with the
/// batch CRC (bytes 8..12) and the check itself (bytes 14..16) taken as zero. It lets a
/// reader trust a header (length, offsets, time) while walking, without the batch CRC.
pub fn header_check(header: &[u8]) -> u16 {
    let mut copy = [0u8; BATCH_HEADER_BYTES];
    copy.copy_from_slice(&header[..BATCH_HEADER_BYTES]);
    copy[8..12].fill(0);
    copy[14..16].fill(0);
    (crc32fast::hash(&copy) & 0xFFFF) as u16
}

/// Verifies the checksum of a whole batch whose header was decoded from `bytes`.
pub fn check_crc(header: &BatchHeader, bytes: &[u8]) -> Result<(), DecodeError> {
    let end = header.batch_bytes as usize;
    let actual = crc32fast::hash(&bytes[12..end]);
    if actual != header.crc {
        return Err(DecodeError::bad(
            8,
            format!(
                "checksum mismatch (stored {:#010x}, computed {actual:#010x})",
                header.crc
            ),
        ));
    }
    Ok(())
}

/// Decodes and fully checks one batch: header, checksum, and every record.
/// `scratch` receives the decompressed payload of compressed batches.
///
/// Returns the header and the (possibly decompressed) payload.
pub fn decode_batch<'a>(bytes: &'a [u8], scratch: &'a mut Vec<u8>) -> Result<(BatchHeader, &'a [u8]), DecodeError> {
    let header = BatchHeader::decode(bytes)?;
    check_crc(&header, bytes)?;
    let stored = &bytes[BATCH_HEADER_BYTES..header.batch_bytes as usize];
    let payload: &[u8] = match header.compression {
        Compression::None => stored,
        Compression::Zstd => {
            scratch.clear();
            let capacity = header.payload_bytes as usize;
            *scratch = zstd::bulk::decompress(stored, capacity)
                .map_err(|e| DecodeError::bad(BATCH_HEADER_BYTES, format!("zstd payload does not decompress: {e}")))?;
            if scratch.len() != capacity {
                return Err(DecodeError::bad(
                    28,
                    "decompressed payload length disagrees with header",
                ));
            }
            scratch.as_slice()
        }
    };
    let mut records = RecordIter::new(&header, payload);
    for item in records.by_ref() {
        item?;
    }
    Ok((header, payload))
}

/// Completes an uncompressed batch whose records were encoded in place: `out` holds a
/// zeroed header at `header_pos` followed by the records, up to its end.
pub fn finish_batch(out: &mut [u8], header_pos: usize, base_offset: Offset, timestamp_us: u64, record_count: u32) {
    let batch_bytes = out.len() - header_pos;
    let payload_len = batch_bytes - BATCH_HEADER_BYTES;
    assert!(
        batch_bytes <= BATCH_BYTES_MAX,
        "batch of {batch_bytes} bytes exceeds the limit"
    );
    assert!(record_count > 0);
    write_header(
        &mut out[header_pos..],
        batch_bytes,
        Compression::None,
        base_offset,
        record_count,
        payload_len,
        timestamp_us,
    );
}

fn write_header(
    batch: &mut [u8],
    batch_bytes: usize,
    compression: Compression,
    base_offset: Offset,
    record_count: u32,
    payload_len: usize,
    timestamp_us: u64,
) {
    let header = &mut batch[..BATCH_HEADER_BYTES];
    header[0..4].copy_from_slice(&BATCH_MAGIC.to_le_bytes());
    header[4..8].copy_from_slice(&(batch_bytes as u32).to_le_bytes());
    header[12] = BATCH_VERSION;
    header[13] = compression.code();
    header[16..24].copy_from_slice(&base_offset.0.to_le_bytes());
    header[24..28].copy_from_slice(&record_count.to_le_bytes());
    header[28..32].copy_from_slice(&(payload_len as u32).to_le_bytes());
    header[32..40].copy_from_slice(&timestamp_us.to_le_bytes());
    let check = header_check(header);
    header[14..16].copy_from_slice(&check.to_le_bytes());
    let crc = crc32fast::hash(&batch[12..batch_bytes]);
    batch[8..12].copy_from_slice(&crc.to_le_bytes());
}

/// Writes a batch header followed by `payload` (already encoded records) into `out`,
/// compressing when asked. Returns the batch's size in bytes.
pub fn encode_batch(
    out: &mut Vec<u8>,
    base_offset: Offset,
    timestamp_us: u64,
    record_count: u32,
    payload: &[u8],
    compression: Compression,
) -> std::io::Result<usize> {
    let start = out.len();
    out.resize(start + BATCH_HEADER_BYTES, 0);
    let stored_len = match compression {
        Compression::None => {
            out.extend_from_slice(payload);
            payload.len()
        }
        Compression::Zstd => {
            let compressed = zstd::bulk::compress(payload, 3)?;
            out.extend_from_slice(&compressed);
            compressed.len()
        }
    };
    let batch_bytes = BATCH_HEADER_BYTES + stored_len;
    assert!(
        batch_bytes <= BATCH_BYTES_MAX,
        "batch of {batch_bytes} bytes exceeds the limit"
    );
    assert!(record_count > 0);
    write_header(
        &mut out[start..],
        batch_bytes,
        compression,
        base_offset,
        record_count,
        payload.len(),
        timestamp_us,
    );
    Ok(batch_bytes)
}

pub(crate) fn read_u16(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

pub(crate) fn read_u32(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

pub(crate) fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NewRecord;

    fn batch_of(records: &[NewRecord], compression: Compression) -> Vec<u8> {
        let mut payload = Vec::new();
        for r in records {
            encode_record(&mut payload, &r.as_fields());
        }
        let mut out = Vec::new();
        encode_batch(&mut out, Offset(7), 42, records.len() as u32, &payload, compression).unwrap();
        out
    }

    #[test]
    fn round_trip_every_field_both_compressions() {
        let records = vec![
            NewRecord::new(b"plain".to_vec()),
            NewRecord::new(b"v".to_vec())
                .with_key(b"k".to_vec())
                .with_event_time_us(-5)
                .with_header("h", b"x".to_vec()),
            NewRecord::new(Vec::new()),
        ];
        for compression in [Compression::None, Compression::Zstd] {
            let bytes = batch_of(&records, compression);
            let mut scratch = Vec::new();
            let (header, payload) = decode_batch(&bytes, &mut scratch).unwrap();
            assert_eq!(header.base_offset, Offset(7));
            assert_eq!(header.timestamp_us, 42);
            let got: Vec<_> = RecordIter::new(&header, payload)
                .map(|r| r.unwrap().to_record())
                .collect();
            assert_eq!(got.len(), 3);
            for (i, (g, want)) in got.iter().zip(&records).enumerate() {
                assert_eq!(g.offset, Offset(7 + i as u64));
                assert_eq!(g.value, want.value);
                assert_eq!(g.key, want.key);
                assert_eq!(g.headers, want.headers);
                assert_eq!(g.event_time_us, want.event_time_us);
            }
        }
    }

    #[test]
    fn every_truncation_is_reported_as_truncated() {
        let bytes = batch_of(&[NewRecord::new(b"hello".to_vec())], Compression::None);
        for len in 0..bytes.len() {
            let err = BatchHeader::decode(&bytes[..len]).unwrap_err();
            assert!(err.truncated, "length {len}: {err:?}");
        }
    }

    #[test]
    fn every_bit_flip_is_caught() {
        let bytes = batch_of(
            &[NewRecord::new(b"hello world".to_vec()).with_key(b"k".to_vec())],
            Compression::None,
        );
        for bit in 0..bytes.len() * 8 {
            let mut copy = bytes.clone();
            copy[bit / 8] ^= 1 << (bit % 8);
            let mut scratch = Vec::new();
            assert!(
                decode_batch(&copy, &mut scratch).is_err(),
                "bit {bit} flip not detected"
            );
        }
    }
}
