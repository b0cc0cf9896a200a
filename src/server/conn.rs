//! One client connection: frames, request headers, dispatch, responses in order.
//!
//! Requests on one connection are handled one at a time, like Kafka does, so responses
//! go out in request order. A bad frame (too big, too short, undecodable) closes this
//! connection with a log line; other connections are not affected.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, SemaphorePermit};

use super::{
    handlers, State, CONNECTION_IDLE_MAX, FRAME_BODY_STEP_BYTES, FRAME_BODY_TIME_MAX, FRAME_BYTES_MAX,
    FRAME_PERMIT_BYTES,
};

/// Shortest request frame: api key, api version and correlation id (2 + 2 + 4 bytes).
const FRAME_BYTES_MIN: usize = 8;

/// Read limits of a served connection.
const SERVE_TIMES: FrameTimes = FrameTimes {
    idle: CONNECTION_IDLE_MAX,
    body: FRAME_BODY_TIME_MAX,
};

/// A decoded request with what the response needs.
pub(crate) struct Request {
    pub api_key: ApiKey,
    pub version: i16,
    pub correlation_id: i32,
    pub client_id: String,
    pub body: RequestKind,
}

pub(crate) async fn serve(mut socket: TcpStream, peer: SocketAddr, state: Arc<State>) {
    let _ = socket.set_nodelay(true);
    tracing::debug!(%peer, "connection opened");
    loop {
        // The permit holds the frame's share of the in-flight budget until it is answered.
        let (frame, _permit) = match read_frame(&mut socket, &state.frames, SERVE_TIMES).await {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(reason) => {
                tracing::warn!(%peer, "closing connection: {reason}");
                break;
            }
        };
        let request = match decode_request(frame) {
            Ok(request) => request,
            Err(Undecodable::Close(reason)) => {
                tracing::warn!(%peer, "closing connection: {reason}");
                break;
            }
            Err(Undecodable::UnsupportedApiVersions(correlation_id)) => {
                let response = handlers::api_versions_unsupported();
                if let Err(e) = write_response(&mut socket, correlation_id, ApiKey::ApiVersions, 0, &response).await {
                    tracing::warn!(%peer, "closing connection: writing a response failed: {e}");
                    break;
                }
                continue;
            }
        };
        let (api_key, version, correlation_id) = (request.api_key, request.version, request.correlation_id);
        tracing::trace!(%peer, ?api_key, version, correlation_id, "request");
        let Some(response) = handlers::handle(&state, request).await else {
            continue; // Produce with acks=0: Kafka sends no response
        };
        if let Err(e) = write_response(&mut socket, correlation_id, api_key, version, &response).await {
            // A client that goes away while its request waits (a long poll) is normal.
            tracing::debug!(%peer, "closing connection: writing a {api_key:?} response failed: {e}");
            break;
        }
    }
    tracing::debug!(%peer, "connection closed");
}

/// How long a connection's reads may take: to start a frame, and to finish it.
#[derive(Clone, Copy)]
struct FrameTimes {
    /// A frame whose size does not start arriving within this closes the connection.
    idle: Duration,
    /// A frame whose body does not arrive within this, once its size is read, closes it.
    body: Duration,
}

/// Reads one size-prefixed frame, its bytes counted against `frames` (the in-flight
/// budget, in permits of `FRAME_PERMIT_BYTES`) as they arrive; `None` at a clean end of
/// stream. Closing errors: no frame started within `times.idle`, or its body not there
/// within `times.body` after its size (waits for budget included).
async fn read_frame<'a>(
    socket: &mut (impl AsyncRead + Unpin),
    frames: &'a Semaphore,
    times: FrameTimes,
) -> Result<Option<(Bytes, SemaphorePermit<'a>)>, String> {
    let Some(size) = read_size(socket, times.idle).await? else {
        return Ok(None);
    };
    let mut arrived = 0;
    match tokio::time::timeout(times.body, read_body(socket, frames, size, &mut arrived)).await {
        Ok(read) => read.map(Some),
        Err(_) => Err(format!(
            "a {size}-byte frame did not arrive within {} s of its size ({arrived} bytes came)",
            times.body.as_secs_f64()
        )),
    }
}

