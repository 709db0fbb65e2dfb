//! Client quotas, Kafka's way (KIP-13, KIP-124, KIP-219): produce and fetch
//! byte rates and a request-time share per user and per client id. A
//! client over its quota is never refused and nothing is dropped: its
//! answer carries `throttle_time_ms` and is held (gRPC) or its connection
//! muted (Kafka's protocol) for that long, which brings its rate down to
//! the quota.
//!
//! Rates are measured over 11 one-second samples (Kafka's
//! `quota.window.num` x `quota.window.size.seconds`); the throttle is the
//! time the window would need for the rate to fall back to the quota:
//! `(rate - quota) / quota * window`.
//!
//! Which quota applies, most specific first (Kafka's order, without the
//! user-and-client pairs): the user's, the client id's, the default
//! user's, the default client id's. The one found owns the budget: every
//! client of a user with a user quota shares it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

/// Kafka's name for "every user (client id) without its own quota".
pub const DEFAULT_ENTITY: &str = "<default>";

const SAMPLES: usize = 11;
const SAMPLE: Duration = Duration::from_secs(1);
/// The longest a single answer is held (Kafka caps at the window).
const MAX_THROTTLE: Duration = Duration::from_secs(11);
/// Sensors kept before idle ones are dropped.
const MAX_SENSORS: usize = 10_000;

/// The methods whose answers mostly wait (long polls, rebalances, acks=all
/// replication, byte-quota holds): request time is not charged for them.
pub const WAITING_METHODS: &[&str] = &[
    "/Fetch",
    "/ReplicaFetch",
    "/Produce",
    "/JoinGroup",
    "/SyncGroup",
    "/ConsumerGroupHeartbeat",
];

/// What a quota limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuotaKind {
    /// Bytes appended per second (`producer_byte_rate`).
    Produce,
    /// Bytes fetched per second (`consumer_byte_rate`).
    Fetch,
    /// Percent of one request thread (`request_percentage`): handling time.
    Request,
}

impl QuotaKind {
    pub fn key(self) -> &'static str {
        match self {
            QuotaKind::Produce => "producer_byte_rate",
            QuotaKind::Fetch => "consumer_byte_rate",
            QuotaKind::Request => "request_percentage",
        }
    }

    pub fn from_key(key: &str) -> Option<Self> {
        [QuotaKind::Produce, QuotaKind::Fetch, QuotaKind::Request]
            .into_iter()
            .find(|k| k.key() == key)
    }
}

/// One entity's limits, as stored (`security/quotas/<users|clients>/<name>`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub producer_byte_rate: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consumer_byte_rate: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_percentage: Option<f64>,
}

impl Limits {
    pub fn get(&self, kind: QuotaKind) -> Option<f64> {
        match kind {
            QuotaKind::Produce => self.producer_byte_rate,
            QuotaKind::Fetch => self.consumer_byte_rate,
            QuotaKind::Request => self.request_percentage,
        }
    }

    pub fn set(&mut self, kind: QuotaKind, value: Option<f64>) {
        match kind {
            QuotaKind::Produce => self.producer_byte_rate = value,
            QuotaKind::Fetch => self.consumer_byte_rate = value,
            QuotaKind::Request => self.request_percentage = value,
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == Limits::default()
    }
}

/// Every quota set, by user and by client id.
#[derive(Debug, Clone, Default)]
pub struct QuotaConfigs {
    pub users: HashMap<String, Limits>,
    pub clients: HashMap<String, Limits>,
}

impl QuotaConfigs {
    /// The quota that applies and who owns its budget.
    fn applies(&self, kind: QuotaKind, user: &str, client: &str) -> Option<(String, f64)> {
        let find = |map: &HashMap<String, Limits>, name: &str| map.get(name)?.get(kind);
        if let Some(q) = find(&self.users, user) {
            return Some((format!("user:{user}"), q));
        }
        if let Some(q) = find(&self.clients, client) {
            return Some((format!("client:{client}"), q));
        }
        if let Some(q) = find(&self.users, DEFAULT_ENTITY) {
            return Some((format!("user:{user}"), q));
        }
        find(&self.clients, DEFAULT_ENTITY).map(|q| (format!("client:{client}"), q))
    }
}

/// A rate over the last [`SAMPLES`] seconds.
#[derive(Debug)]
struct Sensor {
    /// (sample start, amount), oldest first.
    samples: Vec<(Instant, f64)>,
}

impl Sensor {
    fn new() -> Self {
        Sensor {
            samples: Vec::with_capacity(SAMPLES),
        }
    }

