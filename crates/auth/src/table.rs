//! What every request needs: one table for both faces, keyed by the gRPC
//! method (`Service/Method`, package stripped) and by the Kafka API's name.
//! Each face enforces it in one place (the gRPC access layer, the Kafka
//! dispatcher); the request logic checks the per-resource part with the
//! names it parsed. A method or API without an entry is refused (and a test
//! in each face fails on it).

use crate::Operation;

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// Nothing: health, reflection, ApiVersions, the SASL exchange.
    None,
    /// `ClusterAction` on the cluster: only Sluice's services call it
    /// (replication, ISR changes, registrations, producer-id blocks).
    Internal,
    /// An operation on the cluster, checked at the front door.
    Cluster(Operation),
    /// An operation on every topic the request names, checked by the
    /// request logic per topic (a topic refused gets its own error code;
    /// the rest proceed, as in Kafka).
    Topics(Operation),
    /// An operation on the group the request names, checked by the request
    /// logic (offsets also need `Read`/`Describe` on their topics).
    Group(Operation),
    /// `Write` on the topic, or `IdempotentWrite` on the cluster (KIP-679):
    /// an idempotent producer id needs the right to write somewhere.
    IdempotentProducer,
    /// `Create` on the cluster, or on each topic named.
    CreateTopics,
    /// `AlterConfigs`/`DescribeConfigs` on each resource named (a topic, or
    /// the cluster for broker configs).
    Configs(Operation),
}

impl Requirement {
    /// Whether the front door can decide alone (no names from the body).
    pub fn front_door(self) -> Option<Operation> {
        match self {
            Requirement::Internal => Some(Operation::ClusterAction),
            Requirement::Cluster(op) => Some(op),
            _ => None,
        }
    }
}

use Operation::*;
use Requirement as R;

/// gRPC methods as `Service/Method` (the path without its package).
pub const GRPC: &[(&str, Requirement)] = &[
    ("Broker/Metadata", R::Topics(Describe)),
    ("Broker/Produce", R::Topics(Write)),
    ("Broker/Fetch", R::Topics(Read)),
    ("Broker/ListOffsets", R::Topics(Describe)),
    ("Broker/ReplicaFetch", R::Internal),
    ("Broker/FindCoordinator", R::Group(Describe)),
    ("Broker/InitProducerId", R::IdempotentProducer),
    ("Broker/DescribeLogDirs", R::Cluster(Describe)),
    ("Broker/DeleteRecords", R::Topics(Delete)),
    ("Broker/DescribeDelayed", R::Topics(Describe)),
    ("Broker/CancelDelayed", R::Topics(Write)),
    ("Controller/CreateTopics", R::CreateTopics),
    ("Controller/DeleteTopics", R::Topics(Delete)),
    ("Controller/CreatePartitions", R::Topics(Alter)),
    // Brokers and the controller, as Metadata shows them (Kafka answers
    // DescribeCluster to anyone).
    ("Controller/DescribeCluster", R::None),
    ("Controller/AlterConfigs", R::Configs(AlterConfigs)),
    ("Controller/AlterPartition", R::Internal),
    ("Controller/AllocateProducerIds", R::Internal),
    ("Controller/EnsureOffsetsTopic", R::Internal),
    ("Controller/CreateAcls", R::Cluster(Alter)),
    ("Controller/DescribeAcls", R::Cluster(Describe)),
    ("Controller/DeleteAcls", R::Cluster(Alter)),
    ("Controller/AlterUserScramCredentials", R::Cluster(Alter)),
    (
        "Controller/DescribeUserScramCredentials",
        R::Cluster(Describe),
    ),
    ("Controller/CreateToken", R::Cluster(Alter)),
    ("Controller/RevokeToken", R::Cluster(Alter)),
    ("Controller/DescribeTokens", R::Cluster(Describe)),
    ("Controller/AlterClientQuotas", R::Cluster(AlterConfigs)),
    (
        "Controller/DescribeClientQuotas",
        R::Cluster(DescribeConfigs),
    ),
    ("GroupCoordinator/JoinGroup", R::Group(Read)),
    ("GroupCoordinator/SyncGroup", R::Group(Read)),
    ("GroupCoordinator/Heartbeat", R::Group(Read)),
    ("GroupCoordinator/LeaveGroup", R::Group(Read)),
    ("GroupCoordinator/OffsetCommit", R::Group(Read)),
    ("GroupCoordinator/OffsetFetch", R::Group(Describe)),
    // Lists only the groups the caller may describe.
    ("GroupCoordinator/ListGroups", R::Group(Describe)),
    ("GroupCoordinator/DescribeGroups", R::Group(Describe)),
    ("GroupCoordinator/DeleteGroups", R::Group(Delete)),
    ("GroupCoordinator/ConsumerGroupHeartbeat", R::Group(Read)),
    ("GroupCoordinator/ConsumerGroupDescribe", R::Group(Describe)),
];

