//! The `trailkeep` binary: see `trailkeep --help`.

fn main() -> std::process::ExitCode {
    trailkeep::cli::main()
}
