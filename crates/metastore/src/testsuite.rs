//! The conformance suite every [`MetadataStore`] must pass, and [`EtcdServer`], a
//! throwaway etcd process for tests. Behind the `testsuite` feature.
//!
//! Each suite function takes a fresh store (or a fresh namespace of a shared one) and
//! panics on the first violated expectation. Waits use generous timeouts only for things
//! that must happen; nothing asserts on elapsed wall-clock time.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::StreamExt;

use crate::{
    Compare, EtcdMetadataStore, EventKind, LeaseId, MetaError, MetadataStore, Op, Txn, WatchEvent,
    WatchStream,
};

/// TTL used by the lease tests: etcd's minimum is about 1.5 election timeouts.
pub const LEASE_TTL: Duration = Duration::from_secs(2);
/// Upper bound for anything that must eventually happen.
pub const PATIENCE: Duration = Duration::from_secs(20);

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(PATIENCE, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {PATIENCE:?} waiting for {what}"),
    }
}

/// Next batch of a watch, which must arrive.
pub async fn next_batch(watch: &mut WatchStream) -> Vec<WatchEvent> {
    match within("a watch batch", watch.next()).await {
        Some(Ok(batch)) => batch,
        Some(Err(e)) => panic!("watch failed: {e}"),
        None => panic!("watch ended"),
    }
}

fn summary(batch: &[WatchEvent]) -> Vec<(EventKind, &str, i64)> {
    batch
        .iter()
        .map(|e| (e.kind, e.kv.key.as_str(), e.kv.mod_revision))
        .collect()
}

fn keys(kvs: &[crate::KeyValue]) -> Vec<&str> {
    kvs.iter().map(|kv| kv.key.as_str()).collect()
}

/// get / put / delete / range / delete_prefix, with revision bookkeeping.
pub async fn kv_basics(store: Arc<dyn MetadataStore>) {
    assert_eq!(store.get("kv/a").await.unwrap(), None);
    let r1 = store.put("kv/a", b"1".to_vec(), 0).await.unwrap();
    assert!(r1 > 0);
    let a = store.get("kv/a").await.unwrap().expect("kv/a after put");
    assert_eq!(
        (
            a.value.as_slice(),
            a.create_revision,
            a.mod_revision,
            a.version,
            a.lease
        ),
        (&b"1"[..], r1, r1, 1, 0)
    );
    let r2 = store.put("kv/a", b"2".to_vec(), 0).await.unwrap();
    assert!(r2 > r1);
    let a = store.get("kv/a").await.unwrap().unwrap();
    assert_eq!((a.create_revision, a.mod_revision, a.version), (r1, r2, 2));

    store.put("kv/c", b"c".to_vec(), 0).await.unwrap();
    store.put("kv/a/x", b"ax".to_vec(), 0).await.unwrap();
    let last = store.put("kw/outside", b"o".to_vec(), 0).await.unwrap();
    let (kvs, at) = store.range("kv/").await.unwrap();
    assert_eq!(
        keys(&kvs),
        ["kv/a", "kv/a/x", "kv/c"],
        "sorted, prefix only"
    );
    assert!(
        at >= last,
        "range revision {at} must cover the last write {last}"
    );

    assert!(store.delete("kv/c").await.unwrap());
    assert!(!store.delete("kv/c").await.unwrap());
    assert_eq!(store.get("kv/c").await.unwrap(), None);
    assert_eq!(store.delete_prefix("kv/").await.unwrap(), 2);
    assert!(store.range("kv/").await.unwrap().0.is_empty());
    assert!(store.get("kw/outside").await.unwrap().is_some());
}

