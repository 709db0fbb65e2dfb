//! ACL bindings in Kafka's model and with Kafka's names: a principal, from
//! a host, may (`Allow`) or may not (`Deny`) do an operation on the
//! resources a pattern names.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{AuthError, Principal};

/// The name of the one cluster resource (Kafka's).
pub const CLUSTER_NAME: &str = "kafka-cluster";

macro_rules! kafka_enum {
    ($(#[$m:meta])* $name:ident, $field:literal { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// Kafka's spelling.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = AuthError;
            /// Kafka's spelling in any case, `_` and `-` ignored
            /// (`describe-configs`, `DESCRIBE_CONFIGS`, `DescribeConfigs`).
            fn from_str(s: &str) -> Result<Self, AuthError> {
                let norm = |t: &str| t.chars().filter(|c| *c != '_' && *c != '-').collect::<String>().to_ascii_lowercase();
                let want = norm(s);
                $name::ALL.iter().copied().find(|v| norm(v.as_str()) == want).ok_or_else(|| {
                    AuthError::acl($field, format!(
                        "{s:?} is not one of {}",
                        $name::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ")
                    ))
                })
            }
        }
    };
}

kafka_enum!(
    /// What an ACL protects.
    ResourceType, "resource type" {
        Topic = "Topic",
        Group = "Group",
        Cluster = "Cluster",
        TransactionalId = "TransactionalId",
    }
);

kafka_enum!(
    /// How an ACL's resource name matches.
    PatternType, "pattern type" {
        Literal = "LITERAL",
        Prefixed = "PREFIXED",
    }
);

kafka_enum!(
    /// What a request does.
    Operation, "operation" {
        All = "All",
        Read = "Read",
        Write = "Write",
        Create = "Create",
        Delete = "Delete",
        Alter = "Alter",
        Describe = "Describe",
        ClusterAction = "ClusterAction",
        DescribeConfigs = "DescribeConfigs",
        AlterConfigs = "AlterConfigs",
        IdempotentWrite = "IdempotentWrite",
    }
);

kafka_enum!(
    /// Allow or deny.
    Permission, "permission" {
        Allow = "Allow",
        Deny = "Deny",
    }
);

impl Operation {
    /// The operations an allow of `self` also allows (Kafka's rules):
    /// Read, Write, Delete and Alter imply Describe; AlterConfigs implies
    /// DescribeConfigs; All implies everything.
    pub fn implies(self, asked: Operation) -> bool {
        use Operation::*;
        self == asked
            || self == All
            || (asked == Describe && matches!(self, Read | Write | Delete | Alter))
            || (asked == DescribeConfigs && self == AlterConfigs)
    }
}

/// One ACL: `principal` from `host` is `permission`ed `operation` on the
/// resources of `resource_type` that `resource_name` names (`*` alone: all
/// of them).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AclBinding {
    pub resource_type: ResourceType,
    pub pattern_type: PatternType,
    pub resource_name: String,
    /// `User:<name>`, or `User:*` for anyone.
    pub principal: String,
    /// An address, or `*` for any.
    pub host: String,
    pub operation: Operation,
    pub permission: Permission,
}

impl AclBinding {
    /// Checks what Kafka checks: a principal that parses, a name, the
    /// cluster's one name, no prefixed wildcard.
    pub fn validate(&self) -> Result<(), AuthError> {
        Principal::parse(&self.principal)?;
        if self.resource_name.is_empty() {
            return Err(AuthError::acl("resource name", "is empty"));
        }
        if self.host.is_empty() {
            return Err(AuthError::acl("host", "is empty (use * for any host)"));
        }
        if self.resource_type == ResourceType::Cluster && self.resource_name != CLUSTER_NAME {
            return Err(AuthError::acl(
                "resource name",
                format!("the cluster resource is named {CLUSTER_NAME}"),
            ));
        }
        if self.pattern_type == PatternType::Prefixed && self.resource_name == "*" {
            return Err(AuthError::acl(
                "resource name",
                "a PREFIXED pattern of * means nothing: use LITERAL * for every resource",
            ));
        }
        Ok(())
    }
}

impl fmt::Display for AclBinding {
    /// As `kafka-acls.sh --list` prints one.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "(principal={}, host={}, operation={}, permissionType={}) on ResourcePattern(resourceType={}, name={}, patternType={})",
            self.principal,
            self.host,
            self.operation.as_str().to_ascii_uppercase(),
            self.permission.as_str().to_ascii_uppercase(),
            self.resource_type.as_str().to_ascii_uppercase(),
            self.resource_name,
            self.pattern_type
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_spellings_parse_in_any_case() {
        assert_eq!(
            "describe-configs".parse::<Operation>().unwrap(),
            Operation::DescribeConfigs
        );
        assert_eq!(
            "CLUSTER_ACTION".parse::<Operation>().unwrap(),
            Operation::ClusterAction
        );
        assert_eq!(
            "prefixed".parse::<PatternType>().unwrap(),
            PatternType::Prefixed
        );
        assert_eq!(
            "transactional-id".parse::<ResourceType>().unwrap(),
            ResourceType::TransactionalId
        );
        let e = "Frobnicate".parse::<Operation>().unwrap_err().to_string();
        assert!(
            e.contains("operation") && e.contains("IdempotentWrite"),
            "{e}"
        );
        for op in Operation::ALL {
            assert_eq!(op.as_str().parse::<Operation>().unwrap(), *op);
        }
    }

    #[test]
    fn implied_operations_are_kafkas() {
        use Operation::*;
        assert!(Read.implies(Describe) && Write.implies(Describe) && Alter.implies(Describe));
        assert!(AlterConfigs.implies(DescribeConfigs));
        assert!(
            !Describe.implies(Read)
                && !Read.implies(Write)
                && !DescribeConfigs.implies(AlterConfigs)
        );
        assert!(All.implies(ClusterAction));
    }

    #[test]
    fn bindings_kafka_would_refuse_are_refused() {
        let ok = AclBinding {
            resource_type: ResourceType::Topic,
            pattern_type: PatternType::Literal,
            resource_name: "orders".into(),
            principal: "User:alice".into(),
            host: "*".into(),
            operation: Operation::Read,
            permission: Permission::Allow,
        };
        ok.validate().unwrap();
        assert_eq!(
            ok.to_string(),
            "(principal=User:alice, host=*, operation=READ, permissionType=ALLOW) on \
             ResourcePattern(resourceType=TOPIC, name=orders, patternType=LITERAL)"
        );
        let bad = [
            AclBinding {
                principal: "alice".into(),
                ..ok.clone()
            },
            AclBinding {
                resource_name: String::new(),
                ..ok.clone()
            },
            AclBinding {
                resource_type: ResourceType::Cluster,
                ..ok.clone()
            },
            AclBinding {
                pattern_type: PatternType::Prefixed,
                resource_name: "*".into(),
                ..ok.clone()
            },
        ];
        for b in bad {
            assert!(b.validate().is_err(), "{b:?}");
        }
    }
}
