//! Message searches: where to start (oldest, newest, an offset, a time, the
//! last N), which partitions, a substring filter on key, value and headers,
//! and hard bounds on what one search reads. A search streams what it finds
//! and how far it got, and stops when the page that asked goes away.

use std::collections::HashMap;
use std::time::Duration;

use sluice_client::{ClientConfig, Consumer, ConsumerRecord, TopicPartition};
use tokio::sync::mpsc;

use crate::error::{ConsoleError, Result};

/// The most records one search returns.
pub const MAX_RESULTS: usize = 500;
/// The most records one search reads.
pub const MAX_SCAN: u64 = 200_000;
/// The longest one search runs, and the longest it waits with nothing new.
pub const MAX_TIME: Duration = Duration::from_secs(60);
pub const MAX_IDLE: Duration = Duration::from_secs(10);
/// Text and JSON shown of one key, value or header.
const MAX_SHOWN: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    Oldest,
    /// The last `limit` records (per partition, then the newest overall).
    Newest,
    Offset(i64),
    Timestamp(i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    Hex,
}

#[derive(Debug, Clone)]
pub struct Search {
    pub topic: String,
    pub partition: Option<i32>,
    pub start: Start,
    pub limit: usize,
    pub filter: Option<String>,
}

/// The query string of a search, as the form sends it.
#[derive(Debug, Default, Clone, serde::Deserialize)]
pub struct SearchQuery {
    pub partition: Option<String>,
    pub from: Option<String>,
    pub offset: Option<String>,
    pub timestamp: Option<String>,
    pub limit: Option<String>,
    pub filter: Option<String>,
    pub format: Option<String>,
    pub msg: Option<String>,
}

impl SearchQuery {
    /// Whether the form was submitted (a bare page shows only the form).
    pub fn asked(&self) -> bool {
        self.from.is_some()
    }

    pub fn format(&self) -> Format {
        match self.format.as_deref() {
            Some("json") => Format::Json,
            Some("hex") => Format::Hex,
            _ => Format::Text,
        }
    }

    /// Checks every field; `partitions` is the topic's count.
    pub fn parse(&self, topic: &str, partitions: i32) -> Result<Search> {
        let partition = match self.partition.as_deref().map(str::trim) {
            None | Some("") | Some("all") => None,
            Some(p) => match p.parse::<i32>() {
                Ok(n) if (0..partitions).contains(&n) => Some(n),
                _ => {
                    return Err(ConsoleError::bad(
                        "partition",
                        format!(
                            "\"{p}\" is not a partition of {topic} (0 to {})",
                            partitions - 1
                        ),
                    ));
                }
            },
        };
        let limit = match self.limit.as_deref().map(str::trim) {
            None | Some("") => 50,
            Some(l) => match l.parse::<usize>() {
                Ok(n) if (1..=MAX_RESULTS).contains(&n) => n,
                _ => {
                    return Err(ConsoleError::bad(
                        "limit",
                        format!("\"{l}\" is not a number from 1 to {MAX_RESULTS}"),
                    ));
                }
            },
        };
        let start = match self.from.as_deref().unwrap_or("newest") {
            "oldest" => Start::Oldest,
            "newest" | "last" => Start::Newest,
            "offset" => {
                let v = self.offset.as_deref().unwrap_or("").trim();
                match v.parse::<i64>() {
                    Ok(o) if o >= 0 => Start::Offset(o),
                    _ => {
                        return Err(ConsoleError::bad(
                            "offset",
                            format!("\"{v}\" is not an offset (a whole number, 0 or more)"),
                        ));
                    }
                }
            }
            "timestamp" => Start::Timestamp(parse_time(self.timestamp.as_deref().unwrap_or(""))?),
            other => {
                return Err(ConsoleError::bad(
                    "from",
                    format!("\"{other}\": expected oldest, newest, offset or timestamp"),
                ));
            }
        };
        let filter = self
            .filter
            .as_deref()
            .map(str::to_string)
            .filter(|f| !f.is_empty());
        Ok(Search {
            topic: topic.to_string(),
            partition,
            start,
            limit,
            filter,
        })
    }
}

