//! One Kafka connection: frames in, responses out, in order. Requests of one
//! connection are handled one at a time, as Kafka does (it mutes a channel
//! until its response is sent): a client that pipelines produce requests
//! relies on them being appended in the order sent. Reading the next frame
//! overlaps with handling the current one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseKind};
use sluice_tls::Stream;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::dispatch;
use super::frame::{self, FrameError, Request};
use super::session::Session;
use super::versions;
use crate::BrokerService;
use sluice_server::quota::QuotaKind;

/// Kafka's UNSUPPORTED_VERSION.
const UNSUPPORTED_VERSION: i16 = 35;

/// The smallest growth step of a frame buffer past its first MiB (it then
/// doubles with what arrives).
const STEP: usize = 1 << 20;

/// Frames read ahead of the one being handled: Kafka reads none (it mutes a
/// connection until its response is out); one lets decoding overlap.
const READ_AHEAD: usize = 1;

/// Frames up to this size do not count against the request budget.
const SMALL_FRAME: usize = 1 << 20;

/// A request's body must arrive within this of its size prefix (and a large
/// one get its share of the budget within it); Kafka clients time requests
/// out after 30 s by default.
const FRAME_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a connection whose authentication failed stays open after the
/// answer (Kafka's `connection.failed.authentication.delay.ms`).
const FAILED_AUTHENTICATION_DELAY: Duration = Duration::from_millis(100);

/// How long a new connection waits for the ACLs to be read at startup.
const ACLS_WAIT: Duration = Duration::from_secs(10);

/// `connections.max.idle.ms`: a connection silent this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// What the reader hands the handler: a request and the share of the
/// broker's request-memory budget its bytes hold until it is answered.
enum Incoming {
    Request(Box<Request>, Option<OwnedSemaphorePermit>),
    /// ApiVersions at a version we do not serve: answered with v0 and the
    /// table, so the client can pick a version (KIP-511).
    ApiVersionsUnsupported {
        correlation_id: i32,
    },
}

pub(super) async fn serve(
    svc: BrokerService,
    stream: Stream,
    peer: SocketAddr,
    budget: Arc<Semaphore>,
    stop: CancellationToken,
) {
    // Who the connection is (its certificate, or SASL still to come).
    let session = Session::new(&svc.access, &stream.info(), peer);
    let needs_loaded = svc.access.enabled() || svc.access.sasl_mechanisms().is_some();
    if needs_loaded && !svc.access.is_loaded() {
        // Before the ACLs and credentials are read every check would fail
        // (fatally, for a Kafka client): wait, or close and let the client
        // reconnect later.
        if tokio::time::timeout(ACLS_WAIT, svc.access.wait_loaded())
            .await
            .is_err()
        {
            warn!(%peer, "ACLs and credentials not read yet; closing the connection");
            return;
        }
    }
    match stream {
        // Owned halves: no lock between the reader and the writer.
        Stream::Plain(tcp) => {
            let (read, write) = tcp.into_split();
            serve_halves(svc, session, read, write, peer, budget, stop).await
        }
        Stream::Tls(tls) => {
            let (read, write) = tokio::io::split(*tls);
            serve_halves(svc, session, read, write, peer, budget, stop).await
        }
    }
}

