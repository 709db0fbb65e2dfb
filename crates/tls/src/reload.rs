//! [`Reloading`]: a configuration built from files and rebuilt when their
//! content changes. Polling, not inotify: Kubernetes rotates a mounted
//! secret by swapping a symlink, and cert-manager or a script may write the
//! certificate and the key one after the other; comparing contents on a
//! timer sees both, and a half-written pair (a build that fails) is retried
//! at the next tick while the old configuration keeps serving.

use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};

use crate::TlsError;

/// How often the files are compared with what the configuration was built from.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(5);

type Build<T> = Box<dyn Fn() -> Result<T, TlsError> + Send + Sync>;

pub(crate) struct Reloading<T> {
    what: &'static str,
    files: Vec<PathBuf>,
    current: RwLock<Arc<T>>,
    /// The files' contents when `current` was built (a missing file reads
    /// as empty), and the last reload error (logged once, not every tick).
    seen: Mutex<(Vec<Vec<u8>>, Option<String>)>,
    build: Build<T>,
}

fn contents(files: &[PathBuf]) -> Vec<Vec<u8>> {
    files
        .iter()
        .map(|f| std::fs::read(f).unwrap_or_default())
        .collect()
}

impl<T: Send + Sync + 'static> Reloading<T> {
    /// Builds the first configuration (an error here is the caller's: a
    /// service does not start with a broken TLS setup) and, inside a tokio
    /// runtime, polls for changes until every handle is dropped.
    pub(crate) fn start(
        what: &'static str,
        files: Vec<PathBuf>,
        interval: Duration,
        build: Build<T>,
    ) -> Result<Arc<Self>, TlsError> {
        let seen = contents(&files);
        let first = build()?;
        let me = Arc::new(Reloading {
            what,
            files,
            current: RwLock::new(Arc::new(first)),
            seen: Mutex::new((seen, None)),
            build,
        });
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(poll(Arc::downgrade(&me), interval));
        }
        Ok(me)
    }

    pub(crate) fn current(&self) -> Arc<T> {
        self.current.read().clone()
    }

    /// Rebuilds when a file changed; true when a new configuration is in
    /// place. On error the old one stays.
    pub(crate) fn check(&self) -> Result<bool, TlsError> {
        let now = contents(&self.files);
        if now == self.seen.lock().0 {
            return Ok(false);
        }
        let built = (self.build)()?;
        *self.current.write() = Arc::new(built);
        *self.seen.lock() = (now, None);
        Ok(true)
    }

    fn check_and_log(&self) {
        match self.check() {
            Ok(true) => {
                tracing::info!(what = self.what, files = ?self.files, "TLS files changed on disk; reloaded (new connections use them)")
            }
            Ok(false) => {}
            Err(e) => {
                let message = e.to_string();
                let mut seen = self.seen.lock();
                if seen.1.as_deref() != Some(message.as_str()) {
                    tracing::error!(what = self.what, error = %message, "TLS files changed on disk but cannot be used; still serving the previous ones");
                    seen.1 = Some(message);
                }
            }
        }
    }
}

async fn poll<T: Send + Sync + 'static>(me: Weak<Reloading<T>>, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(me) = me.upgrade() else { return };
        me.check_and_log();
    }
}
