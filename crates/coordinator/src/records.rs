//! What the coordinator writes to `__consumer_offsets`, and how a new owner
//! rebuilds its groups from it.
//!
//! Keys and values are JSON (small, readable with the console consumer, and
//! deterministic for the same key, which compaction needs). Keys:
//! - `{"offset":{"group":G,"topic":T,"partition":P}}` -> [`OffsetValue`]
//! - `{"group":{"group":G}}` -> [`GroupValue`]
//! - `{"owner":{"partition":P,"epoch":E}}` -> [`OwnerValue`], written by each
//!   new owner before it loads
//!
//! A null value is a tombstone (offsets or group deleted).
//!
//! Fencing: every record carries the writer's ownership epoch, in its value
//! and, for a tombstone (which has none), in the [`EPOCH_HEADER`] record
//! header. Replay keeps the highest epoch seen so far and ignores any record
//! with a lower one, so a deposed owner that writes after its successor's
//! `owner` marker cannot change what anyone loads later, deletions included.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::group::{CommittedOffset, Group, GroupRecord, GroupSettings};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKey {
    Offset {
        group: String,
        topic: String,
        partition: i32,
    },
    Group {
        group: String,
    },
    /// One key per epoch, so compaction keeps every marker: each one still
    /// fences the deposed owner's later records.
    Owner {
        partition: i32,
        epoch: i64,
    },
}

