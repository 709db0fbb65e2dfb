//! A gRPC service that exists before its implementation does, so a process
//! can serve health and reflection while it is still starting (waiting out an
//! old lease, loading metadata, reaching etcd) instead of leaving its port
//! silent.
//!
//! The slot is type-erased: a [`crate::Host`] adds one per service name when
//! it binds, before the service crate has built its implementation, and the
//! service fills it in later ([`crate::Host::serve`]).

use crate::access::Access;
use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::server::NamedService;
use tower::Service;
use tower::util::BoxCloneSyncService;

/// A service implementation, boxed.
pub(crate) type Boxed = BoxCloneSyncService<http::Request<Body>, http::Response<Body>, Infallible>;

/// The shared cell a slot forwards to.
pub(crate) type Cell = Arc<OnceLock<Boxed>>;

/// A gRPC API a slot stands for: only its name.
pub trait Api: Send + Sync + 'static {
    const NAME: &'static str;
}

macro_rules! apis {
    ($($ty:ident => $name:path;)*) => {$(
        #[doc = concat!("The `", stringify!($ty), "` API.")]
        pub struct $ty;
        impl Api for $ty {
            const NAME: &'static str = $name;
        }
    )*};
}

apis! {
    BrokerApi => crate::names::BROKER;
    ControllerApi => crate::names::CONTROLLER;
    CoordinatorApi => crate::names::COORDINATOR;
}

/// Answers UNAVAILABLE (which clients retry) until its cell is filled, then
/// forwards every call to the service it holds.
pub struct Slot<A> {
    cell: Cell,
    /// The front door every request passes ([`crate::access::admit`]).
    access: Access,
    api: PhantomData<fn() -> A>,
}

impl<A> Clone for Slot<A> {
    fn clone(&self) -> Self {
        Self {
            cell: self.cell.clone(),
            access: self.access.clone(),
            api: PhantomData,
        }
    }
}

impl<A: Api> Slot<A> {
    pub(crate) fn new(cell: Cell, access: Access) -> Self {
        Self {
            cell,
            access,
            api: PhantomData,
        }
    }
}

impl<A: Api> NamedService for Slot<A> {
    const NAME: &'static str = A::NAME;
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<A: Api> Service<http::Request<Body>> for Slot<A> {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // tonic's generated servers are always ready; readiness is checked per
        // call below.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        match self.cell.get() {
            Some(s) => {
                // A broker forwarding its Kafka client's request has charged
                // that client's request time already.
                let forwarded = req
                    .headers()
                    .contains_key(crate::access::ON_BEHALF_OF_HEADER);
                if let Err(status) = crate::access::admit::admit(&self.access, &mut req) {
                    return Box::pin(async move { Ok(status.into_http()) });
                }
                let mut s = s.clone();
                // request_percentage: handling time, but not waiting (a
                // fetch's long poll, a rebalance, replication for acks=all,
                // a produce held for its byte quota) that is not work done.
                let quotas = self.access.quotas().clone();
                let path = req.uri().path();
                let timed = !quotas.is_empty()
                    && !forwarded
                    && !crate::quota::WAITING_METHODS
                        .iter()
                        .any(|m| path.ends_with(m));
                let caller = req.extensions().get::<crate::access::Caller>();
                let token = caller.and_then(|c| c.token.clone());
                let caller = caller.filter(|c| timed && !c.internal).cloned();
                let access = self.access.clone();
                Box::pin(async move {
                    let started = std::time::Instant::now();
                    let resp = match token {
                        None => s.call(req).await,
                        // A request made with a token ends when the token is
                        // revoked or expires (an open Fetch long poll).
                        Some(token) => tokio::select! {
                            r = s.call(req) => r,
                            _ = access.token_gone(&token) => Ok(sluice_types::ApiError::new(
                                sluice_types::ErrorCode::SaslAuthenticationFailed,
                                "the token was revoked or expired",
                            )
                            .to_status()
                            .into_http()),
                        },
                    };
                    if let Some(c) = caller {
                        let spent = started.elapsed().as_secs_f64();
                        let held = quotas.record(
                            crate::quota::QuotaKind::Request,
                            c.principal.name(),
                            &c.client_id,
                            spent,
                        );
                        tokio::time::sleep(held).await;
                    }
                    resp
                })
            }
            None => Box::pin(async {
                Ok(tonic::Status::unavailable(format!("{} is starting", A::NAME)).into_http())
            }),
        }
    }
}
