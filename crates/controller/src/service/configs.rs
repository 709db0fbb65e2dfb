//! AlterConfigs: incremental changes to topic configs, each resource on its
//! own, like Kafka's IncrementalAlterConfigs.

use sluice_proto::controller as pb;
use sluice_proto::controller::{ConfigOperation, ConfigResourceType};

use sluice_auth::Operation;
use sluice_server::access::{Rights, audit_change};
use tracing::instrument;

use crate::topic_config::ConfigOp;
use crate::{Controller, ControllerError};

#[instrument(skip_all, fields(resources = req.resources.len()))]
pub(super) async fn alter_configs(
    controller: &Controller,
    rights: &Rights,
    req: pb::AlterConfigsRequest,
) -> pb::AlterConfigsResponse {
    let mut results = Vec::with_capacity(req.resources.len());
    for r in req.resources {
        let denied = match ConfigResourceType::try_from(r.resource_type) {
            Ok(ConfigResourceType::Topic) => rights
                .topic(Operation::AlterConfigs, &r.resource_name)
                .err(),
            Ok(ConfigResourceType::Broker) => rights.cluster(Operation::AlterConfigs).err(),
            Err(_) => None,
        };
        let outcome = match ConfigResourceType::try_from(r.resource_type) {
            _ if denied.is_some() => Err(ControllerError::Denied(denied.expect("checked"))),
            Ok(ConfigResourceType::Topic) => match ops(&r.configs) {
                Ok(ops) => {
                    controller
                        .alter_topic_configs(&r.resource_name, &ops, req.validate_only)
                        .await
                }
                Err(e) => Err(e),
            },
            Ok(ConfigResourceType::Broker) => Err(ControllerError::InvalidRequest(
                "broker configs are static: set them in the broker's config file and restart it"
                    .into(),
            )),
            Err(_) => Err(ControllerError::InvalidRequest(format!(
                "unknown resource type {}",
                r.resource_type
            ))),
        };
        if outcome.is_ok() && !req.validate_only {
            let keys: Vec<&str> = r.configs.iter().map(|c| c.name.as_str()).collect();
            let detail = format!(
                "{} {}: {}",
                r.resource_type,
                r.resource_name,
                keys.join(",")
            );
            audit_change(rights.caller(), "alter-configs", &detail);
        }
        results.push(pb::AlterConfigsResourceResult {
            resource_type: r.resource_type,
            resource_name: r.resource_name,
            error: outcome.err().map(|e| e.to_proto()),
        });
    }
    pb::AlterConfigsResponse { results }
}

fn ops(configs: &[pb::AlterableConfig]) -> Result<Vec<ConfigOp>, ControllerError> {
    configs
        .iter()
        .map(|c| {
            let value = || {
                c.value
                    .clone()
                    .ok_or_else(|| ControllerError::ConfigNeedsValue {
                        key: c.name.clone(),
                    })
            };
            Ok(match ConfigOperation::try_from(c.operation) {
                Ok(ConfigOperation::Set) => ConfigOp::Set(c.name.clone(), value()?),
                Ok(ConfigOperation::Delete) => ConfigOp::Delete(c.name.clone()),
                Ok(ConfigOperation::Append) => ConfigOp::Append(c.name.clone(), value()?),
                Ok(ConfigOperation::Subtract) => ConfigOp::Subtract(c.name.clone(), value()?),
                Err(_) => {
                    return Err(ControllerError::InvalidRequest(format!(
                        "unknown config operation {}",
                        c.operation
                    )));
                }
            })
        })
        .collect()
}