impl RecordKey {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("keys serialize")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetValue {
    #[serde(flatten)]
    pub offset: CommittedOffset,
    pub owner_epoch: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupValue {
    #[serde(flatten)]
    pub group: GroupRecord,
    pub owner_epoch: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerValue {
    pub coordinator_id: i32,
    pub owner_epoch: i64,
}

/// Just the epoch, to check a value before decoding it fully.
#[derive(Deserialize)]
struct EpochOnly {
    owner_epoch: i64,
}

/// The record header naming the writer's ownership epoch (decimal text).
pub const EPOCH_HEADER: &str = "sluice.owner.epoch";

/// The [`EPOCH_HEADER`] of a record written in `epoch`.
pub fn epoch_header(epoch: i64) -> (String, Option<bytes::Bytes>) {
    (
        EPOCH_HEADER.to_string(),
        Some(bytes::Bytes::from(epoch.to_string())),
    )
}

/// The epoch a record's headers name, if any.
pub fn header_epoch(headers: &[(String, Option<bytes::Bytes>)]) -> Option<i64> {
    headers
        .iter()
        .find(|(k, _)| k == EPOCH_HEADER)
        .and_then(|(_, v)| std::str::from_utf8(v.as_deref()?).ok()?.parse().ok())
}

pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("values serialize")
}

/// Rebuilds the groups of one partition from its records (key, value, the
/// epoch in its headers) in log order. Undecodable records are skipped with
/// a warning (they cannot be ours).
pub fn replay<'a>(
    records: impl IntoIterator<Item = (Option<&'a [u8]>, Option<&'a [u8]>, Option<i64>)>,
    settings: GroupSettings,
    now: Instant,
) -> BTreeMap<String, Group> {
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    let mut max_epoch = i64::MIN;
    let mut ignored = 0usize;
    for (key, value, header_epoch) in records {
        let Some(key) = key.and_then(|k| serde_json::from_slice::<RecordKey>(k).ok()) else {
            tracing::warn!("skipping a __consumer_offsets record with an unknown key");
            continue;
        };
        // A tombstone's epoch is in its headers (absent in records written
        // before tombstones carried one: those apply).
        if value.is_none()
            && let Some(e) = header_epoch
        {
            if e < max_epoch {
                ignored += 1;
                continue;
            }
            max_epoch = e;
        }
        if let Some(v) = value {
            match serde_json::from_slice::<EpochOnly>(v) {
                Ok(e) if e.owner_epoch < max_epoch => {
                    ignored += 1;
                    continue;
                }
                Ok(e) => max_epoch = e.owner_epoch,
                Err(_) => {
                    tracing::warn!(?key, "skipping an undecodable __consumer_offsets value");
                    continue;
                }
            }
        }
        match (key, value) {
            (
                RecordKey::Offset {
                    group,
                    topic,
                    partition,
                },
                Some(v),
            ) => {
                if let Ok(v) = serde_json::from_slice::<OffsetValue>(v) {
                    groups
                        .entry(group.clone())
                        .or_insert_with(|| Group::new(group, settings))
                        .offsets
                        .insert((topic, partition), v.offset);
                }
            }
            (
                RecordKey::Offset {
                    group,
                    topic,
                    partition,
                },
                None,
            ) => {
                if let Some(g) = groups.get_mut(&group) {
                    g.offsets.remove(&(topic, partition));
                }
            }
            (RecordKey::Group { group }, Some(v)) => {
                if let Ok(v) = serde_json::from_slice::<GroupValue>(v) {
                    groups
                        .entry(group.clone())
                        .or_insert_with(|| Group::new(group, settings))
                        .restore(v.group, now);
                }
            }
            (RecordKey::Group { group }, None) => {
                groups.remove(&group);
            }
            (RecordKey::Owner { .. }, _) => {}
        }
    }
    if ignored > 0 {
        tracing::warn!(ignored, "ignored records written by a deposed coordinator");
    }
    groups.retain(|_, g| !g.is_unused());
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::GroupState;

    fn off(group: &str, p: i32, offset: i64, epoch: i64) -> (Vec<u8>, Option<Vec<u8>>) {
        (
            RecordKey::Offset {
                group: group.into(),
                topic: "t".into(),
                partition: p,
            }
            .encode(),
            Some(encode(&OffsetValue {
                offset: CommittedOffset {
                    offset,
                    leader_epoch: -1,
                    metadata: String::new(),
                    commit_timestamp_ms: 1,
                },
                owner_epoch: epoch,
            })),
        )
    }

    fn owner(epoch: i64) -> (Vec<u8>, Option<Vec<u8>>) {
        (
            RecordKey::Owner {
                partition: 0,
                epoch,
            }
            .encode(),
            Some(encode(&OwnerValue {
                coordinator_id: 1,
                owner_epoch: epoch,
            })),
        )
    }

    fn run(recs: &[(Vec<u8>, Option<Vec<u8>>)]) -> BTreeMap<String, Group> {
        run_with(
            recs.iter()
                .map(|(k, v)| (k.clone(), v.clone(), None))
                .collect(),
        )
    }

    /// A record as stored: key, value, the epoch in its headers.
    type Stored = (Vec<u8>, Option<Vec<u8>>, Option<i64>);

    fn run_with(recs: Vec<Stored>) -> BTreeMap<String, Group> {
        replay(
            recs.iter()
                .map(|(k, v, e)| (Some(k.as_slice()), v.as_deref(), *e)),
            GroupSettings::default(),
            Instant::now(),
        )
    }

    #[test]
    fn latest_offset_wins_and_tombstones_delete() {
        let mut recs = vec![off("g", 0, 5, 1), off("g", 0, 9, 1), off("g", 1, 3, 1)];
        let g = run(&recs);
        assert_eq!(g["g"].offsets[&("t".into(), 0)].offset, 9);
        assert_eq!(g["g"].offsets[&("t".into(), 1)].offset, 3);
        recs.push((off("g", 1, 0, 1).0, None));
        recs.push((off("g", 0, 0, 1).0, None));
        assert!(
            run(&recs).is_empty(),
            "a group with nothing left is dropped"
        );
    }

    #[test]
    fn records_of_a_deposed_owner_after_the_new_marker_are_ignored() {
        let recs = vec![
            owner(1),
            off("g", 0, 5, 1),
            owner(2),
            // Owner 1 was paused and writes after owner 2 took over.
            off("g", 0, 100, 1),
            off("g", 1, 7, 2),
        ];
        let g = run(&recs);
        assert_eq!(g["g"].offsets[&("t".into(), 0)].offset, 5);
        assert_eq!(g["g"].offsets[&("t".into(), 1)].offset, 7);
    }

    #[test]
    fn tombstones_of_a_deposed_owner_are_ignored() {
        let tomb = |r: (Vec<u8>, Option<Vec<u8>>), epoch| (r.0, None, Some(epoch));
        let with = |r: (Vec<u8>, Option<Vec<u8>>)| (r.0, r.1, None);
        let recs = vec![
            with(owner(1)),
            with(off("g", 0, 5, 1)),
            with(owner(2)),
            // Owner 1, paused through the handover, deletes the group late.
            tomb(off("g", 0, 0, 1), 1),
        ];
        let g = run_with(recs.clone());
        assert_eq!(g["g"].offsets[&("t".into(), 0)].offset, 5);
        // The current owner's tombstone deletes.
        let mut recs = recs;
        recs.push(tomb(off("g", 0, 0, 2), 2));
        assert!(run_with(recs).is_empty());
        assert_eq!(header_epoch(&[epoch_header(7)]), Some(7));
    }

    #[test]
    fn group_record_restores_members() {
        let rec = GroupRecord {
            protocol_type: "consumer".into(),
            generation: 4,
            protocol: Some("range".into()),
            leader: Some("m1".into()),
            members: vec![crate::group::MemberRecord {
                member_id: "m1".into(),
                group_instance_id: None,
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                session_timeout_ms: 10_000,
                rebalance_timeout_ms: 30_000,
                metadata: vec![1],
                assignment: vec![2],
            }],
        };
        let recs = vec![(
            RecordKey::Group { group: "g".into() }.encode(),
            Some(encode(&GroupValue {
                group: rec.clone(),
                owner_epoch: 3,
            })),
        )];
        let g = run(&recs);
        assert_eq!(g["g"].state, GroupState::Stable);
        assert_eq!(g["g"].generation, 4);
        assert_eq!(g["g"].snapshot(), rec);
    }
}
