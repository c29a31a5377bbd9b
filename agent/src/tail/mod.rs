//! The tailer: finds files, follows them through rotation, reads them, and fills batches.
//!
//! Design note
//! - One dedicated thread does all reading, parsing, masking and batching. Reading is plain
//!   positional reads into one reusable buffer; records are serialised straight into the batch
//!   body. Sealed batches go to the disk buffer; when it is full the push blocks, which pauses
//!   reading (back-pressure: the data stays in the files).
//! - notify events are hints that wake the thread early; a rescan of the globs every
//!   `poll_interval_ms` is the truth, so missed events (inotify limits, network filesystems)
//!   cost latency, never data. When the watcher cannot be created the agent only polls.
//! - Files are tracked by fingerprint (see `fingerprint.rs`) and kept open:
//!   - rename-and-create: the old file stays open (the path now leads elsewhere, so it is
//!     "detached") and is read to its end; it is closed once it has not grown for
//!     `rotate_wait_ms`. The new file at the path has another fingerprint and is read from 0.
//!   - copytruncate: a file that became shorter than the read position, or whose first line
//!     changed, was truncated: it is read again from 0 under its new fingerprint. The first
//!     line is checked again after every read, so bytes read at the old position after a
//!     truncation and quick writes are dropped, never taken for the old content. The part of the
//!     old content not read yet is read from the rotated copy when the input's globs match it
//!     (the copy has the old fingerprint, so it resumes where the original stopped).
//!     copytruncate has a window logrotate documents too: lines written between the copy and the
//!     truncation reach neither file. Nothing a reader does can recover them; use
//!     rename-and-create (with a reopen signal) where every line matters.
//!   - deleted while open: read to the end like a detached file, then closed.
//! - Files present at start resume at their acknowledged checkpoint (or the start, or the end
//!   with `read_from = "end"`); files that appear later are always read from the start, so
//!   nothing written right after a rotation is skipped.

mod discover;
mod file;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};

use chrono::Utc;
use notify::Watcher as _;
use owl_config::{InputConfig, ReadFrom};

use crate::batch::{BatchBuilder, Compressor};
use crate::buffer::{Buffer, Pushed};
use crate::checkpoint::CheckpointStore;
use crate::fingerprint::Fingerprint;
use crate::metrics::Metrics;
use crate::multiline::{Joiner, Out};
use crate::process::{LineFlags, Processor};

pub(crate) use discover::{FileMatcher, GlobError};
use file::TrackedFile;

/// Bytes read from one file before the others get a turn.
const READ_BUDGET: u64 = 4 << 20;
/// Size of the read buffer.
const READ_BUF: usize = 256 << 10;

/// A message to the tailer thread.
pub(crate) enum TailerMsg {
    /// A filesystem event: something changed; `rescan` when files may have appeared or moved.
    Fs { rescan: bool },
    /// A ready NDJSON line to ship (metric sample, heartbeat).
    Line(Vec<u8>),
    /// Stop now.
    Stop,
}

/// One input, ready to run.
pub(crate) struct Input {
    pub config: InputConfig,
    pub matcher: FileMatcher,
    pub processor: Processor,
}

/// Where sealed batches go.
pub(crate) struct Output {
    pub batch: BatchBuilder,
    pub compressor: Compressor,
    pub buffer: Arc<Buffer>,
    pub metrics: Arc<Metrics>,
    pub stop: Arc<AtomicBool>,
}

impl Output {
    fn handle(&mut self, out: Out<'_>, processor: &Processor, fp: Fingerprint, now: chrono::DateTime<Utc>) {
        match out {
            Out::Record {
                text,
                start,
                end,
                truncated_from,
                origin,
            } => {
                let (text, invalid_utf8) = utf8(text, truncated_from.is_some());
                if invalid_utf8 {
                    Metrics::add(&self.metrics.lines_invalid_utf8, 1);
                }
                let flags = LineFlags {
                    truncated_from,
                    invalid_utf8,
                };
                let record = processor.record(&text, flags, &fp, start, now, origin.as_ref());
                self.batch.push_record(&record, fp, end);
                Metrics::add(&self.metrics.records_read, 1);
                // By size here; by time in the reader loop (no clock read per record).
                if self.batch.is_full() {
                    self.seal();
                }
            }
            Out::Skip { end } => self.batch.mark(fp, end),
        }
    }