    /// Whether it saw anything within the window.
    fn active(&self, now: Instant) -> bool {
        self.samples
            .last()
            .is_some_and(|(start, _)| now.duration_since(*start) < SAMPLE * SAMPLES as u32)
    }

    /// Adds `amount` now; returns the rate (per second) over the window.
    fn record(&mut self, now: Instant, amount: f64) -> (f64, Duration) {
        match self.samples.last_mut() {
            Some((start, total)) if now.duration_since(*start) < SAMPLE => *total += amount,
            _ => self.samples.push((now, amount)),
        }
        let horizon = SAMPLE * SAMPLES as u32;
        self.samples
            .retain(|(start, _)| now.duration_since(*start) < horizon);
        let first = self.samples.first().map_or(now, |(s, _)| *s);
        // At least one sample's length: a burst in the first instant is not
        // an infinite rate.
        let window = now.duration_since(first).max(SAMPLE);
        let total: f64 = self.samples.iter().map(|(_, a)| a).sum();
        (total / window.as_secs_f64(), window)
    }
}

/// The process's quotas and the rates measured against them (cheap to
/// clone).
#[derive(Clone)]
pub struct Quotas {
    inner: Arc<Inner>,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            inner: Arc::new(Inner {
                empty: AtomicBool::new(true),
                configs: RwLock::default(),
                sensors: Mutex::default(),
            }),
        }
    }
}

struct Inner {
    empty: AtomicBool,
    configs: RwLock<QuotaConfigs>,
    sensors: Mutex<HashMap<(QuotaKind, String), Sensor>>,
}

impl Quotas {
    pub fn set_configs(&self, configs: QuotaConfigs) {
        self.inner.empty.store(
            configs.users.is_empty() && configs.clients.is_empty(),
            Ordering::Relaxed,
        );
        *self.inner.configs.write() = configs;
    }

    /// Whether no quota is set (the common case: nothing to measure).
    pub fn is_empty(&self) -> bool {
        self.inner.empty.load(Ordering::Relaxed)
    }

    pub fn configs(&self) -> QuotaConfigs {
        self.inner.configs.read().clone()
    }

