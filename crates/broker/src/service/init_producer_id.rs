//! InitProducerId: hands out producer ids from a block the controller
//! allocated to this broker (persisted in etcd, so ids are never reused).

use sluice_proto::broker as pb;
use sluice_proto::controller::AllocateProducerIdsRequest;
use sluice_types::ApiError;

use sluice_server::access::Rights;

use super::BrokerService;
use crate::error::{BrokerError, ControllerCall};

pub(crate) async fn init_producer_id(
    svc: &BrokerService,
    rights: &Rights,
) -> pb::InitProducerIdResponse {
    let id = match rights.idempotent_producer() {
        Err(e) => Err(BrokerError::Denied(e)),
        Ok(()) => next_id(svc).await,
    };
    match id {
        Ok(id) => pb::InitProducerIdResponse {
            error: None,
            producer_id: id,
            producer_epoch: 0,
        },
        Err(e) => pb::InitProducerIdResponse {
            error: Some(e.to_proto()),
            producer_id: -1,
            producer_epoch: -1,
        },
    }
}

async fn next_id(svc: &BrokerService) -> Result<i64, BrokerError> {
    let broker = &svc.broker;
    // A tokio mutex: allocating a new block awaits the controller, and
    // concurrent callers must wait for that block rather than fetch their own.
    let mut block = broker.producer_ids.lock().await;
    if block.0 >= block.1 {
        // While no block can be had the producer retries (the call's code,
        // COORDINATOR_LOAD_IN_PROGRESS); the controller's own codes never
        // reach it.
        const CALL: ControllerCall = ControllerCall::AllocateProducerIds;
        let own = |source| BrokerError::Downstream { call: CALL, source };
        let mut client = svc.controller(CALL).await?;
        let resp = client
            .allocate_producer_ids(AllocateProducerIdsRequest {
                broker_id: broker.config.broker_id,
                broker_epoch: broker.epoch(),
            })
            .await
            .map_err(|s| own(ApiError::from_status(&s)))?
            .into_inner();
        if let Some(e) = ApiError::from_proto(resp.error.as_ref()) {
            return Err(own(e));
        }
        *block = (
            resp.producer_id_start,
            resp.producer_id_start + resp.producer_id_len as i64,
        );
    }
    let id = block.0;
    block.0 += 1;
    Ok(id)
}
