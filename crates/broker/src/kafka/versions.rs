//! What the Kafka face serves: each API and the version range implemented,
//! which ApiVersions advertises exactly. Clients pick the highest version both
//! sides know, so a range ends where our translation stops being faithful
//! (Produce v13 and OffsetCommit/OffsetFetch v10 name topics by id only, for
//! example).

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};

/// (API, lowest, highest) version served.
pub const TABLE: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 12),
    (ApiKey::Fetch, 4, 16),
    (ApiKey::ListOffsets, 1, 8),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::FindCoordinator, 0, 5),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 5),
    // v0 is advertised because librdkafka's feature check asks for it, but
    // clients pick v1 (SaslAuthenticate framing, KIP-152); a v0 client's
    // raw tokens would not parse and its connection closes.
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 5),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
    (ApiKey::ConsumerGroupDescribe, 0, 1),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeLogDirs, 1, 4),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::CreateAcls, 1, 3),
    (ApiKey::DescribeAcls, 1, 3),
    (ApiKey::DeleteAcls, 1, 3),
    (ApiKey::DescribeUserScramCredentials, 0, 0),
    (ApiKey::AlterUserScramCredentials, 0, 0),
];

/// The served range of `key`, if it is served at all.
pub fn supported(key: ApiKey) -> Option<(i16, i16)> {
    TABLE
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|&(_, min, max)| (min, max))
}

/// The ApiVersions answer: the table, and `error_code` (UNSUPPORTED_VERSION
/// when the client asked for an ApiVersions version we do not serve; it then
/// retries with one from the table).
pub fn api_versions(error_code: i16) -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(error_code)
        .with_api_keys(
            TABLE
                .iter()
                .map(|&(key, min, max)| {
                    ApiVersion::default()
                        .with_api_key(key as i16)
                        .with_min_version(min)
                        .with_max_version(max)
                })
                .collect(),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_served_range_is_one_the_codec_knows() {
        for &(key, min, max) in TABLE {
            let valid = key.valid_versions();
            assert!(
                min <= max && min >= valid.min && max <= valid.max,
                "{key:?} {min}..={max} outside the codec's {valid}"
            );
        }
    }

    /// The access table (sluice_auth::table) names every served API, and
    /// only served ones: an API without an entry would be refused when ACLs
    /// are on, or served unchecked if the front door missed it.
    #[test]
    fn every_served_api_has_an_access_rule() {
        for &(key, _, _) in TABLE {
            let name = format!("{key:?}");
            assert!(
                sluice_auth::table::kafka(&name).is_some(),
                "{name} has no entry in sluice_auth::table::KAFKA"
            );
        }
        for (name, _) in sluice_auth::table::KAFKA {
            assert!(
                TABLE.iter().any(|(k, _, _)| format!("{k:?}") == *name),
                "{name} is in the access table but not served"
            );
        }
    }
}
