//! Listing a dead-letter topic (`sluice dlq --list`) and re-publishing its
//! records (`--redrive`).
//!
//! Redrive's progress is a consumer group's committed offsets on the
//! dead-letter topic (default [`DEFAULT_GROUP`]). Before publishing, it
//! commits its start offsets again with a marker saying when it started;
//! once every record is acknowledged it commits the end offsets without the
//! marker. A redrive that finds a marker (the last one died in between)
//! first reads what the target topics received since that time and skips the
//! dead letters whose [`REDRIVE_ID`] is already there, so retrying a redrive
//! publishes each dead letter once.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sluice_types::ErrorCode;

use super::{ERROR, FAILED_MS, GROUP, ORIGINAL_TOPIC, Origin, REDRIVE_ID, header, redriven_record};
use crate::admin::Admin;
use crate::config::ClientConfig;
use crate::consumer::{Consumer, ConsumerRecord};
use crate::error::{ClientError, Result};
use crate::producer::Producer;
use crate::types::TopicPartition;

/// The group whose offsets remember what has been redriven.
pub const DEFAULT_GROUP: &str = "sluice-dlq-redrive";

/// Offset metadata of a redrive in progress: `<MARKER><start ms> to=<--to>`.
const MARKER: &str = "sluice.redrive started.ms=";

fn marker(since: i64, to: Option<&str>) -> String {
    format!("{MARKER}{since} to={}", to.unwrap_or(""))
}

/// A marker's start time and `--to` (empty: each record's own topic).
fn parse_marker(meta: &str) -> Option<(i64, String)> {
    let rest = meta.strip_prefix(MARKER)?;
    let (ms, to) = rest.split_once(" to=").unwrap_or((rest, ""));
    Some((ms.parse().ok()?, to.to_string()))
}

/// Clock difference allowed between this client and the brokers when a
/// recovering redrive looks records up by time (LogAppendTime topics).
const SKEW_MS: i64 = 60_000;

/// A record of a dead-letter topic with its failure headers read.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub record: ConsumerRecord,
    pub origin: Origin,
    pub attempts: u32,
    pub error: Option<String>,
    pub group: Option<String>,
    pub failed_ms: Option<i64>,
    /// Below the redrive group's committed offset: already re-published.
    pub redriven: bool,
}

impl DeadLetter {
    fn of(record: ConsumerRecord, redriven: bool) -> DeadLetter {
        DeadLetter {
            origin: Origin::of(&record),
            attempts: super::failed_attempts(&record),
            error: header(&record, ERROR).map(str::to_string),
            group: header(&record, GROUP).map(str::to_string),
            failed_ms: header(&record, FAILED_MS).and_then(|v| v.parse().ok()),
            redriven,
            record,
        }
    }
}

/// How far a redrive has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedriveProgress {
    /// Dead letters handled so far (published or found already published).
    pub done: u64,
    pub total: u64,
}

/// What a redrive did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedriveSummary {
    pub published: u64,
    /// Published by an earlier redrive that died before finishing.
    pub already_published: u64,
    /// The topics records went to.
    pub targets: BTreeSet<String>,
    /// False when `progress` asked to stop: what was sent is published, the
    /// rest waits for the next redrive (which skips what this one published).
    pub finished: bool,
}

/// Per partition of the dead-letter topic: `[start, end)` to handle.
type Ranges = BTreeMap<TopicPartition, (i64, i64)>;

/// The dead-letter topic's partitions, the group's committed offsets and
/// any unfinished redrive's start time.
struct Position {
    /// From the committed offset (or the log start) to the end.
    ranges: Ranges,
    /// From the log start to the end.
    whole: Ranges,
    committed: BTreeMap<TopicPartition, i64>,
    /// An unfinished redrive's earliest start time and its `--to`.
    unfinished: Option<(i64, String)>,
    /// Partitions whose offset carries a marker (cleared when a redrive
    /// finishes, also where nothing was left to send).
    marked: Vec<TopicPartition>,
}

impl Position {
    /// Offsets to commit when done: each open partition at its end, each
    /// other marked one where it is, all without a marker.
    fn finished(&self) -> BTreeMap<TopicPartition, (i64, String)> {
        let mut out: BTreeMap<TopicPartition, (i64, String)> = self
            .ranges
            .iter()
            .filter(|(_, (s, e))| s < e)
            .map(|(tp, (_, e))| (tp.clone(), (*e, String::new())))
            .collect();
        for tp in &self.marked {
            if !out.contains_key(tp) {
                let at = self.ranges.get(tp).map_or(0, |(s, _)| *s);
                out.insert(tp.clone(), (at, String::new()));
            }
        }
        out
    }
}

