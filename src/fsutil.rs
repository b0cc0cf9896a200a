//! Small file-system steps shared by every module that writes files.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::thread::JoinHandle;

use crate::error::IoContext;
use crate::Result;

/// Suffix of temporary files; any left behind by a crash are deleted on open.
pub const TMP_SUFFIX: &str = ".tmp";

/// Directories of temporary stores, whose files need not survive a crash: syncing them
/// only costs time (a test store must open in well under a millisecond).
static VOLATILE_ROOTS: parking_lot::RwLock<Vec<std::path::PathBuf>> = parking_lot::RwLock::new(Vec::new());

/// Marks `root` (a temporary store) as not needing fsync; undone by [`forget_volatile`].
pub fn register_volatile(root: &Path) {
    VOLATILE_ROOTS.write().push(root.to_path_buf());
}

/// Undoes [`register_volatile`].
pub fn forget_volatile(root: &Path) {
    VOLATILE_ROOTS.write().retain(|r| r != root);
}

/// True when `path` lies in a temporary store.
pub fn is_volatile(path: &Path) -> bool {
    let roots = VOLATILE_ROOTS.read();
    !roots.is_empty() && roots.iter().any(|r| path.starts_with(r))
}

/// fsyncs a directory so that creations, renames and deletions in it are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    if is_volatile(dir) {
        return Ok(());
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .context(|| format!("syncing directory {}", dir.display()))
}

/// Writes `bytes` to the temp file `tmp` of `path` (created with permissions `mode`,
/// before the umask) and fdatasyncs it (not on a volatile file system, see
/// [`is_volatile`]).
fn write_temp(tmp: &Path, path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(tmp)
        .context(|| format!("creating {}", tmp.display()))?;
    file.write_all(bytes)
        .and_then(|()| if is_volatile(path) { Ok(()) } else { file.sync_data() })
        .context(|| format!("writing {}", tmp.display()))
}

/// Creates `path` with `bytes` unless it exists, atomically: a temp file of this call's
/// own (so concurrent creators never share one), fsync, hard link to `path` (which fails
/// when `path` exists: exactly one creator wins), directory fsync. Returns false when
/// `path` existed; nothing is changed then.
pub fn create_atomic(path: &Path, bytes: &[u8]) -> Result<bool> {
    create_atomic_mode(path, bytes, FILE_MODE)
}

/// As [`create_atomic`], readable and writable by the owner only (a secret).
pub fn create_atomic_private(path: &Path, bytes: &[u8]) -> Result<bool> {
    create_atomic_mode(path, bytes, 0o600)
}

/// Permissions of new files before the umask (as `open(2)` by default).
const FILE_MODE: u32 = 0o666;

fn create_atomic_mode(path: &Path, bytes: &[u8], mode: u32) -> Result<bool> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.{n}{TMP_SUFFIX}", std::process::id()));
    let tmp = Path::new(&tmp);
    let linked = write_temp(tmp, path, bytes, mode).and_then(|()| match fs::hard_link(tmp, path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e).context(|| format!("linking {} to {}", tmp.display(), path.display())),
    });
    let removed = fs::remove_file(tmp).context(|| format!("removing {}", tmp.display()));
    let created = linked?;
    removed?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(created)
}

/// Replaces `path` with `bytes` atomically: temp file, fsync, rename, directory fsync.
/// A crash leaves either the old content or the new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(TMP_SUFFIX);
    let tmp = Path::new(&tmp);
    write_temp(tmp, path, bytes, FILE_MODE)?;
    fs::rename(tmp, path).context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    crate::failpoint::hit("write_atomic.after_rename");
    Ok(())
}