    /// Seals the batch into the disk buffer (waiting for room when it is full).
    pub(crate) fn seal(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let records = u64::from(self.batch.records());
        let value = match self.batch.seal(&mut self.compressor) {
            Ok(value) => value,
            Err(e) => {
                // Compressing into memory only fails on allocation failure; the records are
                // read again after a restart since their checkpoint does not move.
                tracing::error!(error = %e, records, "could not compress a batch; it is dropped");
                return;
            }
        };
        loop {
            match self.buffer.push(&value, &self.stop) {
                Ok(Pushed::Stored(_)) => {
                    Metrics::add(&self.metrics.batches_buffered, 1);
                    Metrics::add(&self.metrics.records_buffered, records);
                    // Written through at once: after a rotation the buffer may hold the only copy
                    // of a file's last lines (the renamed file need not match the paths), and a
                    // crash must not lose them.
                    if let Err(e) = self.buffer.flush() {
                        tracing::error!(error = %e, "could not flush the disk buffer");
                    }
                    return;
                }
                Ok(Pushed::Dropped) => {
                    crate::events::BatchDropped { records }.emit(&self.metrics);
                    return;
                }
                Ok(Pushed::Stopped) => return,
                Err(e) => {
                    tracing::error!(error = %e, "could not write to the disk buffer; retrying in 1 s");
                    if self.stop.load(Ordering::Relaxed) {
                        return;
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
    }
}

/// The text of a record: valid UTF-8 as is, else with replacement characters (flagged). A
/// multi-byte character cut by truncation is dropped rather than flagged.
fn utf8(bytes: &[u8], truncated: bool) -> (Cow<'_, str>, bool) {
    match std::str::from_utf8(bytes) {
        Ok(text) => (Cow::Borrowed(text), false),
        Err(e) if truncated && e.error_len().is_none() => {
            let valid =
                std::str::from_utf8(&bytes[..e.valid_up_to()]).expect("valid_up_to is a char boundary");
            (Cow::Borrowed(valid), false)
        }
        Err(_) => (String::from_utf8_lossy(bytes), true),
    }
}

/// A file read to its end and closed, remembered so a rescan does not open it again. Size and
/// change times are compared too: an inode number is reused once the file is deleted and closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Closed {
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
}

impl Closed {
    fn of(meta: &std::fs::Metadata) -> Closed {
        use std::os::unix::fs::MetadataExt;
        Closed {
            size: meta.len(),
            mtime_ns: meta
                .mtime()
                .saturating_mul(1_000_000_000)
                .saturating_add(meta.mtime_nsec()),
            ctime_ns: meta
                .ctime()
                .saturating_mul(1_000_000_000)
                .saturating_add(meta.ctime_nsec()),
        }
    }
}

pub(crate) struct Tailer {
    inputs: Vec<Input>,
    files: Vec<TrackedFile>,
    /// Where to resume a file identity that is not open (closed after rotation, or truncated).
    known: HashMap<Fingerprint, u64>,
    closed: HashMap<(u64, u64), Closed>,
    /// Truncated identities whose rest should come from a rotated copy: `(fp, unread bytes)`.
    copies_wanted: Vec<(Fingerprint, u64)>,
    checkpoints: CheckpointStore,
    output: Output,
    metrics: Arc<Metrics>,
    rx: Receiver<TailerMsg>,
    watcher: Option<notify::RecommendedWatcher>,
    watched: Vec<PathBuf>,
    first_scan: bool,
    scan_interval: Duration,
    buf: Vec<u8>,
}

impl Tailer {
    pub(crate) fn new(
        inputs: Vec<Input>,
        checkpoints: CheckpointStore,
        output: Output,
        rx: Receiver<TailerMsg>,
        tx: SyncSender<TailerMsg>,
    ) -> Tailer {
        let scan_interval = Duration::from_millis(
            inputs
                .iter()
                .map(|i| i.config.poll_interval_ms)
                .min()
                .unwrap_or(1000),
        );
        let watcher = {
            let tx = tx.clone();
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let rescan = match &event {
                    Ok(e) => !matches!(
                        e.kind,
                        notify::EventKind::Modify(notify::event::ModifyKind::Data(_))
                            | notify::EventKind::Access(_)
                    ),
                    Err(_) => true,
                };
                // A full channel already holds a wake-up; events are only hints.
                let _ = tx.try_send(TailerMsg::Fs { rescan });
            })
        };
        let watcher = match watcher {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch files for changes; polling only");
                None
            }
        };
        let metrics = output.metrics.clone();
        Tailer {
            inputs,
            files: Vec::new(),
            known: HashMap::new(),
            closed: HashMap::new(),
            copies_wanted: Vec::new(),
            checkpoints,
            output,
            metrics,
            rx,
            watcher,
            watched: Vec::new(),
            first_scan: true,
            scan_interval,
            buf: vec![0; READ_BUF],
        }
    }

