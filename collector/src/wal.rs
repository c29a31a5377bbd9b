//! The write-ahead log: what makes an ingest batch durable before it is acknowledged.
//!
//! # Format
//!
//! The log lives in `<data_dir>/collector/wal/` as segment files named after the log sequence
//! number (LSN) of their first entry, `{first_lsn:020}.wal`. A segment starts with the 8-byte magic
//! `OWLWAL\0\x01` (the last byte is the format version) followed by frames
//! (`len u32 LE | crc32 u32 LE | payload`, see [`crate::frame`]). One frame holds one entry, the
//! accepted items of one ingest request:
//!
//! ```text
//! lsn        u64 LE
//! flags      u8          bit 0: the batch key follows
//! agent_len  u16 LE      \
//! agent      agent_len    } only with bit 0: `x-owl-agent-id` and `x-owl-batch-seq`
//! seq        u64 LE      /
//! count      u32 LE      number of lines
//! lines      count NDJSON lines (`IngestItem::to_line`), each ending in `\n`
//! ```
//!
//! Records are stored after masking and with their ids assigned, so a replay indexes exactly what
//! the first pass did. The checkpoint (`checkpoint`, see [`crate::checkpoint`]) holds the highest
//! LSN whose entry is in a committed index.
//!
//! # Invariants
//!
//! - LSNs are assigned under one lock in append order and grow by one per entry; a segment holds a
//!   contiguous run of them and only the newest segment is ever written.
//! - An entry is acknowledged only after its bytes were written and `fdatasync`ed (and, for the
//!   first entry of a new segment, after the directory entry of the segment was fsynced).
//! - Group commit: one writer thread takes everything appended since its last round, writes it with
//!   one `write_all` and syncs once; requests arriving during a sync share the next one. There is no
//!   timer: under light load a request pays one sync, under heavy load a sync is shared by many.
//! - Entries reach the indexer only once durable, in LSN order.
//! - A segment is deleted only when the checkpoint covers all of its entries, that is when the next
//!   segment starts at or below `checkpoint + 1`; the newest segment is never deleted.
//!
//! # Recovery
//!
//! On start, segments wholly covered by the checkpoint are deleted; the others are read front to
//! back and every entry above the checkpoint is replayed into the index (see `crate::indexer`),
//! which then commits and advances the checkpoint before the collector serves. A frame that is cut
//! short or fails its CRC ends the valid prefix: in the newest segment that is the torn tail of a
//! write that was never acknowledged, and the file is truncated there; in an older segment it is
//! corruption, reported at ERROR, and the rest of that segment is skipped. Appends then go to a new
//! segment named after the next LSN.
//!
//! # Considered
//!
//! A tantivy commit per request would make every ack wait for a commit of all open partitions (up
//! to ~1.4 s under load on this machine) and produce a segment per request. A WAL acknowledges after
//! one sequential write and one `fdatasync`, shared by concurrent requests, and lets the index
//! commit on its own cadence.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Instant;

use chrono::Utc;
use owl_model::IngestItem;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::events::{WalCorruption, WalSegmentRotated, WalSynced, WalTornTail, WalWriteFailed};
use crate::frame::{self, ReadFrame};

/// Magic and version at the start of every segment.
pub(crate) const SEGMENT_MAGIC: &[u8; 8] = b"OWLWAL\x00\x01";
const SEGMENT_SUFFIX: &str = ".wal";
const FLAG_BATCH_KEY: u8 = 1;

/// Default size after which the writer starts a new segment.
pub(crate) const DEFAULT_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

/// Errors of the write-ahead log.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// A file operation failed.
    #[error("write-ahead log i/o error on {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A segment does not start with the WAL magic.
    #[error("{path} is not a write-ahead log segment of this version (bad magic)")]
    BadMagic {
        /// The segment.
        path: PathBuf,
    },
    /// The writer failed earlier; nothing can be made durable until the collector restarts.
    #[error("the write-ahead log writer failed: {0}")]
    Failed(String),
    /// The log was closed for shutdown.
    #[error("the write-ahead log is closed")]
    Closed,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The key of an agent's batch: who sent it and its sequence number.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct BatchKey {
    /// `x-owl-agent-id`.
    pub agent: String,
    /// `x-owl-batch-seq`.
    pub seq: u64,
}