async fn position(
    consumer: &mut Consumer,
    admin: &Admin,
    topic: &str,
    group: &str,
) -> Result<Position> {
    let tps = consumer.assign_all(topic).await?;
    let begin = consumer.beginning_offsets(&tps).await?;
    let end = consumer.end_offsets(&tps).await?;
    let offsets = admin.group_offsets_with_metadata(group).await?;
    let mut p = Position {
        ranges: Ranges::new(),
        whole: Ranges::new(),
        committed: BTreeMap::new(),
        unfinished: None,
        marked: Vec::new(),
    };
    for tp in tps {
        let first = begin.get(&tp).copied().unwrap_or(0);
        let last = end.get(&tp).copied().unwrap_or(first);
        let mut start = first;
        if let Some((o, meta)) = offsets.get(&tp) {
            if *o > last {
                // Past the end: the topic was re-created or cut back. What is
                // there now was never redriven.
                tracing::warn!(%tp, committed = o, end = last, group, "redrive offset past the end of the topic; starting from its beginning");
            } else {
                start = start.max(*o);
                p.committed.insert(tp.clone(), *o);
            }
            if let Some((ms, to)) = parse_marker(meta) {
                if let Some((_, other)) = &p.unfinished
                    && *other != to
                {
                    return Err(ClientError::api(
                        ErrorCode::InvalidRequest,
                        format!(
                            "unfinished redrives of {topic} with different --to ({other:?}, {to:?}) in group {group}"
                        ),
                    ));
                }
                let since = p.unfinished.as_ref().map_or(ms, |(s, _)| (*s).min(ms));
                p.unfinished = Some((since, to));
                p.marked.push(tp.clone());
            }
        }
        p.whole.insert(tp.clone(), (first, last.max(first)));
        p.ranges.insert(tp, (start, last.max(start)));
    }
    Ok(p)
}

/// Reads every record in some ranges, in offset order per partition.
struct Reader {
    open: Ranges,
    last_progress: Instant,
}

impl Reader {
    fn start(consumer: &mut Consumer, ranges: &Ranges) -> Result<Reader> {
        let open: Ranges = ranges
            .iter()
            .filter(|(_, (s, e))| s < e)
            .map(|(tp, r)| (tp.clone(), *r))
            .collect();
        consumer.assign(open.keys().cloned().collect());
        for (tp, (start, _)) in &open {
            consumer.seek(tp, *start)?;
        }
        Ok(Reader {
            open,
            last_progress: Instant::now(),
        })
    }

    /// The next records, or `None` once every range is read.
    async fn next(&mut self, consumer: &mut Consumer) -> Result<Option<Vec<ConsumerRecord>>> {
        loop {
            let behind = self
                .open
                .iter()
                .any(|(tp, (_, end))| consumer.position(tp).is_none_or(|p| p < *end));
            if !behind {
                return Ok(None);
            }
            let mut records = consumer.poll(Duration::from_millis(200)).await?;
            if records.is_empty() {
                if self.last_progress.elapsed() > consumer.config().request_timeout {
                    return Err(ClientError::api(
                        ErrorCode::RequestTimedOut,
                        "reading the topic made no progress within request.timeout.ms",
                    ));
                }
                continue;
            }
            self.last_progress = Instant::now();
            records.retain(|r| {
                self.open
                    .get(&TopicPartition::new(&*r.topic, r.partition))
                    .is_some_and(|(_, e)| r.offset < *e)
            });
            if !records.is_empty() {
                return Ok(Some(records));
            }
        }
    }
}

/// Calls `f` with every record of dead-letter topic `topic`, oldest first per
/// partition, marking those `group`'s redrives have re-published. Returns how
/// many there were.
pub async fn list(
    config: ClientConfig,
    topic: &str,
    group: &str,
    mut f: impl FnMut(DeadLetter),
) -> Result<u64> {
    let admin = Admin::new(config.clone())?;
    let mut consumer = Consumer::new(reader_config(&config)?)?;
    let pos = position(&mut consumer, &admin, topic, group).await?;
    let mut reader = Reader::start(&mut consumer, &pos.whole)?;
    let mut n = 0;
    while let Some(records) = reader.next(&mut consumer).await? {
        for r in records {
            let redriven = pos
                .committed
                .get(&TopicPartition::new(&*r.topic, r.partition))
                .is_some_and(|c| r.offset < *c);
            n += 1;
            f(DeadLetter::of(r, redriven));
        }
    }
    Ok(n)
}

