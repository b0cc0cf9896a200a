//! The records of a compressed produced batch, decompressed with a bound on their size.
//!
//! A few kilobytes of zstd or gzip can stand for gigabytes of zeros, so a client could make
//! the server fill its memory with one small request. Each codec here stops at a limit
//! instead: the compressed batches of one Produce request (all its partitions) may not
//! decompress to more than [`DECOMPRESSED_BYTES_MAX`] in all, the most a client could send
//! uncompressed in one request.

use std::cell::Cell;
use std::io::Read;

use bytes::Bytes;
use kafka_protocol::records::Compression;

use super::FRAME_BYTES_MAX;

/// Most bytes the compressed batches of one Produce request may decompress to, in all.
pub const DECOMPRESSED_BYTES_MAX: usize = FRAME_BYTES_MAX;

/// Kafka's snappy framing (as the Java client writes it): this 16-byte header, then blocks
/// of a big-endian u32 length and that many bytes of raw snappy. Without the header the
/// bytes are one raw snappy block.
const SNAPPY_FRAMED_HEADER: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";
const SNAPPY_BLOCK_LENGTH_BYTES: usize = 4;

/// The records of one batch, decompressed with `compression` and taken from `budget`
/// (what the request's batches may still decompress to); uncompressed records are
/// returned as they are and not charged (the frame limit bounds them).
///
/// # Errors
/// What is wrong: bytes the codec cannot read, or more than `budget` bytes once
/// decompressed.
pub fn decompress(records: &Bytes, compression: Compression, budget: &Cell<usize>) -> Result<Bytes, String> {
    let plain = decompress_within(records, compression, budget.get())?;
    if compression != Compression::None {
        budget.set(budget.get() - plain.len());
    }
    Ok(plain)
}

/// `records` decompressed with `compression`, at most `budget` bytes long.
fn decompress_within(records: &Bytes, compression: Compression, budget: usize) -> Result<Bytes, String> {
    let read = |reader: &mut dyn Read| read_bounded(reader, budget);
    let compressed = &records[..];
    let plain = match compression {
        Compression::None => return Ok(records.clone()),
        Compression::Gzip => read(&mut flate2::read::MultiGzDecoder::new(compressed)),
        Compression::Zstd => match zstd::stream::read::Decoder::with_buffer(compressed) {
            Ok(mut decoder) => read(&mut decoder),
            Err(e) => Err(e.to_string()),
        },
        Compression::Lz4 => lz4(compressed, budget),
        Compression::Snappy => snappy(compressed, budget),
    };
    plain
        .map(Bytes::from)
        .map_err(|e| format!("{compression:?} records: {e}"))
}

/// Reads to the end, or fails past `budget` bytes.
fn read_bounded(reader: &mut dyn Read, budget: usize) -> Result<Vec<u8>, String> {
    let mut plain = Vec::new();
    let limit = u64::try_from(budget).unwrap_or(u64::MAX).saturating_add(1);
    reader.take(limit).read_to_end(&mut plain).map_err(|e| e.to_string())?;
    if plain.len() > budget {
        return Err(format!("more than the {budget} bytes allowed"));
    }
    Ok(plain)
}

/// An LZ4 frame; its reader ends quietly where the bytes end, so a frame cut short is
/// caught after it.
fn lz4(compressed: &[u8], budget: usize) -> Result<Vec<u8>, String> {
    let mut decoder = lz4::Decoder::new(compressed).map_err(|e| e.to_string())?;
    let plain = read_bounded(&mut decoder, budget)?;
    match decoder.finish() {
        (_, Ok(())) => Ok(plain),
        (rest, Err(_)) => Err(format!("a frame cut short ({} bytes unread)", rest.len())),
    }
}

fn snappy(compressed: &[u8], budget: usize) -> Result<Vec<u8>, String> {
    let Some(mut blocks) = compressed.strip_prefix(SNAPPY_FRAMED_HEADER) else {
        return snappy_block(compressed, budget, Vec::new());
    };
    let mut plain = Vec::new();
    while !blocks.is_empty() {
        let Some((length, rest)) = blocks.split_first_chunk::<SNAPPY_BLOCK_LENGTH_BYTES>() else {
            return Err("a cut block length".into());
        };
        let length = u32::from_be_bytes(*length) as usize;
        if rest.len() < length {
            return Err(format!("a block of {length} bytes with {} left", rest.len()));
        }
        let (block, rest) = rest.split_at(length);
        plain = snappy_block(block, budget, plain)?;
        blocks = rest;
    }
    Ok(plain)
}

