//! SASL SCRAM (RFC 5802, RFC 7677) as Kafka's broker speaks it for
//! `SCRAM-SHA-256` and `SCRAM-SHA-512` (KIP-84), and SASL/PLAIN checked
//! against the same stored credential.
//!
//! - [`ScramCredential`]: what is stored per user and mechanism (salt,
//!   iterations, StoredKey, ServerKey), never the password;
//! - [`ScramServer`]: one exchange on the broker (client-first,
//!   server-first, client-final, server-final);
//! - [`ScramClient`]: the other side, small, for tests.
//!
//! Like Kafka, no channel binding (no `-PLUS` mechanisms) and no SASLprep:
//! names and passwords are used as the UTF-8 the client sent.

use std::fmt;
use std::num::NonZeroU32;
use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use rand::RngCore as _;
use ring::{digest, hmac, pbkdf2};

use crate::AuthError;

/// SCRAM-SHA-256 or SCRAM-SHA-512 (Kafka's mechanism names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Mechanism {
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl Mechanism {
    pub const ALL: [Mechanism; 2] = [Mechanism::ScramSha256, Mechanism::ScramSha512];

    /// Kafka's minimum iteration count, for both mechanisms.
    pub const MIN_ITERATIONS: u32 = 4096;
    /// Kafka's maximum iteration count, for both mechanisms.
    pub const MAX_ITERATIONS: u32 = 16384;

    /// The SASL mechanism name, as in `sasl.enabled.mechanisms`.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }

    /// A mechanism by name, ignoring ASCII case.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(s))
    }

    fn hmac(self) -> hmac::Algorithm {
        match self {
            Mechanism::ScramSha256 => hmac::HMAC_SHA256,
            Mechanism::ScramSha512 => hmac::HMAC_SHA512,
        }
    }

    fn digest(self) -> &'static digest::Algorithm {
        match self {
            Mechanism::ScramSha256 => &digest::SHA256,
            Mechanism::ScramSha512 => &digest::SHA512,
        }
    }

    fn pbkdf2(self) -> pbkdf2::Algorithm {
        match self {
            Mechanism::ScramSha256 => pbkdf2::PBKDF2_HMAC_SHA256,
            Mechanism::ScramSha512 => pbkdf2::PBKDF2_HMAC_SHA512,
        }
    }

    fn output_len(self) -> usize {
        self.digest().output_len()
    }

    /// `HMAC(key, data)`.
    fn hmac_sign(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        hmac::sign(&hmac::Key::new(self.hmac(), key), data)
            .as_ref()
            .to_vec()
    }

    /// `H(data)`.
    fn hash(self, data: &[u8]) -> Vec<u8> {
        digest::digest(self.digest(), data).as_ref().to_vec()
    }

    /// `SaltedPassword` for `password` (what a client sends to set a
    /// credential; see [`ScramCredential::from_salted_password`]).
    pub fn salt_password(self, password: &str, salt: &[u8], iterations: u32) -> Vec<u8> {
        let i = NonZeroU32::new(iterations).unwrap_or(NonZeroU32::MIN);
        self.salted_password(password, salt, i)
    }

    /// `Hi(password, salt, i)`: PBKDF2 with the mechanism's HMAC.
    fn salted_password(self, password: &str, salt: &[u8], iterations: NonZeroU32) -> Vec<u8> {
        let mut out = vec![0; self.output_len()];
        pbkdf2::derive(
            self.pbkdf2(),
            iterations,
            salt,
            password.as_bytes(),
            &mut out,
        );
        out
    }

    /// `ClientKey` from a salted password.
    fn client_key(self, salted_password: &[u8]) -> Vec<u8> {
        self.hmac_sign(salted_password, b"Client Key")
    }

    /// `ServerKey` from a salted password.
    fn server_key(self, salted_password: &[u8]) -> Vec<u8> {
        self.hmac_sign(salted_password, b"Server Key")
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What is stored for a user and mechanism (never the password): salt,
/// iterations, StoredKey, ServerKey. The byte fields are base64 strings in
/// JSON.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ScramCredential {
    pub mechanism: Mechanism,
    #[serde(with = "base64_bytes")]
    pub salt: Vec<u8>,
    pub iterations: u32,
    #[serde(with = "base64_bytes")]
    pub stored_key: Vec<u8>,
    #[serde(with = "base64_bytes")]
    pub server_key: Vec<u8>,
}

