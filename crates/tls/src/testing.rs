//! Certificates for tests (feature `testing`): a CA and the certificates it
//! issues, written as PEM files the way an operator's would be.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, date_time_ymd,
};

use crate::TlsFiles;

/// A certificate's validity window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// From 2024 to 2099.
    Current,
    /// Ended in 2021.
    Expired,
}

/// A test CA writing its files under one directory.
pub struct TestCa {
    dir: PathBuf,
    name: String,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    /// A new CA; its certificate is written to `<dir>/<name>-ca.pem`.
    pub fn new(dir: &Path, name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("key");
        let issuer = CertifiedIssuer::self_signed(params, key).expect("CA");
        let ca = TestCa {
            dir: dir.to_path_buf(),
            name: name.to_string(),
            issuer,
        };
        std::fs::write(ca.ca_path(), ca.issuer.pem()).expect("write CA");
        ca
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.join(format!("{}-ca.pem", self.name))
    }

    /// Issues a certificate for `common_name` valid for `hosts` (names or
    /// addresses), for servers and clients both, and writes
    /// `<dir>/<stem>.pem` and `<dir>/<stem>.key`. The files returned trust
    /// this CA.
    pub fn issue(
        &self,
        stem: &str,
        common_name: &str,
        hosts: &[&str],
        validity: Validity,
    ) -> TlsFiles {
        let mut params =
            CertificateParams::new(hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>())
                .expect("params");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        match validity {
            Validity::Current => {
                params.not_before = date_time_ymd(2024, 1, 1);
                params.not_after = date_time_ymd(2099, 1, 1);
            }
            Validity::Expired => {
                params.not_before = date_time_ymd(2020, 1, 1);
                params.not_after = date_time_ymd(2021, 1, 1);
            }
        }
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        let files = TlsFiles {
            certificate: Some(self.dir.join(format!("{stem}.pem"))),
            key: Some(self.dir.join(format!("{stem}.key"))),
            ca: Some(self.ca_path()),
        };
        std::fs::write(files.certificate.as_ref().unwrap(), cert.pem()).expect("write cert");
        std::fs::write(files.key.as_ref().unwrap(), key.serialize_pem()).expect("write key");
        files
    }
}
