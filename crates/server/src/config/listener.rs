//! `listeners` and `advertised.listeners`, parsed one way for every service:
//! one `HOST:PORT`, optionally `PLAINTEXT://HOST:PORT` or `SSL://HOST:PORT`
//! (Kafka's forms; the scheme picks TLS, see `crate::security`), an
//! IPv6 host in brackets; the advertised endpoint is `advertised.listeners`
//! when set, else `listeners` (Kafka's rule).

use super::ConfigError;

/// The address to bind: the value without its `scheme://`.
pub fn bind_address(listener: &str) -> &str {
    let v = listener.trim();
    v.split_once("://").map_or(v, |(_, a)| a)
}

/// `(host, port)` of a listener value, checked; errors name `key`.
pub fn parse_listener(key: &str, value: &str) -> Result<(String, u16), ConfigError> {
    let v = value.trim();
    if v.contains(',') {
        return Err(ConfigError::invalid(
            key,
            format!(
                "{v:?} names several listeners; a Sluice service serves gRPC and Kafka's \
                 protocol on one, so give one HOST:PORT (or PLAINTEXT://HOST:PORT)"
            ),
        ));
    }
    sluice_tls::SecurityProtocol::of_listener(key, v).map_err(|e| match e {
        sluice_tls::TlsError::Setting { message, .. } => ConfigError::invalid(key, message),
        other => ConfigError::invalid(key, other.to_string()),
    })?;
    let addr = bind_address(v);
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| ConfigError::invalid(key, format!("{addr:?} is not HOST:PORT")))?;
    let port = port.parse().map_err(|_| {
        ConfigError::invalid(key, format!("{port:?} in {addr:?} is not a port number"))
    })?;
    let host = host.trim_matches(['[', ']']).to_string();
    if host.is_empty() {
        let fix = if key == "listeners" {
            "write 0.0.0.0:PORT to listen on every interface (Kafka's empty host), and set \
             advertised.listeners to the address clients use"
        } else {
            "clients need a host name or address to connect to"
        };
        return Err(ConfigError::invalid(
            key,
            format!("{v:?} has no host: {fix}"),
        ));
    }
    Ok((host, port))
}

/// Where clients are told to connect: `advertised.listeners` when set, else
/// `listeners`.
pub fn advertised_endpoint(
    listeners: &str,
    advertised: Option<&str>,
) -> Result<(String, u16), ConfigError> {
    match advertised {
        Some(a) => parse_listener("advertised.listeners", a),
        None => parse_listener("listeners", listeners),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_syntax_for_every_service() {
        assert_eq!(
            parse_listener("listeners", "PLAINTEXT://h:9092").unwrap(),
            ("h".into(), 9092)
        );
        assert_eq!(
            parse_listener("listeners", " [::1]:9093 ").unwrap(),
            ("::1".into(), 9093)
        );
        assert_eq!(bind_address("PLAINTEXT://0.0.0.0:9092"), "0.0.0.0:9092");
        assert_eq!(
            advertised_endpoint("0.0.0.0:1", Some("PLAINTEXT://pod:1")).unwrap(),
            ("pod".into(), 1)
        );
        assert_eq!(advertised_endpoint("h:1", None).unwrap(), ("h".into(), 1));
        for bad in ["h:1,h:2", "h", "h:x", ":9092"] {
            let e = parse_listener("listeners", bad).unwrap_err().to_string();
            assert!(e.contains("listeners"), "{bad}: {e}");
        }
    }
}
