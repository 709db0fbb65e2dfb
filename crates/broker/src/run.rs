//! [`run`]: a broker from start to controlled shutdown on a [`Host`], the
//! same in `sluice-broker` and in `sluice standalone`.

use std::sync::Arc;

use sluice_metastore::MetadataStore;
use sluice_server::{DRAIN_TIMEOUT, Host, names};
use tokio_util::sync::CancellationToken;

use crate::{Broker, BrokerConfig};

/// Runs a broker until `shutdown` fires (SIGTERM), then hands its
/// leaderships over (controlled shutdown) while the host still serves,
/// releases the host, and flushes and closes every log.
///
/// The gRPC API answers UNAVAILABLE until the broker has registered and
/// loaded metadata; health says so too.
pub async fn run(
    config: BrokerConfig,
    store: Arc<dyn MetadataStore>,
    host: Host,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let kafka_incoming = host.take_kafka();
    // The broker's own tasks; they end after the host has drained.
    let stop = CancellationToken::new();
    let start = Broker::start(config, store, stop.child_token());
    tokio::pin!(start);
    let broker = tokio::select! {
        b = &mut start => match b {
            Ok(b) => b,
            Err(e) => {
                host.fail();
                return Err(e.into());
            }
        },
        _ = signalled(&host, &shutdown) => {
            // Let start see its token rather than dropping it: it gives up a
            // registration it already made, so the next start need not wait
            // for the lease to expire.
            stop.cancel();
            if let Ok(b) = start.await {
                b.close().await;
            }
            return host.release().await;
        }
    };
    host.serve(broker.service(host.access()).into_server());
    let kafka = kafka_incoming.map(|incoming| {
        tokio::spawn(crate::kafka::serve(
            broker.service(host.access()),
            incoming,
            host.stop_token(),
        ))
    });
    let b = broker.clone();
    host.ready_when(names::BROKER, move || {
        let ready = b.is_ready();
        async move { ready }
    });
    let b = broker.clone();
    host.check_when(names::BROKER_IN_SYNC, move || {
        let in_sync = b.is_in_sync();
        async move { in_sync }
    });
    signalled(&host, &shutdown).await;
    // While the port still serves: followers fetch the last records and the
    // controller (perhaps on this very host) moves the leaderships.
    if !host.is_stopping() {
        broker.controlled_shutdown().await;
    }
    let served = host.release().await;
    if let Some(k) = kafka {
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, k).await;
    }
    stop.cancel();
    broker.close().await;
    served
}

/// The shutdown signal, or the host stopping on its own (a failed server).
async fn signalled(host: &Host, shutdown: &CancellationToken) {
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = host.stopping() => {}
    }
}
