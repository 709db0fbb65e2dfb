//! The release task of delayed delivery (issue 14, `docs/delayed-delivery.md`):
//! every 100 ms, each partition this broker leads with pending delayed records
//! appends those that are due (`Partition::release_due`), batch after batch
//! while a backlog lasts.

use std::sync::Arc;
use std::time::Duration;

use tracing::warn;

use crate::broker::{Broker, now_ms};
use crate::partition::RELEASE_BATCH;

/// How often due records are looked for: the release precision.
const TICK: Duration = Duration::from_millis(100);

pub(crate) async fn release_loop(broker: Arc<Broker>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = broker.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let replicas = broker.replicas.clone();
        // Index and log reads and the append touch the disk: off the runtime.
        let _ = tokio::task::spawn_blocking(move || {
            for p in replicas.all() {
                if p.delays_pending() == 0 {
                    continue;
                }
                p.delays_upkeep();
                if !p.is_leader() {
                    continue;
                }
                loop {
                    match p.release_due(now_ms()) {
                        Ok(n) if n >= RELEASE_BATCH => continue,
                        Ok(_) => break,
                        Err(e) => {
                            warn!(topic = %p.topic, partition = p.partition, error = %e, "cannot release delayed records; retrying");
                            break;
                        }
                    }
                }
            }
        })
        .await;
    }
}
