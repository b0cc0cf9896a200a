//! `checkpoints.log`: a topic's signed checkpoints, oldest first, one frame each:
//! `u32 length || u32 CRC-32 of the text || text` (FORMAT.md, "Where trailkeep keeps them").
//!
//! Each frame is written with one write and fdatasync'ed before the next is written, so a
//! crash can damage only the last frame. Readers ignore such a torn final frame; the writer
//! cuts it off before it appends (else the torn bytes end up mid-file, where they are
//! damage). Decoding is pure ([`decode`]); [`read`] and [`CheckpointLogWriter`] do the I/O.

use std::fs::{File, OpenOptions};
use std::io::Read as _;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use crate::audit::note::NOTE_BYTES_MAX;
use crate::audit::{AuditError, Result};

/// Bytes of a frame's header: the text's length and its CRC-32.
pub const FRAME_HEADER_BYTES: usize = 8;
/// Most bytes of one frame's text (a signed note's limit).
pub const CHECKPOINT_TEXT_BYTES_MAX: usize = NOTE_BYTES_MAX;

/// What a checkpoints file holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decoded {
    /// The text of every complete frame, oldest first.
    pub texts: Vec<String>,
    /// Where the complete frames end.
    pub valid_bytes: u64,
    /// Why the bytes after `valid_bytes`, if any, are a torn final frame.
    pub torn: Option<String>,
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

/// One frame of `text`.
///
/// # Errors
/// [`AuditError::Decode`] if the text is above [`CHECKPOINT_TEXT_BYTES_MAX`].
pub fn frame(text: &str) -> Result<Vec<u8>> {
    if text.len() > CHECKPOINT_TEXT_BYTES_MAX {
        return Err(AuditError::Decode {
            what: "checkpoint frame",
            byte: 0,
            reason: format!("text is {} bytes, above {CHECKPOINT_TEXT_BYTES_MAX}", text.len()),
        });
    }
    let mut frame = Vec::with_capacity(FRAME_HEADER_BYTES + text.len());
    frame.extend_from_slice(&(text.len() as u32).to_le_bytes());
    frame.extend_from_slice(&crc32fast::hash(text.as_bytes()).to_le_bytes());
    frame.extend_from_slice(text.as_bytes());
    Ok(frame)
}

/// Decodes a whole checkpoints file.
///
/// # Errors
/// [`AuditError::Decode`] naming the byte of the first frame that is damaged: one that
/// cannot be what a crash while it was written left (FORMAT.md, "Checkpoints file").
pub fn decode(bytes: &[u8]) -> Result<Decoded> {
    let mut out = Decoded::default();
    let mut pos = 0usize;
    while pos < bytes.len() {
        let next = next_frame(&bytes[pos..]).map_err(|reason| AuditError::Decode {
            what: "checkpoints log",
            byte: pos,
            reason,
        })?;
        match next {
            Next::Whole(text) => {
                out.texts.push(String::from_utf8_lossy(text).into_owned());
                pos += FRAME_HEADER_BYTES + text.len();
                out.valid_bytes = pos as u64;
            }
            Next::Torn(reason) => {
                out.torn = Some(reason);
                break;
            }
        }
    }
    Ok(out)
}

/// What starts at a frame boundary.
enum Next<'a> {
    /// A whole frame whose checksum holds: its text.
    Whole(&'a [u8]),
    /// The torn end of a crashed write: why it counts as one.
    Torn(String),
}

