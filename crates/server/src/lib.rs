//! The gRPC server plumbing every Sluice service shares, so a broker, a
//! controller, a coordinator and the standalone node look alike to operators:
//!
//! - [`server_builder`] and [`incoming`]: transport settings (HTTP/2 windows,
//!   TCP_NODELAY) and per-RPC metrics ([`rpc_metrics`]);
//! - [`Ops`]: the standard `grpc.health.v1` service, reporting NOT_SERVING
//!   until the service says it is ready, and gRPC server reflection (v1 and
//!   v1alpha) listing exactly the services the process serves;
//! - [`metrics`]: the Prometheus endpoint behind `--metrics-listen`;
//! - [`demux`]: one port for gRPC and Kafka's protocol, told apart by the
//!   first byte a client sends;
//! - [`host`]: the port a process serves on, shared by the services it runs
//!   (each service crate's `run` takes one);
//! - [`config`]: YAML config loading with errors that name the bad key;
//! - [`security`]: the TLS settings every service takes;
//! - [`runtime`]: logging setup and the Ctrl-C / SIGTERM shutdown token.

pub mod access;
pub mod config;
pub mod demux;
pub mod host;
pub mod late;
pub mod metrics;
pub mod quota;
pub mod rpc_metrics;
pub mod runtime;
pub mod security;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tonic::transport::server::Router;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tower::layer::util::{Identity, Stack};

pub use host::Host;
pub use late::{Api, BrokerApi, ControllerApi, CoordinatorApi, Slot};
pub use rpc_metrics::RpcMetricsLayer;

/// The server builder type every service uses (see [`server_builder`]).
pub type ServerBuilder = tonic::transport::Server<Stack<RpcMetricsLayer, Identity>>;

/// A router from [`ServerBuilder`].
pub type ServerRouter = Router<Stack<RpcMetricsLayer, Identity>>;

/// A gRPC server builder with the transport settings every Sluice service uses:
/// HTTP/2 windows large enough for multi-MiB batches and TCP_NODELAY, because
/// the defaults (64 KiB windows) cap throughput far below the disk's; and the
/// per-RPC request counters and latency histograms.
pub fn server_builder() -> ServerBuilder {
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .initial_stream_window_size(Some(16 << 20))
        .initial_connection_window_size(Some(64 << 20))
        .max_concurrent_streams(Some(1024))
        // Lets clients send a multi-MiB produce in few large frames instead of
        // 16 KiB ones (fewer syscalls and wake-ups per request).
        .max_frame_size(Some(1 << 20))
        .layer(RpcMetricsLayer)
}