/// One entry, as handed to the indexer once durable (or read back during recovery).
#[derive(Debug)]
pub(crate) struct Entry {
    pub lsn: u64,
    pub batch: Option<BatchKey>,
    pub items: Vec<IngestItem>,
}

/// An entry's payload without its LSN, built outside any lock; the CRC of these bytes is computed
/// once and combined with the LSN's under the lock.
pub(crate) struct EncodedEntry {
    bytes: Vec<u8>,
    crc: crc32fast::Hasher,
}

impl EncodedEntry {
    /// Encodes `lines` (each a serialised item without its newline).
    pub(crate) fn new<'a>(
        batch: Option<&BatchKey>,
        lines: impl ExactSizeIterator<Item = &'a [u8]>,
    ) -> EncodedEntry {
        let count = u32::try_from(lines.len()).expect("a body of at most 4 GiB has fewer than 2^32 lines");
        let mut bytes = Vec::new();
        match batch {
            Some(key) => {
                let agent = &key.agent.as_bytes()[..key.agent.len().min(u16::MAX as usize)];
                bytes.push(FLAG_BATCH_KEY);
                bytes.extend_from_slice(&(agent.len() as u16).to_le_bytes());
                bytes.extend_from_slice(agent);
                bytes.extend_from_slice(&key.seq.to_le_bytes());
            }
            None => bytes.push(0),
        }
        bytes.extend_from_slice(&count.to_le_bytes());
        for line in lines {
            bytes.extend_from_slice(line);
            bytes.push(b'\n');
        }
        let mut crc = crc32fast::Hasher::new();
        crc.update(&bytes);
        EncodedEntry { bytes, crc }
    }
}

/// Decodes an entry payload; `None` when it is malformed (a CRC-valid frame of another writer).
fn decode_entry(payload: &[u8]) -> Result<Entry, &'static str> {
    let mut rest = payload;
    let lsn = take_u64(&mut rest).ok_or("entry shorter than its lsn")?;
    let flags = take(&mut rest, 1).ok_or("entry without flags")?[0];
    let batch = if flags & FLAG_BATCH_KEY != 0 {
        let agent_len = take(&mut rest, 2).ok_or("truncated batch key")?;
        let agent_len = u16::from_le_bytes([agent_len[0], agent_len[1]]) as usize;
        let agent = take(&mut rest, agent_len).ok_or("truncated agent id")?;
        let agent = String::from_utf8(agent.to_vec()).map_err(|_| "agent id is not UTF-8")?;
        let seq = take_u64(&mut rest).ok_or("truncated batch seq")?;
        Some(BatchKey { agent, seq })
    } else {
        None
    };
    let count = take(&mut rest, 4).ok_or("entry without a line count")?;
    let count = u32::from_le_bytes(count.try_into().expect("4 bytes")) as usize;
    let now = Utc::now();
    let mut items = Vec::with_capacity(count);
    for line in rest.split(|&b| b == b'\n').filter(|line| !line.is_empty()) {
        items.push(IngestItem::parse(line, now).map_err(|_| "a stored line does not parse")?);
    }
    if items.len() != count {
        return Err("line count does not match");
    }
    Ok(Entry { lsn, batch, items })
}

fn take<'a>(rest: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if rest.len() < n {
        return None;
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Some(head)
}

