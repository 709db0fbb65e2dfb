use super::*;

const RFC_USER: &str = "user";
const RFC_PASSWORD: &str = "pencil";
const RFC_CLIENT_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
const RFC_SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
const RFC_SALT: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";

/// Runs the fixed-nonce exchange of RFC 7677 §3 for `mechanism` and checks
/// every message against the expected proof and server signature.
fn fixed_vector(mechanism: Mechanism, proof: &str, signature: &str) {
    let salt = B64.decode(RFC_SALT).unwrap();
    let credential = ScramCredential::with_salt(mechanism, RFC_PASSWORD, &salt, 4096).unwrap();
    let mut client = ScramClient::with_nonce(mechanism, RFC_USER, RFC_PASSWORD, RFC_CLIENT_NONCE);
    let mut server = ScramServer::with_server_nonce(mechanism, RFC_SERVER_NONCE);

    let client_first = client.client_first();
    assert_eq!(client_first, b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
    assert_eq!(server.client_first(&client_first).unwrap(), "user");

    let server_first = server.server_first(Some(&credential));
    let nonce = format!("{RFC_CLIENT_NONCE}{RFC_SERVER_NONCE}");
    assert_eq!(
        String::from_utf8(server_first.clone()).unwrap(),
        format!("r={nonce},s={RFC_SALT},i=4096")
    );

    let client_final = client.client_final(&server_first).unwrap();
    assert_eq!(
        String::from_utf8(client_final.clone()).unwrap(),
        format!("c=biws,r={nonce},p={proof}")
    );

    let (server_final, user) = server.client_final(&client_final).unwrap();
    assert_eq!(user, "user");
    assert_eq!(
        String::from_utf8(server_final.clone()).unwrap(),
        format!("v={signature}")
    );
    client.verify_server_final(&server_final).unwrap();
}

#[test]
fn rfc7677_sha256_vector() {
    fixed_vector(
        Mechanism::ScramSha256,
        "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
    );
}

/// No RFC vector exists for SHA-512; these values were computed
/// independently (Python's hashlib/hmac) on the RFC 7677 inputs.
#[test]
fn sha512_fixed_vector() {
    fixed_vector(
        Mechanism::ScramSha512,
        "gMGXRcevScNtxZ6/8lQYpGtnsNAc3mGcmNomv+xnoOMw+3R2xNJdMNnzMlTN8PPC6wdp6dybEmDYXYTxwnYPJQ==",
        "ZQnYEgWQMFmmsM8aQMF0nDDCy/AgCzkwk8CmMZYcMg0vSVlKDanekLtifDSeVGT4+5ZxXnJq199RVG2rR7N7Zw==",
    );
}

/// One full exchange: the server's result and the client's check of it.
fn exchange(
    mechanism: Mechanism,
    credential: Option<&ScramCredential>,
    user: &str,
    password: &str,
) -> Result<String, AuthError> {
    let mut client = ScramClient::new(mechanism, user, password);
    let mut server = ScramServer::new(mechanism);
    let named = server.client_first(&client.client_first())?;
    assert_eq!(named, user);
    let server_first = server.server_first(credential);
    let client_final = client.client_final(&server_first)?;
    let (server_final, authenticated) = server.client_final(&client_final)?;
    client.verify_server_final(&server_final)?;
    Ok(authenticated)
}

#[test]
fn round_trip_both_mechanisms() {
    for mechanism in Mechanism::ALL {
        let credential = ScramCredential::new(mechanism, "s3cret", 4096).unwrap();
        assert_eq!(credential.salt.len(), ScramCredential::SALT_LEN);
        assert_eq!(credential.stored_key.len(), mechanism.output_len());
        let user = exchange(mechanism, Some(&credential), "alice", "s3cret").unwrap();
        assert_eq!(user, "alice");
    }
}

#[test]
fn random_salts_differ() {
    let a = ScramCredential::new(Mechanism::ScramSha256, "pw", 4096).unwrap();
    let b = ScramCredential::new(Mechanism::ScramSha256, "pw", 4096).unwrap();
    assert_ne!(a.salt, b.salt);
    assert_ne!(a.stored_key, b.stored_key);
}

#[test]
fn wrong_password_and_unknown_user_fail_alike() {
    for mechanism in Mechanism::ALL {
        let credential = ScramCredential::new(mechanism, "right", 4096).unwrap();
        let wrong = exchange(mechanism, Some(&credential), "alice", "wrong").unwrap_err();
        let unknown = exchange(mechanism, None, "alice", "right").unwrap_err();
        assert_eq!(wrong, unknown);
        assert_eq!(
            wrong.to_string(),
            "SCRAM: authentication failed for user alice"
        );
    }
}

#[test]
fn unknown_user_sees_a_stable_plausible_salt() {
    let salt_of = |user: &str| {
        let mut server = ScramServer::new(Mechanism::ScramSha256);
        server
            .client_first(format!("n,,n={user},r=abc").as_bytes())
            .unwrap();
        let first = String::from_utf8(server.server_first(None)).unwrap();
        let salt = first.split(',').nth(1).unwrap().to_owned();
        assert!(first.ends_with(",i=4096"), "{first}");
        salt
    };
    assert_eq!(salt_of("ghost"), salt_of("ghost"));
    assert_ne!(salt_of("ghost"), salt_of("phantom"));
    let salt = B64
        .decode(salt_of("ghost").strip_prefix("s=").unwrap())
        .unwrap();
    assert_eq!(salt.len(), ScramCredential::SALT_LEN);
}

#[test]
fn credential_for_another_mechanism_fails_like_a_bad_password() {
    let credential = ScramCredential::new(Mechanism::ScramSha512, "pw", 4096).unwrap();
    let err = exchange(Mechanism::ScramSha256, Some(&credential), "alice", "pw").unwrap_err();
    assert_eq!(
        err.to_string(),
        "SCRAM: authentication failed for user alice"
    );
}

/// The server's first two steps with a credential for `alice`/`pw`, and
/// the client's honest client-final.
fn up_to_client_final() -> (ScramServer, String) {
    let mechanism = Mechanism::ScramSha256;
    let credential = ScramCredential::new(mechanism, "pw", 4096).unwrap();
    let mut client = ScramClient::new(mechanism, "alice", "pw");
    let mut server = ScramServer::new(mechanism);
    server.client_first(&client.client_first()).unwrap();
    let server_first = server.server_first(Some(&credential));
    let client_final = client.client_final(&server_first).unwrap();
    (server, String::from_utf8(client_final).unwrap())
}

#[test]
fn tampered_nonce_fails() {
    let (mut server, client_final) = up_to_client_final();
    let tampered = client_final.replacen(",r=", ",r=x", 1);
    let err = server.client_final(tampered.as_bytes()).unwrap_err();
    assert_eq!(err.to_string(), "SCRAM: the client's nonce does not match");
}

#[test]
fn tampered_proof_fails() {
    let (mut server, client_final) = up_to_client_final();
    let (head, proof) = client_final.rsplit_once(",p=").unwrap();
    let mut proof = B64.decode(proof).unwrap();
    proof[0] ^= 1;
    let tampered = format!("{head},p={}", B64.encode(proof));
    let err = server.client_final(tampered.as_bytes()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "SCRAM: authentication failed for user alice"
    );
}

#[test]
fn wrong_channel_binding_fails() {
    let (mut server, client_final) = up_to_client_final();
    // "eSws" is base64 of "y,,", not the "n,," the client sent.
    let tampered = client_final.replacen("c=biws", "c=eSws", 1);
    let err = server.client_final(tampered.as_bytes()).unwrap_err();
    assert!(err.to_string().contains("channel binding"), "{err}");
}

#[test]
fn channel_binding_request_refused() {
    let mut server = ScramServer::new(Mechanism::ScramSha256);
    let err = server
        .client_first(b"p=tls-server-end-point,,n=user,r=abc")
        .unwrap_err();
    assert!(err.to_string().contains("channel binding (p=)"), "{err}");
}

#[test]
fn extensions_refused() {
    let mut server = ScramServer::new(Mechanism::ScramSha256);
    let err = server
        .client_first(b"n,,n=user,r=abc,tokenauth=true")
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "SCRAM: extensions are not supported (got `tokenauth`)"
    );
    let mut server = ScramServer::new(Mechanism::ScramSha256);
    assert!(server.client_first(b"n,,m=ext,n=user,r=abc").is_err());
}

