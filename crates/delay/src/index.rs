//! The timer index of one partition replica: its pending delayed records as
//! (due, offset) entries, in release order.
//!
//! Built only from the replica's own log (the broker feeds it every pending
//! record and every release or cancellation, in log order), so every replica
//! has one and a new leader starts releasing at once.
//!
//! - **Near in memory, far on disk.** New entries go to an in-memory sorted
//!   tail. Committed ones (below the high watermark) are sealed, once there
//!   are [`SEAL_AT`] of them or at a checkpoint, into an immutable run file
//!   of sorted 16-byte entries. Reading is a k-way merge of the tail and the
//!   runs, each run read a window at a time. More than [`MAX_RUNS`] runs are
//!   merged into one. Memory stays bounded by the tail, whatever the count.
//! - **Released and cancelled** entries are marked *done*, with the log
//!   offset of the record that said so. A mark below the high watermark is
//!   final: the run heads it covers are skipped for good and a merge drops
//!   it; a mark above it may be truncated away with the log.
//! - **Truncation** (a follower cut back to its leader's log) only touches
//!   what is uncommitted, which is all in memory: runs hold committed
//!   entries only, so an index never points past its log.
//! - **Checkpoint** (`checkpoint` in the index directory): the runs, their
//!   consumed heads, the final marks still unapplied, and `sealed_through`,
//!   the log offset to replay from after a restart. Replaying from there
//!   rebuilds the tail only, never the runs.

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::DelayError;

/// Committed tail entries that trigger a seal into a run (1 MiB of entries).
pub const SEAL_AT: usize = 64 * 1024;
/// More runs than this are merged into one.
pub const MAX_RUNS: usize = 8;
/// Entries read from a run at a time (4 KiB).
const WINDOW: usize = 256;
const ENTRY_SIZE: usize = 16;
const RUN_MAGIC: &[u8; 8] = b"SLDLYRN1";
const CHECKPOINT: &str = "checkpoint";
const CHECKPOINT_HEADER: &str = "sluice timer index v1";

/// One pending record: released in (due, offset) order, so records due at
/// the same millisecond come out in the order they were produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Entry {
    pub due_ms: i64,
    pub offset: i64,
}

/// What [`TimerIndex::summary`] reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub pending: u64,
    /// -1 when nothing is pending.
    pub next_due_ms: i64,
    pub last_due_ms: i64,
    /// Due within a minute, an hour, a day, and later.
    pub due_within: [u64; 4],
}

#[derive(Debug)]
struct Run {
    name: String,
    len: usize,
    /// Entries before this are consumed (finally done).
    pos: usize,
}

/// See the module docs.
#[derive(Debug)]
pub struct TimerIndex {
    dir: PathBuf,
    tail: BTreeSet<Entry>,
    runs: Vec<Run>,
    /// Done entries by offset: the log offset of the release or cancel.
    done: HashMap<i64, i64>,
    /// Offsets below this are committed (the high watermark last given).
    committed: i64,
    /// Replay from here after a restart (see the module docs).
    sealed_through: i64,
    next_run: u64,
    seal_at: usize,
    /// The smallest offset ever added: a mark for an id below it names a
    /// record this index never held (deleted by retention before this
    /// replica indexed the log), and is ignored.
    first_offset: i64,
}

/// Marks kept before the run heads they cover are skipped for good (which
/// reads the runs: not on every high-watermark move).
const CONSUME_AT: usize = 4096;

impl TimerIndex {
    /// Opens the index in `dir` (created if missing) as its last
    /// checkpoint left it; the caller replays the log from
    /// [`TimerIndex::replay_from`].
    pub fn open(dir: &Path) -> Result<TimerIndex, DelayError> {
        fs::create_dir_all(dir).map_err(|e| DelayError::io(dir, e))?;
        let mut index = TimerIndex {
            dir: dir.to_path_buf(),
            tail: BTreeSet::new(),
            runs: Vec::new(),
            done: HashMap::new(),
            committed: 0,
            sealed_through: 0,
            next_run: 0,
            seal_at: SEAL_AT,
            first_offset: i64::MAX,
        };
        let path = dir.join(CHECKPOINT);
        match fs::read_to_string(&path) {
            Ok(text) => index.load_checkpoint(&path, &text)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(DelayError::io(&path, e)),
        }
        index.committed = index.sealed_through;
        Ok(index)
    }

