//! Durability for the embedded store: an append-only JSON-lines log of committed changes,
//! fsync'd per write, folded into a snapshot file once it grows.
//!
//! Recovery reads the snapshot, then replays log records newer than it. A torn last line
//! (crash mid-append) is cut off; anything else that does not parse is `Corrupt`.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{EventKind, KeyValue, MetaError, WatchEvent};

const LOG_FILE: &str = "metadata.log";
const SNAPSHOT_FILE: &str = "metadata.snapshot";

#[derive(Serialize, Deserialize)]
struct LogRecord {
    rev: i64,
    changes: Vec<Change>,
}

#[derive(Serialize, Deserialize)]
enum Change {
    Put(KeyValue),
    Delete(String),
}

#[derive(Serialize, Deserialize)]
struct Snapshot {
    revision: i64,
    kvs: Vec<KeyValue>,
}

/// State rebuilt from disk.
pub(crate) struct Recovered {
    pub(crate) kvs: BTreeMap<String, KeyValue>,
    pub(crate) revision: i64,
}

pub(crate) struct Wal {
    dir: PathBuf,
    log: File,
    log_bytes: u64,
    snapshot_after_bytes: u64,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> MetaError + '_ {
    move |source| MetaError::Io {
        path: path.to_owned(),
        source,
    }
}

impl Wal {
    pub(crate) fn open(
        dir: &Path,
        snapshot_after_bytes: u64,
    ) -> Result<(Self, Recovered), MetaError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let mut recovered = Recovered {
            kvs: BTreeMap::new(),
            revision: 0,
        };

        let snap_path = dir.join(SNAPSHOT_FILE);
        match fs::read(&snap_path) {
            Ok(bytes) => {
                let snap: Snapshot =
                    serde_json::from_slice(&bytes).map_err(|e| MetaError::Corrupt {
                        path: snap_path.clone(),
                        reason: e.to_string(),
                    })?;
                recovered.revision = snap.revision;
                recovered.kvs = snap
                    .kvs
                    .into_iter()
                    .map(|kv| (kv.key.clone(), kv))
                    .collect();
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&snap_path)(e)),
        }

        let log_path = dir.join(LOG_FILE);
        let existed = log_path.exists();
        let mut log = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&log_path)
            .map_err(io(&log_path))?;
        if !existed {
            // Make the new file's directory entry durable too.
            sync_dir(dir)?;
        }
        let mut bytes = Vec::new();
        log.read_to_end(&mut bytes).map_err(io(&log_path))?;

        let mut good_len = 0usize;
        let mut rest = &bytes[..];
        while let Some(nl) = rest.iter().position(|b| *b == b'\n') {
            let line = &rest[..nl];
            let record: LogRecord =
                serde_json::from_slice(line).map_err(|e| MetaError::Corrupt {
                    path: log_path.clone(),
                    reason: format!("record at byte {good_len}: {e}"),
                })?;
            // Records at or below the snapshot revision are already in it (crash between
            // writing the snapshot and truncating the log).
            if record.rev > recovered.revision {
                for change in record.changes {
                    match change {
                        Change::Put(kv) => {
                            recovered.kvs.insert(kv.key.clone(), kv);
                        }
                        Change::Delete(key) => {
                            recovered.kvs.remove(&key);
                        }
                    }
                }
                recovered.revision = record.rev;
            }
            good_len += nl + 1;
            rest = &rest[nl + 1..];
        }
        if good_len < bytes.len() {
            tracing::warn!(
                path = %log_path.display(),
                torn_bytes = bytes.len() - good_len,
                "cutting off a torn metadata log record"
            );
            log.set_len(good_len as u64).map_err(io(&log_path))?;
            log.sync_all().map_err(io(&log_path))?;
        }

        let wal = Wal {
            dir: dir.to_owned(),
            log,
            log_bytes: good_len as u64,
            snapshot_after_bytes,
        };
        Ok((wal, recovered))
    }

    /// Durably appends one committed revision. Returns once the record is fsync'd.
    pub(crate) fn append(&mut self, rev: i64, events: &[WatchEvent]) -> Result<(), MetaError> {
        let record = LogRecord {
            rev,
            changes: events
                .iter()
                .map(|e| match e.kind {
                    EventKind::Put => Change::Put(e.kv.clone()),
                    EventKind::Delete => Change::Delete(e.kv.key.clone()),
                })
                .collect(),
        };
        let mut line = serde_json::to_vec(&record).expect("log records always serialize");
        line.push(b'\n');
        let path = self.dir.join(LOG_FILE);
        if let Err(e) = self
            .log
            .write_all(&line)
            .and_then(|()| self.log.sync_data())
        {
            // Drop any partial record so that a later append does not follow garbage,
            // which recovery would (rightly) call corruption. Best effort: the caller
            // reports the original error either way.
            let _ = self.log.set_len(self.log_bytes);
            return Err(io(&path)(e));
        }
        self.log_bytes += line.len() as u64;
        Ok(())
    }

    pub(crate) fn wants_snapshot(&self) -> bool {
        self.log_bytes >= self.snapshot_after_bytes
    }

    /// Replaces the snapshot with `kvs` at `revision` and empties the log.
    pub(crate) fn snapshot<'a>(
        &mut self,
        revision: i64,
        kvs: impl Iterator<Item = &'a KeyValue>,
    ) -> Result<(), MetaError> {
        let snap = Snapshot {
            revision,
            kvs: kvs.cloned().collect(),
        };
        let bytes = serde_json::to_vec(&snap).expect("snapshots always serialize");
        let tmp = self.dir.join(format!("{SNAPSHOT_FILE}.tmp"));
        let path = self.dir.join(SNAPSHOT_FILE);
        {
            let mut f = File::create(&tmp).map_err(io(&tmp))?;
            f.write_all(&bytes).map_err(io(&tmp))?;
            f.sync_all().map_err(io(&tmp))?;
        }
        fs::rename(&tmp, &path).map_err(io(&path))?;
        // The rename must be durable before the log it replaces is emptied.
        sync_dir(&self.dir)?;
        let log_path = self.dir.join(LOG_FILE);
        self.log.set_len(0).map_err(io(&log_path))?;
        self.log.sync_all().map_err(io(&log_path))?;
        self.log_bytes = 0;
        Ok(())
    }
}

fn sync_dir(dir: &Path) -> Result<(), MetaError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}
