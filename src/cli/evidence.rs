//! `trailkeep verify`, `checkpoint` and `prove`.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use crate::audit::NoteVerifier;
use crate::cli::{io_err, open_existing_store, print_text, stdout_err, CliError};
use crate::Offset;

/// Arguments of `verify`.
#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// Topic to verify; every topic when absent.
    pub topic: Option<String>,
    /// A signed checkpoint kept outside the store: the store must contain its tree.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// The verifier key (vkey text or a file holding it) for --checkpoint [default: the store's key]
    #[arg(long)]
    pub key: Option<String>,
}

/// Arguments of `checkpoint`.
#[derive(clap::Args, Debug)]
pub struct CheckpointArgs {
    /// The topic.
    pub topic: String,
    /// Print the newest stored checkpoint instead of signing a new one.
    #[arg(long)]
    pub latest: bool,
    /// Print the store's public key (vkey form) instead.
    #[arg(long)]
    pub vkey: bool,
}

/// Arguments of `prove`.
#[derive(clap::Args, Debug)]
pub struct ProveArgs {
    /// The topic.
    pub topic: String,
    /// The record's offset (inclusion proof).
    #[arg(required_unless_present = "consistency")]
    pub offset: Option<u64>,
    /// Prove the tree of this older size is a prefix of the current one.
    #[arg(long, conflicts_with = "offset")]
    pub consistency: Option<u64>,
}

fn read_vkey(text: &str) -> Result<NoteVerifier, CliError> {
    let text = if Path::new(text).is_file() {
        std::fs::read_to_string(text).map_err(io_err(format!("reading key file {text}")))?
    } else {
        text.to_owned()
    };
    NoteVerifier::parse(text.trim()).map_err(|e| CliError::Usage(format!("--key: {e}")))
}

/// Runs `verify`.
///
/// # Errors
/// The first thing that does not verify, with its topic, offset or file.
pub fn verify(dir: &Path, args: VerifyArgs) -> Result<(), CliError> {
    let store = open_existing_store(dir)?;
    let names = match &args.topic {
        Some(t) => vec![t.clone()],
        None => store.topic_names()?,
    };
    let external = match &args.checkpoint {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(io_err(format!("reading {}", path.display())))?;
            let verifier = match &args.key {
                Some(k) => read_vkey(k)?,
                None => read_vkey(&store.verifier_key()?)?,
            };
            Some((text, verifier))
        }
        None => None,
    };
    let mut out = std::io::stdout().lock();
    for name in names {
        let topic = store.topic(&name)?;
        let bar = if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new(topic.end_offset().0 - topic.start_offset().0);
            bar.set_message(format!("verifying {name}"));
            bar
        } else {
            indicatif::ProgressBar::hidden()
        };
        // Without a topic, a kept checkpoint applies to the topic its origin names.
        let applies = args.topic.is_some()
            || external
                .as_ref()
                .is_some_and(|(t, v)| origin_topic(t, v) == Some(name.clone()));
        let external = external.as_ref().filter(|_| applies).map(|(t, v)| (t.as_str(), v));
        let report = topic.verify(external, &mut |n| bar.set_position(n))?;
        bar.finish_and_clear();
        let hex: String = report.root.iter().map(|b| format!("{b:02x}")).collect();
        let ext = report
            .external_size
            .map(|s| format!(", external checkpoint of size {s} ok"))
            .unwrap_or_default();
        writeln!(
            out,
            "ok {name}: {} records from offset {} (checksums, leaves), tree size {}, root {hex}, {} stored checkpoints{ext}",
            report.records, report.start_offset, report.tree_size, report.checkpoints
        )
        .map_err(stdout_err)?;
    }
    store.close()?;
    Ok(())
}

/// Runs `checkpoint`.
///
/// # Errors
/// Engine errors.
pub fn checkpoint(dir: &Path, args: CheckpointArgs) -> Result<(), CliError> {
    let store = open_existing_store(dir)?;
    if args.vkey {
        return print_text(&format!("{}\n", store.verifier_key()?));
    }
    let topic = store.topic(&args.topic)?;
    let text = if args.latest {
        topic
            .latest_checkpoint()?
            .ok_or_else(|| CliError::Usage(format!("topic {} has no checkpoint yet", args.topic)))?
    } else {
        topic.checkpoint()?
    };
    let printed = print_text(&text);
    store.close()?;
    printed
}

/// Runs `prove`.
///
/// # Errors
/// Engine errors (an offset not held, another appender holding the topic).
pub fn prove(dir: &Path, args: ProveArgs) -> Result<(), CliError> {
    let store = open_existing_store(dir)?;
    let topic = store.topic(&args.topic)?;
    let text = match (args.offset, args.consistency) {
        (_, Some(old)) => topic.prove_consistency(old)?,
        (Some(offset), None) => topic.prove(Offset(offset))?,
        (None, None) => return Err(CliError::Usage("give an offset or --consistency OLD_SIZE".into())),
    };
    let printed = print_text(&text);
    store.close()?;
    printed
}

/// The topic named by a checkpoint's origin line (`trailkeep/<store-id>/<topic>`).
fn origin_topic(text: &str, verifier: &NoteVerifier) -> Option<String> {
    let checkpoint = crate::audit::Checkpoint::parse_and_verify(text, verifier).ok()?;
    checkpoint.origin.rsplit('/').next().map(str::to_owned)
}