    /// The first log offset the caller must feed again after [`open`](Self::open).
    pub fn replay_from(&self) -> i64 {
        self.sealed_through
    }

    /// Pending entries (not released, not cancelled).
    pub fn pending(&self) -> usize {
        (self.tail.len() + self.runs.iter().map(|r| r.len - r.pos).sum::<usize>())
            .saturating_sub(self.done.len())
    }

    /// Whether the entry at `offset` was released or cancelled (as far as
    /// the marks not yet applied tell; a consumed one is no longer known).
    pub fn is_done(&self, offset: i64) -> bool {
        self.done.contains_key(&offset)
    }

    /// A pending record at `entry.offset` (fed in log order).
    pub fn add(&mut self, entry: Entry) {
        self.first_offset = self.first_offset.min(entry.offset);
        self.tail.insert(entry);
    }

    /// The record at `at` released or cancelled the pending record at `id`.
    pub fn mark_done(&mut self, id: i64, at: i64) {
        if id >= self.first_offset {
            self.done.entry(id).or_insert(at);
        }
    }

    /// The high watermark moved to `hw`: what lies below is committed. No
    /// I/O: sealing is [`TimerIndex::upkeep`]'s.
    pub fn commit(&mut self, hw: i64) {
        self.committed = self.committed.max(hw);
    }

    /// Seals the committed tail once it holds enough entries, and forgets
    /// marks of consumed run heads once there are many: the disk work, for a
    /// background task rather than the append path.
    pub fn upkeep(&mut self) -> Result<(), DelayError> {
        if self.done.len() >= CONSUME_AT {
            self.consume_heads()?;
        }
        // The tail is in (due, offset) order, so counting the committed part
        // is a walk; only worth it once the tail could be that long.
        if self.tail.len() >= self.seal_at
            && self
                .tail
                .iter()
                .filter(|e| e.offset < self.committed)
                .count()
                >= self.seal_at
        {
            self.checkpoint()?;
        }
        Ok(())
    }

    /// Seals after `n` committed tail entries instead of [`SEAL_AT`].
    pub fn with_seal_at(mut self, n: usize) -> TimerIndex {
        self.seal_at = n.max(1);
        self
    }

    /// Entries and done marks held in memory, for the memory bound.
    pub fn in_memory(&self) -> usize {
        self.tail.len() + self.done.len()
    }

    /// Run files now.
    pub fn runs(&self) -> usize {
        self.runs.len()
    }

    /// The log was cut back to `offset`: entries and marks from there on are
    /// gone. Runs hold committed entries only, so only memory changes;
    /// cutting below the committed offset is refused (marks below it may
    /// have been applied to the runs: rebuild instead).
    pub fn truncate(&mut self, offset: i64) -> Result<(), DelayError> {
        if offset < self.committed.max(self.sealed_through) {
            return Err(DelayError::CorruptIndex {
                path: self.dir.display().to_string(),
                reason: format!(
                    "truncation to {offset} is below the committed offset {}: rebuild from the log",
                    self.committed
                ),
            });
        }
        self.tail.retain(|e| e.offset < offset);
        self.done.retain(|_, at| *at < offset);
        self.committed = self.committed.min(offset);
        Ok(())
    }

    /// Up to `limit` pending entries due at or before `now_ms`, in release
    /// order. Nothing is consumed: a release is done when its record, read
    /// back from the log, marks the entries (`mark_done`).
    pub fn due(&self, now_ms: i64, limit: usize) -> Result<Vec<Entry>, DelayError> {
        let mut out = Vec::new();
        self.merge(|e| {
            if e.due_ms > now_ms || out.len() >= limit {
                return false;
            }
            out.push(e);
            true
        })?;
        Ok(out)
    }

    /// The earliest due time pending, if any.
    pub fn next_due(&self) -> Result<Option<i64>, DelayError> {
        let mut first = None;
        self.merge(|e| {
            first = Some(e.due_ms);
            false
        })?;
        Ok(first)
    }

