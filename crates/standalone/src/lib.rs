//! Standalone mode: the controller, one broker and the coordinator in one
//! process on one port (gRPC and Kafka's protocol both), with the embedded metadata store under the data dir.
//! No other service is needed, so `sluice standalone` is the one command that
//! starts a working Sluice.
//!
//! # Layout
//! - [`StandaloneOptions`]: data dir, listen address, config overrides.
//! - [`Standalone`]: a running node ([`Standalone::start`], [`Standalone::shutdown`]).

use sluice_tls::SecurityProtocol;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sluice_broker::BrokerConfig;
use sluice_controller::ControllerConfig;
use sluice_coordinator::CoordinatorConfig;
use sluice_metastore::{EmbeddedMetadataStore, MetadataStore};
use sluice_server::{Host, names};
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
    /// The listener's protocol (`--listen SSL://...`, `SASL_SSL://...`):
    /// with TLS the certificate and the rest come from the `ssl.*` keys of
    /// the file's `broker:` section, and the node's own services reach each
    /// other over TLS too; with SASL Kafka clients authenticate first.
    pub listen_protocol: SecurityProtocol,
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
            listen_protocol: SecurityProtocol::Plaintext,
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
    /// A client config that reaches this node (its address, and its TLS).
    pub client: sluice_client::ClientConfig,
    shutdown: CancellationToken,
    node: JoinHandle<anyhow::Result<()>>,
}

impl Standalone {
    /// Starts the node (the same `run` of each service as the separate
    /// binaries, on one shared [`Host`]) and returns once it serves requests,
    /// has an active controller, and every partition has a leader again.
    pub async fn start(mut opts: StandaloneOptions) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&opts.data_dir)
            .with_context(|| format!("create data dir {}", opts.data_dir.display()))?;
        // One process: its services reach each other (through its own
        // port) the way its listener speaks.
        let mut security = opts.broker.security.clone();
        let scheme = opts.listen_protocol.to_string();
        security.inter_service = if opts.listen_protocol.is_tls() {
            "SSL"
        } else {
            "PLAINTEXT"
        }
        .into();
        // They dial the node's own listener: the chain still counts, but the
        // certificate need not name the bind address.
        security.endpoint_identification = String::new();
        // No etcd in a standalone node: its etcd.ssl.* keys mean nothing.
        security.etcd_ca = None;
        security.etcd_certificate = None;
        security.etcd_key = None;
        let listener = format!("{scheme}://{}", opts.listen);
        let tls = security.listener(&listener)?;
        let client_tls = security.inter_service()?;
        opts.broker.security = security.clone();
        opts.controller.security = security.clone();
        let access = sluice_server::access::Access::from_config(&security, &listener)?;
        opts.coordinator.security = security;
        let host = Host::bind(
            &listener,
            &[names::BROKER, names::CONTROLLER, names::COORDINATOR],
            tls,
            access,
        )
        .await?;
        let addr = host.local_addr();
        // Bound and serving health already: a failure from here on stops the
        // host, so the port is not left held.
        let prepared = (|| -> anyhow::Result<Arc<dyn MetadataStore>> {
            let advertised = opts.advertised.clone().unwrap_or_else(|| addr.to_string());
            // Checked here so a bad --advertised-listener fails before anything starts.
            sluice_server::config::parse_listener("advertised.listeners", &advertised)?;
            let store: Arc<dyn MetadataStore> = Arc::new(
                EmbeddedMetadataStore::open(&opts.data_dir.join("meta"))
                    .context("open the embedded metadata store")?,
            );
            opts.broker.listeners = format!("{scheme}://{addr}");
            opts.broker.advertised_listeners = Some(advertised.clone());
            opts.broker.log_dirs = opts.data_dir.join("logs").display().to_string();
            opts.controller.controller_id = opts.broker.broker_id;
            opts.controller.listeners = format!("{scheme}://{addr}");
            opts.controller.advertised_listeners = Some(advertised.clone());
            opts.controller.validate()?;
            opts.coordinator.listeners = format!("{scheme}://{addr}");
            opts.coordinator.advertised_listeners = Some(advertised);
            Ok(store)
        })();
        let store = match prepared {
            Ok(s) => s,
            Err(e) => {
                host.fail();
                return Err(e);
            }
        };
        sluice_server::access::follow(host.access(), store.clone(), host.stop_token());

        let shutdown = CancellationToken::new();
        let node = {
            let (host, store, shutdown) = (host.clone(), store.clone(), shutdown.clone());
            let (b, c, k) = (opts.broker, opts.controller, opts.coordinator);
            let stop = shutdown.clone();
            tokio::spawn(async move {
                // One failing service stops the others (the node is one process).
                let guard = |r: anyhow::Result<()>, what: &'static str| {
                    if r.is_err() {
                        stop.cancel();
                    }
                    r.context(what)
                };
                let (b, c, k) = tokio::join!(
                    async {
                        guard(
                            sluice_broker::run(b, store.clone(), host.clone(), shutdown.clone())
                                .await,
                            "broker",
                        )
                    },
                    async {
                        guard(
                            sluice_controller::run(
                                c,
                                store.clone(),
                                host.clone(),
                                shutdown.clone(),
                            )
                            .await,
                            "controller",
                        )
                    },
                    async {
                        guard(
                            sluice_coordinator::run(
                                k,
                                store.clone(),
                                host.clone(),
                                shutdown.clone(),
                            )
                            .await,
                            "group coordinator",
                        )
                    },
                );
                b.and(c).and(k)
            })
        };
        let mut node = node;
        // No deadline: recovering large logs or loading a large
        // `__consumer_offsets` takes what it takes; a service that fails
        // stops the node, and its error is returned.
        tokio::select! {
            _ = host.wait_serving() => {}
            r = &mut node => {
                r.context("standalone node")??;
                anyhow::bail!("the node stopped while starting");
            }
        }
        // On a restart the partitions come back leaderless until the
        // controller sees this broker again; a node that says "ready" should
        // take produce requests at once.
        wait_for_leaders(addr, client_tls.as_ref()).await;
        let client = sluice_client::ClientConfig::new(&addr.to_string()).with_tls(client_tls);
        info!(%addr, data_dir = %opts.data_dir.display(), "sluice standalone node ready");
        Ok(Self {
            addr,
            client,
            shutdown,
            node,
        })
    }

    /// Stops serving (the broker's controlled shutdown first), then flushes
    /// and closes every log.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.node.await.context("standalone node")??;
        info!("sluice standalone node stopped");
        Ok(())
    }

    /// Resolves when the node stops on its own (a service failed).
    pub async fn stopped(&mut self) -> anyhow::Result<()> {
        (&mut self.node).await.context("standalone node")?
    }
}

/// Waits (at most 30 s) until Metadata shows a leader for every partition.
async fn wait_for_leaders(addr: SocketAddr, tls: Option<&sluice_tls::ClientTls>) {
    use sluice_proto::broker::MetadataRequest;
    use sluice_proto::broker::broker_client::BrokerClient;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline {
        let leaderless = async {
            let endpoint =
                tonic::transport::Endpoint::from_shared(format!("http://{addr}")).ok()?;
            let mut c = BrokerClient::new(sluice_tls::connect_channel(endpoint, tls).await.ok()?);
            let md = c
                .metadata(MetadataRequest {
                    include_internal: true,
                    ..Default::default()
                })
                .await
                .ok()?
                .into_inner();
            Some(
                md.topics
                    .iter()
                    .flat_map(|t| &t.partitions)
                    .filter(|p| p.leader_id < 0)
                    .count(),
            )
        }
        .await;
        if leaderless == Some(0) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