/// The accepted-connection stream for a bound listener, with TCP_NODELAY set.
/// tonic applies `Server::tcp_nodelay` only to addresses it binds itself, so a
/// listener we bind (to learn its port) must set it here, or Nagle's algorithm
/// delays small responses by ~40 ms.
pub fn incoming(listener: tokio::net::TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// A spawned server, as [`drain`] takes it.
pub type ServerTask = tokio::task::JoinHandle<Result<(), tonic::transport::Error>>;

/// How long a stopping server waits for open connections to finish.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Waits for a server to drain after its shutdown signal fired, at most
/// [`DRAIN_TIMEOUT`]: tonic waits for every connection to close, and a
/// long-lived stream (a health Watch, a reflection session) never does, so
/// without a bound an orchestrator's grace period runs out and the process is
/// killed before it flushes its logs.
pub async fn drain(server: ServerTask) -> anyhow::Result<()> {
    match tokio::time::timeout(DRAIN_TIMEOUT, server).await {
        Ok(served) => Ok(served??),
        Err(_) => {
            tracing::warn!(
                "connections still open {DRAIN_TIMEOUT:?} after shutdown began; stopping anyway"
            );
            Ok(())
        }
    }
}

/// Serves until `stop` fires (or the server fails), then [`drain`]s.
pub async fn drain_after(mut server: ServerTask, stop: &CancellationToken) -> anyhow::Result<()> {
    tokio::select! {
        _ = stop.cancelled() => drain(server).await,
        served = &mut server => Ok(served??),
    }
}

/// Health and reflection for one process.
#[derive(Clone)]
pub struct Ops {
    reporter: HealthReporter,
    /// Fully-qualified names of the services this process serves; each gets a
    /// health status of its own beside the overall one ("").
    services: Arc<Vec<String>>,
}

impl Ops {
    /// Adds the health service (every status NOT_SERVING until
    /// [`Ops::set_serving`]) and reflection for `services` (fully-qualified
    /// names, e.g. `sluice.broker.v1.Broker`) to a new router.
    pub async fn router(
        builder: &mut ServerBuilder,
        services: &[&str],
    ) -> anyhow::Result<(ServerRouter, Ops)> {
        let (reporter, health) = tonic_health::server::health_reporter();
        let ops = Ops {
            reporter,
            services: Arc::new(services.iter().map(|s| s.to_string()).collect()),
        };
        ops.set_serving(false).await;
        let v1 = reflection(services).build_v1()?;
        let v1alpha = reflection(services).build_v1alpha()?;
        let router = builder
            .add_service(health)
            .add_service(v1)
            .add_service(v1alpha);
        Ok((router, ops))
    }

    /// Sets the status of one extra named check (e.g. `...Broker.InSync`),
    /// beside the overall one; it starts out unknown to clients (NOT_FOUND)
    /// until first set.
    pub async fn set_check(&self, name: &str, serving: bool) {
        let status = if serving {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        self.reporter.set_service_status(name, status).await;
    }

    /// Sets the overall status only.
    pub async fn set_overall(&self, serving: bool) {
        let status = if serving {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        self.reporter.set_service_status("", status).await;
    }

    /// Sets the overall status and every service's.
    pub async fn set_serving(&self, serving: bool) {
        let status = if serving {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        self.reporter.set_service_status("", status).await;
        for s in self.services.iter() {
            self.reporter.set_service_status(s, status).await;
        }
    }

    /// Polls `ready` and mirrors it into the health statuses until `stop`
    /// fires, then reports NOT_SERVING (so load balancers drain the process
    /// before it exits). Polling, not events: readiness has several sources
    /// (a lease, loaded metadata, loaded partitions) and a probe is cheap.
    pub fn follow<F, Fut>(&self, ready: F, stop: CancellationToken) -> tokio::task::JoinHandle<()>
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = bool> + Send,
    {
        self.spawn_follow(None, ready, stop)
    }

    /// Like [`Ops::follow`], for one extra named check ([`Ops::set_check`]).
    pub fn follow_check<F, Fut>(
        &self,
        name: &'static str,
        ready: F,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()>
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = bool> + Send,
    {
        self.spawn_follow(Some(name), ready, stop)
    }

    fn spawn_follow<F, Fut>(
        &self,
        check: Option<&'static str>,
        ready: F,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()>
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = bool> + Send,
    {
        let ops = self.clone();
        let set = move |ops: Ops, serving: bool| async move {
            match check {
                None => ops.set_serving(serving).await,
                Some(name) => ops.set_check(name, serving).await,
            }
        };
        tokio::spawn(async move {
            let mut last = None;
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                // A check that hangs (etcd unreachable) means not ready, and
                // must not hold up shutdown.
                let now = tokio::select! {
                    _ = stop.cancelled() => break,
                    r = tokio::time::timeout(Duration::from_secs(2), ready()) => r.unwrap_or(false),
                };
                if last != Some(now) {
                    tracing::info!(
                        check = check.unwrap_or(""),
                        serving = now,
                        "health status changed"
                    );
                    set(ops.clone(), now).await;
                    last = Some(now);
                }
            }
            set(ops, false).await;
        })
    }
}

fn reflection(services: &[&str]) -> tonic_reflection::server::Builder<'static> {
    let mut b = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(sluice_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .with_service_name("grpc.health.v1.Health")
        .with_service_name("grpc.reflection.v1.ServerReflection")
        .with_service_name("grpc.reflection.v1alpha.ServerReflection");
    for s in services {
        b = b.with_service_name(*s);
    }
    b
}

/// Fully-qualified gRPC service names, for [`Ops::router`].
pub mod names {
    pub const BROKER: &str = "sluice.broker.v1.Broker";
    pub const CONTROLLER: &str = "sluice.controller.v1.Controller";
    pub const COORDINATOR: &str = "sluice.coordinator.v1.GroupCoordinator";
    /// A broker's health check that is SERVING only while it is in the ISR
    /// of every partition it hosts (for rolling-update readiness probes).
    pub const BROKER_IN_SYNC: &str = "sluice.broker.v1.Broker.InSync";
}
