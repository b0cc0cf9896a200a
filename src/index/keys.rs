//! The optional secondary index of a segment: record keys and header values -> offsets.
//!
//! Pure encoding and lookup; the topic builds it from the log (see FORMAT.md, "Key index").

/// Extension of key index files.
pub const KEY_INDEX_EXT: &str = "keyindex";
/// "TKK1" as a little-endian u32.
pub const KEY_INDEX_MAGIC: u32 = u32::from_le_bytes(*b"TKK1");
/// Fixed header: magic, entry count, CRC-32 of the entries.
pub const KEY_INDEX_HEADER_BYTES: usize = 12;
/// One entry: u64 hash, u32 relative offset.
pub const KEY_ENTRY_BYTES: usize = 12;

/// What a record can be found by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexKey<'a> {
    /// The record's key.
    Key(&'a [u8]),
    /// A header with this name and value.
    Header(&'a str, &'a [u8]),
}

impl IndexKey<'_> {
    /// FNV-1a 64 of a tag byte (0 key, 1 header), the header name and a 0 byte, and the value.
    pub fn hash(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |bytes: &[u8]| {
            for &b in bytes {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
        };
        match self {
            IndexKey::Key(k) => {
                eat(&[0]);
                eat(k);
            }
            IndexKey::Header(name, value) => {
                eat(&[1]);
                eat(name.as_bytes());
                eat(&[0]);
                eat(value);
            }
        }
        h
    }
}

/// Encodes sorted `(hash, relative_offset)` entries with their header.
pub fn encode_key_index(entries: &[(u64, u32)]) -> Vec<u8> {
    let mut body = Vec::with_capacity(entries.len() * KEY_ENTRY_BYTES);
    for (hash, rel) in entries {
        body.extend_from_slice(&hash.to_le_bytes());
        body.extend_from_slice(&rel.to_le_bytes());
    }
    let mut out = Vec::with_capacity(KEY_INDEX_HEADER_BYTES + body.len());
    out.extend_from_slice(&KEY_INDEX_MAGIC.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// Decodes a key index; None when anything is off (the caller rebuilds it from the log).
pub fn decode_key_index(bytes: &[u8]) -> Option<Vec<(u64, u32)>> {
    if bytes.len() < KEY_INDEX_HEADER_BYTES || crate::segment::batch::read_u32(bytes, 0) != KEY_INDEX_MAGIC {
        return None;
    }
    let count = crate::segment::batch::read_u32(bytes, 4) as usize;
    let body = &bytes[KEY_INDEX_HEADER_BYTES..];
    if body.len() != count.checked_mul(KEY_ENTRY_BYTES)?
        || crc32fast::hash(body) != crate::segment::batch::read_u32(bytes, 8)
    {
        return None;
    }
    let entries: Vec<(u64, u32)> = body
        .chunks_exact(KEY_ENTRY_BYTES)
        .map(|c| {
            (
                crate::segment::batch::read_u64(c, 0),
                crate::segment::batch::read_u32(c, 8),
            )
        })
        .collect();
    entries.windows(2).all(|w| w[0] <= w[1]).then_some(entries)
}

/// Relative offsets whose entry hash is `hash` (possibly false positives: check the record).
pub fn lookup(entries: &[(u64, u32)], hash: u64) -> impl Iterator<Item = u32> + '_ {
    let start = entries.partition_point(|e| e.0 < hash);
    entries[start..].iter().take_while(move |e| e.0 == hash).map(|e| e.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage_is_refused() {
        let mut entries = vec![
            (IndexKey::Key(b"t1").hash(), 3),
            (IndexKey::Header("a", b"x").hash(), 1),
            (IndexKey::Key(b"t1").hash(), 9),
        ];
        entries.sort_unstable();
        let bytes = encode_key_index(&entries);
        let back = decode_key_index(&bytes).unwrap();
        assert_eq!(back, entries);
        assert_eq!(
            lookup(&back, IndexKey::Key(b"t1").hash()).collect::<Vec<_>>(),
            vec![3, 9]
        );
        assert_ne!(IndexKey::Key(b"ax").hash(), IndexKey::Header("a", b"x").hash());
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(decode_key_index(&bad).is_none_or(|e| e == entries) || i < 4, "byte {i}");
        }
        assert!(decode_key_index(&bytes[..bytes.len() - 1]).is_none());
    }
}
