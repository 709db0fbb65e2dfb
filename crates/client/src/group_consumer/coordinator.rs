//! The state the member shares with its heartbeat task ([`Shared`]: the
//! membership, the coordinator connection, poll liveness) and the talking to
//! the group coordinator that does not belong to one rebalance step: finding
//! it, turning its failures into coded errors (and forgetting it when it
//! moved), heartbeats and LeaveGroup.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use crate::cluster::Channel;
use parking_lot::Mutex;
use sluice_proto::broker::{CoordinatorKeyType, FindCoordinatorRequest};
use sluice_proto::coordinator as pb;
use sluice_proto::coordinator::group_coordinator_client::GroupCoordinatorClient;
use sluice_types::{ApiError, ErrorCode};
use tracing::{debug, info, warn};

use super::membership::Membership;
use super::server_assigned::Reconciliation;
use super::{api, backoff, timed};
use crate::cluster::Cluster;
use crate::config::GroupProtocol;
use crate::error::{ClientError, Result};
use tokio::sync::Notify;

/// The member's state shared with the heartbeat task. parking_lot mutexes:
/// each guards a little bookkeeping and is never held across `.await`.
pub(super) struct Shared {
    pub(super) cluster: Arc<Cluster>,
    pub(super) group: String,
    pub(super) membership: Mutex<Membership>,
    pub(super) coordinator: Mutex<Option<(String, GroupCoordinatorClient<Channel>)>>,
    pub(super) last_poll: Mutex<Instant>,
    /// Set while `poll` is rejoining: a join may wait up to the rebalance
    /// timeout, which is not the application failing to poll.
    pub(super) rejoining: AtomicBool,
    pub(super) closed: AtomicBool,
    /// `group.protocol`.
    pub(super) protocol: GroupProtocol,
    /// The consumer protocol's reconciliation state.
    pub(super) reconciliation: Mutex<Reconciliation>,
    /// Wakes the consumer protocol's heartbeat task (an acknowledgement or a
    /// new subscription to send).
    pub(super) wake: Notify,
}

/// Errors that mean "find the coordinator again".
fn coordinator_moved(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::NotCoordinator
            | ErrorCode::CoordinatorNotAvailable
            | ErrorCode::NetworkException
            | ErrorCode::LeaderNotAvailable
            | ErrorCode::RequestTimedOut
    )
}

/// Errors in a coordinator's answer after which it is looked up again.
fn forgets_coordinator(code: ErrorCode) -> bool {
    coordinator_moved(code) || code == ErrorCode::CoordinatorLoadInProgress
}

impl Shared {
    /// The state of a member that has not joined `group` yet.
    pub(super) fn new(cluster: Arc<Cluster>, group: String) -> Self {
        let mut membership = Membership::new();
        if cluster.config.group_protocol == GroupProtocol::Consumer {
            // KIP-1082: the member names itself, so a join whose answer is
            // lost is not a second member.
            membership.member_id = uuid::Uuid::new_v4().to_string();
        }
        Shared {
            protocol: cluster.config.group_protocol,
            reconciliation: Mutex::new(Reconciliation::default()),
            wake: Notify::new(),
            cluster,
            group,
            membership: Mutex::new(membership),
            coordinator: Mutex::new(None),
            last_poll: Mutex::new(Instant::now()),
            rejoining: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        }
    }

