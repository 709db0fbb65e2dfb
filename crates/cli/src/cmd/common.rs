//! Flags and helpers shared by the subcommands: bootstrap servers,
//! `--property k=v` lists, client configs, delivery tracking, progress bars.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use indicatif::{ProgressBar, ProgressStyle};
use sluice_client::{ApiError, ClientConfig, ClientError, DeliveryFuture, RecordMetadata};

/// `--bootstrap-server H:P[,H:P...]`.
#[derive(Debug, Clone, clap::Args)]
pub struct Bootstrap {
    /// The server(s) to connect to: `host:port[,host:port...]`.
    #[arg(long = "bootstrap-server", value_name = "HOST:PORT")]
    pub bootstrap_server: String,
    /// A client `.properties` file (Kafka's `--command-config`): TLS
    /// (`security.protocol=SSL`, `ssl.ca.location`, ...) and other client
    /// settings; `--command-property` flags override it.
    #[arg(long = "command-config", value_name = "FILE")]
    pub command_config: Option<std::path::PathBuf>,
}

/// `--bootstrap-server`, also under Kafka's older name `--broker-list`, for
/// the tools whose Kafka scripts take it (console producer, consumer perf test).
#[derive(Debug, Clone, clap::Args)]
pub struct BootstrapOrBrokerList {
    /// The server(s) to connect to: `host:port[,host:port...]` (`--broker-list`
    /// is Kafka's older name for it).
    #[arg(
        long = "bootstrap-server",
        visible_alias = "broker-list",
        value_name = "HOST:PORT"
    )]
    pub bootstrap_server: String,
}

/// A usage error with the stable `INVALID_REQUEST` code.
pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    ClientError::from(ApiError::invalid_request(msg)).into()
}

/// Parses `key=value` strings into a map; a string without `=` names itself
/// in the error.
pub fn properties(list: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for p in list {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| usage(format!("property \"{p}\" is not key=value")))?;
        out.insert(k.trim().to_string(), v.to_string());
    }
    Ok(out)
}

/// A client config from, in order of precedence (lowest first): a
/// `.properties` file, `key=value` properties, the `--bootstrap-server` flag.
pub fn client_config(
    bootstrap: Option<&str>,
    props: &[String],
    file: Option<&Path>,
) -> anyhow::Result<ClientConfig> {
    let mut config = ClientConfig::default();
    if let Some(f) = file {
        let text = std::fs::read_to_string(f).with_context(|| format!("read {}", f.display()))?;
        config.set_properties_text(&text).map_err(did_you_mean)?;
    }
    config.set_pairs(props).map_err(did_you_mean)?;
    if let Some(b) = bootstrap {
        config.set("bootstrap.servers", b)?;
    }
    if config.bootstrap_servers.is_empty() {
        return Err(usage(
            "no bootstrap server: pass --bootstrap-server or bootstrap.servers=HOST:PORT",
        ));
    }
    config.validate()?;
    Ok(config)
}

/// Every property [`ClientConfig`] accepts, for "did you mean" (the unit
/// test checks that each is known to it).
const CLIENT_PROPERTIES: &[&str] = &[
    // TLS, every client.
    "security.protocol",
    "ssl.ca.location",
    "ssl.certificate.location",
    "ssl.key.location",
    "ssl.endpoint.identification.algorithm",
    "bootstrap.servers",
    "client.id",
    "request.timeout.ms",
    "retry.backoff.ms",
    // Producer.
    "acks",
    "linger.ms",
    "batch.size",
    "buffer.memory",
    "max.request.size",
    "delivery.timeout.ms",
    "retries",
    "enable.idempotence",
    "max.in.flight.requests.per.connection",
    "partitioner",
    "partitioner.class",
    "compression.type",
    // Consumer.
    "group.id",
    "group.instance.id",
    "enable.auto.commit",
    "auto.commit.interval.ms",
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "max.poll.interval.ms",
    "partition.assignment.strategy",
    "auto.offset.reset",
    "fetch.min.bytes",
    "fetch.max.wait.ms",
    "fetch.max.bytes",
    "max.partition.fetch.bytes",
    "max.poll.records",
    "isolation.level",
];

