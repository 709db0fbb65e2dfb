//! A gRPC service that exists before its implementation does, so a process
//! can serve health and reflection while it is still starting (waiting out an
//! old lease, loading metadata) instead of leaving its port silent.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::server::NamedService;
use tower::Service;

/// Answers UNAVAILABLE (which clients retry) until [`Late::set`] is called,
/// then forwards every call to the service it was given.
pub struct Late<S> {
    inner: Arc<OnceLock<S>>,
}

impl<S> Clone for Late<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<S> Default for Late<S> {
    fn default() -> Self {
        Self {
            inner: Arc::new(OnceLock::new()),
        }
    }
}

impl<S> Late<S> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Installs the implementation; later calls are ignored.
    pub fn set(&self, service: S) {
        let _ = self.inner.set(service);
    }
}

impl<S: NamedService> NamedService for Late<S> {
    const NAME: &'static str = S::NAME;
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S> Service<http::Request<Body>> for Late<S>
where
    S: NamedService
        + Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // tonic's generated servers are always ready; readiness is checked per
        // call below.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        match self.inner.get() {
            Some(s) => {
                let mut s = s.clone();
                Box::pin(async move { s.call(req).await })
            }
            None => Box::pin(async {
                Ok(tonic::Status::unavailable(format!("{} is starting", S::NAME)).into_http())
            }),
        }
    }
}
