//! One port, two protocols, plaintext or TLS. A gRPC connection opens with
//! the HTTP/2 client preface (`PRI * HTTP/2.0\r\n...`); a Kafka connection
//! opens with its first request's 4-byte big-endian size. `P` (0x50) as the
//! first size byte would announce a request of at least 1.3 GB, far above any
//! legal Kafka request (`socket.request.max.bytes`, 100 MiB by default), so
//! the first byte alone tells them apart. Both protocols have the client
//! speak first, so peeking costs no round trip.
//!
//! A TLS connection opens with a handshake record (0x16, a 350 MiB Kafka
//! request): on an `SSL://` listener it is accepted, and after the handshake
//! ALPN tells the protocols apart (gRPC clients ask for `h2`; Kafka clients
//! ask for nothing). Plaintext on a TLS listener is refused unless the
//! listener still accepts it (`ssl.accept.plaintext`, during a move to TLS),
//! and TLS on a plaintext listener is refused; both are logged with the peer.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use sluice_tls::{ListenerTls, Stream, TLS_HANDSHAKE_RECORD};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// The first byte of the HTTP/2 client preface.
const HTTP2_PREFACE_FIRST: u8 = b'P';

/// How long a new connection may stay silent before it is dropped: neither
/// protocol has the server speak first, so a silent peer is no client.
const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepted connections for the gRPC server (tonic's `serve_with_incoming`).
pub type GrpcIncoming = ReceiverStream<io::Result<Stream>>;

/// Accepted Kafka-protocol connections, with the peer address.
pub type KafkaIncoming = mpsc::Receiver<(Stream, SocketAddr)>;

/// Which protocol a connection's first byte announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    Kafka,
}

/// Classifies a connection by its first byte (see the module docs).
pub fn classify(first: u8) -> Protocol {
    if first == HTTP2_PREFACE_FIRST {
        Protocol::Grpc
    } else {
        Protocol::Kafka
    }
}

/// Splits `listener` into the gRPC connection stream and the Kafka one,
/// doing the TLS handshake first when `tls` is given. The accept loop runs
/// until `stop` fires. Every accepted socket gets TCP_NODELAY (small
/// responses must not wait for Nagle's timer).
///
/// Kafka connections queue until someone receives them (a broker still
/// starting); the queue is bounded and further ones are closed.
pub fn split(
    listener: TcpListener,
    tls: Option<ListenerTls>,
    stop: CancellationToken,
) -> (GrpcIncoming, KafkaIncoming) {
    let (grpc_tx, grpc_rx) = mpsc::channel(1024);
    let (kafka_tx, kafka_rx) = mpsc::channel(1024);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = stop.cancelled() => return,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let (grpc_tx, kafka_tx, tls) = (grpc_tx.clone(), kafka_tx.clone(), tls.clone());
            tokio::spawn(async move {
                let Some((stream, protocol)) = open(stream, peer, tls.as_ref()).await else {
                    return;
                };
                match protocol {
                    Protocol::Grpc => {
                        let _ = grpc_tx.send(Ok(stream)).await;
                    }
                    Protocol::Kafka => {
                        if kafka_tx.try_send((stream, peer)).is_err() {
                            warn!(%peer, "Kafka connection refused: too many waiting or no Kafka listener");
                        }
                    }
                }
            });
        }
    });
    (ReceiverStream::new(grpc_rx), kafka_rx)
}

