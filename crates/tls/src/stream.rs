//! [`Stream`]: an accepted connection, plaintext or TLS, and [`ConnInfo`],
//! what the request layer learns of it.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tonic::transport::server::Connected;

/// An accepted connection.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl Stream {
    /// The protocol the TLS handshake agreed on (ALPN), if any.
    pub fn alpn(&self) -> Option<&[u8]> {
        match self {
            Stream::Plain(_) => None,
            Stream::Tls(t) => t.get_ref().1.alpn_protocol(),
        }
    }

    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(t) => t.get_ref().0,
        }
    }

    pub fn info(&self) -> ConnInfo {
        let tcp = self.tcp();
        let peer_certificates = match self {
            Stream::Plain(_) => None,
            Stream::Tls(t) => t
                .get_ref()
                .1
                .peer_certificates()
                .map(|c| Arc::from(c.to_vec())),
        };
        ConnInfo {
            remote: tcp.peer_addr().ok(),
            local: tcp.local_addr().ok(),
            tls: matches!(self, Stream::Tls(_)),
            peer_certificates,
            principal: Arc::default(),
        }
    }
}

/// What a request knows of its connection (in a gRPC request's extensions;
/// see [`ConnInfo::of`]).
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub remote: Option<SocketAddr>,
    pub local: Option<SocketAddr>,
    pub tls: bool,
    /// The client's certificate chain (leaf first) when it presented one.
    pub peer_certificates: Option<Arc<[CertificateDer<'static>]>>,
    /// The principal name the access layer mapped the certificate to, kept
    /// for the connection's later requests (shared by every clone).
    pub principal: Arc<std::sync::OnceLock<Option<String>>>,
}

impl ConnInfo {
    /// The connection a gRPC request came on (tonic puts it in the
    /// request's extensions).
    pub fn of(extensions: &http::Extensions) -> Option<&ConnInfo> {
        extensions.get::<ConnInfo>()
    }

    /// The peer address of a gRPC request (tonic's `remote_addr` knows only
    /// its own connection types).
    pub fn remote_addr<T>(req: &tonic::Request<T>) -> Option<SocketAddr> {
        Self::of(req.extensions()).and_then(|c| c.remote)
    }
}

impl Connected for Stream {
    type ConnectInfo = ConnInfo;
    fn connect_info(&self) -> ConnInfo {
        self.info()
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A client's connection: TLS, with the server's first byte read ahead (see
/// [`crate::ClientTls::connect`]) and handed back on the first read, or
/// plaintext (a service's connection to its own process, see
/// [`crate::internal_channel`]). Marked as this process's own while open
/// when a service opened it.
pub struct ClientStream {
    inner: ClientInner,
    first: Option<u8>,
    _own: Option<crate::own::OwnMark>,
}

enum ClientInner {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl ClientStream {
    pub(crate) fn new(
        inner: tokio_rustls::client::TlsStream<TcpStream>,
        first: Option<u8>,
    ) -> Self {
        ClientStream {
            inner: ClientInner::Tls(Box::new(inner)),
            first,
            _own: None,
        }
    }

    pub(crate) fn plain(tcp: TcpStream) -> Self {
        ClientStream {
            inner: ClientInner::Plain(tcp),
            first: None,
            _own: None,
        }
    }

    /// Marks the connection as this process's own while it is open.
    pub(crate) fn own(mut self) -> Self {
        let tcp = match &self.inner {
            ClientInner::Plain(t) => t,
            ClientInner::Tls(t) => t.get_ref().0,
        };
        if let (Ok(local), Ok(peer)) = (tcp.local_addr(), tcp.peer_addr()) {
            self._own = Some(crate::own::OwnMark::new(local, peer));
        }
        self
    }
}

macro_rules! client_inner {
    ($me:expr, $s:ident => $e:expr) => {
        match &mut $me.inner {
            ClientInner::Plain($s) => {
                let $s = Pin::new($s);
                $e
            }
            ClientInner::Tls($s) => {
                let $s = Pin::new($s.as_mut());
                $e
            }
        }
    };
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        if let Some(b) = me.first
            && buf.remaining() > 0
        {
            buf.put_slice(&[b]);
            me.first = None;
            return Poll::Ready(Ok(()));
        }
        client_inner!(me, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        client_inner!(self.get_mut(), s => s.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        client_inner!(self.get_mut(), s => s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match &self.inner {
            ClientInner::Plain(s) => s.is_write_vectored(),
            ClientInner::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        client_inner!(self.get_mut(), s => s.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        client_inner!(self.get_mut(), s => s.poll_shutdown(cx))
    }
}