    /// Pending entries by when they fall due, seen from `now_ms` (walks
    /// them all: for an admin's look, not a hot path).
    pub fn summary(&self, now_ms: i64) -> Result<Summary, DelayError> {
        let mut s = Summary {
            next_due_ms: -1,
            last_due_ms: -1,
            ..Summary::default()
        };
        self.merge(|e| {
            if s.pending == 0 {
                s.next_due_ms = e.due_ms;
            }
            s.pending += 1;
            s.last_due_ms = e.due_ms;
            let within = e.due_ms.saturating_sub(now_ms);
            let slot = match within {
                w if w <= 60_000 => 0,
                w if w <= 3_600_000 => 1,
                w if w <= 86_400_000 => 2,
                _ => 3,
            };
            s.due_within[slot] += 1;
            true
        })?;
        Ok(s)
    }

    /// The smallest offset at or above `from` still pending, which
    /// retention must keep (walks them all: for the retention check, not a
    /// hot path). Entries below `from` (the log start) are gone already and
    /// must not hold what follows.
    pub fn oldest_pending(&self, from: i64) -> Result<Option<i64>, DelayError> {
        let mut oldest: Option<i64> = None;
        self.merge(|e| {
            if e.offset >= from {
                oldest = Some(oldest.map_or(e.offset, |o| o.min(e.offset)));
            }
            true
        })?;
        Ok(oldest)
    }

    /// Whether the record at `offset` is pending here (walks them all).
    pub fn is_pending(&self, offset: i64) -> Result<bool, DelayError> {
        let mut found = false;
        self.merge(|e| {
            found = e.offset == offset;
            !found
        })?;
        Ok(found)
    }

    /// Seals the committed tail into a run (merging runs when there are too
    /// many) and writes the checkpoint: a restart then replays the log from
    /// the committed offset only.
    pub fn checkpoint(&mut self) -> Result<(), DelayError> {
        self.consume_heads()?;
        let committed = self.committed;
        let sealed: Vec<Entry> = self
            .tail
            .iter()
            .filter(|e| e.offset < committed)
            .copied()
            .collect();
        let live: Vec<Entry> = sealed
            .iter()
            .filter(|e| !matches!(self.done.get(&e.offset), Some(&at) if at < committed))
            .copied()
            .collect();
        // Written first, memory changed after: a failed write loses nothing.
        let run = if live.is_empty() {
            None
        } else {
            let name = self.new_run_name();
            self.write_run(&name, &live)?;
            Some(Run {
                name,
                len: live.len(),
                pos: 0,
            })
        };
        // Final marks of the sealed entries go with them (not into the
        // checkpoint: their entries are in no run).
        let gone: std::collections::HashSet<i64> = sealed
            .iter()
            .filter(|e| matches!(self.done.get(&e.offset), Some(&at) if at < committed))
            .map(|e| e.offset)
            .collect();
        let before = (self.runs.len(), self.sealed_through);
        self.runs.extend(run);
        self.sealed_through = committed;
        if let Err(e) = self.write_checkpoint(&gone) {
            self.runs.truncate(before.0);
            self.sealed_through = before.1;
            return Err(e);
        }
        for e in &sealed {
            self.tail.remove(e);
        }
        for offset in &gone {
            self.done.remove(offset);
        }
        if self.runs.len() > MAX_RUNS {
            self.merge_runs()?;
            self.write_checkpoint(&Default::default())?;
        }
        self.remove_stray_runs()
    }

    /// Walks live entries in order while `f` returns true.
    fn merge(&self, mut f: impl FnMut(Entry) -> bool) -> Result<(), DelayError> {
        let mut cursors = Vec::with_capacity(self.runs.len());
        for r in &self.runs {
            cursors.push(RunCursor::new(&self.dir.join(&r.name), r.pos, r.len)?);
        }
        let mut tail = self.tail.iter().peekable();
        loop {
            // The smallest head among the tail and the runs.
            let mut best: Option<(Entry, Option<usize>)> = tail.peek().map(|e| (**e, None));
            for (i, c) in cursors.iter_mut().enumerate() {
                if let Some(e) = c.peek()?
                    && best.is_none_or(|(b, _)| e < b)
                {
                    best = Some((e, Some(i)));
                }
            }
            let Some((e, from)) = best else {
                return Ok(());
            };
            match from {
                None => {
                    tail.next();
                }
                Some(i) => cursors[i].advance(),
            }
            if self.done.contains_key(&e.offset) {
                continue;
            }
            if !f(e) {
                return Ok(());
            }
        }
    }