#[test]
fn authzid_must_name_the_user() {
    let mut server = ScramServer::new(Mechanism::ScramSha256);
    assert_eq!(
        server.client_first(b"n,a=alice,n=alice,r=abc").unwrap(),
        "alice"
    );
    let mut server = ScramServer::new(Mechanism::ScramSha256);
    assert!(server.client_first(b"n,a=bob,n=alice,r=abc").is_err());
}

/// With an authzid the gs2 header is `n,a=alice,`, and `c=` must carry its
/// base64 rather than `biws`.
#[test]
fn authzid_changes_the_expected_channel_binding() {
    let mechanism = Mechanism::ScramSha256;
    let credential = ScramCredential::new(mechanism, "pw", 4096).unwrap();
    let mut client = ScramClient::new(mechanism, "alice", "pw").with_authzid("alice");
    let mut server = ScramServer::new(mechanism);
    let first = client.client_first();
    assert!(first.starts_with(b"n,a=alice,n=alice,r="));
    server.client_first(&first).unwrap();
    let server_first = server.server_first(Some(&credential));
    let client_final = String::from_utf8(client.client_final(&server_first).unwrap()).unwrap();
    assert!(
        client_final.starts_with("c=bixhPWFsaWNlLA==,"),
        "{client_final}"
    );
    let (server_final, user) = server.client_final(client_final.as_bytes()).unwrap();
    assert_eq!(user, "alice");
    client.verify_server_final(&server_final).unwrap();

    // "biws" (for "n,,") is refused once the header carried an authzid.
    let mut client = ScramClient::new(mechanism, "alice", "pw").with_authzid("alice");
    let mut server = ScramServer::new(mechanism);
    server.client_first(&client.client_first()).unwrap();
    let server_first = server.server_first(Some(&credential));
    let client_final = String::from_utf8(client.client_final(&server_first).unwrap()).unwrap();
    let tampered = client_final.replacen("c=bixhPWFsaWNlLA==", "c=biws", 1);
    let err = server.client_final(tampered.as_bytes()).unwrap_err();
    assert!(err.to_string().contains("channel binding"), "{err}");
}

