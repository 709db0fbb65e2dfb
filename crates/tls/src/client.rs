//! [`ClientTls`]: the rustls configuration a client (or a service reaching
//! another) connects with, reloaded from disk; tonic channels over it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint};

use crate::reload::{RELOAD_INTERVAL, Reloading};
use crate::settings::TlsFiles;
use crate::stream::ClientStream;
use crate::{ALPN_H2, TlsError, load, provider};

/// How long [`ClientTls::connect`] waits for the server's first bytes after
/// the handshake (a server that does not speak first costs this, once per
/// connection).
const FIRST_BYTE_WAIT: Duration = Duration::from_secs(3);

/// A client's TLS configuration (cheap to clone; every clone sees reloads).
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<Reloading<ClientConfig>>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls").finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Trusts `files.ca` (the system's CAs when unset), presents
    /// `files.certificate` when set (mTLS), and checks that the server's
    /// certificate names the host when `verify_hostname`.
    pub fn new(files: &TlsFiles, verify_hostname: bool) -> Result<Self, TlsError> {
        Self::with_reload_interval(files, verify_hostname, RELOAD_INTERVAL)
    }

    pub fn with_reload_interval(
        files: &TlsFiles,
        verify_hostname: bool,
        interval: Duration,
    ) -> Result<Self, TlsError> {
        let identity = match (files.certificate.clone(), files.key.clone()) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(TlsError::setting(
                    "ssl.key.location",
                    "ssl.certificate.location is set but not the key of that certificate",
                ));
            }
            (None, Some(_)) => {
                return Err(TlsError::setting(
                    "ssl.certificate.location",
                    "ssl.key.location is set but not the certificate it belongs to",
                ));
            }
        };
        let ca = files.ca.clone();
        let config = Reloading::start(
            "client",
            files.paths(),
            interval,
            Box::new(move || {
                build(
                    ca.as_deref(),
                    identity.as_ref().map(|(c, k)| (c.as_path(), k.as_path())),
                    verify_hostname,
                )
            }),
        )?;
        Ok(ClientTls { config })
    }

    /// The configuration new connections use now.
    pub fn current(&self) -> Arc<ClientConfig> {
        self.config.current()
    }

    /// Compares the files with the loaded ones now; true when it reloaded.
    pub fn reload_now(&self) -> Result<bool, TlsError> {
        self.config.check()
    }

    /// TCP, then the TLS handshake, to `host:port` (the certificate must name
    /// `host` when host names are checked).
    pub async fn connect(&self, host: &str, port: u16) -> std::io::Result<ClientStream> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(host.to_string()).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{host:?} is not a host name or address: {e}"),
            )
        })?;
        let tcp = TcpStream::connect((host, port)).await?;
        // Small responses must not wait for Nagle's timer (see sluice_server).
        tcp.set_nodelay(true)?;
        // A TLS verdict (a certificate refused, an alert) is permanent and
        // becomes a HandshakeError; a connection that merely broke (a server
        // stopping, a timeout) stays a plain I/O error, which callers retry.
        let failed = |e: std::io::Error| {
            let Some(verdict) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
                return std::io::Error::new(
                    e.kind(),
                    format!("TLS handshake with {host}:{port} broke off: {e}"),
                );
            };
            // A plaintext Sluice listener answers a ClientHello with this alert.
            let hint = if matches!(
                verdict,
                rustls::Error::AlertReceived(rustls::AlertDescription::ProtocolVersion)
            ) {
                " (a Sluice listener without TLS answers this: is it plaintext? then use \
                 security.protocol=PLAINTEXT)"
            } else {
                ""
            };
            std::io::Error::new(
                e.kind(),
                HandshakeError {
                    peer: format!("{host}:{port}"),
                    reason: format!("{verdict}{hint}"),
                },
            )
        };
        let mut tls = tokio_rustls::TlsConnector::from(self.current())
            .connect(name, tcp)
            .await
            .map_err(failed)?;
        // In TLS 1.3 the client finishes first: a server that refuses our
        // certificate (or its absence) says so after the handshake, and the
        // alert would surface later as a broken connection with its reason
        // lost. HTTP/2 servers speak first (SETTINGS), so wait for their
        // first byte here and make a refusal a handshake error.
        let mut first = [0u8; 1];
        let first = match tokio::time::timeout(FIRST_BYTE_WAIT, tls.read(&mut first)).await {
            Ok(Ok(1)) => Some(first[0]),
            Ok(Ok(_)) => {
                return Err(failed(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the server closed the connection right after the handshake",
                )));
            }
            // A server that does not speak first, or is slow to: go on.
            Ok(Err(e)) => return Err(failed(e)),
            Err(_) => None,
        };
        Ok(ClientStream::new(tls, first))
    }
}

/// A TLS handshake that failed, carried in the `io::Error` a connection
/// attempt returns (see [`tls_failure`]).
#[derive(Debug, thiserror::Error)]
#[error("TLS handshake with {peer} failed: {reason}")]
pub struct HandshakeError {
    pub peer: String,
    pub reason: String,
}