fn take_u64(rest: &mut &[u8]) -> Option<u64> {
    take(rest, 8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
}

fn peek_lsn(payload: &[u8]) -> Option<u64> {
    payload
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
}

fn segment_name(first_lsn: u64) -> String {
    format!("{first_lsn:020}{SEGMENT_SUFFIX}")
}

/// The segments in `dir`, oldest first, as `(first lsn, path)`.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, WalError> {
    let mut segments = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_error(dir))? {
        let entry = entry.map_err(io_error(dir))?;
        let name = entry.file_name();
        let Some(first) = name
            .to_str()
            .and_then(|n| n.strip_suffix(SEGMENT_SUFFIX))
            .and_then(|n| n.parse().ok())
        else {
            continue;
        };
        segments.push((first, entry.path()));
    }
    segments.sort();
    Ok(segments)
}

/// Deletes the segments whose entries are all at or below `committed`; returns how many went.
pub(crate) fn truncate_through(dir: &Path, committed: u64) -> Result<usize, WalError> {
    let segments = list_segments(dir)?;
    let mut removed = 0;
    for pair in segments.windows(2) {
        let ((_, path), (next_first, _)) = (&pair[0], &pair[1]);
        if *next_first > committed.saturating_add(1) {
            break;
        }
        match std::fs::remove_file(path) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(path)(e)),
        }
    }
    Ok(removed)
}

/// Fsyncs a directory so that created, renamed or removed entries survive a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_error(dir))
}

/// Reads the log for recovery: every entry above `checkpoint`, in order.
///
/// Deletes segments the checkpoint covers, truncates a torn tail of the newest segment, removes a
/// newest segment without any entry, and returns the next LSN to assign.
pub(crate) fn replay<E: From<WalError>>(
    dir: &Path,
    checkpoint: u64,
    mut apply: impl FnMut(Entry) -> Result<(), E>,
) -> Result<u64, E> {
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    truncate_through(dir, checkpoint)?;
    let segments = list_segments(dir)?;
    let mut last_lsn = checkpoint;
    for (i, (first, path)) in segments.iter().enumerate() {
        let newest = i + 1 == segments.len();
        let file = File::open(path).map_err(io_error(path))?;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut magic = [0u8; 8];
        let magic_len = frame::read_full(&mut reader, &mut magic).map_err(io_error(path))?;
        if magic_len < magic.len() && newest {
            // Created but never written before the crash.
            drop(reader);
            std::fs::remove_file(path).map_err(io_error(path))?;
            continue;
        }
        if &magic != SEGMENT_MAGIC {
            return Err(WalError::BadMagic { path: path.clone() }.into());
        }
        let mut valid_end = magic.len() as u64;
        let mut entries = 0u64;
        loop {
            let payload = match frame::read(&mut reader).map_err(io_error(path))? {
                ReadFrame::Frame(payload) => payload,
                ReadFrame::End => break,
                ReadFrame::Invalid(reason) => {
                    if newest {
                        WalTornTail {
                            path,
                            offset: valid_end,
                            reason,
                        }
                        .emit();
                        let file = OpenOptions::new()
                            .write(true)
                            .open(path)
                            .map_err(io_error(path))?;
                        file.set_len(valid_end)
                            .and_then(|()| file.sync_all())
                            .map_err(io_error(path))?;
                    } else {
                        WalCorruption {
                            path,
                            offset: valid_end,
                            reason,
                        }
                        .emit();
                    }
                    break;
                }
            };
            valid_end += (frame::HEADER_LEN + payload.len()) as u64;
            entries += 1;
            let Some(lsn) = peek_lsn(&payload) else {
                WalCorruption {
                    path,
                    offset: valid_end,
                    reason: "entry shorter than its lsn",
                }
                .emit();
                continue;
            };
            if lsn <= last_lsn {
                if lsn > checkpoint {
                    WalCorruption {
                        path,
                        offset: valid_end,
                        reason: "lsn out of order",
                    }
                    .emit();
                }
                continue;
            }
            if lsn != last_lsn + 1 {
                WalCorruption {
                    path,
                    offset: valid_end,
                    reason: "lsn gap: entries are missing",
                }
                .emit();
            }
            last_lsn = lsn;
            match decode_entry(&payload) {
                Ok(entry) => apply(entry)?,
                Err(reason) => WalCorruption {
                    path,
                    offset: valid_end,
                    reason,
                }
                .emit(),
            }
        }
        if entries == 0 && newest && *first > checkpoint {
            std::fs::remove_file(path).map_err(io_error(path))?;
        }
    }
    Ok(last_lsn + 1)
}

