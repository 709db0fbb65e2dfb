//! Who is calling and what they may do, in Kafka's model:
//!
//! - [`Principal`]: `User:<name>`, the identity a request acts as;
//! - [`mapping`]: a client certificate's subject to a principal, by Kafka's
//!   `ssl.principal.mapping.rules`;
//! - [`acl`]: ACL bindings (principal, host, operation, permission on a
//!   resource pattern), with Kafka's names for every part;
//! - [`Authorizer`]: the decision for one request, by hash lookups on an
//!   index of the bindings (never a scan of them): super users first, then
//!   deny wins, then allow (with Kafka's implied operations), else deny;
//! - [`filter`]: which bindings a DescribeAcls or DeleteAcls means;
//! - [`scram`]: SASL/SCRAM credentials and the server's side of the
//!   exchange (and SASL/PLAIN checked against the same credential);
//! - [`table`]: what every gRPC method and Kafka API needs;
//! - [`token`]: API tokens for gRPC clients (stored hashed).

pub mod acl;
mod authorizer;
mod error;
pub mod filter;
pub mod mapping;
mod principal;
pub mod scram;
pub mod table;
pub mod token;

pub use acl::{AclBinding, Operation, PatternType, Permission, ResourceType};
pub use authorizer::{Authorizer, Decision};
pub use error::AuthError;
pub use filter::{AclFilter, PatternFilter};
pub use mapping::MappingRules;
pub use principal::Principal;
pub use table::Requirement;
