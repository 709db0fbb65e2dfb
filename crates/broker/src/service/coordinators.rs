//! Group requests forwarded to the coordinator service that owns the group,
//! for clients that cannot talk to coordinators themselves (Kafka clients,
//! which only know brokers). gRPC clients call coordinators directly; both
//! reach the same group state.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use sluice_proto::coordinator as cpb;
use sluice_proto::coordinator::group_coordinator_client::GroupCoordinatorClient;
use sluice_types::ApiError;
use sluice_types::hash::group_offsets_partition;
use sluice_types::names::CONSUMER_OFFSETS_TOPIC;
use tonic::transport::{Channel, Endpoint};

use sluice_server::access::Rights;

use super::BrokerService;
use crate::error::{BrokerError, Peer};

/// Channels to coordinators by URL, reused across requests. A std mutex:
/// nothing awaits while it is held (channels connect lazily).
#[derive(Clone)]
pub struct CoordinatorChannels {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    tls: Option<sluice_tls::ClientTls>,
}

impl CoordinatorChannels {
    pub fn new(tls: Option<sluice_tls::ClientTls>) -> Self {
        CoordinatorChannels {
            channels: Default::default(),
            tls,
        }
    }

    fn get(&self, url: &str, group: Option<&str>) -> Result<Channel, BrokerError> {
        let mut map = self.channels.lock();
        if let Some(c) = map.get(url) {
            return Ok(c.clone());
        }
        let endpoint = Endpoint::from_shared(url.to_string())
            .map_err(|source| BrokerError::BadEndpoint {
                peer: coordinator(group),
                url: url.to_string(),
                source,
            })?
            .connect_timeout(Duration::from_secs(3))
            // No request timeout: a JoinGroup waits out the rebalance. Dead
            // peers are found by HTTP/2 keepalive instead.
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(20))
            .keep_alive_while_idle(true)
            .tcp_nodelay(true);
        let channel = sluice_tls::internal_channel(endpoint, self.tls.as_ref());
        map.insert(url.to_string(), channel.clone());
        Ok(channel)
    }
}

/// Forwards one group's requests to its coordinator.
pub(crate) struct Forward<'a> {
    svc: &'a BrokerService,
    /// The client's: the coordinator checks them (see `Caller::forward`).
    rights: &'a Rights,
    group: &'a str,
}

/// The coordinator of `group` (None: any coordinator).
fn coordinator(group: Option<&str>) -> Peer {
    Peer::Coordinator {
        group: group.map(str::to_string),
    }
}

/// A coordinator's answer is the client's; one that could not answer is
/// NOT_COORDINATOR (see [`BrokerError::Forwarded`]): the client finds the
/// coordinator again and retries, as after a coordinator move.
macro_rules! forward {
    ($($name:ident($req:ty) -> $resp:ty;)*) => {
        $(
            pub(crate) async fn $name(&self, req: $req) -> Result<$resp, BrokerError> {
                let mut client = self.client()?;
                let mut req = tonic::Request::new(req);
                self.rights.caller().forward(&mut req);
                client
                    .$name(req)
                    .await
                    .map(|r| r.into_inner())
                    .map_err(|s| BrokerError::forwarded(coordinator(Some(self.group)), &s))
            }
        )*
    };
}

impl<'a> Forward<'a> {
    pub(crate) fn new(svc: &'a BrokerService, rights: &'a Rights, group: &'a str) -> Self {
        Self { svc, rights, group }
    }

    fn client(&self) -> Result<GroupCoordinatorClient<Channel>, BrokerError> {
        if self.group.is_empty() {
            return Err(BrokerError::EmptyGroupId);
        }
        let url = self.svc.broker.metadata.read(|v| {
            let t = v.topics.get(CONSUMER_OFFSETS_TOPIC)?;
            let p = group_offsets_partition(self.group, t.record.num_partitions());
            let owner = v.offsets_owners.get(&p)?;
            let c = v.coordinators.get(&owner.coordinator_id)?;
            Some(format!("http://{}:{}", c.host, c.port))
        });
        let url = url.ok_or_else(|| BrokerError::NoGroupCoordinator {
            group: self.group.to_string(),
        })?;
        let channel = self.svc.coordinators.get(&url, Some(self.group))?;
        Ok(GroupCoordinatorClient::new(channel)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20))
    }

    forward! {
        join_group(cpb::JoinGroupRequest) -> cpb::JoinGroupResponse;
        sync_group(cpb::SyncGroupRequest) -> cpb::SyncGroupResponse;
        heartbeat(cpb::HeartbeatRequest) -> cpb::HeartbeatResponse;
        leave_group(cpb::LeaveGroupRequest) -> cpb::LeaveGroupResponse;
        offset_commit(cpb::OffsetCommitRequest) -> cpb::OffsetCommitResponse;
        offset_fetch(cpb::OffsetFetchRequest) -> cpb::OffsetFetchResponse;
        describe_groups(cpb::DescribeGroupsRequest) -> cpb::DescribeGroupsResponse;
        delete_groups(cpb::DeleteGroupsRequest) -> cpb::DeleteGroupsResponse;
        consumer_group_heartbeat(cpb::ConsumerGroupHeartbeatRequest) -> cpb::ConsumerGroupHeartbeatResponse;
        consumer_group_describe(cpb::ConsumerGroupDescribeRequest) -> cpb::ConsumerGroupDescribeResponse;
    }
}

/// Every group of every live coordinator; the first error met, if any
/// coordinator could not answer.
pub(crate) async fn list_all(
    svc: &BrokerService,
    rights: &Rights,
    states_filter: Vec<String>,
) -> (Vec<cpb::ListedGroup>, Option<BrokerError>) {
    let urls: Vec<String> = svc.broker.metadata.read(|v| {
        v.coordinators
            .values()
            .map(|c| format!("http://{}:{}", c.host, c.port))
            .collect()
    });
    let mut groups = Vec::new();
    let mut error = None;
    for url in urls {
        let answer = match svc.coordinators.get(&url, None) {
            Ok(ch) => GroupCoordinatorClient::new(ch)
                .list_groups({
                    let mut req = tonic::Request::new(cpb::ListGroupsRequest {
                        states_filter: states_filter.clone(),
                    });
                    rights.caller().forward(&mut req);
                    req
                })
                .await
                .map(|r| r.into_inner())
                .map_err(|s| BrokerError::forwarded(coordinator(None), &s)),
            Err(e) => Err(e),
        };
        match answer {
            Ok(r) => {
                if let Some(source) = ApiError::from_proto(r.error.as_ref()) {
                    error.get_or_insert(BrokerError::Forwarded {
                        to: coordinator(None),
                        source,
                    });
                }
                groups.extend(r.groups);
            }
            Err(e) => {
                error.get_or_insert(e);
            }
        }
    }
    groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    groups.dedup_by(|a, b| a.group_id == b.group_id);
    (groups, error)
}
