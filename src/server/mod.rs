//! Server mode: the Kafka wire protocol on top of a store, so existing Kafka clients can
//! produce to and consume from trailkeep topics (`trailkeep serve`).
//!
//! Every trailkeep topic is a Kafka topic with exactly one partition (0); Kafka offsets are
//! trailkeep offsets; keys, headers and values map one to one; a record's Kafka timestamp
//! is its append time and the producer's timestamp is kept as the record's event time.
//! Consumer-group offsets are trailkeep's durable group cursors. See `docs/server.md` for
//! the API/version table and the exact semantics.
//!
//! **Invariant:** this module only calls the engine's public operations (append, scan,
//! seek, cursors); it never touches files itself. A Produce with acks != 0 is answered
//! only after the append returned, i.e. once the store acknowledged it (fsync'd under the
//! default durability).

mod conn;
mod data;
mod decompress;
mod groups;
mod handlers;
mod producers;
pub mod records;

/// Runs a future to its end on a current-thread runtime (unit tests of the async parts).
#[cfg(test)]
fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a test runtime")
        .block_on(future)
}

#[doc(hidden)]
pub use conn::{fuzz_decode_frame, fuzz_handle_frame};
pub use decompress::DECOMPRESSED_BYTES_MAX;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::net::TcpListener;

use crate::{Store, Topic};

/// Largest request frame accepted (Kafka's `socket.request.max.bytes` default, 100 MiB).
/// A bigger one closes its connection.
pub const FRAME_BYTES_MAX: usize = 100 << 20;
/// Longest a Fetch may wait for new records, whatever the client asks.
pub const FETCH_WAIT_MAX_MS: u64 = 30_000;
/// Most record bytes one Fetch response carries, whatever `max_bytes` the client asks for
/// (Kafka brokers' default `fetch.max.bytes`, 55 MiB): a client asking for 2 GiB of a
/// large topic must not make the server hold 2 GiB for it.
pub const FETCH_BYTES_MAX: usize = 55 << 20;
/// How often a waiting Fetch looks for records appended by another process.
const FETCH_POLL_MS: u64 = 10;
/// Most concurrent connections; more are refused with a log line.
pub const CONNECTIONS_MAX: usize = 1024;
/// Most bytes of request frames held at once over all connections (1 GiB): a frame's
/// bytes are counted as they are read, and a connection whose frame would go past it
/// waits, unread (TCP backpressure), until requests before it are answered. Without it,
/// connections each stalled just short of the end of a 100 MiB frame could make the
/// server hold [`CONNECTIONS_MAX`] times that.
pub const FRAMES_IN_FLIGHT_BYTES_MAX: usize = 1 << 30;
/// A connection that starts no request for this long is closed (Kafka brokers' default
/// `connections.max.idle.ms`, 10 min; clients reconnect when they need to), so idle
/// connections cannot keep the [`CONNECTIONS_MAX`] slots.
pub const CONNECTION_IDLE_MAX: Duration = Duration::from_secs(600);
/// The in-flight frame budget is counted in permits of this many bytes.
const FRAME_PERMIT_BYTES: usize = 1024;
/// Once a frame's size is read, its whole body must arrive within this long, waits for
/// room in the in-flight budget included (at 100 MiB, at least ~1.7 MB/s); else the
/// connection is closed and its share of the budget released. It bounds how long a slow
/// or silent client holds budget, and how long partial frames can wait on each other when
/// the budget is full (see `conn::read_body`).
pub const FRAME_BODY_TIME_MAX: Duration = Duration::from_secs(60);
/// Budget a frame takes before its first body bytes are read; later it takes as much
/// again as it holds each time it has filled what it holds (so a frame holds at most
/// about twice the bytes that arrived, never its announced size up front).
const FRAME_BODY_STEP_BYTES: usize = 64 << 10;

// Connections that sent only a frame size together hold at most 1/16 of the budget.
const _: () = assert!(CONNECTIONS_MAX * FRAME_BODY_STEP_BYTES <= FRAMES_IN_FLIGHT_BYTES_MAX / 16);
const _: () = assert!(FRAME_BODY_STEP_BYTES.is_multiple_of(FRAME_PERMIT_BYTES));
const _: () = assert!(FRAME_BYTES_MAX <= FRAMES_IN_FLIGHT_BYTES_MAX);

/// Errors of server mode.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// An engine error.
    #[error(transparent)]
    Store(#[from] crate::Error),
    /// Binding, accepting or the runtime failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
}

/// Settings of `trailkeep serve`; each documents its default.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Address to listen on. Default `127.0.0.1:9092`.
    pub listen: SocketAddr,
    /// `host:port` announced to clients in Metadata and FindCoordinator. Default: the
    /// address actually bound.
    pub advertised: Option<(String, u16)>,
    /// Create a topic when a client produces to it or asks Metadata for it with
    /// auto-creation allowed. Default true (Kafka's `auto.create.topics.enable`).
    pub auto_create_topics: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9092)),
            advertised: None,
            auto_create_topics: true,
        }
    }
}

