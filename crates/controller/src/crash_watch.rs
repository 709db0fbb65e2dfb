//! Crash detection: the registration lease of a broker, coordinator or active
//! controller whose process is gone is revoked at once, instead of being
//! waited out (`broker.lease.ms`, 6 s by default).
//!
//! Leases stay the source of truth for liveness. This only shortens the one
//! case that has an exact signal: a process that died (kill -9, OOM, a
//! panic) on a host that is still up. Its kernel closes the process's
//! connections and refuses new ones on its port. So the controller keeps a
//! gRPC health Watch stream open to each registered process; when that
//! stream breaks while the process was reporting SERVING, and a new TCP
//! connection to its advertised port is then *refused*, nobody is listening
//! there any more and the lease is revoked: its key disappears and the usual
//! path (the broker watch, the election) moves its work. A process that
//! reported anything but SERVING first (starting, draining after SIGTERM,
//! a coordinator loading groups) is alive and not judged.
//!
//! Nothing else counts as death: a paused process still accepts connections
//! (the kernel does), and a lost host or a network partition times out
//! rather than refusing; those wait for the lease. What this trusts is that
//! a refusal at the advertised address means the process is not there: a
//! proxy in between that refuses while the process lives (a restarting
//! sidecar, a REJECT firewall rule) would get a live process's lease revoked.
//! That costs a re-registration (a new broker epoch, leadership moved and
//! back), never data; `crash.detection.enable: false` turns it off. A target is only judged
//! after it was seen SERVING through its advertised address, so a
//! misconfigured advertised listener never gets a live process fenced.
//!
//! The active controller watches brokers and coordinators; a standby watches
//! the active controller (whose death it would otherwise wait a lease for).

use sluice_tls::ClientTls;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sluice_metastore::{KeyValue, LeaseId, MetadataStore};
use sluice_types::meta::{self, BrokerRegistration, ControllerInfo, CoordinatorRegistration};
use tokio_util::sync::CancellationToken;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tracing::{debug, warn};

/// How often the set of watched processes is read again.
const RESCAN: Duration = Duration::from_secs(1);
/// Pause before connecting again to a process that is up but not serving
/// (starting, or shutting down: an open stream would hold its drain).
const RECHECK: Duration = Duration::from_secs(1);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// One process holding a lease, reachable at its advertised address.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    /// "broker 2", "coordinator 1", "controller 1": for logs.
    name: String,
    kind: &'static str,
    lease: LeaseId,
    host: String,
    port: u16,
}

/// Watches until `stop` fires. `active` says whether this controller is the
/// active one now (it decides what to watch).
pub(crate) async fn run(
    store: Arc<dyn MetadataStore>,
    tls: Option<ClientTls>,
    active: impl Fn() -> bool + Send + 'static,
    own_lease: impl Fn() -> LeaseId + Send + 'static,
    stop: CancellationToken,
) {
    // Keyed by lease: a process that registers again is a new target.
    let mut watching: HashMap<LeaseId, (Target, CancellationToken)> = HashMap::new();
    let mut tick = tokio::time::interval(RESCAN);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let read = tokio::select! {
            _ = stop.cancelled() => break,
            r = targets(store.as_ref(), active(), own_lease()) => r,
        };
        let targets = match read {
            Ok(t) => t,
            // Keep watching what we had; the next tick reads again.
            Err(e) => {
                debug!(error = %e, "crash watch: cannot read registrations");
                continue;
            }
        };
        watching.retain(|lease, (target, token)| {
            let keep = targets.iter().any(|t| t.lease == *lease && t == target);
            if !keep {
                token.cancel();
            }
            keep
        });
        for t in targets {
            if watching.contains_key(&t.lease) {
                continue;
            }
            let token = stop.child_token();
            tokio::spawn(watch_one(
                store.clone(),
                t.clone(),
                tls.clone(),
                token.clone(),
            ));
            watching.insert(t.lease, (t, token));
        }
    }
    for (_, token) in watching.into_values() {
        token.cancel();
    }
}

async fn targets(
    store: &dyn MetadataStore,
    active: bool,
    own_lease: LeaseId,
) -> Result<Vec<Target>, sluice_metastore::MetaError> {
    let mut out = Vec::new();
    if active {
        for kv in store.range(meta::BROKERS_PREFIX).await?.0 {
            if let Ok(b) = meta::decode::<BrokerRegistration>(&kv.value) {
                push(&mut out, &kv, "broker", b.broker_id, &b.host, b.port);
            }
        }
        for kv in store.range(meta::COORDINATORS_PREFIX).await?.0 {
            if let Ok(c) = meta::decode::<CoordinatorRegistration>(&kv.value) {
                push(
                    &mut out,
                    &kv,
                    "coordinator",
                    c.coordinator_id,
                    &c.host,
                    c.port,
                );
            }
        }
    } else if let Some(kv) = store.get(meta::CONTROLLER_INFO_KEY).await?
        && let Ok(c) = meta::decode::<ControllerInfo>(&kv.value)
        // Ourselves by lease, not by id: controllers may share an id (it is
        // only a label; the Kubernetes Deployment's replicas all use one).
        && kv.lease != own_lease
    {
        push(
            &mut out,
            &kv,
            "controller",
            c.controller_id,
            &c.host,
            c.port,
        );
    }
    Ok(out)
}

