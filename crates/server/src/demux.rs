//! One port, two protocols. A gRPC connection opens with the HTTP/2 client
//! preface (`PRI * HTTP/2.0\r\n...`); a Kafka connection opens with its first
//! request's 4-byte big-endian size. `P` (0x50) as the first size byte would
//! announce a request of at least 1.3 GB, far above any legal Kafka request
//! (`socket.request.max.bytes`, 100 MiB by default), so the first byte alone
//! tells them apart. Both protocols have the client speak first, so peeking
//! costs no round trip.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

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

/// Accepted connections for the gRPC server (tonic's `serve_with_incoming`).
pub type GrpcIncoming = ReceiverStream<io::Result<TcpStream>>;

/// Accepted Kafka-protocol connections, with the peer address.
pub type KafkaIncoming = mpsc::Receiver<(TcpStream, SocketAddr)>;

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

/// Splits `listener` into the gRPC connection stream and the Kafka one. The
/// accept loop runs until `stop` fires. Every accepted socket gets
/// TCP_NODELAY (small responses must not wait for Nagle's timer).
///
/// Kafka connections queue until someone receives them (a broker still
/// starting); the queue is bounded and further ones are closed.
pub fn split(listener: TcpListener, stop: CancellationToken) -> (GrpcIncoming, KafkaIncoming) {
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
            let (grpc_tx, kafka_tx) = (grpc_tx.clone(), kafka_tx.clone());
            tokio::spawn(async move {
                let mut first = [0u8; 1];
                let peeked =
                    tokio::time::timeout(FIRST_BYTE_TIMEOUT, stream.peek(&mut first)).await;
                match peeked {
                    Ok(Ok(1)) => match classify(first[0]) {
                        Protocol::Grpc => {
                            let _ = grpc_tx.send(Ok(stream)).await;
                        }
                        Protocol::Kafka => {
                            if kafka_tx.try_send((stream, peer)).is_err() {
                                warn!(%peer, "Kafka connection refused: too many waiting or no Kafka listener");
                            }
                        }
                    },
                    Ok(Ok(_)) => debug!(%peer, "connection closed before its first byte"),
                    Ok(Err(e)) => {
                        debug!(%peer, error = %e, "connection failed before its first byte")
                    }
                    Err(_) => {
                        debug!(%peer, "connection sent nothing for {FIRST_BYTE_TIMEOUT:?}; closed")
                    }
                }
            });
        }
    });
    (ReceiverStream::new(grpc_rx), kafka_rx)
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
