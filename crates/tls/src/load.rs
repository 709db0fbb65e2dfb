//! PEM files into rustls types, with errors that name the key and the file.

use std::path::Path;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::TlsError;

fn read(key: &str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        key: key.to_string(),
        path: path.display().to_string(),
        source,
    })
}

fn pem_error(key: &str, path: &Path, message: impl Into<String>) -> TlsError {
    TlsError::Pem {
        key: key.to_string(),
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// Every certificate in a PEM file (a chain: the leaf first).
pub(crate) fn certs(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(key, path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(key, path, format!("malformed PEM: {e}")))?;
    if certs.is_empty() {
        return Err(pem_error(key, path, "no CERTIFICATE block in the file"));
    }
    Ok(certs)
}

/// The private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub(crate) fn key(key: &str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(key, path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
        pem_error(
            key,
            path,
            format!("no usable PRIVATE KEY block (PKCS#8, RSA or EC): {e}"),
        )
    })
}

/// A trust store from a PEM bundle of CA certificates.
pub(crate) fn roots(key: &str, path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certs(key, path)? {
        roots
            .add(cert)
            .map_err(|e| pem_error(key, path, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(roots)
}

/// The operating system's trust store (when no `ssl.ca.location` is given,
/// like librdkafka).
pub(crate) fn system_roots() -> Result<RootCertStore, TlsError> {
    // Read once per process: every client without a CA would otherwise parse
    // the whole system bundle.
    static SYSTEM: std::sync::OnceLock<RootCertStore> = std::sync::OnceLock::new();
    let roots = SYSTEM
        .get_or_init(|| {
            let mut roots = RootCertStore::empty();
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            roots
        })
        .clone();
    if roots.is_empty() {
        return Err(TlsError::setting(
            "ssl.ca.location",
            "not set, and the system has no CA certificates: name the CA bundle \
             that signed the brokers' certificates",
        ));
    }
    Ok(roots)
}