/// `flock(LOCK_EX | LOCK_NB)` on `file`, retried for up to ~100 ms while it would block.
///
/// A lock released by closing its file can stay held for a moment by a child process
/// another thread is spawning: between fork and exec the child shares the open file
/// description (close-on-exec only drops it at exec). A holder that really holds the lock
/// still gets `WouldBlock` after the retries.
pub fn try_lock_briefly(file: &std::fs::File) -> std::result::Result<(), std::fs::TryLockError> {
    let mut delay = std::time::Duration::from_millis(1);
    for _ in 0..8 {
        match file.try_lock() {
            Err(std::fs::TryLockError::WouldBlock) => std::thread::sleep(delay),
            other => return other,
        }
        delay = (delay * 2).min(std::time::Duration::from_millis(25));
    }
    file.try_lock()
}

/// Starts writeback of ranges of one file on a thread of its own, so the caller never
/// waits for it. Starting writeback (`POSIX_FADV_DONTNEED` on dirty pages) submits the
/// I/O in the calling thread, and the block layer throttles such background writeback
/// while the device is busy: seen here, one call blocked 62 ms in `wbt_wait` while a
/// sealed segment was being synced, and the tree thread stopped hashing for as long.
///
/// Ranges handed over while the thread is busy are merged into one call. Dropping the
/// kicker waits for the call in progress and the queued ones (merged into one), so no
/// thread goes on using the file.
#[derive(Debug)]
pub struct WritebackKicker {
    path: PathBuf,
    thread: Option<KickThread>,
}

/// The kicker's thread and the sender of ranges (`from`, `len`) to it.
type KickThread = (Sender<(u64, u64)>, JoinHandle<()>);

impl WritebackKicker {
    /// A kicker for the file at `path` (named in logs); its thread starts on the first
    /// kick, with a handle of its own.
    pub fn new(path: &Path) -> WritebackKicker {
        WritebackKicker {
            path: path.to_path_buf(),
            thread: None,
        }
    }

    /// Starts writeback of `len` bytes at `from` of `file` (the file at the kicker's
    /// path) without waiting. Advice only: a failure is logged at debug level and changes
    /// nothing a later sync does not do anyway.
    pub fn kick(&mut self, file: &File, from: u64, len: u64) {
        if len == 0 {
            return;
        }
        if self.thread.is_none() {
            self.thread = self.start(file);
        }
        match &self.thread {
            Some((tx, _)) if tx.send((from, len)).is_ok() => {}
            // No thread (it could not start): kick here.
            _ => start_writeback(file, &self.path, from, len),
        }
    }

    /// The thread kicks run on, once one started.
    #[cfg(test)]
    pub fn thread(&self) -> Option<&std::thread::Thread> {
        self.thread.as_ref().map(|(_, handle)| handle.thread())
    }

    fn start(&self, file: &File) -> Option<KickThread> {
        let own = match file.try_clone() {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(path = %self.path.display(), error = %e, "no second handle for writeback");
                return None;
            }
        };
        let (tx, rx) = std::sync::mpsc::channel::<(u64, u64)>();
        let path = self.path.clone();
        let spawned = std::thread::Builder::new()
            .name("trailkeep-writeback".into())
            .spawn(move || {
                while let Ok((mut from, len)) = rx.recv() {
                    let mut end = from + len;
                    while let Ok((f, l)) = rx.try_recv() {
                        from = from.min(f);
                        end = end.max(f + l);
                    }
                    start_writeback(&own, &path, from, end - from);
                }
            });
        match spawned {
            Ok(handle) => Some((tx, handle)),
            Err(e) => {
                tracing::debug!(path = %self.path.display(), error = %e, "no writeback thread; kicking inline");
                None
            }
        }
    }
}

impl Drop for WritebackKicker {
    fn drop(&mut self) {
        if let Some((tx, handle)) = self.thread.take() {
            drop(tx);
            if handle.join().is_err() {
                tracing::error!(path = %self.path.display(), "the writeback thread panicked");
            }
        }
    }
}

fn start_writeback(file: &File, path: &Path, from: u64, len: u64) {
    let Some(len) = std::num::NonZeroU64::new(len) else {
        return;
    };
    if let Err(e) = rustix::fs::fadvise(file, from, Some(len), rustix::fs::Advice::DontNeed) {
        tracing::debug!(path = %path.display(), error = %e, "writeback advice failed");
    }
}
