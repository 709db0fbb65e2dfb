//! [`SecurityConfig`]: the TLS settings every service takes, flattened into
//! its config with Kafka's (and librdkafka's) key names, and what they build:
//! the listener's [`ListenerTls`] and the [`ClientTls`] a service reaches the
//! others with.

use serde::{Deserialize, Serialize};
use sluice_tls::settings::verify_hostname;
use sluice_tls::{ClientAuth, ClientTls, ListenerTls, SecurityProtocol, ServerTls, TlsFiles};

use crate::config::ConfigError;

/// A service's TLS settings. The listener is TLS when `listeners` says
/// `SSL://`; the files are PEM (a Java keystore is not read).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default)]
pub struct SecurityConfig {
    /// `ssl.certificate.location`: this node's certificate chain (leaf
    /// first). It serves it on an `SSL://` listener and presents it when it
    /// connects to other services over TLS (mTLS).
    #[serde(rename = "ssl.certificate.location")]
    pub certificate: Option<String>,
    /// `ssl.key.location`: the certificate's private key.
    #[serde(rename = "ssl.key.location")]
    pub key: Option<String>,
    /// `ssl.ca.location`: the CA bundle peers' certificates must chain to.
    #[serde(rename = "ssl.ca.location")]
    pub ca: Option<String>,
    /// `ssl.client.auth`: `none`, `requested` or `required` (mTLS): whether
    /// the listener asks clients for a certificate signed by the CA.
    #[serde(rename = "ssl.client.auth")]
    pub client_auth: String,
    /// `ssl.accept.plaintext`: an `SSL://` listener also takes plaintext
    /// connections (on the same port), so a cluster moves to TLS by rolling
    /// restarts with no client cut off; false once every client uses TLS.
    #[serde(rename = "ssl.accept.plaintext")]
    pub accept_plaintext: bool,
    /// `security.inter.broker.protocol`: `PLAINTEXT` or `SSL`, how this
    /// service connects to the others (brokers, controllers, coordinators).
    #[serde(rename = "security.inter.broker.protocol")]
    pub inter_service: String,
    /// `ssl.endpoint.identification.algorithm`: `https` (check that a
    /// peer's certificate names the host connected to) or empty (any host
    /// name, still signed by the CA).
    #[serde(rename = "ssl.endpoint.identification.algorithm")]
    pub endpoint_identification: String,
    /// `etcd.ssl.ca.location`, `etcd.ssl.certificate.location`,
    /// `etcd.ssl.key.location`: TLS to etcd (`https://` endpoints; the
    /// client certificate for etcd's `--client-cert-auth`).
    #[serde(rename = "etcd.ssl.ca.location")]
    pub etcd_ca: Option<String>,
    #[serde(rename = "etcd.ssl.certificate.location")]
    pub etcd_certificate: Option<String>,
    #[serde(rename = "etcd.ssl.key.location")]
    pub etcd_key: Option<String>,
    /// `authorizer.class.name`: any value turns ACLs on (Kafka names a Java
    /// class here; Sluice has one authorizer and takes any name, so Kafka
    /// configs carry over). Unset: every request is allowed.
    #[serde(rename = "authorizer.class.name")]
    pub authorizer: String,
    /// `super.users`: `User:a;User:b`, allowed everything.
    #[serde(rename = "super.users")]
    pub super_users: String,
    /// `allow.everyone.if.no.acl.found` (false): a resource no ACL names is
    /// open to all.
    #[serde(rename = "allow.everyone.if.no.acl.found")]
    pub allow_if_no_acl: bool,
    /// `ssl.principal.mapping.rules` (`DEFAULT`): a client certificate's
    /// subject to a principal name.
    #[serde(rename = "ssl.principal.mapping.rules")]
    pub principal_mapping: String,
    /// `sasl.enabled.mechanisms`: what a `SASL_*://` listener offers Kafka
    /// clients (SCRAM-SHA-256, SCRAM-SHA-512, PLAIN; PLAIN is checked
    /// against the user's SCRAM credential).
    #[serde(rename = "sasl.enabled.mechanisms")]
    pub sasl_mechanisms: String,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig {
            certificate: None,
            key: None,
            ca: None,
            client_auth: "none".into(),
            accept_plaintext: false,
            inter_service: "PLAINTEXT".into(),
            endpoint_identification: "https".into(),
            etcd_ca: None,
            etcd_certificate: None,
            etcd_key: None,
            authorizer: String::new(),
            super_users: String::new(),
            allow_if_no_acl: false,
            principal_mapping: "DEFAULT".into(),
            sasl_mechanisms: "SCRAM-SHA-256,SCRAM-SHA-512,PLAIN".into(),
        }
    }
}

fn invalid(e: sluice_tls::TlsError) -> ConfigError {
    match e {
        sluice_tls::TlsError::Setting { key, message } => ConfigError::Invalid { key, message },
        other => ConfigError::invalid("ssl", other.to_string()),
    }
}

impl SecurityConfig {
    pub fn files(&self) -> TlsFiles {
        TlsFiles::new(
            self.certificate.as_deref(),
            self.key.as_deref(),
            self.ca.as_deref(),
        )
    }