/// Re-publishes the records of dead-letter topic `topic` not yet redriven by
/// `group`: to `to`, or each to the topic it failed in. At least once, and
/// once even when a redrive that died part-way is run again. `progress` is
/// called after each batch of records is handed to the producer; breaking
/// stops the redrive there (Ctrl-C).
pub async fn redrive(
    config: ClientConfig,
    topic: &str,
    to: Option<&str>,
    group: &str,
    mut progress: impl FnMut(RedriveProgress) -> ControlFlow<()>,
) -> Result<RedriveSummary> {
    let admin = Admin::new(config.clone())?;
    let mut consumer = Consumer::new(reader_config(&config)?)?;
    let pos = position(&mut consumer, &admin, topic, group).await?;
    if let Some((_, earlier)) = &pos.unfinished
        && earlier.as_str() != to.unwrap_or("")
    {
        let named = |t: &str| {
            if t.is_empty() {
                "no --to".to_string()
            } else {
                format!("--to {t}")
            }
        };
        return Err(ClientError::api(
            ErrorCode::InvalidRequest,
            format!(
                "an earlier redrive of {topic} with {} did not finish; run it again with the same target first",
                named(earlier)
            ),
        ));
    }
    let total: u64 = pos.ranges.values().map(|(s, e)| (e - s) as u64).sum();
    let mut summary = RedriveSummary {
        finished: true,
        ..Default::default()
    };
    if total == 0 {
        // A run stopped after its last batch left markers: clear them.
        if !pos.marked.is_empty() {
            admin
                .alter_group_offsets_with_metadata(group, &pos.finished())
                .await?;
        }
        return Ok(summary);
    }

    // Which topics the dead letters go to, and how many partitions each has;
    // checked before anything is marked or sent.
    let mut targets = BTreeSet::new();
    match to {
        Some(t) => {
            targets.insert(t.to_string());
        }
        None => {
            let mut orphans = 0;
            let mut reader = Reader::start(&mut consumer, &pos.ranges)?;
            while let Some(records) = reader.next(&mut consumer).await? {
                for r in &records {
                    match header(r, ORIGINAL_TOPIC) {
                        Some(t) => targets.insert(t.to_string()),
                        None => {
                            orphans += 1;
                            false
                        }
                    };
                }
            }
            if orphans > 0 {
                return Err(ClientError::api(
                    ErrorCode::InvalidRequest,
                    format!(
                        "{orphans} records of {topic} do not say which topic they failed in \
                         (no {ORIGINAL_TOPIC} header); name the target with --to"
                    ),
                ));
            }
        }
    }
    let names: Vec<String> = targets.iter().cloned().collect();
    consumer.cluster().refresh(&names).await?;
    let mut partitions = BTreeMap::new();
    for t in &names {
        let info = consumer.cluster().topic(t).ok_or_else(|| {
            ClientError::api(
                ErrorCode::UnknownTopicOrPartition,
                format!("redrive target topic \"{t}\" does not exist"),
            )
        })?;
        partitions.insert(t.clone(), info.partitions.len() as i32);
    }
    let seen = match &pos.unfinished {
        Some((since, _)) => already_published(&config, topic, &names, *since).await?,
        None => HashSet::new(),
    };
    let since = pos
        .unfinished
        .as_ref()
        .map_or_else(sluice_types::now_ms, |(s, _)| *s);
    let mark = marker(since, to);
    let open: Vec<&TopicPartition> = pos
        .ranges
        .iter()
        .filter(|(_, (s, e))| s < e)
        .map(|(tp, _)| tp)
        .collect();
    let commit_at = |next: &BTreeMap<TopicPartition, i64>, meta: &str| {
        open.iter()
            .map(|tp| {
                let at = next.get(*tp).copied().unwrap_or(pos.ranges[*tp].0);
                ((*tp).clone(), (at, meta.to_string()))
            })
            .collect::<BTreeMap<_, _>>()
    };
    admin
        .alter_group_offsets_with_metadata(group, &commit_at(&BTreeMap::new(), &mark))
        .await?;

    let producer = Producer::new(config.clone().with("enable.idempotence", "true")?)?;
    let failed: Arc<parking_lot::Mutex<Option<ClientError>>> = Arc::default();
    let acked = Arc::new(AtomicU64::new(0));
    let mut handled = 0;
    // Per partition, the offset after the last record handed to the producer.
    let mut next: BTreeMap<TopicPartition, i64> = BTreeMap::new();
    let mut reader = Reader::start(&mut consumer, &pos.ranges)?;
    while let Some(records) = reader.next(&mut consumer).await? {
        for r in records {
            handled += 1;
            next.insert(TopicPartition::new(&*r.topic, r.partition), r.offset + 1);
            if seen.contains(&super::redrive_id(&r)) {
                summary.already_published += 1;
                continue;
            }
            let mut out = redriven_record(&r, to);
            let origin = Origin::of(&r);
            // Keyless records go back to the partition they failed in.
            if to.is_none()
                && out.key.is_none()
                && partitions
                    .get(&out.topic)
                    .is_some_and(|n| (0..*n).contains(&origin.partition))
            {
                out.partition = Some(origin.partition);
            }
            summary.targets.insert(out.topic.clone());
            let failed = failed.clone();
            let acked = acked.clone();
            producer
                .send_with_callback(out, move |r| match r {
                    Ok(_) => {
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        failed.lock().get_or_insert(e);
                    }
                })
                .await?;
        }
        let step = progress(RedriveProgress {
            done: handled,
            total,
        });
        if step.is_break() {
            summary.finished = false;
            break;
        }
    }
    producer.flush().await;
    producer.close().await;
    if let Some(e) = failed.lock().take() {
        return Err(e);
    }
    summary.published = acked.load(Ordering::Relaxed);
    if !summary.finished {
        // What was sent is acknowledged: commit that far, keeping the marker
        // (records sent from this run on may be in the targets already).
        admin
            .alter_group_offsets_with_metadata(group, &commit_at(&next, &mark))
            .await?;
        return Ok(summary);
    }
    admin
        .alter_group_offsets_with_metadata(group, &pos.finished())
        .await?;
    Ok(summary)
}