/// Properties only a producer reads.
const PRODUCER_ONLY: &[&str] = &[
    "acks",
    "linger.ms",
    "batch.size",
    "buffer.memory",
    "max.request.size",
    "delivery.timeout.ms",
    "retries",
    "enable.idempotence",
    "max.in.flight.requests.per.connection",
    "partitioner",
    "partitioner.class",
    "compression.type",
    "key.serializer",
    "value.serializer",
];

/// Properties only a consumer reads.
const CONSUMER_ONLY: &[&str] = &[
    "group.id",
    "group.instance.id",
    "enable.auto.commit",
    "auto.commit.interval.ms",
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "max.poll.interval.ms",
    "partition.assignment.strategy",
    "auto.offset.reset",
    "fetch.min.bytes",
    "fetch.max.wait.ms",
    "fetch.max.bytes",
    "max.partition.fetch.bytes",
    "max.poll.records",
    "isolation.level",
    "key.deserializer",
    "value.deserializer",
];

/// Consumer properties that only a group member reads.
const GROUP_ONLY: &[&str] = &[
    "group.instance.id",
    "enable.auto.commit",
    "auto.commit.interval.ms",
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "max.poll.interval.ms",
    "partition.assignment.strategy",
];

/// Kafka properties [`ClientConfig`] accepts and ignores (the client's list).
const IGNORED: &[&str] = sluice_client::IGNORED_PROPERTIES;

/// An unknown property's error, with the closest known name when there is
/// one (`bootstrap.services` -> `bootstrap.servers`).
fn did_you_mean(e: ClientError) -> anyhow::Error {
    if let ClientError::Config { property, reason } = &e
        && reason == "unknown property"
        && let Some(best) = closest(property, CLIENT_PROPERTIES.iter().chain(IGNORED))
    {
        return anyhow::anyhow!("{e}; did you mean \"{best}\"?");
    }
    e.into()
}