    /// Records `amount` (bytes, or seconds of handling for
    /// [`QuotaKind::Request`]) for `user`'s `client`; returns how long to
    /// hold the answer (zero when within the quota or with none).
    pub fn record(&self, kind: QuotaKind, user: &str, client: &str, amount: f64) -> Duration {
        let Some((owner, quota)) = self.inner.configs.read().applies(kind, user, client) else {
            return Duration::ZERO;
        };
        // request_percentage is percent of one thread: seconds per second.
        let quota = match kind {
            QuotaKind::Request => quota / 100.0,
            _ => quota,
        };
        let now = Instant::now();
        let (rate, window) = {
            let mut sensors = self.inner.sensors.lock();
            // Forget entities idle for a whole window (client ids come and
            // go; each would otherwise keep a sensor forever).
            if sensors.len() > MAX_SENSORS {
                sensors.retain(|_, s| s.active(now));
            }
            sensors
                .entry((kind, owner))
                .or_insert_with(Sensor::new)
                .record(now, amount)
        };
        // Per user, not per client id: client ids are whatever clients send,
        // and every new one would be a new series.
        let labels = [("user", user.to_string()), ("type", kind.key().to_string())];
        metrics::counter!("sluice_quota_amount_total", &labels).increment(amount as u64);
        if quota <= 0.0 || rate <= quota {
            return Duration::ZERO;
        }
        // In f64 and clamped before it becomes a Duration: a tiny quota
        // makes the ratio huge (Duration::mul_f64 would panic).
        let secs = window.as_secs_f64() * (rate - quota) / quota;
        let throttle = Duration::from_secs_f64(secs.clamp(0.0, MAX_THROTTLE.as_secs_f64()));
        metrics::counter!("sluice_quota_throttle_milliseconds_total", &labels)
            .increment(throttle.as_millis() as u64);
        throttle
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quotas(user: Option<f64>, client: Option<f64>, default_user: Option<f64>) -> Quotas {
        let q = Quotas::default();
        let mut c = QuotaConfigs::default();
        let limits = |v: Option<f64>| Limits {
            producer_byte_rate: v,
            ..Default::default()
        };
        if user.is_some() {
            c.users.insert("alice".into(), limits(user));
        }
        if client.is_some() {
            c.clients.insert("app".into(), limits(client));
        }
        if default_user.is_some() {
            c.users.insert(DEFAULT_ENTITY.into(), limits(default_user));
        }
        q.set_configs(c);
        q
    }

    #[test]
    fn the_most_specific_quota_applies_and_owns_the_budget() {
        let q = quotas(Some(100.0), Some(1e9), Some(1e9));
        // Alice's own quota wins over her client's.
        assert!(q.record(QuotaKind::Produce, "alice", "app", 1000.0) > Duration::ZERO);
        // Bob's client id has a generous quota: not throttled.
        assert_eq!(
            q.record(QuotaKind::Produce, "bob", "app", 1000.0),
            Duration::ZERO
        );
        // No quota for fetches at all.
        assert_eq!(
            q.record(QuotaKind::Fetch, "alice", "app", 1e12),
            Duration::ZERO
        );
        // A default user quota gives each user a budget of their own.
        let q = quotas(None, None, Some(1000.0));
        assert_eq!(
            q.record(QuotaKind::Produce, "a", "x", 900.0),
            Duration::ZERO
        );
        assert_eq!(
            q.record(QuotaKind::Produce, "b", "x", 900.0),
            Duration::ZERO
        );
        assert!(q.record(QuotaKind::Produce, "a", "x", 900.0) > Duration::ZERO);
    }

    #[test]
    fn the_throttle_is_the_time_the_window_needs_to_come_back_to_the_quota() {
        let mut s = Sensor::new();
        let t0 = Instant::now();
        let (rate, window) = s.record(t0, 2000.0);
        assert_eq!(window, SAMPLE);
        assert!((rate - 2000.0).abs() < 1e-9);
        // Two seconds later, 1000 more: 3000 over 2 s.
        let (rate, window) = s.record(t0 + Duration::from_secs(2), 1000.0);
        assert_eq!(window, Duration::from_secs(2));
        assert!((rate - 1500.0).abs() < 1e-9);
        // Samples older than the window are forgotten.
        let (rate, _) = s.record(t0 + Duration::from_secs(30), 10.0);
        assert!((rate - 10.0).abs() < 1e-9);
        // (rate - quota) / quota * window, capped.
        let q = quotas(Some(1000.0), None, None);
        let held = q.record(QuotaKind::Produce, "alice", "c", 3000.0);
        assert_eq!(held, Duration::from_secs(2));
        let held = q.record(QuotaKind::Produce, "alice", "c", 1e9);
        assert_eq!(held, MAX_THROTTLE);
        // A tiny quota: clamped, no overflow.
        let q = quotas(Some(1e-20), None, None);
        assert_eq!(
            q.record(QuotaKind::Produce, "alice", "c", 1e12),
            MAX_THROTTLE
        );
    }
}
