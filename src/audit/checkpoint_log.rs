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
/// [`AuditError::Decode`] naming the byte of the first frame that is damaged.
pub fn decode(bytes: &[u8]) -> Result<Decoded> {
    let mut out = Decoded::default();
    let mut pos = 0usize;
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        let damaged = |reason: String| AuditError::Decode {
            what: "checkpoints log",
            byte: pos,
            reason,
        };
        if rest.len() < FRAME_HEADER_BYTES {
            out.torn = Some(format!("{} bytes of a frame header", rest.len()));
            break;
        }
        let len = read_u32(rest, 0) as usize;
        if len > CHECKPOINT_TEXT_BYTES_MAX || FRAME_HEADER_BYTES + len > rest.len() {
            out.torn = Some(format!("a frame of {len} bytes cut short at {} bytes", rest.len()));
            break;
        }
        let text = &rest[FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + len];
        if crc32fast::hash(text) != read_u32(rest, 4) {
            return Err(damaged("checkpoint checksum mismatch".into()));
        }
        out.texts.push(String::from_utf8_lossy(text).into_owned());
        pos += FRAME_HEADER_BYTES + len;
        out.valid_bytes = pos as u64;
    }
    Ok(out)
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
