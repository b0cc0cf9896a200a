//! Small file-system steps shared by every module that writes files.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

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

/// Replaces `path` with `bytes` atomically: temp file, fsync, rename, directory fsync.
/// A crash leaves either the old content or the new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(TMP_SUFFIX);
    let tmp = Path::new(&tmp);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(tmp)
        .context(|| format!("creating {}", tmp.display()))?;
    let volatile = is_volatile(path);
    file.write_all(bytes)
        .and_then(|()| if volatile { Ok(()) } else { file.sync_data() })
        .context(|| format!("writing {}", tmp.display()))?;
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
