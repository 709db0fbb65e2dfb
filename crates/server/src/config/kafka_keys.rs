//! Kafka's configuration keys in Sluice: [`KAFKA_KEYS`] says what each Kafka
//! key a service does not have becomes (an alias, a unit, a warning, an error),
//! and `kafka_compat` applies it to one source's settings.

use serde_json::Value;

use super::{Raw, Setting};

/// What a Kafka key that a service does not have becomes (see [`KAFKA_KEYS`]).
#[derive(Debug, Clone, Copy)]
pub enum KafkaKey {
    /// Kafka's other name for one of Sluice's keys: read as that key. Set
    /// together with it to another value in one file, it is an error.
    Alias(&'static str),
    /// One of Sluice's keys in a coarser unit: the value times the factor.
    /// As in Kafka the finer unit wins (`log.retention.ms` over
    /// `log.retention.minutes` over `log.retention.hours`).
    Scaled(&'static str, i64),
    /// Where Kafka keeps its cluster metadata (ZooKeeper, a KRaft quorum).
    /// Sluice keeps it in etcd: refused unless `etcd.endpoints` is set too,
    /// then ignored with a warning.
    MetadataQuorum,
    /// Sluice behaves as Kafka does with this value (compared ignoring case):
    /// accepted; any other value is refused, for the reason given.
    Fixed(&'static str, &'static str),
    /// Not used by this service, for the reason given: a warning in a
    /// properties file (usually a copy of Kafka's, full of such keys, and
    /// Kafka itself only warns about keys it does not use); an error in YAML,
    /// Sluice's own format, and in a flag.
    Unused(&'static str),
    /// Refused everywhere: ignoring it would change what was asked for.
    Refused(&'static str),
}

const THREADS: &str =
    "Sluice runs on an async runtime with a thread per core and has no thread pools to size";
const SOCKET_BUFFERS: &str = "Sluice leaves socket buffer sizes to the operating system";
const NO_ZOOKEEPER: &str =
    "Sluice has no ZooKeeper; cluster metadata lives in etcd (etcd.endpoints)";
const NO_KRAFT: &str =
    "Sluice has no KRaft quorum; cluster metadata lives in etcd (etcd.endpoints)";
const ROLES: &str = "Sluice runs the broker, controller and coordinator as separate services \
     (sluice-broker, sluice-controller, sluice-coordinator) or all in one (`sluice standalone`)";
const NO_TRANSACTIONS: &str =
    "Sluice has no transactions yet (a transactional.id is refused), so no transaction state log";
const CONTROLLER: &str = "in Sluice this is a setting of sluice-controller, which creates \
     topics and elects leaders: set it in the controller's config (deploy/config/controller.yaml)";
const COORDINATOR: &str = "in Sluice this is a setting of sluice-coordinator, which runs the \
     consumer groups: set it in the coordinator's config (deploy/config/coordinator.yaml)";
const BROKER: &str = "in Sluice this is a setting of sluice-broker (deploy/config/broker.yaml)";
const INTERNALS: &str =
    "a tuning knob of Kafka's implementation that Sluice has no counterpart for";
const SHUTDOWN: &str = "a Sluice broker's controlled shutdown waits up to \
     controlled.shutdown.timeout.ms instead of retrying";
const IDS: &str = "Sluice does not generate broker ids: set broker.id";
const METRICS: &str = "Sluice serves Prometheus metrics at --metrics-listen ADDR";
const ONE_FORMAT: &str =
    "Sluice stores RecordBatch v2 only and has one inter-broker protocol (gRPC)";
const NO_SASL: &str = "Sluice's SASL users live in the cluster (sluice users, or \
     kafka-configs.sh --entity-type users), not in JAAS files; a SASL_SSL:// or SASL_PLAINTEXT:// \
     listener offers sasl.enabled.mechanisms";
const PEM_ONLY: &str = "Sluice reads PEM files, not Java keystores: set ssl.certificate.location, \
     ssl.key.location and ssl.ca.location (scripts/gen-certs.sh makes them; `openssl pkcs12` \
     converts a keystore)";
const OLD_LISTENER: &str = "Kafka's pre-listeners keys are not read: write \
     listeners=PLAINTEXT://HOST:PORT (and advertised.listeners=PLAINTEXT://HOST:PORT for the \
     address clients are told)";

/// Kafka's keys that a Sluice service may not have, and what each becomes
/// there (a key the service has is always simply used). A pattern ending in
/// `*` covers every key with that prefix; an exact entry wins over a prefix.
/// Keys in neither are unknown: an error naming the key, with the closest
/// key of the service when one is a likely typo.
pub const KAFKA_KEYS: &[(&str, KafkaKey)] = {
    use KafkaKey::*;
    &[
        // Kafka's names and units for Sluice's keys.
        ("log.dir", Alias("log.dirs")),
        ("node.id", Alias("broker.id")),
        ("log.retention.minutes", Scaled("log.retention.ms", 60_000)),
        ("log.retention.hours", Scaled("log.retention.ms", 3_600_000)),
        ("log.roll.hours", Scaled("log.roll.ms", 3_600_000)),
        // Where Kafka keeps cluster metadata.
        ("zookeeper.connect", MetadataQuorum),
        ("controller.quorum.voters", MetadataQuorum),
        ("controller.quorum.bootstrap.servers", MetadataQuorum),
        ("zookeeper.*", Unused(NO_ZOOKEEPER)),
        ("controller.quorum.*", Unused(NO_KRAFT)),
        ("metadata.log.*", Unused(NO_KRAFT)),
        ("process.roles", Unused(ROLES)),
        ("controller.listener.names", Unused(ROLES)),
        // Settings that belong to another Sluice service.
        ("num.partitions", Unused(CONTROLLER)),
        ("default.replication.factor", Unused(CONTROLLER)),
        ("offsets.topic.num.partitions", Unused(CONTROLLER)),
        ("offsets.topic.replication.factor", Unused(CONTROLLER)),
        ("offsets.topic.segment.bytes", Unused(CONTROLLER)),
        ("auto.leader.rebalance.enable", Unused(CONTROLLER)),
        (
            "leader.imbalance.check.interval.seconds",
            Unused(CONTROLLER),
        ),
        ("leader.imbalance.per.broker.percentage", Unused(CONTROLLER)),
        ("group.initial.rebalance.delay.ms", Unused(COORDINATOR)),
        ("group.min.session.timeout.ms", Unused(COORDINATOR)),
        ("group.max.session.timeout.ms", Unused(COORDINATOR)),
        ("offsets.commit.timeout.ms", Unused(COORDINATOR)),
        ("broker.id", Unused(BROKER)),
        ("broker.rack", Unused(BROKER)),
        ("advertised.listeners", Unused(BROKER)),
        ("log.dirs", Unused(BROKER)),
        ("log.segment.bytes", Unused(BROKER)),
        ("log.retention.ms", Unused(BROKER)),
        ("log.retention.bytes", Unused(BROKER)),
        ("log.retention.check.interval.ms", Unused(BROKER)),
        ("log.roll.ms", Unused(BROKER)),
        ("log.flush.interval.messages", Unused(BROKER)),
        ("log.flush.interval.ms", Unused(BROKER)),
        ("message.max.bytes", Unused(BROKER)),
        ("min.insync.replicas", Unused(BROKER)),
        ("auto.create.topics.enable", Unused(BROKER)),
        ("socket.request.max.bytes", Unused(BROKER)),
        ("replica.lag.time.max.ms", Unused(BROKER)),
        // Kafka's implementation.
        ("num.network.threads", Unused(THREADS)),
        ("num.io.threads", Unused(THREADS)),
        ("background.threads", Unused(THREADS)),
        ("num.recovery.threads.per.data.dir", Unused(THREADS)),
        ("queued.max.requests", Unused(THREADS)),
        (
            "num.replica.fetchers",
            Unused(
                "a Sluice follower fetches with one ReplicaFetch per leader broker, carrying all its partitions",
            ),
        ),
        ("socket.send.buffer.bytes", Unused(SOCKET_BUFFERS)),
        ("socket.receive.buffer.bytes", Unused(SOCKET_BUFFERS)),
        (
            "replica.socket.receive.buffer.bytes",
            Unused(SOCKET_BUFFERS),
        ),
        ("replica.socket.timeout.ms", Unused(INTERNALS)),
        ("replica.fetch.min.bytes", Unused(INTERNALS)),
        ("replica.fetch.backoff.ms", Unused(INTERNALS)),
        ("log.cleaner.threads", Unused(INTERNALS)),
        ("log.cleaner.dedupe.buffer.size", Unused(INTERNALS)),
        ("log.cleaner.io.*", Unused(INTERNALS)),
        ("log.segment.delete.delay.ms", Unused(INTERNALS)),
        ("log.roll.jitter.*", Unused(INTERNALS)),
        ("log.index.size.max.bytes", Unused(INTERNALS)),
        ("log.flush.scheduler.interval.ms", Unused(INTERNALS)),
        ("log.preallocate", Unused(INTERNALS)),
        ("max.connections", Unused(INTERNALS)),
        ("max.connections.per.ip", Unused(INTERNALS)),
        ("connections.max.idle.ms", Unused(INTERNALS)),
        ("controlled.shutdown.max.retries", Unused(SHUTDOWN)),
        ("controlled.shutdown.retry.backoff.ms", Unused(SHUTDOWN)),
        ("broker.id.generation.enable", Unused(IDS)),
        ("reserved.broker.max.id", Unused(IDS)),
        ("metric.reporters", Unused(METRICS)),
        ("metrics.*", Unused(METRICS)),
        ("kafka.metrics.*", Unused(METRICS)),
        ("log.message.format.version", Unused(ONE_FORMAT)),
        ("inter.broker.protocol.version", Unused(ONE_FORMAT)),
        ("transaction.*", Unused(NO_TRANSACTIONS)),
        ("transactional.id.expiration.ms", Unused(NO_TRANSACTIONS)),
        (
            "listener.security.protocol.map",
            Unused(
                "Sluice serves one listener; its scheme (PLAINTEXT:// or SSL://) is its protocol",
            ),
        ),
        (
            "inter.broker.listener.name",
            Unused("Sluice brokers reach each other at their advertised.listeners"),
        ),
        // What Sluice does anyway.
        (
            "delete.topic.enable",
            Fixed("true", "Sluice topics can always be deleted"),
        ),
        (
            "unclean.leader.election.enable",
            Fixed("false", "Sluice never elects a replica that is out of sync"),
        ),
        (
            "log.cleaner.enable",
            Fixed(
                "true",
                "Sluice always compacts topics whose cleanup.policy includes compact",
            ),
        ),
        (
            "log.cleanup.policy",
            Fixed(
                "delete",
                "Sluice's default is delete; give a topic cleanup.policy=compact instead",
            ),
        ),
        (
            "compression.type",
            Fixed(
                "producer",
                "a Sluice broker stores batches as the producer compressed them",
            ),
        ),
        (
            "log.message.timestamp.type",
            Fixed(
                "CreateTime",
                "a Sluice broker keeps the producer's timestamps",
            ),
        ),
        // Keystores Sluice does not read, security it does not have yet, and
        // Kafka's old listener keys.
        ("ssl.*", Refused(PEM_ONLY)),
        ("sasl.*", Refused(NO_SASL)),
        (
            "listener.name.*",
            Refused("Sluice has one listener per service: its ssl.* keys are the listener's"),
        ),
        ("host.name", Refused(OLD_LISTENER)),
        ("port", Refused(OLD_LISTENER)),
        ("advertised.host.name", Refused(OLD_LISTENER)),
        ("advertised.port", Refused(OLD_LISTENER)),
    ]
};

/// What [`KAFKA_KEYS`] says about `key`: its exact entry, else the longest
/// prefix entry that covers it.
pub fn kafka_key(key: &str) -> Option<KafkaKey> {
    KAFKA_KEYS
        .iter()
        .find(|(k, _)| *k == key)
        .or_else(|| {
            KAFKA_KEYS
                .iter()
                .filter(|(k, _)| k.strip_suffix('*').is_some_and(|p| key.starts_with(p)))
                .max_by_key(|(k, _)| k.len())
        })
        .map(|(_, what)| *what)
}

/// Applies [`KAFKA_KEYS`] to one source's settings: translates Kafka's names,
/// drops what this service ignores (a warning when `lenient`, else an error),
/// refuses what it cannot do. Every error is collected, so a file's unknown
/// keys are named at once.
pub(super) fn kafka_compat(
    settings: Vec<Setting>,
    known: &[String],
    lenient: bool,
    etcd_elsewhere: bool,
    warnings: &mut Vec<String>,
) -> Result<Vec<Setting>, Vec<String>> {
    let etcd_here = settings.iter().any(|s| s.key == "etcd.endpoints");
    let mut errors = Vec::new();
    let mut out: Vec<Setting> = Vec::new();
    // Coarser units of a key: (factor, setting), applied at the end.
    let mut scaled: Vec<(i64, Setting)> = Vec::new();
    for s in settings {
        if known.contains(&s.key) {
            out.push(s);
            continue;
        }
        let mut what = kafka_key(&s.key);
        // An alias or unit of a key this service does not have: what that key is.
        if let Some(KafkaKey::Alias(to) | KafkaKey::Scaled(to, _)) = what
            && !known.iter().any(|k| k == to)
        {
            what = Some(kafka_key(to).unwrap_or(KafkaKey::Unused(
                "a Kafka setting this service does not have",
            )));
        }
        let (at, key) = (s.at.clone(), s.key.clone());
        let ignored = |why: &str| -> Result<String, String> {
            if lenient {
                Ok(format!("{at}: `{key}` ignored: {why}"))
            } else {
                Err(format!("{at}: `{key}`: {why}"))
            }
        };
        // Ok(Some(warning)), Ok(None) when fine, Err(error).
        let outcome: Result<Option<String>, String> = match what {
            Some(KafkaKey::Alias(to)) => {
                out.push(Setting {
                    written: Some(key.clone()),
                    key: to.to_string(),
                    ..s
                });
                Ok(None)
            }
            Some(KafkaKey::Scaled(to, factor)) => {
                let shown = s.value.shown();
                match shown.trim().parse::<i64>() {
                    // Kafka: a negative time (-1) means "forever".
                    Ok(n) => match n.checked_mul(factor).map(|ms| ms.max(-1)) {
                        Some(ms) => {
                            scaled.push((
                                factor,
                                Setting {
                                    written: Some(key.clone()),
                                    key: to.to_string(),
                                    value: Raw::Value(Value::from(ms)),
                                    at: at.clone(),
                                },
                            ));
                            Ok(None)
                        }
                        None => Err(format!("{at}: `{key}`: {n} is too large")),
                    },
                    Err(_) => Err(format!("{at}: `{key}`: {shown:?} is not a whole number")),
                }
            }
            Some(KafkaKey::MetadataQuorum) if known.iter().any(|k| k == "etcd.endpoints") => {
                if etcd_here || etcd_elsewhere {
                    Ok(Some(format!(
                        "{at}: `{key}` ignored: Sluice has no ZooKeeper (nor KRaft quorum); \
                         this service finds the cluster through etcd.endpoints"
                    )))
                } else {
                    Err(format!(
                        "{at}: `{key}`: Sluice keeps cluster metadata in etcd, not in ZooKeeper or a \
                         KRaft quorum: replace it with etcd.endpoints=http://HOST:2379,... (your \
                         etcd's client URLs); services given the same etcd.endpoints and \
                         cluster.name form one cluster (cluster.name plays the part of a ZooKeeper \
                         chroot)"
                    ))
                }
            }
            Some(KafkaKey::MetadataQuorum) => ignored(NO_ZOOKEEPER).map(Some),
            Some(KafkaKey::Fixed(value, why)) => {
                let shown = s.value.shown();
                if shown.trim().eq_ignore_ascii_case(value) {
                    Ok(None)
                } else {
                    Err(format!(
                        "{at}: `{key}={shown}`: {why} (only {value} is possible)"
                    ))
                }
            }
            Some(KafkaKey::Unused(why)) => ignored(why).map(Some),
            Some(KafkaKey::Refused(why)) => Err(format!("{at}: `{key}`: {why}")),
            None => {
                let hint = known
                    .iter()
                    .map(|k| (strsim::levenshtein(k, &key), k))
                    .filter(|(d, _)| *d <= 2)
                    .min()
                    .map(|(_, k)| format!("; did you mean `{k}`?"))
                    .unwrap_or_default();
                Err(format!("{at}: unknown key `{key}`{hint}"))
            }
        };
        match outcome {
            Ok(Some(w)) => warnings.push(w),
            Ok(None) => {}
            Err(e) => errors.push(e),
        }
    }
    // A unit only when the key itself is not set; the finest unit wins.
    scaled.sort_by_key(|(factor, _)| *factor);
    for (_, s) in scaled {
        if !out.iter().any(|o| o.key == s.key) {
            out.push(s);
        }
    }
    // Two names for one key in one source must agree.
    let mut seen: Vec<Setting> = Vec::new();
    for s in out {
        match seen.iter().find(|o| o.key == s.key) {
            Some(o) if o.value.shown() == s.value.shown() => {}
            Some(o) => {
                let name = |x: &Setting| x.written.clone().unwrap_or_else(|| x.key.clone());
                let kafka = match (&o.written, &s.written) {
                    (Some(alias), None) | (None, Some(alias)) => {
                        format!(" (Kafka would use `{}` and ignore `{alias}`)", s.key)
                    }
                    _ => String::new(),
                };
                errors.push(format!(
                    "`{}={}` ({}) and `{}={}` ({}) both set `{}`, differently{kafka}: keep one",
                    name(o),
                    o.value.shown(),
                    o.at,
                    name(&s),
                    s.value.shown(),
                    s.at,
                    s.key,
                ));
            }
            None => seen.push(s),
        }
    }
    if errors.is_empty() {
        Ok(seen)
    } else {
        Err(errors)
    }
}
