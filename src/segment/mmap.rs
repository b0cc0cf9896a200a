//! The crate's only `unsafe`: mapping sealed segment files read-only.
#![allow(unsafe_code)]

use std::fs::File;

use memmap2::Mmap;

/// Maps a sealed segment file read-only.
///
/// Callers must pass only *sealed* segments: files that no process writes, truncates or
/// renames again (see ARCHITECTURE.md, "Why mapping sealed segments is sound").
pub(crate) fn map_sealed(file: &File) -> std::io::Result<Mmap> {
    // SAFETY: the file is a sealed segment. trailkeep's writer appends only to the active
    // (newest) segment and truncates only the active segment during recovery; a segment is
    // sealed once a newer segment file exists, which the writer creates only after the old
    // one is fully written (its fdatasync may follow on the seal thread, and the release of
    // its preallocated blocks sets the length it already has: neither changes a mapped
    // byte). The appender maps a segment it just rolled at once (`SealedSegment::just_sealed`).
    // Retention deletes sealed files with unlink, which leaves existing mappings valid on
    // Unix. Nobody else modifies files in a store.
    unsafe { Mmap::map(file) }
}

/// Maps a framed (trusted) index file of a sealed segment read-only.
///
/// Callers must pass only index files that start with the framed header (FORMAT.md,
/// "Index file header"): those are written only by an atomic replace (temp file, fsync,
/// rename) and never opened for writing again.
pub(crate) fn map_index(file: &File) -> std::io::Result<Mmap> {
    // SAFETY: a framed index file is created complete under a temporary name and renamed
    // into place (`fsutil::write_atomic`); nothing writes, truncates or extends it after
    // that. A later rewrite (a rebuild after a failed check) renames a new file over the
    // name, which leaves this mapping on the old, unchanged inode; retention unlinks it,
    // which leaves the mapping valid on Unix. The active segment's index files, which are
    // appended and truncated in place, are legacy (headerless) and are never mapped.
    unsafe { Mmap::map(file) }
}
