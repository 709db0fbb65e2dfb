//! LogSegment: one `.log` file of raw v2 batches plus its two indexes.

use std::fs::{File, OpenOptions};
use std::io::IoSlice;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use sluice_records::{
    HEADER_SIZE, MAGIC_V2, RecordBatchHeader, RecordsError, STAMP_SIZE, set_base_offset,
    set_partition_leader_epoch, validate_batch,
};

use crate::error::{StorageError, io_err};
use crate::index::{OffsetIndex, TimeIndex};

pub(crate) fn segment_file(dir: &Path, base_offset: i64, ext: &str) -> PathBuf {
    dir.join(format!("{base_offset:020}.{ext}"))
}

/// Suffix of the files of a segment the log cleaner is still writing.
pub(crate) const CLEANED: &str = ".cleaned";
/// Suffix of a complete cleaned segment waiting to replace the originals.
pub(crate) const SWAP: &str = ".swap";

pub(crate) struct LogSegment {
    pub(crate) base_offset: i64,
    log_path: PathBuf,
    log: File,
    pub(crate) size: u64,
    offset_index: OffsetIndex,
    time_index: TimeIndex,
    /// Offset after the last batch; `base_offset` when empty.
    pub(crate) next_offset: i64,
    /// Largest batch max timestamp, -1 when none.
    pub(crate) max_timestamp: i64,
    offset_of_max_timestamp: i64,
    /// Max timestamp of the first batch: what `segment_ms` rolling is measured from.
    pub(crate) first_batch_timestamp: Option<i64>,
    /// Wall clock at creation/open: the roll fallback for batches without timestamps.
    pub(crate) created_ms: i64,
    bytes_since_last_index_entry: u64,
    index_interval: u64,
}

impl LogSegment {
    /// `suffix` follows the extension: "" for a live segment, [`CLEANED`]
    /// for one the log cleaner is writing.
    fn fresh_indexes(
        dir: &Path,
        base_offset: i64,
        suffix: &str,
    ) -> Result<(OffsetIndex, TimeIndex), StorageError> {
        Ok((
            OffsetIndex::create(
                segment_file(dir, base_offset, &format!("index{suffix}")),
                base_offset,
            )?,
            TimeIndex::create(
                segment_file(dir, base_offset, &format!("timeindex{suffix}")),
                base_offset,
            )?,
        ))
    }

    fn empty(
        log_path: PathBuf,
        base_offset: i64,
        index_interval: u32,
        log: File,
        size: u64,
        (offset_index, time_index): (OffsetIndex, TimeIndex),
    ) -> LogSegment {
        LogSegment {
            base_offset,
            log_path,
            log,
            size,
            offset_index,
            time_index,
            next_offset: base_offset,
            max_timestamp: -1,
            offset_of_max_timestamp: base_offset,
            first_batch_timestamp: None,
            created_ms: crate::log::now_ms(),
            bytes_since_last_index_entry: 0,
            index_interval: u64::from(index_interval),
        }
    }

    /// Creates a new empty segment, replacing any files of that name.
    pub(crate) fn create(
        dir: &Path,
        base_offset: i64,
        index_interval: u32,
    ) -> Result<LogSegment, StorageError> {
        Self::create_with_suffix(dir, base_offset, index_interval, "")
    }

    /// Creates the `.log.cleaned` / `.index.cleaned` / `.timeindex.cleaned`
    /// files the log cleaner writes a replacement segment into. Only `append`
    /// and `sync` are used on it; the log reopens it under its final names.
    pub(crate) fn create_cleaned(
        dir: &Path,
        base_offset: i64,
        index_interval: u32,
    ) -> Result<LogSegment, StorageError> {
        Self::create_with_suffix(dir, base_offset, index_interval, CLEANED)
    }

    fn create_with_suffix(
        dir: &Path,
        base_offset: i64,
        index_interval: u32,
        suffix: &str,
    ) -> Result<LogSegment, StorageError> {
        let path = segment_file(dir, base_offset, &format!("log{suffix}"));
        let log = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(io_err("create segment", &path))?;
        let indexes = Self::fresh_indexes(dir, base_offset, suffix)?;
        Ok(Self::empty(
            path,
            base_offset,
            index_interval,
            log,
            0,
            indexes,
        ))
    }