/// Milliseconds since the epoch, or a date and time (UTC unless it names a
/// zone): `2026-12-02 16:52:20`, `2026-12-02T16:52:20.5Z`, `2026-12-02`.
pub fn parse_time(v: &str) -> Result<i64> {
    let v = v.trim();
    let bad = || {
        ConsoleError::bad(
            "timestamp",
            format!("\"{v}\" is not a time: give ms since the epoch or YYYY-MM-DD[ HH:MM[:SS]]"),
        )
    };
    if v.is_empty() {
        return Err(bad());
    }
    if let Ok(ms) = v.parse::<i64>() {
        return if ms >= 0 { Ok(ms) } else { Err(bad()) };
    }
    if let Ok(ts) = v.parse::<jiff::Timestamp>() {
        return Ok(ts.as_millisecond());
    }
    let civil = v
        .replace('T', " ")
        .parse::<jiff::civil::DateTime>()
        .or_else(|_| {
            v.parse::<jiff::civil::Date>()
                .map(|d| d.to_datetime(jiff::civil::Time::midnight()))
        })
        .map_err(|_| bad())?;
    civil
        .to_zoned(jiff::tz::TimeZone::UTC)
        .map(|z| z.timestamp().as_millisecond())
        .map_err(|_| bad())
}

/// What a running search reports.
#[derive(Debug, Clone)]
pub enum Event {
    Progress {
        scanned: u64,
        matched: usize,
    },
    Found(Box<ConsumerRecord>),
    Done {
        scanned: u64,
        matched: usize,
        why: String,
    },
}

fn matches(r: &ConsumerRecord, needle: &[u8]) -> bool {
    let has = |b: &[u8]| b.windows(needle.len()).any(|w| w == needle);
    r.key.as_deref().is_some_and(has)
        || r.value.as_deref().is_some_and(has)
        || r.headers
            .iter()
            .any(|(k, v)| has(k.as_bytes()) || v.as_deref().is_some_and(has))
}

/// Runs `search`, sending what it finds to `tx`; stops early when `tx` is
/// closed (the page went away).
pub async fn run(config: ClientConfig, search: Search, tx: mpsc::Sender<Event>) -> Result<()> {
    let mut c = Consumer::new(config.with("auto.offset.reset", "earliest")?)?;
    let all = c.assign_all(&search.topic).await?;
    let tps: Vec<TopicPartition> = match search.partition {
        Some(p) => all.into_iter().filter(|tp| tp.partition == p).collect(),
        None => all,
    };
    c.assign(tps.clone());
    let begin = c.beginning_offsets(&tps).await?;
    let end = c.end_offsets(&tps).await?;
    let times = match search.start {
        Start::Timestamp(ts) => c.offsets_for_times(&tps, ts).await?,
        _ => HashMap::new(),
    };
    // Where each partition's scan starts and stops. Start and end come from
    // two lookups: a leader change between them may put the start past the
    // end, and then there is nothing to read there.
    let mut bounds: HashMap<TopicPartition, (i64, i64)> = HashMap::new();
    for tp in &tps {
        let b = begin.get(tp).copied().unwrap_or(0);
        let e = end.get(tp).copied().unwrap_or(b);
        let from = match search.start {
            Start::Oldest => b,
            Start::Newest => e.saturating_sub(search.limit as i64).max(b),
            Start::Offset(o) => o.max(b),
            Start::Timestamp(_) => times.get(tp).copied().filter(|o| *o >= 0).unwrap_or(e),
        };
        if from < e {
            bounds.insert(tp.clone(), (from, e));
        }
    }
    c.assign(bounds.keys().cloned().collect());
    for (tp, (from, _)) in &bounds {
        c.seek(tp, *from)?;
    }
    let mut open: HashMap<TopicPartition, i64> =
        bounds.into_iter().map(|(tp, (_, e))| (tp, e)).collect();
    let started = tokio::time::Instant::now();
    let mut last_record = started;
    let needle = search.filter.as_deref().map(str::as_bytes);
    let (mut scanned, mut matched) = (0u64, 0usize);
    let mut newest: Vec<ConsumerRecord> = Vec::new();
    let why = loop {
        if open.is_empty() {
            break "reached the end".to_string();
        }
        if scanned >= MAX_SCAN {
            break format!("read the most one search may ({MAX_SCAN} records)");
        }
        if search.start != Start::Newest && matched >= search.limit {
            break format!("found {} (the limit)", search.limit);
        }
        if started.elapsed() >= MAX_TIME {
            break format!("ran for the most one search may ({} s)", MAX_TIME.as_secs());
        }
        if last_record.elapsed() >= MAX_IDLE {
            break format!(
                "nothing more came for {} s (a partition without a leader?)",
                MAX_IDLE.as_secs()
            );
        }
        let records = c.poll(Duration::from_millis(200)).await?;
        if !records.is_empty() {
            last_record = tokio::time::Instant::now();
        }
        for r in records {
            let tp = TopicPartition::new(&*r.topic, r.partition);
            let Some(stop) = open.get(&tp).copied() else {
                continue;
            };
            if r.offset >= stop {
                open.remove(&tp);
                continue;
            }
            scanned += 1;
            if r.offset + 1 >= stop {
                open.remove(&tp);
            }
            if needle.is_some_and(|n| !matches(&r, n)) {
                continue;
            }
            matched += 1;
            if search.start == Start::Newest {
                newest.push(r);
                // Only the newest `limit` are kept: trim now and then.
                if newest.len() >= 2 * search.limit {
                    keep_newest(&mut newest, search.limit);
                }
            } else if matched <= search.limit && tx.send(Event::Found(Box::new(r))).await.is_err() {
                return Ok(());
            }
        }
        // Partitions whose position passed the end without a record (gaps).
        open.retain(|tp, stop| c.position(tp).is_none_or(|p| p < *stop));
        if tx.send(Event::Progress { scanned, matched }).await.is_err() {
            return Ok(());
        }
    };
    if search.start == Start::Newest {
        keep_newest(&mut newest, search.limit);
        matched = matched.min(search.limit);
        for r in newest {
            if tx.send(Event::Found(Box::new(r))).await.is_err() {
                return Ok(());
            }
        }
    }
    let _ = tx
        .send(Event::Done {
            scanned,
            matched: matched.min(search.limit),
            why,
        })
        .await;
    Ok(())
}

