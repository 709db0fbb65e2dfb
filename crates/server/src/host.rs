//! [`Host`]: the port a process serves on, shared by the services it runs.
//!
//! Every service crate exposes `run(config, store, host, shutdown)`: a
//! separate binary gives it a host of its own, `sluice standalone` gives the
//! broker, the controller and the coordinator one host, so all four run the
//! same startup and shutdown code. A host:
//!
//! - binds the listener and splits it between gRPC and Kafka's protocol
//!   ([`crate::demux`]); the broker takes the Kafka half;
//! - serves health and reflection from the moment it binds, and each named
//!   service's gRPC API from a slot that answers UNAVAILABLE until the
//!   service fills it ([`Host::serve`]);
//! - reports health: each service SERVING while its own readiness check
//!   holds, the process overall while all of them do;
//! - stops serving only once every service has [`Host::release`]d it, so a
//!   broker's controlled shutdown still reaches the controller it shares a
//!   port with; then drains connections for at most [`crate::DRAIN_TIMEOUT`].

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use tonic::body::Body;
use tonic::server::NamedService;

use crate::access::Access;
use crate::demux::KafkaIncoming;
use crate::late::{BrokerApi, Cell, ControllerApi, CoordinatorApi, Slot};
use crate::{DRAIN_TIMEOUT, Ops};

type Check = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync>;

/// A shared handle on the port (cheap to clone).
#[derive(Clone)]
pub struct Host {
    inner: Arc<Inner>,
}

