//! Moving a group with members between protocols (KIP-848's online
//! migration, as `group.consumer.migration.policy` allows): a classic group
//! becomes a consumer-protocol group when a consumer-protocol member joins
//! (its classic members stay, served by the consumer protocol's assignment),
//! and becomes classic again when the last consumer-protocol member leaves.
//! Either way no member is dropped and the group is never split in two.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use super::{Group, GroupState, Member};
use crate::consumer_group::classic::{ClassicJoin, member_from_classic};
use crate::consumer_group::member::{self, MemberState};
use crate::consumer_group::{ConsumerGroup, ConsumerGroupRecord, MigrationPolicy};
use crate::error::CoordinatorError;

impl Group {
    fn policy(&self) -> MigrationPolicy {
        self.settings.consumer.migration
    }

    /// Whether classic requests go to the consumer-protocol state: classic
    /// members of a group that moved (or may move) online.
    pub fn serves_classic_members(&self) -> bool {
        // Classic members already in the group are served whatever the
        // policy says now; it decides whether more may come.
        self.consumer.as_ref().is_some_and(|c| {
            !c.is_empty() && (self.policy() != MigrationPolicy::Disabled || c.has_classic())
        })
    }

    /// A classic group with members becomes a consumer-protocol group; its
    /// members keep their assignments, with the generation as their epoch.
    pub(super) fn upgrade(&mut self, now: Instant) -> Result<(), CoordinatorError> {
        let refused = || CoordinatorError::OtherProtocol {
            group: self.id.clone(),
            uses: "classic",
            asked: "consumer",
        };
        let waiting = self
            .members
            .values()
            .any(|m| m.join_waiter.is_some() || m.sync_waiter.is_some());
        // Kafka's conditions: allowed, settled, and every member a consumer.
        if !self.policy().upgrades()
            || self.state != GroupState::Stable
            || waiting
            || self.protocol_type.as_deref() != Some("consumer")
        {
            return Err(refused());
        }
        let protocol = self.protocol.clone().unwrap_or_default();
        let mut rec = ConsumerGroupRecord {
            epoch: self.generation,
            assignment_epoch: self.generation,
            assignor: self.settings.consumer.assignors[0].name().to_string(),
            ..Default::default()
        };
        for m in self.members.values() {
            let join = ClassicJoin {
                member_id: m.id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                session_timeout: m.session_timeout,
                rebalance_timeout: m.rebalance_timeout,
                protocols: m.protocols.clone(),
            };
            let cm =
                member_from_classic(&self.id, join, &protocol, &m.assignment, self.generation)?;
            rec.target.insert(cm.member_id.clone(), cm.assigned.clone());
            rec.members.insert(cm.member_id.clone(), cm);
        }
        // A cooperative member may still hold what the last plan took from
        // it (it is revoking): nobody gets those until it says it let go.
        let assigned: HashSet<(String, i32)> = rec
            .members
            .values()
            .flat_map(|m| member::flat(&m.assigned))
            .map(|(t, p)| (t.to_string(), p))
            .collect();
        for m in rec.members.values_mut() {
            m.revoking.retain(|t, ps| {
                ps.retain(|p| !assigned.contains(&(t.clone(), *p)));
                !ps.is_empty()
            });
            if !m.revoking.is_empty() {
                m.state = MemberState::UnrevokedPartitions;
            }
        }
        tracing::info!(group = %self.id, members = rec.members.len(), "group moves to the consumer protocol with its classic members");
        self.members.clear();
        self.pending.clear();
        self.state = GroupState::Empty;
        self.protocol_type = Some("consumer".into());
        self.protocol = None;
        self.leader = None;
        self.consumer = Some(ConsumerGroup::restore(
            self.id.clone(),
            rec,
            self.settings.consumer.clone(),
            now,
        ));
        Ok(())
    }

