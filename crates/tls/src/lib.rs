//! TLS for every Sluice connection, built on rustls (with ring):
//!
//! - [`settings`]: the choices an operator writes in config, with Kafka's
//!   names: [`SecurityProtocol`] (`PLAINTEXT` / `SSL`), [`ClientAuth`]
//!   (`ssl.client.auth`), and the PEM files ([`TlsFiles`]);
//! - [`ServerTls`] and [`ClientTls`]: rustls configurations built from those
//!   files and rebuilt when the files change on disk, so a certificate is
//!   rotated without a restart (connections made after the change use it);
//! - [`Stream`]: an accepted connection, plaintext or TLS, as tonic and the
//!   Kafka listener take it, with [`ConnInfo`] (peer address, certificates);
//! - [`lazy_channel`] / [`connect_channel`]: a tonic channel over TLS when a
//!   [`ClientTls`] is given, through our own connector (so the reloaded
//!   configuration applies to every new connection).

mod client;
mod error;
mod load;
mod own;
mod reload;
mod server;
pub mod settings;
mod stream;
#[cfg(feature = "testing")]
pub mod testing;
#[cfg(test)]
mod tests;

use std::sync::Arc;

pub use client::{
    ClientTls, HandshakeError, connect_channel, connect_internal, internal_channel, lazy_channel,
    tls_failure,
};
pub use error::TlsError;
pub use own::is_own_connection;
pub use server::{ListenerTls, ServerTls};
pub use settings::{ClientAuth, SecurityProtocol, TlsFiles};
pub use stream::{ClientStream, ConnInfo, Stream};

/// The ALPN name gRPC speaks (HTTP/2). A TLS connection that negotiated it
/// is gRPC; one that negotiated nothing is Kafka's protocol (Kafka clients
/// send no ALPN).
pub const ALPN_H2: &[u8] = b"h2";

/// The first byte of every TLS connection: a handshake record (ClientHello).
/// As the first byte of a Kafka request's size it would announce more than
/// 350 MiB, far above `socket.request.max.bytes`, so a listener tells TLS
/// from plaintext by it.
pub const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// The one crypto provider every Sluice TLS configuration uses: ring's, with
/// AES-128-GCM first. Both ends of a Sluice connection spend CPU on every
/// byte, and AES-128 runs about a third faster than AES-256 on AES-NI
/// (rustls puts AES-256 first); both are the suites TLS 1.3 mandates.
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    let mut p = rustls::crypto::ring::default_provider();
    use rustls::CipherSuite as C;
    p.cipher_suites.sort_by_key(|s| {
        !matches!(
            s.suite(),
            C::TLS13_AES_128_GCM_SHA256
                | C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                | C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        )
    });
    Arc::new(p)
}
