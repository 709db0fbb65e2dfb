//! Retries and dead letters: where a record an application could not process
//! goes, and the headers that travel with it.
//!
//! A group consumer's `nack` re-publishes the record: before the last of
//! `max.delivery.attempts` to the retry topic `T.retry` with a delayed-delivery
//! header (so the partition it came from is not blocked), then to the
//! dead-letter topic `T.dlq`. Both carry the `sluice.dlq.*` headers below;
//! everything else (key, value, the application's headers) is kept. It is
//! only topics and headers, so a Kafka-protocol client can follow the same
//! pattern (docs/dead-letters.md).
//!
//! # Layout
//! - this file: the header names, [`Policy`] (where a failed record goes and
//!   after how long), and the records `nack` and redrive publish, all pure.
//! - `redrive`: [`redrive`], re-publishing a dead-letter topic's records.

use std::time::Duration;

use bytes::Bytes;

use crate::config::ClientConfig;
use crate::consumer::ConsumerRecord;
use crate::producer::ProducerRecord;

mod redrive;

pub use redrive::{DEFAULT_GROUP, DeadLetter, RedriveProgress, RedriveSummary, list, redrive};

/// The topic the record was first consumed from.
pub const ORIGINAL_TOPIC: &str = "sluice.dlq.original.topic";
/// Its partition there.
pub const ORIGINAL_PARTITION: &str = "sluice.dlq.original.partition";
/// Its offset there.
pub const ORIGINAL_OFFSET: &str = "sluice.dlq.original.offset";
/// Its timestamp there (ms since the epoch).
pub const ORIGINAL_TIMESTAMP: &str = "sluice.dlq.original.timestamp";
/// How many deliveries have failed so far.
pub const ATTEMPTS: &str = "sluice.dlq.attempts";
/// The application's reason for the last failure.
pub const ERROR: &str = "sluice.dlq.error";
/// The consumer group that failed it.
pub const GROUP: &str = "sluice.dlq.group";
/// When the last failure happened (ms since the epoch).
pub const FAILED_MS: &str = "sluice.dlq.failed.ms";
/// On a redriven record: `<dead-letter topic>/<partition>/<offset>` it came
/// from, which lets a retried redrive skip what it already re-published.
pub const REDRIVE_ID: &str = "sluice.redrive.id";

/// The delayed-delivery request header (see docs/delayed-delivery.md).
const DELIVER_AFTER: &str = "sluice.deliver.after.ms";

/// The longest error text kept in [`ERROR`].
const MAX_ERROR_BYTES: usize = 1024;

/// Headers Sluice itself sets on a failed, delayed or redriven record; they
/// are dropped before new ones are written so none appears twice.
fn is_sluice_header(name: &str) -> bool {
    name.starts_with("sluice.dlq.")
        || name.starts_with("sluice.delay.")
        || name.starts_with("sluice.deliver.")
        || name == REDRIVE_ID
}

/// The application's headers of `r`, without Sluice's own.
fn own_headers(r: &ConsumerRecord) -> Vec<(String, Option<Bytes>)> {
    r.headers
        .iter()
        .filter(|(k, _)| !is_sluice_header(k))
        .cloned()
        .collect()
}

/// A record's first position, from its headers or, for a record read from
/// its own topic, itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub timestamp: i64,
}

/// The text of header `name`, if it is there and UTF-8.
pub fn header<'a>(r: &'a ConsumerRecord, name: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| std::str::from_utf8(v.as_deref()?).ok())
}

fn number<T: std::str::FromStr>(r: &ConsumerRecord, name: &str) -> Option<T> {
    header(r, name)?.parse().ok()
}

impl Origin {
    pub fn of(r: &ConsumerRecord) -> Origin {
        match header(r, ORIGINAL_TOPIC) {
            Some(topic) => Origin {
                topic: topic.to_string(),
                partition: number(r, ORIGINAL_PARTITION).unwrap_or(-1),
                offset: number(r, ORIGINAL_OFFSET).unwrap_or(-1),
                timestamp: number(r, ORIGINAL_TIMESTAMP).unwrap_or(-1),
            },
            None => Origin {
                topic: r.topic.to_string(),
                partition: r.partition,
                offset: r.offset,
                timestamp: r.timestamp,
            },
        }
    }
}

/// Failed deliveries before this one (0 for a record read from its own topic).
pub fn failed_attempts(r: &ConsumerRecord) -> u32 {
    number(r, ATTEMPTS).unwrap_or(0)
}

/// Where a failed record goes next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Re-published to the retry topic, due after `after`.
    Retry { topic: String, after: Duration },
    /// Moved to the dead-letter topic: no attempts left.
    DeadLetter { topic: String },
}

impl Route {
    pub fn topic(&self) -> &str {
        match self {
            Route::Retry { topic, .. } | Route::DeadLetter { topic } => topic,
        }
    }
}