/// Compare-and-swap in both directions, every compare kind, multi-op txns.
pub async fn txn_cas(store: Arc<dyn MetadataStore>) {
    let r1 = store.put("txn/k", b"v1".to_vec(), 0).await.unwrap();

    let ok = store
        .txn(
            Txn::new()
                .when(Compare::mod_revision_eq("txn/k", r1))
                .and_then(Op::put("txn/k", "v2"))
                .or_else(Op::put("txn/failed", "x")),
        )
        .await
        .unwrap();
    assert!(ok.succeeded);
    assert!(ok.revision > r1);
    assert_eq!(store.get("txn/k").await.unwrap().unwrap().value, b"v2");

    // The same stale CAS now fails and runs the failure branch instead.
    let stale = store
        .txn(
            Txn::new()
                .when(Compare::mod_revision_eq("txn/k", r1))
                .and_then(Op::put("txn/k", "v3"))
                .or_else(Op::put("txn/failed", "x")),
        )
        .await
        .unwrap();
    assert!(!stale.succeeded);
    assert_eq!(store.get("txn/k").await.unwrap().unwrap().value, b"v2");
    assert!(store.get("txn/failed").await.unwrap().is_some());

    // A failed txn without failure ops writes nothing and leaves the revision alone.
    let before = store.range("txn/").await.unwrap().1;
    let noop = store
        .txn(
            Txn::new()
                .when(Compare::value_eq("txn/k", "nope"))
                .and_then(Op::delete("txn/k")),
        )
        .await
        .unwrap();
    assert!(!noop.succeeded);
    assert_eq!(noop.revision, before);

    // Create-if-absent.
    let create = || {
        Txn::new()
            .when(Compare::absent("txn/new"))
            .and_then(Op::put("txn/new", "first"))
    };
    assert!(store.txn(create()).await.unwrap().succeeded);
    assert!(!store.txn(create()).await.unwrap().succeeded);
    assert_eq!(store.get("txn/new").await.unwrap().unwrap().value, b"first");

    // Value and version compares, and several ops landing at one revision.
    let multi = store
        .txn(
            Txn::new()
                .when(Compare::value_eq("txn/k", "v2"))
                .when(Compare::version_eq("txn/k", 2))
                .when(Compare::present("txn/new"))
                .and_then(Op::put("txn/m1", "1"))
                .and_then(Op::put("txn/m2", "2"))
                .and_then(Op::delete("txn/failed")),
        )
        .await
        .unwrap();
    assert!(multi.succeeded);
    let m1 = store.get("txn/m1").await.unwrap().unwrap();
    let m2 = store.get("txn/m2").await.unwrap().unwrap();
    assert_eq!(m1.mod_revision, multi.revision);
    assert_eq!(m2.mod_revision, multi.revision);
    assert_eq!(store.get("txn/failed").await.unwrap(), None);

    let wipe = store
        .txn(Txn::new().and_then(Op::delete_prefix("txn/m")))
        .await
        .unwrap();
    assert!(wipe.succeeded);
    assert_eq!(
        keys(&store.range("txn/").await.unwrap().0),
        ["txn/k", "txn/new"]
    );
}

/// A watch from a past revision replays puts and deletes in order, one batch per
/// revision, then continues live; other prefixes stay out.
pub async fn watch_from_revision(store: Arc<dyn MetadataStore>) {
    let r1 = store.put("w/a", b"1".to_vec(), 0).await.unwrap();
    let r2 = store.put("w/b", b"2".to_vec(), 0).await.unwrap();
    store.put("x/ignored", b"-".to_vec(), 0).await.unwrap();
    assert!(store.delete("w/a").await.unwrap());
    let r3 = store.get("x/ignored").await.unwrap().unwrap().mod_revision + 1;

    let mut from_now = store.watch_prefix("w/", 0).await.unwrap();
    let mut watch = store.watch_prefix("w/", r1).await.unwrap();
    assert_eq!(
        summary(&next_batch(&mut watch).await),
        [(EventKind::Put, "w/a", r1)]
    );
    let b = next_batch(&mut watch).await;
    assert_eq!(summary(&b), [(EventKind::Put, "w/b", r2)]);
    assert_eq!(b[0].kv.value, b"2");
    assert_eq!(
        summary(&next_batch(&mut watch).await),
        [(EventKind::Delete, "w/a", r3)]
    );

    // Live: a two-key txn arrives as one batch at one revision.
    let t = store
        .txn(
            Txn::new()
                .and_then(Op::put("w/c", "3"))
                .and_then(Op::put("w/d", "4")),
        )
        .await
        .unwrap();
    let expected = [
        (EventKind::Put, "w/c", t.revision),
        (EventKind::Put, "w/d", t.revision),
    ];
    assert_eq!(summary(&next_batch(&mut watch).await), expected);
    // A watch "from now" sees only what happened after it started.
    assert_eq!(summary(&next_batch(&mut from_now).await), expected);

    let r5 = store.put("w/b", b"22".to_vec(), 0).await.unwrap();
    let b = next_batch(&mut watch).await;
    assert_eq!(summary(&b), [(EventKind::Put, "w/b", r5)]);
    assert_eq!((b[0].kv.create_revision, b[0].kv.version), (r2, 2));
}