/// Reads the entries with `after < lsn <= through` again, all of them durable, without repairing
/// anything (the writer may be appending to the newest segment meanwhile). Used to re-add what the
/// index dropped after a failed add or commit.
pub(crate) fn read_range<E: From<WalError>>(
    dir: &Path,
    after: u64,
    through: u64,
    mut apply: impl FnMut(Entry) -> Result<(), E>,
) -> Result<(), E> {
    let segments = list_segments(dir)?;
    for (i, (_, path)) in segments.iter().enumerate() {
        if segments
            .get(i + 1)
            .is_some_and(|(next_first, _)| *next_first <= after + 1)
        {
            continue;
        }
        let file = File::open(path).map_err(io_error(path))?;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut magic = [0u8; 8];
        reader.read_exact(&mut magic).map_err(io_error(path))?;
        if &magic != SEGMENT_MAGIC {
            return Err(WalError::BadMagic { path: path.clone() }.into());
        }
        while let ReadFrame::Frame(payload) = frame::read(&mut reader).map_err(io_error(path))? {
            let Some(lsn) = peek_lsn(&payload) else { continue };
            if lsn <= after {
                continue;
            }
            if lsn > through {
                return Ok(());
            }
            match decode_entry(&payload) {
                Ok(entry) => apply(entry)?,
                Err(reason) => WalCorruption {
                    path,
                    offset: 0,
                    reason,
                }
                .emit(),
            }
        }
    }
    Ok(())
}

/// The durable position, published to waiting requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Durable {
    /// Every entry up to this LSN is on disk.
    pub lsn: u64,
    /// The writer failed: entries above `lsn` will never be durable.
    pub failed: bool,
}

struct Pending {
    buf: Vec<u8>,
    entries: Vec<Entry>,
    next_lsn: u64,
    closed: bool,
    failure: Option<String>,
}

struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
    durable: watch::Sender<Durable>,
}

fn lock(mutex: &Mutex<Pending>) -> MutexGuard<'_, Pending> {
    // The critical sections only move buffers and counters; a panic cannot leave them half-done.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Options of the log.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WalOptions {
    /// Size after which a new segment is started.
    pub segment_bytes: u64,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_bytes: DEFAULT_SEGMENT_BYTES,
        }
    }
}

