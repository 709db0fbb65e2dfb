//! The web console: brokers, topics, messages and consumer groups in a
//! browser. A client of the cluster like any other: it speaks gRPC to the
//! brokers, the controller and the coordinators (through `sluice-client`),
//! never reads etcd or data files.
//!
//! Pages are rendered on the server (maud) from a snapshot a background
//! sampler refreshes every few seconds, so a page with 1,000 topics is one
//! in-memory render, not 1,000 requests. A little JavaScript of our own
//! (`assets/console.js`, embedded like the stylesheet) refreshes live pages,
//! filters tables as you type, and streams long message searches with
//! progress and a cancel button; every page also works without it.
//!
//! # Layout
//! - this file: [`ConsoleOptions`], [`serve`] and the routes.
//! - `state`: [`state::AppState`], shared by the handlers.
//! - `sampler`: the snapshot (cluster, topics, groups) and rate history.
//! - `layout`: the page shell, formatting helpers, the SVG chart.
//! - `browse`: message searches (bounded scans, filters, formats).
//! - `pages/*`: one module per page family.
//! - `error`: [`ConsoleError`], rendered as a page with a readable message.
//! - `guard`: refuses cross-site changes, foreign host names (DNS
//!   rebinding) and, in read-only mode, every change.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use sluice_client::ClientConfig;
use tokio_util::sync::CancellationToken;

mod browse;
mod error;
mod guard;
mod layout;
mod pages;
mod sampler;
mod state;

pub use error::ConsoleError;
pub use state::AppState;

/// How the console runs.
#[derive(Debug, Clone)]
pub struct ConsoleOptions {
    /// The cluster's `bootstrap.servers` (and any other client property).
    pub client: ClientConfig,
    /// Hide and refuse every change.
    pub read_only: bool,
    /// How often the snapshot is refreshed.
    pub sample_interval: std::time::Duration,
    /// Host names (besides IP addresses and `localhost`) the console answers
    /// to: the name a proxy or ingress serves it under.
    pub allowed_hosts: Vec<String>,
}

impl ConsoleOptions {
    pub fn new(bootstrap: &str) -> Self {
        ConsoleOptions {
            client: ClientConfig::new(bootstrap),
            read_only: false,
            sample_interval: std::time::Duration::from_secs(5),
            allowed_hosts: Vec::new(),
        }
    }
}

/// The console's routes on `state`.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(pages::overview::page))
        .route("/assets/style.css", get(layout::stylesheet))
        .route("/assets/console.js", get(layout::script))
        .route(
            "/topics",
            get(pages::topics::list).post(pages::topics::create),
        )
        .route("/topics/{topic}", get(pages::topic::detail))
        .route("/topics/{topic}/delete", post(pages::topics::delete))
        .route(
            "/topics/{topic}/partitions",
            post(pages::topics::add_partitions),
        )
        .route(
            "/topics/{topic}/configs",
            post(pages::topics::alter_configs),
        )
        .route("/topics/{topic}/redrive", post(pages::topics::redrive))
        .route("/topics/{topic}/messages", get(pages::messages::browse))
        .route(
            "/topics/{topic}/messages/stream",
            get(pages::messages::stream),
        )
        .route("/topics/{topic}/produce", post(pages::messages::produce))
        .route("/groups", get(pages::groups::list))
        .route("/groups/{group}", get(pages::groups::detail))
        .route(
            "/groups/{group}/reset",
            get(pages::groups::reset_preview).post(pages::groups::reset_apply),
        )
        .route("/groups/{group}/delete", post(pages::groups::delete))
        .fallback(pages::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::check,
        ))
        .with_state(state)
}

/// Serves the console on `listen` until `shutdown`; returns the bound
/// address once listening (port 0 picks one).
pub async fn serve(
    options: ConsoleOptions,
    listen: SocketAddr,
    shutdown: CancellationToken,
) -> Result<SocketAddr, ConsoleError> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| ConsoleError::Bind {
            addr: listen.to_string(),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ConsoleError::Bind {
        addr: listen.to_string(),
        source,
    })?;
    let state = AppState::start(options, shutdown.clone())?;
    let app = router(state);
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "console server stopped");
        }
    });
    tracing::info!(%addr, "console listening");
    Ok(addr)
}
