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
    // one is fully written and fsync'd. Retention deletes sealed files with unlink, which
    // leaves existing mappings valid on Unix. Nobody else modifies files in a store.
    unsafe { Mmap::map(file) }
}