impl ScramCredential {
    /// Length of the random salt [`ScramCredential::new`] draws.
    pub const SALT_LEN: usize = 32;

    /// A credential with a random salt. Refuses iterations outside Kafka's
    /// 4096..=16384 and an empty password.
    pub fn new(mechanism: Mechanism, password: &str, iterations: u32) -> Result<Self, AuthError> {
        let mut salt = [0u8; Self::SALT_LEN];
        rand::rng().fill_bytes(&mut salt);
        Self::with_salt(mechanism, password, &salt, iterations)
    }

    /// A credential with the given salt (same checks as [`ScramCredential::new`]).
    pub fn with_salt(
        mechanism: Mechanism,
        password: &str,
        salt: &[u8],
        iterations: u32,
    ) -> Result<Self, AuthError> {
        let credential_error = |message: String| Err(AuthError::Credential(message));
        if iterations < Mechanism::MIN_ITERATIONS {
            return credential_error(format!(
                "iterations {iterations} is below the minimum {} for {mechanism}",
                Mechanism::MIN_ITERATIONS
            ));
        }
        if iterations > Mechanism::MAX_ITERATIONS {
            return credential_error(format!(
                "iterations {iterations} is above the maximum {} for {mechanism}",
                Mechanism::MAX_ITERATIONS
            ));
        }
        if salt.is_empty() {
            return credential_error("the salt must not be empty".to_owned());
        }
        if password.is_empty() {
            return credential_error("the password must not be empty".to_owned());
        }
        let iterations_nz = NonZeroU32::new(iterations).expect("checked above");
        let salted = mechanism.salted_password(password, salt, iterations_nz);
        Ok(ScramCredential {
            mechanism,
            salt: salt.to_vec(),
            iterations,
            stored_key: mechanism.hash(&mechanism.client_key(&salted)),
            server_key: mechanism.server_key(&salted),
        })
    }

    /// A credential from the salted password a client computed (Kafka's
    /// AlterUserScramCredentials sends that, never the password), with the
    /// same checks on iterations and salt.
    pub fn from_salted_password(
        mechanism: Mechanism,
        salt: &[u8],
        salted_password: &[u8],
        iterations: u32,
    ) -> Result<Self, AuthError> {
        if !(Mechanism::MIN_ITERATIONS..=Mechanism::MAX_ITERATIONS).contains(&iterations) {
            return Err(AuthError::Credential(format!(
                "iterations {iterations} is outside {}..={} for {mechanism}",
                Mechanism::MIN_ITERATIONS,
                Mechanism::MAX_ITERATIONS
            )));
        }
        if salt.is_empty() {
            return Err(AuthError::Credential("the salt must not be empty".into()));
        }
        if salted_password.len() != mechanism.output_len() {
            return Err(AuthError::Credential(format!(
                "a {mechanism} salted password is {} bytes, not {}",
                mechanism.output_len(),
                salted_password.len()
            )));
        }
        Ok(ScramCredential {
            mechanism,
            salt: salt.to_vec(),
            iterations,
            stored_key: mechanism.hash(&mechanism.client_key(salted_password)),
            server_key: mechanism.server_key(salted_password),
        })
    }

    /// SASL/PLAIN against a SCRAM credential: recompute StoredKey from the
    /// password and compare in constant time.
    pub fn verify_password(&self, password: &str) -> bool {
        let Some(iterations) = NonZeroU32::new(self.iterations) else {
            return false;
        };
        let m = self.mechanism;
        let salted = m.salted_password(password, &self.salt, iterations);
        constant_time_eq(&m.hash(&m.client_key(&salted)), &self.stored_key)
    }

    /// Whether a server can run an exchange on this credential: a stored
    /// credential comes from etcd, not necessarily through `new`.
    fn usable_for(&self, mechanism: Mechanism) -> bool {
        self.mechanism == mechanism
            && self.iterations >= Mechanism::MIN_ITERATIONS
            && !self.salt.is_empty()
            && self.stored_key.len() == mechanism.output_len()
            && self.server_key.len() == mechanism.output_len()
    }
}

/// Serde for byte fields as standard base64 strings.
mod base64_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as B64;
    use serde::{Deserialize as _, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        B64.decode(text).map_err(serde::de::Error::custom)
    }
}

