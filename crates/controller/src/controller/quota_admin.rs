//! Client quotas in the metadata store (`security/quotas/<users|clients>/
//! <name>`), written by the controller and followed by every broker (see
//! `sluice_server::quota`).

use std::collections::BTreeMap;

use sluice_metastore::{Compare, Op, Txn};
use sluice_server::quota::{Limits, QuotaKind};
use sluice_types::meta;

use super::{Controller, corrupt, meta_err};
use crate::error::{ControllerError, Result};

/// Attempts at one compare-and-swap (another change to the same entity).
const CAS_ATTEMPTS: usize = 16;

/// The stored entity type for a quota entity type (Kafka's `user`,
/// `client-id`).
fn entity_dir(entity_type: &str) -> Result<&'static str> {
    match entity_type {
        "user" | "users" => Ok("users"),
        "client-id" | "clients" => Ok("clients"),
        other => Err(ControllerError::InvalidRequest(format!(
            "quota entity type {other:?}: user or client-id"
        ))),
    }
}

impl Controller {
    /// Sets (`Some`) or removes (`None`) one quota of one entity.
    pub async fn alter_quota(
        &self,
        entity_type: &str,
        name: &str,
        key: &str,
        value: Option<f64>,
    ) -> Result<()> {
        let dir = entity_dir(entity_type)?;
        let kind = QuotaKind::from_key(key).ok_or_else(|| {
            ControllerError::InvalidRequest(format!(
                "quota {key:?}: producer_byte_rate, consumer_byte_rate or request_percentage"
            ))
        })?;
        if let Some(v) = value
            && !(v.is_finite() && v > 0.0)
        {
            return Err(ControllerError::InvalidRequest(format!(
                "quota {key}={v}: must be a positive number"
            )));
        }
        if name.is_empty() {
            return Err(ControllerError::InvalidRequest(
                "a quota needs an entity name (or <default>)".into(),
            ));
        }
        let key = meta::quota_key(dir, name);
        for _ in 0..CAS_ATTEMPTS {
            let leader = self.leader_key()?;
            let kv = self.store.get(&key).await.map_err(meta_err)?;
            let (mut limits, cond) = match &kv {
                Some(kv) => (
                    serde_json::from_slice::<Limits>(&kv.value).map_err(|e| corrupt(&key, e))?,
                    Compare::mod_revision_eq(key.clone(), kv.mod_revision),
                ),
                None => (Limits::default(), Compare::absent(key.clone())),
            };
            limits.set(kind, value);
            let op = if limits.is_empty() {
                Op::delete(key.clone())
            } else {
                Op::put(
                    key.clone(),
                    serde_json::to_vec(&limits).expect("limits serialize"),
                )
            };
            match self
                .commit(Txn::fenced(&leader).when(cond).and_then(op), || {
                    ControllerError::Raced {
                        what: format!("the quotas at {key}"),
                    }
                })
                .await
            {
                Ok(()) => return Ok(()),
                Err(ControllerError::Raced { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(ControllerError::Contended {
            what: format!("the quotas at {key}"),
        })
    }

    /// Every quota set: (entity type `user`/`client-id`, name) to limits.
    pub async fn quotas(&self) -> Result<BTreeMap<(String, String), Limits>> {
        let (kvs, _) = self
            .store
            .range(meta::QUOTAS_PREFIX)
            .await
            .map_err(meta_err)?;
        let mut out = BTreeMap::new();
        for kv in kvs {
            let rest = kv.key.trim_start_matches(meta::QUOTAS_PREFIX);
            let Some((dir, name)) = rest.split_once('/') else {
                continue;
            };
            let entity = if dir == "users" { "user" } else { "client-id" };
            let limits = serde_json::from_slice(&kv.value).map_err(|e| corrupt(&kv.key, e))?;
            out.insert((entity.to_string(), name.to_string()), limits);
        }
        Ok(out)
    }
}
