//! An in-memory single-node broker + controller for trying the client and
//! the `sluice` CLI before the real server exists. Not a server: no disk, no
//! replication, nothing survives a restart.
//!
//! `cargo run -p sluice-client --example mock_cluster -- 9092`

#[allow(dead_code)]
#[path = "../tests/support/mock.rs"]
mod mock;

#[tokio::main]
async fn main() {
    let port = std::env::args()
        .nth(1)
        .map(|p| p.parse().expect("a port number"))
        .unwrap_or(9092);
    let addr = mock::start_on(port).await;
    eprintln!("mock cluster listening on {addr}");
    let _ = tokio::signal::ctrl_c().await;
}
