//! The cursor file of one consumer group: an append-only log of checksummed 32-byte
//! commit entries; the valid entry with the highest sequence number is the committed
//! position. A torn or corrupt entry is skipped, never trusted, so a crash at any point
//! leaves the old position or the new one (see FORMAT.md, "Cursor file").

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::IoContext;
use crate::{Error, Offset, Result};

/// "TKC1" as a little-endian u32.
pub const CURSOR_MAGIC: u32 = u32::from_le_bytes(*b"TKC1");
/// Size of one commit entry.
pub const CURSOR_ENTRY_BYTES: usize = 32;
/// Entries after which the file is rewritten with the latest one only.
pub const CURSOR_ENTRIES_MAX: u64 = 4096;
/// Largest cursor file read (bytes); anything larger is refused as corrupt.
pub const CURSOR_FILE_BYTES_MAX: u64 = 2 * CURSOR_ENTRIES_MAX * CURSOR_ENTRY_BYTES as u64;
/// Extension of cursor files.
pub const CURSOR_EXT: &str = "cursor";

/// One committed position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CursorEntry {
    /// The next offset the group will read (everything below is consumed).
    pub offset: Offset,
    /// When it was committed, microseconds since the epoch.
    pub committed_at_us: u64,
    /// Increases by one per commit.
    pub sequence: u64,
}

impl CursorEntry {
    /// The entry's 32 bytes.
    pub fn encode(&self) -> [u8; CURSOR_ENTRY_BYTES] {
        let mut b = [0u8; CURSOR_ENTRY_BYTES];
        b[0..4].copy_from_slice(&CURSOR_MAGIC.to_le_bytes());
        b[8..16].copy_from_slice(&self.offset.0.to_le_bytes());
        b[16..24].copy_from_slice(&self.committed_at_us.to_le_bytes());
        b[24..32].copy_from_slice(&self.sequence.to_le_bytes());
        let crc = crc32fast::hash(&b[8..]);
        b[4..8].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes one entry; None when the magic or checksum is wrong.
    pub fn decode(b: &[u8]) -> Option<CursorEntry> {
        if b.len() != CURSOR_ENTRY_BYTES || crate::segment::batch::read_u32(b, 0) != CURSOR_MAGIC {
            return None;
        }
        if crc32fast::hash(&b[8..]) != crate::segment::batch::read_u32(b, 4) {
            return None;
        }
        Some(CursorEntry {
            offset: Offset(crate::segment::batch::read_u64(b, 8)),
            committed_at_us: crate::segment::batch::read_u64(b, 16),
            sequence: crate::segment::batch::read_u64(b, 24),
        })
    }
}

/// The latest valid entry of a cursor file's bytes, and how many entries it holds.
pub fn latest_entry(bytes: &[u8]) -> (Option<CursorEntry>, u64) {
    let mut best: Option<CursorEntry> = None;
    let mut count = 0;
    for chunk in bytes.chunks_exact(CURSOR_ENTRY_BYTES) {
        count += 1;
        if let Some(entry) = CursorEntry::decode(chunk) {
            if best.is_none_or(|b| entry.sequence > b.sequence) {
                best = Some(entry);
            }
        }
    }
    (best, count)
}

/// Reads the committed entry of the cursor file at `path` (None when there is none).
pub fn read_cursor(path: &Path) -> Result<Option<CursorEntry>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).context(|| format!("reading cursor {}", path.display())),
    };
    if bytes.len() as u64 > CURSOR_FILE_BYTES_MAX {
        return Err(Error::Corrupt {
            file: path.to_path_buf(),
            byte_pos: CURSOR_FILE_BYTES_MAX,
            reason: "cursor file larger than the limit".into(),
        });
    }
    let (entry, count) = latest_entry(&bytes);
    // All zeros is what a crash during a group's very first commit can leave: no commit.
    if entry.is_none() && count > 0 && bytes.iter().any(|&b| b != 0) {
        return Err(Error::Corrupt {
            file: path.to_path_buf(),
            byte_pos: 0,
            reason: "no valid commit entry in the cursor file".into(),
        });
    }
    Ok(entry)
}

/// A cursor file open for committing, held under an exclusive lock by one consumer.
pub struct CursorFile {
    path: PathBuf,
    file: File,
    last: Option<CursorEntry>,
    entries: u64,
}