/// Whether an error (a gRPC status and its sources) comes from TLS: a failed
/// handshake, or a session the server ended with an alert. The reason, for a
/// message a person can act on. (A TLS listener answers a plaintext client's
/// requests with `SSL_HANDSHAKE_FAILED` itself.)
pub fn tls_failure(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(h) = err.downcast_ref::<HandshakeError>() {
            return Some(h.to_string());
        }
        if let Some(h) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<HandshakeError>())
        {
            return Some(h.to_string());
        }
        // After the handshake: the server refused our certificate (TLS 1.3
        // clients finish first and hear of it on the first read). The error
        // reaches us as text (tokio-rustls and h2 keep only the message), so
        // rustls's alert is known by its words.
        let io = err
            .downcast_ref::<std::io::Error>()
            .or_else(|| err.downcast_ref::<h2::Error>().and_then(|h| h.get_io()));
        if let Some(io) = io {
            let text = io.to_string();
            if ["fatal alert", "peer certificate", "sent no certificates"]
                .iter()
                .any(|w| text.contains(w))
            {
                return Some(format!("the server refused the TLS session: {text}"));
            }
        }
        cur = err.source();
    }
    None
}

fn build(
    ca: Option<&Path>,
    identity: Option<(&Path, &Path)>,
    verify_hostname: bool,
) -> Result<ClientConfig, TlsError> {
    let provider = provider();
    let roots = match ca {
        Some(ca) => load::roots("ssl.ca.location", ca)?,
        None => load::system_roots()?,
    };
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| TlsError::rustls("ssl.ca.location", e))?;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::rustls("TLS protocol versions", e))?;
    let builder = if verify_hostname {
        builder.with_webpki_verifier(webpki)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyHostName(webpki)))
    };
    let mut config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                load::certs("ssl.certificate.location", cert)?,
                load::key("ssl.key.location", key)?,
            )
            .map_err(|e| {
                TlsError::rustls(
                    "ssl.certificate.location and ssl.key.location do not make a usable pair",
                    e,
                )
            })?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(config)
}

/// `ssl.endpoint.identification.algorithm=` (empty): the chain must still
/// lead to a trusted CA and be in date; only the name check is skipped.
/// webpki checks the chain before the name, so "not valid for name" means
/// everything else passed.
#[derive(Debug)]
struct AnyHostName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyHostName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

fn connector(
    tls: Option<ClientTls>,
    own: bool,
) -> impl tower::Service<
    http::Uri,
    Response = TokioIo<ClientStream>,
    Error = std::io::Error,
    Future = impl Future<Output = std::io::Result<TokioIo<ClientStream>>> + Send,
> + Clone
+ Send
+ 'static {
    tower::service_fn(move |uri: http::Uri| {
        let tls = tls.clone();
        async move {
            let host = uri.host().unwrap_or_default().to_string();
            let port = uri.port_u16().unwrap_or(9092);
            let stream = match tls {
                Some(tls) => tls.connect(&host, port).await?,
                None => {
                    let host = host.trim_start_matches('[').trim_end_matches(']');
                    let tcp = TcpStream::connect((host, port)).await?;
                    tcp.set_nodelay(true)?;
                    ClientStream::plain(tcp)
                }
            };
            Ok(TokioIo::new(if own { stream.own() } else { stream }))
        }
    })
}

/// A channel that connects on first use: plaintext, or TLS through `tls`
/// (the endpoint's `http://` URI names host and port; TLS is ours, so the
/// configuration reloaded from disk applies to every reconnection).
pub fn lazy_channel(endpoint: Endpoint, tls: Option<&ClientTls>) -> Channel {
    match tls {
        None => endpoint.connect_lazy(),
        Some(tls) => endpoint.connect_with_connector_lazy(connector(Some(tls.clone()), false)),
    }
}

/// Like [`lazy_channel`], connected now.
pub async fn connect_channel(
    endpoint: Endpoint,
    tls: Option<&ClientTls>,
) -> Result<Channel, tonic::transport::Error> {
    match tls {
        None => endpoint.connect().await,
        Some(tls) => {
            endpoint
                .connect_with_connector(connector(Some(tls.clone()), false))
                .await
        }
    }
}

/// Like [`lazy_channel`], for a service calling another: a connection that
/// reaches this same process is known there as its own
/// ([`crate::is_own_connection`]), so services sharing one process (`sluice
/// standalone`) trust each other with no credential; between processes the
/// certificate (mTLS) says who is calling.
pub fn internal_channel(endpoint: Endpoint, tls: Option<&ClientTls>) -> Channel {
    endpoint.connect_with_connector_lazy(connector(tls.cloned(), true))
}

/// Like [`internal_channel`], connected now.
pub async fn connect_internal(
    endpoint: Endpoint,
    tls: Option<&ClientTls>,
) -> Result<Channel, tonic::transport::Error> {
    endpoint
        .connect_with_connector(connector(tls.cloned(), true))
        .await
}