/// Keys bound to a kept-alive lease outlive its TTL; once keep-alive stops they vanish
/// with a Delete event, and the lease is gone.
pub async fn lease_keep_alive_and_expiry(store: Arc<dyn MetadataStore>) {
    let lease = store.grant_lease(LEASE_TTL).await.unwrap();
    let rev = store.put("lease/eph", b"e".to_vec(), lease).await.unwrap();
    let rev = store
        .put("lease/durable", b"d".to_vec(), 0)
        .await
        .unwrap()
        .max(rev);
    assert_eq!(store.get("lease/eph").await.unwrap().unwrap().lease, lease);
    let keeper = store.keep_alive(lease).await.unwrap();
    assert_eq!(keeper.lease(), lease);

    tokio::time::sleep(LEASE_TTL + LEASE_TTL / 2).await;
    assert!(
        store.get("lease/eph").await.unwrap().is_some(),
        "keep-alive must keep the key past the TTL"
    );
    assert!(!keeper.is_lost());

    let mut watch = store.watch_prefix("lease/", rev + 1).await.unwrap();
    drop(keeper);
    let gone = next_batch(&mut watch).await;
    assert_eq!(gone.len(), 1);
    assert_eq!(
        (gone[0].kind, gone[0].kv.key.as_str()),
        (EventKind::Delete, "lease/eph")
    );
    assert_eq!(store.get("lease/eph").await.unwrap(), None);
    assert!(store.get("lease/durable").await.unwrap().is_some());
    match store.put("lease/late", b"x".to_vec(), lease).await {
        Err(MetaError::LeaseNotFound { lease: l }) => assert_eq!(l, lease),
        other => panic!("put on an expired lease: expected LeaseNotFound, got {other:?}"),
    }
}

/// Revoking a lease deletes its keys at once and fires `lost()` on its keeper.
pub async fn lease_revoke(store: Arc<dyn MetadataStore>) {
    let lease = store.grant_lease(Duration::from_secs(30)).await.unwrap();
    store.put("revoke/a", b"a".to_vec(), lease).await.unwrap();
    store
        .txn(Txn::new().and_then(Op::put_with_lease("revoke/b", "b", lease)))
        .await
        .unwrap();
    store.put("revoke/keep", b"k".to_vec(), 0).await.unwrap();
    let keeper = store.keep_alive(lease).await.unwrap();

    store.revoke_lease(lease).await.unwrap();
    assert_eq!(
        keys(&store.range("revoke/").await.unwrap().0),
        ["revoke/keep"]
    );
    within("lost() after revoke", keeper.lost()).await;
    assert!(keeper.is_lost());

    assert!(matches!(
        store.revoke_lease(lease).await,
        Err(MetaError::LeaseNotFound { .. })
    ));
    assert!(matches!(
        store.keep_alive(lease).await,
        Err(MetaError::LeaseNotFound { .. })
    ));
}