/// The retry settings of a consumer (`max.delivery.attempts` and friends).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub max_attempts: u32,
    pub backoff: Duration,
    pub backoff_max: Duration,
    pub retry_suffix: String,
    pub dead_letter_suffix: String,
}

impl Policy {
    pub fn from_config(c: &ClientConfig) -> Policy {
        Policy {
            max_attempts: c.max_delivery_attempts.max(1),
            backoff: c.delivery_retry_backoff,
            backoff_max: c.delivery_retry_backoff_max,
            retry_suffix: c.retry_topic_suffix.clone(),
            dead_letter_suffix: c.dead_letter_topic_suffix.clone(),
        }
    }

    /// Whether failed records are retried at all (and retry topics read).
    pub fn retries(&self) -> bool {
        self.max_attempts > 1
    }

    /// The retry topic a consumer of `topic` also reads (none for a retry
    /// or dead-letter topic itself, or without retries).
    pub fn retry_topic_of(&self, topic: &str) -> Option<String> {
        (self.retries()
            && !topic.ends_with(&self.retry_suffix)
            && !topic.ends_with(&self.dead_letter_suffix))
        .then(|| format!("{topic}{}", self.retry_suffix))
    }

    /// The delay before delivery attempt `failed + 1`: the backoff doubled
    /// per earlier failure, at most the maximum (and never below the 1 s
    /// delayed delivery needs, unless the backoff is 0).
    pub fn delay_after(&self, failed: u32) -> Duration {
        if self.backoff.is_zero() {
            return Duration::ZERO;
        }
        let doublings = failed.saturating_sub(1).min(31);
        let d = self.backoff.saturating_mul(1u32 << doublings);
        d.min(self.backoff_max).max(Duration::from_secs(1))
    }

    /// Where a record goes after its `failed`-th failed delivery.
    pub fn route(&self, origin_topic: &str, failed: u32) -> Route {
        if failed < self.max_attempts {
            Route::Retry {
                topic: format!("{origin_topic}{}", self.retry_suffix),
                after: self.delay_after(failed),
            }
        } else {
            Route::DeadLetter {
                topic: format!("{origin_topic}{}", self.dead_letter_suffix),
            }
        }
    }
}

fn text(v: impl ToString) -> Option<Bytes> {
    Some(Bytes::from(v.to_string()))
}

/// The longest prefix of `s` within `max` bytes, cut at a character boundary.
fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The record `nack` publishes for `r`, its `failed`-th failure: `r`'s key,
/// value and own headers, plus where it started and why it failed. It gets a
/// fresh timestamp (the original is a header): retention of the retry and
/// dead-letter topics counts from the failure, not from the first produce.
/// `partition` keeps it on the partition it came from when the target has one.
pub fn failed_record(
    r: &ConsumerRecord,
    route: &Route,
    failed: u32,
    error: &str,
    group: &str,
    now_ms: i64,
    partition: Option<i32>,
) -> ProducerRecord {
    let origin = Origin::of(r);
    let mut headers = own_headers(r);
    headers.extend([
        (ORIGINAL_TOPIC.to_string(), text(&origin.topic)),
        (ORIGINAL_PARTITION.to_string(), text(origin.partition)),
        (ORIGINAL_OFFSET.to_string(), text(origin.offset)),
        (ORIGINAL_TIMESTAMP.to_string(), text(origin.timestamp)),
        (ATTEMPTS.to_string(), text(failed)),
        (ERROR.to_string(), text(clip(error, MAX_ERROR_BYTES))),
        (GROUP.to_string(), text(group)),
        (FAILED_MS.to_string(), text(now_ms)),
    ]);
    if let Route::Retry { after, .. } = route
        && !after.is_zero()
    {
        headers.push((DELIVER_AFTER.to_string(), text(after.as_millis())));
    }
    ProducerRecord {
        topic: route.topic().to_string(),
        partition,
        key: r.key.clone(),
        value: r.value.clone(),
        headers,
        timestamp: None,
    }
}

/// The id a redriven copy of dead letter `r` carries.
pub fn redrive_id(r: &ConsumerRecord) -> String {
    format!("{}/{}/{}", r.topic, r.partition, r.offset)
}

/// The record redrive publishes for dead letter `r`: to `to` (default: the
/// topic it failed in), with its key, value and the application's headers,
/// as a fresh record (new timestamp, attempts start over).
pub fn redriven_record(r: &ConsumerRecord, to: Option<&str>) -> ProducerRecord {
    let origin = Origin::of(r);
    let topic = to.unwrap_or(&origin.topic).to_string();
    let mut headers = own_headers(r);
    headers.push((REDRIVE_ID.to_string(), text(redrive_id(r))));
    ProducerRecord {
        topic,
        partition: None,
        key: r.key.clone(),
        value: r.value.clone(),
        headers,
        timestamp: None,
    }
}

#[cfg(test)]
mod tests;
