//! The "consumer" group protocol's member metadata and assignments, in
//! Kafka's encoding (a big-endian i16 version, then Kafka's schema), so a
//! group can mix Sluice consumers and Kafka-client consumers: whichever is
//! the leader reads everyone's subscription and hands out assignments the
//! others understand.
//!
//! Decoding also accepts the protobuf messages of `coordinator.v1`
//! (`ConsumerProtocolSubscription`, `ConsumerProtocolAssignment`), which
//! Sluice clients sent before; Kafka's encoding starts with a 0 byte (the
//! version's high byte), which no protobuf message does.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as KafkaAssigned;
use kafka_protocol::messages::consumer_protocol_subscription::TopicPartition as KafkaOwned;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment as KafkaAssignment,
    ConsumerProtocolSubscription as KafkaSubscription, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use prost::Message;
use sluice_proto::coordinator as pb;

/// The version Sluice writes: 3 carries owned partitions, the generation and
/// the rack (KIP-429, KIP-792, KIP-881); older readers ignore what they do
/// not know.
const VERSION: i16 = 3;

/// A member's subscription, whichever encoding it came in.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Subscription {
    pub topics: Vec<String>,
    pub owned_partitions: Vec<(String, i32)>,
    pub generation_id: i32,
    pub rack_id: Option<String>,
}

/// Whether member metadata or an assignment is in Kafka's encoding (else
/// Sluice's older protobuf one).
pub fn is_kafka_encoded(bytes: &[u8]) -> bool {
    kafka_version(bytes).is_some()
}

fn kafka_version(bytes: &[u8]) -> Option<i16> {
    (bytes.len() >= 2 && bytes[0] == 0).then(|| i16::from_be_bytes([bytes[0], bytes[1]]))
}

fn with_version(version: i16, body: &impl Encodable) -> Bytes {
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&version.to_be_bytes());
    body.encode(&mut buf, version)
        .expect("a consumer-protocol message always encodes");
    buf.freeze()
}

/// Encodes a subscription in Kafka's format.
pub fn encode_subscription(s: &Subscription) -> Bytes {
    let mut owned: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in &s.owned_partitions {
        owned.entry(t).or_default().push(*p);
    }
    let msg = KafkaSubscription::default()
        .with_topics(
            s.topics
                .iter()
                .map(|t| StrBytes::from_string(t.clone()))
                .collect(),
        )
        .with_owned_partitions(
            owned
                .into_iter()
                .map(|(t, ps)| {
                    KafkaOwned::default()
                        .with_topic(TopicName(StrBytes::from_string(t.to_string())))
                        .with_partitions(ps)
                })
                .collect(),
        )
        .with_generation_id(s.generation_id)
        .with_rack_id(s.rack_id.clone().map(StrBytes::from_string));
    with_version(VERSION, &msg)
}

/// Decodes a subscription in Kafka's format or Sluice's older protobuf one.
pub fn decode_subscription(bytes: Bytes) -> Result<Subscription, String> {
    if let Some(version) = kafka_version(&bytes) {
        let mut body = bytes.slice(2..);
        // Newer versions only append fields: read what our newest knows.
        let m = KafkaSubscription::decode(&mut body, version.min(VERSION))
            .map_err(|e| format!("Kafka subscription v{version}: {e}"))?;
        return Ok(Subscription {
            topics: m.topics.iter().map(|t| t.to_string()).collect(),
            owned_partitions: m
                .owned_partitions
                .iter()
                .flat_map(|tp| tp.partitions.iter().map(|p| (tp.topic.to_string(), *p)))
                .collect(),
            generation_id: if version >= 2 { m.generation_id } else { -1 },
            rack_id: m.rack_id.map(|r| r.to_string()),
        });
    }
    let m = pb::ConsumerProtocolSubscription::decode(bytes).map_err(|e| e.to_string())?;
    Ok(Subscription {
        topics: m.topics,
        owned_partitions: m
            .owned_partitions
            .into_iter()
            .map(|tp| (tp.topic, tp.partition))
            .collect(),
        generation_id: m.generation_id,
        rack_id: m.rack_id,
    })
}

