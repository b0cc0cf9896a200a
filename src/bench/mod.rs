//! `trailkeep bench`: trailkeep side by side with SQLite and a JSON-lines file.

use crate::cli::CliError;

/// Arguments of `bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// A small, fast run that exercises every workload (for CI; not for judging speed).
    #[arg(long)]
    pub quick: bool,
}

/// Runs the benchmark.
///
/// # Errors
/// I/O or engine errors.
pub fn run(_args: BenchArgs) -> Result<(), CliError> {
    Err(CliError::Usage("bench is being built".into()))
}
