//! Metadata records as stored in the metadata store (JSON values), and their keys.
//!
//! Keys are relative to the cluster's namespace (`/sluice/<cluster>/` in etcd):
//!
//! | key | value |
//! |---|---|
//! | `brokers/<id>` | [`BrokerRegistration`], bound to the broker's lease |
//! | `controller` | election prefix; the winner's key revision is the controller epoch |
//! | `controller-info` | [`ControllerInfo`] of the active controller, bound to its lease |
//! | `topics/<name>` | [`TopicRecord`] |
//! | `partitions/<topic>/<p>` | [`PartitionState`] |
//! | `producer-ids` | [`ProducerIdBlock`], the next free block |
//! | `coordinators/<id>` | [`CoordinatorRegistration`], bound to the coordinator's lease |
//! | `offsets-owners/<p>` | [`OffsetsOwner`] of `__consumer_offsets` partition p |
//! | `cluster-id` | the cluster id, a UUID string |
//! | `security/acls/<type>/<pattern>/<name>` | the ACL bindings on one resource pattern (JSON list, `sluice_auth::AclBinding`) |
//! | `security/scram/<user>/<mechanism>` | a user's SCRAM credential (`sluice_auth::scram::ScramCredential`; never the password) |
//! | `security/quotas/<users\|clients>/<name>` | client quotas (`sluice_server::quota::Limits`) |
//! | `security/tokens/<id>` | an API token (`sluice_auth::token::TokenRecord`: principal, SHA-256 of the secret, expiry) |

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub const BROKERS_PREFIX: &str = "brokers/";
pub const TOPICS_PREFIX: &str = "topics/";
pub const PARTITIONS_PREFIX: &str = "partitions/";
pub const CONTROLLER_ELECTION: &str = "controller";
pub const CONTROLLER_INFO_KEY: &str = "controller-info";
pub const PRODUCER_IDS_KEY: &str = "producer-ids";
pub const CLUSTER_ID_KEY: &str = "cluster-id";
pub const COORDINATORS_PREFIX: &str = "coordinators/";
pub const OFFSETS_OWNERS_PREFIX: &str = "offsets-owners/";
/// Everything the access layer follows (ACLs, credentials).
pub const SECURITY_PREFIX: &str = "security/";
pub const ACLS_PREFIX: &str = "security/acls/";
pub const SCRAM_PREFIX: &str = "security/scram/";
pub const TOKENS_PREFIX: &str = "security/tokens/";
pub const QUOTAS_PREFIX: &str = "security/quotas/";

/// The key of a user's (`users`) or client id's (`clients`) quotas.
pub fn quota_key(entity_type: &str, name: &str) -> String {
    format!("{QUOTAS_PREFIX}{entity_type}/{name}")
}

/// The key of an API token's record (`sluice_auth::token::TokenRecord`).
pub fn token_key(id: &str) -> String {
    format!("{TOKENS_PREFIX}{id}")
}

/// The key of the ACLs on one resource pattern (`Topic`, `LITERAL`, `orders`).
pub fn acl_key(resource_type: &str, pattern_type: &str, name: &str) -> String {
    format!("{ACLS_PREFIX}{resource_type}/{pattern_type}/{name}")
}

/// The key of a user's SCRAM credential for one mechanism.
pub fn scram_key(user: &str, mechanism: &str) -> String {
    format!("{SCRAM_PREFIX}{user}/{mechanism}")
}

/// Parses `security/scram/<user>/<mechanism>` (a user name may hold `/`).
pub fn parse_scram_key(key: &str) -> Option<(&str, &str)> {
    key.strip_prefix(SCRAM_PREFIX)?.rsplit_once('/')
}

pub fn coordinator_key(id: i32) -> String {
    format!("{COORDINATORS_PREFIX}{id}")
}

pub fn offsets_owner_key(partition: i32) -> String {
    format!("{OFFSETS_OWNERS_PREFIX}{partition}")
}

/// Parses `offsets-owners/<p>`.
pub fn parse_offsets_owner_key(key: &str) -> Option<i32> {
    key.strip_prefix(OFFSETS_OWNERS_PREFIX)?.parse().ok()
}

pub fn broker_key(id: i32) -> String {
    format!("{BROKERS_PREFIX}{id}")
}

pub fn topic_key(name: &str) -> String {
    format!("{TOPICS_PREFIX}{name}")
}

pub fn partitions_prefix(topic: &str) -> String {
    format!("{PARTITIONS_PREFIX}{topic}/")
}

pub fn partition_key(topic: &str, partition: i32) -> String {
    format!("{PARTITIONS_PREFIX}{topic}/{partition}")
}

/// Parses `partitions/<topic>/<p>`.
pub fn parse_partition_key(key: &str) -> Option<(&str, i32)> {
    let rest = key.strip_prefix(PARTITIONS_PREFIX)?;
    let (topic, p) = rest.rsplit_once('/')?;
    Some((topic, p.parse().ok()?))
}

/// A live broker, written by the broker itself under its lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    pub broker_id: i32,
    /// Advertised host and port clients connect to.
    pub host: String,
    pub port: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rack: Option<String>,
    pub start_time_ms: i64,
    /// The registration epoch: the create revision of the `brokers/<id>`
    /// key, larger for every new registration (KIP-380). Readers take it
    /// from the key, not from the stored value, which cannot know it.
    #[serde(default)]
    pub epoch: i64,
}

/// A live group coordinator, written by itself under its lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoordinatorRegistration {
    pub coordinator_id: i32,
    /// Advertised host and port clients connect to.
    pub host: String,
    pub port: i32,
    pub start_time_ms: i64,
}

/// Which coordinator serves the groups of one `__consumer_offsets` partition.
/// `epoch` grows with every move, so records written by a deposed owner can
/// be told apart from its successor's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetsOwner {
    pub coordinator_id: i32,
    pub epoch: i64,
}

/// The active controller's endpoint, so brokers can point clients at it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerInfo {
    pub controller_id: i32,
    pub host: String,
    pub port: i32,
    pub epoch: i64,
}

/// A topic: its id, configuration overrides and replica assignment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRecord {
    pub name: String,
    pub topic_id: String,
    /// Replica broker ids per partition, the preferred leader first.
    pub assignment: Vec<Vec<i32>>,
    #[serde(default)]
    pub configs: BTreeMap<String, String>,
    #[serde(default)]
    pub internal: bool,
}

impl TopicRecord {
    pub fn num_partitions(&self) -> i32 {
        self.assignment.len() as i32
    }

    pub fn replication_factor(&self) -> i32 {
        self.assignment.first().map_or(0, |r| r.len() as i32)
    }
}

/// The leadership state of one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    /// Leader broker id, or -1 when no replica can lead.
    pub leader: i32,
    /// Bumped on every leadership change.
    pub leader_epoch: i32,
    pub isr: Vec<i32>,
    /// Bumped on every change of this record (leader or ISR): AlterPartition
    /// requests based on an older one are refused.
    pub partition_epoch: i32,
}

/// The next free producer-id block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerIdBlock {
    pub next_start: i64,
}

/// Serializes a record for the store.
pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("metadata records always serialize")
}

/// Parses a record from the store.
pub fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, serde_json::Error> {
    serde_json::from_slice(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_keys_parse_back() {
        let k = partition_key("a-b/c", 7);
        assert_eq!(parse_partition_key(&k), Some(("a-b/c", 7)));
        assert_eq!(parse_partition_key("topics/x"), None);
    }
}