async fn serve_halves<R, W>(
    svc: BrokerService,
    mut session: Session,
    read: R,
    write: W,
    peer: SocketAddr,
    budget: Arc<Semaphore>,
    stop: CancellationToken,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin,
{
    let max = svc.broker.config.socket_request_max_bytes as usize;
    let (tx, mut rx) = mpsc::channel::<Incoming>(READ_AHEAD);
    let reader_stop = stop.clone();
    let reader = tokio::spawn(async move {
        let mut read = read;
        loop {
            // A slot first: a frame is read only once it can be queued, so
            // at most one waits behind the one being handled.
            let slot = tokio::select! {
                s = tx.reserve() => match s {
                    Ok(s) => s,
                    Err(_) => return,
                },
                _ = reader_stop.cancelled() => return,
            };
            let frame = tokio::select! {
                f = read_frame(&mut read, max, &budget) => f,
                _ = reader_stop.cancelled() => return,
            };
            let (frame, permit) = match frame {
                Ok(Some(f)) => f,
                Ok(None) => return,
                Err(e) => {
                    warn!(%peer, error = %e, "Kafka connection closed");
                    return;
                }
            };
            let incoming = match frame::parse_request(frame) {
                Ok(r) => Incoming::Request(Box::new(r), permit),
                Err(FrameError::UnsupportedVersion {
                    api_key: ApiKey::ApiVersions,
                    correlation_id,
                    ..
                }) => Incoming::ApiVersionsUnsupported { correlation_id },
                Err(e) => {
                    warn!(%peer, error = %e, "Kafka connection closed on a bad request");
                    return;
                }
            };
            slot.send(incoming);
        }
    });
    let mut write = BufWriter::with_capacity(64 << 10, write);
    // How long to leave the connection muted after this answer (a client
    // over its quota, KIP-219: the answer goes out at once, with
    // throttle_time_ms, and nothing more is read or served meanwhile).
    let mut mute = Duration::ZERO;
    loop {
        // Between requests, a stopping broker closes the connection; the
        // request being handled is finished first.
        let incoming = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            i = rx.recv() => match i {
                Some(i) => i,
                None => break,
            },
        };
        let (correlation_id, api_key, version, response, _permit) = match incoming {
            Incoming::ApiVersionsUnsupported { correlation_id } => (
                correlation_id,
                ApiKey::ApiVersions,
                0,
                dispatch::Outcome::Respond(Box::new(ResponseKind::ApiVersions(
                    versions::api_versions(UNSUPPORTED_VERSION),
                ))),
                None,
            ),
            Incoming::Request(req, permit) => {
                let (id, key, version) = (req.header.correlation_id, req.api_key, req.version);
                // request_percentage: handling time, but not waiting (a
                // fetch's long poll, a rebalance, acks=all replication).
                let waits = matches!(
                    key,
                    ApiKey::Fetch
                        | ApiKey::Produce
                        | ApiKey::JoinGroup
                        | ApiKey::SyncGroup
                        | ApiKey::ConsumerGroupHeartbeat
                );
                let timed = !waits && !svc.access.quotas().is_empty();
                let client =
                    timed.then(|| req.header.client_id.as_deref().unwrap_or("").to_string());
                let started = std::time::Instant::now();
                let outcome = dispatch::handle(&svc, &mut session, *req, peer).await;
                if let Some(client) = client {
                    let spent = started.elapsed().as_secs_f64();
                    let held = session
                        .rights()
                        .with_client_id(&client)
                        .quota(QuotaKind::Request, || spent);
                    mute = mute.max(held);
                }
                (id, key, version, outcome, permit)
            }
        };
        let mut close_after = false;
        let response = match response {
            dispatch::Outcome::Respond(r) => r,
            dispatch::Outcome::RespondAndClose(r) => {
                close_after = true;
                r
            }
            dispatch::Outcome::Nothing(throttle) => {
                mute = mute.max(Duration::from_millis(throttle.max(0) as u64));
                if !mute_for(&mut mute, &stop).await {
                    break;
                }
                continue;
            }
            dispatch::Outcome::Close(why) => {
                debug!(%peer, why, "closing the Kafka connection");
                break;
            }
        };
        let bytes = match frame::encode_response(correlation_id, api_key, version, &response) {
            Ok(b) => b,
            Err(e) => {
                warn!(%peer, ?api_key, version, error = %e, "cannot encode a Kafka response; closing");
                break;
            }
        };
        let throttle_ms = match response.as_ref() {
            ResponseKind::Produce(r) => r.throttle_time_ms,
            ResponseKind::Fetch(r) => r.throttle_time_ms,
            _ => 0,
        };
        drop(response);
        if let Err(e) = write_response(&mut write, &bytes).await {
            debug!(%peer, error = %e, "Kafka connection write failed");
            break;
        }
        if close_after {
            // Kafka's connection.failed.authentication.delay.ms: the answer
            // reaches the client before the close (kafka-python drops data
            // read together with it), and password guessing slows down.
            write.flush().await.ok();
            tokio::time::sleep(FAILED_AUTHENTICATION_DELAY).await;
            debug!(%peer, "closing the Kafka connection after its answer");
            break;
        }
        mute = mute.max(Duration::from_millis(throttle_ms.max(0) as u64));
        if !mute_for(&mut mute, &stop).await {
            break;
        }
    }
    reader.abort();
}

