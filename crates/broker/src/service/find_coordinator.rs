//! FindCoordinator. Coordinators register with the consumer-group release;
//! until then every group answers COORDINATOR_NOT_AVAILABLE with the reason.

use sluice_proto::broker as pb;
use sluice_types::{ApiError, ErrorCode};

pub(super) fn find_coordinator(req: pb::FindCoordinatorRequest) -> pb::FindCoordinatorResponse {
    pb::FindCoordinatorResponse {
        coordinators: req
            .keys
            .into_iter()
            .map(|key| pb::Coordinator {
                error: Some(
                    ApiError::new(
                        ErrorCode::CoordinatorNotAvailable,
                        format!("no coordinator serves group \"{key}\": consumer groups are not available in this release"),
                    )
                    .to_proto(),
                ),
                key,
                node_id: -1,
                offsets_partition: -1,
                ..Default::default()
            })
            .collect(),
    }
}
