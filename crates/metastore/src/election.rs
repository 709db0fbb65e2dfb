//! Leader election on top of the plain [`MetadataStore`] primitives, shared by both
//! implementations: etcd's `concurrency.Election` recipe.
//!
//! Each candidate puts `<election>/<lease hex>` bound to its lease; the candidate whose key
//! has the lowest create revision leads, and that revision is the leader epoch. A waiting
//! candidate watches for deletions instead of polling.

use futures::StreamExt;

use crate::{Compare, EventKind, KeyValue, LeaderKey, LeaseId, MetaError, MetadataStore, Op, Txn};

/// Keys of the candidates of `election` live under this prefix.
pub fn election_prefix(election: &str) -> String {
    format!("{election}/")
}

pub(crate) async fn campaign<S: MetadataStore + ?Sized>(
    store: &S,
    election: &str,
    value: Vec<u8>,
    lease: LeaseId,
) -> Result<LeaderKey, MetaError> {
    let prefix = election_prefix(election);
    let key = format!("{prefix}{lease:x}");
    let created = store
        .txn(
            Txn::new()
                .when(Compare::absent(&key))
                .and_then(Op::put_with_lease(&key, value.clone(), lease)),
        )
        .await?;
    let revision = if created.succeeded {
        created.revision
    } else {
        // Campaigning again with the same lease keeps our place in line; refresh the value.
        store.put(&key, value, lease).await?;
        match store.get(&key).await? {
            Some(kv) => kv.create_revision,
            None => return Err(MetaError::LeaseNotFound { lease }),
        }
    };

    loop {
        let (candidates, read_at) = store.range(&prefix).await?;
        // Our key vanished (lease expired or revoked while waiting): we can never win.
        if !candidates
            .iter()
            .any(|kv| kv.key == key && kv.create_revision == revision)
        {
            return Err(MetaError::LeaseNotFound { lease });
        }
        let Some(blocker) = candidates
            .iter()
            .filter(|kv| kv.create_revision < revision)
            .max_by_key(|kv| kv.create_revision)
        else {
            return Ok(LeaderKey {
                election: election.to_owned(),
                key,
                revision,
                lease,
            });
        };

        // Wait for the candidate just ahead of us (or our own key) to go, then re-check:
        // watching only the predecessor avoids a thundering herd on every change.
        let mut events = store.watch_prefix(&prefix, read_at + 1).await?;
        loop {
            match events.next().await {
                Some(Ok(batch)) => {
                    if batch.iter().any(|e| {
                        e.kind == EventKind::Delete && (e.kv.key == blocker.key || e.kv.key == key)
                    }) {
                        break;
                    }
                }
                // History moved past us: simply re-read the candidates.
                Some(Err(MetaError::Compacted { .. })) => break,
                Some(Err(e)) => return Err(e),
                None => return Err(MetaError::Closed),
            }
        }
    }
}

pub(crate) async fn leader<S: MetadataStore + ?Sized>(
    store: &S,
    election: &str,
) -> Result<Option<KeyValue>, MetaError> {
    let (candidates, _) = store.range(&election_prefix(election)).await?;
    Ok(candidates.into_iter().min_by_key(|kv| kv.create_revision))
}

pub(crate) async fn resign<S: MetadataStore + ?Sized>(
    store: &S,
    leader: &LeaderKey,
) -> Result<(), MetaError> {
    // Only delete the key if it is still the one we won with: a stale handle must not
    // remove a later incarnation.
    store
        .txn(Txn::fenced(leader).and_then(Op::delete(&leader.key)))
        .await?;
    Ok(())
}