/// One SCRAM exchange on the server: [`client_first`](Self::client_first),
/// [`server_first`](Self::server_first), [`client_final`](Self::client_final),
/// in that order, once each.
pub struct ScramServer {
    mechanism: Mechanism,
    /// Set by tests to reproduce published vectors; random otherwise.
    server_nonce: Option<String>,
    state: ServerState,
}

enum ServerState {
    Initial,
    ClientFirst(ClientFirst),
    ServerFirst {
        first: ClientFirst,
        server_first: String,
        nonce: String,
        keys: Keys,
        /// False for an unknown user (or an unusable credential): the
        /// exchange goes on with fake keys and fails at the end.
        known: bool,
    },
    /// Succeeded, failed, or called out of order: nothing more to do.
    Done,
}

/// What the server keeps from the client-first message.
struct ClientFirst {
    username: String,
    client_nonce: String,
    /// Raw gs2 header ("n,," or "n,a=...,"); the client echoes its base64 in `c=`.
    gs2_header: String,
    /// client-first-message-bare, the first part of AuthMessage.
    bare: String,
}

struct Keys {
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
}

impl ScramServer {
    pub fn new(mechanism: Mechanism) -> Self {
        ScramServer {
            mechanism,
            server_nonce: None,
            state: ServerState::Initial,
        }
    }

    /// A server whose nonce suffix is fixed, to reproduce test vectors.
    #[cfg(test)]
    pub(crate) fn with_server_nonce(mechanism: Mechanism, nonce: &str) -> Self {
        ScramServer {
            server_nonce: Some(nonce.to_owned()),
            ..Self::new(mechanism)
        }
    }

    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// Reads the client-first-message (`n,,n=user,r=nonce`, or with an
    /// authzid `n,a=user,n=user,r=nonce`) and returns the username the client
    /// named, unescaped, so the caller can look up its credential.
    pub fn client_first(&mut self, msg: &[u8]) -> Result<String, AuthError> {
        if !matches!(self.state, ServerState::Initial) {
            self.state = ServerState::Done;
            return Err(sasl("the client-first message came out of order"));
        }
        // Any error ends the exchange: the state stays `Done` unless parsing succeeds.
        self.state = ServerState::Done;
        let first = parse_client_first(msg)?;
        let username = first.username.clone();
        self.state = ServerState::ClientFirst(first);
        Ok(username)
    }

    /// Returns the server-first-message `r=<client nonce + server
    /// nonce>,s=<base64 salt>,i=<iterations>` for the user's credential, or
    /// for a fake one when `credential` is `None` (unknown user).
    ///
    /// The fake salt is derived from the username with a per-process secret,
    /// so repeated attempts see the same salt, as for a real user, and the
    /// exchange fails only at the final step, with the same error as a wrong
    /// password. A credential for another mechanism, or one with fewer than
    /// 4096 iterations, is treated like an unknown user.
    ///
    /// Called out of order, returns an empty message and ends the exchange
    /// (the next call fails).
    pub fn server_first(&mut self, credential: Option<&ScramCredential>) -> Vec<u8> {
        let ServerState::ClientFirst(first) = std::mem::replace(&mut self.state, ServerState::Done)
        else {
            return Vec::new();
        };
        let m = self.mechanism;
        let (salt, iterations, keys, known) = match credential.filter(|c| c.usable_for(m)) {
            Some(c) => (
                c.salt.clone(),
                c.iterations,
                Keys {
                    stored_key: c.stored_key.clone(),
                    server_key: c.server_key.clone(),
                },
                true,
            ),
            // Keys of the right length, so the final step costs the same.
            None => (
                fake_salt(m, &first.username),
                Mechanism::MIN_ITERATIONS,
                Keys {
                    stored_key: vec![0; m.output_len()],
                    server_key: vec![0; m.output_len()],
                },
                false,
            ),
        };
        let server_nonce = self.server_nonce.take().unwrap_or_else(random_nonce);
        let nonce = format!("{}{server_nonce}", first.client_nonce);
        let server_first = format!("r={nonce},s={},i={iterations}", B64.encode(&salt));
        let out = server_first.clone().into_bytes();
        self.state = ServerState::ServerFirst {
            first,
            server_first,
            nonce,
            keys,
            known,
        };
        out
    }

