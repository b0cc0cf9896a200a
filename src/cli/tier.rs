//! `trailkeep tier`: status, upload now, restore from a bucket.

use std::io::Write;
use std::path::Path;

use crate::cli::{open_existing_store, parse_duration_ms, require_store, stdout_err, CliError};
use crate::tier::{PersistedConfig, TierConfig};
use crate::Store;

/// Arguments of `tier`.
#[derive(clap::Args, Debug)]
pub struct TierArgs {
    #[command(subcommand)]
    action: TierAction,
}

/// Where the bucket is (flags or environment; credentials only from the environment:
/// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN).
#[derive(clap::Args, Debug, Clone)]
struct RemoteArgs {
    /// Endpoint of an S3-compatible service, e.g. http://127.0.0.1:9000 (plain http only
    /// for loopback hosts) [default: AWS]
    #[arg(long, env = "TRAILKEEP_TIER_ENDPOINT")]
    endpoint: Option<String>,
    /// Region [default: us-east-1]
    #[arg(long, env = "AWS_REGION")]
    region: Option<String>,
}

#[derive(clap::Subcommand, Debug)]
enum TierAction {
    /// Pending uploads and bytes, evicted segments, bytes in the bucket, the last error.
    Status {
        /// One JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Upload, verify and evict now (one pass), then print the status.
    Upload {
        /// Run the pass now, in this process.
        #[arg(long)]
        now: bool,
        /// Bucket prefix: s3://bucket/prefix or file:///path [default: the store's saved
        /// tier settings]
        #[arg(long, env = "TRAILKEEP_TIER_URL")]
        to: Option<String>,
        #[command(flatten)]
        remote: RemoteArgs,
        /// Evict uploaded segments, oldest first, while local segment bytes exceed this.
        #[arg(long)]
        local_bytes_max: Option<u64>,
        /// Evict uploaded segments whose newest record is older than this (e.g. 7d, 12h).
        #[arg(long)]
        local_age_max: Option<String>,
    },
    /// Rebuild a store in the (empty) --dir from a bucket prefix alone.
    Restore {
        /// Bucket prefix: s3://bucket/prefix or file:///path
        #[arg(long)]
        from: String,
        #[command(flatten)]
        remote: RemoteArgs,
        /// Download every segment now (verified) instead of on first read.
        #[arg(long)]
        download: bool,
        /// The store's checkpoint signing key, kept apart (it is never uploaded): installed
        /// as `<dir>/keys/checkpoint.key` so stored checkpoints verify and new ones continue.
        #[arg(long)]
        signing_key: Option<std::path::PathBuf>,
    },
}

fn remote_config(url: String, remote: &RemoteArgs) -> TierConfig {
    let mut config = TierConfig::url(url);
    config.endpoint = remote
        .endpoint
        .clone()
        .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok());
    config.region = remote.region.clone();
    config
}

/// Runs `tier`.
///
/// # Errors
/// Engine and object store errors.
pub fn run(dir: &Path, args: TierArgs) -> Result<(), CliError> {
    match args.action {
        TierAction::Status { json } => {
            let store = open_existing_store(dir)?;
            print_status(&store.tier_status()?, json)
        }
        TierAction::Upload {
            now,
            to,
            remote,
            local_bytes_max,
            local_age_max,
        } => {
            if !now {
                return Err(CliError::Usage(
                    "use `tier upload --now`: background uploads run in the process that opens the store with tiering"
                        .into(),
                ));
            }
            require_store(dir)?;
            let mut config = upload_config(dir, to, &remote)?;
            if let Some(bytes) = local_bytes_max {
                config.local_bytes_max = Some(bytes);
            }
            if let Some(age) = local_age_max {
                config.local_age_max_ms = Some(parse_duration_ms(&age).map_err(CliError::Usage)?);
            }
            upload_now(dir, config)
        }
        TierAction::Restore {
            from,
            remote,
            download,
            signing_key,
        } => restore(dir, &remote_config(from, &remote), download, signing_key.as_deref()),
    }
}

/// The remote of `tier upload`: `--to` if given, else the store's saved settings (with
/// `--endpoint` and `--region`, or their environment variables, overriding theirs).
fn upload_config(dir: &Path, to: Option<String>, remote: &RemoteArgs) -> Result<TierConfig, CliError> {
    let saved = PersistedConfig::load(dir)?;
    match (to, &saved) {
        (Some(url), _) => Ok(remote_config(url, remote)),
        (None, Some(saved)) => {
            let mut c = saved.to_config();
            if remote.endpoint.is_some() {
                c.endpoint = remote.endpoint.clone();
            }
            if remote.region.is_some() {
                c.region = remote.region.clone();
            }
            Ok(c)
        }
        (None, None) => Err(CliError::Usage(format!(
            "{} has no tier settings yet: pass --to s3://bucket/prefix (or file:///path)",
            dir.display()
        ))),
    }
}