/// Appends one raw snappy block to `plain`, checking its declared length first.
fn snappy_block(block: &[u8], budget: usize, mut plain: Vec<u8>) -> Result<Vec<u8>, String> {
    let length = snap::raw::decompress_len(block).map_err(|e| e.to_string())?;
    let start = plain.len();
    if length > budget.saturating_sub(start) {
        return Err(format!("more than the {budget} bytes allowed"));
    }
    plain.resize(start + length, 0);
    snap::raw::Decoder::new()
        .decompress(block, &mut plain[start..])
        .map_err(|e| e.to_string())?;
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `plain` compressed as a Kafka client would, with the protocol crate's encoders.
    fn compress(plain: &[u8], compression: Compression) -> Vec<u8> {
        use kafka_protocol::compression::{Compressor, Gzip, Lz4, Snappy, Zstd};
        let mut out = bytes::BytesMut::new();
        let fill = |b: &mut bytes::BytesMut| {
            b.extend_from_slice(plain);
            Ok(())
        };
        match compression {
            Compression::None => out.extend_from_slice(plain),
            Compression::Gzip => Gzip::compress(&mut out, fill).unwrap(),
            Compression::Snappy => Snappy::compress(&mut out, fill).unwrap(),
            Compression::Lz4 => Lz4::compress(&mut out, fill).unwrap(),
            Compression::Zstd => Zstd::compress(&mut out, fill).unwrap(),
        }
        out.to_vec()
    }

    const CODECS: [Compression; 4] = [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    #[test]
    fn every_codec_round_trips_up_to_the_budget_and_stops_past_it() {
        let plain: Vec<u8> = (0..100_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        for compression in CODECS {
            let packed = Bytes::from(compress(&plain, compression));
            assert_eq!(
                decompress_within(&packed, compression, plain.len()).unwrap(),
                plain,
                "{compression:?}"
            );
            let err = decompress_within(&packed, compression, plain.len() - 1).unwrap_err();
            assert!(err.contains("allowed"), "{compression:?}: {err}");
        }
        // Uncompressed records are not copied and not counted.
        let packed = Bytes::from(plain);
        let same = decompress_within(&packed, Compression::None, 0).unwrap();
        assert_eq!(same.as_ptr(), packed.as_ptr());
    }

    #[test]
    fn a_small_request_cannot_stand_for_a_huge_batch() {
        // 64 MiB of zeros: a few kilobytes compressed; refused at a 1 MiB budget without
        // decompressing past it.
        let zeros = vec![0u8; 64 << 20];
        for compression in CODECS {
            let packed = compress(&zeros, compression);
            assert!(packed.len() < 4 << 20, "{compression:?}: {}", packed.len());
            let err = decompress_within(&Bytes::from(packed), compression, 1 << 20).unwrap_err();
            assert!(err.contains("allowed"), "{compression:?}: {err}");
        }
    }

    #[test]
    fn bad_bytes_are_errors() {
        let plain = b"some records, some records, some records".repeat(20);
        for compression in CODECS {
            let packed = compress(&plain, compression);
            for cut in [1, packed.len() / 2, packed.len() - 1] {
                let cut_short = decompress_within(&Bytes::copy_from_slice(&packed[..cut]), compression, 1 << 20);
                assert!(cut_short.is_err(), "{compression:?} cut at {cut}");
            }
            let junk = decompress_within(&Bytes::from_static(b"\xff\xff\xff\xff\xff\xff"), compression, 1 << 20);
            assert!(junk.is_err(), "{compression:?}: {junk:?}");
        }
        let mut framed = SNAPPY_FRAMED_HEADER.to_vec();
        framed.extend_from_slice(&1000u32.to_be_bytes());
        framed.extend_from_slice(b"short");
        assert!(decompress_within(&Bytes::from(framed), Compression::Snappy, 1 << 20)
            .unwrap_err()
            .contains("1000 bytes"));
    }
}