/// Lowest create revision leads; a waiting candidate wins when the leader's lease goes;
/// a candidate whose own lease goes fails; `leader_held` fences deposed leaders.
pub async fn election(store: Arc<dyn MetadataStore>) {
    let ttl = Duration::from_secs(60);
    let (la, lb, lc) = (
        store.grant_lease(ttl).await.unwrap(),
        store.grant_lease(ttl).await.unwrap(),
        store.grant_lease(ttl).await.unwrap(),
    );
    assert_eq!(store.leader("elect").await.unwrap(), None);
    let a = within(
        "uncontested campaign",
        store.campaign("elect", b"a".to_vec(), la),
    )
    .await
    .unwrap();
    assert_eq!((a.election.as_str(), a.lease), ("elect", la));
    let current = store.leader("elect").await.unwrap().expect("a leads");
    assert_eq!(
        (current.key.as_str(), current.value.as_slice()),
        (a.key.as_str(), &b"a"[..])
    );
    assert_eq!(current.create_revision, a.revision);

    // Campaigning again with the same lease keeps the same place and epoch.
    let again = store.campaign("elect", b"a2".to_vec(), la).await.unwrap();
    assert_eq!(
        (again.key.as_str(), again.revision),
        (a.key.as_str(), a.revision)
    );

    let spawn_campaign = |value: &'static str, lease: LeaseId| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .campaign("elect", value.as_bytes().to_vec(), lease)
                .await
        })
    };
    // Start c only once b's key exists, so b is next in line.
    let now = store.range("elect/").await.unwrap().1;
    let mut candidates = store.watch_prefix("elect/", now + 1).await.unwrap();
    let mut b = spawn_campaign("b", lb);
    let joined = next_batch(&mut candidates).await;
    assert_eq!(
        (joined[0].kind, joined[0].kv.value.as_slice()),
        (EventKind::Put, &b"b"[..])
    );
    let mut c = spawn_campaign("c", lc);
    // Both must still be waiting; this can only fail if they wrongly win.
    assert!(
        tokio::time::timeout(Duration::from_millis(500), &mut b)
            .await
            .is_err()
    );
    assert!(!c.is_finished());

    assert!(
        store
            .txn(Txn::fenced(&a).and_then(Op::put("elect-state", "a")))
            .await
            .unwrap()
            .succeeded
    );
    store.revoke_lease(la).await.unwrap();
    let b = within("b to win after a's lease is revoked", b)
        .await
        .unwrap()
        .expect("b's campaign");
    assert!(b.revision > a.revision, "epochs grow");
    assert_eq!(store.leader("elect").await.unwrap().unwrap().value, b"b");

    // The deposed leader's fenced writes now fail; the new leader's succeed.
    let deposed = store
        .txn(Txn::fenced(&a).and_then(Op::put("elect-state", "stale")))
        .await
        .unwrap();
    assert!(!deposed.succeeded);
    let fresh = store
        .txn(Txn::fenced(&b).and_then(Op::put("elect-state", "b")))
        .await
        .unwrap();
    assert!(fresh.succeeded);
    assert_eq!(store.get("elect-state").await.unwrap().unwrap().value, b"b");

    // c is still waiting behind b; losing its own lease ends its campaign with an error.
    assert!(!c.is_finished());
    store.revoke_lease(lc).await.unwrap();
    match within("c's campaign to fail", &mut c).await.unwrap() {
        Err(MetaError::LeaseNotFound { lease }) => assert_eq!(lease, lc),
        other => panic!("campaign without a lease: expected LeaseNotFound, got {other:?}"),
    }

    store.resign(&b).await.unwrap();
    assert_eq!(store.leader("elect").await.unwrap(), None);
    assert!(
        !store
            .txn(Txn::fenced(&b).and_then(Op::put("elect-state", "x")))
            .await
            .unwrap()
            .succeeded
    );
    store.revoke_lease(lb).await.unwrap();
}