    /// Skips run heads whose marks are final, forgetting the marks.
    fn consume_heads(&mut self) -> Result<(), DelayError> {
        for r in &mut self.runs {
            let mut c = RunCursor::new(&self.dir.join(&r.name), r.pos, r.len)?;
            while let Some(e) = c.peek()? {
                match self.done.get(&e.offset) {
                    Some(&at) if at < self.committed => {
                        self.done.remove(&e.offset);
                        r.pos += 1;
                        c.advance();
                    }
                    _ => break,
                }
            }
        }
        Ok(())
    }

    /// Merges every run into one, dropping entries whose marks are final.
    /// The caller writes the checkpoint after.
    fn merge_runs(&mut self) -> Result<(), DelayError> {
        let mut cursors = Vec::with_capacity(self.runs.len());
        for r in &self.runs {
            cursors.push(RunCursor::new(&self.dir.join(&r.name), r.pos, r.len)?);
        }
        let mut merged = Vec::new();
        let mut dropped = Vec::new();
        loop {
            let mut best: Option<(Entry, usize)> = None;
            for (i, c) in cursors.iter_mut().enumerate() {
                if let Some(e) = c.peek()?
                    && best.is_none_or(|(b, _)| e < b)
                {
                    best = Some((e, i));
                }
            }
            let Some((e, i)) = best else { break };
            cursors[i].advance();
            match self.done.get(&e.offset) {
                Some(&at) if at < self.committed => dropped.push(e.offset),
                _ => merged.push(e),
            }
        }
        let name = self.new_run_name();
        self.write_run(&name, &merged)?;
        for offset in dropped {
            self.done.remove(&offset);
        }
        self.runs = vec![Run {
            name,
            len: merged.len(),
            pos: 0,
        }];
        Ok(())
    }

    fn new_run_name(&mut self) -> String {
        self.next_run += 1;
        format!("run-{:020}.idx", self.next_run)
    }