/// Reads and checks a frame's 4-byte size; `None` at a clean end of stream.
async fn read_size(socket: &mut (impl AsyncRead + Unpin), idle: Duration) -> Result<Option<usize>, String> {
    let mut size = [0u8; 4];
    let Ok(started) = tokio::time::timeout(idle, socket.read_exact(&mut size)).await else {
        return Err(format!("idle for {} s", idle.as_secs_f64()));
    };
    match started {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(None),
        Err(e) => return Err(format!("reading a frame size failed: {e}")),
    }
    let size = i32::from_be_bytes(size);
    let Ok(size) = usize::try_from(size) else {
        return Err(format!("bad frame: negative size {size}"));
    };
    if size > FRAME_BYTES_MAX {
        return Err(format!("bad frame: {size} bytes, over the limit of {FRAME_BYTES_MAX}"));
    }
    if size < FRAME_BYTES_MIN {
        return Err(format!("bad frame: {size} bytes, too short for a request header"));
    }
    Ok(Some(size))
}

/// Reads a frame body of `size` bytes, paying for it as it grows; `arrived` says how many
/// bytes came so far (for the caller's error when time runs out).
///
/// Budget is taken in steps, before the bytes of each step are read: first
/// `FRAME_BODY_STEP_BYTES`, then as much again as the frame holds (doubling) up to its
/// size, and the buffer grows by exactly what was paid for. So a client that sends a size
/// and nothing more holds one step (all 1,024 connections together at most 1/16 of the
/// budget: they cannot stall anyone), and any frame holds at most about twice the bytes
/// it really sent; memory for frames never exceeds `FRAMES_IN_FLIGHT_BYTES_MAX`. Taking
/// the announced size up front instead let 11 silent 100 MiB sizes hold the whole 1 GiB
/// forever, every later frame queued behind them (the semaphore is FIFO).
///
/// Paying as bytes come can deadlock: when the budget is full of partial frames that
/// each wait for more of it, none finishes. The caller's `FRAME_BODY_TIME_MAX` ends that:
/// the oldest frame's connection is closed first and its budget goes to the next waiter
/// in line, so a full budget stalls requests for at most that long, and keeping it full
/// costs a client 1 GiB of real bytes per `FRAME_BODY_TIME_MAX`.
async fn read_body<'a>(
    socket: &mut (impl AsyncRead + Unpin),
    frames: &'a Semaphore,
    size: usize,
    arrived: &mut usize,
) -> Result<(Bytes, SemaphorePermit<'a>), String> {
    let permits = |bytes: usize| u32::try_from(bytes.div_ceil(FRAME_PERMIT_BYTES)).unwrap_or(u32::MAX);
    let step = |filled: usize| (size - filled).min(filled.max(FRAME_BODY_STEP_BYTES));
    let acquire = |filled: usize| {
        let more = permits(filled + step(filled)) - permits(filled);
        frames.acquire_many(more)
    };
    let waited = |e| format!("waiting for room for a {size}-byte frame: {e}");
    let mut held = acquire(0).await.map_err(waited)?;
    let mut frame: Vec<u8> = Vec::new();
    loop {
        let filled = frame.len();
        let grown = filled + step(filled);
        frame.reserve_exact(grown - filled);
        frame.resize(grown, 0);
        socket
            .read_exact(&mut frame[filled..])
            .await
            .map_err(|e| format!("reading a {size}-byte frame failed after {filled} bytes: {e}"))?;
        *arrived = grown;
        if grown == size {
            return Ok((Bytes::from(frame), held));
        }
        held.merge(acquire(grown).await.map_err(waited)?);
    }
}

pub(crate) enum Undecodable {
    /// Close the connection, logging this.
    Close(String),
    /// Answer ApiVersions (v0) with UNSUPPORTED_VERSION and this correlation id, then go on.
    UnsupportedApiVersions(i32),
}