/// Reads (peeks) the connection's first byte, does the TLS handshake when
/// it is one, and says which protocol the connection speaks; `None` when
/// it is refused or goes away.
async fn open(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<&ListenerTls>,
) -> Option<(Stream, Protocol)> {
    let mut first = [0u8; 1];
    match tokio::time::timeout(FIRST_BYTE_TIMEOUT, stream.peek(&mut first)).await {
        Ok(Ok(1)) => {}
        Ok(Ok(_)) => {
            debug!(%peer, "connection closed before its first byte");
            return None;
        }
        Ok(Err(e)) => {
            debug!(%peer, error = %e, "connection failed before its first byte");
            return None;
        }
        Err(_) => {
            debug!(%peer, "connection sent nothing for {FIRST_BYTE_TIMEOUT:?}; closed");
            return None;
        }
    }
    match (first[0] == TLS_HANDSHAKE_RECORD, tls) {
        (true, Some(tls)) => {
            let handshake =
                tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.server.accept(stream)).await;
            match handshake {
                Ok(Ok(s)) => {
                    let protocol = if s.alpn() == Some(sluice_tls::ALPN_H2) {
                        Protocol::Grpc
                    } else {
                        Protocol::Kafka
                    };
                    Some((s, protocol))
                }
                Ok(Err(e)) => {
                    warn!(%peer, error = %e, "TLS handshake failed; connection refused");
                    None
                }
                Err(_) => {
                    warn!(%peer, "TLS handshake took over {HANDSHAKE_TIMEOUT:?}; connection refused");
                    None
                }
            }
        }
        (true, None) => {
            warn!(%peer, "a TLS client connected to this plaintext listener; refused (connect with security.protocol=PLAINTEXT, or give the listener SSL://)");
            tokio::spawn(refuse_tls(stream));
            None
        }
        (false, Some(tls)) if !tls.accept_plaintext => {
            warn!(%peer, "a plaintext client connected to this TLS listener; refused (connect with security.protocol=SSL)");
            match classify(first[0]) {
                Protocol::Grpc => tokio::spawn(refuse_plaintext_grpc(stream)),
                Protocol::Kafka => tokio::spawn(refuse_plaintext_kafka(stream)),
            };
            None
        }
        (false, _) => Some((Stream::Plain(stream), classify(first[0]))),
    }
}

/// Answers a TLS client on a plaintext listener with a fatal
/// `protocol_version` alert (TLS's own refusal, which every TLS client
/// reports; ours adds that the listener may be plaintext), after reading its
/// ClientHello so the close is not a reset.
async fn refuse_tls(mut stream: TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // An alert record: type 21, TLS 1.2 framing, 2 bytes: fatal (2), 70.
    const PROTOCOL_VERSION_ALERT: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 70];
    let mut hello = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut hello)).await;
    let _ = stream.write_all(&PROTOCOL_VERSION_ALERT).await;
    let _ = stream.shutdown().await;
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while matches!(stream.read(&mut hello).await, Ok(n) if n > 0) {}
    })
    .await;
}

/// Closes a plaintext Kafka connection cleanly: its first request is read
/// before the close, so the client sees the server hang up (librdkafka then
/// says "connecting to a SSL listener?") rather than a reset.
async fn refuse_plaintext_kafka(mut stream: TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let read_first = async {
        let size = stream.read_u32().await.ok()? as usize;
        let mut sink = vec![0u8; size.min(64 << 10)];
        stream.read_exact(&mut sink).await.ok()
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), read_first).await;
    let _ = stream.shutdown().await;
    // Whatever else it sent (a larger or pipelined request): read it, or the
    // close would be a reset.
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

/// Tells a plaintext gRPC client why it is refused: its requests are
/// answered (for a few seconds) with a gRPC error, `SSL_HANDSHAKE_FAILED`
/// and a reason, so every gRPC client shows the cause and ours does not
/// retry. (A bare close, or an HTTP/2 GOAWAY, reaches the caller as an
/// anonymous broken connection.)
async fn refuse_plaintext_grpc(stream: TcpStream) {
    const REASON: &str =
        "SSL_HANDSHAKE_FAILED: this listener requires TLS: connect with security.protocol=SSL";
    let code = sluice_proto::common::ErrorCode::SslHandshakeFailed;
    let answer = async move {
        let mut conn = h2::server::handshake(stream).await.ok()?;
        while let Some(Ok((_req, mut respond))) = conn.accept().await {
            let refusal = http::Response::builder()
                .status(200)
                .header("content-type", "application/grpc")
                // UNAUTHENTICATED: the connection lacks the security asked for.
                .header("grpc-status", "16")
                .header("grpc-message", REASON)
                .header(
                    sluice_types::error::ERROR_CODE_HEADER,
                    (code as i32).to_string(),
                )
                .header(sluice_types::error::ERROR_NAME_HEADER, code.as_str_name())
                .body(())
                .ok()?;
            let _ = respond.send_response(refusal, true);
        }
        Some(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), answer).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_http2_preface_is_grpc_and_any_legal_kafka_size_is_kafka() {
        assert_eq!(classify(b"PRI * HTTP/2.0"[0]), Protocol::Grpc);
        // Any request up to 1 GiB starts with a byte below 0x40.
        for size in [0u32, 12, 1 << 20, 100 << 20, (1 << 30) - 1] {
            assert_eq!(classify(size.to_be_bytes()[0]), Protocol::Kafka, "{size}");
        }
    }
}