/// The candidate nearest to `word` by edit distance, if near enough.
fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a &'a str>) -> Option<&'a str> {
    let limit = (word.len() / 4).max(2);
    candidates
        .map(|c| (strsim::levenshtein(word, c), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// The keys set by `key=value` properties and a `.properties` file, in order.
pub fn property_keys(props: &[String], file: Option<&Path>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(text) = file.and_then(|f| std::fs::read_to_string(f).ok()) {
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            if let Some((k, v)) = line.split_once('=') {
                out.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
    }
    for p in props {
        if let Some((k, v)) = p.split_once('=') {
            out.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    out
}

/// Which client a tool runs, for [`ignored_properties`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Producer,
    /// A consumer; `group` when it joins a consumer group.
    Consumer {
        group: bool,
    },
}

/// Why each given property has no effect on this tool's client (Kafka warns
/// "supplied but isn't a known config" for the first kind).
pub fn ignored_properties(role: Role, keys: &[(String, String)]) -> Vec<String> {
    let mut seen = BTreeMap::new();
    for (k, _) in keys {
        let k = k.as_str();
        let why = if IGNORED.contains(&k) {
            format!("\"{k}\" is accepted for compatibility with Kafka and ignored by Sluice")
        } else if role == Role::Producer && CONSUMER_ONLY.contains(&k) {
            format!("\"{k}\" is a consumer property; the producer ignores it")
        } else if role != Role::Producer && PRODUCER_ONLY.contains(&k) {
            format!("\"{k}\" is a producer property; the consumer ignores it")
        } else if role == (Role::Consumer { group: false }) && GROUP_ONLY.contains(&k) {
            format!(
                "\"{k}\" only applies to a consumer group member; without a group \
                 (--group or group.id) it is ignored"
            )
        } else {
            continue;
        };
        seen.entry(k.to_string()).or_insert(why);
    }
    seen.into_values().collect()
}

/// Prints [`ignored_properties`] to stderr.
pub fn warn_ignored(role: Role, keys: &[(String, String)]) {
    for w in ignored_properties(role, keys) {
        eprintln!("Warning: {w}.");
    }
}

/// A consumer tool's group: `--group`, or `group.id` from
/// `--consumer-property` or `--consumer.config`, which must agree (as in
/// Kafka's console consumer).
pub fn consumer_group(
    flag: Option<&str>,
    props: &[String],
    file: Option<&Path>,
) -> anyhow::Result<Option<String>> {
    let mut found: Vec<(&str, String)> = Vec::new();
    if let Some(g) = flag.filter(|g| !g.is_empty()) {
        found.push(("--group", g.to_string()));
    }
    let group_id = |keys: Vec<(String, String)>| {
        keys.into_iter()
            .rev()
            .find(|(k, _)| k == "group.id")
            .map(|(_, v)| v)
            .filter(|v| !v.is_empty())
    };
    if let Some(g) = group_id(property_keys(&[], file)) {
        found.push(("--consumer.config", g));
    }
    if let Some(g) = group_id(property_keys(props, None)) {
        found.push(("--consumer-property", g));
    }
    let mut ids: Vec<&str> = found.iter().map(|(_, g)| g.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.len() > 1 {
        let detail = found
            .iter()
            .map(|(from, g)| format!("{from}: '{g}'"))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(usage(format!(
            "the group ids given in different places (--group, group.id via \
             --consumer-property, group.id in --consumer.config) do not match: {detail}"
        )));
    }
    Ok(found.into_iter().next().map(|(_, g)| g))
}

/// A producer's `UNKNOWN_TOPIC_OR_PARTITION`, with the command that creates
/// the topic (Kafka brokers create it on first use by default; Sluice's do
/// only with `auto.create.topics.enable=true`).
pub fn hint_unknown_topic(e: anyhow::Error, bootstrap: &str, topic: &str) -> anyhow::Error {
    if !e.to_string().starts_with("UNKNOWN_TOPIC_OR_PARTITION") {
        return e;
    }
    anyhow::anyhow!(
        "{e}\nCreate it first: sluice topics --bootstrap-server {bootstrap} --create --topic {topic} \
         [--partitions N --replication-factor N]\n(Sluice brokers create topics on first use only \
         with auto.create.topics.enable=true, which is off by default.)"
    )
}

pub use sluice_types::now_ms;

/// Kafka's `yyyy-MM-dd HH:mm:ss:SSS`, in UTC.
pub fn format_time_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}:{millis:03}",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    )
}

/// A progress bar on stderr, only when stderr is a terminal.
pub fn progress_bar(len: u64, unit: &str) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let pb = ProgressBar::new(len);
    let template = format!(
        "{{elapsed_precise}} [{{wide_bar}}] {{pos}}/{{len}} {unit} ({{per_sec}}, eta {{eta}})"
    );
    if let Ok(style) = ProgressStyle::with_template(&template) {
        pb.set_style(style.progress_chars("=> "));
    }
    Some(pb)
}

/// Awaits delivery futures concurrently on a task of its own and calls
/// `on_done(sent_at, result)` as each completes, so the sending loop never
/// waits for acknowledgements.
pub struct DeliveryTracker {
    tx: tokio::sync::mpsc::UnboundedSender<(Instant, DeliveryFuture)>,
    task: tokio::task::JoinHandle<()>,
}

impl DeliveryTracker {
    pub fn spawn<F>(mut on_done: F) -> Self
    where
        F: FnMut(Instant, Result<RecordMetadata, ClientError>) + Send + 'static,
    {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, DeliveryFuture)>();
        let task = tokio::spawn(async move {
            let mut pending = FuturesUnordered::new();
            let mut open = true;
            loop {
                tokio::select! {
                    msg = rx.recv(), if open => match msg {
                        Some((at, fut)) => pending.push(async move { (at, fut.await) }),
                        None => open = false,
                    },
                    Some((at, result)) = pending.next(), if !pending.is_empty() => {
                        on_done(at, result);
                    }
                    else => break,
                }
            }
        });
        DeliveryTracker { tx, task }
    }

    /// Tracks one delivery sent at `sent_at`.
    pub fn track(&self, sent_at: Instant, fut: DeliveryFuture) {
        // The task only stops after `finish` drops the sender.
        let _ = self.tx.send((sent_at, fut));
    }

    /// Waits until every tracked delivery has completed.
    pub async fn finish(self) {
        drop(self.tx);
        let _ = self.task.await;
    }
}

/// The longest time `poll` may block in one call, so loops stay responsive.
pub const POLL_SLICE: Duration = Duration::from_millis(1000);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_kafka_time() {
        assert_eq!(format_time_ms(0), "1970-01-01 00:00:00:000");
        assert_eq!(format_time_ms(1_700_000_000_123), "2023-11-14 22:13:20:123");
    }

    #[test]
    fn client_property_lists_match_the_client() {
        for k in CLIENT_PROPERTIES.iter().chain(IGNORED) {
            let mut c = ClientConfig::default();
            if let Err(ClientError::Config { reason, .. }) = c.set(k, "x") {
                assert_ne!(reason, "unknown property", "{k}");
            }
        }
        for k in PRODUCER_ONLY.iter().chain(CONSUMER_ONLY).chain(GROUP_ONLY) {
            assert!(CLIENT_PROPERTIES.contains(k) || IGNORED.contains(k), "{k}");
        }
        for k in GROUP_ONLY {
            assert!(CONSUMER_ONLY.contains(k), "{k}");
        }
    }

    #[test]
    fn unknown_property_suggests_the_near_one() {
        let e = client_config(
            None,
            &["bootstrap.services=localhost:9092".into(), "acks=1".into()],
            None,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "INVALID_CONFIG: property \"bootstrap.services\": unknown property; did you mean \"bootstrap.servers\"?"
        );
        let e = client_config(Some("h:1"), &["zzz=1".into()], None).unwrap_err();
        assert!(!e.to_string().contains("did you mean"), "{e}");
    }

    #[test]
    fn ignored_properties_are_named() {
        let keys = |l: &[&str]| -> Vec<(String, String)> {
            l.iter().map(|k| (k.to_string(), "1".to_string())).collect()
        };
        let w = ignored_properties(
            Role::Consumer { group: false },
            &keys(&[
                "group.id",
                "acks",
                "enable.auto.commit",
                "security.protocol",
                "fetch.min.bytes",
            ]),
        );
        // security.protocol is a setting of every client now (TLS).
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w.iter()
                .any(|w| w.contains("\"acks\" is a producer property"))
        );
        assert!(
            w.iter()
                .any(|w| w.contains("\"enable.auto.commit\" only applies"))
        );
        assert!(
            ignored_properties(
                Role::Consumer { group: true },
                &keys(&["enable.auto.commit"])
            )
            .is_empty()
        );
        let w = ignored_properties(Role::Producer, &keys(&["group.id", "acks"]));
        assert_eq!(
            w,
            vec!["\"group.id\" is a consumer property; the producer ignores it"]
        );
    }

    #[test]
    fn group_comes_from_any_of_three_places() {
        let props = |l: &[&str]| -> Vec<String> { l.iter().map(|s| s.to_string()).collect() };
        assert_eq!(
            consumer_group(None, &props(&["group.id=g1"]), None)
                .unwrap()
                .as_deref(),
            Some("g1")
        );
        assert_eq!(
            consumer_group(Some("g1"), &props(&["group.id=g1"]), None)
                .unwrap()
                .as_deref(),
            Some("g1")
        );
        assert_eq!(
            consumer_group(None, &props(&["acks=1"]), None).unwrap(),
            None
        );
        assert_eq!(
            consumer_group(None, &props(&["group.id="]), None).unwrap(),
            None
        );
        let e = consumer_group(Some("a"), &props(&["group.id=b"]), None).unwrap_err();
        assert!(
            e.to_string()
                .contains("--group: 'a', --consumer-property: 'b'"),
            "{e}"
        );
        let dir = std::env::temp_dir().join(format!("sluice-cli-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("c.properties");
        std::fs::write(&f, "# c\ngroup.id = fromfile\n").unwrap();
        assert_eq!(
            consumer_group(None, &[], Some(&f)).unwrap().as_deref(),
            Some("fromfile")
        );
        assert!(consumer_group(None, &props(&["group.id=x"]), Some(&f)).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn parses_properties() {
        let p = properties(&["a=1".into(), "key.separator==".into()]).unwrap();
        assert_eq!(p["a"], "1");
        assert_eq!(p["key.separator"], "=");
        let e = properties(&["oops".into()]).unwrap_err();
        assert!(e.to_string().starts_with("INVALID_REQUEST: "), "{e}");
    }
}