/// Encodes an assignment (topic -> partitions) in Kafka's format.
pub fn encode_assignment(assigned: &BTreeMap<String, Vec<i32>>) -> Bytes {
    let msg = KafkaAssignment::default().with_assigned_partitions(
        assigned
            .iter()
            .map(|(t, ps)| {
                KafkaAssigned::default()
                    .with_topic(TopicName(StrBytes::from_string(t.clone())))
                    .with_partitions(ps.clone())
            })
            .collect(),
    );
    with_version(VERSION, &msg)
}

/// Encodes an assignment in Sluice's older protobuf format, for members that
/// subscribed in it (Sluice clients from before Kafka's encoding).
pub fn encode_assignment_protobuf(assigned: &BTreeMap<String, Vec<i32>>) -> Bytes {
    pb::ConsumerProtocolAssignment {
        assigned: assigned
            .iter()
            .map(|(topic, partitions)| pb::AssignedTopic {
                topic: topic.clone(),
                partitions: partitions.clone(),
            })
            .collect(),
        user_data: Bytes::new(),
    }
    .encode_to_vec()
    .into()
}

/// Decodes an assignment in either format into (topic, partition) pairs.
/// An empty assignment (a member given nothing) decodes to none.
pub fn decode_assignment(bytes: Bytes) -> Result<Vec<(String, i32)>, String> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    if let Some(version) = kafka_version(&bytes) {
        let mut body = bytes.slice(2..);
        let m = KafkaAssignment::decode(&mut body, version.min(VERSION))
            .map_err(|e| format!("Kafka assignment v{version}: {e}"))?;
        return Ok(m
            .assigned_partitions
            .iter()
            .flat_map(|tp| tp.partitions.iter().map(|p| (tp.topic.to_string(), *p)))
            .collect());
    }
    let m = pb::ConsumerProtocolAssignment::decode(bytes).map_err(|e| e.to_string())?;
    Ok(m.assigned
        .into_iter()
        .flat_map(|t| {
            let topic = t.topic;
            t.partitions.into_iter().map(move |p| (topic.clone(), p))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_round_trip_in_kafkas_format() {
        let s = Subscription {
            topics: vec!["a".into(), "b".into()],
            owned_partitions: vec![("a".into(), 0), ("a".into(), 2), ("b".into(), 1)],
            generation_id: 7,
            rack_id: Some("r1".into()),
        };
        let bytes = encode_subscription(&s);
        assert_eq!(&bytes[..2], &[0, 3]);
        assert_eq!(decode_subscription(bytes).unwrap(), s);
    }

    #[test]
    fn reads_a_version_0_subscription_as_the_java_client_writes_it() {
        // version 0, topics ["t"], user_data null
        let raw = Bytes::from_static(&[0, 0, 0, 0, 0, 1, 0, 1, b't', 0xff, 0xff, 0xff, 0xff]);
        let s = decode_subscription(raw).unwrap();
        assert_eq!(s.topics, ["t"]);
        assert_eq!(s.generation_id, -1);
    }

    #[test]
    fn assignments_round_trip_and_old_protobuf_ones_still_decode() {
        let mut plan = BTreeMap::new();
        plan.insert("t".to_string(), vec![0, 3]);
        let bytes = encode_assignment(&plan);
        assert_eq!(
            decode_assignment(bytes).unwrap(),
            [("t".to_string(), 0), ("t".to_string(), 3)]
        );
        let old = pb::ConsumerProtocolAssignment {
            assigned: vec![pb::AssignedTopic {
                topic: "t".into(),
                partitions: vec![1],
            }],
            user_data: Bytes::new(),
        }
        .encode_to_vec();
        assert_eq!(
            decode_assignment(Bytes::from(old)).unwrap(),
            [("t".to_string(), 1)]
        );
        assert!(decode_assignment(Bytes::new()).unwrap().is_empty());
        let old = encode_assignment_protobuf(&plan);
        assert!(!is_kafka_encoded(&old));
        assert_eq!(decode_assignment(old).unwrap().len(), 2);
    }
}