/// Decodes a request frame (at least 8 bytes). Never panics on bad bytes.
pub(crate) fn decode_request(frame: Bytes) -> Result<Request, Undecodable> {
    let mut peek = frame.clone();
    let (key, version, correlation_id) = (peek.get_i16(), peek.get_i16(), peek.get_i32());
    let Ok(api_key) = ApiKey::try_from(key) else {
        return Err(Undecodable::Close(format!(
            "unknown api key {key} (version {version}, correlation id {correlation_id})"
        )));
    };
    let Some(range) = handlers::supported_versions(api_key) else {
        return Err(Undecodable::Close(format!(
            "unsupported api {api_key:?} (key {key}, version {version}): not advertised by ApiVersions"
        )));
    };
    if version < range.0 || version > range.1 {
        if api_key == ApiKey::ApiVersions {
            // Kafka's rule: answer in v0 with UNSUPPORTED_VERSION and the supported range.
            return Err(Undecodable::UnsupportedApiVersions(correlation_id));
        }
        return Err(Undecodable::Close(format!(
            "unsupported version {version} of {api_key:?} (supported {}..={})",
            range.0, range.1
        )));
    }
    let decoded = std::panic::catch_unwind(move || {
        let mut buf = frame;
        let header =
            RequestHeader::decode(&mut buf, api_key.request_header_version(version)).map_err(|e| e.to_string())?;
        let body = RequestKind::decode(api_key, &mut buf, version).map_err(|e| e.to_string())?;
        Ok::<_, String>((header, body))
    });
    match decoded {
        Ok(Ok((header, body))) => Ok(Request {
            api_key,
            version,
            correlation_id,
            client_id: header.client_id.map(|c| c.to_string()).unwrap_or_default(),
            body,
        }),
        Ok(Err(e)) => Err(Undecodable::Close(format!(
            "malformed {api_key:?} v{version} request (correlation id {correlation_id}): {e}"
        ))),
        Err(_) => Err(Undecodable::Close(format!(
            "malformed {api_key:?} v{version} request (correlation id {correlation_id}): the decoder gave up"
        ))),
    }
}

async fn write_response(
    socket: &mut TcpStream,
    correlation_id: i32,
    api_key: ApiKey,
    version: i16,
    response: &ResponseKind,
) -> Result<(), String> {
    let bytes = encode_response(correlation_id, api_key, version, response)?;
    socket.write_all(&bytes).await.map_err(|e| e.to_string())
}

/// Size prefix, response header, body.
pub(crate) fn encode_response(
    correlation_id: i32,
    api_key: ApiKey,
    version: i16,
    response: &ResponseKind,
) -> Result<BytesMut, String> {
    let mut buf = BytesMut::with_capacity(256);
    buf.extend_from_slice(&[0; 4]);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    header
        .encode(&mut buf, api_key.response_header_version(version))
        .map_err(|e| format!("encoding a response header: {e}"))?;
    response
        .encode(&mut buf, version)
        .map_err(|e| format!("encoding a {api_key:?} v{version} response: {e}"))?;
    let size = u32::try_from(buf.len() - 4).map_err(|_| "response over 4 GiB".to_string())?;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf)
}

// ---------------------------------------------------------------------------------------
// Entry points for the fuzz targets under `fuzz/` only; not part of the supported API.
// ---------------------------------------------------------------------------------------

/// How long a request run by [`fuzz_handle_frame`] may wait: Fetch long polls and
/// JoinGroup rebalances are cut to this, so that one fuzz input runs in bounded time.
const FUZZ_WAIT_MAX_MS: i32 = 0;

/// A frame as [`serve`] takes it (size checks, then [`decode_request`]); `Err` says why
/// the connection would close.
fn decode_fuzz_frame(frame: &[u8]) -> Result<Result<Request, i32>, String> {
    if frame.len() < FRAME_BYTES_MIN || frame.len() > FRAME_BYTES_MAX {
        return Err(format!("bad frame: {} bytes", frame.len()));
    }
    match decode_request(Bytes::copy_from_slice(frame)) {
        Ok(request) => Ok(Ok(request)),
        Err(Undecodable::UnsupportedApiVersions(correlation_id)) => Ok(Err(correlation_id)),
        Err(Undecodable::Close(reason)) => Err(reason),
    }
}