#[test]
fn plain_verify_password() {
    for mechanism in Mechanism::ALL {
        let credential = ScramCredential::new(mechanism, "pencil", 4096).unwrap();
        assert!(credential.verify_password("pencil"));
        assert!(!credential.verify_password("pencil "));
        assert!(!credential.verify_password(""));
    }
}

#[test]
fn username_escaping() {
    let mut server = ScramServer::new(Mechanism::ScramSha256);
    let user = server.client_first(b"n,,n=a=2Cb=3Dc,r=abc").unwrap();
    assert_eq!(user, "a,b=c");
    assert_eq!(escape_saslname("a,b=c"), "a=2Cb=3Dc");
    for bad in [
        &b"n,,n=a=2,r=abc"[..],
        b"n,,n=a=41b,r=abc",
        b"n,,n=a=2c,r=abc",
    ] {
        let mut server = ScramServer::new(Mechanism::ScramSha256);
        assert!(server.client_first(bad).is_err());
    }
    // And end to end: the client escapes, the server unescapes.
    let credential = ScramCredential::new(Mechanism::ScramSha256, "pw", 4096).unwrap();
    let user = exchange(Mechanism::ScramSha256, Some(&credential), "o=u,cn=x", "pw").unwrap();
    assert_eq!(user, "o=u,cn=x");
}

#[test]
fn iteration_bounds() {
    let m = Mechanism::ScramSha256;
    let err = ScramCredential::new(m, "pw", 4095).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid SCRAM credential: iterations 4095 is below the minimum 4096 for SCRAM-SHA-256"
    );
    assert!(ScramCredential::new(m, "pw", 0).is_err());
    assert!(ScramCredential::new(m, "pw", 16385).is_err());
    assert!(ScramCredential::new(m, "pw", 16384).is_ok());
    assert!(ScramCredential::new(m, "", 4096).is_err());
}

#[test]
fn out_of_order_calls_fail() {
    let mut server = ScramServer::new(Mechanism::ScramSha256);
    assert!(server.client_final(b"c=biws,r=abc,p=AAAA").is_err());

    let mut server = ScramServer::new(Mechanism::ScramSha256);
    assert!(server.server_first(None).is_empty());
    assert!(server.client_first(b"n,,n=user,r=abc").is_err());

    // A second client-first ends the exchange.
    let mut server = ScramServer::new(Mechanism::ScramSha256);
    server.client_first(b"n,,n=user,r=abc").unwrap();
    assert!(server.client_first(b"n,,n=user,r=abc").is_err());
    assert!(server.server_first(None).is_empty());
}

