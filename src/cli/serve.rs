//! `trailkeep serve`: the Kafka wire protocol on a store (see `docs/server.md`).

use std::net::SocketAddr;
use std::path::Path;

use clap::Args;

use super::{open_store, CliError};
use crate::server::{Server, ServerConfig};
use crate::Durability;

/// Arguments of `serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free one; the log says which).
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub listen: SocketAddr,
    /// host:port announced to clients in Metadata [default: the address bound]
    #[arg(long)]
    pub advertise: Option<String>,
    /// Do not create topics on Produce or Metadata; only CreateTopics (or `topics create`) does.
    #[arg(long)]
    pub no_auto_create: bool,
}

pub(crate) fn run(dir: &Path, args: ServeArgs) -> Result<(), CliError> {
    let advertised = match &args.advertise {
        None => None,
        Some(text) => {
            let (host, port) = text
                .rsplit_once(':')
                .and_then(|(h, p)| Some((h.to_owned(), p.parse::<u16>().ok()?)))
                .ok_or_else(|| CliError::Usage(format!("--advertise {text}: expected host:port")))?;
            Some((host, port))
        }
    };
    let store = open_store(dir, Durability::Always)?;
    let config = ServerConfig {
        listen: args.listen,
        advertised,
        auto_create_topics: !args.no_auto_create,
    };
    let server = Server::bind(store, config).map_err(server_err)?;
    let addr = server
        .local_addr()
        .map_err(super::io_err("reading the bound address"))?;
    // The one line scripts wait for (stderr, so stdout stays free).
    eprintln!(
        "trailkeep serving the Kafka protocol on {addr} (store {})",
        dir.display()
    );
    tracing::info!(%addr, "listening");
    server.run(shutdown_signal()).map_err(server_err)?;
    eprintln!("trailkeep serve: stopped, store closed");
    Ok(())
}

pub(crate) fn server_err(e: crate::server::ServerError) -> CliError {
    match e {
        crate::server::ServerError::Store(e) => CliError::Store(e),
        other => CliError::Usage(other.to_string()),
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!("cannot watch SIGTERM ({e}); stopping on Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