/// Readers start where they are told and never jump to the end: a log start
/// moving past them (retention) must not skip what is left.
fn reader_config(config: &ClientConfig) -> Result<ClientConfig> {
    config.clone().with("auto.offset.reset", "earliest")
}

/// The redrive ids of `dead_letter_topic`'s records found in `targets` from
/// `since` on: what a redrive that died part-way had already published.
async fn already_published(
    config: &ClientConfig,
    dead_letter_topic: &str,
    targets: &[String],
    since: i64,
) -> Result<HashSet<String>> {
    let prefix = format!("{dead_letter_topic}/");
    let mut seen = HashSet::new();
    for t in targets {
        let mut c = Consumer::new(reader_config(config)?)?;
        let tps = c.assign_all(t).await?;
        let from = c.offsets_for_times(&tps, since - SKEW_MS).await?;
        let end = c.end_offsets(&tps).await?;
        let ranges: Ranges = tps
            .iter()
            .map(|tp| {
                let e = end.get(tp).copied().unwrap_or(0);
                // -1: nothing that recent in this partition.
                let s = from.get(tp).copied().filter(|o| *o >= 0).unwrap_or(e);
                (tp.clone(), (s, e))
            })
            .collect();
        let mut reader = Reader::start(&mut c, &ranges)?;
        while let Some(records) = reader.next(&mut c).await? {
            for r in records {
                if let Some(id) = header(&r, REDRIVE_ID)
                    && id.starts_with(&prefix)
                {
                    seen.insert(id.to_string());
                }
            }
        }
    }
    Ok(seen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_round_trip_with_and_without_a_target() {
        assert_eq!(parse_marker(&marker(17, None)), Some((17, String::new())));
        assert_eq!(
            parse_marker(&marker(17, Some("orders-v2"))),
            Some((17, "orders-v2".to_string()))
        );
        assert_eq!(parse_marker(""), None);
        assert_eq!(parse_marker("some other tool's metadata"), None);
        assert_eq!(parse_marker(&format!("{MARKER}soon to=")), None);
    }
}