    /// Runs until a [`TailerMsg::Stop`] (or the stop flag); seals what is batched on the way out.
    pub(crate) fn run(mut self) {
        let mut next_scan = Instant::now();
        let mut rescan = true;
        loop {
            if self.output.stop.load(Ordering::Relaxed) {
                break;
            }
            let now = Instant::now();
            if rescan || now >= next_scan {
                self.scan();
                next_scan = Instant::now() + self.scan_interval;
                rescan = false;
            }
            let (more, truncated) = self.read_all();
            if truncated {
                // Look for the rotated copy at once, before a next rotation can remove it.
                self.scan();
                next_scan = Instant::now() + self.scan_interval;
                self.read_all();
            }
            let now = Instant::now();
            self.flush_due(now);
            self.close_drained(now);
            if self.output.batch.is_ready(now) {
                self.output.seal();
            }
            // Wait for an event, the next deadline, or nothing when there is more to read.
            let wait = if more {
                Duration::ZERO
            } else {
                let mut deadline = next_scan;
                for d in self
                    .files
                    .iter()
                    .filter_map(TrackedFile::deadline)
                    .chain(self.output.batch.deadline())
                {
                    deadline = deadline.min(d);
                }
                if self.files.iter().any(|f| f.detached_since.is_some()) {
                    deadline = deadline.min(now + Duration::from_millis(100));
                }
                deadline.saturating_duration_since(Instant::now())
            };
            match self.rx.recv_timeout(wait) {
                Ok(msg) => {
                    if self.handle(msg, &mut rescan) {
                        break;
                    }
                    // Take whatever else is queued without waiting.
                    while let Ok(msg) = self.rx.try_recv() {
                        if self.handle(msg, &mut rescan) {
                            self.finish();
                            return;
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        self.finish();
    }

    /// Returns `true` to stop.
    fn handle(&mut self, msg: TailerMsg, rescan: &mut bool) -> bool {
        match msg {
            TailerMsg::Fs { rescan: r } => *rescan |= r,
            TailerMsg::Line(line) => {
                self.output.batch.push_line(&line);
                if self.output.batch.is_ready(Instant::now()) {
                    self.output.seal();
                }
            }
            TailerMsg::Stop => return true,
        }
        false
    }

    /// On the way out: seal what is batched. Pending multiline records and unfinished lines are
    /// not emitted: the checkpoints stay before them and they are read again on the next start.
    fn finish(&mut self) {
        self.output.seal();
        if let Err(e) = self.output.buffer.flush() {
            tracing::error!(error = %e, "could not flush the disk buffer on shutdown");
        }
    }

    fn ensure_watched(&mut self) {
        let Some(watcher) = self.watcher.as_mut() else {
            return;
        };
        for input in &self.inputs {
            for (dir, recursive) in input.matcher.watch_dirs() {
                if self.watched.contains(&dir) || !dir.is_dir() {
                    continue;
                }
                let mode = if recursive {
                    notify::RecursiveMode::Recursive
                } else {
                    notify::RecursiveMode::NonRecursive
                };
                match watcher.watch(&dir, mode) {
                    Ok(()) => self.watched.push(dir),
                    Err(e) => {
                        tracing::debug!(dir = %dir.display(), error = %e, "cannot watch directory; polling it");
                        self.watched.push(dir);
                    }
                }
            }
        }
    }

    /// Rescans every input's globs: opens new files, notices renamed and deleted ones.
    fn scan(&mut self) {
        self.ensure_watched();
        let mut seen: Vec<bool> = vec![false; self.files.len()];
        for input_index in 0..self.inputs.len() {
            for path in self.inputs[input_index].matcher.files() {
                self.consider(input_index, &path, &mut seen);
            }
        }
        let now = Instant::now();
        for (index, file) in self.files.iter_mut().enumerate() {
            if seen.get(index).copied().unwrap_or(true) || file.detached_since.is_some() {
                continue;
            }
            // Not among the matches: is it still at its path (an exclude changed), or gone?
            let same = std::fs::metadata(&file.path).is_ok_and(|m| {
                use std::os::unix::fs::MetadataExt;
                m.dev() == file.dev && m.ino() == file.ino
            });
            if !same {
                file.detached_since = Some(now);
                crate::events::FileRotated { path: &file.path }.emit(&self.metrics);
            }
        }
        for (fp, unread) in std::mem::take(&mut self.copies_wanted) {
            if !self.files.iter().any(|f| f.fp == Some(fp)) {
                crate::events::TruncatedUnread {
                    fingerprint: fp,
                    bytes: unread,
                }
                .emit(&self.metrics);
            }
        }
        self.first_scan = false;
        Metrics::set(&self.metrics.files_tracked, self.files.len() as u64);
        let lag: BTreeMap<String, u64> = self
            .files
            .iter()
            .map(|f| (f.path.display().to_string(), f.size.saturating_sub(f.offset)))
            .collect();
        self.metrics.set_file_lag(lag);
        if self.known.len() > 100_000 {
            // Identities of files long gone; their acknowledged checkpoints are in sled anyway.
            self.known.clear();
        }
    }

    fn consider(&mut self, input_index: usize, path: &Path, seen: &mut [bool]) {
        use std::os::unix::fs::MetadataExt;
        let Ok(meta) = std::fs::metadata(path) else { return };
        let key = (meta.dev(), meta.ino());
        if let Some(index) = self.files.iter().position(|f| (f.dev, f.ino) == key) {
            let file = &mut self.files[index];
            if file.path != path {
                tracing::debug!(from = %file.path.display(), to = %path.display(), "tracked file renamed");
                file.path = path.to_path_buf();
            }
            if let Some(s) = seen.get_mut(index) {
                *s = true;
            }
            return;
        }
        if self.closed.get(&key) == Some(&Closed::of(&meta)) {
            return;
        }
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(path = %path.display(), error = %e, "cannot open file yet");
                return;
            }
        };
        let fp = match Fingerprint::of_file(&file) {
            Ok(Some(fp)) => fp,
            Ok(None) => return, // no complete first line yet
            Err(e) => {
                tracing::debug!(path = %path.display(), error = %e, "cannot read file head yet");
                return;
            }
        };
        if self.files.iter().any(|f| f.fp == Some(fp)) {
            // Same content as a file already open: a copy being made by copytruncate.
            return;
        }
        self.closed.remove(&key);
        let input = &self.inputs[input_index].config;
        let offset = match self.known.get(&fp) {
            Some(offset) => *offset,
            None => match self.checkpoints.get(&fp) {
                Ok(Some(offset)) => offset,
                Ok(None) if self.first_scan && input.read_from == ReadFrom::End => {
                    line_boundary_at_end(&file, meta.len())
                }
                Ok(None) => 0,
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, "cannot read checkpoint; file skipped for now");
                    return;
                }
            },
        };
        if offset > meta.len() {
            // The checkpoint is past the end: same first line, shorter file. Read it whole.
            tracing::warn!(path = %path.display(), offset, size = meta.len(), "checkpoint beyond end of file; reading from start");
        }
        let offset = if offset > meta.len() { 0 } else { offset };
        let joiner = match Joiner::new(&input.multiline, input.max_line_bytes) {
            Ok(j) => j,
            Err(e) => {
                tracing::error!(error = %e, "invalid multiline start pattern");
                return;
            }
        };
        tracing::debug!(path = %path.display(), fingerprint = %fp, offset, "tailing file");
        self.known.remove(&fp);
        self.files.push(TrackedFile::new(
            fp,
            path.to_path_buf(),
            file,
            &meta,
            input_index,
            offset,
            joiner,
            input.max_line_bytes,
            envelope_of(input.parser),
        ));
    }

    /// Reads every file once (up to its budget); returns whether any has more to read now, and
    /// whether a file was found truncated.
    fn read_all(&mut self) -> (bool, bool) {
        let Tailer {
            inputs,
            files,
            known,
            copies_wanted,
            output,
            metrics,
            buf,
            ..
        } = self;
        let mut more = false;
        let wanted_before = copies_wanted.len();
        let truncated_before = Metrics::get(&metrics.files_truncated);
        let now = Instant::now();
        let now_utc = Utc::now();
        let mut fps: Vec<Option<Fingerprint>> = files.iter().map(|f| f.fp).collect();
        for (index, file) in files.iter_mut().enumerate() {
            let mut others = std::mem::take(&mut fps);
            others[index] = None;
            let readable = check_identity(file, &others, known, copies_wanted, metrics);
            others[index] = file.fp;
            fps = others;
            if !readable {
                continue;
            }
            let Some(fp) = file.fp else { continue };
            if file.at_eof && file.size <= file.offset {
                continue;
            }
            let processor = &inputs[file.input].processor;
            let result = file.read(buf, READ_BUDGET, now, &mut |out| {
                output.handle(out, processor, fp, now_utc)
            });
            match result {
                Ok(pass) => {
                    Metrics::add(&metrics.bytes_read, pass.bytes);
                    Metrics::add(&metrics.lines_read, pass.lines);
                    Metrics::add(&metrics.nul_bytes, pass.nul_bytes);
                    Metrics::add(&metrics.lines_truncated, pass.truncated_lines);
                    more |= pass.more;
                }
                Err(e) => {
                    tracing::warn!(path = %file.path.display(), error = %e, "read failed; will retry");
                }
            }
        }
        let truncated =
            copies_wanted.len() > wanted_before || Metrics::get(&metrics.files_truncated) > truncated_before;
        (more, truncated)
    }

    fn flush_due(&mut self, now: Instant) {
        let Tailer {
            inputs,
            files,
            output,
            ..
        } = self;
        let now_utc = Utc::now();
        for file in files.iter_mut() {
            let Some(fp) = file.fp else { continue };
            let processor = &inputs[file.input].processor;
            file.flush_if_due(now, &mut |out| output.handle(out, processor, fp, now_utc));
        }
    }

    /// Closes rotated or deleted files that were read to the end and stopped growing.
    fn close_drained(&mut self, now: Instant) {
        let Tailer {
            inputs,
            files,
            known,
            closed,
            output,
            metrics,
            ..
        } = self;
        let now_utc = Utc::now();
        let mut index = 0;
        while index < files.len() {
            let file = &mut files[index];
            let wait = Duration::from_millis(inputs[file.input].config.rotate_wait_ms);
            let drained = file.detached_since.is_some_and(|since| {
                file.at_eof && now.duration_since(since) >= wait && now.duration_since(file.last_data) >= wait
            });
            if !drained {
                index += 1;
                continue;
            }
            let mut file = files.swap_remove(index);
            if let Some(fp) = file.fp {
                let processor = &inputs[file.input].processor;
                file.finish(now, &mut |out| output.handle(out, processor, fp, now_utc));
                known.insert(fp, file.emitted);
            }
            if let Ok(meta) = file.file.metadata() {
                closed.insert((file.dev, file.ino), Closed::of(&meta));
            }
            tracing::info!(path = %file.path.display(), "finished rotated or deleted file");
            Metrics::set(&metrics.files_tracked, files.len() as u64);
        }
    }
}

/// The runtime envelope an input's lines may have: its format, or either for `auto`.
fn envelope_of(parser: owl_config::ParserKind) -> Option<owl_parse::runtime::Envelope> {
    use owl_config::ParserKind;
    use owl_parse::runtime::Envelope;
    match parser {
        ParserKind::Cri => Some(Envelope::Cri),
        ParserKind::Docker => Some(Envelope::Docker),
        ParserKind::Auto => Some(Envelope::Any),
        _ => None,
    }
}

/// Checks that an open file still holds the content it was opened for; handles truncation.
/// `others` are the fingerprints of the other open files. Returns `false` if the file cannot be
/// read now.
fn check_identity(
    file: &mut TrackedFile,
    others: &[Option<Fingerprint>],
    known: &mut HashMap<Fingerprint, u64>,
    copies_wanted: &mut Vec<(Fingerprint, u64)>,
    metrics: &Metrics,
) -> bool {
    let Ok(meta) = file.file.metadata() else {
        return false;
    };
    let size = meta.len();
    // Before reading new data, make sure it is the same content: copytruncate followed by quick
    // writes can leave a file longer than the read position with other bytes at it.
    let truncated = size < file.offset
        || file.replaced
        || (file.fp.is_some()
            && size > file.offset
            && matches!(Fingerprint::of_file(&file.file), Ok(current) if current != file.fp));
    if truncated {
        Metrics::add(&metrics.files_truncated, 1);
        tracing::info!(path = %file.path.display(), size, offset = file.offset, "file truncated; reading it again from the start");
        let last_size = file.size;
        if let Some((old, at)) = file.restart_after_truncation() {
            known.insert(old, at);
            if last_size > at {
                copies_wanted.push((old, last_size - at));
            }
        }
    }
    file.size = size;
    if file.fp.is_none() {
        let fp = match Fingerprint::of_file(&file.file) {
            Ok(Some(fp)) => fp,
            _ => return false,
        };
        if others.contains(&Some(fp)) {
            // The new content is a copy of a file still open (rewritten in place by a copy):
            // wait until that one is done with it.
            return false;
        }
        file.fp = Some(fp);
        if let Some(at) = known.remove(&fp).filter(|at| *at <= size) {
            // A copy of content read before (copytruncate into an existing file).
            file.resume_at(at);
        }
    }
    true
}

/// The position after the last newline before `size` (so reading from the end starts on a line).
fn line_boundary_at_end(file: &std::fs::File, size: u64) -> u64 {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; 64 * 1024];
    let mut end = size;
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let len = (end - start) as usize;
        if file.read_exact_at(&mut buf[..len], start).is_err() {
            return size;
        }
        if let Some(pos) = memchr::memrchr(b'\n', &buf[..len]) {
            return start + pos as u64 + 1;
        }
        end = start;
        if size - end > 1 << 20 {
            break;
        }
    }
    size
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_handling() {
        assert_eq!(utf8(b"ok", false), (Cow::Borrowed("ok"), false));
        let (text, invalid) = utf8(b"a\xffb", false);
        assert_eq!((text.as_ref(), invalid), ("a\u{fffd}b", true));
        // "é" cut in half by truncation is dropped, not flagged.
        assert_eq!(utf8(b"caf\xc3", true), (Cow::Borrowed("caf"), false));
        assert!(utf8(b"caf\xc3", false).1);
    }

    #[test]
    fn end_position_is_a_line_boundary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        std::fs::write(&path, b"one\ntwo\nthr").unwrap();
        let file = std::fs::File::open(&path).unwrap();
        assert_eq!(line_boundary_at_end(&file, 11), 8);
        std::fs::write(&path, b"no newline").unwrap();
        assert_eq!(line_boundary_at_end(&std::fs::File::open(&path).unwrap(), 10), 10);
    }
}