/// Exists for fuzzing (`fuzz/`, target `server_frame`): decodes one request frame (the
/// bytes after the 4-byte size prefix) as a connection does and, for a Produce, the record
/// batches of every partition with [`super::records::decode_produced`].
///
/// # Errors
/// Why the connection would close, or the first partition whose records do not decode.
#[doc(hidden)]
pub fn fuzz_decode_frame(frame: &[u8]) -> Result<(), String> {
    let Ok(request) = decode_fuzz_frame(frame)? else {
        return Ok(()); // ApiVersions in a version we do not speak: answered, not closed
    };
    if let RequestKind::Produce(produce) = &request.body {
        let mut budget = super::DECOMPRESSED_BYTES_MAX;
        for partition in produce.topic_data.iter().flat_map(|t| &t.partition_data) {
            if let Some(records) = &partition.records {
                super::records::decode_produced(records, &mut budget)?;
            }
        }
    }
    Ok(())
}

/// Exists for fuzzing (`fuzz/`, target `server_frame`): runs one request frame through
/// decoding and the request handlers against `store`, as `trailkeep serve` would (topics
/// are created on demand), on a current-thread runtime. Waits are cut to
/// [`FUZZ_WAIT_MAX_MS`]. Returns the size-prefixed response, `None` when Kafka sends none.
///
/// # Errors
/// Why the connection would close: an undecodable frame or an unencodable response.
#[doc(hidden)]
pub fn fuzz_handle_frame(store: &crate::Store, frame: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let mut request = match decode_fuzz_frame(frame)? {
        Ok(request) => request,
        Err(correlation_id) => {
            let response = handlers::api_versions_unsupported();
            return encode_response(correlation_id, ApiKey::ApiVersions, 0, &response).map(|b| Some(b.to_vec()));
        }
    };
    match &mut request.body {
        RequestKind::Fetch(fetch) => fetch.max_wait_ms = fetch.max_wait_ms.min(FUZZ_WAIT_MAX_MS),
        RequestKind::JoinGroup(join) => join.rebalance_timeout_ms = join.rebalance_timeout_ms.min(FUZZ_WAIT_MAX_MS),
        _ => {}
    }
    let state = Arc::new(State::new(
        store.clone(),
        true,
        ("127.0.0.1".to_owned(), 9092),
        "trailkeep-fuzz".to_owned(),
    ));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting a runtime: {e}"))?;
    let (api_key, version, correlation_id) = (request.api_key, request.version, request.correlation_id);
    let Some(response) = runtime.block_on(handlers::handle(&state, request)) else {
        return Ok(None);
    };
    encode_response(correlation_id, api_key, version, &response).map(|b| Some(b.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::block_on;

    const TIMES: FrameTimes = FrameTimes {
        idle: Duration::from_secs(60),
        body: Duration::from_secs(60),
    };

    fn framed(len: usize) -> Vec<u8> {
        let mut out = (len as i32).to_be_bytes().to_vec();
        out.resize(4 + len, 7);
        out
    }

    /// A frame waits, unread, until the in-flight budget has room for it, and gets it when
    /// an earlier frame's permit is dropped (its request answered).
    #[test]
    fn a_frame_waits_for_room_in_the_budget() {
        block_on(async {
            // Room for 4 KiB: a 3 KiB frame fits, a 2 KiB one after it does not.
            let frames = Semaphore::new(4);
            let (mut client, mut server) = tokio::io::duplex(64 << 10);
            client.write_all(&framed(3 * 1024)).await.unwrap();
            client.write_all(&framed(2 * 1024)).await.unwrap();
            let (first, permit) = read_frame(&mut server, &frames, TIMES).await.unwrap().unwrap();
            assert_eq!(first.len(), 3 * 1024);
            assert_eq!(frames.available_permits(), 1);
            let (second, _permit) = {
                let next = read_frame(&mut server, &frames, TIMES);
                tokio::pin!(next);
                let wait = tokio::time::timeout(Duration::from_millis(100), &mut next).await;
                assert!(wait.is_err(), "the second frame must wait for room");
                drop(permit);
                next.await.unwrap().unwrap()
            };
            assert_eq!(second.len(), 2 * 1024);
            assert!(second.iter().all(|b| *b == 7));
            // A frame over the frame limit is refused before any room is taken.
            client
                .write_all(&((FRAME_BYTES_MAX + 1) as i32).to_be_bytes())
                .await
                .unwrap();
            let err = read_frame(&mut server, &frames, TIMES).await.unwrap_err();
            assert!(err.contains("over the limit"), "{err}");
        });
    }

    /// A connection that starts no frame within the idle limit is closed; one that does
    /// is read.
    #[test]
    fn an_idle_connection_is_closed() {
        block_on(async {
            let frames = Semaphore::new(16);
            let (mut client, mut server) = tokio::io::duplex(64 << 10);
            let times = FrameTimes {
                idle: Duration::from_millis(100),
                ..TIMES
            };
            let err = read_frame(&mut server, &frames, times).await.unwrap_err();
            assert!(err.contains("idle for 0.1 s"), "{err}");
            client.write_all(&framed(100)).await.unwrap();
            let (frame, _permit) = read_frame(&mut server, &frames, times).await.unwrap().unwrap();
            assert_eq!(frame.len(), 100);
        });
    }

    /// A client that sends a frame size and nothing more holds one step of the budget,
    /// not the size it announced, so frames of other connections are read meanwhile (the
    /// whole size taken up front let 11 silent 100 MiB sizes hold the 1 GiB budget forever).
    #[test]
    fn a_silent_frame_holds_one_step_and_stalls_nobody() {
        block_on(async {
            let budget = 1024; // 1 MiB
            let frames = Semaphore::new(budget);
            let (mut silent, mut silent_server) = tokio::io::duplex(64 << 10);
            silent.write_all(&(FRAME_BYTES_MAX as i32).to_be_bytes()).await.unwrap();
            let stalled = read_frame(&mut silent_server, &frames, TIMES);
            tokio::pin!(stalled);
            let wait = tokio::time::timeout(Duration::from_millis(50), &mut stalled).await;
            assert!(wait.is_err(), "the silent frame has no body to read");
            assert_eq!(
                frames.available_permits(),
                budget - FRAME_BODY_STEP_BYTES / FRAME_PERMIT_BYTES
            );
            let (mut client, mut server) = tokio::io::duplex(256 << 10);
            client.write_all(&framed(200 << 10)).await.unwrap();
            let read = tokio::time::timeout(Duration::from_secs(5), read_frame(&mut server, &frames, TIMES)).await;
            let (frame, _permit) = read.expect("a frame behind a silent one is read").unwrap().unwrap();
            assert_eq!(frame.len(), 200 << 10);
            assert!(frame.iter().all(|b| *b == 7));
        });
    }

    /// A frame whose body stops coming closes its connection once the body time limit
    /// passes, and gives back all the budget it took.
    #[test]
    fn a_frame_body_that_stops_coming_is_dropped_in_time() {
        block_on(async {
            let frames = Semaphore::new(1024);
            let (mut client, mut server) = tokio::io::duplex(1 << 20);
            let mut partial = framed(300 << 10);
            partial.truncate(4 + (100 << 10));
            client.write_all(&partial).await.unwrap();
            let times = FrameTimes {
                body: Duration::from_millis(100),
                ..TIMES
            };
            let read = tokio::time::timeout(Duration::from_secs(5), read_frame(&mut server, &frames, times)).await;
            let err = read.expect("the body time limit ends the read").unwrap_err();
            assert!(err.contains("did not arrive within 0.1 s"), "{err}");
            assert_eq!(frames.available_permits(), 1024, "all budget is given back");
        });
    }
}