/// A unique key namespace per test, so tests can share one etcd.
pub fn unique_namespace(test: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "/sluice-test/{}-{}/{test}/",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A single-member etcd on free 127.0.0.1 ports with a temporary data dir.
///
/// The process runs under a small `sh` watchdog that kills etcd and removes the data dir
/// when our end of its stdin closes, so etcd also goes away if the test binary exits
/// without running destructors (as with a `static` server).
#[derive(Debug)]
pub struct EtcdServer {
    child: Child,
    stdin: Option<ChildStdin>,
    client_url: String,
    dir: PathBuf,
}

const WATCHDOG: &str = r#"etcd_bin="$1"; dir="$2"; shift 2
"$etcd_bin" "$@" >"$dir/etcd.log" 2>&1 &
pid=$!
cat >/dev/null
kill "$pid" 2>/dev/null
wait "$pid"
rm -rf "$dir""#;

impl EtcdServer {
    /// Starts etcd and waits until it reports healthy. Panics with instructions if etcd
    /// is not installed.
    pub fn start() -> Self {
        let etcd = find_on_path("etcd").unwrap_or_else(|| {
            panic!(
                "etcd not found on PATH: the etcd tests need a real etcd. \
                 Run scripts/test.sh or `apt-get install etcd-server`"
            )
        });
        Self::start_with(&etcd, None)
    }

    /// Starts etcd serving TLS with `--client-cert-auth`: `cert` and `key`
    /// are its own, `ca` signs the clients' certificates (PEM files).
    pub fn start_tls(cert: &Path, key: &Path, ca: &Path) -> Self {
        let etcd = find_on_path("etcd").expect("etcd on PATH (scripts/test.sh installs it)");
        Self::start_with(&etcd, Some((cert, key, ca)))
    }

    fn start_with(etcd: &Path, tls: Option<(&Path, &Path, &Path)>) -> Self {
        let mut last_error = String::new();
        // Free ports are found by binding port 0 and releasing it; another process can
        // grab one in between, so try a few times.
        for _ in 0..3 {
            match Self::try_start(etcd, tls) {
                Ok(server) => return server,
                Err(e) => last_error = e,
            }
        }
        panic!("could not start etcd: {last_error}");
    }

    /// One etcd per test binary, started on first use.
    pub fn shared() -> &'static EtcdServer {
        static SERVER: OnceLock<EtcdServer> = OnceLock::new();
        SERVER.get_or_init(EtcdServer::start)
    }

    fn try_start(etcd: &Path, tls: Option<(&Path, &Path, &Path)>) -> Result<Self, String> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        // Prefer tmpfs: etcd fsyncs every write and the test machines are small.
        let base = Path::new("/dev/shm");
        let base = if base.is_dir() {
            base.to_owned()
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!(
            "sluice-etcd-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let (client_port, peer_port, health_port) = (free_port()?, free_port()?, free_port()?);
        let scheme = if tls.is_some() { "https" } else { "http" };
        let client_url = format!("{scheme}://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        // Health is asked over plain HTTP on a port of its own, TLS or not.
        let health_url = format!("http://127.0.0.1:{health_port}");
        let tls_args: Vec<std::ffi::OsString> = match tls {
            Some((cert, key, ca)) => vec![
                "--cert-file".into(),
                cert.into(),
                "--key-file".into(),
                key.into(),
                "--trusted-ca-file".into(),
                ca.into(),
                "--client-cert-auth".into(),
            ],
            None => Vec::new(),
        };
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("sh")
            .arg(etcd)
            .arg(&dir)
            .args(["--name", "default", "--data-dir"])
            .arg(dir.join("data"))
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("default={peer_url}")])
            .args(["--listen-metrics-urls", &health_url])
            .args(&tls_args)
            .args(["--logger", "zap", "--log-level", "warn"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawn sh for etcd: {e}"))?;
        let stdin = child.stdin.take();
        let mut server = EtcdServer {
            child,
            stdin,
            client_url,
            dir,
        };
        let deadline = std::time::Instant::now() + PATIENCE;
        while std::time::Instant::now() < deadline {
            if health_ok(health_port) {
                return Ok(server);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = server.log();
        server.stop();
        Err(format!(
            "etcd did not become healthy within {PATIENCE:?}; log:\n{log}"
        ))
    }

    /// The client URL, e.g. `http://127.0.0.1:41234`.
    pub fn endpoint(&self) -> &str {
        &self.client_url
    }

    /// etcd's own log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("etcd.log")).unwrap_or_default()
    }

    /// A store on a fresh namespace of this server.
    pub async fn connect(&self, namespace: &str) -> EtcdMetadataStore {
        EtcdMetadataStore::connect(std::slice::from_ref(&self.client_url), namespace, PATIENCE)
            .await
            .unwrap_or_else(|e| panic!("connect to test etcd: {e}\n{}", self.log()))
    }

    fn stop(&mut self) {
        // Closing stdin tells the watchdog to kill etcd and clean up.
        drop(self.stdin.take());
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("find a free port: {e}"))
}

/// etcd serves `/health` over plain HTTP on the client port.
fn health_ok(port: u16) -> bool {
    let Ok(mut conn) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    if conn
        .write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut body = String::new();
    let _ = conn.read_to_string(&mut body);
    body.contains(r#""health":"true""#)
}