    fn write_run(&self, name: &str, entries: &[Entry]) -> Result<(), DelayError> {
        let path = self.dir.join(name);
        let tmp = self.dir.join(format!("{name}.tmp"));
        let io = |e| DelayError::io(&path, e);
        let mut w = BufWriter::new(File::create(&tmp).map_err(io)?);
        w.write_all(RUN_MAGIC).map_err(io)?;
        w.write_all(&(entries.len() as u64).to_be_bytes())
            .map_err(io)?;
        for e in entries {
            w.write_all(&e.due_ms.to_be_bytes()).map_err(io)?;
            w.write_all(&e.offset.to_be_bytes()).map_err(io)?;
        }
        let file = w.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)?;
        fs::rename(&tmp, &path).map_err(io)
    }

    /// `skip`: marks not to write (their entries are going).
    fn write_checkpoint(&self, skip: &std::collections::HashSet<i64>) -> Result<(), DelayError> {
        let path = self.dir.join(CHECKPOINT);
        let io = |e| DelayError::io(&path, e);
        let mut text = format!(
            "{CHECKPOINT_HEADER}\nsealed_through {}\nnext_run {}\nfirst_offset {}\n",
            self.sealed_through, self.next_run, self.first_offset
        );
        for r in &self.runs {
            text.push_str(&format!("run {} {} {}\n", r.name, r.len, r.pos));
        }
        for (id, at) in &self.done {
            if *at < self.sealed_through && !skip.contains(id) {
                text.push_str(&format!("done {id} {at}\n"));
            }
        }
        let tmp = self.dir.join(format!("{CHECKPOINT}.tmp"));
        let mut f = File::create(&tmp).map_err(io)?;
        f.write_all(text.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
        fs::rename(&tmp, &path).map_err(io)?;
        // The rename itself must survive a crash.
        File::open(&self.dir).and_then(|d| d.sync_all()).map_err(io)
    }

    fn load_checkpoint(&mut self, path: &Path, text: &str) -> Result<(), DelayError> {
        let bad = |reason: String| DelayError::CorruptIndex {
            path: path.display().to_string(),
            reason,
        };
        let mut lines = text.lines();
        if lines.next() != Some(CHECKPOINT_HEADER) {
            return Err(bad("unknown header".into()));
        }
        for line in lines {
            let f: Vec<&str> = line.split(' ').collect();
            let num = |i: usize| -> Result<i64, DelayError> {
                f.get(i)
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| bad(format!("line {line:?}")))
            };
            match f.first().copied() {
                Some("sealed_through") => self.sealed_through = num(1)?,
                Some("next_run") => self.next_run = num(1)? as u64,
                Some("first_offset") => self.first_offset = num(1)?,
                Some("run") => {
                    let name = f.get(1).ok_or_else(|| bad(format!("line {line:?}")))?;
                    let (len, pos) = (num(2)? as usize, num(3)? as usize);
                    let size = fs::metadata(self.dir.join(name))
                        .map_err(|e| DelayError::io(&self.dir.join(name), e))?
                        .len();
                    if pos > len || size != (16 + len * ENTRY_SIZE) as u64 {
                        return Err(bad(format!("run {name}: {size} bytes for {len} entries")));
                    }
                    self.runs.push(Run {
                        name: name.to_string(),
                        len,
                        pos,
                    });
                }
                Some("done") => {
                    self.done.insert(num(1)?, num(2)?);
                }
                _ => return Err(bad(format!("line {line:?}"))),
            }
        }
        Ok(())
    }

    /// Deletes run files the checkpoint no longer names (merged away, or
    /// left by a crash between writing a run and the checkpoint).
    fn remove_stray_runs(&self) -> Result<(), DelayError> {
        let entries = fs::read_dir(&self.dir).map_err(|e| DelayError::io(&self.dir, e))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("run-") && !self.runs.iter().any(|r| r.name == name) {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(())
    }
}

/// Reads one run from `pos`, a window at a time.
struct RunCursor {
    file: File,
    path: PathBuf,
    next: usize,
    len: usize,
    window: Vec<Entry>,
    at: usize,
}

impl RunCursor {
    fn new(path: &Path, pos: usize, len: usize) -> Result<RunCursor, DelayError> {
        let file = File::open(path).map_err(|e| DelayError::io(path, e))?;
        Ok(RunCursor {
            file,
            path: path.to_path_buf(),
            next: pos,
            len,
            window: Vec::new(),
            at: 0,
        })
    }

    fn peek(&mut self) -> Result<Option<Entry>, DelayError> {
        if self.at == self.window.len() {
            self.fill()?;
        }
        Ok(self.window.get(self.at).copied())
    }

    fn advance(&mut self) {
        self.at += 1;
    }

    fn fill(&mut self) -> Result<(), DelayError> {
        self.window.clear();
        self.at = 0;
        let n = WINDOW.min(self.len - self.next);
        if n == 0 {
            return Ok(());
        }
        let io = |e| DelayError::io(&self.path, e);
        let mut buf = vec![0u8; n * ENTRY_SIZE];
        self.file
            .seek(SeekFrom::Start((16 + self.next * ENTRY_SIZE) as u64))
            .map_err(io)?;
        self.file.read_exact(&mut buf).map_err(io)?;
        if self.next == 0 {
            let mut magic = [0u8; 8];
            self.file.seek(SeekFrom::Start(0)).map_err(io)?;
            self.file.read_exact(&mut magic).map_err(io)?;
            if &magic != RUN_MAGIC {
                return Err(DelayError::CorruptIndex {
                    path: self.path.display().to_string(),
                    reason: "not a run file".into(),
                });
            }
        }
        for c in buf.chunks_exact(ENTRY_SIZE) {
            let (due, off) = c.split_at(8);
            self.window.push(Entry {
                due_ms: i64::from_be_bytes(due.try_into().unwrap_or_default()),
                offset: i64::from_be_bytes(off.try_into().unwrap_or_default()),
            });
        }
        self.next += n;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
