//! Who is calling and what they may do, in Kafka's model:
//!
//! - [`Principal`]: `User:<name>`, the identity a request acts as;
//! - [`mapping`]: a client certificate's subject to a principal, by Kafka's
//!   `ssl.principal.mapping.rules`;
//! - [`acl`]: ACL bindings (principal, host, operation, permission on a
//!   resource pattern), with Kafka's names for every part;
//! - [`Authorizer`]: the decision for one request, by hash lookups on an
//!   index of the bindings (never a scan of them): super users first, then
//!   deny wins, then allow (with Kafka's implied operations), else deny.

pub mod acl;
mod authorizer;
mod error;
pub mod mapping;
mod principal;

pub use acl::{AclBinding, Operation, PatternType, Permission, ResourceType};
pub use authorizer::{Authorizer, Decision};
pub use error::AuthError;
pub use mapping::MappingRules;
pub use principal::Principal;
