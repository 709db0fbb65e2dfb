//! A real local Sluice cluster for tests: a throwaway etcd, controllers and
//! brokers as separate OS processes on 127.0.0.1 ports, with hooks to
//! `kill -9`, stop and restart any of them.
//!
//! # Layout
//! - [`TestCluster`]: builder, process table, kill/restart, bootstrap address.
//! - [`chaos`]: the chaos run: a numbered acks=all stream through broker and
//!   controller kills, then a check for lost, duplicated and reordered records.
//!
//! The service binaries (`sluice-broker`, `sluice-controller`) must be built
//! first (`cargo build --workspace --bins`, as `scripts/test.sh` does); they are
//! looked up next to the test executable's `deps/` directory.

pub mod chaos;
pub mod tls;

use sluice_tls::testing::Validity;
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use sluice_client::{Admin, ClientConfig};
use sluice_metastore::testsuite::EtcdServer;

/// Settings for [`TestCluster::start`].
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    pub brokers: usize,
    pub controllers: usize,
    /// Group coordinators (`coordinator-1` ...).
    pub coordinators: usize,
    /// Coordinators' `group.initial.rebalance.delay.ms`.
    pub group_initial_rebalance_delay_ms: u64,
    /// Coordinators' `group.consumer.heartbeat.interval.ms` and
    /// `group.consumer.session.timeout.ms` (consumer-protocol groups).
    pub group_consumer_heartbeat_interval_ms: u64,
    pub group_consumer_session_timeout_ms: u64,
    /// Controllers' `offsets.topic.num.partitions`.
    pub offsets_topic_num_partitions: i32,
    /// Registration lease TTL of brokers and controllers (ms).
    pub lease_ms: u64,
    /// `replica.lag.time.max.ms` of the brokers.
    pub replica_lag_time_max_ms: u64,
    /// `min.insync.replicas` broker default.
    pub min_insync_replicas: i32,
    /// Controllers' `leader.imbalance.check.interval.seconds` (Kafka's 300).
    pub leader_imbalance_check_interval_seconds: u64,
    /// Brokers' `log.flush.interval.ms` (unset: no periodic flush, as Kafka).
    /// Leader-epoch checkpoints reach the disk at a flush.
    pub log_flush_interval_ms: Option<u64>,
    /// Controllers' `crash.detection.enable` (on, as in production): a
    /// killed process's lease is revoked at once instead of expiring.
    pub crash_detection: bool,
    /// Every process serves mTLS (`SSL://`, `ssl.client.auth=required`) and
    /// reaches the others over TLS; the test's clients use TLS too.
    pub tls: bool,
    /// With `tls`: ACLs on in every process, and the processes' and the
    /// clients' certificates (`User:CN=<name>`) the only super users.
    pub acls: bool,
}

impl Default for ClusterSpec {
    fn default() -> Self {
        Self {
            brokers: 3,
            controllers: 2,
            coordinators: 0,
            group_initial_rebalance_delay_ms: 0,
            group_consumer_heartbeat_interval_ms: 5000,
            group_consumer_session_timeout_ms: 45_000,
            offsets_topic_num_partitions: 50,
            lease_ms: 2000,
            replica_lag_time_max_ms: 4000,
            min_insync_replicas: 1,
            leader_imbalance_check_interval_seconds: 300,
            log_flush_interval_ms: None,
            crash_detection: true,
            tls: false,
            acls: false,
        }
    }
}