/// The appending side of the log, with its writer thread.
pub(crate) struct Wal {
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl Wal {
    /// Starts appending at `next_lsn` in a new segment of `dir`. Durable entries go to `sink`;
    /// `fatal` is cancelled if the writer fails.
    pub(crate) fn start(
        dir: &Path,
        next_lsn: u64,
        options: WalOptions,
        sink: Sender<Vec<Entry>>,
        fatal: CancellationToken,
    ) -> Result<Wal, WalError> {
        let segment = Segment::create(dir, next_lsn)?;
        let (durable, _) = watch::channel(Durable {
            lsn: next_lsn - 1,
            failed: false,
        });
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending {
                buf: Vec::new(),
                entries: Vec::new(),
                next_lsn,
                closed: false,
                failure: None,
            }),
            wake: Condvar::new(),
            durable,
        });
        let writer = Writer {
            shared: shared.clone(),
            dir: dir.to_path_buf(),
            segment,
            options,
            sink,
            fatal,
        };
        let handle = std::thread::Builder::new()
            .name("owl-wal-writer".into())
            .spawn(move || writer.run())
            .map_err(io_error(dir))?;
        Ok(Wal {
            shared,
            writer: Mutex::new(Some(handle)),
        })
    }

    /// Appends an entry; returns its LSN. It is durable once [`Wal::wait_durable`] returns.
    pub(crate) fn append(
        &self,
        encoded: &EncodedEntry,
        batch: Option<BatchKey>,
        items: Vec<IngestItem>,
    ) -> Result<u64, WalError> {
        let mut pending = lock(&self.shared.pending);
        if let Some(failure) = &pending.failure {
            return Err(WalError::Failed(failure.clone()));
        }
        if pending.closed {
            return Err(WalError::Closed);
        }
        let lsn = pending.next_lsn;
        let lsn_bytes = lsn.to_le_bytes();
        let mut crc = crc32fast::Hasher::new();
        crc.update(&lsn_bytes);
        crc.combine(&encoded.crc);
        frame::encode_with_crc(
            &mut pending.buf,
            lsn_bytes.len() + encoded.bytes.len(),
            crc.finalize(),
        );
        pending.buf.extend_from_slice(&lsn_bytes);
        pending.buf.extend_from_slice(&encoded.bytes);
        pending.entries.push(Entry { lsn, batch, items });
        pending.next_lsn += 1;
        drop(pending);
        self.shared.wake.notify_one();
        Ok(lsn)
    }

    /// The LSN of the last appended entry (durable or not).
    pub(crate) fn last_appended(&self) -> u64 {
        lock(&self.shared.pending).next_lsn - 1
    }

    /// Waits until the entry `lsn` is durable.
    pub(crate) async fn wait_durable(&self, lsn: u64) -> Result<(), WalError> {
        let mut durable = self.shared.durable.subscribe();
        let state = *durable
            .wait_for(|d| d.lsn >= lsn || d.failed)
            .await
            .map_err(|_| WalError::Closed)?;
        if state.lsn >= lsn {
            return Ok(());
        }
        Err(WalError::Failed(
            lock(&self.shared.pending).failure.clone().unwrap_or_default(),
        ))
    }

    /// The current durable position.
    #[cfg(test)]
    pub(crate) fn durable(&self) -> Durable {
        *self.shared.durable.borrow()
    }

    /// Stops accepting appends, lets the writer make everything appended durable, and waits for it.
    pub(crate) fn close(&self) {
        lock(&self.shared.pending).closed = true;
        self.shared.wake.notify_one();
        let handle = self
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(handle) = handle {
            // The writer catches its own errors; a panic there is a bug worth propagating.
            if let Err(panic) = handle.join() {
                std::panic::resume_unwind(panic);
            }
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.close();
    }
}

/// The segment being appended to.
struct Segment {
    file: File,
    path: PathBuf,
    len: u64,
}

impl Segment {
    fn create(dir: &Path, first_lsn: u64) -> Result<Segment, WalError> {
        let path = dir.join(segment_name(first_lsn));
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)
            .map_err(io_error(&path))?;
        file.write_all(SEGMENT_MAGIC)
            .and_then(|()| file.sync_data())
            .map_err(io_error(&path))?;
        sync_dir(dir)?;
        Ok(Segment {
            file,
            path,
            len: SEGMENT_MAGIC.len() as u64,
        })
    }
}

struct Writer {
    shared: Arc<Shared>,
    dir: PathBuf,
    segment: Segment,
    options: WalOptions,
    sink: Sender<Vec<Entry>>,
    fatal: CancellationToken,
}

impl Writer {
    fn run(mut self) {
        let mut spare = Vec::new();
        loop {
            let (buf, entries, last_lsn) = {
                let mut pending = lock(&self.shared.pending);
                while pending.buf.is_empty() && !pending.closed {
                    pending = self
                        .shared
                        .wake
                        .wait(pending)
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                }
                if pending.buf.is_empty() {
                    return;
                }
                let buf = std::mem::replace(&mut pending.buf, std::mem::take(&mut spare));
                (buf, std::mem::take(&mut pending.entries), pending.next_lsn - 1)
            };
            if let Err(error) = self.write(&buf, entries.len()) {
                self.fail(error);
                return;
            }
            self.shared.durable.send_modify(|d| d.lsn = last_lsn);
            if self.sink.send(entries).is_err() {
                self.fail(WalError::Failed("the indexer stopped".into()));
                return;
            }
            spare = buf;
            spare.clear();
            if self.segment.len >= self.options.segment_bytes {
                match Segment::create(&self.dir, last_lsn + 1) {
                    Ok(segment) => {
                        WalSegmentRotated {
                            closed: &self.segment.path,
                            bytes: self.segment.len,
                        }
                        .emit();
                        self.segment = segment;
                    }
                    Err(error) => {
                        self.fail(error);
                        return;
                    }
                }
            }
        }
    }