impl CursorFile {
    /// Opens (creating) and locks the cursor file of `group` at `path`.
    ///
    /// # Errors
    /// [`Error::Locked`] when another consumer of the group holds it; I/O errors.
    pub fn open_locked(topic: &str, group: &str, path: &Path) -> Result<CursorFile> {
        let created = !path.exists();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .context(|| format!("opening cursor {}", path.display()))?;
        if created {
            if let Some(dir) = path.parent() {
                crate::fsutil::sync_dir(dir)?;
            }
        }
        match crate::fsutil::try_lock_briefly(&file) {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::Locked {
                    topic: topic.to_owned(),
                    holder: format!("another consumer of group {group:?}"),
                    lock_file: path.to_path_buf(),
                })
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e).context(|| format!("locking {}", path.display())),
        }
        let bytes = std::fs::read(path).context(|| format!("reading cursor {}", path.display()))?;
        let (last, entries) = latest_entry(&bytes);
        let whole = entries * CURSOR_ENTRY_BYTES as u64;
        if bytes.len() as u64 != whole {
            // A torn last entry (crash mid-commit): cut it off, or the next entry would be
            // written out of 32-byte alignment and never be found again.
            file.set_len(whole)
                .and_then(|()| file.sync_data())
                .context(|| format!("truncating the torn tail of cursor {}", path.display()))?;
        }
        Ok(CursorFile {
            path: path.to_path_buf(),
            file,
            last,
            entries,
        })
    }

    /// The committed entry.
    pub fn last(&self) -> Option<CursorEntry> {
        self.last
    }

    /// Durably commits `offset` (append + fdatasync; the file is compacted now and then).
    ///
    /// # Errors
    /// I/O errors; the previous position then stays committed.
    pub fn commit(&mut self, offset: Offset, now_us: u64) -> Result<CursorEntry> {
        let entry = CursorEntry {
            offset,
            committed_at_us: now_us,
            sequence: self.last.map_or(1, |e| e.sequence + 1),
        };
        if self.entries >= CURSOR_ENTRIES_MAX {
            self.compact(entry)?;
        } else {
            self.file
                .write_all_at(&entry.encode(), self.entries * CURSOR_ENTRY_BYTES as u64)
                .and_then(|()| self.file.sync_data())
                .context(|| format!("committing cursor {}", self.path.display()))?;
            self.entries += 1;
        }
        crate::failpoint::hit("cursor.after_commit");
        self.last = Some(entry);
        Ok(entry)
    }

    /// Leaves the file with one entry, in place, so the inode (and the lock on it) stays:
    /// `entry` overwrites the first entry and is synced, then the file is cut to it.
    /// A crash between the two leaves `entry` as the highest sequence among the old ones;
    /// a torn first entry fails its CRC and the previous commit stays in force.
    fn compact(&mut self, entry: CursorEntry) -> Result<()> {
        self.file
            .write_all_at(&entry.encode(), 0)
            .and_then(|()| self.file.sync_data())
            .and_then(|()| self.file.set_len(CURSOR_ENTRY_BYTES as u64))
            .and_then(|()| self.file.sync_all())
            .context(|| format!("compacting cursor {}", self.path.display()))?;
        self.entries = 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn highest_valid_sequence_wins_and_torn_entries_are_skipped() {
        let a = CursorEntry {
            offset: Offset(5),
            committed_at_us: 1,
            sequence: 1,
        }
        .encode();
        let b = CursorEntry {
            offset: Offset(9),
            committed_at_us: 2,
            sequence: 2,
        }
        .encode();
        let mut bytes = [a, b].concat();
        assert_eq!(latest_entry(&bytes).0.unwrap().offset, Offset(9));
        bytes[40] ^= 1;
        assert_eq!(latest_entry(&bytes).0.unwrap().offset, Offset(5));
        let mut torn = [a.as_slice(), &b[..20]].concat();
        assert_eq!(latest_entry(&torn).0.unwrap().offset, Offset(5));
        torn.truncate(0);
        assert_eq!(latest_entry(&torn).0, None);
    }

    #[test]
    fn commits_survive_reopen_and_compaction() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.cursor");
        {
            let mut file = CursorFile::open_locked("t", "g", &path).unwrap();
            for i in 0..(CURSOR_ENTRIES_MAX + 10) {
                file.commit(Offset(i), i).unwrap();
            }
            // Compaction rewrote the file in place: the lock still covers the cursor.
            match CursorFile::open_locked("t", "g", &path) {
                Err(Error::Locked { lock_file, .. }) => assert_eq!(lock_file, path),
                Err(other) => panic!("a second consumer got {other}, not Locked"),
                Ok(_) => panic!("a second consumer locked the cursor after a compaction"),
            }
        }
        assert_eq!(
            read_cursor(&path).unwrap().unwrap().offset,
            Offset(CURSOR_ENTRIES_MAX + 9)
        );
        assert!(std::fs::metadata(&path).unwrap().len() < 1024);
    }

    #[test]
    fn compaction_keeps_the_inode_and_a_crash_inside_it_keeps_the_newest_commit() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.cursor");
        let mut file = CursorFile::open_locked("t", "g", &path).unwrap();
        let inode = std::fs::metadata(&path).unwrap().ino();
        for i in 0..=CURSOR_ENTRIES_MAX {
            file.commit(Offset(i), i).unwrap();
        }
        assert_eq!(std::fs::metadata(&path).unwrap().ino(), inode);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), CURSOR_ENTRY_BYTES as u64);
        drop(file);
        // A crash after the first entry was overwritten, before the cut: the old entries
        // are still there, and the newest sequence wins.
        let old: Vec<u8> = (1..=CURSOR_ENTRIES_MAX)
            .flat_map(|seq| {
                CursorEntry {
                    offset: Offset(seq * 10),
                    committed_at_us: seq,
                    sequence: seq,
                }
                .encode()
            })
            .collect();
        let mut crashed = old.clone();
        let newest = CursorEntry {
            offset: Offset(7),
            committed_at_us: 0,
            sequence: CURSOR_ENTRIES_MAX + 1,
        };
        crashed[..CURSOR_ENTRY_BYTES].copy_from_slice(&newest.encode());
        std::fs::write(&path, &crashed).unwrap();
        assert_eq!(read_cursor(&path).unwrap(), Some(newest));
        // Torn while overwriting it: the previous commit stays in force.
        crashed[..CURSOR_ENTRY_BYTES / 2].copy_from_slice(&old[CURSOR_ENTRY_BYTES..CURSOR_ENTRY_BYTES * 3 / 2]);
        std::fs::write(&path, &crashed).unwrap();
        assert_eq!(read_cursor(&path).unwrap().unwrap().sequence, CURSOR_ENTRIES_MAX);
    }
}
