//! DescribeCluster: answered by any controller, active or standby, from the store.

use sluice_proto::{common, controller as pb};
use tonic::Status;

use crate::Controller;

pub(super) async fn describe_cluster(
    controller: &Controller,
) -> Result<pb::DescribeClusterResponse, Status> {
    let brokers = controller.live_brokers().await?;
    let active = controller.active_controller().await?;
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
        // Coordinators register with the consumer-group release.
        coordinators: Vec::new(),
    })
}