/// Decodes the frame at the start of `rest` (the bytes from a frame boundary to the end of
/// the file). A crash while a frame is written leaves a prefix of that frame, possibly
/// followed by zeros where blocks were not written, and nothing after it. So `rest` is a
/// torn frame only if it is no longer than the frame its length field announces, and its
/// bytes before the trailing zeros are a proper prefix of such a frame: a length in
/// `1..=CHECKPOINT_TEXT_BYTES_MAX` (as far as it is there) and text that could start a
/// signed note (UTF-8, no control character but `\n`). Anything else is damage: `Err`
/// says what is wrong.
fn next_frame(rest: &[u8]) -> std::result::Result<Next<'_>, String> {
    let written = rest.len() - rest.iter().rev().take_while(|&&b| b == 0).count();
    if written == 0 {
        if rest.len() <= FRAME_HEADER_BYTES + CHECKPOINT_TEXT_BYTES_MAX {
            return Ok(Next::Torn(format!(
                "{} zero bytes (blocks a crash left unwritten)",
                rest.len()
            )));
        }
        return Err(format!("{} zero bytes, more than one frame can hold", rest.len()));
    }
    // The length field, or the part of it that is there (the missing high bytes are zeros).
    let mut len_bytes = [0u8; 4];
    let present = rest.len().min(4);
    len_bytes[..present].copy_from_slice(&rest[..present]);
    let len = u32::from_le_bytes(len_bytes) as usize;
    if len > CHECKPOINT_TEXT_BYTES_MAX {
        return Err(format!(
            "frame length {len} is above {CHECKPOINT_TEXT_BYTES_MAX}, longer than any checkpoint"
        ));
    }
    if len == 0 && present == 4 {
        return Err("frame length 0: a checkpoint is never empty".into());
    }
    let end = FRAME_HEADER_BYTES + len;
    if rest.len() >= end {
        let text = &rest[FRAME_HEADER_BYTES..end];
        if crc32fast::hash(text) == read_u32(rest, 4) {
            return Ok(Next::Whole(text));
        }
        if rest.len() > end || written == end {
            return Err("checkpoint checksum mismatch".into());
        }
    }
    let text = &rest[FRAME_HEADER_BYTES.min(written)..written];
    note_prefix(text).map_err(|why| format!("a frame of {len} bytes cut short at {} bytes, but {why}", rest.len()))?;
    Ok(Next::Torn(format!(
        "a frame of {len} bytes with {written} of its {end} bytes written"
    )))
}

/// Checks that `text` can be the start of a signed note: UTF-8 (the last character may be
/// cut), no control character but `\n`.
fn note_prefix(text: &[u8]) -> std::result::Result<(), String> {
    let valid = match std::str::from_utf8(text) {
        Ok(s) => s,
        Err(e) if e.error_len().is_none() => std::str::from_utf8(&text[..e.valid_up_to()]).unwrap_or_default(),
        Err(e) => return Err(format!("its text is not utf-8 at text byte {}", e.valid_up_to())),
    };
    match valid.char_indices().find(|&(_, c)| c != '\n' && c.is_control()) {
        Some((at, c)) => Err(format!("its text holds control character {c:?} at text byte {at}")),
        None => Ok(()),
    }
}

/// Reads and decodes the file at `path`; a missing file holds no checkpoint.
///
/// # Errors
/// [`AuditError::Corrupt`] naming the file and byte of a damaged frame; I/O errors.
pub fn read(path: &Path) -> Result<Decoded> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Decoded::default()),
        Err(e) => return Err(AuditError::io(path, e)),
    };
    decode_at(path, &bytes)
}

fn decode_at(path: &Path, bytes: &[u8]) -> Result<Decoded> {
    decode(bytes).map_err(|e| match e {
        AuditError::Decode { byte, reason, .. } => AuditError::Corrupt {
            path: path.to_path_buf(),
            byte: byte as u64,
            reason,
        },
        other => other,
    })
}

/// The appending side of a checkpoints file. Before its first append, and whenever the
/// file's length is not where its last append ended, it decodes the whole file and cuts
/// off a torn final frame (with a log line); damage elsewhere fails the append.
#[derive(Debug)]
pub struct CheckpointLogWriter {
    path: PathBuf,
    /// Where the last frame this writer wrote or checked ends.
    end: Option<u64>,
}

impl CheckpointLogWriter {
    /// A writer for the file at `path`; nothing is opened yet.
    pub fn new(path: impl Into<PathBuf>) -> CheckpointLogWriter {
        CheckpointLogWriter {
            path: path.into(),
            end: None,
        }
    }

    /// Decodes the file, cuts off a torn final frame, and returns what it holds.
    ///
    /// # Errors
    /// As [`read`]; I/O errors of the cut.
    pub fn repair(&mut self) -> Result<Decoded> {
        let file = self.open_file()?;
        self.repair_file(&file)
    }