struct Inner {
    addr: SocketAddr,
    services: Vec<&'static str>,
    ops: Ops,
    /// Each service's slot, by its gRPC name.
    slots: Vec<(&'static str, Cell)>,
    access: Access,
    kafka: Mutex<Option<KafkaIncoming>>,
    /// Per-service readiness checks, and extra named checks.
    ready: Mutex<Vec<(&'static str, Check)>>,
    checks: Mutex<Vec<(&'static str, Check)>>,
    released: Mutex<usize>,
    /// Fires when every service released the host (or the server failed):
    /// the server stops accepting and drains.
    stop: CancellationToken,
    /// The server's outcome once drained.
    done: watch::Sender<Option<Result<(), String>>>,
    /// Whether every service is ready (the overall health status).
    serving: watch::Sender<bool>,
}

impl Host {
    /// Binds `listen` (`host:port`, an optional `scheme://`) for `services`
    /// (fully qualified gRPC names, [`crate::names`]); TLS when `tls` is
    /// given ([`crate::security::SecurityConfig::listener`]).
    pub async fn bind(
        listen: &str,
        services: &[&'static str],
        tls: Option<sluice_tls::ListenerTls>,
        access: Access,
    ) -> anyhow::Result<Self> {
        let addr = crate::config::bind_address(listen);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("bind {addr}"))?;
        let local = listener.local_addr()?;
        let stop = CancellationToken::new();
        let secure = tls.is_some();
        let (grpc, kafka) = crate::demux::split(listener, tls, stop.clone());
        let mut builder = crate::server_builder();
        let (mut router, ops) = Ops::router(&mut builder, services).await?;
        let mut slots = Vec::with_capacity(services.len());
        for &name in services {
            let cell = Cell::default();
            router = match name {
                crate::names::BROKER => {
                    router.add_service(Slot::<BrokerApi>::new(cell.clone(), access.clone()))
                }
                crate::names::CONTROLLER => {
                    router.add_service(Slot::<ControllerApi>::new(cell.clone(), access.clone()))
                }
                crate::names::COORDINATOR => {
                    router.add_service(Slot::<CoordinatorApi>::new(cell.clone(), access.clone()))
                }
                other => anyhow::bail!("no gRPC service is named {other}"),
            };
            slots.push((name, cell));
        }
        let host = Host {
            inner: Arc::new(Inner {
                addr: local,
                services: services.to_vec(),
                ops,
                slots,
                access,
                kafka: Mutex::new(Some(kafka)),
                ready: Mutex::new(Vec::new()),
                checks: Mutex::new(Vec::new()),
                released: Mutex::new(0),
                stop,
                done: watch::Sender::new(None),
                serving: watch::Sender::new(false),
            }),
        };
        host.start(
            router.serve_with_incoming_shutdown(grpc, host.inner.stop.clone().cancelled_owned()),
        );
        tracing::info!(listen = %local, services = ?services, tls = secure, "listening");
        Ok(host)
    }

    /// What a service of a cluster (a separate binary) does before it runs:
    /// reads its TLS files (a bad one stops the start, not a later call),
    /// binds its port for `service` (health answers while etcd is still
    /// being reached), then connects to etcd. `None` when `shutdown` fires
    /// first.
    pub async fn bind_for_cluster(
        service: &'static str,
        listeners: &str,
        security: &crate::security::SecurityConfig,
        etcd_endpoints: &str,
        cluster_name: &str,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Option<(Host, Arc<dyn sluice_metastore::MetadataStore>)>> {
        security.inter_service()?;
        let access = Access::from_config(security, listeners)?;
        let host = Host::bind(
            listeners,
            &[service],
            security.listener(listeners)?,
            access.clone(),
        )
        .await?;
        let etcd_tls = security.etcd_tls();
        let connect = sluice_metastore::EtcdMetadataStore::connect_cluster(
            etcd_endpoints,
            cluster_name,
            etcd_tls.as_ref(),
        );
        let store: Arc<dyn sluice_metastore::MetadataStore> = tokio::select! {
            s = connect => Arc::new(s?),
            _ = shutdown.cancelled() => return Ok(None),
        };
        crate::access::follow(&access, store.clone(), host.stop_token());
        Ok(Some((host, store)))
    }

    /// Who may do what, for the services on this host.
    pub fn access(&self) -> &Access {
        &self.inner.access
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// Serves a service's gRPC API in the slot named at [`Host::bind`]
    /// (until now it answered UNAVAILABLE).
    pub fn serve<S>(&self, service: S)
    where
        S: NamedService
            + tower::Service<
                http::Request<Body>,
                Response = http::Response<Body>,
                Error = std::convert::Infallible,
            > + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        match self.inner.slots.iter().find(|(name, _)| *name == S::NAME) {
            Some((_, cell)) => {
                let _ = cell.set(tower::util::BoxCloneSyncService::new(service));
            }
            None => tracing::error!(service = S::NAME, "this host has no slot for the service"),
        }
    }

    /// The connections that speak Kafka's protocol (the broker takes them;
    /// on a host without a broker they are closed).
    pub fn take_kafka(&self) -> Option<KafkaIncoming> {
        self.inner.kafka.lock().take()
    }

    /// Reports `service` SERVING while `ready` holds (polled every 500 ms).
    pub fn ready_when<F, Fut>(&self, service: &'static str, ready: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = bool> + Send + 'static,
    {
        self.inner
            .ready
            .lock()
            .push((service, Arc::new(move || Box::pin(ready()))));
    }

    /// An extra named health check beside the services' (e.g. the broker's
    /// `InSync`).
    pub fn check_when<F, Fut>(&self, name: &'static str, ready: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = bool> + Send + 'static,
    {
        self.inner
            .checks
            .lock()
            .push((name, Arc::new(move || Box::pin(ready()))));
    }

    /// Resolves once every service is ready (the overall status SERVING).
    pub async fn wait_serving(&self) {
        let mut rx = self.inner.serving.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Resolves when the host stops serving (every service released it, or
    /// the server failed): a service waiting for its shutdown signal should
    /// also wait for this.
    pub fn stopping(&self) -> WaitForCancellationFuture<'_> {
        self.inner.stop.cancelled()
    }

    pub fn is_stopping(&self) -> bool {
        self.inner.stop.is_cancelled()
    }

    /// A token that fires when the host stops serving (for tasks that serve
    /// connections, like the Kafka listener).
    pub fn stop_token(&self) -> CancellationToken {
        self.inner.stop.child_token()
    }

    /// This service no longer needs the port. Once every service has said so
    /// the host reports NOT_SERVING, stops accepting and drains; this then
    /// returns the server's outcome (every caller gets it).
    pub async fn release(&self) -> anyhow::Result<()> {
        {
            let mut released = self.inner.released.lock();
            *released += 1;
            if *released >= self.inner.services.len() {
                self.inner.stop.cancel();
            }
        }
        let mut rx = self.inner.done.subscribe();
        let done = rx.wait_for(|d| d.is_some()).await;
        match done.as_deref() {
            Ok(Some(Err(e))) => Err(anyhow::anyhow!("gRPC server: {e}")),
            _ => Ok(()),
        }
    }

    /// A service failed: stop the host now (the others see
    /// [`Host::stopping`] and shut down) without waiting for the drain.
    pub fn fail(&self) {
        self.inner.stop.cancel();
    }

    fn start<F>(&self, serve: F)
    where
        F: Future<Output = Result<(), tonic::transport::Error>> + Send + 'static,
    {
        let stop = self.inner.stop.clone();
        let mut server = tokio::spawn(serve);
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let result = tokio::select! {
                r = &mut server => {
                    // Failed (or ended) on its own: stop everything.
                    inner.stop.cancel();
                    r
                }
                _ = stop.cancelled() => match tokio::time::timeout(DRAIN_TIMEOUT, &mut server).await {
                    Ok(r) => r,
                    Err(_) => {
                        tracing::warn!(
                            "connections still open {DRAIN_TIMEOUT:?} after shutdown began; stopping anyway"
                        );
                        server.abort();
                        Ok(Ok(()))
                    }
                },
            };
            let result = match result {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            inner.done.send_replace(Some(result));
        });
        // Kafka connections on a host without a broker: nobody takes them.
        if !self.inner.services.contains(&crate::names::BROKER) {
            let leftover = self.inner.kafka.lock().take();
            let stop = self.inner.stop.clone();
            if let Some(mut rx) = leftover {
                tokio::spawn(async move {
                    while let Some((conn, peer)) = tokio::select! {
                        c = rx.recv() => c,
                        _ = stop.cancelled() => None,
                    } {
                        tracing::debug!(%peer, "closing a Kafka-protocol connection: this process serves no broker");
                        drop(conn);
                    }
                });
            }
        }
        self.spawn_health();
    }

    /// One loop mirrors every readiness check into the health statuses until
    /// the host stops, then reports NOT_SERVING so load balancers drain it.
    fn spawn_health(&self) {
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let mut last: std::collections::HashMap<&'static str, bool> = Default::default();
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tokio::select! {
                    _ = inner.stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let ready: Vec<_> = inner.ready.lock().clone();
                let checks: Vec<_> = inner.checks.lock().clone();
                let mut all = ready.len() == inner.services.len();
                let named = ready
                    .iter()
                    .map(|(n, c)| (*n, c, true))
                    .chain(checks.iter().map(|(n, c)| (*n, c, false)));
                for (name, check, is_service) in named {
                    // A check that hangs (etcd unreachable) means not ready,
                    // and must not hold up shutdown.
                    let now = tokio::select! {
                        _ = inner.stop.cancelled() => false,
                        r = tokio::time::timeout(Duration::from_secs(2), check()) => r.unwrap_or(false),
                    };
                    if inner.stop.is_cancelled() {
                        break;
                    }
                    if is_service {
                        all &= now;
                    }
                    if last.insert(name, now) != Some(now) {
                        tracing::info!(check = name, serving = now, "health status changed");
                        inner.ops.set_check(name, now).await;
                    }
                }
                if inner.stop.is_cancelled() {
                    break;
                }
                if last.insert("", all) != Some(all) {
                    inner.ops.set_overall(all).await;
                    inner.serving.send_replace(all);
                }
            }
            inner.serving.send_replace(false);
            inner.ops.set_serving(false).await;
            let checks: Vec<_> = inner.checks.lock().clone();
            for (name, _) in checks {
                inner.ops.set_check(name, false).await;
            }
        });
    }
}
