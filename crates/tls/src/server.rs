//! [`ServerTls`]: a listener's rustls configuration, reloaded from disk;
//! [`ListenerTls`]: what a listener does with TLS and plaintext clients.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpStream;

use crate::reload::{RELOAD_INTERVAL, Reloading};
use crate::settings::{ClientAuth, TlsFiles};
use crate::{ALPN_H2, Stream, TlsError, load, provider};

/// A listener's TLS configuration (cheap to clone; every clone sees reloads).
#[derive(Clone)]
pub struct ServerTls {
    config: Arc<Reloading<ServerConfig>>,
    client_auth: ClientAuth,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("client_auth", &self.client_auth)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Builds the configuration from `files` (certificate and key required;
    /// the CA too when clients are asked for certificates) and reloads it
    /// when they change.
    pub fn new(files: &TlsFiles, client_auth: ClientAuth) -> Result<Self, TlsError> {
        Self::with_reload_interval(files, client_auth, RELOAD_INTERVAL)
    }

    pub fn with_reload_interval(
        files: &TlsFiles,
        client_auth: ClientAuth,
        interval: Duration,
    ) -> Result<Self, TlsError> {
        let (Some(cert), Some(key)) = (files.certificate.clone(), files.key.clone()) else {
            return Err(TlsError::setting(
                "ssl.certificate.location",
                "a TLS listener needs its certificate (ssl.certificate.location) and key \
                 (ssl.key.location)",
            ));
        };
        if client_auth != ClientAuth::None && files.ca.is_none() {
            return Err(TlsError::setting(
                "ssl.ca.location",
                "ssl.client.auth asks clients for certificates: name the CA that signs them",
            ));
        }
        let ca = files.ca.clone();
        let config = Reloading::start(
            "listener",
            files.paths(),
            interval,
            Box::new(move || build(&cert, &key, ca.as_deref(), client_auth)),
        )?;
        Ok(ServerTls {
            config,
            client_auth,
        })
    }

    pub fn client_auth(&self) -> ClientAuth {
        self.client_auth
    }

    /// The configuration new connections use now.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.config.current()
    }

    /// Compares the files with the loaded ones now (the poller does this
    /// every few seconds); true when it reloaded.
    pub fn reload_now(&self) -> Result<bool, TlsError> {
        self.config.check()
    }

    /// The TLS handshake on an accepted connection.
    pub async fn accept(&self, tcp: TcpStream) -> std::io::Result<Stream> {
        let tls = tokio_rustls::TlsAcceptor::from(self.current())
            .accept(tcp)
            .await?;
        Ok(Stream::Tls(Box::new(tls)))
    }
}

fn build(
    cert_path: &Path,
    key_path: &Path,
    ca: Option<&Path>,
    client_auth: ClientAuth,
) -> Result<ServerConfig, TlsError> {
    let provider = provider();
    let certs = load::certs("ssl.certificate.location", cert_path)?;
    let key = load::key("ssl.key.location", key_path)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::rustls("TLS protocol versions", e))?;
    let builder = match (client_auth, ca) {
        (ClientAuth::None, _) | (_, None) => builder.with_no_client_auth(),
        (auth, Some(ca)) => {
            let roots = Arc::new(load::roots("ssl.ca.location", ca)?);
            let mut verifier = WebPkiClientVerifier::builder_with_provider(roots, provider);
            if auth == ClientAuth::Requested {
                verifier = verifier.allow_unauthenticated();
            }
            let verifier = verifier
                .build()
                .map_err(|e| TlsError::rustls("ssl.ca.location", e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        TlsError::rustls(
            "ssl.certificate.location and ssl.key.location do not make a usable pair",
            e,
        )
    })?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    // Our suite order (AES-128 first, see `provider`) over the client's:
    // OpenSSL-based clients (librdkafka, kafka-python) list AES-256 first.
    config.ignore_client_order = true;
    Ok(config)
}

/// What a listener does with TLS: the configuration, and whether it still
/// takes plaintext connections (while a cluster moves to TLS by a rolling
/// restart: `ssl.accept.plaintext=true`).
#[derive(Clone, Debug)]
pub struct ListenerTls {
    pub server: ServerTls,
    pub accept_plaintext: bool,
}