#[test]
fn malformed_client_first_refused() {
    for bad in [
        &b""[..],
        b"n,,",
        b"x,,n=user,r=abc",
        b"n,,r=abc",
        b"n,,n=,r=abc",
        b"n,,n=user",
        b"n,,n=user,r=",
        b"n,,n=user,r=a\x01b",
        b"n,,n=\xff,r=abc",
    ] {
        let mut server = ScramServer::new(Mechanism::ScramSha256);
        assert!(
            server.client_first(bad).is_err(),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn mechanism_names() {
    assert_eq!(Mechanism::ScramSha256.name(), "SCRAM-SHA-256");
    assert_eq!(Mechanism::ScramSha512.to_string(), "SCRAM-SHA-512");
    assert_eq!(
        Mechanism::parse("scram-sha-512"),
        Some(Mechanism::ScramSha512)
    );
    assert_eq!(Mechanism::parse("SCRAM-SHA-1"), None);
}

#[test]
fn credential_json_round_trip() {
    let salt = B64.decode(RFC_SALT).unwrap();
    let credential =
        ScramCredential::with_salt(Mechanism::ScramSha256, RFC_PASSWORD, &salt, 4096).unwrap();
    let json = serde_json::to_value(&credential).unwrap();
    assert_eq!(json["mechanism"], "SCRAM-SHA-256");
    assert_eq!(json["salt"], RFC_SALT);
    assert_eq!(json["iterations"], 4096);
    let back: ScramCredential = serde_json::from_value(json).unwrap();
    assert_eq!(back, credential);
}

#[test]
fn a_credential_from_the_salted_password_is_the_same() {
    for m in Mechanism::ALL {
        let direct = ScramCredential::with_salt(m, "pencil", b"salty", 4096).unwrap();
        let salted = m.salt_password("pencil", b"salty", 4096);
        let from = ScramCredential::from_salted_password(m, b"salty", &salted, 4096).unwrap();
        assert_eq!(direct, from);
        assert!(from.verify_password("pencil"));
        assert!(ScramCredential::from_salted_password(m, b"salty", &salted, 100).is_err());
        assert!(ScramCredential::from_salted_password(m, b"", &salted, 4096).is_err());
        assert!(ScramCredential::from_salted_password(m, b"s", &salted[1..], 4096).is_err());
    }
}

/// librdkafka repeats its nonce in front of the combined one in
/// client-final; Kafka accepts that, and so must we (only that form).
#[test]
fn librdkafkas_doubled_nonce_is_accepted() {
    for m in Mechanism::ALL {
        let credential = ScramCredential::new(m, "pencil", 4096).unwrap();
        let mut server = ScramServer::new(m);
        server.client_first(b"n,,n=user,r=abc").unwrap();
        let server_first = String::from_utf8(server.server_first(Some(&credential))).unwrap();
        let combined = server_first
            .strip_prefix("r=")
            .and_then(|r| r.split(',').next())
            .unwrap()
            .to_string();
        // The proof over librdkafka's own AuthMessage (with the doubled nonce).
        let salted = m.salt_password("pencil", &credential.salt, 4096);
        let without_proof = format!("c=biws,r=abc{combined}");
        let auth = format!("n=user,r=abc,{server_first},{without_proof}");
        let client_key =
            ring::hmac::sign(&ring::hmac::Key::new(hmac_of(m), &salted), b"Client Key");
        let stored = ring::digest::digest(digest_of(m), client_key.as_ref());
        let signature = ring::hmac::sign(
            &ring::hmac::Key::new(hmac_of(m), stored.as_ref()),
            auth.as_bytes(),
        );
        let proof: Vec<u8> = client_key
            .as_ref()
            .iter()
            .zip(signature.as_ref())
            .map(|(a, b)| a ^ b)
            .collect();
        let msg = format!("{without_proof},p={}", B64.encode(proof));
        let (_, user) = server.client_final(msg.as_bytes()).unwrap();
        assert_eq!(user, "user");
        // Another prefix is not the client's own nonce.
        let mut server = ScramServer::new(m);
        server.client_first(b"n,,n=user,r=abc").unwrap();
        server.server_first(Some(&credential));
        let bad = format!("c=biws,r=xyz{combined},p=AAAA");
        assert!(server.client_final(bad.as_bytes()).is_err());
    }
}

fn hmac_of(m: Mechanism) -> ring::hmac::Algorithm {
    match m {
        Mechanism::ScramSha256 => ring::hmac::HMAC_SHA256,
        Mechanism::ScramSha512 => ring::hmac::HMAC_SHA512,
    }
}

fn digest_of(m: Mechanism) -> &'static ring::digest::Algorithm {
    match m {
        Mechanism::ScramSha256 => &ring::digest::SHA256,
        Mechanism::ScramSha512 => &ring::digest::SHA512,
    }
}
