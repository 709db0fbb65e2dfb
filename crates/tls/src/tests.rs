//! Handshakes between [`ServerTls`] and [`ClientTls`] over real sockets,
//! with certificates from [`crate::testing`].

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::testing::{TestCa, Validity};
use crate::{ClientAuth, ClientTls, ConnInfo, ServerTls, Stream, TlsFiles};

const LOCAL: &[&str] = &["localhost", "127.0.0.1"];

/// Serves one connection: handshake, a byte first (as HTTP/2 servers speak
/// first), then echo one byte. Returns what the server saw (its handshake
/// error, or the connection's info).
async fn serve_once(tls: ServerTls) -> (u16, tokio::task::JoinHandle<Result<ConnInfo, String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut s = tls.accept(tcp).await.map_err(|e| e.to_string())?;
        assert!(matches!(s, Stream::Tls(_)));
        assert_eq!(s.alpn(), Some(crate::ALPN_H2));
        let info = s.info();
        s.write_all(b"s").await.map_err(|e| e.to_string())?;
        s.flush().await.map_err(|e| e.to_string())?;
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.map_err(|e| e.to_string())?;
        s.write_all(&b).await.map_err(|e| e.to_string())?;
        s.flush().await.map_err(|e| e.to_string())?;
        Ok(info)
    });
    (port, task)
}

async fn talk(client: &ClientTls, host: &str, port: u16) -> Result<(), String> {
    let mut s = client
        .connect(host, port)
        .await
        .map_err(|e| e.to_string())?;
    let mut b = [0u8; 1];
    s.read_exact(&mut b).await.map_err(|e| e.to_string())?;
    assert_eq!(
        &b, b"s",
        "the server's first byte, read ahead and handed back"
    );
    s.write_all(b"x").await.map_err(|e| e.to_string())?;
    s.read_exact(&mut b).await.map_err(|e| e.to_string())?;
    assert_eq!(&b, b"x");
    Ok(())
}

fn trust(ca: &TestCa) -> TlsFiles {
    TlsFiles {
        ca: Some(ca.ca_path()),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_client_trusting_the_ca_talks_and_mtls_names_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "cluster");
    let server = ca.issue("broker", "broker-1", LOCAL, Validity::Current);
    let client = ca.issue("alice", "alice", &[], Validity::Current);

    let (port, seen) = serve_once(ServerTls::new(&server, ClientAuth::None).unwrap()).await;
    talk(
        &ClientTls::new(&trust(&ca), true).unwrap(),
        "127.0.0.1",
        port,
    )
    .await
    .unwrap();
    assert!(seen.await.unwrap().unwrap().peer_certificates.is_none());

    let (port, seen) = serve_once(ServerTls::new(&server, ClientAuth::Required).unwrap()).await;
    talk(&ClientTls::new(&client, true).unwrap(), "localhost", port)
        .await
        .unwrap();
    let info = seen.await.unwrap().unwrap();
    assert!(info.tls);
    assert_eq!(info.peer_certificates.unwrap().len(), 1);
}

#[tokio::test]
async fn wrong_ca_expired_and_wrong_name_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "cluster");
    let other = TestCa::new(dir.path(), "other");
    let good = ca.issue("broker", "broker-1", LOCAL, Validity::Current);
    let expired = ca.issue("old", "broker-1", LOCAL, Validity::Expired);
    let elsewhere = ca.issue(
        "elsewhere",
        "broker-1",
        &["kafka.example"],
        Validity::Current,
    );
    let client = ClientTls::new(&trust(&ca), true).unwrap();

    let (port, _) = serve_once(ServerTls::new(&good, ClientAuth::None).unwrap()).await;
    let e = talk(
        &ClientTls::new(&trust(&other), true).unwrap(),
        "127.0.0.1",
        port,
    )
    .await
    .unwrap_err();
    assert!(e.contains("UnknownIssuer"), "{e}");

    let (port, seen) = serve_once(ServerTls::new(&expired, ClientAuth::None).unwrap()).await;
    let e = talk(&client, "127.0.0.1", port).await.unwrap_err();
    assert!(e.to_lowercase().contains("expired"), "{e}");
    // The server side sees the client's alert.
    let e = seen.await.unwrap().unwrap_err();
    assert!(
        e.contains("BadCertificate") || e.contains("CertificateExpired"),
        "{e}"
    );

    let (port, _) = serve_once(ServerTls::new(&elsewhere, ClientAuth::None).unwrap()).await;
    let e = talk(&client, "127.0.0.1", port).await.unwrap_err();
    assert!(e.contains("not valid for name"), "{e}");
    // ssl.endpoint.identification.algorithm= (empty): the chain still counts,
    // the name does not.
    let (port, _) = serve_once(ServerTls::new(&elsewhere, ClientAuth::None).unwrap()).await;
    talk(
        &ClientTls::new(&trust(&ca), false).unwrap(),
        "127.0.0.1",
        port,
    )
    .await
    .unwrap();
    let (port, _) = serve_once(ServerTls::new(&expired, ClientAuth::None).unwrap()).await;
    let e = talk(
        &ClientTls::new(&trust(&ca), false).unwrap(),
        "127.0.0.1",
        port,
    )
    .await
    .unwrap_err();
    assert!(e.to_lowercase().contains("expired"), "{e}");
}