    /// Reads the client-final-message `c=<base64 gs2 header>,r=<nonce>,p=<proof>`
    /// and checks the channel binding, the nonce and the proof. On success
    /// returns the server-final-message `v=<base64 server signature>` and the
    /// authenticated username.
    pub fn client_final(&mut self, msg: &[u8]) -> Result<(Vec<u8>, String), AuthError> {
        let ServerState::ServerFirst {
            first,
            server_first,
            nonce,
            keys,
            known,
        } = std::mem::replace(&mut self.state, ServerState::Done)
        else {
            return Err(sasl("the client-final message came out of order"));
        };
        let m = self.mechanism;
        let msg = utf8(msg, "client-final")?;
        // The proof is last (RFC 5802 §7); AuthMessage covers all before it.
        let (without_proof, proof) = msg
            .rsplit_once(",p=")
            .ok_or_else(|| sasl("the client-final message has no proof (p=)"))?;
        let mut attrs = without_proof.split(',');
        let binding = attribute(attrs.next(), 'c', "client-final")?;
        let client_nonce = attribute(attrs.next(), 'r', "client-final")?;
        if let Some(extra) = attrs.next() {
            return Err(extension_error(extra));
        }
        let binding = B64
            .decode(binding)
            .map_err(|_| sasl("the channel binding (c=) is not valid base64"))?;
        if binding != first.gs2_header.as_bytes() {
            return Err(sasl(
                "the channel binding (c=) does not match the client-first message's gs2 header",
            ));
        }
        // librdkafka sends its own nonce again in front of the combined one
        // (c=...,r=<client nonce><client nonce><server nonce>); Kafka's
        // broker accepts a nonce that ends with the combined one, and so
        // do we, but only with the client's own nonce in front.
        let doubled = client_nonce
            .strip_suffix(nonce.as_str())
            .is_some_and(|front| front == first.client_nonce);
        if client_nonce != nonce && !doubled {
            return Err(sasl("the client's nonce does not match"));
        }
        let failed = || sasl(format!("authentication failed for user {}", first.username));
        let proof = B64.decode(proof).map_err(|_| failed())?;
        if proof.len() != m.output_len() {
            return Err(failed());
        }
        let auth_message = format!("{},{server_first},{without_proof}", first.bare);
        let client_signature = m.hmac_sign(&keys.stored_key, auth_message.as_bytes());
        let client_key = xor(&proof, &client_signature);
        // `&` not `&&`: the comparison runs for unknown users too.
        if !(constant_time_eq(&m.hash(&client_key), &keys.stored_key) & known) {
            return Err(failed());
        }
        let server_signature = m.hmac_sign(&keys.server_key, auth_message.as_bytes());
        let server_final = format!("v={}", B64.encode(server_signature)).into_bytes();
        Ok((server_final, first.username))
    }
}

impl fmt::Debug for ScramServer {
    // Keys stay out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            ServerState::Initial => "initial",
            ServerState::ClientFirst(_) => "client-first received",
            ServerState::ServerFirst { .. } => "server-first sent",
            ServerState::Done => "done",
        };
        f.debug_struct("ScramServer")
            .field("mechanism", &self.mechanism)
            .field("state", &state)
            .finish()
    }
}

