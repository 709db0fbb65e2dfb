//! The TLS choices an operator writes in config, with Kafka's names and
//! values, parsed one way for every service and client.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::TlsError;

/// How a connection is secured: a listener's scheme (`SSL://host:port`),
/// a client's `security.protocol`, a service's
/// `security.inter.broker.protocol` (what it uses to reach other services).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SecurityProtocol {
    #[default]
    Plaintext,
    Ssl,
    /// SASL on Kafka's protocol over plaintext TCP (gRPC requests on such
    /// a listener authenticate by token or not at all).
    SaslPlaintext,
    /// SASL on Kafka's protocol over TLS.
    SaslSsl,
}

impl SecurityProtocol {
    /// Parses a value of `key` (Kafka's spellings, any case).
    pub fn parse(key: &str, value: &str) -> Result<Self, TlsError> {
        match value.trim().to_ascii_uppercase().as_str() {
            "" | "PLAINTEXT" => Ok(SecurityProtocol::Plaintext),
            "SSL" => Ok(SecurityProtocol::Ssl),
            "SASL_PLAINTEXT" => Ok(SecurityProtocol::SaslPlaintext),
            "SASL_SSL" => Ok(SecurityProtocol::SaslSsl),
            _ => Err(TlsError::setting(
                key,
                format!(
                    "{value:?} is not a security protocol: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"
                ),
            )),
        }
    }

    /// The protocol a listener value's `scheme://` names: `SSL`,
    /// `SASL_SSL`, `SASL_PLAINTEXT`, and anything else (none, `PLAINTEXT`,
    /// a Kafka listener name such as `INTERNAL`) is plaintext.
    pub fn of_listener(key: &str, listener: &str) -> Result<Self, TlsError> {
        match listener.trim().split_once("://") {
            Some((scheme, _)) if scheme.eq_ignore_ascii_case("SSL") => Ok(SecurityProtocol::Ssl),
            Some((scheme, _)) if scheme.to_ascii_uppercase().starts_with("SASL_") => {
                Self::parse(key, scheme)
            }
            _ => Ok(SecurityProtocol::Plaintext),
        }
    }

    pub fn is_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    /// Whether Kafka clients must authenticate with SASL first.
    pub fn is_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

impl fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        })
    }
}

impl FromStr for SecurityProtocol {
    type Err = TlsError;
    fn from_str(s: &str) -> Result<Self, TlsError> {
        Self::parse("security.protocol", s)
    }
}

/// `ssl.client.auth`: whether a TLS listener asks clients for a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// No client certificate is asked for.
    #[default]
    None,
    /// Asked for; a client without one is still accepted (its certificate,
    /// when given, must be signed by `ssl.ca.location`).
    Requested,
    /// Every client must present a certificate signed by `ssl.ca.location`
    /// (mTLS).
    Required,
}

impl ClientAuth {
    pub fn parse(key: &str, value: &str) -> Result<Self, TlsError> {
        match value.trim().to_ascii_lowercase().as_str() {
            "" | "none" => Ok(ClientAuth::None),
            "requested" => Ok(ClientAuth::Requested),
            "required" => Ok(ClientAuth::Required),
            _ => Err(TlsError::setting(
                key,
                format!("{value:?} is not one of none, requested, required"),
            )),
        }
    }
}

/// `ssl.endpoint.identification.algorithm`: `https` (the default) checks
/// that the server's certificate names the host connected to; empty (or
/// `none`) checks only that a trusted CA signed it.
pub fn verify_hostname(key: &str, value: &str) -> Result<bool, TlsError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "https" => Ok(true),
        "" | "none" => Ok(false),
        _ => Err(TlsError::setting(
            key,
            format!("{value:?}: use https (check the host name) or leave it empty"),
        )),
    }
}

/// The PEM files of one TLS configuration (librdkafka's key names).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// `ssl.certificate.location`: this side's certificate chain, leaf first.
    pub certificate: Option<PathBuf>,
    /// `ssl.key.location`: the private key of that certificate.
    pub key: Option<PathBuf>,
    /// `ssl.ca.location`: the CA certificates the other side's certificate
    /// must chain to.
    pub ca: Option<PathBuf>,
}

impl TlsFiles {
    /// From optional config values (empty strings count as unset).
    pub fn new(certificate: Option<&str>, key: Option<&str>, ca: Option<&str>) -> Self {
        let path = |v: Option<&str>| {
            v.map(str::trim)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        TlsFiles {
            certificate: path(certificate),
            key: path(key),
            ca: path(ca),
        }
    }

    /// Every file named, for the reload watcher.
    pub(crate) fn paths(&self) -> Vec<PathBuf> {
        [&self.certificate, &self.key, &self.ca]
            .into_iter()
            .flatten()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_spellings_parse_and_others_are_named() {
        assert_eq!(
            SecurityProtocol::of_listener("listeners", "SSL://h:1").unwrap(),
            SecurityProtocol::Ssl
        );
        assert_eq!(
            SecurityProtocol::of_listener("listeners", "h:1").unwrap(),
            SecurityProtocol::Plaintext
        );
        assert_eq!(
            SecurityProtocol::parse("security.protocol", "ssl").unwrap(),
            SecurityProtocol::Ssl
        );
        assert_eq!(
            SecurityProtocol::of_listener("listeners", "INTERNAL://h:1").unwrap(),
            SecurityProtocol::Plaintext
        );
        let sasl = SecurityProtocol::of_listener("listeners", "SASL_SSL://h:1").unwrap();
        assert!(sasl.is_tls() && sasl.is_sasl());
        let sasl = SecurityProtocol::parse("x", "sasl_plaintext").unwrap();
        assert!(!sasl.is_tls() && sasl.is_sasl());
        assert_eq!(sasl.to_string(), "SASL_PLAINTEXT");
        let e = SecurityProtocol::parse("security.protocol", "TLS").unwrap_err();
        assert!(e.to_string().contains("security.protocol"), "{e}");
        assert_eq!(
            ClientAuth::parse("ssl.client.auth", "Required").unwrap(),
            ClientAuth::Required
        );
        assert!(ClientAuth::parse("ssl.client.auth", "yes").is_err());
        assert!(verify_hostname("k", "https").unwrap());
        assert!(!verify_hostname("k", "").unwrap());
        assert!(verify_hostname("k", "http").is_err());
        let f = TlsFiles::new(Some("a.pem"), Some(" "), None);
        assert_eq!(f.paths(), vec![PathBuf::from("a.pem")]);
    }
}
