//! [`TreeFile`]: every node hash of the Merkle tree, on disk, append-only.
//!
//! Layout (full description in docs/audit-format.md): `merkle.tree` is a
//! 16-byte header and then 32-byte hashes in post-order — each leaf hash is
//! followed by the roots of the perfect subtrees it completes — so the file
//! only ever grows at its end, and a tree of `n` leaves holds exactly
//! `2n - popcount(n)` hashes. `merkle.meta` holds two checksummed slots
//! naming the last size whose hashes were fdatasync'ed, and that size's root.
//!
//! **Invariant:** a valid meta slot claiming size `S` is written only after
//! the hashes for `S` are durable, so `S` is the size trusted on open;
//! anything after it is dropped and the engine re-feeds those leaves.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write as _};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use crate::audit::batch::{extend_frontier, LevelScratch};
use crate::audit::merkle::{Frontier, Hash, HASH_BYTES, TREE_HEIGHT_MAX, TREE_SIZE_MAX};
use crate::audit::proof::{self, NodeSource};
use crate::audit::{AuditError, Result};
use crate::fsutil::WritebackKicker;

/// Node hashes, in post-order.
pub const TREE_FILE_NAME: &str = "merkle.tree";
/// The two sync slots.
pub const META_FILE_NAME: &str = "merkle.meta";

const TREE_MAGIC: [u8; 8] = *b"TKMERKLE";
const META_MAGIC: [u8; 8] = *b"TKMRKMTA";
const FORMAT_VERSION: u32 = 1;
const HEADER_BYTES: u64 = 16;
const HASH_WIDTH: u64 = HASH_BYTES as u64;
/// Bytes of one meta slot covered by its CRC, then the CRC itself.
const META_BODY_BYTES: usize = 64;
const META_SLOT_BYTES: usize = META_BODY_BYTES + 4;
/// Slots sit a page apart so one torn sector write cannot damage both.
const META_SLOT_STRIDE: u64 = 4096;
const WRITE_BUFFER_BYTES: usize = 256 * 1024;
/// Hashes written between two writeback kicks (see [`TreeFile::append_leaves`]).
const WRITEBACK_KICK_BYTES: u64 = 4 << 20;

const _: () = assert!(META_SLOT_BYTES as u64 <= META_SLOT_STRIDE);
const _: () = assert!(8 + 4 + 4 + 8 + 8 + HASH_BYTES == META_BODY_BYTES);

/// Hashes stored for a tree of `size` leaves.
fn entries_for(size: u64) -> u64 {
    2 * size - u64::from(size.count_ones())
}

/// Post-order position of the root of the perfect subtree of `2^level`
/// leaves starting at leaf `index << level`: it follows the last leaf of the
/// subtree and the `level - 1` nodes below it on that leaf's right edge.
fn node_position(level: u32, index: u64) -> u64 {
    let last_leaf = ((index + 1) << level) - 1;
    entries_for(last_leaf) + u64::from(level)
}

/// The persistent tree. Appends are buffered; reads see buffered hashes too.
#[derive(Debug)]
pub struct TreeFile {
    tree_path: PathBuf,
    meta_path: PathBuf,
    writer: BufWriter<File>,
    meta: File,
    frontier: Frontier,
    /// Hashes written into `writer` since the header, flushed or not.
    entries: u64,
    meta_seq: u64,
    staging: Vec<u8>,
    levels: LevelScratch,
    poisoned: bool,
    /// Opened with [`TreeFile::open_read_only`]: reads only.
    read_only: bool,
    /// Entries at the last writeback kick.
    kicked_entries: u64,
    kicker: WritebackKicker,
}

/// A sync of the tree as it was at [`TreeFile::begin_sync`], to wait for on any thread.
#[derive(Debug)]
pub struct SyncTicket {
    file: File,
    /// Leaves covered.
    pub size: u64,
    /// The root of those leaves.
    pub root: Hash,
}

impl SyncTicket {
    /// Makes the covered hashes durable (an fdatasync of the tree file).
    ///
    /// # Errors
    /// The fdatasync's.
    pub fn wait(&self) -> std::io::Result<()> {
        self.file.sync_data()
    }
}

/// What one valid meta slot says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SyncPoint {
    seq: u64,
    size: u64,
    root: Hash,
}