/// What every connection shares.
pub(crate) struct State {
    pub store: Store,
    pub auto_create_topics: bool,
    pub advertised: (String, u16),
    pub cluster_id: String,
    /// Woken after every append made through this server (Fetch long-polls wait on it).
    pub appended: tokio::sync::Notify,
    pub groups: groups::Coordinator,
    /// What is known of idempotent producers; locked only to find a producer's slot, whose
    /// own lock an append holds.
    pub producers: Mutex<producers::Producers>,
    pub next_producer_id: AtomicI64,
    /// The in-flight frame budget ([`FRAMES_IN_FLIGHT_BYTES_MAX`]), in permits of
    /// [`FRAME_PERMIT_BYTES`].
    pub frames: tokio::sync::Semaphore,
}

impl State {
    pub fn new(store: Store, auto_create_topics: bool, advertised: (String, u16), cluster_id: String) -> State {
        State {
            store,
            auto_create_topics,
            advertised,
            cluster_id,
            appended: tokio::sync::Notify::new(),
            groups: groups::Coordinator::default(),
            producers: Mutex::new(producers::Producers::default()),
            // Producer ids from the clock (ms), so a restarted server does not hand out
            // the ids of before.
            next_producer_id: AtomicI64::new((crate::topic::now_us() / 1000) as i64),
            frames: tokio::sync::Semaphore::new(FRAMES_IN_FLIGHT_BYTES_MAX / FRAME_PERMIT_BYTES),
        }
    }

    pub fn next_producer_id(&self) -> i64 {
        self.next_producer_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Opens a topic, creating it when `create` and auto-creation is on.
    pub fn topic(&self, name: &str, create: bool) -> crate::Result<Topic> {
        if create && self.auto_create_topics {
            self.store.topic_or_create(name)
        } else {
            self.store.topic(name)
        }
    }
}

/// A bound server, ready to run.
pub struct Server {
    listener: TcpListener,
    state: Arc<State>,
    runtime: tokio::runtime::Runtime,
}

impl Server {
    /// Binds the listening socket. Call [`Server::run`] to serve.
    ///
    /// # Errors
    /// [`ServerError::Io`] when the runtime cannot start or the address cannot be bound.
    pub fn bind(store: Store, config: ServerConfig) -> Result<Server, ServerError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("trailkeep-serve")
            .build()
            .map_err(|source| ServerError::Io {
                context: "starting the server runtime".into(),
                source,
            })?;
        let listener = runtime
            .block_on(TcpListener::bind(config.listen))
            .map_err(|source| ServerError::Io {
                context: format!("binding {}", config.listen),
                source,
            })?;
        let bound = listener.local_addr().map_err(|source| ServerError::Io {
            context: "reading the bound address".into(),
            source,
        })?;
        let advertised = config
            .advertised
            .clone()
            .unwrap_or_else(|| (bound.ip().to_string(), bound.port()));
        let cluster_id = format!("trailkeep-{}", store.store_id()?);
        let state = Arc::new(State::new(store, config.auto_create_topics, advertised, cluster_id));
        Ok(Server {
            listener,
            state,
            runtime,
        })
    }

    /// A handle on the server's runtime (to install signal handlers before [`Server::run`]).
    pub fn runtime_handle(&self) -> tokio::runtime::Handle {
        self.runtime.handle().clone()
    }

    /// The address actually bound (useful with port 0).
    ///
    /// # Errors
    /// When the socket cannot tell.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then stops accepting, drops the connections and
    /// closes the store (syncing and releasing every topic this process appended to).
    ///
    /// # Errors
    /// The store's close error.
    pub fn run<F>(self, shutdown: F) -> Result<(), ServerError>
    where
        F: std::future::Future<Output = ()> + Send,
    {
        let Server {
            listener,
            state,
            runtime,
        } = self;
        runtime.block_on(async {
            let reaper = tokio::spawn(groups::reap_expired(Arc::clone(&state)));
            tokio::select! {
                () = accept_loop(listener, Arc::clone(&state)) => {}
                () = shutdown => tracing::info!("shutting down"),
            }
            reaper.abort();
        });
        // Connections and blocking appends finish or are dropped here; nothing is
        // acknowledged that was not appended.
        runtime.shutdown_timeout(Duration::from_secs(5));
        let store = state.store.clone();
        drop(state);
        store.close()?;
        Ok(())
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    let live = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!("accepting a connection failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if live.load(Ordering::Relaxed) >= CONNECTIONS_MAX {
            tracing::warn!(%peer, "refusing a connection: {CONNECTIONS_MAX} connections are open");
            continue;
        }
        live.fetch_add(1, Ordering::Relaxed);
        let state = Arc::clone(&state);
        let live = Arc::clone(&live);
        tokio::spawn(async move {
            conn::serve(socket, peer, state).await;
            live.fetch_sub(1, Ordering::Relaxed);
        });
    }
}
