//! [`Authorizer`]: one request's decision, from an index of the ACLs built
//! when they change. A check is a few hash lookups (the resource's literal
//! name, `*`, and each prefix length some PREFIXED ACL of that type has),
//! never a scan of every ACL: its cost grows with the ACLs on the matched
//! patterns and the number of distinct prefix lengths, not with the total.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::{AclBinding, Operation, PatternType, Permission, Principal, ResourceType};

/// The verdict on one request, with the reason (for the audit log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// A super user (`super.users`).
    AllowedSuperUser,
    /// An ACL allows it.
    Allowed,
    /// No ACL matches and `allow.everyone.if.no.acl.found` is set.
    AllowedNoAcl,
    /// A Deny ACL matches (deny wins over any allow).
    DeniedByAcl,
    /// No ACL allows it.
    DeniedNoAllow,
}

impl Decision {
    pub fn allowed(self) -> bool {
        matches!(
            self,
            Decision::AllowedSuperUser | Decision::Allowed | Decision::AllowedNoAcl
        )
    }
}

#[derive(Debug, Clone)]
struct Entry {
    /// `None`: `User:*`.
    principal: Option<String>,
    /// `None`: any host.
    host: Option<String>,
    operation: Operation,
    permission: Permission,
}

#[derive(Debug, Default)]
struct Index {
    literal: HashMap<(ResourceType, String), Vec<Entry>>,
    prefixed: HashMap<(ResourceType, String), Vec<Entry>>,
    /// The byte lengths of the PREFIXED names of each resource type: the
    /// only prefixes of a name worth looking up.
    prefix_lens: HashMap<ResourceType, BTreeSet<usize>>,
}

impl Index {
    /// Builds the index of the valid bindings; returns the ones left out.
    fn build(acls: &[AclBinding]) -> (Index, Vec<AclBinding>) {
        let mut ix = Index::default();
        let mut invalid = Vec::new();
        for a in acls {
            // Parsed, not stripped: a principal that does not parse must
            // never become the wildcard.
            let principal = match (a.validate(), Principal::parse(&a.principal)) {
                (Ok(()), Ok(p)) => p,
                _ => {
                    invalid.push(a.clone());
                    continue;
                }
            };
            let principal = (!principal.is_wildcard()).then(|| principal.name().to_string());
            let entry = Entry {
                principal,
                host: Some(a.host.clone()).filter(|h| h != "*"),
                operation: a.operation,
                permission: a.permission,
            };
            let key = (a.resource_type, a.resource_name.clone());
            match a.pattern_type {
                PatternType::Literal => ix.literal.entry(key).or_default().push(entry),
                PatternType::Prefixed => {
                    ix.prefix_lens
                        .entry(a.resource_type)
                        .or_default()
                        .insert(a.resource_name.len());
                    ix.prefixed.entry(key).or_default().push(entry);
                }
            }
        }
        (ix, invalid)
    }

    /// Every entry whose pattern matches the resource.
    fn matching<'a>(&'a self, rtype: ResourceType, name: &str, out: &mut Vec<&'a Entry>) {
        let mut look = |map: &'a HashMap<(ResourceType, String), Vec<Entry>>, key: &str| {
            // A borrowed key would need a custom Borrow impl; names are short.
            if let Some(v) = map.get(&(rtype, key.to_string())) {
                out.extend(v.iter());
            }
        };
        look(&self.literal, name);
        if name != "*" {
            look(&self.literal, "*");
        }
        if let Some(lens) = self.prefix_lens.get(&rtype) {
            for &len in lens.range(..=name.len()) {
                if name.is_char_boundary(len) {
                    look(&self.prefixed, &name[..len]);
                }
            }
        }
    }
}

/// The ACLs of a cluster, super users, and the default for resources no ACL
/// names. Cheap to share (`Arc`); [`Authorizer::set_acls`] swaps the index
/// in one step, so a check sees all of a change or none of it.
#[derive(Debug)]
pub struct Authorizer {
    index: RwLock<Arc<Index>>,
    super_users: HashSet<String>,
    allow_if_no_acl: bool,
}

impl Authorizer {
    /// `super_users`: principal names (`User:` stripped) allowed everything;
    /// `allow_if_no_acl`: Kafka's `allow.everyone.if.no.acl.found` (false:
    /// a resource no ACL names is denied).
    pub fn new(super_users: impl IntoIterator<Item = Principal>, allow_if_no_acl: bool) -> Self {
        Authorizer {
            index: RwLock::new(Arc::new(Index::default())),
            super_users: super_users
                .into_iter()
                .map(|p| p.name().to_string())
                .collect(),
            allow_if_no_acl,
        }
    }

