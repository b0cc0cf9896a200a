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
    // Before the line that says it is ready: a SIGTERM sent at once must find the handler.
    let shutdown = shutdown_signal(&server.runtime_handle());
    // The one line scripts wait for (stderr, so stdout stays free).
    note!(
        "trailkeep serving the Kafka protocol on {addr} (store {})",
        dir.display()
    );
    tracing::info!(%addr, "listening");
    server.run(shutdown).map_err(server_err)?;
    note!("trailkeep serve: stopped, store closed");
    Ok(())
}

pub(crate) fn server_err(e: crate::server::ServerError) -> CliError {
    match e {
        crate::server::ServerError::Store(e) => CliError::Store(e),
        other => CliError::Usage(other.to_string()),
    }
}

/// A future that resolves on Ctrl-C or SIGTERM. The handlers are installed before this
/// returns (in `runtime`'s context), not when the future is first polled: a process that
/// has said it is ready and is sent SIGTERM at once must stop cleanly, not die of the
/// signal's default action (the serve tests saw that under load).
pub(crate) fn shutdown_signal(runtime: &tokio::runtime::Handle) -> ShutdownSignal {
    let _entered = runtime.enter();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            (Ok(mut term), Ok(mut interrupt)) => Box::pin(async move {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = interrupt.recv() => {}
                }
            }),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!("cannot watch SIGTERM ({e}); stopping on Ctrl-C only");
                Box::pin(async {
                    let _ = tokio::signal::ctrl_c().await;
                })
            }
        }
    }
    #[cfg(not(unix))]
    {
        Box::pin(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}

/// See [`shutdown_signal`].
pub(crate) type ShutdownSignal = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;
