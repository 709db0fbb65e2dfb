//! Kafka's text checkpoint files, written atomically (tmp file, fsync,
//! rename, fsync dir) so a crash leaves either the old or the new file.
//!
//! Format: a version line `0`, a count line, then one entry per line.

use std::collections::HashMap;
use std::fs::File;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use crate::error::{StorageError, io_err};

/// Broker-level file with each partition's recovery point.
pub const RECOVERY_POINT_CHECKPOINT: &str = "recovery-point-offset-checkpoint";
/// Broker-level file with each partition's high watermark.
pub const REPLICATION_CHECKPOINT: &str = "replication-offset-checkpoint";
/// Per log dir: log start offsets moved by DeleteRecords (Kafka's file).
pub const LOG_START_CHECKPOINT: &str = "log-start-offset-checkpoint";

/// Writes `contents` to `path` atomically.
pub fn write_atomic(path: &Path, contents: &str) -> Result<(), StorageError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = File::create(&tmp).map_err(io_err("create checkpoint", &tmp))?;
    f.write_all(contents.as_bytes())
        .map_err(io_err("write checkpoint", &tmp))?;
    f.sync_all().map_err(io_err("fsync checkpoint", &tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io_err("rename checkpoint", path))?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Makes renames, creations and deletions in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync dir", dir))
}

/// Writes a versioned checkpoint of `lines`.
pub fn write_lines(path: &Path, lines: &[String]) -> Result<(), StorageError> {
    let mut s = format!("0\n{}\n", lines.len());
    for l in lines {
        s.push_str(l);
        s.push('\n');
    }
    write_atomic(path, &s)
}

/// Reads a versioned checkpoint; `Ok(None)` if the file does not exist.
pub fn read_lines(path: &Path) -> Result<Option<Vec<String>>, StorageError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("read checkpoint", path)(e)),
    };
    let bad = |reason: String| StorageError::InvalidCheckpoint {
        path: path.to_path_buf(),
        reason,
    };
    let mut lines = text.lines();
    match lines.next() {
        Some("0") => {}
        other => return Err(bad(format!("unsupported version line {other:?}"))),
    }
    let count: usize = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| bad("missing or bad count line".into()))?;
    let entries: Vec<String> = lines
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect();
    if entries.len() != count {
        return Err(bad(format!(
            "expected {count} entries, found {}",
            entries.len()
        )));
    }
    Ok(Some(entries))
}

/// Per-partition offsets as (topic, partition) -> offset.
pub type OffsetMap = HashMap<(String, i32), i64>;

/// Writes `<topic> <partition> <offset>` entries.
pub fn write_offsets(path: &Path, entries: &[(&str, i32, i64)]) -> Result<(), StorageError> {
    let lines: Vec<String> = entries
        .iter()
        .map(|(t, p, o)| format!("{t} {p} {o}"))
        .collect();
    write_lines(path, &lines)
}

/// Reads `<topic> <partition> <offset>` entries; empty if the file is missing.
pub fn read_offsets(path: &Path) -> Result<OffsetMap, StorageError> {
    let mut out = HashMap::new();
    for line in read_lines(path)?.unwrap_or_default() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let parsed = match parts.as_slice() {
            [t, p, o] => p
                .parse::<i32>()
                .ok()
                .zip(o.parse::<i64>().ok())
                .map(|(p, o)| (t.to_string(), p, o)),
            _ => None,
        };
        let (t, p, o) = parsed.ok_or_else(|| StorageError::InvalidCheckpoint {
            path: PathBuf::from(path),
            reason: format!("bad entry {line:?}"),
        })?;
        out.insert((t, p), o);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(REPLICATION_CHECKPOINT);
        assert!(read_offsets(&p).unwrap().is_empty());
        write_offsets(&p, &[("a-b", 0, 5), ("c", 3, 9)]).unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "0\n2\na-b 0 5\nc 3 9\n"
        );
        let m = read_offsets(&p).unwrap();
        assert_eq!(m[&("a-b".to_string(), 0)], 5);
        assert_eq!(m[&("c".to_string(), 3)], 9);
        std::fs::write(&p, "0\n3\na 0 1\n").unwrap();
        assert!(matches!(
            read_offsets(&p),
            Err(StorageError::InvalidCheckpoint { .. })
        ));
    }
}
