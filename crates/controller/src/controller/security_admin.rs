//! ACLs, SCRAM credentials and API tokens in the metadata store: the controller writes
//! them (fenced by its election, as it writes topics) and every service
//! follows `security/` by watch (`sluice_server::access`).
//!
//! ACLs are stored per resource pattern: one key holds every binding on
//! `Topic/LITERAL/orders`, so a change is one compare-and-swap of one key
//! and a listing is one range read.

use std::collections::{BTreeMap, BTreeSet};

use sluice_auth::scram::{Mechanism, ScramCredential};
use sluice_auth::token::TokenRecord;
use sluice_auth::{AclBinding, AclFilter};
use sluice_metastore::{Compare, KeyValue, Op, Txn};
use sluice_types::meta;

use super::{Controller, corrupt, meta_err};
use crate::error::{ControllerError, Result};

/// Attempts at one compare-and-swap before giving up (another controller
/// call changed the same key meanwhile).
const CAS_ATTEMPTS: usize = 16;

fn key_of(b: &AclBinding) -> String {
    meta::acl_key(
        b.resource_type.as_str(),
        b.pattern_type.as_str(),
        &b.resource_name,
    )
}

/// One SCRAM credential change.
pub enum ScramChange {
    Upsert {
        user: String,
        credential: ScramCredential,
    },
    Delete {
        user: String,
        mechanism: Mechanism,
    },
}

impl Controller {
    /// Every stored ACL binding.
    pub async fn acls(&self) -> Result<Vec<AclBinding>> {
        let (kvs, _) = self
            .store
            .range(meta::ACLS_PREFIX)
            .await
            .map_err(meta_err)?;
        let mut out = Vec::new();
        for kv in kvs {
            out.extend(decode_acls(&kv)?);
        }
        Ok(out)
    }

    /// Adds `bindings` (each validated on its own; one that exists is a
    /// success). One result per binding, in order.
    pub async fn create_acls(&self, bindings: Vec<AclBinding>) -> Result<Vec<Result<()>>> {
        let mut results: Vec<Result<()>> = Vec::with_capacity(bindings.len());
        let mut by_key: BTreeMap<String, Vec<(usize, AclBinding)>> = BTreeMap::new();
        for (i, b) in bindings.into_iter().enumerate() {
            match b.validate() {
                Ok(()) => {
                    results.push(Ok(()));
                    by_key.entry(key_of(&b)).or_default().push((i, b));
                }
                Err(e) => results.push(Err(ControllerError::InvalidAcl(e))),
            }
        }
        for (key, adds) in by_key {
            let outcome = self
                .update_acl_key(&key, |current| {
                    let mut set: BTreeSet<AclBinding> = current.iter().cloned().collect();
                    set.extend(adds.iter().map(|(_, b)| b.clone()));
                    set.into_iter().collect()
                })
                .await;
            if let Err(e) = outcome {
                let message = e.to_string();
                let code = e.code();
                for (i, _) in &adds {
                    results[*i] = Err(ControllerError::Denied(sluice_types::ApiError::new(
                        code,
                        message.clone(),
                    )));
                }
            }
        }
        Ok(results)
    }

    /// Removes the bindings each filter matches; per filter, the bindings
    /// it removed.
    pub async fn delete_acls(&self, filters: &[AclFilter]) -> Result<Vec<Vec<AclBinding>>> {
        let (kvs, _) = self
            .store
            .range(meta::ACLS_PREFIX)
            .await
            .map_err(meta_err)?;
        let mut deleted = vec![Vec::new(); filters.len()];
        for kv in kvs {
            let current = decode_acls(&kv)?;
            if !current.iter().any(|b| filters.iter().any(|f| f.matches(b))) {
                continue;
            }
            // Re-read under the CAS: what is removed is what matched then.
            let mut removed_here = Vec::new();
            self.update_acl_key(&kv.key, |now| {
                removed_here.clear();
                now.iter()
                    .filter(|b| {
                        let hit = filters.iter().any(|f| f.matches(b));
                        if hit {
                            removed_here.push((*b).clone());
                        }
                        !hit
                    })
                    .cloned()
                    .collect()
            })
            .await?;
            for b in removed_here {
                for (i, f) in filters.iter().enumerate() {
                    if f.matches(&b) {
                        deleted[i].push(b.clone());
                    }
                }
            }
        }
        Ok(deleted)
    }

