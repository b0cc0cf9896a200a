//! Record framing inside a batch payload: encoding, decoding and header iteration.
//!
//! Pure, no I/O. The layout is in FORMAT.md ("Record").

use crate::record::{HeaderList, RecordFields, RecordRef, RECORD_BYTES_MAX};
use crate::segment::batch::{read_u16, read_u32, read_u64, BatchHeader, DecodeError};
use crate::Offset;

const FLAG_KEY: u8 = 1;
const FLAG_EVENT_TIME: u8 = 2;

/// Iterates the records of a decoded payload, checking each.
pub struct RecordIter<'a> {
    payload: &'a [u8],
    pos: usize,
    next_offset: u64,
    remaining: u32,
    timestamp_us: u64,
}

impl<'a> RecordIter<'a> {
    /// Iterates `payload`, which belongs to a batch with `header`.
    pub fn new(header: &BatchHeader, payload: &'a [u8]) -> Self {
        RecordIter {
            payload,
            pos: 0,
            next_offset: header.base_offset.0,
            remaining: header.record_count,
            timestamp_us: header.timestamp_us,
        }
    }
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<RecordRef<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            if self.pos != self.payload.len() {
                self.pos = self.payload.len();
                return Some(Err(DecodeError::bad(self.pos, "bytes left after the last record")));
            }
            return None;
        }
        self.remaining -= 1;
        let start = self.pos;
        let result = decode_record(self.payload, start).map(|(fields, end)| {
            self.pos = end;
            RecordRef {
                offset: Offset(self.next_offset),
                timestamp_us: self.timestamp_us,
                fields,
            }
        });
        self.next_offset += 1;
        if result.is_err() {
            self.remaining = 0;
            self.pos = self.payload.len();
        }
        Some(result)
    }
}

/// Decodes the record starting at `start`; returns it and the position after it.
fn decode_record(payload: &[u8], start: usize) -> Result<(RecordFields<'_>, usize), DecodeError> {
    let mut cursor = Cursor {
        bytes: payload,
        pos: start,
    };
    let body_len = cursor.u32()? as usize;
    if body_len > RECORD_BYTES_MAX || body_len > payload.len() - cursor.pos {
        return Err(DecodeError::bad(
            start,
            format!("record length {body_len} out of bounds"),
        ));
    }
    let end = cursor.pos + body_len;
    let mut body = Cursor {
        bytes: &payload[..end],
        pos: cursor.pos,
    };
    let flags = body.u8()?;
    if flags & !(FLAG_KEY | FLAG_EVENT_TIME) != 0 {
        return Err(DecodeError::bad(
            start + 4,
            format!("unknown record flags {flags:#04x}"),
        ));
    }
    let event_time_us = if flags & FLAG_EVENT_TIME != 0 {
        Some(body.u64()? as i64)
    } else {
        None
    };
    let key = if flags & FLAG_KEY != 0 {
        let len = usize::from(body.u16()?);
        if len > crate::record::KEY_BYTES_MAX {
            return Err(DecodeError::bad(body.pos, "key longer than the limit"));
        }
        Some(body.take(len)?)
    } else {
        None
    };
    let count = body.u8()?;
    if usize::from(count) > crate::record::HEADER_COUNT_MAX {
        return Err(DecodeError::bad(
            body.pos - 1,
            format!("{count} headers, over the limit"),
        ));
    }
    let headers_start = body.pos;
    for _ in 0..count {
        let name_len = usize::from(body.u8()?);
        let name = body.take(name_len)?;
        if std::str::from_utf8(name).is_err() {
            return Err(DecodeError::bad(body.pos - name_len, "header name is not UTF-8"));
        }
        let value_len = usize::from(body.u16()?);
        if value_len > crate::record::HEADER_VALUE_BYTES_MAX {
            return Err(DecodeError::bad(body.pos - 2, "header value longer than the limit"));
        }
        body.take(value_len)?;
    }
    let headers = HeaderList::Encoded {
        count: u16::from(count),
        bytes: &payload[headers_start..body.pos],
    };
    let value = &payload[body.pos..end];
    Ok((
        RecordFields {
            event_time_us,
            key,
            headers,
            value,
        },
        end,
    ))
}

/// Iterates headers that `decode_record` has already validated.
pub struct EncodedHeaders<'a> {
    remaining: u16,
    cursor: Cursor<'a>,
}

impl<'a> EncodedHeaders<'a> {
    /// Iterates `count` validated headers in `bytes`.
    pub fn new(count: u16, bytes: &'a [u8]) -> Self {
        EncodedHeaders {
            remaining: count,
            cursor: Cursor { bytes, pos: 0 },
        }
    }
}

impl<'a> Iterator for EncodedHeaders<'a> {
    type Item = (&'a str, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let name_len = usize::from(self.cursor.u8().ok()?);
        let name = self.cursor.take(name_len).ok()?;
        let value_len = usize::from(self.cursor.u16().ok()?);
        let value = self.cursor.take(value_len).ok()?;
        // The decoder checked UTF-8 before handing these bytes out.
        Some((std::str::from_utf8(name).unwrap_or_default(), value))
    }
}

/// Encoded size of one record, its length prefix included.
pub fn record_encoded_len(fields: &RecordFields<'_>) -> usize {
    let mut len = 4 + 1 + 1;
    if fields.event_time_us.is_some() {
        len += 8;
    }
    if let Some(key) = fields.key {
        len += 2 + key.len();
    }
    len + headers_encoded_len(&fields.headers) + fields.value.len()
}

/// Bytes the headers take when encoded (without the count byte).
fn headers_encoded_len(headers: &HeaderList<'_>) -> usize {
    match headers {
        HeaderList::Owned(list) => list.iter().map(|(n, v)| 1 + n.len() + 2 + v.len()).sum(),
        // Already in their encoded form.
        HeaderList::Encoded { bytes, .. } => bytes.len(),
    }
}

/// Appends one record's encoding to `out`. The caller checked the limits.
pub fn encode_record(out: &mut Vec<u8>, fields: &RecordFields<'_>) {
    let body_len = record_encoded_len(fields) - 4;
    debug_assert!(body_len <= RECORD_BYTES_MAX);
    out.reserve(body_len + 4);
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    let mut flags = 0;
    if fields.key.is_some() {
        flags |= FLAG_KEY;
    }
    if fields.event_time_us.is_some() {
        flags |= FLAG_EVENT_TIME;
    }
    out.push(flags);
    if let Some(t) = fields.event_time_us {
        out.extend_from_slice(&t.to_le_bytes());
    }
    if let Some(key) = fields.key {
        out.extend_from_slice(&(key.len() as u16).to_le_bytes());
        out.extend_from_slice(key);
    }
    out.push(fields.headers.len() as u8);
    match fields.headers {
        HeaderList::Owned(list) => {
            for (name, value) in list {
                out.push(name.len() as u8);
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(&(value.len() as u16).to_le_bytes());
                out.extend_from_slice(value);
            }
        }
        HeaderList::Encoded { bytes, .. } => out.extend_from_slice(bytes),
    }
    out.extend_from_slice(fields.value);
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], DecodeError> {
        if len > self.bytes.len() - self.pos {
            return Err(DecodeError::bad(
                self.pos,
                format!("field of {len} bytes runs past the record"),
            ));
        }
        let slice = &self.bytes[self.pos..self.pos + len];
        self.pos += len;
        Ok(slice)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(read_u16(self.take(2)?, 0))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(read_u32(self.take(4)?, 0))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(read_u64(self.take(8)?, 0))
    }
}