    /// The group's coordinator, looked up through any broker when unknown.
    pub(super) async fn coordinator(&self) -> Result<GroupCoordinatorClient<Channel>> {
        if let Some((_, c)) = self.coordinator.lock().clone() {
            return Ok(c);
        }
        let deadline = Instant::now() + self.cluster.config.request_timeout;
        loop {
            let res = self.find_coordinator().await;
            match res {
                Ok((addr, c)) => {
                    debug!(group = %self.group, coordinator = %addr, "found the group coordinator");
                    *self.coordinator.lock() = Some((addr, c.clone()));
                    return Ok(c);
                }
                Err(e) if e.is_retriable() && Instant::now() < deadline => {
                    debug!(group = %self.group, error = %e, "no coordinator yet; retrying");
                    backoff(&self.cluster).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn find_coordinator(&self) -> Result<(String, GroupCoordinatorClient<Channel>)> {
        find_coordinator(&self.cluster, &self.group).await
    }

    fn forget_coordinator(&self) {
        *self.coordinator.lock() = None;
    }

    /// Turns a gRPC failure into a coded error, forgetting the coordinator
    /// when it is unreachable.
    pub(super) fn status(&self, s: tonic::Status) -> ClientError {
        let e = ClientError::from_status("coordinator", &s);
        if coordinator_moved(e.code())
            || s.code() == tonic::Code::Unavailable
            || s.code() == tonic::Code::Unknown
        {
            self.forget_coordinator();
            return api(ErrorCode::CoordinatorNotAvailable, e.to_string());
        }
        e
    }

    /// Notes a coded error from a coordinator answer to a request sent as
    /// `sent` (member id, generation). A generation error only counts while the
    /// membership is still the one the request used: a late answer must not
    /// undo a join that completed meanwhile.
    pub(super) fn note(&self, e: &ApiError, sent: (&str, i32)) {
        self.note_coordinator(e);
        if self.protocol == GroupProtocol::Consumer {
            // The heartbeat alone moves a consumer-protocol membership.
            return;
        }
        let newly_fenced = self.membership.lock().on_error(e, sent);
        if newly_fenced {
            warn!(group = %self.group, error = %e, "fenced by another consumer with the same group.instance.id");
        }
    }

    /// Forgets the coordinator when `e` says it moved.
    pub(super) fn note_coordinator(&self, e: &ApiError) {
        if forgets_coordinator(e.code) {
            self.forget_coordinator();
        }
    }

    pub(super) async fn heartbeat_once(&self) -> Result<()> {
        let Some((member_id, generation)) = self.membership.lock().heartbeat_target() else {
            return Ok(());
        };
        let mut c = self.coordinator().await?;
        let r = c
            .heartbeat(timed(
                pb::HeartbeatRequest {
                    group_id: self.group.clone(),
                    generation_id: generation,
                    member_id: member_id.clone(),
                    group_instance_id: self.cluster.config.group_instance_id.clone(),
                },
                self.cluster.config.request_timeout,
            ))
            .await
            .map_err(|s| self.status(s))?
            .into_inner();
        if let Some(e) = ApiError::from_proto(r.error.as_ref()) {
            self.note(&e, (&member_id, generation));
            return Err(e.into());
        }
        Ok(())
    }

    pub(super) async fn leave(&self, reason: &str) {
        let member_id = self.membership.lock().leave();
        if member_id.is_empty() {
            return;
        }
        if self.cluster.config.group_instance_id.is_some() {
            // KIP-345: a static member stays in the group until its session
            // times out, so a restart within session.timeout.ms gets its
            // partitions back without a rebalance.
            info!(group = %self.group, member = %member_id, reason, "static member stops without leaving the group");
            return;
        }
        let Ok(mut c) = self.coordinator().await else {
            return;
        };
        let res = c
            .leave_group(timed(
                pb::LeaveGroupRequest {
                    group_id: self.group.clone(),
                    members: vec![pb::MemberIdentity {
                        member_id: member_id.clone(),
                        group_instance_id: self.cluster.config.group_instance_id.clone(),
                        reason: reason.to_string(),
                    }],
                },
                self.cluster.config.request_timeout,
            ))
            .await;
        match res {
            Ok(_) => info!(group = %self.group, member = %member_id, reason, "left the group"),
            Err(s) => {
                warn!(group = %self.group, error = %s, "LeaveGroup failed; the session timeout will remove the member")
            }
        }
    }
}

/// Asks the brokers which coordinator serves `group` and connects (lazily)
/// to it. Retriable errors (no coordinator yet) are returned as they are.
pub(crate) async fn find_coordinator(
    cluster: &Cluster,
    group: &str,
) -> Result<(String, GroupCoordinatorClient<Channel>)> {
    cluster.refresh(&[]).await?;
    let mut last = None;
    for addr in cluster.config.bootstrap_servers.clone() {
        let mut b = match cluster.broker_at(&addr) {
            Ok(b) => b,
            Err(e) => {
                last = Some(e);
                continue;
            }
        };
        let resp = match b
            .find_coordinator(FindCoordinatorRequest {
                key_type: CoordinatorKeyType::Group as i32,
                keys: vec![group.to_string()],
            })
            .await
        {
            Ok(r) => r.into_inner(),
            Err(s) => {
                last = Some(ClientError::from_status(&addr, &s));
                continue;
            }
        };
        let Some(c) = resp.coordinators.into_iter().next() else {
            last = Some(api(
                ErrorCode::CoordinatorNotAvailable,
                "empty FindCoordinator answer",
            ));
            continue;
        };
        if let Some(e) = ApiError::from_proto(c.error.as_ref()) {
            return Err(e.into());
        }
        let addr = format!("{}:{}", c.host, c.port);
        return Ok((addr.clone(), coordinator_client(&addr, cluster)?));
    }
    Err(last.unwrap_or_else(|| {
        api(
            ErrorCode::CoordinatorNotAvailable,
            "no broker answered FindCoordinator",
        )
    }))
}

/// A lazily connected client of the coordinator at `addr` (`HOST:PORT`).
pub(crate) fn coordinator_client(
    addr: &str,
    cluster: &Cluster,
) -> Result<GroupCoordinatorClient<Channel>> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| {
            api(
                ErrorCode::InvalidConfig,
                format!("coordinator address {addr}: {e}"),
            )
        })?
        .connect_timeout(Duration::from_secs(3))
        .tcp_nodelay(true)
        // Notice a coordinator host that vanished without closing the socket.
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5));
    Ok(GroupCoordinatorClient::new(cluster.connect_lazy(endpoint)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ClientConfig;

    /// A member of "g" whose coordinator is known (a lazy channel to a port
    /// nothing listens on: these tests never send a request).
    fn shared_with_coordinator() -> Shared {
        let cluster = Cluster::new(ClientConfig::new("127.0.0.1:1")).unwrap();
        let c = coordinator_client("127.0.0.1:1", &cluster).unwrap();
        let shared = Shared::new(cluster, "g".into());
        *shared.coordinator.lock() = Some(("127.0.0.1:1".into(), c));
        shared
    }

    fn knows_coordinator(s: &Shared) -> bool {
        s.coordinator.lock().is_some()
    }

    #[tokio::test]
    async fn answers_naming_a_moved_coordinator_forget_it() {
        for code in [
            ErrorCode::NotCoordinator,
            ErrorCode::CoordinatorNotAvailable,
            ErrorCode::CoordinatorLoadInProgress,
            ErrorCode::NetworkException,
            ErrorCode::RequestTimedOut,
        ] {
            let s = shared_with_coordinator();
            s.note(&ApiError::new(code, "moved"), ("", -1));
            assert!(!knows_coordinator(&s), "{code:?}");
        }
    }

    #[tokio::test]
    async fn generation_errors_keep_the_coordinator_and_reach_the_membership() {
        let s = shared_with_coordinator();
        s.membership.lock().joined("m".into(), 2);
        s.note(&ApiError::new(ErrorCode::UnknownMemberId, "gone"), ("m", 2));
        assert!(knows_coordinator(&s));
        let m = s.membership.lock();
        assert!(m.member_id.is_empty());
        assert!(m.must_rejoin());
    }

    #[tokio::test]
    async fn unreachable_coordinator_becomes_retriable_coordinator_not_available() {
        let s = shared_with_coordinator();
        let e = s.status(tonic::Status::unavailable("connection refused"));
        assert_eq!(e.code(), ErrorCode::CoordinatorNotAvailable);
        assert!(e.is_retriable());
        assert!(!knows_coordinator(&s));
    }

    #[tokio::test]
    async fn a_coded_status_keeps_its_code_and_the_coordinator() {
        let s = shared_with_coordinator();
        let status = ApiError::new(ErrorCode::InvalidGroupId, "bad group").to_status();
        let e = s.status(status);
        assert_eq!(e.code(), ErrorCode::InvalidGroupId);
        assert!(knows_coordinator(&s));
    }
}