    /// Rewrites one ACL key with `change(current)`, by compare-and-swap
    /// (deleting it when nothing is left).
    async fn update_acl_key(
        &self,
        key: &str,
        mut change: impl FnMut(&[AclBinding]) -> Vec<AclBinding>,
    ) -> Result<()> {
        for _ in 0..CAS_ATTEMPTS {
            let leader = self.leader_key()?;
            let kv = self.store.get(key).await.map_err(meta_err)?;
            let (current, cond) = match &kv {
                Some(kv) => (
                    decode_acls(kv)?,
                    Compare::mod_revision_eq(key, kv.mod_revision),
                ),
                None => (Vec::new(), Compare::absent(key)),
            };
            let next = change(&current);
            if next == current {
                return Ok(());
            }
            let op = if next.is_empty() {
                Op::delete(key)
            } else {
                Op::put(key, serde_json::to_vec(&next).expect("bindings serialize"))
            };
            let txn = Txn::fenced(&leader).when(cond).and_then(op);
            match self
                .commit(txn, || ControllerError::Raced {
                    what: format!("the ACLs at {key}"),
                })
                .await
            {
                Ok(()) => return Ok(()),
                Err(ControllerError::Raced { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(ControllerError::Contended {
            what: format!("the ACLs at {key}"),
        })
    }

    /// Every stored SCRAM credential, by user.
    pub async fn scram_credentials(&self) -> Result<BTreeMap<String, Vec<ScramCredential>>> {
        let (kvs, _) = self
            .store
            .range(meta::SCRAM_PREFIX)
            .await
            .map_err(meta_err)?;
        let mut out: BTreeMap<String, Vec<ScramCredential>> = BTreeMap::new();
        for kv in kvs {
            let Some((user, _)) = meta::parse_scram_key(&kv.key) else {
                continue;
            };
            let c: ScramCredential =
                serde_json::from_slice(&kv.value).map_err(|e| corrupt(&kv.key, e))?;
            out.entry(user.to_string()).or_default().push(c);
        }
        Ok(out)
    }

    /// Applies credential changes, each on its own (a deletion of a
    /// credential that does not exist fails with RESOURCE_NOT_FOUND).
    pub async fn alter_scram(&self, changes: Vec<ScramChange>) -> Vec<Result<()>> {
        let mut results = Vec::with_capacity(changes.len());
        for change in changes {
            results.push(self.alter_one_scram(change).await);
        }
        results
    }

    async fn alter_one_scram(&self, change: ScramChange) -> Result<()> {
        let leader = self.leader_key()?;
        match change {
            ScramChange::Upsert { user, credential } => {
                if user.is_empty() {
                    return Err(ControllerError::UnacceptableCredential(
                        "the user name is empty".into(),
                    ));
                }
                let key = meta::scram_key(&user, credential.mechanism.name());
                let value = serde_json::to_vec(&credential).expect("credential serializes");
                self.commit(Txn::fenced(&leader).and_then(Op::put(key, value)), || {
                    ControllerError::LostLeadership
                })
                .await
            }
            ScramChange::Delete { user, mechanism } => {
                let key = meta::scram_key(&user, mechanism.name());
                self.commit(
                    Txn::fenced(&leader)
                        .when(Compare::present(key.clone()))
                        .and_then(Op::delete(key)),
                    || ControllerError::NoCredential {
                        user,
                        mechanism: mechanism.name().into(),
                    },
                )
                .await
            }
        }
    }
}

impl Controller {
    /// Stores a new token for `principal`; returns (id, token, record).
    pub async fn create_token(
        &self,
        principal: &str,
        expires_in_ms: Option<i64>,
        description: &str,
    ) -> Result<(String, String, TokenRecord)> {
        sluice_auth::Principal::parse(principal).map_err(ControllerError::InvalidAcl)?;
        let now = sluice_types::now_ms();
        let (id, token, record) = sluice_auth::token::generate(
            principal,
            now,
            expires_in_ms.map(|ms| now.saturating_add(ms)),
            description,
        );
        let leader = self.leader_key()?;
        let key = meta::token_key(&id);
        let value = serde_json::to_vec(&record).expect("token record serializes");
        self.commit(
            Txn::fenced(&leader)
                .when(Compare::absent(key.clone()))
                .and_then(Op::put(key, value)),
            || ControllerError::Raced {
                what: "a new token id".into(),
            },
        )
        .await?;
        Ok((id, token, record))
    }

    /// Deletes token `id`.
    pub async fn revoke_token(&self, id: &str) -> Result<()> {
        let leader = self.leader_key()?;
        let key = meta::token_key(id);
        self.commit(
            Txn::fenced(&leader)
                .when(Compare::present(key.clone()))
                .and_then(Op::delete(key)),
            || ControllerError::NoToken { id: id.to_string() },
        )
        .await
    }

    /// Every token, by id.
    pub async fn tokens(&self) -> Result<BTreeMap<String, TokenRecord>> {
        let (kvs, _) = self
            .store
            .range(meta::TOKENS_PREFIX)
            .await
            .map_err(meta_err)?;
        kvs.into_iter()
            .map(|kv| {
                let id = kv.key.trim_start_matches(meta::TOKENS_PREFIX).to_string();
                let t = serde_json::from_slice(&kv.value).map_err(|e| corrupt(&kv.key, e))?;
                Ok((id, t))
            })
            .collect()
    }
}

fn decode_acls(kv: &KeyValue) -> Result<Vec<AclBinding>> {
    serde_json::from_slice(&kv.value).map_err(|e| corrupt(&kv.key, e))
}