#[tokio::test]
async fn mtls_refuses_clients_without_a_certificate_from_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "cluster");
    let other = TestCa::new(dir.path(), "other");
    let server = ca.issue("broker", "broker-1", LOCAL, Validity::Current);
    let forged = other.issue("forged", "broker-9", &[], Validity::Current);
    let forged = TlsFiles {
        ca: Some(ca.ca_path()),
        ..forged
    };

    for client in [trust(&ca), forged] {
        let (port, seen) = serve_once(ServerTls::new(&server, ClientAuth::Required).unwrap()).await;
        // TLS 1.3: the client finishes first; the server's refusal still
        // reaches it from connect, with the reason.
        let client_side = talk(&ClientTls::new(&client, true).unwrap(), "127.0.0.1", port)
            .await
            .unwrap_err();
        assert!(
            client_side.contains("TLS handshake") && client_side.contains("alert"),
            "{client_side}"
        );
        let e = seen.await.unwrap().unwrap_err();
        assert!(
            e.contains("sent no certificates") || e.contains("UnknownIssuer"),
            "{e}"
        );
    }
    // requested: no certificate is fine, a forged one is not.
    let (port, seen) = serve_once(ServerTls::new(&server, ClientAuth::Requested).unwrap()).await;
    talk(
        &ClientTls::new(&trust(&ca), true).unwrap(),
        "127.0.0.1",
        port,
    )
    .await
    .unwrap();
    assert!(seen.await.unwrap().unwrap().peer_certificates.is_none());
}

#[tokio::test]
async fn rotated_files_are_used_by_new_connections_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "old");
    let files = ca.issue("broker", "broker-1", LOCAL, Validity::Current);
    let tls = ServerTls::with_reload_interval(&files, ClientAuth::None, Duration::from_millis(100))
        .unwrap();

    // The new CA issues into the same paths, as a rotation would.
    let next = TestCa::new(dir.path(), "new");
    let rotated = next.issue("broker", "broker-1", LOCAL, Validity::Current);
    assert_eq!(rotated.certificate, files.certificate);
    let trusts_new = ClientTls::new(&trust(&next), true).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (port, _) = serve_once(tls.clone()).await;
        if talk(&trusts_new, "127.0.0.1", port).await.is_ok() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never reloaded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A half-written rotation (a key that is not the certificate's) keeps
    // the working configuration.
    let stray = next.issue("stray", "x", LOCAL, Validity::Current);
    std::fs::copy(stray.key.unwrap(), files.key.as_ref().unwrap()).unwrap();
    assert!(tls.reload_now().is_err());
    let (port, _) = serve_once(tls.clone()).await;
    talk(&trusts_new, "127.0.0.1", port).await.unwrap();
}

#[test]
fn bad_files_are_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = TlsFiles::new(
        Some(dir.path().join("nope.pem").to_str().unwrap()),
        Some("k"),
        None,
    );
    let e = ServerTls::new(&missing, ClientAuth::None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("ssl.certificate.location") && e.contains("nope.pem"),
        "{e}"
    );
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let e = ClientTls::new(
        &TlsFiles::new(None, None, Some(junk.to_str().unwrap())),
        true,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("ssl.ca.location") && e.contains("no CERTIFICATE"),
        "{e}"
    );
    let e = ServerTls::new(&TlsFiles::default(), ClientAuth::None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("ssl.certificate.location"), "{e}");
    let ca = TestCa::new(dir.path(), "c");
    let server = ca.issue("s", "s", LOCAL, Validity::Current);
    let no_ca = TlsFiles { ca: None, ..server };
    let e = ServerTls::new(&no_ca, ClientAuth::Required)
        .unwrap_err()
        .to_string();
    assert!(e.contains("ssl.ca.location"), "{e}");
}
