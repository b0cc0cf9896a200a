//! `trailkeep verify`, `checkpoint` and `prove`.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::audit::NoteVerifier;
use crate::cli::{io_err, open_existing_store, print_text, stdout_err, CliError};
use crate::{Offset, Store};

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
/// The first thing that does not verify, with its topic, offset or file; a `--checkpoint`
/// that is malformed, not signed by the key, or for no topic of this store.
pub fn verify(dir: &Path, args: VerifyArgs) -> Result<(), CliError> {
    let store = open_existing_store(dir)?;
    let external = match &args.checkpoint {
        Some(path) => Some(ExternalCheckpoint::read(&store, path, args.key.as_deref())?),
        None => None,
    };
    let names = match &args.topic {
        Some(t) => vec![t.clone()],
        None => store.topic_names()?,
    };
    if let (None, Some(ext)) = (&args.topic, &external) {
        ext.check_topic_exists(&store, &names)?;
    }
    let mut out = std::io::stdout().lock();
    for name in names {
        let topic = store.topic(&name)?;
        let bar = super::progress::records_bar(
            topic.end_offset().0 - topic.start_offset().0,
            format!("verifying {name}"),
        );
        // Without a topic, a kept checkpoint applies to the topic its origin names.
        let external = external
            .as_ref()
            .filter(|e| args.topic.is_some() || e.topic == name)
            .map(|e| (e.text.as_str(), &e.verifier));
        let report = topic.verify(external, &mut |n| bar.set_position(n))?;
        bar.finish_and_clear();
        let hex: String = report.root.iter().map(|b| format!("{b:02x}")).collect();
        let mut ext = report
            .external_size
            .map(|s| format!(", external checkpoint of size {s} ok"))
            .unwrap_or_default();
        if report.unhashed > 0 || report.newer_checkpoints > 0 {
            ext.push_str(&format!(
                "; not checked: {} newer record(s) and {} newer checkpoint(s), past the tree the appending process last synced",
                report.unhashed, report.newer_checkpoints
            ));
        }
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

/// `verify --checkpoint FILE`: the note, read and its signature checked before any topic
/// is verified, so that a checkpoint that cannot apply is never silently passed over.
struct ExternalCheckpoint {
    path: PathBuf,
    text: String,
    verifier: NoteVerifier,
    /// The origin line: `trailkeep/<store-id>/<topic>`.
    origin: String,
    /// The topic the origin names.
    topic: String,
    size: u64,
}

impl ExternalCheckpoint {
    fn read(store: &Store, path: &Path, key: Option<&str>) -> Result<ExternalCheckpoint, CliError> {
        let text = std::fs::read_to_string(path).map_err(io_err(format!("reading {}", path.display())))?;
        let verifier = match key {
            Some(k) => read_vkey(k)?,
            None => read_vkey(&store.verifier_key()?)?,
        };
        let checkpoint = crate::audit::Checkpoint::parse_and_verify(&text, &verifier)
            .map_err(|e| CliError::Usage(format!("--checkpoint {}: {e}", path.display())))?;
        let topic = checkpoint.origin.rsplit('/').next().unwrap_or_default().to_owned();
        Ok(ExternalCheckpoint {
            path: path.to_owned(),
            text,
            verifier,
            topic,
            origin: checkpoint.origin,
            size: checkpoint.size,
        })
    }

    /// Without a topic argument: the topic the checkpoint names must be among `names`.
    /// One this store signed for but no longer has was removed (tamper evidence); any
    /// other is the checkpoint of another store.
    fn check_topic_exists(&self, store: &Store, names: &[String]) -> Result<(), CliError> {
        if names.contains(&self.topic) {
            return Ok(());
        }
        let store_id = store.store_id()?;
        if self.origin == format!("trailkeep/{store_id}/{}", self.topic) {
            return Err(crate::Error::Tamper {
                topic: self.topic.clone(),
                offset: None,
                reason: format!(
                    "{} is this store's signed checkpoint of {} records of the topic, but the store has no such topic: it was removed",
                    self.path.display(),
                    self.size
                ),
            }
            .into());
        }
        Err(CliError::Usage(format!(
            "--checkpoint {} is the checkpoint of {:?}, not of a topic of this store (trailkeep/{store_id}/...)",
            self.path.display(),
            self.origin,
        )))
    }
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
        topic.checkpoint().map_err(|e| {
            if lock_unavailable(&e) {
                CliError::Usage(format!(
                    "{e}: signing a checkpoint needs the topic's append lock; `checkpoint {} --latest` prints the newest stored one",
                    args.topic
                ))
            } else {
                e.into()
            }
        })?
    };
    let printed = print_text(&text);
    store.close()?;
    printed
}

/// Whether `e` says the append lock could not be taken: another process holds it, or the
/// store cannot be written (read-only media or modes).
fn lock_unavailable(e: &crate::Error) -> bool {
    match e {
        crate::Error::Locked { .. } => true,
        crate::Error::Io { source, .. } => crate::topic::read_only_media(source),
        _ => false,
    }
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
