//! DescribeCluster: answered by any controller, active or standby, from the store.

use sluice_proto::{common, controller as pb};
use tonic::Status;

use crate::Controller;

pub(super) async fn describe_cluster(
    controller: &Controller,
) -> Result<pb::DescribeClusterResponse, Status> {
    let brokers = controller.live_brokers().await?;
    let active = controller.active_controller().await?;
    let owners = controller.offsets_owners().await?;
    Ok(pb::DescribeClusterResponse {
        cluster_id: controller.cluster_id().await?,
        controller_id: active.as_ref().map_or(-1, |c| c.controller_id),
        controller_epoch: active.as_ref().map_or(-1, |c| c.epoch),
        brokers: brokers
            .into_iter()
            .map(|b| common::BrokerEndpoint {
                broker_id: b.broker_id,
                host: b.host,
                port: b.port,
                rack: b.rack,
            })
            .collect(),
        coordinators: controller
            .live_coordinators()
            .await?
            .into_iter()
            .map(|c| pb::CoordinatorInfo {
                owned_partitions: owners
                    .iter()
                    .filter(|(_, o)| o.coordinator_id == c.coordinator_id)
                    .map(|(p, _)| *p)
                    .collect(),
                coordinator_id: c.coordinator_id,
                host: c.host,
                port: c.port,
            })
            .collect(),
    })
}