impl TreeFile {
    /// Opens or creates the tree in `dir`. The size after open is the last
    /// synced size; leaves appended after it must be fed again.
    ///
    /// # Errors
    /// [`AuditError::Corrupt`] if the header is wrong, or the hashes the
    /// meta file vouches for are missing or do not give its root (delete the
    /// directory to rebuild from the log); [`AuditError::Io`] otherwise.
    pub fn open(dir: impl AsRef<Path>) -> Result<TreeFile> {
        let dir = dir.as_ref();
        fs::create_dir_all(dir).map_err(|e| AuditError::io(dir, e))?;
        let tree_path = dir.join(TREE_FILE_NAME);
        let meta_path = dir.join(META_FILE_NAME);
        let tree = open_tree_file(dir, &tree_path)?;
        let meta = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&meta_path)
            .map_err(|e| AuditError::io(&meta_path, e))?;
        let point = read_sync_point(&meta);
        TreeFile::assemble(tree_path, meta_path, tree, meta, point, false)
    }

    /// Opens the tree in `dir` for reading only, at its last synced size, changing
    /// nothing: for a verifier beside a running appender (which only appends past that
    /// size) or of a store on read-only media. A missing or empty tree is the empty tree.
    /// Every call that would write fails.
    ///
    /// # Errors
    /// As [`TreeFile::open`], but hashes stored past the synced size are left in place.
    pub fn open_read_only(dir: impl AsRef<Path>) -> Result<TreeFile> {
        let dir = dir.as_ref();
        let tree_path = dir.join(TREE_FILE_NAME);
        let meta_path = dir.join(META_FILE_NAME);
        let open = |path: &Path| File::open(path).map_err(|e| AuditError::io(path, e));
        let tree = open(&tree_path)?;
        let len = tree.metadata().map_err(|e| AuditError::io(&tree_path, e))?.len();
        let meta = open(&meta_path).ok();
        let point = match &meta {
            Some(meta) if len >= HEADER_BYTES => read_sync_point(meta),
            _ => empty_point(),
        };
        if len >= HEADER_BYTES {
            check_header(&tree, &tree_path)?;
        }
        // The meta file is never written through a read-only tree; without one, the
        // directory stands in for the handle.
        let meta = match meta {
            Some(meta) => meta,
            None => open(dir)?,
        };
        TreeFile::assemble(tree_path, meta_path, tree, meta, point, true)
    }

    /// The tree over open files, recovered to `point`.
    fn assemble(
        tree_path: PathBuf,
        meta_path: PathBuf,
        tree: File,
        meta: File,
        point: SyncPoint,
        read_only: bool,
    ) -> Result<TreeFile> {
        let mut file = TreeFile {
            kicker: WritebackKicker::new(&tree_path),
            tree_path,
            meta_path,
            writer: BufWriter::with_capacity(if read_only { 0 } else { WRITE_BUFFER_BYTES }, tree),
            meta,
            frontier: Frontier::new(),
            entries: 0,
            meta_seq: point.seq,
            staging: Vec::new(),
            levels: LevelScratch::default(),
            poisoned: false,
            read_only,
            kicked_entries: 0,
        };
        file.recover_to(point)?;
        Ok(file)
    }

    fn recover_to(&mut self, point: SyncPoint) -> Result<()> {
        let len = self.file_len()?;
        let stored = len.saturating_sub(HEADER_BYTES) / HASH_WIDTH;
        let needed = entries_for(point.size);
        if stored < needed {
            return Err(self.corrupt(
                len,
                format!(
                    "{META_FILE_NAME} vouches for {} leaves ({needed} hashes) but only {stored} are stored; \
                     delete the directory to rebuild from the log",
                    point.size
                ),
            ));
        }
        let keep = HEADER_BYTES + needed * HASH_WIDTH;
        if len > keep && !self.read_only {
            tracing::info!(path = %self.tree_path.display(), dropped_bytes = len - keep, synced_leaves = point.size,
                "dropping unsynced merkle hashes; the engine re-feeds those leaves");
            let file = self.writer.get_ref();
            file.set_len(keep).map_err(|e| AuditError::io(&self.tree_path, e))?;
        }
        self.entries = needed;
        self.kicked_entries = needed;
        self.frontier = self.frontier_at(point.size)?;
        if self.frontier.root() != point.root {
            return Err(self.corrupt(
                keep,
                format!("stored hashes for {} leaves do not give the synced root", point.size),
            ));
        }
        Ok(())
    }

    fn frontier_at(&self, size: u64) -> Result<Frontier> {
        let mut peaks = Vec::with_capacity(size.count_ones() as usize);
        let mut cursor = 0;
        for level in (0..=TREE_HEIGHT_MAX as u32).rev() {
            if size & (1 << level) != 0 {
                peaks.push(self.read_entry(node_position(level, cursor >> level))?);
                cursor += 1 << level;
            }
        }
        Frontier::from_peaks(size, peaks)
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// Root of the whole tree.
    pub fn root(&self) -> Hash {
        self.frontier.root()
    }

    /// The current frontier (compact range).
    pub fn frontier(&self) -> &Frontier {
        &self.frontier
    }

    /// Root of the first `size` leaves.
    ///
    /// # Errors
    /// [`AuditError::SizeOutOfRange`] above [`TreeFile::size`]; I/O errors.
    pub fn root_at(&self, size: u64) -> Result<Hash> {
        proof::root_at(self, size)
    }

    /// Stored hash of leaf `index`.
    ///
    /// # Errors
    /// [`AuditError::IndexOutOfRange`]; I/O errors.
    pub fn leaf(&self, index: u64) -> Result<Hash> {
        self.node(0, index)
    }

    /// Stored hashes of leaves `from..from + out.len()`, with one read of the
    /// post-order run that holds them (about two hashes per leaf).
    ///
    /// # Errors
    /// [`AuditError::IndexOutOfRange`] past [`TreeFile::size`]; I/O errors.
    pub fn leaves_into(&self, from: u64, out: &mut [Hash]) -> Result<()> {
        let Some(last) = (from + out.len() as u64).checked_sub(1) else {
            return Ok(());
        };
        if last >= self.size() {
            return Err(AuditError::IndexOutOfRange {
                index: last,
                size: self.size(),
            });
        }
        let first = node_position(0, from);
        let span = (node_position(0, last) - first + 1) as usize;
        let mut bytes = vec![0u8; span * HASH_BYTES];
        self.read_entries(first, &mut bytes)?;
        for (hash, index) in out.iter_mut().zip(from..) {
            let at = (node_position(0, index) - first) as usize * HASH_BYTES;
            hash.copy_from_slice(&bytes[at..at + HASH_BYTES]);
        }
        Ok(())
    }

    /// RFC 9162 inclusion proof of leaf `index` in the tree of `size` leaves.
    ///
    /// # Errors
    /// As [`proof::inclusion_proof`].
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>> {
        proof::inclusion_proof(self, index, size)
    }

    /// RFC 9162 consistency proof from `old_size` to `new_size`.
    ///
    /// # Errors
    /// As [`proof::consistency_proof`].
    pub fn consistency_proof(&self, old_size: u64, new_size: u64) -> Result<Vec<Hash>> {
        proof::consistency_proof(self, old_size, new_size)
    }

    /// Appends one leaf hash (buffered; no syscall in the common case).
    ///
    /// # Errors
    /// [`AuditError::Poisoned`], [`AuditError::TreeFull`], I/O errors.
    pub fn append_leaf(&mut self, leaf: Hash) -> Result<()> {
        self.append_leaves(&[leaf])
    }

    /// Appends leaf hashes in order, staging all new hashes for one write.
    /// The new interior nodes are hashed level by level in multi-buffer
    /// batches; the stored hashes are the same as one leaf at a time.
    ///
    /// # Errors
    /// [`AuditError::Poisoned`], [`AuditError::TreeFull`] (nothing is
    /// appended then), I/O errors (the file is poisoned then).
    pub fn append_leaves(&mut self, leaves: &[Hash]) -> Result<()> {
        self.check_writable()?;
        self.staging.clear();
        self.frontier = extend_frontier(&self.frontier, leaves, &mut self.levels, &mut self.staging)?;
        let before = self.entries;
        self.entries = entries_for(self.size());
        debug_assert_eq!(self.staging.len() as u64, (self.entries - before) * HASH_WIDTH);
        let written = if crate::failpoint::fails("tree.write") {
            Err(std::io::Error::other("injected write failure (failpoint tree.write)"))
        } else {
            self.writer.write_all(&self.staging)
        };
        self.poison_on_error(written)?;
        if (self.entries - self.kicked_entries) * HASH_WIDTH >= WRITEBACK_KICK_BYTES {
            self.kick_writeback()?;
        }
        Ok(())
    }

    /// Starts writing the hashes appended since the last kick to disk, on the kicker's
    /// thread (`POSIX_FADV_DONTNEED` starts writeback of dirty pages and drops only clean
    /// ones), so that the fdatasync of the next [`TreeFile::sync`] finds little left:
    /// under a bulk load the tree grows by 64 bytes a record, and writing it all at a
    /// checkpoint was most of a close. The tree's own reads (proofs) are rare.
    fn kick_writeback(&mut self) -> Result<()> {
        let flushed = self.writer.flush();
        self.poison_on_error(flushed)?;
        let from = HEADER_BYTES + self.kicked_entries * HASH_WIDTH;
        let len = (self.entries - self.kicked_entries) * HASH_WIDTH;
        self.kicker.kick(self.writer.get_ref(), from, len);
        self.kicked_entries = self.entries;
        Ok(())
    }

    /// Makes every appended hash durable (one fdatasync), then records the
    /// size and root in the next meta slot. The slot itself is not fsynced:
    /// losing it only means re-feeding leaves after a crash.
    ///
    /// # Errors
    /// [`AuditError::Poisoned`]; I/O errors (the file is poisoned then).
    pub fn sync(&mut self) -> Result<()> {
        let ticket = self.begin_sync()?;
        let synced = ticket.wait();
        self.finish_sync(ticket, synced)
    }

    /// The first step of a sync that another thread waits for while this one goes on
    /// appending: writes every buffered hash to the file and returns a ticket for the
    /// tree as it is now (its size and root, and a handle of the file to fdatasync).
    /// [`SyncTicket::wait`] syncs, on any thread; [`TreeFile::finish_sync`] then records
    /// the ticket's size in the meta file. Leaves appended meanwhile are not covered.
    ///
    /// # Errors
    /// [`AuditError::Poisoned`]; I/O errors (the file is poisoned then).
    pub fn begin_sync(&mut self) -> Result<SyncTicket> {
        self.check_writable()?;
        let flushed = self.writer.flush();
        self.poison_on_error(flushed)?;
        // A handle that cannot be opened (too many files) leaves the tree as it was.
        let file = self
            .writer
            .get_ref()
            .try_clone()
            .map_err(|e| AuditError::io(&self.tree_path, e))?;
        Ok(SyncTicket {
            file,
            size: self.size(),
            root: self.root(),
        })
    }

    /// Records `ticket`'s size and root in the next meta slot once `synced` (what
    /// [`SyncTicket::wait`] returned) says its hashes are durable.
    ///
    /// # Errors
    /// [`AuditError::Poisoned`]; the sync's error or the meta write's (the file is
    /// poisoned then).
    pub fn finish_sync(&mut self, ticket: SyncTicket, synced: std::io::Result<()>) -> Result<()> {
        self.check_writable()?;
        self.poison_on_error(synced)?;
        let point = SyncPoint {
            seq: self.meta_seq + 1,
            size: ticket.size,
            root: ticket.root,
        };
        let written = write_sync_point(&self.meta, &point);
        let result = written.map_err(|e| AuditError::io(&self.meta_path, e));
        if result.is_err() {
            self.poisoned = true;
        }
        result?;
        self.meta_seq = point.seq;
        Ok(())
    }

    /// Cuts the tree back to `size` leaves (crash recovery: the log holds
    /// fewer records than the tree). Returns the resulting size, which is
    /// below `size` when the tree holds fewer leaves: the caller then
    /// appends the leaves from the returned size on.
    ///
    /// # Errors
    /// [`AuditError::Poisoned`]; I/O errors (the file is poisoned then).
    pub fn truncate(&mut self, size: u64) -> Result<u64> {
        self.check_writable()?;
        if size >= self.size() {
            return Ok(self.size());
        }
        // Order matters for a crash at any step: first make the kept hashes
        // durable, then stop every meta slot vouching for more, and only then
        // cut the file (a lost cut is harmless: open drops unvouched hashes).
        let flushed = self.writer.flush().and_then(|()| self.writer.get_ref().sync_data());
        self.poison_on_error(flushed)?;
        let frontier = self.frontier_at(size)?;
        for _ in 0..2 {
            let point = SyncPoint {
                seq: self.meta_seq + 1,
                size,
                root: frontier.root(),
            };
            let written = write_sync_point(&self.meta, &point).and_then(|()| self.meta.sync_data());
            if let Err(e) = written {
                self.poisoned = true;
                return Err(AuditError::io(&self.meta_path, e));
            }
            self.meta_seq = point.seq;
        }
        let keep = HEADER_BYTES + entries_for(size) * HASH_WIDTH;
        let cut = self.writer.get_ref().set_len(keep);
        self.poison_on_error(cut)?;
        self.frontier = frontier;
        self.entries = entries_for(size);
        self.kicked_entries = self.entries;
        Ok(size)
    }

    /// Syncs and closes.
    ///
    /// # Errors
    /// As [`TreeFile::sync`].
    pub fn close(mut self) -> Result<()> {
        self.sync()
    }

    fn check_writable(&self) -> Result<()> {
        if self.read_only {
            return Err(AuditError::io(
                &self.tree_path,
                std::io::Error::new(std::io::ErrorKind::PermissionDenied, "the tree was opened read-only"),
            ));
        }
        self.check_poisoned()
    }

    fn check_poisoned(&self) -> Result<()> {
        if self.poisoned {
            return Err(AuditError::Poisoned {
                path: self.tree_path.clone(),
            });
        }
        Ok(())
    }

    fn poison_on_error(&mut self, result: std::io::Result<()>) -> Result<()> {
        result.map_err(|e| {
            self.poisoned = true;
            AuditError::io(&self.tree_path, e)
        })
    }

    fn file_len(&self) -> Result<u64> {
        let meta = self.writer.get_ref().metadata();
        Ok(meta.map_err(|e| AuditError::io(&self.tree_path, e))?.len())
    }

    fn corrupt(&self, byte: u64, reason: String) -> AuditError {
        AuditError::Corrupt {
            path: self.tree_path.clone(),
            byte,
            reason,
        }
    }

    /// Hash number `position`, from the file or from the write buffer.
    fn read_entry(&self, position: u64) -> Result<Hash> {
        let mut hash = [0u8; HASH_BYTES];
        self.read_entries(position, &mut hash)?;
        Ok(hash)
    }

    /// Hashes from number `position` on into `out` (whole hashes, all below
    /// `entries`), from the file and then from the write buffer.
    fn read_entries(&self, position: u64, out: &mut [u8]) -> Result<()> {
        // After a failed write, neither the file nor the write buffer is known to hold
        // what `entries` says.
        self.check_poisoned()?;
        let start = HEADER_BYTES + position * HASH_WIDTH;
        let buffered = self.writer.buffer();
        let flushed_end = (HEADER_BYTES + self.entries * HASH_WIDTH).saturating_sub(buffered.len() as u64);
        let from_file = (flushed_end.saturating_sub(start) as usize).min(out.len());
        if from_file > 0 {
            let read = self.writer.get_ref().read_exact_at(&mut out[..from_file], start);
            read.map_err(|e| AuditError::io(&self.tree_path, e))?;
        }
        if from_file < out.len() {
            let in_buffer = (start + from_file as u64).saturating_sub(flushed_end) as usize;
            let rest = out.len() - from_file;
            let Some(pending) = buffered.get(in_buffer..in_buffer + rest) else {
                return Err(self.corrupt(start, format!("hash {position} is neither in the file nor buffered")));
            };
            out[from_file..].copy_from_slice(pending);
        }
        Ok(())
    }
}

