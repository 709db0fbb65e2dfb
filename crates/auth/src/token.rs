//! API tokens for gRPC clients (`sluice tokens --create`): a bearer secret
//! that acts as a principal until it expires or is revoked. The token is
//! shown once; the cluster stores only its SHA-256, so a leaked metadata
//! store does not leak working tokens.
//!
//! A token reads `slc_<id>.<secret>`: the id (16 hex digits) finds the
//! record, the secret (32 random bytes, base64url) proves possession.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use rand::RngCore as _;
use ring::digest;
use serde::{Deserialize, Serialize};

use crate::AuthError;

const PREFIX: &str = "slc_";

/// What the cluster stores for a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// `User:<name>`: who the token acts as.
    pub principal: String,
    /// SHA-256 of the secret, base64url.
    pub secret_sha256: String,
    pub created_ms: i64,
    /// After this the token is refused; `None`: never expires.
    pub expires_ms: Option<i64>,
    /// What the operator said the token is for.
    #[serde(default)]
    pub description: String,
}

/// A new token: its id, the whole token (shown once) and the record to
/// store.
pub fn generate(
    principal: &str,
    now_ms: i64,
    expires_ms: Option<i64>,
    description: &str,
) -> (String, String, TokenRecord) {
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    let mut rng = rand::rng();
    rng.fill_bytes(&mut id);
    rng.fill_bytes(&mut secret);
    let id: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let secret = B64URL.encode(secret);
    let record = TokenRecord {
        principal: principal.to_string(),
        secret_sha256: hash(&secret),
        created_ms: now_ms,
        expires_ms,
        description: description.to_string(),
    };
    (id.clone(), format!("{PREFIX}{id}.{secret}"), record)
}

/// Splits a token into (id, secret).
pub fn parse(token: &str) -> Result<(&str, &str), AuthError> {
    token
        .trim()
        .strip_prefix(PREFIX)
        .and_then(|t| t.split_once('.'))
        .filter(|(id, secret)| {
            id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()) && !secret.is_empty()
        })
        .ok_or_else(|| AuthError::Sasl("not a Sluice token (slc_<id>.<secret>)".into()))
}

/// The stored form of a secret.
pub fn hash(secret: &str) -> String {
    B64URL.encode(digest::digest(&digest::SHA256, secret.as_bytes()))
}

impl TokenRecord {
    /// Whether `secret` is this token's and it is still valid at `now_ms`.
    pub fn accepts(&self, secret: &str, now_ms: i64) -> bool {
        let given = hash(secret);
        // Both sides are fixed-length digests; compare without an early exit.
        let same = given.len() == self.secret_sha256.len()
            && given
                .bytes()
                .zip(self.secret_sha256.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        same && self.expires_ms.is_none_or(|e| now_ms < e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_proves_itself_until_it_expires() {
        let (id, token, record) = generate("User:alice", 1_000, Some(2_000), "ci");
        let (pid, secret) = parse(&token).unwrap();
        assert_eq!(pid, id);
        assert!(record.accepts(secret, 1_500));
        assert!(!record.accepts(secret, 2_000), "expired");
        assert!(!record.accepts("wrong", 1_500));
        assert!(
            !record.secret_sha256.contains(secret),
            "only the hash is kept"
        );
        let (_, other, _) = generate("User:alice", 1_000, None, "");
        assert_ne!(token, other);
        for bad in [
            "",
            "slc_",
            "slc_abc.def",
            "xyz_0123456789abcdef.s",
            "slc_0123456789abcdef.",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let json = serde_json::to_string(&record).unwrap();
        assert_eq!(serde_json::from_str::<TokenRecord>(&json).unwrap(), record);
    }
}