/// One upload, verify and evict pass in this process, then the status.
fn upload_now(dir: &Path, config: TierConfig) -> Result<(), CliError> {
    let remote = config.remote_url().to_owned();
    let store = Store::builder(dir)
        .create_if_missing(false)
        .tiering(config.background(false))
        .open()?;
    let tier = store
        .tier()
        .ok_or_else(|| CliError::Usage("tiering did not start".into()))?;
    let spinner = super::progress::spinner(format!("uploading to {remote}"));
    let result = tier.upload_now();
    spinner.finish_and_clear();
    if let Ok(report) = &result {
        note!(
            "uploaded {} segment(s) ({} bytes), evicted {}, deleted {} remote segment(s)",
            report.uploaded.len(),
            report.uploaded_bytes,
            report.evicted.len(),
            report.deleted_remote.len()
        );
    }
    print_status(&store.tier_status()?, false)?;
    result.map(|_| ()).map_err(CliError::from)
}

/// Rebuilds a store in `dir` from the bucket, and says what it restored and what is missing.
fn restore(dir: &Path, config: &TierConfig, download: bool, signing_key: Option<&Path>) -> Result<(), CliError> {
    let report = crate::tier::restore(dir, config, download)?;
    if let Some(key) = signing_key {
        crate::tier::install_signing_key(dir, key)?;
    }
    for (topic, kept, dropped) in &report.checkpoints {
        note!("restored topic {topic}: {kept} stored checkpoint(s)");
        if *dropped > 0 {
            note!(
                "warning: topic {topic}: {dropped} checkpoint(s) cover records that never reached the bucket; \
                 set aside in checkpoints.unrestored.log"
            );
        }
    }
    if signing_key.is_none() && report.checkpoints.iter().any(|c| c.1 > 0) {
        note!(
            "note: copy the old store's keys/checkpoint.key into {}/keys/ (or pass --signing-key) \
             before opening the store; without it the stored checkpoints do not verify",
            dir.display()
        );
    }
    for (topic, segments, end) in &report.topics {
        note!("restored topic {topic}: {segments} segment(s), offsets up to {end}");
    }
    for (topic, from, to) in &report.gaps {
        note!("warning: topic {topic}: offsets {from}..{to} never reached the bucket and are missing");
    }
    if download {
        note!("downloaded {} bytes", report.downloaded_bytes);
    }
    Ok(())
}

fn print_status(s: &crate::tier::TierStatus, json: bool) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    if json {
        let text = serde_json::to_string(s).map_err(|e| CliError::Usage(format!("tier status as JSON: {e}")))?;
        return writeln!(out, "{text}").map_err(stdout_err);
    }
    let remote = s.remote.as_deref().unwrap_or("(not configured)");
    writeln!(out, "remote: {remote}").map_err(stdout_err)?;
    print_topics(&mut out, s)
}

/// The per-topic table and the last error.
fn print_topics(out: &mut impl Write, s: &crate::tier::TierStatus) -> Result<(), CliError> {
    writeln!(
        out,
        "{:<32} {:>8} {:>14} {:>9} {:>8} {:>14} {:>9}  last error",
        "topic", "pending", "pending bytes", "uploaded", "evicted", "remote bytes", "deleting"
    )
    .map_err(stdout_err)?;
    for t in &s.topics {
        writeln!(
            out,
            "{:<32} {:>8} {:>14} {:>9} {:>8} {:>14} {:>9}  {}",
            t.topic,
            t.pending_segments,
            t.pending_bytes,
            t.uploaded_segments,
            t.evicted_segments,
            t.remote_bytes,
            t.deleting_segments,
            t.last_error.as_deref().unwrap_or("-")
        )
        .map_err(stdout_err)?;
    }
    match &s.last_error {
        Some(e) => writeln!(
            out,
            "last error ({} failed pass(es) in a row): {e}",
            s.consecutive_failures
        ),
        None => writeln!(out, "last error: none"),
    }
    .map_err(stdout_err)
}

/// The tiering part of `trailkeep stats`: per topic pending uploads, pending bytes and
/// the last error, when the store has tier settings; nothing otherwise.
///
/// # Errors
/// I/O errors reading the manifests.
pub fn print_stats(out: &mut impl Write, store: &Store) -> Result<(), CliError> {
    if PersistedConfig::load(store.dir())?.is_none() {
        return Ok(());
    }
    let s = store.tier_status()?;
    let remote = s.remote.as_deref().unwrap_or("?");
    writeln!(out, "\ntiering to {remote}").map_err(stdout_err)?;
    print_topics(out, &s)
}
