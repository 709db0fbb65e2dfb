//! The cost of one authorization check as the ACL count grows (issue 16:
//! "a hash lookup, not a scan"). `cargo bench -p sluice-auth`; prints
//! nanoseconds per check. Each ACL here names its own topic: the cost grows
//! with the ACLs on one pattern, not with the total.

use std::hint::black_box;
use std::time::Instant;

use sluice_auth::{
    AclBinding, Authorizer, Operation, PatternType, Permission, Principal, ResourceType,
};

fn acls(n: usize) -> Vec<AclBinding> {
    (0..n)
        .map(|i| AclBinding {
            resource_type: ResourceType::Topic,
            pattern_type: if i % 4 == 0 {
                PatternType::Prefixed
            } else {
                PatternType::Literal
            },
            resource_name: format!("team-{}.topic-{i}", i % 50),
            principal: format!("User:user-{}", i % 200),
            host: "*".into(),
            operation: if i % 3 == 0 {
                Operation::Write
            } else {
                Operation::Read
            },
            permission: if i % 17 == 0 {
                Permission::Deny
            } else {
                Permission::Allow
            },
        })
        .collect()
}

fn main() {
    const CHECKS: usize = 2_000_000;
    for n in [10, 1_000, 100_000] {
        let bindings = acls(n);
        let a = Authorizer::new([Principal::user("admin")], false);
        a.set_acls(&bindings);
        // Requests for resources the ACLs name (by their own principals),
        // and for names no ACL has.
        let asks: Vec<(Principal, String)> = (0..64)
            .map(|i| {
                let b = &bindings[(i * n / 64) % n];
                let name = if i % 2 == 0 {
                    b.resource_name.clone()
                } else {
                    format!("other-{i}")
                };
                (Principal::parse(&b.principal).unwrap(), name)
            })
            .collect();
        let start = Instant::now();
        let mut allowed = 0usize;
        for i in 0..CHECKS {
            let (who, name) = &asks[i % 64];
            let d = a.authorize(who, "10.0.0.1", Operation::Read, ResourceType::Topic, name);
            allowed += black_box(d).allowed() as usize;
        }
        let ns = start.elapsed().as_nanos() as f64 / CHECKS as f64;
        println!("authorize: {n:>7} ACLs: {ns:>6.0} ns per check ({allowed} of {CHECKS} allowed)");
    }
}
