//! Standalone mode: the controller, one broker and the coordinator in one
//! process on one port (gRPC and Kafka's protocol both), with the embedded metadata store under the data dir.
//! No other service is needed, so `sluice standalone` is the one command that
//! starts a working Sluice.
//!
//! # Layout
//! - [`StandaloneOptions`]: data dir, listen address, config overrides.
//! - [`Standalone`]: a running node ([`Standalone::start`], [`Standalone::shutdown`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sluice_broker::{Broker, BrokerConfig};
use sluice_controller::{Controller, ControllerConfig, ControllerService};
use sluice_coordinator::{Coordinator, CoordinatorConfig, CoordinatorService};
use sluice_metastore::{EmbeddedMetadataStore, MetadataStore};
use sluice_server::{Ops, names};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::info;

/// What `sluice standalone` needs.
#[derive(Debug, Clone)]
pub struct StandaloneOptions {
    /// Everything lives here: `logs/` (partition logs) and `meta/` (metadata).
    pub data_dir: PathBuf,
    /// Where the gRPC server binds; port 0 picks a free port.
    pub listen: SocketAddr,
    /// The address clients are told to use; defaults to the bound address.
    pub advertised: Option<String>,
    /// Broker settings (Kafka keys); `broker.id`, `listeners` and `log.dirs`
    /// are set by standalone mode.
    pub broker: BrokerConfig,
    /// Controller settings (`num.partitions`, `default.replication.factor`, ...).
    pub controller: ControllerConfig,
    /// Group coordinator settings (`group.initial.rebalance.delay.ms`, ...);
    /// its id, listener and metadata store are set by standalone mode.
    pub coordinator: CoordinatorConfig,
}

/// The standalone YAML file: a `broker:` section and a `controller:` section,
/// each with the keys of the separate services (see deploy/config/standalone.yaml).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StandaloneFile {
    pub broker: BrokerConfig,
    pub controller: ControllerConfig,
    pub coordinator: CoordinatorConfig,
}

impl StandaloneOptions {
    /// Applies a standalone YAML config file.
    pub fn with_file(mut self, path: &std::path::Path) -> anyhow::Result<Self> {
        let file: StandaloneFile = sluice_server::config::load_yaml(path)?;
        file.controller.validate()?;
        self.broker = file.broker;
        self.controller = file.controller;
        self.coordinator = file.coordinator;
        Ok(self)
    }

    pub fn new(data_dir: impl Into<PathBuf>, listen: SocketAddr) -> Self {
        Self {
            data_dir: data_dir.into(),
            listen,
            advertised: None,
            broker: BrokerConfig::default(),
            controller: standalone_controller_defaults(),
            coordinator: CoordinatorConfig::default(),
        }
    }
}

/// One broker: `__consumer_offsets` gets one replica (no warning about
/// capping the cluster default of 3).
fn standalone_controller_defaults() -> ControllerConfig {
    ControllerConfig {
        offsets_topic_replication_factor: 1,
        ..Default::default()
    }
}

/// A running standalone node.
pub struct Standalone {
    /// The bound address (useful with port 0).
    pub addr: SocketAddr,
    pub broker: Arc<Broker>,
    pub controller: Arc<Controller>,
    pub coordinator: Arc<Coordinator>,
    shutdown: CancellationToken,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
    kafka: JoinHandle<()>,
    controller_task: JoinHandle<()>,
}

impl Standalone {
    /// Starts the node and returns once it serves requests and has an active
    /// controller.
    pub async fn start(mut opts: StandaloneOptions) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&opts.data_dir)
            .with_context(|| format!("create data dir {}", opts.data_dir.display()))?;
        let listener = tokio::net::TcpListener::bind(opts.listen)
            .await
            .with_context(|| format!("bind {}", opts.listen))?;
        let addr = listener.local_addr()?;
        let advertised = opts.advertised.clone().unwrap_or_else(|| addr.to_string());
        let store: Arc<dyn MetadataStore> = Arc::new(
            EmbeddedMetadataStore::open(&opts.data_dir.join("meta"))
                .context("open the embedded metadata store")?,
        );
        let shutdown = CancellationToken::new();

        opts.broker.listeners = addr.to_string();
        opts.broker.advertised_listeners = Some(advertised.clone());
        opts.broker.log_dirs = opts.data_dir.join("logs").display().to_string();
        let (host, port) = sluice_broker::config::host_port(&advertised)
            .map_err(|m| anyhow::anyhow!("advertised address: {m}"))?;
        opts.controller.controller_id = opts.broker.broker_id;
        opts.controller.advertised_host = host.clone();
        opts.controller.advertised_port = port as i32;
        opts.controller.validate()?;

        let controller = Controller::new(store.clone(), opts.controller.clone());
        let controller_task = tokio::spawn(controller.clone().run(shutdown.child_token()));
        let broker = Broker::start(opts.broker.clone(), store.clone(), shutdown.child_token())
            .await
            .context("start broker")?;

        opts.coordinator.listeners = addr.to_string();
        opts.coordinator.advertised_host = Some(host);
        opts.coordinator.advertised_port = Some(port);
        let coordinator = Coordinator::start(
            opts.coordinator.clone(),
            store.clone(),
            Some(advertised.clone()),
            shutdown.child_token(),
        )
        .await
        .context("start group coordinator")?;

        // gRPC and Kafka's protocol share the port (see sluice_server::demux).
        let (grpc_incoming, kafka_incoming) =
            sluice_server::demux::split(listener, shutdown.child_token());
        let mut builder = sluice_server::server_builder();
        let (router, ops) = Ops::router(
            &mut builder,
            &[names::BROKER, names::CONTROLLER, names::COORDINATOR],
        )
        .await?;
        let server = router
            .add_service(broker.service().into_server())
            .add_service(ControllerService::new(controller.clone()).into_server())
            .add_service(CoordinatorService::new(coordinator.clone()).into_server())
            .serve_with_incoming_shutdown(grpc_incoming, shutdown.child_token().cancelled_owned());
        let server = tokio::spawn(server);
        let kafka = tokio::spawn(sluice_broker::kafka::serve(
            broker.service(),
            kafka_incoming,
            shutdown.child_token(),
        ));
        let (b, c, k) = (broker.clone(), controller.clone(), coordinator.clone());
        ops.follow(
            move || {
                let ready = b.is_ready() && c.is_active() && k.is_ready();
                async move { ready }
            },
            shutdown.clone(),
        );
        tokio::time::timeout(Duration::from_secs(30), controller.wait_active())
            .await
            .context("controller election did not finish")?;
        // On a restart the partitions come back leaderless until the
        // controller sees this broker again; a node that says "ready" should
        // take produce requests at once.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while broker.leaderless_partitions() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        info!(%addr, data_dir = %opts.data_dir.display(), "sluice standalone node ready");
        Ok(Self {
            addr,
            broker,
            controller,
            coordinator,
            shutdown,
            server,
            kafka,
            controller_task,
        })
    }

    /// Stops serving, then flushes and closes every log.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        let served = self.server.await;
        let _ = tokio::time::timeout(sluice_server::DRAIN_TIMEOUT, self.kafka).await;
        let _ = self.controller_task.await;
        self.coordinator.close().await;
        self.broker.close().await;
        info!("sluice standalone node stopped");
        served?.context("gRPC server")?;
        Ok(())
    }
}