/// Kafka APIs by the name Kafka's protocol guide gives them.
pub const KAFKA: &[(&str, Requirement)] = &[
    ("ApiVersions", R::None),
    ("SaslHandshake", R::None),
    ("SaslAuthenticate", R::None),
    ("Metadata", R::Topics(Describe)),
    ("Produce", R::Topics(Write)),
    ("Fetch", R::Topics(Read)),
    ("ListOffsets", R::Topics(Describe)),
    ("OffsetForLeaderEpoch", R::Topics(Describe)),
    ("FindCoordinator", R::Group(Describe)),
    ("JoinGroup", R::Group(Read)),
    ("SyncGroup", R::Group(Read)),
    ("Heartbeat", R::Group(Read)),
    ("LeaveGroup", R::Group(Read)),
    ("OffsetCommit", R::Group(Read)),
    ("OffsetFetch", R::Group(Describe)),
    ("ListGroups", R::Group(Describe)),
    ("DescribeGroups", R::Group(Describe)),
    ("DeleteGroups", R::Group(Delete)),
    ("ConsumerGroupHeartbeat", R::Group(Read)),
    ("ConsumerGroupDescribe", R::Group(Describe)),
    ("InitProducerId", R::IdempotentProducer),
    ("CreateTopics", R::CreateTopics),
    ("DeleteTopics", R::Topics(Delete)),
    ("CreatePartitions", R::Topics(Alter)),
    ("DescribeConfigs", R::Configs(DescribeConfigs)),
    ("IncrementalAlterConfigs", R::Configs(AlterConfigs)),
    ("DeleteRecords", R::Topics(Delete)),
    ("DescribeLogDirs", R::Cluster(Describe)),
    ("DescribeCluster", R::None),
    ("CreateAcls", R::Cluster(Alter)),
    ("DescribeAcls", R::Cluster(Describe)),
    ("DeleteAcls", R::Cluster(Alter)),
    ("DescribeUserScramCredentials", R::Cluster(Describe)),
    ("AlterUserScramCredentials", R::Cluster(Alter)),
];

/// The requirement of a gRPC method, by its full path
/// (`/sluice.broker.v1.Broker/Produce`); `None` when it has no entry.
pub fn grpc(path: &str) -> Option<Requirement> {
    let path = path.strip_prefix('/').unwrap_or(path);
    let (service, method) = path.split_once('/')?;
    let service = service.rsplit('.').next().unwrap_or(service);
    GRPC.iter()
        .find(|(m, _)| {
            m.split_once('/')
                .is_some_and(|(s, n)| s == service && n == method)
        })
        .map(|(_, r)| *r)
}

/// The requirement of a Kafka API, by name (`Produce`).
pub fn kafka(api: &str) -> Option<Requirement> {
    KAFKA.iter().find(|(a, _)| *a == api).map(|(_, r)| *r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_by_path_and_name() {
        assert_eq!(
            grpc("/sluice.broker.v1.Broker/Produce"),
            Some(R::Topics(Write))
        );
        assert_eq!(
            grpc("/sluice.controller.v1.Controller/AlterPartition"),
            Some(R::Internal)
        );
        assert_eq!(grpc("/sluice.broker.v1.Broker/Nope"), None);
        assert_eq!(grpc("garbage"), None);
        assert_eq!(kafka("Produce"), Some(R::Topics(Write)));
        assert_eq!(kafka("Nope"), None);
        assert_eq!(R::Internal.front_door(), Some(ClusterAction));
        assert_eq!(R::Topics(Read).front_door(), None);
    }

    #[test]
    fn entries_are_unique() {
        for table in [GRPC, KAFKA] {
            let mut names: Vec<_> = table.iter().map(|(n, _)| *n).collect();
            names.sort_unstable();
            let len = names.len();
            names.dedup();
            assert_eq!(names.len(), len, "a duplicate entry");
        }
    }
}