struct Proc {
    /// The gRPC port and the Prometheus (`--metrics-listen`) port.
    port: u16,
    metrics_port: u16,
    args: Vec<String>,
    env: Vec<(String, String)>,
    bin: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// Why a cluster did not start.
enum StartError {
    /// A process exited at start (most likely a port taken meanwhile).
    Exited(anyhow::Error),
    Other(anyhow::Error),
}

/// A running cluster. Dropping it kills every process.
pub struct TestCluster {
    pub etcd: EtcdServer,
    pub dir: tempfile::TempDir,
    procs: BTreeMap<String, Proc>,
    broker_ports: BTreeMap<usize, u16>,
    /// The test CA and every process's certificate (see [`tls`]).
    certs: PathBuf,
    /// The CA itself, for tests that need another certificate from it.
    ca: std::sync::Arc<sluice_tls::testing::TestCa>,
    /// Whether [`TestCluster::client_config`] uses TLS.
    tls_clients: bool,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Finds a workspace binary next to the running test binary.
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .context("locate the target directory")?;
    let path = dir.join(name);
    if !path.exists() {
        bail!(
            "{} is not built: run `cargo build --workspace --bins` (scripts/test.sh does) before the cluster tests",
            path.display()
        );
    }
    Ok(path)
}

impl TestCluster {
    /// Starts etcd, the controllers and the brokers, and waits until the
    /// cluster has an active controller and every broker registered.
    pub async fn start(spec: ClusterSpec) -> anyhow::Result<Self> {
        // Ports are picked by binding port 0 and letting go, so a test
        // running beside this one can take one first: a process that exits
        // at start (its bind failed) gets the whole cluster started again on
        // fresh ports, rather than failing the test.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Self::start_once(spec.clone()).await {
                Ok(c) => return Ok(c),
                Err(StartError::Exited(e)) if attempt < 3 => {
                    eprintln!(
                        "a cluster process exited at start ({e}); starting again on fresh ports"
                    );
                }
                Err(StartError::Exited(e) | StartError::Other(e)) => return Err(e),
            }
        }
    }

    async fn start_once(spec: ClusterSpec) -> Result<Self, StartError> {
        Self::build(spec)
            .await
            .map_err(StartError::Other)?
            .await_ready()
            .await
    }

    async fn await_ready(mut self) -> Result<Self, StartError> {
        let names: Vec<String> = self.procs.keys().cloned().collect();
        for n in names {
            self.spawn(&n).map_err(StartError::Other)?;
        }
        let brokers = self.broker_ports.len();
        let ready = self.wait_ready(brokers).await;
        // A standby controller or coordinator whose bind failed is not
        // something wait_ready sees, but a test that kills the active one
        // needs it: any process gone counts as a failed start.
        let exited: Vec<String> = self
            .procs
            .iter_mut()
            .filter_map(|(n, p)| {
                let gone = p
                    .child
                    .as_mut()
                    .is_some_and(|c| c.try_wait().ok().flatten().is_some());
                gone.then(|| n.clone())
            })
            .collect();
        match ready {
            Ok(()) if exited.is_empty() => Ok(self),
            Ok(()) => Err(StartError::Exited(anyhow::anyhow!(
                "{} exited at start\n{}",
                exited.join(", "),
                self.logs_tail()
            ))),
            Err(e) if !exited.is_empty() => Err(StartError::Exited(e)),
            Err(e) => Err(StartError::Other(e)),
        }
    }

    /// Writes the configs and the process table (nothing started yet).
    async fn build(spec: ClusterSpec) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let ca = tls::new_ca(&dir.path().join("certs"));
        let etcd = if spec.tls {
            let f = ca.issue(
                "etcd",
                "etcd",
                &["127.0.0.1", "localhost"],
                Validity::Current,
            );
            let path = |p: Option<PathBuf>| p.expect("issued");
            EtcdServer::start_tls(&path(f.certificate), &path(f.key), &path(f.ca))
        } else {
            EtcdServer::start()
        };
        let broker_bin = binary("sluice-broker")?;
        let controller_bin = binary("sluice-controller")?;
        let cluster_name = format!("t{}", std::process::id());
        let mut procs = BTreeMap::new();
        let mut broker_ports = BTreeMap::new();
        for i in 1..=spec.controllers {
            let port = free_port()?;
            let cfg = dir.path().join(format!("controller-{i}.yaml"));
            std::fs::write(
                &cfg,
                format!(
                    "controller.id: {}\nlisteners: 127.0.0.1:{port}\nadvertised.listeners: 127.0.0.1:{port}\n\
                     etcd.endpoints: {}\ncluster.name: {cluster_name}\ncontroller.lease.ms: {}\n\
                     leader.imbalance.check.interval.seconds: {}\noffsets.topic.num.partitions: {}\n\
                     crash.detection.enable: {}\n",
                    1000 + i,
                    etcd.endpoint(),
                    spec.lease_ms,
                    spec.leader_imbalance_check_interval_seconds,
                    spec.offsets_topic_num_partitions,
                    spec.crash_detection
                ),
            )?;
            procs.insert(
                format!("controller-{i}"),
                Proc {
                    port,
                    metrics_port: free_port()?,
                    args: vec!["--config".into(), cfg.display().to_string()],
                    env: Vec::new(),
                    bin: controller_bin.clone(),
                    log: dir.path().join(format!("controller-{i}.log")),
                    child: None,
                },
            );
        }
        for i in 1..=spec.brokers {
            let port = free_port()?;
            broker_ports.insert(i, port);
            let cfg = dir.path().join(format!("broker-{i}.yaml"));
            let data = dir.path().join(format!("data/broker-{i}"));
            std::fs::write(
                &cfg,
                format!(
                    "broker.id: {i}\nlisteners: 127.0.0.1:{port}\nlog.dirs: {}\netcd.endpoints: {}\n\
                     cluster.name: {cluster_name}\nmin.insync.replicas: 1\n",
                    data.display(),
                    etcd.endpoint(),
                ),
            )?;
            procs.insert(
                format!("broker-{i}"),
                Proc {
                    port,
                    metrics_port: free_port()?,
                    // Some keys come from the environment and from --override,
                    // so every run exercises the config layering.
                    args: vec![
                        "--config".into(),
                        cfg.display().to_string(),
                        "--override".into(),
                        format!("min.insync.replicas={}", spec.min_insync_replicas),
                        "--override".into(),
                        format!("broker.lease.ms={}", spec.lease_ms),
                    ]
                    .into_iter()
                    .chain(spec.log_flush_interval_ms.into_iter().flat_map(|ms| {
                        [
                            "--override".to_string(),
                            format!("log.flush.interval.ms={ms}"),
                        ]
                    }))
                    .collect(),
                    env: vec![(
                        "SLUICE_REPLICA_LAG_TIME_MAX_MS".into(),
                        spec.replica_lag_time_max_ms.to_string(),
                    )],
                    bin: broker_bin.clone(),
                    log: dir.path().join(format!("broker-{i}.log")),
                    child: None,
                },
            );
        }
        let coordinator_bin = if spec.coordinators > 0 {
            Some(binary("sluice-coordinator")?)
        } else {
            None
        };
        for i in 1..=spec.coordinators {
            let port = free_port()?;
            let cfg = dir.path().join(format!("coordinator-{i}.yaml"));
            std::fs::write(
                &cfg,
                format!(
                    "coordinator.id: {i}\nlisteners: 127.0.0.1:{port}\netcd.endpoints: {}\n\
                     cluster.name: {cluster_name}\ncoordinator.lease.ms: {}\n\
                     group.initial.rebalance.delay.ms: {}\n\
                     group.consumer.heartbeat.interval.ms: {}\n\
                     group.consumer.session.timeout.ms: {}\n",
                    etcd.endpoint(),
                    spec.lease_ms,
                    spec.group_initial_rebalance_delay_ms,
                    spec.group_consumer_heartbeat_interval_ms,
                    spec.group_consumer_session_timeout_ms,
                ),
            )?;
            procs.insert(
                format!("coordinator-{i}"),
                Proc {
                    port,
                    metrics_port: free_port()?,
                    args: vec!["--config".into(), cfg.display().to_string()],
                    env: Vec::new(),
                    bin: coordinator_bin.clone().expect("set above"),
                    log: dir.path().join(format!("coordinator-{i}.log")),
                    child: None,
                },
            );
        }
        let certs = tls::issue_all(&ca, &dir.path().join("certs"), procs.keys());
        let mut c = Self {
            etcd,
            dir,
            procs,
            broker_ports,
            certs,
            ca: std::sync::Arc::new(ca),
            tls_clients: spec.tls,
        };
        if spec.tls {
            let super_users: Vec<String> = c
                .process_names()
                .into_iter()
                .chain([tls::CLIENT.to_string()])
                .map(|n| format!("User:CN={n}"))
                .collect();
            for name in c.process_names() {
                let mut settings = c.tls_settings(&name, false, true)?;
                if spec.acls {
                    settings.push((
                        "authorizer.class.name".into(),
                        "kafka.security.authorizer.AclAuthorizer".into(),
                    ));
                    settings.push(("super.users".into(), super_users.join(";")));
                }
                // etcd too: its own certificate, the process's as the client's.
                let f = tls::files(&c.certs, &name);
                for (key, p) in [
                    ("etcd.ssl.ca.location", f.ca),
                    ("etcd.ssl.certificate.location", f.certificate),
                    ("etcd.ssl.key.location", f.key),
                ] {
                    settings.push((key.into(), p.expect("issued").display().to_string()));
                }
                c.set_overrides(&name, &settings)?;
            }
        }
        Ok(c)
    }

    fn spawn(&mut self, name: &str) -> anyhow::Result<()> {
        let p = self.procs.get_mut(name).context("no such process")?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p.log)?;
        let child = Command::new(&p.bin)
            .args(&p.args)
            .arg("--metrics-listen")
            .arg(format!("127.0.0.1:{}", p.metrics_port))
            .envs(p.env.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawn {name}"))?;
        p.child = Some(child);
        Ok(())
    }

    /// A bootstrap address (every broker).
    pub fn bootstrap(&self) -> String {
        self.broker_ports
            .values()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn client_config(&self) -> ClientConfig {
        self.with_client_tls(ClientConfig::new(&self.bootstrap()))
    }

    /// Waits until `brokers` brokers are registered and a controller is active.
    pub async fn wait_ready(&self, brokers: usize) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(admin) = Admin::new(self.client_config())
                && let Ok(d) = admin.describe_cluster().await
                && d.brokers.len() >= brokers
                && d.controller_id >= 0
            {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("cluster not ready; logs:\n{}", self.logs_tail());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The broker ids of the cluster.
    pub fn broker_ids(&self) -> Vec<i32> {
        self.broker_ports.keys().map(|i| *i as i32).collect()
    }

    /// `kill -9` a process (`broker-2`, `controller-1`).
    pub fn kill(&mut self, name: &str) -> anyhow::Result<()> {
        let p = self.procs.get_mut(name).context("no such process")?;
        if let Some(mut c) = p.child.take() {
            c.kill()?;
            c.wait()?;
        }
        Ok(())
    }

    /// Stops a process with SIGTERM, as an orchestrator does (a broker hands
    /// over leadership first), and waits for it to exit.
    pub async fn terminate(&mut self, name: &str) -> anyhow::Result<()> {
        let p = self.procs.get_mut(name).context("no such process")?;
        let Some(mut c) = p.child.take() else {
            return Ok(());
        };
        // `kill` the command: the workspace forbids the unsafe libc call.
        let status = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()?;
        if !status.success() {
            bail!("kill -TERM {name} failed");
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while c.try_wait()?.is_none() {
            if tokio::time::Instant::now() > deadline {
                let _ = c.kill();
                bail!("{name} did not exit within 60 s of SIGTERM");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// `kill -STOP` (`pause`) or `kill -CONT` (`resume`) a process: a
    /// stalled VM or a long GC pause, as the process itself cannot tell.
    pub fn pause(&self, name: &str) -> anyhow::Result<()> {
        self.signal(name, "-STOP")
    }

    pub fn resume(&self, name: &str) -> anyhow::Result<()> {
        self.signal(name, "-CONT")
    }

    fn signal(&self, name: &str, sig: &str) -> anyhow::Result<()> {
        let p = self.procs.get(name).context("no such process")?;
        let pid = p.child.as_ref().context("process not running")?.id();
        // `kill` the command: the workspace forbids the unsafe libc call.
        let status = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()?;
        if !status.success() {
            bail!("kill {sig} {name} failed");
        }
        Ok(())
    }

    /// A running process's pid.
    pub fn pid(&self, name: &str) -> Option<u32> {
        self.procs.get(name)?.child.as_ref().map(|c| c.id())
    }

    /// A process's resident memory in KiB (Linux `VmRSS`).
    pub fn rss_kib(&self, name: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid(name)?)).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// The value of an unlabelled Prometheus gauge or counter of a process
    /// (or of the series whose labels contain `labels`, as `k="v"`).
    pub async fn metric(&self, name: &str, metric: &str, labels: &str) -> Option<f64> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let p = self.procs.get(name)?;
        let host = format!("127.0.0.1:{}", p.metrics_port);
        let mut s = tokio::net::TcpStream::connect(&host).await.ok()?;
        s.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
            .await
            .ok()?;
        let mut body = String::new();
        s.read_to_string(&mut body).await.ok()?;
        body.lines().find_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let matches = series == metric
                || (series.starts_with(&format!("{metric}{{")) && series.contains(labels));
            matches.then(|| value.parse().ok()).flatten()
        })
    }

    /// A broker's log directory (`log.dirs`).
    pub fn broker_data_dir(&self, id: i32) -> PathBuf {
        self.dir.path().join(format!("data/broker-{id}"))
    }

    /// `127.0.0.1:PORT` of a process's gRPC server.
    pub fn grpc_addr(&self, name: &str) -> Option<String> {
        self.procs
            .get(name)
            .map(|p| format!("127.0.0.1:{}", p.port))
    }

    /// The Prometheus endpoint of a process.
    pub fn metrics_url(&self, name: &str) -> Option<String> {
        self.procs
            .get(name)
            .map(|p| format!("http://127.0.0.1:{}/metrics", p.metrics_port))
    }

    /// Names of every service process (`broker-1`, `controller-1`, ...).
    pub fn process_names(&self) -> Vec<String> {
        self.procs.keys().cloned().collect()
    }

    /// Starts a killed process again with its data.
    pub fn restart(&mut self, name: &str) -> anyhow::Result<()> {
        self.kill(name)?;
        self.spawn(name)
    }

    /// The whole log of one process.
    pub fn log(&self, name: &str) -> String {
        self.procs
            .get(name)
            .and_then(|p| std::fs::read_to_string(&p.log).ok())
            .unwrap_or_default()
    }

    /// The last lines of every process log, for failure messages.
    pub fn logs_tail(&self) -> String {
        let mut out = String::new();
        for (name, p) in &self.procs {
            let text = std::fs::read_to_string(&p.log).unwrap_or_default();
            // Backtrace frames would push the error itself out of the tail.
            let lines: Vec<&str> = text
                .lines()
                .filter(|l| {
                    let t = l.trim_start();
                    !(t.starts_with("at ")
                        || t.split_once(": ")
                            .is_some_and(|(n, _)| n.chars().all(|c| c.is_ascii_digit())))
                })
                .collect();
            let start = lines.len().saturating_sub(40);
            out.push_str(&format!("--- {name}\n{}\n", lines[start..].join("\n")));
        }
        out
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for p in self.procs.values_mut() {
            if let Some(mut c) = p.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}