    /// Appends `text` as one frame and fdatasyncs it (not under a volatile root).
    ///
    /// # Errors
    /// As [`CheckpointLogWriter::repair`]; [`AuditError::Decode`] for a text above
    /// [`CHECKPOINT_TEXT_BYTES_MAX`]; I/O errors (a partly written frame is cut off
    /// again, best effort, and checked on the next append).
    pub fn append(&mut self, text: &str) -> Result<()> {
        let frame = frame(text)?;
        let file = self.open_file()?;
        let len = file.metadata().map_err(|e| AuditError::io(&self.path, e))?.len();
        let end = match self.end {
            Some(end) if end == len => end,
            _ => self.repair_file(&file)?.valid_bytes,
        };
        let written = file.write_all_at(&frame, end).and_then(|()| {
            if crate::fsutil::is_volatile(&self.path) {
                Ok(())
            } else {
                file.sync_data()
            }
        });
        if let Err(e) = written {
            self.end = None;
            let _ = file.set_len(end);
            return Err(AuditError::io(&self.path, e));
        }
        self.end = Some(end + frame.len() as u64);
        Ok(())
    }

    fn open_file(&self) -> Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.path)
            .map_err(|e| AuditError::io(&self.path, e))
    }

    fn repair_file(&mut self, file: &File) -> Result<Decoded> {
        self.end = None;
        let mut bytes = Vec::new();
        (&*file)
            .read_to_end(&mut bytes)
            .map_err(|e| AuditError::io(&self.path, e))?;
        let decoded = decode_at(&self.path, &bytes)?;
        if let Some(reason) = &decoded.torn {
            tracing::warn!(
                path = %self.path.display(),
                byte = decoded.valid_bytes,
                cut_bytes = bytes.len() as u64 - decoded.valid_bytes,
                reason = %reason,
                "cutting a torn final checkpoint frame (a crash while it was written)"
            );
            file.set_len(decoded.valid_bytes)
                .and_then(|()| file.sync_data())
                .map_err(|e| AuditError::io(&self.path, e))?;
        }
        self.end = Some(decoded.valid_bytes);
        Ok(decoded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_frames() -> Vec<u8> {
        let mut bytes = frame("first\n").unwrap();
        bytes.extend(frame("second checkpoint\n").unwrap());
        bytes
    }

    #[test]
    fn whole_frames_decode() {
        let bytes = two_frames();
        let decoded = decode(&bytes).unwrap();
        assert_eq!(decoded.texts, ["first\n", "second checkpoint\n"]);
        assert_eq!(decoded.valid_bytes, bytes.len() as u64);
        assert_eq!(decoded.torn, None);
    }

    #[test]
    fn every_cut_of_the_last_frame_is_a_torn_tail() {
        let bytes = two_frames();
        let first_end = FRAME_HEADER_BYTES + 6;
        for cut in first_end + 1..bytes.len() {
            let decoded = decode(&bytes[..cut]).unwrap();
            assert_eq!(decoded.texts, ["first\n"], "cut at {cut}");
            assert_eq!(decoded.valid_bytes, first_end as u64, "cut at {cut}");
            assert!(decoded.torn.is_some(), "cut at {cut}");
        }
    }

    #[test]
    fn bytes_a_crash_cannot_leave_are_damage() {
        let bytes = two_frames();
        let first_end = FRAME_HEADER_BYTES + 6;
        let mut flipped = bytes.clone();
        flipped[1] ^= 0x10;
        let mut garbage = bytes.clone();
        garbage.extend_from_slice(b"garbage\n");
        let mut zero_len = bytes.clone();
        zero_len[first_end..first_end + 4].fill(0);
        for (what, damaged, at) in [
            ("length flip", flipped, 0),
            ("garbage", garbage, bytes.len()),
            ("zero length", zero_len, first_end),
        ] {
            match decode(&damaged) {
                Err(AuditError::Decode { byte, .. }) => assert_eq!(byte, at, "{what}"),
                other => panic!("{what}: expected a decode error at byte {at}, got {other:?}"),
            }
        }
    }

    #[test]
    fn the_writer_cuts_a_torn_tail_before_appending() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoints.log");
        let bytes = two_frames();
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        let mut writer = CheckpointLogWriter::new(&path);
        writer.append("third\n").unwrap();
        writer.append("fourth\n").unwrap();
        let decoded = read(&path).unwrap();
        assert_eq!(decoded.texts, ["first\n", "third\n", "fourth\n"]);
        assert_eq!(decoded.torn, None);
    }
}