    /// Opens an existing segment. With `recover`, every batch is validated
    /// and a bad tail truncated (returns true if it was); otherwise the
    /// indexes are loaded and only rebuilt if they look wrong.
    pub(crate) fn open(
        dir: &Path,
        base_offset: i64,
        index_interval: u32,
        recover: bool,
    ) -> Result<(LogSegment, bool), StorageError> {
        let path = segment_file(dir, base_offset, "log");
        let log = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_err("open segment", &path))?;
        let size = log.metadata().map_err(io_err("stat segment", &path))?.len();
        if !recover {
            if let Some(seg) = Self::try_load(dir, base_offset, index_interval, &log, size)? {
                return Ok((seg, false));
            }
            tracing::warn!(segment = %path.display(), "index missing or corrupt; rebuilding from the log");
        }
        let indexes = Self::fresh_indexes(dir, base_offset, "")?;
        let mut seg = Self::empty(path, base_offset, index_interval, log, size, indexes);
        let truncated = seg.recover()?;
        if !recover {
            // Outside the recovery range nothing else will fsync the rebuilt
            // indexes or seal the time index.
            seg.sync()?;
        }
        Ok((seg, truncated))
    }

    fn try_load(
        dir: &Path,
        base_offset: i64,
        index_interval: u32,
        log: &File,
        size: u64,
    ) -> Result<Option<LogSegment>, StorageError> {
        let Some(offset_index) =
            OffsetIndex::load(segment_file(dir, base_offset, "index"), base_offset, size)?
        else {
            return Ok(None);
        };
        // Offsets are checked against the log end below, once it is known.
        let Some(time_index) = TimeIndex::load(
            segment_file(dir, base_offset, "timeindex"),
            base_offset,
            i64::MAX,
        )?
        else {
            return Ok(None);
        };
        if size > 0 && time_index.last().is_none() {
            // Flushed segments always end with a time entry; without one the
            // max timestamp is unknown.
            return Ok(None);
        }
        let log = log.try_clone().map_err(io_err(
            "open segment",
            segment_file(dir, base_offset, "log"),
        ))?;
        let mut seg = Self::empty(
            segment_file(dir, base_offset, "log"),
            base_offset,
            index_interval,
            log,
            size,
            (offset_index, time_index),
        );
        if seg.load_tail_state().is_err() {
            return Ok(None);
        }
        if seg
            .time_index
            .last()
            .is_some_and(|(_, off)| off >= seg.next_offset)
        {
            return Ok(None);
        }
        Ok(Some(seg))
    }

    /// Recomputes next offset, max timestamp and index bookkeeping from the
    /// indexes plus a header-only walk over the unindexed tail.
    fn load_tail_state(&mut self) -> Result<(), RecordsError> {
        self.next_offset = self.base_offset;
        self.max_timestamp = -1;
        self.offset_of_max_timestamp = self.base_offset;
        let mut from = u64::from(self.offset_index.last_position().unwrap_or(0));
        if let Some((ts, off)) = self.time_index.last() {
            self.max_timestamp = ts;
            self.offset_of_max_timestamp = off;
            from = from.min(u64::from(self.offset_index.lookup(off + 1).1));
        }
        self.bytes_since_last_index_entry =
            self.size - u64::from(self.offset_index.last_position().unwrap_or(0));
        self.first_batch_timestamp = None;
        if self.size > 0 {
            let h = self.header_at(0)?;
            self.first_batch_timestamp = Some(h.max_timestamp);
        }
        let mut pos = from;
        while pos < self.size {
            let h = self.header_at(pos)?;
            if h.max_timestamp > self.max_timestamp {
                self.max_timestamp = h.max_timestamp;
                self.offset_of_max_timestamp = h.last_offset();
            }
            self.next_offset = self.next_offset.max(h.next_offset());
            pos += h.total_size() as u64;
        }
        Ok(())
    }

    /// Reads and sanity-checks (no CRC) the header of the batch at `pos`.
    fn header_at(&self, pos: u64) -> Result<RecordBatchHeader, RecordsError> {
        let corrupt = |reason: String| RecordsError::CorruptMessage {
            position: pos as usize,
            reason,
        };
        if pos + HEADER_SIZE as u64 > self.size {
            return Err(corrupt("header runs past the end of the segment".into()));
        }
        let mut buf = [0u8; HEADER_SIZE];
        self.log
            .read_exact_at(&mut buf, pos)
            .map_err(|e| corrupt(format!("read header: {e}")))?;
        let h = RecordBatchHeader::parse(&buf).expect("HEADER_SIZE bytes");
        if h.magic != MAGIC_V2
            || h.batch_length < (HEADER_SIZE - 12) as i32
            || pos + h.total_size() as u64 > self.size
            || h.base_offset < self.base_offset
        {
            return Err(corrupt(format!("implausible header {h:?}")));
        }
        Ok(h)
    }

    /// Validates every batch, rebuilding both indexes; truncates the file at
    /// the first bad batch. Returns true if anything was truncated.
    pub(crate) fn recover(&mut self) -> Result<bool, StorageError> {
        let dir = self
            .log_path
            .parent()
            .expect("segment in a dir")
            .to_path_buf();
        self.offset_index = OffsetIndex::create(
            segment_file(&dir, self.base_offset, "index"),
            self.base_offset,
        )?;
        self.time_index = TimeIndex::create(
            segment_file(&dir, self.base_offset, "timeindex"),
            self.base_offset,
        )?;
        self.next_offset = self.base_offset;
        self.max_timestamp = -1;
        self.offset_of_max_timestamp = self.base_offset;
        self.first_batch_timestamp = None;
        self.bytes_since_last_index_entry = 0;
        let mut pos = 0u64;
        // One buffer reused across batches: recovery allocates per segment, not per batch.
        let mut buf = Vec::new();
        let mut failure = None;
        while pos < self.size {
            let avail = (self.size - pos) as usize;
            let head_len = avail.min(HEADER_SIZE);
            buf.resize(head_len, 0);
            self.log
                .read_exact_at(&mut buf, pos)
                .map_err(io_err("read segment", &self.log_path))?;
            let total = match validate_batch(&buf, pos as usize) {
                Err(RecordsError::Truncated { needed, .. }) if needed <= avail => needed,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
                Ok(h) => h.total_size(),
            };
            buf.resize(total, 0);
            self.log
                .read_exact_at(&mut buf, pos)
                .map_err(io_err("read segment", &self.log_path))?;
            let h = match validate_batch(&buf, pos as usize) {
                Ok(h) if h.base_offset >= self.next_offset => h,
                Ok(h) => {
                    failure = Some(RecordsError::CorruptMessage {
                        position: pos as usize,
                        reason: format!(
                            "base offset {} below the expected {}",
                            h.base_offset, self.next_offset
                        ),
                    });
                    break;
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            };
            self.index_batch(pos, &h)?;
            pos += total as u64;
        }
        if let Some(e) = failure {
            tracing::warn!(
                segment = %self.log_path.display(),
                position = pos,
                dropped_bytes = self.size - pos,
                error = %e,
                "truncating corrupt or torn segment tail"
            );
            self.log
                .set_len(pos)
                .map_err(io_err("truncate segment", &self.log_path))?;
            self.size = pos;
            return Ok(true);
        }
        Ok(false)
    }

    /// Index bookkeeping for one batch at `pos` (Kafka's rule: an entry once
    /// more than `index_interval` bytes were written since the last one).
    fn index_batch(&mut self, pos: u64, h: &RecordBatchHeader) -> Result<(), StorageError> {
        if h.max_timestamp > self.max_timestamp {
            self.max_timestamp = h.max_timestamp;
            self.offset_of_max_timestamp = h.last_offset();
        }
        if self.bytes_since_last_index_entry > self.index_interval {
            // Like Kafka, the entry maps the batch's last offset to its position.
            self.offset_index.append(h.last_offset(), pos as u32);
            self.time_index
                .maybe_append(self.max_timestamp, self.offset_of_max_timestamp);
            self.bytes_since_last_index_entry = 0;
        }
        self.bytes_since_last_index_entry += h.total_size() as u64;
        if self.first_batch_timestamp.is_none() {
            self.first_batch_timestamp = Some(h.max_timestamp);
        }
        self.next_offset = h.next_offset();
        Ok(())
    }

    /// Appends pre-validated batches: `data` holds them back to back and
    /// `batches` their (position in `data`, header). With `stamp`, each
    /// batch's base offset and partition leader epoch come from its header,
    /// not from `data`: a leader assigns them, and since they sit outside the
    /// CRC it writes a fresh copy of each batch's first bytes beside the
    /// untouched rest in one vectored write, instead of copying the whole
    /// request to patch it.
    pub(crate) fn append(
        &mut self,
        data: &[u8],
        batches: &[(usize, RecordBatchHeader)],
        stamp: bool,
    ) -> Result<(), StorageError> {
        let written = if stamp {
            let stamps: Vec<[u8; STAMP_SIZE]> = batches
                .iter()
                .map(|(pos, h)| {
                    let mut s = [0u8; STAMP_SIZE];
                    s.copy_from_slice(&data[*pos..*pos + STAMP_SIZE]);
                    set_base_offset(&mut s, h.base_offset);
                    set_partition_leader_epoch(&mut s, h.partition_leader_epoch);
                    s
                })
                .collect();
            let mut slices = Vec::with_capacity(batches.len() * 2);
            for ((pos, h), s) in batches.iter().zip(&stamps) {
                slices.push(IoSlice::new(s));
                slices.push(IoSlice::new(&data[pos + STAMP_SIZE..pos + h.total_size()]));
            }
            write_all_vectored_at(&self.log, &mut slices, self.size)
        } else {
            self.log.write_all_at(data, self.size)
        };
        if let Err(e) = written {
            // Drop a partial write so the next append does not leave garbage
            // behind a shorter batch; recovery would catch it anyway.
            let _ = self.log.set_len(self.size);
            return Err(io_err("append to segment", &self.log_path)(e));
        }
        for (rel, h) in batches {
            self.index_batch(self.size + *rel as u64, h)?;
        }
        self.size += data.len() as u64;
        Ok(())
    }

    /// Position and header of the first batch whose last offset >= `offset`.
    fn find_batch(&self, offset: i64) -> Result<Option<(u64, RecordBatchHeader)>, StorageError> {
        let mut pos = u64::from(self.offset_index.lookup(offset).1);
        while pos < self.size {
            let h = self.header_at(pos)?;
            if h.last_offset() >= offset {
                return Ok(Some((pos, h)));
            }
            pos += h.total_size() as u64;
        }
        Ok(None)
    }

    /// See `PartitionLog::read`. `None` when no batch here reaches `offset`.
    pub(crate) fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        max_offset: i64,
        min_one: bool,
    ) -> Result<Option<Bytes>, StorageError> {
        let Some((start, first)) = self.find_batch(offset)? else {
            return Ok(None);
        };
        if first.base_offset >= max_offset {
            return Ok(Some(Bytes::new()));
        }
        // One positional read of everything that may be returned, then cut
        // at a batch boundary in memory: a fetch costs one syscall, not one
        // per batch.
        let floor = if min_one { first.total_size() } else { 0 };
        let want = (max_bytes.max(floor) as u64).min(self.size - start) as usize;
        let mut buf = Vec::new();
        read_exact_uninit_at(&self.log, &mut buf, want, start)
            .map_err(io_err("read segment", &self.log_path))?;
        let mut end = 0;
        while let Some(h) = RecordBatchHeader::parse(&buf[end..]) {
            // Appended data was validated; the length check only guards the loop.
            if h.base_offset >= max_offset
                || h.batch_length < (HEADER_SIZE - 12) as i32
                || end + h.total_size() > buf.len()
            {
                break;
            }
            end += h.total_size();
        }
        if end < want / 2 {
            // Don't pin a mostly unused buffer in the response.
            return Ok(Some(Bytes::copy_from_slice(&buf[..end])));
        }
        buf.truncate(end);
        Ok(Some(Bytes::from(buf)))
    }

    /// First record with timestamp >= `ts`, as (offset, timestamp).
    pub(crate) fn find_offset_by_timestamp(
        &self,
        ts: i64,
    ) -> Result<Option<(i64, i64)>, StorageError> {
        // Every record up to the entry's offset is older than `ts`.
        let start = self
            .time_index
            .lookup_before(ts)
            .map_or(self.base_offset, |(_, off)| off + 1);
        let Some((mut pos, _)) = self.find_batch(start)? else {
            return Ok(None);
        };
        while pos < self.size {
            let h = self.header_at(pos)?;
            if h.max_timestamp >= ts {
                let mut buf = vec![0u8; h.total_size()];
                self.log
                    .read_exact_at(&mut buf, pos)
                    .map_err(io_err("read segment", &self.log_path))?;
                let batches = sluice_records::decode_batches(Bytes::from(buf))?;
                let hit = batches
                    .iter()
                    .flat_map(|b| &b.records)
                    .find(|r| r.timestamp >= ts && r.offset >= start);
                if let Some(r) = hit {
                    return Ok(Some((r.offset, r.timestamp)));
                }
            }
            pos += h.total_size() as u64;
        }
        Ok(None)
    }

    /// Drops every batch whose last offset >= `offset` (a batch containing
    /// `offset` goes entirely, as in Kafka). Returns bytes removed.
    pub(crate) fn truncate_to(&mut self, offset: i64) -> Result<u64, StorageError> {
        let Some((pos, h)) = self.find_batch(offset)? else {
            return Ok(0);
        };
        let removed = self.size - pos;
        self.log
            .set_len(pos)
            .map_err(io_err("truncate segment", &self.log_path))?;
        self.size = pos;
        self.offset_index.truncate_to(h.base_offset)?;
        self.time_index.truncate_to(h.base_offset)?;
        self.load_tail_state()?;
        Ok(removed)
    }

    /// Records the final max timestamp so a reopened segment knows it
    /// without a scan (Kafka does this when a segment becomes inactive).
    pub(crate) fn seal_time_index(&mut self) -> Result<(), StorageError> {
        if self.max_timestamp >= 0 && self.size > 0 {
            self.time_index
                .maybe_append(self.max_timestamp, self.offset_of_max_timestamp);
        }
        Ok(())
    }

    pub(crate) fn sync(&mut self) -> Result<(), StorageError> {
        self.seal_time_index()?;
        self.log
            .sync_data()
            .map_err(io_err("fsync segment", &self.log_path))?;
        self.offset_index.sync()?;
        self.time_index.sync()
    }

    /// Seals the time index and adds second handles on this segment's three
    /// files to `out`, for a flush that runs without the log's lock.
    pub(crate) fn sync_handles(
        &mut self,
        out: &mut Vec<(File, PathBuf)>,
    ) -> Result<(), StorageError> {
        self.seal_time_index()?;
        out.push((self.clone_file()?, self.log_path.clone()));
        out.push(self.offset_index.sync_handle()?);
        out.push(self.time_index.sync_handle()?);
        Ok(())
    }

    /// A second handle on the `.log` file, for the log cleaner to read while
    /// the log lock is not held (closed segments do not change in place).
    pub(crate) fn clone_file(&self) -> Result<File, StorageError> {
        self.log
            .try_clone()
            .map_err(io_err("open segment", &self.log_path))
    }

    pub(crate) fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The `.log` file's mtime.
    pub(crate) fn modified(&self) -> Option<std::time::SystemTime> {
        self.log.metadata().and_then(|m| m.modified()).ok()
    }

    /// Sets the `.log` file's mtime: a cleaned segment takes its originals'
    /// so mtime-based retention (batches without timestamps) is not reset.
    pub(crate) fn set_modified(&self, t: std::time::SystemTime) -> Result<(), StorageError> {
        self.log
            .set_modified(t)
            .map_err(io_err("set segment mtime", &self.log_path))
    }

    /// Largest timestamp for retention: the max batch timestamp, or the
    /// file's mtime when batches carry none.
    pub(crate) fn largest_timestamp(&self) -> i64 {
        if self.max_timestamp >= 0 {
            return self.max_timestamp;
        }
        self.log
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as i64)
    }

    pub(crate) fn delete(self) -> Result<(), StorageError> {
        self.delete_files()
    }

    /// Removes the files but keeps the open handles: reads through this
    /// segment keep working (Unix semantics) until it is dropped. The log
    /// cleaner uses this so a failed swap leaves the in-memory log intact.
    pub(crate) fn delete_files(&self) -> Result<(), StorageError> {
        for p in [
            self.log_path.as_path(),
            self.offset_index.path(),
            self.time_index.path(),
        ] {
            match std::fs::remove_file(p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("delete segment file", p)(e)),
            }
        }
        Ok(())
    }
}

/// `pwritev` until every slice is written (at most `IOV_MAX` slices a call).
fn write_all_vectored_at(
    file: &File,
    mut slices: &mut [IoSlice<'_>],
    mut offset: u64,
) -> std::io::Result<()> {
    const IOV_MAX: usize = 1024;
    while !slices.is_empty() {
        let n = slices.len().min(IOV_MAX);
        match rustix::io::pwritev(file, &slices[..n], offset) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(written) => {
                offset += written as u64;
                IoSlice::advance_slices(&mut slices, written);
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Reads `len` bytes at `offset` into `buf`'s spare capacity. A fetch buffer
/// is filled by the kernel, so zeroing it first would be a wasted pass over
/// every byte served.
fn read_exact_uninit_at(
    file: &File,
    buf: &mut Vec<u8>,
    len: usize,
    mut offset: u64,
) -> std::io::Result<()> {
    let end = buf.len() + len;
    buf.reserve_exact(len);
    while buf.len() < end {
        // Extends `buf` by exactly what was read (its whole spare capacity
        // is offered, so a read may run past `end`; cut below).
        match rustix::io::pread(file, rustix::buffer::spare_capacity(buf), offset) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => offset += n as u64,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    buf.truncate(end);
    Ok(())
}
