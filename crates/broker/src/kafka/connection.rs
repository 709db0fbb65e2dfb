//! One Kafka connection: frames in, responses out, in order. Requests of one
//! connection are handled one at a time, as Kafka does (it mutes a channel
//! until its response is sent): a client that pipelines produce requests
//! relies on them being appended in the order sent. Reading the next frame
//! overlaps with handling the current one.

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::dispatch;
use super::frame::{self, FrameError, Request};
use super::versions;
use crate::BrokerService;

/// Kafka's UNSUPPORTED_VERSION.
const UNSUPPORTED_VERSION: i16 = 35;

/// The first allocation for a frame, and the smallest growth step (it then
/// doubles with what arrives).
const STEP: usize = 64 << 10;

/// Frames read ahead of the one being handled.
const READ_AHEAD: usize = 4;

/// What the reader hands the handler.
enum Incoming {
    Request(Box<Request>),
    /// ApiVersions at a version we do not serve: answered with v0 and the
    /// table, so the client can pick a version (KIP-511).
    ApiVersionsUnsupported {
        correlation_id: i32,
    },
}

pub(super) async fn serve(
    svc: BrokerService,
    stream: TcpStream,
    peer: SocketAddr,
    stop: CancellationToken,
) {
    let max = svc.broker.config.socket_request_max_bytes as usize;
    let (read, write) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Incoming>(READ_AHEAD);
    let reader_stop = stop.clone();
    let reader = tokio::spawn(async move {
        let mut read = read;
        loop {
            let frame = tokio::select! {
                f = read_frame(&mut read, max) => f,
                _ = reader_stop.cancelled() => return,
            };
            let frame = match frame {
                Ok(Some(f)) => f,
                Ok(None) => return,
                Err(e) => {
                    warn!(%peer, error = %e, "Kafka connection closed");
                    return;
                }
            };
            let incoming = match frame::parse_request(frame) {
                Ok(r) => Incoming::Request(Box::new(r)),
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
            if tx.send(incoming).await.is_err() {
                return;
            }
        }
    });
    let mut write = BufWriter::with_capacity(64 << 10, write);
    while let Some(incoming) = rx.recv().await {
        let (correlation_id, api_key, version, response) = match incoming {
            Incoming::ApiVersionsUnsupported { correlation_id } => (
                correlation_id,
                ApiKey::ApiVersions,
                0,
                dispatch::Outcome::Respond(Box::new(ResponseKind::ApiVersions(
                    versions::api_versions(UNSUPPORTED_VERSION),
                ))),
            ),
            Incoming::Request(req) => {
                let (id, key, version) = (req.header.correlation_id, req.api_key, req.version);
                (id, key, version, dispatch::handle(&svc, *req, peer).await)
            }
        };
        let response = match response {
            dispatch::Outcome::Respond(r) => r,
            dispatch::Outcome::Nothing => continue,
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
        if let Err(e) = write_response(&mut write, &bytes).await {
            debug!(%peer, error = %e, "Kafka connection write failed");
            break;
        }
    }
    reader.abort();
}

/// Writes and flushes: a finished response must not wait behind the next
/// request (a long-poll Fetch, a JoinGroup), as it does not in Kafka.
async fn write_response(
    write: &mut BufWriter<tokio::net::tcp::OwnedWriteHalf>,
    bytes: &Bytes,
) -> std::io::Result<()> {
    write.write_all(bytes).await?;
    write.flush().await
}

/// Reads one frame; `None` at a clean end of stream between frames.
async fn read_frame(
    read: &mut tokio::net::tcp::OwnedReadHalf,
    max: usize,
) -> Result<Option<Bytes>, FrameReadError> {
    let mut size = [0u8; 4];
    match read.read_exact(&mut size).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(FrameReadError::Io(e)),
    }
    let size = i32::from_be_bytes(size);
    if size < 0 || size as usize > max {
        return Err(FrameReadError::Size { size, max });
    }
    // Grow with the bytes that arrive rather than trusting the size prefix:
    // a client announcing 100 MiB and sending nothing holds no memory.
    let size = size as usize;
    let mut buf = BytesMut::with_capacity(size.min(STEP));
    let mut limited = (&mut *read).take(size as u64);
    while buf.len() < size {
        if buf.capacity() == buf.len() {
            buf.reserve((size - buf.len()).min(buf.len().max(STEP)));
        }
        let n = limited
            .read_buf(&mut buf)
            .await
            .map_err(FrameReadError::Io)?;
        if n == 0 {
            return Err(FrameReadError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
    }
    Ok(Some(buf.freeze()))
}

#[derive(Debug, thiserror::Error)]
enum FrameReadError {
    #[error("request size {size} is outside 0..={max} (socket.request.max.bytes)")]
    Size { size: i32, max: usize },
    #[error("read failed (mid-frame): {0}")]
    Io(std::io::Error),
}