    fn write(&mut self, buf: &[u8], entries: usize) -> Result<(), WalError> {
        let started = Instant::now();
        self.segment
            .file
            .write_all(buf)
            .map_err(io_error(&self.segment.path))?;
        self.segment
            .file
            .sync_data()
            .map_err(io_error(&self.segment.path))?;
        self.segment.len += buf.len() as u64;
        WalSynced {
            entries,
            bytes: buf.len(),
            elapsed: started.elapsed(),
        }
        .emit();
        Ok(())
    }

    /// After a failed write or sync nothing written since the last sync can be trusted (the page
    /// cache may have dropped it), so the log stops for good; a restart recovers from disk.
    fn fail(&self, error: WalError) {
        WalWriteFailed { error: &error }.emit();
        let mut pending = lock(&self.shared.pending);
        pending.failure = Some(error.to_string());
        pending.closed = true;
        pending.buf.clear();
        pending.entries.clear();
        drop(pending);
        self.shared.durable.send_modify(|d| d.failed = true);
        self.fatal.cancel();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use owl_model::LogRecord;

    use super::*;

    fn record(id: &str, message: &str) -> IngestItem {
        let line =
            format!(r#"{{"id":"{id}","@timestamp":"2025-12-07T10:30:00.123Z","message":"{message}"}}"#);
        IngestItem::parse(line.as_bytes(), Utc::now()).unwrap()
    }

    fn encode(batch: Option<&BatchKey>, items: &[IngestItem]) -> EncodedEntry {
        let lines: Vec<Vec<u8>> = items.iter().map(IngestItem::to_line).collect();
        EncodedEntry::new(batch, lines.iter().map(Vec::as_slice))
    }

    /// Appends each batch and waits until it is durable, so that with tiny segments every entry
    /// gets a segment of its own.
    fn append_all(dir: &Path, next: u64, options: WalOptions, batches: &[Vec<IngestItem>]) -> Vec<Entry> {
        let (tx, rx) = mpsc::channel();
        let wal = Wal::start(dir, next, options, tx, CancellationToken::new()).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        for (i, items) in batches.iter().enumerate() {
            let key = BatchKey {
                agent: "agent-1".into(),
                seq: i as u64,
            };
            let lsn = wal
                .append(&encode(Some(&key), items), Some(key), items.clone())
                .unwrap();
            runtime.block_on(wal.wait_durable(lsn)).unwrap();
        }
        wal.close();
        rx.try_iter().flatten().collect()
    }

    fn replay_all(dir: &Path, checkpoint: u64) -> (Vec<Entry>, u64) {
        let mut entries = Vec::new();
        let next = replay(dir, checkpoint, |e| {
            entries.push(e);
            Ok::<_, WalError>(())
        })
        .unwrap();
        (entries, next)
    }

    #[test]
    fn appended_entries_are_durable_in_order_and_replay_identically() {
        let dir = tempfile::tempdir().unwrap();
        let batches = vec![
            vec![record("a", "one"), record("b", "two")],
            vec![record("c", "中文 three")],
        ];
        let sent = append_all(dir.path(), 1, WalOptions::default(), &batches);
        assert_eq!(sent.iter().map(|e| e.lsn).collect::<Vec<_>>(), [1, 2]);

        let (replayed, next) = replay_all(dir.path(), 0);
        assert_eq!(next, 3);
        assert_eq!(replayed.len(), 2);
        for (entry, items) in replayed.iter().zip(&batches) {
            assert_eq!(&entry.items, items);
            assert_eq!(entry.batch.as_ref().unwrap().agent, "agent-1");
        }
        assert_eq!(replayed[1].batch.as_ref().unwrap().seq, 1);
    }

    #[test]
    fn replay_skips_what_the_checkpoint_covers_and_deletes_covered_segments() {
        let dir = tempfile::tempdir().unwrap();
        let batches: Vec<Vec<IngestItem>> = (0..10).map(|i| vec![record(&format!("r{i}"), "m")]).collect();
        // Tiny segments: every group commit rotates.
        append_all(dir.path(), 1, WalOptions { segment_bytes: 1 }, &batches);
        let before = list_segments(dir.path()).unwrap().len();
        assert!(before >= 2, "expected several segments, got {before}");

        let (replayed, next) = replay_all(dir.path(), 7);
        assert_eq!(replayed.iter().map(|e| e.lsn).collect::<Vec<_>>(), [8, 9, 10]);
        assert_eq!(next, 11);
        let after = list_segments(dir.path()).unwrap();
        assert!(after.len() < before);
        // The segment holding entry 8 survives, and it is the oldest one left.
        assert!(after[0].0 <= 8, "{after:?}");
        assert!(after.get(1).is_none_or(|(first, _)| *first > 8), "{after:?}");
    }

    #[test]
    fn a_torn_tail_is_truncated_and_appends_continue_after_it() {
        let dir = tempfile::tempdir().unwrap();
        append_all(
            dir.path(),
            1,
            WalOptions::default(),
            &[vec![record("a", "kept")], vec![record("b", "torn")]],
        );
        let (_, path) = list_segments(dir.path()).unwrap().pop().unwrap();
        let len = std::fs::metadata(&path).unwrap().len();
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(len - 3).unwrap();
        drop(file);

        let (replayed, next) = replay_all(dir.path(), 0);
        assert_eq!(replayed.len(), 1);
        assert_eq!(next, 2);
        // The torn bytes are gone, so a later append after them cannot be hidden behind garbage.
        let (again, _) = replay_all(dir.path(), 0);
        assert_eq!(again.len(), 1);

        append_all(
            dir.path(),
            next,
            WalOptions::default(),
            &[vec![record("c", "after restart")]],
        );
        let (replayed, next) = replay_all(dir.path(), 0);
        assert_eq!(replayed.iter().map(|e| e.lsn).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(next, 3);
        let LogRecord { id, .. } = match &replayed[1].items[0] {
            IngestItem::Log(r) => (**r).clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(id, "c");
    }

    #[test]
    fn corruption_in_an_older_segment_skips_only_its_rest() {
        let dir = tempfile::tempdir().unwrap();
        let batches: Vec<Vec<IngestItem>> = (0..4).map(|i| vec![record(&format!("r{i}"), "m")]).collect();
        append_all(dir.path(), 1, WalOptions { segment_bytes: 1 }, &batches);
        let segments = list_segments(dir.path()).unwrap();
        let (_, first) = &segments[0];
        let mut bytes = std::fs::read(first).unwrap();
        // The first payload byte of the segment's first frame.
        bytes[SEGMENT_MAGIC.len() + frame::HEADER_LEN] ^= 0xff;
        std::fs::write(first, bytes).unwrap();

        let (replayed, next) = replay_all(dir.path(), 0);
        let lsns: Vec<u64> = replayed.iter().map(|e| e.lsn).collect();
        assert_eq!(lsns, [2, 3, 4]);
        assert_eq!(next, 5);
    }

    #[test]
    fn an_empty_newest_segment_is_removed_and_its_name_reused() {
        let dir = tempfile::tempdir().unwrap();
        append_all(dir.path(), 1, WalOptions::default(), &[vec![record("a", "m")]]);
        // A crash right after creating the next segment leaves a file with the magic only.
        Segment::create(dir.path(), 2).unwrap();
        let (_, next) = replay_all(dir.path(), 0);
        assert_eq!(next, 2);
        append_all(dir.path(), next, WalOptions::default(), &[vec![record("b", "m")]]);
        let (replayed, _) = replay_all(dir.path(), 0);
        assert_eq!(replayed.len(), 2);
    }

    #[test]
    fn truncation_keeps_segments_with_uncommitted_entries() {
        let dir = tempfile::tempdir().unwrap();
        let batches: Vec<Vec<IngestItem>> = (0..5).map(|i| vec![record(&format!("r{i}"), "m")]).collect();
        append_all(dir.path(), 1, WalOptions { segment_bytes: 1 }, &batches);
        truncate_through(dir.path(), 3).unwrap();
        let (replayed, _) = replay_all(dir.path(), 3);
        assert_eq!(replayed.iter().map(|e| e.lsn).collect::<Vec<_>>(), [4, 5]);
        truncate_through(dir.path(), 5).unwrap();
        assert_eq!(
            list_segments(dir.path()).unwrap().len(),
            1,
            "the newest segment always stays"
        );
    }

    #[test]
    fn read_range_returns_exactly_the_asked_entries_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let batches: Vec<Vec<IngestItem>> = (0..6).map(|i| vec![record(&format!("r{i}"), "m")]).collect();
        append_all(dir.path(), 1, WalOptions { segment_bytes: 1 }, &batches);
        let mut lsns = Vec::new();
        read_range(dir.path(), 2, 5, |e| {
            lsns.push(e.lsn);
            Ok::<_, WalError>(())
        })
        .unwrap();
        assert_eq!(lsns, [3, 4, 5]);
    }

    #[tokio::test]
    async fn concurrent_appends_share_syncs_and_all_become_durable() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = mpsc::channel();
        let wal =
            Arc::new(Wal::start(dir.path(), 1, WalOptions::default(), tx, CancellationToken::new()).unwrap());
        let mut tasks = Vec::new();
        for i in 0..64 {
            let wal = wal.clone();
            tasks.push(tokio::spawn(async move {
                let items = vec![record(&format!("r{i}"), "m")];
                let lsn = wal.append(&encode(None, &items), None, items).unwrap();
                wal.wait_durable(lsn).await.unwrap();
                lsn
            }));
        }
        let mut lsns = Vec::new();
        for task in tasks {
            lsns.push(task.await.unwrap());
        }
        lsns.sort();
        assert_eq!(lsns, (1..=64).collect::<Vec<_>>());
        assert_eq!(wal.durable().lsn, 64);
        wal.close();
        let delivered: Vec<u64> = rx.try_iter().flatten().map(|e| e.lsn).collect();
        assert_eq!(
            delivered,
            (1..=64).collect::<Vec<_>>(),
            "the indexer sees entries in LSN order"
        );
    }

    #[test]
    fn a_closed_log_refuses_appends() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, _rx) = mpsc::channel();
        let wal = Wal::start(dir.path(), 1, WalOptions::default(), tx, CancellationToken::new()).unwrap();
        wal.close();
        let items = vec![record("a", "m")];
        assert!(matches!(
            wal.append(&encode(None, &items), None, items),
            Err(WalError::Closed)
        ));
    }

    #[tokio::test]
    async fn a_dead_indexer_fails_the_log_and_wakes_waiters() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = mpsc::channel();
        drop(rx);
        let fatal = CancellationToken::new();
        let wal = Wal::start(dir.path(), 1, WalOptions::default(), tx, fatal.clone()).unwrap();
        let items = vec![record("a", "m")];
        let lsn = wal.append(&encode(None, &items), None, items).unwrap();
        // The write itself succeeded; only the hand-off failed, so the entry is durable.
        wal.wait_durable(lsn).await.unwrap();
        fatal.cancelled().await;
        let items = vec![record("b", "m")];
        assert!(matches!(
            wal.append(&encode(None, &items), None, items),
            Err(WalError::Failed(_))
        ));
    }
}
