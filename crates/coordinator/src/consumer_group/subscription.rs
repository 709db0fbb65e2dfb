//! What a member subscribes to: validating a heartbeat's fields, and
//! resolving topic names and regexes against the cluster's topics.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::{ConsumerMember, ConsumerSettings, Heartbeat, LEAVE_EPOCH, LEAVE_STATIC_EPOCH};
use crate::error::CoordinatorError;

/// The cluster's topics as the coordinator follows them: partition counts by
/// name, and a version that changes whenever any does.
#[derive(Debug, Clone, Default)]
pub struct TopicCounts {
    pub version: u64,
    pub counts: BTreeMap<String, i32>,
    /// Topic ids by name, and names by id (the Kafka face speaks ids).
    pub ids: HashMap<String, String>,
    pub names: HashMap<String, String>,
    /// Internal topics (`__consumer_offsets`, ...): never matched by a regex.
    pub internal: HashSet<String>,
}

/// A subscription regex, matched against whole topic names as Kafka does.
pub fn compile(re: &str) -> Result<regex::Regex, CoordinatorError> {
    regex::Regex::new(&format!("^(?:{re})$")).map_err(|e| CoordinatorError::InvalidRegex {
        regex: re.to_string(),
        reason: e.to_string(),
    })
}

/// Kafka's checks of a ConsumerGroupHeartbeat, before it touches the group.
pub fn validate(req: &Heartbeat, settings: &ConsumerSettings) -> Result<(), CoordinatorError> {
    let invalid = |why: &str| Err(CoordinatorError::InvalidHeartbeat(why.to_string()));
    match req.member_epoch {
        0 => {
            if req.rebalance_timeout_ms <= 0 {
                return invalid("rebalance_timeout_ms must be set when joining");
            }
            if req.subscribed_topic_names.is_none() && req.subscribed_topic_regex.is_none() {
                return invalid(
                    "subscribed_topic_names or subscribed_topic_regex must be set when joining",
                );
            }
            if req.owned.as_ref().is_some_and(|o| !o.is_empty()) {
                return invalid("topic_partitions must be empty when joining");
            }
        }
        LEAVE_STATIC_EPOCH if req.instance_id.is_none() => {
            return invalid("member epoch -2 (static leave) needs instance_id");
        }
        LEAVE_EPOCH | LEAVE_STATIC_EPOCH | 1.. => {
            if req.member_id.is_empty() {
                return invalid("member_id must be set after joining");
            }
        }
        e => {
            return invalid(&format!("member epoch {e} is not valid"));
        }
    }
    if req.instance_id.as_ref().is_some_and(String::is_empty) {
        return invalid("instance_id must not be empty");
    }
    if let Some(name) = req.server_assignor.as_deref().filter(|a| !a.is_empty())
        && !settings.assignors.iter().any(|a| a.name() == name)
    {
        let known: Vec<&str> = settings.assignors.iter().map(|a| a.name()).collect();
        return Err(CoordinatorError::UnsupportedAssignor {
            name: name.to_string(),
            known: known.join(", "),
        });
    }
    if let Some(re) = req
        .subscribed_topic_regex
        .as_deref()
        .filter(|r| !r.is_empty())
    {
        compile(re)?;
    }
    Ok(())
}

/// Every member's subscription as topic names: its names, and the topics
/// its regex matches (internal topics only by name). Each distinct regex is
/// compiled and matched once.
pub fn resolve_all(
    members: &BTreeMap<String, ConsumerMember>,
    topics: &TopicCounts,
) -> BTreeMap<String, BTreeSet<String>> {
    let mut matched: HashMap<&str, Vec<String>> = HashMap::new();
    for re in members
        .values()
        .filter_map(|m| m.subscribed_regex.as_deref())
    {
        if matched.contains_key(re) {
            continue;
        }
        let hits = match compile(re) {
            Ok(r) => topics
                .counts
                .keys()
                .filter(|t| !topics.internal.contains(*t) && r.is_match(t))
                .cloned()
                .collect(),
            Err(_) => Vec::new(),
        };
        matched.insert(re, hits);
    }
    members
        .iter()
        .map(|(id, m)| {
            let mut out = m.subscribed_topics.clone();
            if let Some(hits) = m.subscribed_regex.as_deref().and_then(|r| matched.get(r)) {
                out.extend(hits.iter().cloned());
            }
            (id.clone(), out)
        })
        .collect()
}

/// Partition counts of the subscribed topics that exist.
pub fn counts_of(
    resolved: &BTreeMap<String, BTreeSet<String>>,
    topics: &TopicCounts,
) -> BTreeMap<String, i32> {
    resolved
        .values()
        .flatten()
        .filter_map(|t| topics.counts.get(t).map(|n| (t.clone(), *n)))
        .collect()
}
