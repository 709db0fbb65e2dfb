//! [`AppState`]: the clients, the options and the latest snapshot, shared by
//! every handler.

use std::sync::Arc;

use sluice_client::{Admin, ClientConfig, Producer};
use tokio_util::sync::CancellationToken;

use crate::ConsoleOptions;
use crate::error::{ConsoleError, Result};
use crate::sampler::{Sampler, Snapshot};

pub struct AppState {
    pub(crate) config: ClientConfig,
    pub(crate) admin: Admin,
    pub(crate) read_only: bool,
    pub(crate) allowed_hosts: Vec<String>,
    pub(crate) sampler: Sampler,
    /// For test records produced from the message browser (made on first use).
    pub(crate) producer: tokio::sync::OnceCell<Producer>,
}

impl AppState {
    /// The state, with its sampler running until `shutdown`.
    pub fn start(options: ConsoleOptions, shutdown: CancellationToken) -> Result<Arc<Self>> {
        let admin = Admin::new(options.client.clone())?;
        let state = Arc::new(AppState {
            sampler: Sampler::new(options.client.clone(), admin.clone()),
            config: options.client,
            admin,
            read_only: options.read_only,
            allowed_hosts: options.allowed_hosts,
            producer: tokio::sync::OnceCell::new(),
        });
        let s = state.clone();
        let every = options.sample_interval;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => s.sampler.sample().await,
                }
            }
        });
        Ok(state)
    }

    /// The latest snapshot (taken now if none was yet).
    pub(crate) async fn snapshot(&self) -> Arc<Snapshot> {
        if let Some(s) = self.sampler.latest() {
            return s;
        }
        self.sampler.sample().await;
        self.sampler.latest().unwrap_or_default()
    }

    /// A fresh snapshot, after a change the next page must show.
    pub(crate) async fn resample(&self) {
        self.sampler.sample().await;
    }

    /// Refuses changes in read-only mode.
    pub(crate) fn writable(&self) -> Result<()> {
        if self.read_only {
            return Err(ConsoleError::ReadOnly);
        }
        Ok(())
    }
}
