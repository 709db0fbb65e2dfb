//! [`Principal`]: `User:<name>`, as Kafka writes it.

use std::fmt;

use crate::AuthError;

/// The identity a request acts as. Kafka's principal type is `User` for
/// every authenticated identity (certificate, SASL, token); `User:*` in an
/// ACL matches any of them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Principal {
    name: String,
}

impl Principal {
    /// Who a connection is before it authenticates (plaintext, or TLS
    /// without a client certificate): Kafka's `User:ANONYMOUS`.
    pub fn anonymous() -> Self {
        Principal::user("ANONYMOUS")
    }

    pub fn user(name: impl Into<String>) -> Self {
        Principal { name: name.into() }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Parses `User:<name>` (the type is case-sensitive, as in Kafka).
    pub fn parse(s: &str) -> Result<Self, AuthError> {
        match s.trim().split_once(':') {
            Some(("User", name)) if !name.is_empty() => Ok(Principal::user(name)),
            _ => Err(AuthError::acl(
                "principal",
                format!("{s:?} is not User:<name> (for example User:alice, or User:* for anyone)"),
            )),
        }
    }

    /// Whether this is the wildcard `User:*`.
    pub fn is_wildcard(&self) -> bool {
        self.name == "*"
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "User:{}", self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_parse_and_print_as_kafka_writes_them() {
        let p = Principal::parse("User:CN=alice,O=Acme").unwrap();
        assert_eq!(p.name(), "CN=alice,O=Acme");
        assert_eq!(p.to_string(), "User:CN=alice,O=Acme");
        assert!(Principal::parse("User:*").unwrap().is_wildcard());
        for bad in ["alice", "Group:g", "User:", "user:alice"] {
            assert!(Principal::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Principal::anonymous().to_string(), "User:ANONYMOUS");
    }
}
