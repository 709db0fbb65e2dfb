//! [`AclFilter`]: which bindings a DescribeAcls or DeleteAcls means, with
//! Kafka's matching rules (`kafka-acls.sh --list`, `--remove`).

use crate::{AclBinding, AuthError, Operation, PatternType, Permission, Principal, ResourceType};

/// How a filter matches pattern types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatternFilter {
    /// Any pattern type (the name, when given, compared as written).
    Any,
    /// This pattern type only.
    Exactly(PatternType),
    /// Every binding whose pattern applies to the name: the literal name,
    /// `*`, and each PREFIXED pattern it starts with.
    Match,
}

/// A filter over ACL bindings: `None` matches anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AclFilter {
    pub resource_type: Option<ResourceType>,
    pub pattern: Option<PatternFilter>,
    pub resource_name: Option<String>,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: Option<Operation>,
    pub permission: Option<Permission>,
}

impl AclFilter {
    /// Parses the text fields of a request (each empty or absent matches
    /// anything); `pattern` takes `ANY`, `MATCH`, `LITERAL`, `PREFIXED`.
    #[allow(clippy::too_many_arguments)]
    pub fn parse(
        resource_type: Option<&str>,
        pattern: Option<&str>,
        resource_name: Option<&str>,
        principal: Option<&str>,
        host: Option<&str>,
        operation: Option<&str>,
        permission: Option<&str>,
    ) -> Result<Self, AuthError> {
        fn given(v: Option<&str>) -> Option<&str> {
            v.map(str::trim)
                .filter(|v| !v.is_empty() && !v.eq_ignore_ascii_case("any"))
        }
        let pattern = match pattern.map(str::trim).filter(|v| !v.is_empty()) {
            None => None,
            Some(p) if p.eq_ignore_ascii_case("any") => Some(PatternFilter::Any),
            Some(p) if p.eq_ignore_ascii_case("match") => Some(PatternFilter::Match),
            Some(p) => Some(PatternFilter::Exactly(p.parse()?)),
        };
        let principal = match given(principal) {
            Some(p) => Some(Principal::parse(p)?.to_string()),
            None => None,
        };
        let filter = AclFilter {
            resource_type: given(resource_type).map(str::parse).transpose()?,
            pattern,
            // A name of "ANY" is a name; only absence or empty is "any name".
            resource_name: resource_name
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(String::from),
            principal,
            host: host
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(String::from),
            operation: given(operation).map(str::parse).transpose()?,
            permission: given(permission).map(str::parse).transpose()?,
        };
        if filter.pattern == Some(PatternFilter::Match) && filter.resource_name.is_none() {
            return Err(AuthError::acl(
                "pattern type",
                "MATCH needs a resource name to match against",
            ));
        }
        Ok(filter)
    }

    /// Whether the filter matches `b`.
    pub fn matches(&self, b: &AclBinding) -> bool {
        let name_ok = match (
            &self.resource_name,
            self.pattern.unwrap_or(PatternFilter::Any),
        ) {
            (None, PatternFilter::Exactly(p)) => b.pattern_type == p,
            (None, _) => true,
            (Some(n), PatternFilter::Any) => &b.resource_name == n,
            (Some(n), PatternFilter::Exactly(p)) => b.pattern_type == p && &b.resource_name == n,
            (Some(n), PatternFilter::Match) => match b.pattern_type {
                PatternType::Literal => &b.resource_name == n || b.resource_name == "*",
                PatternType::Prefixed => n.starts_with(&b.resource_name),
            },
        };
        name_ok
            && self.resource_type.is_none_or(|t| t == b.resource_type)
            && self.principal.as_ref().is_none_or(|p| p == &b.principal)
            && self.host.as_ref().is_none_or(|h| h == &b.host)
            && self.operation.is_none_or(|o| o == b.operation)
            && self.permission.is_none_or(|p| p == b.permission)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(rtype: ResourceType, pattern: PatternType, name: &str, op: Operation) -> AclBinding {
        AclBinding {
            resource_type: rtype,
            pattern_type: pattern,
            resource_name: name.into(),
            principal: "User:alice".into(),
            host: "*".into(),
            operation: op,
            permission: Permission::Allow,
        }
    }

    #[test]
    fn filters_match_as_kafka_does() {
        use Operation::*;
        use PatternType::*;
        use ResourceType::*;
        let lit = b(Topic, Literal, "orders", Read);
        let star = b(Topic, Literal, "*", Read);
        let pre = b(Topic, Prefixed, "ord", Write);
        let group = b(Group, Literal, "orders", Read);
        let all = AclFilter::default();
        assert!([&lit, &star, &pre, &group].iter().all(|x| all.matches(x)));
        let f = |t, p, n, o| AclFilter::parse(t, p, n, None, None, o, None).unwrap();
        let topics = f(Some("topic"), None, None, None);
        assert!(topics.matches(&lit) && !topics.matches(&group));
        let exact = f(Some("Topic"), None, Some("orders"), None);
        assert!(exact.matches(&lit) && !exact.matches(&star) && !exact.matches(&pre));
        let matching = f(Some("Topic"), Some("MATCH"), Some("orders"), None);
        assert!(matching.matches(&lit) && matching.matches(&star) && matching.matches(&pre));
        assert!(!matching.matches(&group));
        let prefixed = f(None, Some("prefixed"), None, None);
        assert!(prefixed.matches(&pre) && !prefixed.matches(&lit));
        let writes = f(None, None, None, Some("write"));
        assert!(writes.matches(&pre) && !writes.matches(&lit));
        assert!(AclFilter::parse(None, Some("MATCH"), None, None, None, None, None).is_err());
        assert!(AclFilter::parse(Some("Nope"), None, None, None, None, None, None).is_err());
        let alice =
            AclFilter::parse(None, None, None, Some("User:alice"), None, None, None).unwrap();
        assert!(alice.matches(&lit));
        let bob = AclFilter::parse(None, None, None, Some("User:bob"), None, None, None).unwrap();
        assert!(!bob.matches(&lit));
    }
}