fn parse_client_first(msg: &[u8]) -> Result<ClientFirst, AuthError> {
    let msg = utf8(msg, "client-first")?;
    // gs2-header = gs2-cbind-flag "," [authzid] ","
    let (flag, rest) = msg
        .split_once(',')
        .ok_or_else(|| sasl("the client-first message has no gs2 header"))?;
    match flag {
        // "y": the client could bind but thinks we cannot; we cannot, so fine.
        "n" | "y" => {}
        f if f.starts_with("p=") => {
            return Err(sasl(
                "channel binding (p=) is not supported; use a mechanism without -PLUS",
            ));
        }
        _ => return Err(sasl("the client-first message has an invalid gs2 header")),
    }
    let (authzid, bare) = rest
        .split_once(',')
        .ok_or_else(|| sasl("the client-first message has an invalid gs2 header"))?;
    let gs2_header = &msg[..msg.len() - bare.len()];

    let mut attrs = bare.split(',');
    let first_attr = attrs.next().unwrap_or_default();
    if first_attr.starts_with("m=") {
        return Err(sasl("mandatory extensions (m=) are not supported"));
    }
    let username = unescape_saslname(attribute(Some(first_attr), 'n', "client-first")?)?;
    if username.is_empty() {
        return Err(sasl("the username (n=) is empty"));
    }
    let client_nonce = attribute(attrs.next(), 'r', "client-first")?;
    if client_nonce.is_empty() || !client_nonce.bytes().all(is_nonce_char) {
        return Err(sasl(
            "the client's nonce (r=) must be printable ASCII without commas",
        ));
    }
    // Kafka's only extension is tokenauth (delegation tokens), which we lack.
    if let Some(extra) = attrs.next() {
        return Err(extension_error(extra));
    }
    if !authzid.is_empty() {
        let authzid = authzid
            .strip_prefix("a=")
            .ok_or_else(|| sasl("the client-first message has an invalid gs2 header"))?;
        // As Kafka: a user may not act as another.
        if unescape_saslname(authzid)? != username {
            return Err(sasl(
                "the authorization id (a=) differs from the username (n=)",
            ));
        }
    }
    Ok(ClientFirst {
        username,
        client_nonce: client_nonce.to_owned(),
        gs2_header: gs2_header.to_owned(),
        bare: bare.to_owned(),
    })
}

/// The value of attribute `name` (`name=value`), or an error naming it.
fn attribute<'a>(attr: Option<&'a str>, name: char, message: &str) -> Result<&'a str, AuthError> {
    attr.and_then(|a| a.strip_prefix(name))
        .and_then(|a| a.strip_prefix('='))
        .ok_or_else(|| {
            sasl(format!(
                "the {message} message has no {name}= attribute where expected"
            ))
        })
}

fn extension_error(attr: &str) -> AuthError {
    // Name only: an extension's value may be a secret (a token).
    let name = attr.split_once('=').map_or(attr, |(name, _)| name);
    sasl(format!("extensions are not supported (got `{name}`)"))
}

fn utf8<'a>(msg: &'a [u8], which: &str) -> Result<&'a str, AuthError> {
    std::str::from_utf8(msg).map_err(|_| sasl(format!("the {which} message is not UTF-8")))
}

/// RFC 5802 saslname: `,` and `=` travel as `=2C` and `=3D`; any other `=` is invalid.
fn unescape_saslname(name: &str) -> Result<String, AuthError> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        let escaped = rest.get(i + 1..i + 3);
        out.push(match escaped {
            Some("2C") => ',',
            Some("3D") => '=',
            _ => {
                return Err(sasl(
                    "the username has an invalid escape (only =2C and =3D)",
                ));
            }
        });
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

fn escape_saslname(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

/// RFC 5802 `printable`: %x21-2B / %x2D-7E.
fn is_nonce_char(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) && b != b','
}

/// 24 random bytes as base64: 32 printable characters, none a comma.
fn random_nonce() -> String {
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    B64.encode(bytes)
}

/// The salt shown for an unknown user: an HMAC of the name under a secret
/// drawn once per process, so it is stable across attempts but cannot be
/// computed (and so recognised as fake) by the client.
fn fake_salt(mechanism: Mechanism, username: &str) -> Vec<u8> {
    static SECRET: OnceLock<hmac::Key> = OnceLock::new();
    let key = SECRET.get_or_init(|| {
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        hmac::Key::new(hmac::HMAC_SHA256, &secret)
    });
    let mut ctx = hmac::Context::with_key(key);
    ctx.update(mechanism.name().as_bytes());
    ctx.update(&[0]);
    ctx.update(username.as_bytes());
    let tag = ctx.sign();
    tag.as_ref()[..ScramCredential::SALT_LEN].to_vec()
}

fn xor(a: &[u8], b: &[u8]) -> Vec<u8> {
    a.iter().zip(b).map(|(x, y)| x ^ y).collect()
}

/// Equality whose time depends on the lengths only, not on where the bytes differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

fn sasl(message: impl fmt::Display) -> AuthError {
    AuthError::Sasl(format!("SCRAM: {message}"))
}