    /// When only classic members are left of a consumer-protocol group (and
    /// the policy allows), the group becomes classic again: the members keep
    /// their assignments and rejoin once, through the classic protocol.
    /// Returns whether it did (the record must be written).
    pub fn maybe_downgrade(&mut self, now: Instant) -> bool {
        let Some(c) = &self.consumer else {
            return false;
        };
        if !self.policy().downgrades() || !c.only_classic() {
            return false;
        }
        let members = c.classic_members();
        // An assignor every member supports, in the first member's order.
        let protocol = members.first().and_then(|(_, first, _)| {
            first.protocols.iter().map(|(n, _)| n.clone()).find(|n| {
                members
                    .iter()
                    .all(|(_, i, _)| i.protocols.iter().any(|(x, _)| x == n))
            })
        });
        let Some(protocol) = protocol else {
            return false;
        };
        let generation = c.rec.epoch;
        let epochs: HashMap<String, i32> = members
            .iter()
            .map(|(m, _, _)| (m.member_id.clone(), m.epoch))
            .collect();
        let rebuilt: Vec<Member> = members
            .into_iter()
            .map(|(m, info, assignment)| {
                let session = Duration::from_millis(info.session_timeout_ms);
                Member {
                    id: m.member_id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    session_timeout: session,
                    rebalance_timeout: Duration::from_millis(m.rebalance_timeout_ms),
                    protocol_type: "consumer".into(),
                    protocols: info
                        .protocols
                        .iter()
                        .map(|(n, b)| (n.clone(), bytes::Bytes::from(b.clone())))
                        .collect(),
                    assignment,
                    join_waiter: None,
                    sync_waiter: None,
                    heartbeat_deadline: now + session,
                    joined_seq: 0,
                }
            })
            .collect();
        tracing::info!(group = %self.id, members = rebuilt.len(), "group moves back to the classic protocol");
        self.consumer = None;
        self.generation = generation;
        self.downgraded = epochs;
        self.protocol_type = Some("consumer".into());
        self.protocol = Some(protocol);
        self.leader = rebuilt.first().map(|m| m.id.clone());
        for mut m in rebuilt {
            m.joined_seq = self.next_seq;
            self.next_seq += 1;
            self.members.insert(m.id.clone(), m);
        }
        self.state = GroupState::Stable;
        // Everyone joins once more, now as a classic group.
        self.prepare_rebalance(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use bytes::Bytes;
    use sluice_client::consumer_protocol::{self, Subscription};

    use super::*;
    use crate::consumer_group::classic::decode_assignment;
    use crate::consumer_group::{Heartbeat, TopicCounts};
    use crate::group::{GroupSettings, JoinOutcome, JoinRequest};

    fn topics() -> TopicCounts {
        TopicCounts {
            version: 1,
            counts: [("t".to_string(), 4)].into(),
            ..Default::default()
        }
    }

    fn subscription() -> Bytes {
        consumer_protocol::encode_subscription(&Subscription {
            topics: vec!["t".into()],
            ..Default::default()
        })
    }

    fn classic(id: &str) -> JoinRequest {
        JoinRequest {
            member_id: id.into(),
            group_instance_id: None,
            client_id: id.into(),
            client_host: "/127.0.0.1".into(),
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(30),
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), subscription())],
        }
    }

    fn parts(ps: &[i32]) -> Bytes {
        consumer_protocol::encode_assignment(&[("t".to_string(), ps.to_vec())].into())
    }

    /// A stable classic group: a holds t-0,1 and b t-2,3.
    fn classic_pair(policy: MigrationPolicy, now: Instant) -> Group {
        let mut settings = GroupSettings {
            initial_rebalance_delay: Duration::ZERO,
            ..Default::default()
        };
        settings.consumer.migration = policy;
        let mut g = Group::new("g".into(), settings);
        let mut ids = Vec::new();
        for _ in 0..2 {
            let (mut rx, _) = g.join(classic(""), now);
            match rx.try_recv().unwrap().unwrap() {
                JoinOutcome::MemberIdRequired(id) => ids.push(id),
                other => panic!("{other:?}"),
            }
        }
        let (_ra, _) = g.join(classic(&ids[0]), now);
        let (_rb, _) = g.join(classic(&ids[1]), now);
        let leader = g.leader.clone().unwrap();
        let other = ids.iter().find(|i| **i != leader).unwrap().clone();
        let gen_ = g.generation;
        let (_s, _) = g.sync(&other, gen_, vec![], now);
        let (_s, _) = g.sync(
            &leader,
            gen_,
            vec![
                (leader.clone(), parts(&[0, 1])),
                (other.clone(), parts(&[2, 3])),
            ],
            now,
        );
        g.assignment_persisted(gen_, Ok(()), now);
        assert_eq!(g.state, GroupState::Stable);
        g
    }

    #[test]
    fn a_consumer_member_upgrades_a_classic_group_and_its_leaving_downgrades_it() {
        let now = Instant::now();
        let t = topics();
        let mut g = classic_pair(MigrationPolicy::Bidirectional, now);
        let generation = g.generation;
        let classic_ids: Vec<String> = g.members.keys().cloned().collect();
        let c = g.as_consumer(now).unwrap();
        assert!(c.only_classic());
        assert_eq!(c.rec.epoch, generation);
        let (answer, _) = c
            .heartbeat(
                Heartbeat {
                    member_id: "new".into(),
                    member_epoch: 0,
                    rebalance_timeout_ms: 30_000,
                    subscribed_topic_names: Some(vec!["t".into()]),
                    owned: Some(Default::default()),
                    ..Default::default()
                },
                &t,
                now,
            )
            .unwrap();
        assert!(answer.assignment.unwrap().is_empty(), "everything is held");
        assert!(g.serves_classic_members());
        // One classic member is told to rejoin; eager, it gives all up.
        let c = g.consumer.as_mut().unwrap();
        let mut rejoined = 0;
        let mut held_by_classic = 0;
        for id in &classic_ids {
            let e = c.classic_heartbeat(id, generation, now);
            if e.is_err() {
                let join = ClassicJoin {
                    member_id: id.clone(),
                    instance_id: None,
                    client_id: id.clone(),
                    client_host: String::new(),
                    session_timeout: Duration::from_secs(10),
                    rebalance_timeout: Duration::from_secs(30),
                    protocols: vec![("range".into(), subscription())],
                };
                let ((_, epoch, _), _) = c.classic_join(join, &t, now).unwrap();
                let held = decode_assignment("g", &c.classic_sync(id, epoch).unwrap()).unwrap();
                held_by_classic += held.values().map(BTreeSet::len).sum::<usize>();
                rejoined += 1;
            }
        }
        // Both move to the new epoch; together they keep three partitions.
        assert_eq!(rejoined, 2);
        assert_eq!(held_by_classic, 3);
        let (answer, _) = c
            .heartbeat(
                Heartbeat {
                    member_id: "new".into(),
                    member_epoch: c.rec.members["new"].epoch,
                    rebalance_timeout_ms: -1,
                    ..Default::default()
                },
                &t,
                now,
            )
            .unwrap();
        assert_eq!(
            answer.assignment.unwrap()["t"].len(),
            1,
            "the freed partition"
        );
        // The consumer-protocol member leaves: a classic group again, whose
        // members rejoin once.
        let epoch = c.rec.members["new"].epoch;
        c.heartbeat(
            Heartbeat {
                member_id: "new".into(),
                member_epoch: -1,
                ..Default::default()
            },
            &t,
            now,
        )
        .unwrap();
        assert!(g.maybe_downgrade(now));
        assert!(g.consumer.is_none());
        assert_eq!(g.members.len(), 2);
        assert_eq!(g.state, GroupState::PreparingRebalance);
        assert!(g.generation >= epoch);
        // Each member is told to rejoin at the epoch it had, and may commit.
        for id in &classic_ids {
            let mine = g.downgraded[id];
            let e = g.heartbeat(id, mine, now).unwrap_err();
            assert!(
                matches!(e, CoordinatorError::RebalanceInProgress { .. }),
                "{e}"
            );
            g.check_commit(id, mine).unwrap();
        }
    }

    #[test]
    fn an_eager_member_listing_what_it_gave_up_is_not_left_revoking() {
        let now = Instant::now();
        let t = topics();
        let mut g = classic_pair(MigrationPolicy::Bidirectional, now);
        let classic_ids: Vec<String> = g.members.keys().cloned().collect();
        let c = g.as_consumer(now).unwrap();
        c.heartbeat(
            Heartbeat {
                member_id: "new".into(),
                member_epoch: 0,
                rebalance_timeout_ms: 30_000,
                subscribed_topic_names: Some(vec!["t".into()]),
                owned: Some(Default::default()),
                ..Default::default()
            },
            &t,
            now,
        )
        .unwrap();
        for id in &classic_ids {
            let had: Vec<(String, i32)> =
                crate::consumer_group::member::flat(&c.rec.members[id].assigned)
                    .map(|(t, p)| (t.to_string(), p))
                    .collect();
            // Sluice's eager client lists the partitions it gave up.
            let metadata = consumer_protocol::encode_subscription(&Subscription {
                topics: vec!["t".into()],
                owned_partitions: had,
                generation_id: 1,
                rack_id: None,
            });
            let join = ClassicJoin {
                member_id: id.clone(),
                instance_id: None,
                client_id: id.clone(),
                client_host: String::new(),
                session_timeout: Duration::from_secs(10),
                rebalance_timeout: Duration::from_secs(30),
                protocols: vec![("range".into(), metadata)],
            };
            let ((_, epoch, _), _) = c.classic_join(join, &t, now).unwrap();
            assert_ne!(
                c.rec.members[id].state,
                crate::consumer_group::MemberState::UnrevokedPartitions
            );
            assert_eq!(epoch, c.rec.assignment_epoch);
        }
    }

    #[test]
    fn with_migration_disabled_a_group_with_members_keeps_its_protocol() {
        let now = Instant::now();
        let mut g = classic_pair(MigrationPolicy::Disabled, now);
        let e = g.as_consumer(now).err().unwrap();
        assert!(matches!(e, CoordinatorError::OtherProtocol { .. }), "{e}");
        assert!(g.consumer.is_none());
        assert_eq!(g.members.len(), 2);
    }
}