/// Keeps the `limit` newest records, oldest first.
fn keep_newest(records: &mut Vec<ConsumerRecord>, limit: usize) {
    records.sort_by_key(|r| (r.timestamp, r.partition, r.offset));
    let skip = records.len().saturating_sub(limit);
    records.drain(..skip);
}

/// Text cut to [`MAX_SHOWN`] bytes, saying how much was left out.
fn cut(s: String) -> String {
    if s.len() <= MAX_SHOWN {
        return s;
    }
    let mut end = MAX_SHOWN;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}\n... {} more bytes", &s[..end], s.len() - end)
}

/// A key, value or header as the page shows it.
pub fn show(b: Option<&[u8]>, format: Format) -> String {
    let Some(b) = b else {
        return "null".into();
    };
    match format {
        Format::Hex => {
            let shown = &b[..b.len().min(4096)];
            let mut s = String::with_capacity(shown.len() * 3);
            for (i, byte) in shown.iter().enumerate() {
                if i > 0 {
                    s.push(if i % 16 == 0 { '\n' } else { ' ' });
                }
                s.push_str(&format!("{byte:02x}"));
            }
            if b.len() > shown.len() {
                s.push_str(&format!("\n... {} more bytes", b.len() - shown.len()));
            }
            s
        }
        Format::Json => cut(match serde_json::from_slice::<serde_json::Value>(b) {
            Ok(v) => serde_json::to_string_pretty(&v).unwrap_or_default(),
            Err(_) => String::from_utf8_lossy(b).into_owned(),
        }),
        Format::Text => cut(String::from_utf8_lossy(b).into_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_ms_or_dates_and_junk_is_refused() {
        assert_eq!(parse_time("1700000000000").unwrap(), 1_700_000_000_000);
        assert_eq!(
            parse_time("2026-12-02 00:00:00").unwrap(),
            1_796_169_600_000
        );
        assert_eq!(parse_time("2026-12-02").unwrap(), 1_796_169_600_000);
        assert_eq!(
            parse_time("2026-12-02T00:00:00Z").unwrap(),
            1_796_169_600_000
        );
        for bad in ["", "-5", "yesterday", "2026-13-40"] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn queries_are_checked_field_by_field() {
        let q = |pairs: &[(&str, &str)]| {
            let mut s = SearchQuery::default();
            for (k, v) in pairs {
                let v = Some(v.to_string());
                match *k {
                    "partition" => s.partition = v,
                    "from" => s.from = v,
                    "offset" => s.offset = v,
                    "timestamp" => s.timestamp = v,
                    "limit" => s.limit = v,
                    _ => unreachable!(),
                }
            }
            s.parse("t", 3)
        };
        assert_eq!(
            q(&[("from", "offset"), ("offset", "7")]).unwrap().start,
            Start::Offset(7)
        );
        let e = q(&[("from", "offset"), ("offset", "-1")]).unwrap_err();
        assert!(e.to_string().contains("offset"), "{e}");
        assert!(q(&[("from", "oldest"), ("limit", "100000")]).is_err());
        assert!(q(&[("from", "oldest"), ("partition", "3")]).is_err());
        assert!(q(&[("from", "timestamp"), ("timestamp", "soon")]).is_err());
        assert_eq!(
            q(&[("from", "oldest"), ("partition", "all")])
                .unwrap()
                .partition,
            None
        );
    }

    #[test]
    fn values_show_as_text_json_or_hex() {
        assert_eq!(show(Some(b"{\"a\":1}"), Format::Json), "{\n  \"a\": 1\n}");
        assert_eq!(show(Some(b"not json"), Format::Json), "not json");
        assert_eq!(show(Some(b"AB"), Format::Hex), "41 42");
        assert_eq!(show(None, Format::Text), "null");
    }
}