impl NodeSource for TreeFile {
    fn size(&self) -> u64 {
        self.frontier.size()
    }

    fn node(&self, level: u32, index: u64) -> Result<Hash> {
        let in_range =
            level <= TREE_HEIGHT_MAX as u32 && index < TREE_SIZE_MAX >> level && (index + 1) << level <= self.size();
        if !in_range {
            return Err(AuditError::IndexOutOfRange {
                index: index.saturating_mul(1u64 << level.min(63)),
                size: self.size(),
            });
        }
        self.read_entry(node_position(level, index))
    }
}

fn tree_header() -> [u8; HEADER_BYTES as usize] {
    let mut header = [0u8; HEADER_BYTES as usize];
    header[..8].copy_from_slice(&TREE_MAGIC);
    header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header[12..16].copy_from_slice(&(HASH_BYTES as u32).to_le_bytes());
    header
}

/// Opens the tree file in append mode, writing the header if the file is new
/// or its creation was torn before the header was complete (no hash can
/// exist then).
fn open_tree_file(dir: &Path, path: &Path) -> Result<File> {
    let io = |e| AuditError::io(path, e);
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    if len < HEADER_BYTES {
        file.set_len(0).map_err(io)?;
        (&file).write_all(&tree_header()).map_err(io)?;
        file.sync_data().map_err(io)?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| AuditError::io(dir, e))?;
        return Ok(file);
    }
    check_header(&file, path)?;
    Ok(file)
}