/// Waits out `mute` (resetting it); false when the broker stops meanwhile.
async fn mute_for(mute: &mut Duration, stop: &CancellationToken) -> bool {
    let d = std::mem::take(mute);
    if d.is_zero() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = stop.cancelled() => false,
    }
}

async fn write_response<W: AsyncWrite + Unpin>(
    write: &mut BufWriter<W>,
    bytes: &Bytes,
) -> std::io::Result<()> {
    write.write_all(bytes).await?;
    write.flush().await
}

/// Reads one frame; `None` at a clean end of stream between frames. A frame
/// over [`SMALL_FRAME`] takes its bytes from `budget` (KiB permits) before
/// its body is read, so large requests together hold at most the budget.
async fn read_frame<R: AsyncRead + Unpin>(
    read: &mut R,
    max: usize,
    budget: &Arc<Semaphore>,
) -> Result<Option<(Bytes, Option<OwnedSemaphorePermit>)>, FrameReadError> {
    let mut size = [0u8; 4];
    match tokio::time::timeout(IDLE_TIMEOUT, read.read_exact(&mut size)).await {
        Err(_) => return Err(FrameReadError::Idle),
        Ok(Ok(_)) => {}
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Ok(Err(e)) => return Err(FrameReadError::Io(e)),
    }
    let size = i32::from_be_bytes(size);
    if size < 0 || size as usize > max {
        return Err(FrameReadError::Size { size, max });
    }
    let size = size as usize;
    // Frames up to 1 MiB (nearly all: metadata, group calls, typical
    // produces) skip the budget, so large ones waiting for it never hold up
    // a heartbeat. A large one waits at most FRAME_TIMEOUT for its share.
    let permit = if size <= SMALL_FRAME {
        None
    } else {
        let kib = (size.div_ceil(1024) as u32).min(super::BUDGET_KIB);
        let acquire = budget.clone().acquire_many_owned(kib);
        Some(
            tokio::time::timeout(FRAME_TIMEOUT, acquire)
                .await
                .map_err(|_| FrameReadError::Busy { size })?
                .map_err(|_| FrameReadError::Io(std::io::ErrorKind::Interrupted.into()))?,
        )
    };
    let deadline = tokio::time::Instant::now() + FRAME_TIMEOUT;
    // Up to 1 MiB (a typical produce) is allocated at once; beyond that the
    // buffer grows with the bytes that arrive, so a client announcing 100 MiB
    // and sending nothing holds little memory.
    let mut buf = BytesMut::with_capacity(size.min(1 << 20));
    let mut limited = (&mut *read).take(size as u64);
    while buf.len() < size {
        if buf.capacity() == buf.len() {
            buf.reserve((size - buf.len()).min(buf.len().max(STEP)));
        }
        let n = tokio::time::timeout_at(deadline, limited.read_buf(&mut buf))
            .await
            .map_err(|_| FrameReadError::Slow { size })?
            .map_err(FrameReadError::Io)?;
        if n == 0 {
            return Err(FrameReadError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
    }
    Ok(Some((buf.freeze(), permit)))
}

#[derive(Debug, thiserror::Error)]
enum FrameReadError {
    #[error("request size {size} is outside 0..={max} (socket.request.max.bytes)")]
    Size { size: i32, max: usize },
    #[error("read failed (mid-frame): {0}")]
    Io(std::io::Error),
    #[error("idle for {IDLE_TIMEOUT:?} (connections.max.idle.ms)")]
    Idle,
    #[error("a {size}-byte request did not arrive within {FRAME_TIMEOUT:?}")]
    Slow { size: usize },
    #[error(
        "no room for a {size}-byte request within {FRAME_TIMEOUT:?} (the broker's request memory is in use)"
    )]
    Busy { size: usize },
}