    /// Checks the values (not the files: [`SecurityConfig::listener`] and
    /// [`SecurityConfig::inter_service`] read those).
    pub fn validate(&self, listeners: &str) -> Result<(), ConfigError> {
        let tls = SecurityProtocol::of_listener("listeners", listeners).map_err(invalid)?;
        let auth = ClientAuth::parse("ssl.client.auth", &self.client_auth).map_err(invalid)?;
        let inter = SecurityProtocol::parse("security.inter.broker.protocol", &self.inter_service)
            .map_err(invalid)?;
        if inter.is_sasl() {
            return Err(ConfigError::invalid(
                "security.inter.broker.protocol",
                "services reach each other over gRPC and prove who they are with \
                 certificates: use SSL (or PLAINTEXT)",
            ));
        }
        verify_hostname(
            "ssl.endpoint.identification.algorithm",
            &self.endpoint_identification,
        )
        .map_err(invalid)?;
        if self.accept_plaintext && !tls.is_tls() {
            return Err(ConfigError::invalid(
                "ssl.accept.plaintext",
                "only means something on an SSL:// listener (this one is plaintext)",
            ));
        }
        // Asking for client certificates on a plaintext port would leave it
        // open while the config reads as locked.
        if auth != ClientAuth::None && !tls.is_tls() {
            return Err(ConfigError::invalid(
                "ssl.client.auth",
                format!(
                    "is {} but the listener is plaintext: write listeners as SSL://HOST:PORT (or SASL_SSL://)",
                    self.client_auth
                ),
            ));
        }
        Ok(())
    }

    /// Checks `etcd.endpoints` against the `etcd.ssl.*` keys: TLS needs
    /// `https://` endpoints and a CA, and `https://` needs the CA.
    pub fn validate_etcd(&self, endpoints: &str) -> Result<(), ConfigError> {
        let tls = self.etcd_tls();
        let list: Vec<&str> = endpoints
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .collect();
        // Without a scheme, etcd-client picks https when TLS is configured.
        let http = list.iter().filter(|e| e.starts_with("http://")).count();
        let https = list.iter().filter(|e| e.starts_with("https://")).count();
        if tls.is_some() && http > 0 {
            return Err(ConfigError::invalid(
                "etcd.endpoints",
                "etcd.ssl.* is set: every endpoint must be https://",
            ));
        }
        if https > 0 && tls.as_ref().is_none_or(|t| t.ca.is_none()) {
            return Err(ConfigError::invalid(
                "etcd.ssl.ca.location",
                "https:// etcd endpoints need the CA that signed etcd's certificate",
            ));
        }
        Ok(())
    }

    /// The listener's TLS: `None` for a `PLAINTEXT` listener. Reads the
    /// files (and keeps reloading them when they change).
    pub fn listener(&self, listeners: &str) -> Result<Option<ListenerTls>, ConfigError> {
        self.validate(listeners)?;
        if !SecurityProtocol::of_listener("listeners", listeners)
            .map_err(invalid)?
            .is_tls()
        {
            return Ok(None);
        }
        let auth = ClientAuth::parse("ssl.client.auth", &self.client_auth).map_err(invalid)?;
        let server = ServerTls::new(&self.files(), auth).map_err(invalid)?;
        Ok(Some(ListenerTls {
            server,
            accept_plaintext: self.accept_plaintext,
        }))
    }

    /// TLS to etcd: `None` unless an `etcd.ssl.*` key is set.
    pub fn etcd_tls(&self) -> Option<sluice_metastore::EtcdTls> {
        let path = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(std::path::PathBuf::from)
        };
        let tls = sluice_metastore::EtcdTls {
            ca: path(&self.etcd_ca),
            certificate: path(&self.etcd_certificate),
            key: path(&self.etcd_key),
        };
        (tls != sluice_metastore::EtcdTls::default()).then_some(tls)
    }

    /// How this service connects to the others: `None` for plaintext.
    pub fn inter_service(&self) -> Result<Option<ClientTls>, ConfigError> {
        let protocol =
            SecurityProtocol::parse("security.inter.broker.protocol", &self.inter_service)
                .map_err(invalid)?;
        if !protocol.is_tls() {
            return Ok(None);
        }
        let check_names = verify_hostname(
            "ssl.endpoint.identification.algorithm",
            &self.endpoint_identification,
        )
        .map_err(invalid)?;
        ClientTls::new(&self.files(), check_names)
            .map(Some)
            .map_err(invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_that_would_leave_a_port_open_are_refused() {
        let c = |f: fn(&mut SecurityConfig)| {
            let mut s = SecurityConfig::default();
            f(&mut s);
            s
        };
        // Client certificates asked for on a plaintext port.
        let e = c(|s| s.client_auth = "required".into())
            .validate("h:1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("ssl.client.auth") && e.contains("SSL://"), "{e}");
        c(|s| s.client_auth = "required".into())
            .validate("SSL://h:1")
            .unwrap();
        assert!(c(|s| s.accept_plaintext = true).validate("h:1").is_err());
        // etcd: TLS keys with http://, https:// without a CA.
        let tls = c(|s| s.etcd_ca = Some("ca.pem".into()));
        let e = tls
            .validate_etcd("https://e1:2379,http://e2:2379")
            .unwrap_err()
            .to_string();
        assert!(e.contains("etcd.endpoints"), "{e}");
        tls.validate_etcd("https://e1:2379,https://e2:2379")
            .unwrap();
        tls.validate_etcd("e1:2379").unwrap();
        let e = SecurityConfig::default()
            .validate_etcd("https://e1:2379")
            .unwrap_err()
            .to_string();
        assert!(e.contains("etcd.ssl.ca.location"), "{e}");
        SecurityConfig::default()
            .validate_etcd("http://e1:2379")
            .unwrap();
    }
}