    /// Replaces every ACL (as read from the metadata store). Bindings that
    /// do not validate are left out (they could only widen or blur what is
    /// allowed) and returned, for the caller to log.
    pub fn set_acls(&self, acls: &[AclBinding]) -> Vec<AclBinding> {
        let (index, invalid) = Index::build(acls);
        *self.index.write() = Arc::new(index);
        invalid
    }

    /// May `principal`, connected from `host`, do `op` on the resource?
    pub fn authorize(
        &self,
        principal: &Principal,
        host: &str,
        op: Operation,
        rtype: ResourceType,
        name: &str,
    ) -> Decision {
        if self.super_users.contains(principal.name()) {
            return Decision::AllowedSuperUser;
        }
        let index = self.index.read().clone();
        let mut entries = Vec::new();
        index.matching(rtype, name, &mut entries);
        let applies = |e: &Entry| {
            e.principal.as_deref().is_none_or(|p| p == principal.name())
                && e.host.as_deref().is_none_or(|h| h == host)
        };
        // Deny wins: a Deny of this operation (or of All) applies.
        if entries.iter().any(|e| {
            applies(e)
                && e.permission == Permission::Deny
                && (e.operation == op || e.operation == Operation::All)
        }) {
            return Decision::DeniedByAcl;
        }
        if entries
            .iter()
            .any(|e| applies(e) && e.permission == Permission::Allow && e.operation.implies(op))
        {
            return Decision::Allowed;
        }
        if entries.is_empty() && self.allow_if_no_acl {
            return Decision::AllowedNoAcl;
        }
        Decision::DeniedNoAllow
    }
}

