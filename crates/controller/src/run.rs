//! [`run`]: a controller on a [`Host`], the same in `sluice-controller` and
//! in `sluice standalone`.

use std::sync::Arc;

use sluice_metastore::MetadataStore;
use sluice_server::{Host, names};
use tokio_util::sync::CancellationToken;

use crate::{Controller, ControllerConfig, ControllerService};

/// Campaigns for the active controller's seat and serves the Controller API
/// until `shutdown` fires. The election loop keeps running until the host
/// has drained: a broker sharing the host hands its leaderships over through
/// this controller first.
pub async fn run(
    config: ControllerConfig,
    store: Arc<dyn MetadataStore>,
    host: Host,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    if let Err(e) = config.validate() {
        host.fail();
        return Err(e.into());
    }
    let controller = Controller::new(store, config);
    let campaigning = CancellationToken::new();
    let task = tokio::spawn(controller.clone().run(campaigning.clone()));
    host.serve(ControllerService::new(controller.clone(), host.access().clone()).into_server());
    host.ready_when(names::CONTROLLER, move || {
        let c = controller.clone();
        async move { c.is_ready().await }
    });
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = host.stopping() => {}
    }
    // Resign as soon as every service on the host is done with it (a broker
    // here has handed its leaderships over), not after the drain: brokers
    // elsewhere need a controller, and a standby takes over only then.
    let release = host.release();
    tokio::pin!(release);
    let served = tokio::select! {
        r = &mut release => r,
        _ = host.stopping() => {
            campaigning.cancel();
            release.await
        }
    };
    campaigning.cancel();
    let _ = task.await;
    served
}
