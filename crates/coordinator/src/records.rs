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

/// What a load rebuilt from one partition.
pub struct Replayed {
    pub groups: BTreeMap<String, Group>,
    /// Keys whose latest record is a deposed owner's (ignored), with the
    /// valid state to write again in the loader's epoch: the value re-encoded
    /// in that epoch, or `None` (a tombstone) when the valid state is
    /// "absent". Compaction keeps only the latest record of a key: left
    /// alone, it would keep the ignored one and drop the valid one before it,
    /// and a later load would lose that key.
    pub rewrite: Vec<(RecordKey, Option<Vec<u8>>)>,
}

/// The fence of [`replay`]: the highest epoch seen so far, and whether a
/// record (its value, or a tombstone's header epoch) is below it.
struct Fence {
    max_epoch: i64,
}

impl Fence {
    /// `Some(true)`: apply; `Some(false)`: a deposed owner's, ignore;
    /// `None`: an undecodable value, skip.
    fn admits(&mut self, value: Option<&[u8]>, header_epoch: Option<i64>) -> Option<bool> {
        // A tombstone's epoch is in its headers (absent in records written
        // before tombstones carried one: those apply).
        let epoch = match value {
            None => header_epoch,
            Some(v) => Some(serde_json::from_slice::<EpochOnly>(v).ok()?.owner_epoch),
        };
        match epoch {
            Some(e) if e < self.max_epoch => Some(false),
            Some(e) => {
                self.max_epoch = e;
                Some(true)
            }
            None => Some(true),
        }
    }
}