/// The client side of one exchange, small, for tests (here and in other
/// crates): [`client_first`](Self::client_first),
/// [`client_final`](Self::client_final),
/// [`verify_server_final`](Self::verify_server_final).
pub struct ScramClient {
    mechanism: Mechanism,
    username: String,
    password: String,
    client_nonce: String,
    /// "n,," or "n,a=<authzid>,"; echoed in base64 in client-final.
    gs2_header: String,
    /// AuthMessage's first part, kept from client-first.
    bare: String,
    /// The server signature expected in server-final, once client-final is built.
    server_signature: Option<Vec<u8>>,
}

impl ScramClient {
    /// A client with a random nonce.
    pub fn new(mechanism: Mechanism, username: &str, password: &str) -> Self {
        Self::with_nonce(mechanism, username, password, &random_nonce())
    }

    /// A client with the given nonce (printable ASCII, no comma), for test vectors.
    pub fn with_nonce(mechanism: Mechanism, username: &str, password: &str, nonce: &str) -> Self {
        ScramClient {
            mechanism,
            username: username.to_owned(),
            password: password.to_owned(),
            client_nonce: nonce.to_owned(),
            gs2_header: "n,,".to_owned(),
            bare: format!("n={},r={nonce}", escape_saslname(username)),
            server_signature: None,
        }
    }

    /// Sends an authorization id (`n,a=<authzid>,...`), which the server
    /// accepts only when it equals the username.
    pub fn with_authzid(mut self, authzid: &str) -> Self {
        self.gs2_header = format!("n,a={},", escape_saslname(authzid));
        self
    }

    /// The client-first-message: `n,,n=<escaped user>,r=<nonce>`.
    pub fn client_first(&self) -> Vec<u8> {
        format!("{}{}", self.gs2_header, self.bare).into_bytes()
    }

    /// Reads the server-first-message and returns the client-final-message.
    pub fn client_final(&mut self, server_first: &[u8]) -> Result<Vec<u8>, AuthError> {
        let m = self.mechanism;
        let server_first = utf8(server_first, "server-first")?;
        let mut attrs = server_first.split(',');
        let nonce = attribute(attrs.next(), 'r', "server-first")?;
        let salt = attribute(attrs.next(), 's', "server-first")?;
        let iterations = attribute(attrs.next(), 'i', "server-first")?;
        if !nonce.starts_with(&self.client_nonce) || nonce.len() == self.client_nonce.len() {
            return Err(sasl("the server's nonce does not extend the client's"));
        }
        let salt = B64
            .decode(salt)
            .map_err(|_| sasl("the salt (s=) is not valid base64"))?;
        let iterations = iterations
            .parse::<u32>()
            .ok()
            .filter(|&i| i >= Mechanism::MIN_ITERATIONS)
            .and_then(NonZeroU32::new)
            .ok_or_else(|| {
                sasl(format!(
                    "the iterations (i=) must be at least {}",
                    Mechanism::MIN_ITERATIONS
                ))
            })?;

        let salted = m.salted_password(&self.password, &salt, iterations);
        let client_key = m.client_key(&salted);
        let stored_key = m.hash(&client_key);
        let without_proof = format!("c={},r={nonce}", B64.encode(&self.gs2_header));
        let auth_message = format!("{},{server_first},{without_proof}", self.bare);
        let client_signature = m.hmac_sign(&stored_key, auth_message.as_bytes());
        let proof = xor(&client_key, &client_signature);
        self.server_signature = Some(m.hmac_sign(&m.server_key(&salted), auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Checks the server-final-message `v=<server signature>`: that the
    /// server knew the credential too.
    pub fn verify_server_final(&self, server_final: &[u8]) -> Result<(), AuthError> {
        let expected = self
            .server_signature
            .as_ref()
            .ok_or_else(|| sasl("the server-final message came before client-final"))?;
        let server_final = utf8(server_final, "server-final")?;
        if let Some(error) = server_final.strip_prefix("e=") {
            return Err(sasl(format!("the server refused: {error}")));
        }
        let signature = attribute(Some(server_final), 'v', "server-final")?;
        let signature = B64
            .decode(signature)
            .map_err(|_| sasl("the server signature (v=) is not valid base64"))?;
        if !constant_time_eq(&signature, expected) {
            return Err(sasl(format!(
                "the server signature does not match for user {}",
                self.username
            )));
        }
        Ok(())
    }
}

impl fmt::Debug for ScramClient {
    // The password stays out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramClient")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
#[path = "scram_tests.rs"]
mod tests;
