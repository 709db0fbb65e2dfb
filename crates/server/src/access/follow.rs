//! Follows `security/` in the metadata store: ACLs and SCRAM credentials,
//! read whole at start and after a broken watch, then kept by watch events
//! (a change reaches every service within one event, well under a second).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use sluice_auth::AclBinding;
use sluice_auth::scram::{Mechanism, ScramCredential};
use sluice_auth::token::TokenRecord;
use sluice_metastore::{EventKind, MetadataStore};
use sluice_types::meta;
use tokio_util::sync::CancellationToken;

use super::Access;
use crate::quota::{Limits, QuotaConfigs};

/// Keeps `access` in step with the store until `stop` fires (a task).
pub fn follow(
    access: &Access,
    store: Arc<dyn MetadataStore>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let access = access.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                r = follow_once(&access, store.as_ref()) => {
                    if let Err(e) = r {
                        tracing::warn!(error = %e, "following ACLs and credentials broke; reloading");
                    }
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    })
}

/// Reads everything, then applies watch events until the watch breaks.
async fn follow_once(
    access: &Access,
    store: &dyn MetadataStore,
) -> Result<(), sluice_metastore::MetaError> {
    let (kvs, rev) = store.range(meta::SECURITY_PREFIX).await?;
    let mut entries: BTreeMap<String, Vec<u8>> =
        kvs.into_iter().map(|kv| (kv.key, kv.value)).collect();
    apply(access, &entries);
    let mut watch = store.watch_prefix(meta::SECURITY_PREFIX, rev + 1).await?;
    while let Some(batch) = watch.next().await {
        for ev in batch? {
            match ev.kind {
                EventKind::Put => entries.insert(ev.kv.key, ev.kv.value),
                EventKind::Delete => entries.remove(&ev.kv.key),
            };
        }
        apply(access, &entries);
    }
    Ok(())
}

/// Rebuilds the whole view: ACL changes are rare and the index is built in
/// one step, so a check never sees half a change.
fn apply(access: &Access, entries: &BTreeMap<String, Vec<u8>>) {
    let mut acls = Vec::new();
    let mut scram = HashMap::new();
    let mut tokens = HashMap::new();
    let mut quotas = QuotaConfigs::default();
    for (key, value) in entries {
        if key.starts_with(meta::ACLS_PREFIX) {
            match serde_json::from_slice::<Vec<AclBinding>>(value) {
                Ok(list) => acls.extend(list),
                Err(e) => tracing::warn!(%key, error = %e, "ignoring unreadable ACLs"),
            }
        } else if let Some(rest) = key.strip_prefix(meta::QUOTAS_PREFIX) {
            let parsed = serde_json::from_slice::<Limits>(value);
            match (rest.split_once('/'), parsed) {
                (Some(("users", name)), Ok(l)) => {
                    quotas.users.insert(name.to_string(), l);
                }
                (Some(("clients", name)), Ok(l)) => {
                    quotas.clients.insert(name.to_string(), l);
                }
                _ => tracing::warn!(%key, "ignoring an unreadable quota"),
            }
        } else if let Some(id) = key.strip_prefix(meta::TOKENS_PREFIX) {
            match serde_json::from_slice::<TokenRecord>(value) {
                Ok(t) => {
                    tokens.insert(id.to_string(), t);
                }
                Err(e) => tracing::warn!(%key, error = %e, "ignoring an unreadable token"),
            }
        } else if let Some((user, mech)) = meta::parse_scram_key(key) {
            let parsed = Mechanism::parse(mech)
                .ok_or_else(|| format!("unknown mechanism {mech}"))
                .and_then(|m| {
                    serde_json::from_slice::<ScramCredential>(value)
                        .map(|c| (m, c))
                        .map_err(|e| e.to_string())
                });
            match parsed {
                Ok((m, c)) => {
                    scram.insert((user.to_string(), m), c);
                }
                Err(e) => tracing::warn!(%key, error = %e, "ignoring an unreadable credential"),
            }
        }
    }
    access.quotas().set_configs(quotas);
    access.install(acls, scram, tokens);
}
