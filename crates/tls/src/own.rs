//! Connections a Sluice process opened to a port of its own, as its services
//! call each other (`sluice standalone` runs all of them in one process, and
//! the broker reaches the controller and coordinator through the shared
//! port). The process records each such connection's two ends while it is
//! open; a server that sees a request come in on exactly that pair (its
//! remote end the client's local address, its local end the client's peer)
//! knows the caller is this process. The kernel keeps a TCP 4-tuple unique,
//! so another process cannot hold the same pair at the same time.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::LazyLock;

use parking_lot::Mutex;

/// (client's local, client's peer) -> open connections with those ends.
static OWN: LazyLock<Mutex<HashMap<(SocketAddr, SocketAddr), usize>>> =
    LazyLock::new(Default::default);

/// Holds a connection's ends in the set while it is open.
#[derive(Debug)]
pub(crate) struct OwnMark((SocketAddr, SocketAddr));

impl OwnMark {
    pub(crate) fn new(local: SocketAddr, peer: SocketAddr) -> Self {
        *OWN.lock().entry((local, peer)).or_default() += 1;
        OwnMark((local, peer))
    }
}

impl Drop for OwnMark {
    fn drop(&mut self) {
        let mut own = OWN.lock();
        if let Some(n) = own.get_mut(&self.0) {
            *n -= 1;
            if *n == 0 {
                own.remove(&self.0);
            }
        }
    }
}

/// Whether a connection that came in from `remote` on the server's `local`
/// address was opened by this process's own services
/// ([`crate::internal_channel`]).
pub fn is_own_connection(remote: SocketAddr, local: SocketAddr) -> bool {
    OWN.lock().contains_key(&(remote, local))
}