/// Rebuilds the groups of one partition from its records (key, value, the
/// epoch in its headers) in log order, for a loader in `epoch`. Undecodable
/// records are skipped with a warning (they cannot be ours). `records` is
/// walked twice when a deposed owner's record is the latest of its key.
pub fn replay<'a, I>(records: I, settings: GroupSettings, now: Instant, epoch: i64) -> Replayed
where
    I: IntoIterator<Item = (Option<&'a [u8]>, Option<&'a [u8]>, Option<i64>)> + Clone,
{
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    let mut fence = Fence {
        max_epoch: i64::MIN,
    };
    let mut ignored = 0usize;
    // Raw keys whose latest record so far was ignored.
    let mut shadowed: std::collections::HashSet<&'a [u8]> = Default::default();
    for (raw, value, header_epoch) in records.clone() {
        let Some(key) = raw.and_then(|k| serde_json::from_slice::<RecordKey>(k).ok()) else {
            tracing::warn!("skipping a __consumer_offsets record with an unknown key");
            continue;
        };
        let raw = raw.unwrap_or_default();
        match fence.admits(value, header_epoch) {
            None => {
                tracing::warn!(?key, "skipping an undecodable __consumer_offsets value");
                continue;
            }
            Some(false) => {
                ignored += 1;
                if !matches!(key, RecordKey::Owner { .. }) {
                    shadowed.insert(raw);
                }
                continue;
            }
            Some(true) => {
                shadowed.remove(raw);
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
                        .or_insert_with(|| Group::new(group, settings.clone()))
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
                        .or_insert_with(|| Group::new(group, settings.clone()))
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
    let rewrite = if shadowed.is_empty() {
        Vec::new()
    } else {
        valid_state_of(records, &shadowed, epoch)
    };
    Replayed { groups, rewrite }
}

/// The second walk of [`replay`]: for each shadowed key, its last applied
/// record, re-encoded in `epoch` (or a tombstone when it has none).
fn valid_state_of<'a, I>(
    records: I,
    shadowed: &std::collections::HashSet<&'a [u8]>,
    epoch: i64,
) -> Vec<(RecordKey, Option<Vec<u8>>)>
where
    I: IntoIterator<Item = (Option<&'a [u8]>, Option<&'a [u8]>, Option<i64>)>,
{
    let mut fence = Fence {
        max_epoch: i64::MIN,
    };
    let mut last: BTreeMap<&'a [u8], Option<&'a [u8]>> =
        shadowed.iter().map(|k| (*k, None)).collect();
    for (raw, value, header_epoch) in records {
        let Some(raw) = raw else { continue };
        if fence.admits(value, header_epoch) == Some(true)
            && let Some(slot) = last.get_mut(raw)
        {
            *slot = value;
        }
    }
    last.into_iter()
        .filter_map(|(raw, value)| {
            let key = serde_json::from_slice::<RecordKey>(raw).ok()?;
            let value = match (&key, value) {
                (_, None) => None,
                (RecordKey::Offset { .. }, Some(v)) => {
                    let mut v = serde_json::from_slice::<OffsetValue>(v).ok()?;
                    v.owner_epoch = epoch;
                    Some(encode(&v))
                }
                (RecordKey::Group { .. }, Some(v)) => {
                    let mut v = serde_json::from_slice::<GroupValue>(v).ok()?;
                    v.owner_epoch = epoch;
                    Some(encode(&v))
                }
                (RecordKey::Owner { .. }, Some(_)) => return None,
            };
            Some((key, value))
        })
        .collect()
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
        replayed(&recs, 9).groups
    }

    fn replayed(recs: &[Stored], epoch: i64) -> Replayed {
        replay(
            recs.iter()
                .map(|(k, v, e)| (Some(k.as_slice()), v.as_deref(), *e)),
            GroupSettings::default(),
            Instant::now(),
            epoch,
        )
    }

    /// What compaction leaves: the latest record of each key, in log order.
    fn compacted(recs: &[Stored]) -> Vec<Stored> {
        recs.iter()
            .enumerate()
            .filter(|(i, r)| !recs[i + 1..].iter().any(|later| later.0 == r.0))
            .map(|(_, r)| r.clone())
            .collect()
    }

    #[test]
    fn a_deposed_owners_latest_record_is_rewritten_so_compaction_keeps_the_valid_one() {
        let with = |r: (Vec<u8>, Option<Vec<u8>>)| (r.0, r.1, None);
        let tomb = |r: (Vec<u8>, Option<Vec<u8>>), epoch| (r.0, None, Some(epoch));
        let mut log = vec![
            with(owner(1)),
            with(off("g", 0, 5, 1)),
            with(off("g", 1, 6, 1)),
            with(owner(2)),
            // Owner 1, paused through the handover, writes late: a value
            // over partition 0, a tombstone over partition 1, and a value
            // for partition 2 that never had a valid one.
            with(off("g", 0, 100, 1)),
            tomb(off("g", 1, 0, 1), 1),
            with(off("g", 2, 50, 1)),
        ];
        // Without the rewrite, compaction keeps only the deposed records and
        // the valid offsets are lost.
        let lost = run_with(compacted(&log));
        assert!(
            lost.is_empty(),
            "valid offsets survived without the rewrite?"
        );

        let r = replayed(&log, 3);
        assert_eq!(r.groups["g"].offsets.len(), 2);
        let mut rewrite: Vec<_> = r.rewrite.clone();
        rewrite.sort_by_key(|(k, _)| k.encode());
        assert_eq!(rewrite.len(), 3);
        // The new owner (epoch 3) writes them after its marker, as its
        // writer does (a tombstone's epoch in its header).
        log.push(with(owner(3)));
        for (k, v) in r.rewrite {
            let e = v.is_none().then_some(3);
            log.push((k.encode(), v, e));
        }
        for l in [log.clone(), compacted(&log)] {
            let g = run_with(l);
            let offsets = &g["g"].offsets;
            assert_eq!(offsets[&("t".into(), 0)].offset, 5);
            assert_eq!(offsets[&("t".into(), 1)].offset, 6);
            assert!(!offsets.contains_key(&("t".into(), 2)));
        }
        // Nothing shadowed any more: the next load rewrites nothing.
        assert!(replayed(&log, 4).rewrite.is_empty());
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
            consumer: None,
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

    #[test]
    fn consumer_group_record_restores_epochs_and_assignments() {
        let mut member = crate::consumer_group::ConsumerMember::new("m1".into());
        member.epoch = 7;
        member.previous_epoch = 6;
        member.subscribed_topics = ["t".to_string()].into();
        member.assigned = [("t".to_string(), [0, 1].into())].into();
        let consumer = crate::consumer_group::ConsumerGroupRecord {
            epoch: 7,
            assignment_epoch: 7,
            assignor: "uniform".into(),
            members: [("m1".to_string(), member.clone())].into(),
            target: [("m1".to_string(), member.assigned.clone())].into(),
            subscribed: [("t".to_string(), 2)].into(),
        };
        let rec = GroupRecord {
            protocol_type: "consumer".into(),
            generation: 7,
            protocol: None,
            leader: None,
            members: Vec::new(),
            consumer: Some(consumer),
        };
        let recs = vec![(
            RecordKey::Group { group: "g".into() }.encode(),
            Some(encode(&GroupValue {
                group: rec.clone(),
                owner_epoch: 3,
            })),
        )];
        let g = run(&recs);
        let c = g["g"].consumer.as_ref().expect("a consumer-protocol group");
        assert_eq!(c.rec.members["m1"], member);
        assert_eq!(c.owner("t", 1), Some("m1"));
        assert_eq!(g["g"].snapshot(), rec);
    }
}
