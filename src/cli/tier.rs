//! `trailkeep tier`: status, upload now, restore from a bucket.

use std::path::Path;

use crate::cli::CliError;

/// Arguments of `tier`.
#[derive(clap::Args, Debug)]
pub struct TierArgs {}

/// Runs `tier`.
///
/// # Errors
/// Engine and object store errors.
pub fn run(_dir: &Path, _args: TierArgs) -> Result<(), CliError> {
    Err(CliError::Usage("tier is being built".into()))
}