fn push(out: &mut Vec<Target>, kv: &KeyValue, kind: &'static str, id: i32, host: &str, port: i32) {
    let Ok(port) = u16::try_from(port) else {
        return;
    };
    if kv.lease == 0 || host.is_empty() {
        return;
    }
    out.push(Target {
        name: format!("{kind} {id}"),
        kind,
        lease: kv.lease,
        host: host.to_string(),
        port,
    });
}

/// Follows one process until its lease is revoked or `stop` fires.
async fn watch_one(
    store: Arc<dyn MetadataStore>,
    target: Target,
    tls: Option<ClientTls>,
    stop: CancellationToken,
) {
    // The last status seen through its advertised address was SERVING (see
    // the module docs). A process that said anything else is alive and on its
    // way up or down: its port closing then is a shutdown, not a crash.
    let mut serving = false;
    loop {
        let seen = tokio::select! {
            _ = stop.cancelled() => return,
            s = follow(&target, tls.as_ref(), &mut serving) => s,
        };
        if seen == Seen::Lost && serving && refuses_connections(&target).await {
            if stop.is_cancelled() {
                return;
            }
            match store.revoke_lease(target.lease).await {
                Ok(()) => {
                    warn!(
                        process = %target.name,
                        address = %format!("{}:{}", target.host, target.port),
                        "its connection broke and its port refuses connections: the process is gone; revoked its registration lease"
                    );
                    metrics::counter!("sluice_controller_crashes_detected_total", "kind" => target.kind)
                        .increment(1);
                }
                // Already gone (it expired, or was given up), or etcd is
                // unreachable: either way the lease decides now.
                Err(e) => debug!(process = %target.name, error = %e, "crash watch: revoke failed"),
            }
            return;
        }
        let pause = match seen {
            Seen::Lost => Duration::from_millis(100),
            Seen::NotServing | Seen::Unreachable => RECHECK,
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// The connection broke, or could not be made again.
    Lost,
    /// The process answered with a status other than SERVING.
    NotServing,
    /// Not reachable, and never seen SERVING since the last other status.
    Unreachable,
}

/// Opens a health Watch and reads it while the process reports SERVING;
/// `serving` tracks the last status seen.
async fn follow(target: &Target, tls: Option<&ClientTls>, serving: &mut bool) -> Seen {
    let host = if target.host.contains(':') {
        format!("[{}]", target.host) // an IPv6 literal
    } else {
        target.host.clone()
    };
    let lost = |serving: &bool| {
        if *serving {
            Seen::Lost
        } else {
            Seen::Unreachable
        }
    };
    let Ok(endpoint) =
        tonic::transport::Endpoint::from_shared(format!("http://{host}:{}", target.port))
    else {
        return Seen::Unreachable;
    };
    let endpoint = endpoint.connect_timeout(CONNECT_TIMEOUT);
    let channel = match sluice_tls::connect_channel(endpoint, tls).await {
        Ok(c) => c,
        Err(_) => return lost(serving),
    };
    let mut client = HealthClient::new(channel);
    let mut stream = match client
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
    {
        Ok(s) => s.into_inner(),
        Err(_) => return lost(serving),
    };
    loop {
        match stream.message().await {
            Ok(Some(m)) if m.status == ServingStatus::Serving as i32 => *serving = true,
            // Starting up, or draining: let go (an open stream would keep a
            // draining server waiting) and look again later.
            Ok(Some(_)) => {
                *serving = false;
                return Seen::NotServing;
            }
            Ok(None) | Err(_) => return lost(serving),
        }
    }
}

/// True only for an outright refusal (nothing listens on the port): a
/// timeout or an unreachable host says nothing about the process.
async fn refuses_connections(target: &Target) -> bool {
    let connect = tokio::net::TcpStream::connect((target.host.as_str(), target.port));
    matches!(
        tokio::time::timeout(CONNECT_TIMEOUT, connect).await,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(port: u16) -> Target {
        Target {
            name: "broker 1".into(),
            kind: "broker",
            lease: 7,
            host: "127.0.0.1".into(),
            port,
        }
    }

    #[tokio::test]
    async fn a_closed_port_refuses_and_a_listening_one_does_not() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(!refuses_connections(&target(port)).await);
        drop(listener);
        assert!(refuses_connections(&target(port)).await);
    }

    #[test]
    fn registrations_without_a_lease_or_an_address_are_not_watched() {
        let kv = |lease| KeyValue {
            key: "brokers/1".into(),
            value: vec![],
            create_revision: 1,
            mod_revision: 1,
            version: 1,
            lease,
        };
        let mut out = Vec::new();
        push(&mut out, &kv(0), "broker", 1, "h", 9092);
        push(&mut out, &kv(5), "broker", 1, "", 9092);
        push(&mut out, &kv(5), "broker", 1, "h", 70000);
        assert!(out.is_empty());
        push(&mut out, &kv(5), "broker", 1, "h", 9092);
        assert_eq!(out.len(), 1);
    }
}
