//! [`run`]: a group coordinator on a [`Host`], the same in
//! `sluice-coordinator` and in `sluice standalone`.

use std::sync::Arc;

use sluice_metastore::MetadataStore;
use sluice_server::{Host, names};
use tokio_util::sync::CancellationToken;

use crate::{Coordinator, CoordinatorConfig, CoordinatorService};

/// Registers, serves the GroupCoordinator API until `shutdown` fires, then
/// answers parked JoinGroup/SyncGroup calls (NOT_COORDINATOR), gives up its
/// registration and releases the host. The API answers UNAVAILABLE until
/// the coordinator has registered.
pub async fn run(
    config: CoordinatorConfig,
    store: Arc<dyn MetadataStore>,
    host: Host,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // Brokers are found through their registrations in the metadata store.
    let coordinator = tokio::select! {
        c = Coordinator::start(config, store, None, shutdown.child_token()) => match c {
            Ok(c) => c,
            Err(e) => {
                host.fail();
                return Err(e);
            }
        },
        _ = shutdown.cancelled() => return host.release().await,
        _ = host.stopping() => return host.release().await,
    };
    host.serve(CoordinatorService::new(coordinator.clone(), host.access().clone()).into_server());
    let c = coordinator.clone();
    host.ready_when(names::COORDINATOR, move || {
        let ready = c.is_ready();
        async move { ready }
    });
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = host.stopping() => {}
    }
    // First, so parked group calls answer and the server can drain.
    coordinator.close().await;
    host.release().await
}
