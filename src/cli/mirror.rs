//! `trailkeep mirror`: forward topics into a Kafka-compatible cluster (see `docs/server.md`).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::Args;

use super::CliError;
use crate::mirror::{MirrorConfig, MirrorError};
use crate::Durability;

/// Arguments of `mirror`.
#[derive(Args, Debug)]
pub struct MirrorArgs {
    /// Local topics to forward.
    #[arg(required = true)]
    pub topics: Vec<String>,
    /// host:port of a broker of the remote cluster.
    #[arg(long)]
    pub to: String,
    /// Remote topic name (one local topic only) [default: the local name]
    #[arg(long)]
    pub remote_topic: Option<String>,
    /// Consumer group holding each topic's position [default: `mirror.<remote topic>`]
    #[arg(long)]
    pub group: Option<String>,
    /// Fail instead of creating a missing remote topic.
    #[arg(long)]
    pub no_create_remote_topic: bool,
    /// Exit once everything appended so far is mirrored, instead of following.
    #[arg(long)]
    pub until_caught_up: bool,
}

pub(crate) fn run(dir: &Path, args: MirrorArgs) -> Result<(), CliError> {
    if args.topics.len() > 1 && (args.remote_topic.is_some() || args.group.is_some()) {
        return Err(CliError::Usage(
            "--remote-topic and --group name one topic's mirror: give one local topic with them".into(),
        ));
    }
    let configs: Vec<MirrorConfig> = args
        .topics
        .iter()
        .map(|topic| MirrorConfig {
            remote_topic: args.remote_topic.clone(),
            group: args.group.clone(),
            create_remote_topic: !args.no_create_remote_topic,
            until_caught_up: args.until_caught_up,
            ..MirrorConfig::new(topic.clone(), args.to.clone())
        })
        .collect();
    // Mirroring reads topics that must exist: a mistyped --dir creates no store.
    super::require_store(dir)?;
    let store = crate::Store::builder(dir)
        .durability(Durability::Always)
        .create_if_missing(false)
        .open()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(super::io_err("starting the signal watcher"))?;
    // Before the lines that say it runs: a SIGTERM sent at once must find the handler.
    let shutdown = super::serve::shutdown_signal(runtime.handle());
    for config in &configs {
        note!(
            "trailkeep mirroring {} to {} topic {} (group {})",
            config.topic,
            config.to,
            config.remote_topic(),
            config.group()
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    let watcher_stop = Arc::clone(&stop);
    let mirrored = std::thread::scope(|scope| {
        let worker = scope.spawn(|| {
            let result = crate::mirror::run_all(&store, &configs, Arc::clone(&stop));
            stop.store(true, Ordering::Relaxed);
            result
        });
        runtime.block_on(async {
            tokio::select! {
                () = shutdown => {
                    note!("trailkeep mirror: stopping (the cursor stays at the last acknowledged record)");
                    watcher_stop.store(true, Ordering::Relaxed);
                }
                () = async {
                    while !watcher_stop.load(Ordering::Relaxed) {
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                } => {}
            }
        });
        worker
            .join()
            .unwrap_or_else(|_| Err(MirrorError::Remote("the mirror thread panicked".into())))
    });
    let mirrored = mirrored.map_err(|e| match e {
        MirrorError::Store(e) => CliError::Store(e),
        other => CliError::Usage(other.to_string()),
    })?;
    store.close()?;
    note!("trailkeep mirror: {mirrored} records acknowledged by {}", args.to);
    Ok(())
}
