//! TLS for a [`TestCluster`]: a test CA issues a certificate to every
//! process (and one to the test's clients) when the cluster is built; a
//! cluster started with [`crate::ClusterSpec::tls`] serves mTLS everywhere,
//! and any process can be moved between plaintext and TLS by restarting it
//! with other settings ([`TestCluster::set_overrides`]).

use std::path::{Path, PathBuf};

use anyhow::Context;
use sluice_client::ClientConfig;
use sluice_tls::TlsFiles;
use sluice_tls::testing::{TestCa, Validity};

use crate::TestCluster;

/// The name of the clients' certificate (CN) in the cluster's CA.
pub const CLIENT: &str = "client";

/// The cluster's CA, in `dir`.
pub(crate) fn new_ca(dir: &Path) -> TestCa {
    std::fs::create_dir_all(dir).expect("certs dir");
    TestCa::new(dir, "cluster")
}

/// Issues a certificate for each name (and the clients') from `ca`.
pub(crate) fn issue_all<'a>(
    ca: &TestCa,
    dir: &Path,
    names: impl Iterator<Item = &'a String>,
) -> PathBuf {
    for n in names.map(String::as_str).chain([CLIENT]) {
        ca.issue(n, n, &["127.0.0.1", "localhost"], Validity::Current);
    }
    dir.to_path_buf()
}

/// A certificate's files in the cluster's CA.
pub fn files(certs: &Path, name: &str) -> TlsFiles {
    TlsFiles {
        certificate: Some(certs.join(format!("{name}.pem"))),
        key: Some(certs.join(format!("{name}.key"))),
        ca: Some(certs.join("cluster-ca.pem")),
    }
}

impl TestCluster {
    /// Where the CA and the certificates are.
    pub fn certs_dir(&self) -> &Path {
        &self.certs
    }

    /// A new certificate from the cluster's CA (a client, or an intruder
    /// with a valid certificate that is not a service's).
    pub fn issue_certificate(&self, name: &str) -> TlsFiles {
        self.ca
            .issue(name, name, &["127.0.0.1", "localhost"], Validity::Current)
    }

    /// The settings that make `name` serve mTLS on its port and reach the
    /// others over TLS; `accept_plaintext` keeps plaintext clients too (the
    /// middle of a move to TLS), `inter_tls` picks how it reaches the others.
    pub fn tls_settings(
        &self,
        name: &str,
        accept_plaintext: bool,
        inter_tls: bool,
    ) -> anyhow::Result<Vec<(String, String)>> {
        let port = self.procs.get(name).context("no such process")?.port;
        let f = files(&self.certs, name);
        let path = |p: Option<PathBuf>| p.expect("set").display().to_string();
        Ok(vec![
            ("listeners".into(), format!("SSL://127.0.0.1:{port}")),
            ("ssl.certificate.location".into(), path(f.certificate)),
            ("ssl.key.location".into(), path(f.key)),
            ("ssl.ca.location".into(), path(f.ca)),
            ("ssl.client.auth".into(), "required".into()),
            ("ssl.accept.plaintext".into(), accept_plaintext.to_string()),
            (
                "security.inter.broker.protocol".into(),
                if inter_tls { "SSL" } else { "PLAINTEXT" }.into(),
            ),
        ])
    }

    /// Sets `--override key=value` flags of `name` (replacing earlier ones of
    /// the same keys); they apply from its next start.
    pub fn set_overrides(
        &mut self,
        name: &str,
        settings: &[(String, String)],
    ) -> anyhow::Result<()> {
        let p = self.procs.get_mut(name).context("no such process")?;
        for (k, v) in settings {
            let prefix = format!("{k}=");
            let mut i = 0;
            while i + 1 < p.args.len() {
                if p.args[i] == "--override" && p.args[i + 1].starts_with(&prefix) {
                    p.args.drain(i..i + 2);
                } else {
                    i += 1;
                }
            }
            p.args.push("--override".into());
            p.args.push(format!("{k}={v}"));
        }
        Ok(())
    }

    /// Stops `name` with SIGTERM (controlled shutdown) and starts it again.
    pub async fn restart_gracefully(&mut self, name: &str) -> anyhow::Result<()> {
        self.terminate(name).await?;
        self.spawn(name)
    }

    /// Waits (30 s at most) until `name`'s gRPC health says SERVING, asked
    /// over TLS with the clients' certificate or in plaintext.
    pub async fn wait_serving(&self, name: &str, tls: bool) -> anyhow::Result<()> {
        use tonic_health::pb::HealthCheckRequest;
        use tonic_health::pb::health_check_response::ServingStatus;
        use tonic_health::pb::health_client::HealthClient;
        let addr = self.grpc_addr(name).context("no such process")?;
        let tls = if tls {
            Some(sluice_tls::ClientTls::new(
                &files(&self.certs, CLIENT),
                true,
            )?)
        } else {
            None
        };
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let status = async {
                let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
                    .connect_timeout(std::time::Duration::from_secs(2));
                let channel = sluice_tls::connect_channel(endpoint, tls.as_ref()).await?;
                let r = HealthClient::new(channel)
                    .check(HealthCheckRequest::default())
                    .await?;
                anyhow::Ok(r.into_inner().status())
            }
            .await;
            match status {
                Ok(ServingStatus::Serving) => return Ok(()),
                other if tokio::time::Instant::now() > deadline => {
                    anyhow::bail!("{name} not SERVING: {other:?}\n{}", self.logs_tail())
                }
                _ => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
            }
        }
    }

    /// Whether [`TestCluster::client_config`] connects over TLS (with the
    /// clients' certificate).
    pub fn use_tls_clients(&mut self, tls: bool) {
        self.tls_clients = tls;
    }

    pub(crate) fn with_client_tls(&self, config: ClientConfig) -> ClientConfig {
        if !self.tls_clients {
            return config;
        }
        let f = files(&self.certs, CLIENT);
        let mut config = config
            .with("security.protocol", "SSL")
            .expect("a known key");
        config.ssl_files = f;
        config
    }
}