impl Authorizer {
    /// May `principal` do `op` on some resource of type `rtype` (Kafka's
    /// `authorizeByResourceType`, KIP-679)? True when an allow of it on some
    /// pattern is not covered by a deny (a deny on `*`, on the same name, or
    /// on a prefix of it). A scan of that type's ACLs: only for rare
    /// requests (InitProducerId), never per record.
    pub fn authorize_any(
        &self,
        principal: &Principal,
        host: &str,
        op: Operation,
        rtype: ResourceType,
    ) -> bool {
        if self.super_users.contains(principal.name()) {
            return true;
        }
        let index = self.index.read().clone();
        let applies = |e: &Entry| {
            e.principal.as_deref().is_none_or(|p| p == principal.name())
                && e.host.as_deref().is_none_or(|h| h == host)
        };
        let patterns = |map: &HashMap<(ResourceType, String), Vec<Entry>>, permission| {
            map.iter()
                .filter(|((t, _), _)| *t == rtype)
                .filter(|(_, es)| {
                    es.iter().any(|e| {
                        applies(e)
                            && e.permission == permission
                            && match permission {
                                Permission::Allow => e.operation.implies(op),
                                Permission::Deny => {
                                    e.operation == op || e.operation == Operation::All
                                }
                            }
                    })
                })
                .map(|((_, n), _)| n.clone())
                .collect::<Vec<_>>()
        };
        let deny_literal = patterns(&index.literal, Permission::Deny);
        if deny_literal.iter().any(|n| n == "*") {
            return false;
        }
        let deny_prefixed = patterns(&index.prefixed, Permission::Deny);
        let covered = |name: &str, prefixed: bool| {
            deny_prefixed.iter().any(|d| name.starts_with(d.as_str()))
                || (!prefixed && deny_literal.iter().any(|d| d == name))
        };
        patterns(&index.literal, Permission::Allow)
            .iter()
            .any(|n| n == "*" || !covered(n, false))
            || patterns(&index.prefixed, Permission::Allow)
                .iter()
                .any(|n| !covered(n, true))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn acl(
        rtype: ResourceType,
        pattern: PatternType,
        name: &str,
        principal: &str,
        op: Operation,
        perm: Permission,
    ) -> AclBinding {
        AclBinding {
            resource_type: rtype,
            pattern_type: pattern,
            resource_name: name.into(),
            principal: principal.into(),
            host: "*".into(),
            operation: op,
            permission: perm,
        }
    }

    use Operation::*;
    use PatternType::*;
    use Permission::*;
    use ResourceType::*;

    fn alice() -> Principal {
        Principal::user("alice")
    }

    #[test]
    fn kafkas_rules_deny_wins_implied_ops_prefixes_wildcards_super_users() {
        let a = Authorizer::new([Principal::user("admin")], false);
        a.set_acls(&[
            acl(Topic, Literal, "orders", "User:alice", Read, Allow),
            acl(Topic, Prefixed, "pay.", "User:alice", Write, Allow),
            acl(Topic, Prefixed, "pay.secret", "User:*", All, Deny),
            acl(Group, Literal, "*", "User:alice", Read, Allow),
            acl(
                Cluster,
                Literal,
                "kafka-cluster",
                "User:broker",
                ClusterAction,
                Allow,
            ),
        ]);
        let d = |p: &Principal, op, rt, n: &str| a.authorize(p, "10.0.0.1", op, rt, n);
        assert_eq!(d(&alice(), Read, Topic, "orders"), Decision::Allowed);
        assert_eq!(
            d(&alice(), Describe, Topic, "orders"),
            Decision::Allowed,
            "Read implies Describe"
        );
        assert_eq!(d(&alice(), Write, Topic, "orders"), Decision::DeniedNoAllow);
        assert_eq!(d(&alice(), Write, Topic, "pay.eu"), Decision::Allowed);
        assert_eq!(
            d(&alice(), Write, Topic, "pay.secret.keys"),
            Decision::DeniedByAcl,
            "deny wins"
        );
        assert_eq!(
            d(&alice(), Read, Group, "any-group"),
            Decision::Allowed,
            "literal *"
        );
        assert_eq!(
            d(&alice(), Read, Topic, "unnamed"),
            Decision::DeniedNoAllow,
            "no ACL: deny"
        );
        assert_eq!(
            d(&alice(), ClusterAction, Cluster, "kafka-cluster"),
            Decision::DeniedNoAllow
        );
        let broker = Principal::user("broker");
        assert_eq!(
            d(&broker, ClusterAction, Cluster, "kafka-cluster"),
            Decision::Allowed
        );
        let admin = Principal::user("admin");
        assert_eq!(
            d(&admin, Write, Topic, "pay.secret.keys"),
            Decision::AllowedSuperUser
        );
    }

    #[test]
    fn hosts_and_the_no_acl_default() {
        let a = Authorizer::new([], true);
        let mut only_here = acl(Topic, Literal, "t", "User:alice", Read, Allow);
        only_here.host = "10.0.0.1".into();
        a.set_acls(&[only_here]);
        assert!(
            a.authorize(&alice(), "10.0.0.1", Read, Topic, "t")
                .allowed()
        );
        assert_eq!(
            a.authorize(&alice(), "10.0.0.2", Read, Topic, "t"),
            Decision::DeniedNoAllow
        );
        // allow.everyone.if.no.acl.found: only where no ACL names the resource.
        assert_eq!(
            a.authorize(&alice(), "h", Write, Topic, "other"),
            Decision::AllowedNoAcl
        );
    }

    #[test]
    fn bindings_that_do_not_validate_are_left_out_never_widened() {
        let a = Authorizer::new([], false);
        let left_out = a.set_acls(&[
            acl(Topic, Literal, "t", "alice", All, Allow),
            acl(Topic, Literal, "t", "Group:x", All, Allow),
            acl(Topic, Literal, "t", " User:bob ", Read, Allow),
        ]);
        assert_eq!(left_out.len(), 2);
        assert_eq!(
            a.authorize(&alice(), "h", Read, Topic, "t"),
            Decision::DeniedNoAllow
        );
        assert!(
            a.authorize(&Principal::user("bob"), "h", Read, Topic, "t")
                .allowed()
        );
    }

    /// Kafka's table of what an allowed operation permits, written out
    /// rather than computed (the scan below must not share code with the
    /// authorizer).
    fn kafka_allows(granted: Operation, asked: Operation) -> bool {
        const IMPLIES: &[(Operation, &[Operation])] = &[
            (Read, &[Read, Describe]),
            (Write, &[Write, Describe]),
            (Delete, &[Delete, Describe]),
            (Alter, &[Alter, Describe]),
            (Describe, &[Describe]),
            (AlterConfigs, &[AlterConfigs, DescribeConfigs]),
            (DescribeConfigs, &[DescribeConfigs]),
        ];
        granted == All
            || IMPLIES
                .iter()
                .any(|(g, asks)| *g == granted && asks.contains(&asked))
    }

    proptest! {
        /// The index gives what a plain scan of every ACL would.
        #[test]
        fn the_index_agrees_with_a_scan(
            acls in prop::collection::vec(
                (0..2usize, 0..2usize, "[aé]{0,3}", 0..4usize, 0..6usize, any::<bool>(), 0..2usize),
                0..12),
            name in "[aé]{1,4}",
            who in 0..3usize,
            op in 0..6usize,
            from in 0..2usize,
            allow_if_no_acl in any::<bool>(),
        ) {
            let ops = [Read, Write, Describe, All, AlterConfigs, DescribeConfigs];
            let users = ["User:alice", "User:bob", "User:*", "bob"];
            let hosts = ["*", "10.0.0.1"];
            let bindings: Vec<AclBinding> = acls.iter().map(|(rt, pt, n, u, o, allow, h)| AclBinding {
                resource_type: [Topic, Group][*rt],
                pattern_type: [Literal, Prefixed][*pt],
                resource_name: if n.is_empty() { "*".into() } else { n.clone() },
                principal: users[*u].into(),
                host: hosts[*h].into(),
                operation: ops[*o],
                permission: if *allow { Allow } else { Deny },
            }).collect();
            let a = Authorizer::new([], allow_if_no_acl);
            a.set_acls(&bindings);
            let principal = ["alice", "bob", "carol"][who];
            let host = ["10.0.0.1", "10.0.0.2"][from];
            let asked = [Read, Write, Describe, Delete, AlterConfigs, DescribeConfigs][op];
            let scan = {
                let valid = bindings.iter().filter(|b| {
                    b.principal.starts_with("User:")
                        && !(b.pattern_type == Prefixed && b.resource_name == "*")
                });
                let on_resource: Vec<&AclBinding> = valid.filter(|b| {
                    b.resource_type == Topic
                        && match b.pattern_type {
                            Literal => b.resource_name == name || b.resource_name == "*",
                            Prefixed => name.starts_with(&b.resource_name),
                        }
                }).collect();
                let applies = |b: &&&AclBinding| {
                    (b.principal == "User:*" || b.principal == format!("User:{principal}"))
                        && (b.host == "*" || b.host == host)
                };
                if on_resource.iter().filter(applies).any(|b| b.permission == Deny && (b.operation == asked || b.operation == All)) {
                    Decision::DeniedByAcl
                } else if on_resource.iter().filter(applies).any(|b| b.permission == Allow && kafka_allows(b.operation, asked)) {
                    Decision::Allowed
                } else if on_resource.is_empty() && allow_if_no_acl {
                    Decision::AllowedNoAcl
                } else {
                    Decision::DeniedNoAllow
                }
            };
            prop_assert_eq!(a.authorize(&Principal::user(principal), host, asked, Topic, &name), scan);
        }
    }

    #[test]
    fn authorize_any_follows_kip_679() {
        let alice = Principal::user("alice");
        let a = Authorizer::new([Principal::user("admin")], false);
        assert!(!a.authorize_any(&alice, "h", Write, Topic));
        assert!(a.authorize_any(&Principal::user("admin"), "h", Write, Topic));
        a.set_acls(&[acl(Topic, Prefixed, "orders-", "User:alice", Write, Allow)]);
        assert!(a.authorize_any(&alice, "h", Write, Topic));
        assert!(!a.authorize_any(&alice, "h", Write, Group));
        assert!(!a.authorize_any(&Principal::user("bob"), "h", Write, Topic));
        // A deny on a shorter prefix covers the allow.
        a.set_acls(&[
            acl(Topic, Prefixed, "orders-", "User:alice", Write, Allow),
            acl(Topic, Prefixed, "ord", "User:*", Write, Deny),
        ]);
        assert!(!a.authorize_any(&alice, "h", Write, Topic));
        // A literal allow beside it still counts; a deny of everything does not.
        a.set_acls(&[
            acl(Topic, Literal, "payments", "User:alice", All, Allow),
            acl(Topic, Prefixed, "ord", "User:*", Write, Deny),
        ]);
        assert!(a.authorize_any(&alice, "h", Write, Topic));
        a.set_acls(&[
            acl(Topic, Literal, "payments", "User:alice", All, Allow),
            acl(Topic, Literal, "*", "User:alice", Write, Deny),
        ]);
        assert!(!a.authorize_any(&alice, "h", Write, Topic));
    }
}