/// Checks the tree file's header (magic, version, hash width).
fn check_header(file: &File, path: &Path) -> Result<()> {
    let mut header = [0u8; HEADER_BYTES as usize];
    file.read_exact_at(&mut header, 0)
        .map_err(|e| AuditError::io(path, e))?;
    if header != tree_header() {
        return Err(AuditError::Corrupt {
            path: path.to_path_buf(),
            byte: 0,
            reason: "bad magic, version or hash width in header".into(),
        });
    }
    Ok(())
}

fn encode_sync_point(point: &SyncPoint) -> [u8; META_SLOT_BYTES] {
    let mut slot = [0u8; META_SLOT_BYTES];
    slot[..8].copy_from_slice(&META_MAGIC);
    slot[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    // bytes 12..16 reserved, zero
    slot[16..24].copy_from_slice(&point.seq.to_le_bytes());
    slot[24..32].copy_from_slice(&point.size.to_le_bytes());
    slot[32..64].copy_from_slice(&point.root);
    let crc = crc32fast::hash(&slot[..META_BODY_BYTES]);
    slot[META_BODY_BYTES..].copy_from_slice(&crc.to_le_bytes());
    slot
}

fn decode_sync_point(slot: &[u8; META_SLOT_BYTES]) -> Option<SyncPoint> {
    let crc = u32::from_le_bytes(slot[META_BODY_BYTES..].try_into().ok()?);
    let valid = crc == crc32fast::hash(&slot[..META_BODY_BYTES])
        && slot[..8] == META_MAGIC
        && slot[8..12] == FORMAT_VERSION.to_le_bytes()
        && slot[12..16] == [0; 4];
    let size = u64::from_le_bytes(slot[24..32].try_into().ok()?);
    if !valid || size > TREE_SIZE_MAX {
        return None;
    }
    Some(SyncPoint {
        seq: u64::from_le_bytes(slot[16..24].try_into().ok()?),
        size,
        root: slot[32..64].try_into().ok()?,
    })
}

/// Slot `seq % 2` holds sync point `seq`; slots alternate so a torn write
/// leaves the previous point intact.
fn write_sync_point(meta: &File, point: &SyncPoint) -> std::io::Result<()> {
    meta.write_all_at(&encode_sync_point(point), (point.seq % 2) * META_SLOT_STRIDE)
}

/// The valid slot with the highest sequence number, or the empty tree when
/// neither slot is valid (never synced, or both lost: re-feed everything).
fn read_sync_point(meta: &File) -> SyncPoint {
    (0..2)
        .filter_map(|slot| {
            let mut bytes = [0u8; META_SLOT_BYTES];
            meta.read_exact_at(&mut bytes, slot * META_SLOT_STRIDE).ok()?;
            decode_sync_point(&bytes)
        })
        .max_by_key(|p| p.seq)
        .unwrap_or_else(empty_point)
}

/// The sync point of a tree never synced.
fn empty_point() -> SyncPoint {
    SyncPoint {
        seq: 0,
        size: 0,
        root: crate::audit::merkle::empty_root(),
    }
}

#[cfg(test)]
#[path = "tree_file_tests.rs"]
mod tests;

#[path = "tree_check.rs"]
mod tree_check;
