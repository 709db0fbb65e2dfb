//! Connections a Sluice process opened to a port of its own, as its services
//! call each other (`sluice standalone` runs all of them in one process, and
//! the broker reaches the controller and coordinator through the shared
//! port). The process knows each such connection's local address while it is
//! open; a server that sees a request come from one of them knows the caller
//! is this process, with no credential to configure or leak. Another process
//! cannot hold the same address at the same time, so it cannot pass for one.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::LazyLock;

use parking_lot::Mutex;

static OWN: LazyLock<Mutex<HashSet<SocketAddr>>> = LazyLock::new(Default::default);

/// Holds an address in the set while its connection is open.
#[derive(Debug)]
pub(crate) struct OwnMark(SocketAddr);

impl OwnMark {
    pub(crate) fn new(local: SocketAddr) -> Self {
        OWN.lock().insert(local);
        OwnMark(local)
    }
}

impl Drop for OwnMark {
    fn drop(&mut self) {
        OWN.lock().remove(&self.0);
    }
}

/// Whether a connection whose far end is `remote` was opened by this
/// process's own services ([`crate::internal_channel`]).
pub fn is_own_connection(remote: SocketAddr) -> bool {
    OWN.lock().contains(&remote)
}
