//! The indexing loop: durable WAL entries into the index and the metrics store, a commit every
//! `collector.commit_interval_ms`, then the checkpoint.
//!
//! One thread owns the loop. It receives entries from the WAL writer once they are durable, in
//! LSN order, journals their ids ([`crate::dedup`]), adds their records with
//! [`owl_index::Index::add`] (searchable at once through the index's in-memory tail) and appends
//! samples and heartbeats to the metrics store. When the interval has passed it syncs the
//! journal and the metrics store, commits the index, writes the checkpoint and deletes the WAL
//! segments it covers.
//!
//! A failed add, metrics append or commit loses nothing: the WAL still holds every entry above the
//! checkpoint. The loop stops taking new entries (the backlog grows, so ingest answers 429), waits
//! with a doubling pause, and re-adds everything above the checkpoint from the WAL files;
//! re-adding is safe because the index replaces a record whose id it already holds, and the
//! metrics store skips a sample or heartbeat it already holds (same sender and timestamp). The
//! same two rules make the replay at start idempotent: entries above the checkpoint may have
//! reached the index tail or the metrics files before a crash.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use owl_index::{Index, IndexError};
use owl_model::{Heartbeat, IngestItem, LogRecord, MetricSample};
use tokio_util::sync::CancellationToken;

use crate::checkpoint;
use crate::dedup::{Journal, id_hash};
use crate::events::{IndexAdded, IndexCommitted, IndexFailed};
use crate::observer::IngestObserver;
use crate::wal::{self, Entry, WalError};

/// Records gathered from the channel into one `Index::add` call at most.
const MAX_RECORDS_PER_ADD: usize = 20_000;
/// First pause after a failure; it doubles up to [`MAX_RETRY_PAUSE`].
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(500);
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(30);

/// Items accepted into the WAL versus items applied to the index: their difference is what
/// back-pressure watches.
#[derive(Debug, Default)]
pub(crate) struct Backlog {
    appended: AtomicU64,
    applied: AtomicU64,
}

impl Backlog {
    pub(crate) fn appended(&self, items: usize) {
        self.appended.fetch_add(items as u64, Ordering::AcqRel);
    }

    fn applied(&self, items: usize) {
        self.applied.fetch_add(items as u64, Ordering::AcqRel);
    }

    /// Items durable but not yet in the index.
    pub(crate) fn pending(&self) -> u64 {
        // `applied` is read first: it never passes `appended`, so the difference never underflows
        // by a racing update.
        let applied = self.applied.load(Ordering::Acquire);
        self.appended.load(Ordering::Acquire).saturating_sub(applied)
    }
}

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum IndexerError {
    /// Reading the WAL or writing the journal or checkpoint failed.
    #[error(transparent)]
    Wal(#[from] WalError),
    /// The index or metrics store refused.
    #[error("{stage}: {source}")]
    Index {
        /// `add`, `metrics`, `metrics sync` or `commit`.
        stage: &'static str,
        /// The index's error.
        source: IndexError,
    },
}

impl IndexerError {
    fn stage(&self) -> &'static str {
        match self {
            IndexerError::Wal(_) => "wal",
            IndexerError::Index { stage, .. } => stage,
        }
    }
}

/// A failure being recovered from.
struct Failure {
    /// Items taken from the channel whose application failed, owed to the backlog.
    owed_items: usize,
    /// Entries from this LSN on need their samples and heartbeats appended again.
    metrics_from: u64,
    pause: Duration,
}

/// The state of the loop.
pub(crate) struct Indexer {
    index: Index,
    journal: Journal,
    wal_dir: PathBuf,
    backlog: Arc<Backlog>,
    commit_interval: Duration,
    /// Highest LSN taken from the channel (or replayed).
    received_lsn: u64,
    /// Highest LSN whose records are in the index (committed or not).
    applied_lsn: u64,
    /// The checkpoint.
    committed_lsn: u64,
    /// Sees live items before they are indexed (not replayed or re-added ones).
    observer: Option<Arc<dyn IngestObserver>>,
    /// Records added since the last commit.
    uncommitted_records: usize,
}

impl Indexer {
    pub(crate) fn new(
        index: Index,
        journal: Journal,
        wal_dir: PathBuf,
        backlog: Arc<Backlog>,
        commit_interval: Duration,
        checkpoint: u64,
    ) -> Indexer {
        Indexer {
            index,
            journal,
            wal_dir,
            backlog,
            commit_interval,
            received_lsn: checkpoint,
            applied_lsn: checkpoint,
            committed_lsn: checkpoint,
            observer: None,
            uncommitted_records: 0,
        }
    }

    /// Shows every item applied from now on, except re-added ones, to `observer`.
    pub(crate) fn set_observer(&mut self, observer: Arc<dyn IngestObserver>) {
        self.observer = Some(observer);
    }

    /// Applies entries read back from the WAL at start.
    pub(crate) fn apply_replayed(&mut self, entries: Vec<Entry>) -> Result<(), IndexerError> {
        if let Some(last) = entries.last() {
            self.received_lsn = self.received_lsn.max(last.lsn);
        }
        self.apply(entries, true, 0)
    }

    /// Journals, indexes and stores `entries`; samples and heartbeats only of entries from LSN
    /// `metrics_from` on. Journals only when `journal` is set (a resync re-adds what was
    /// journaled already).
    fn apply(&mut self, entries: Vec<Entry>, journal: bool, metrics_from: u64) -> Result<(), IndexerError> {
        let Some(last_lsn) = entries.last().map(|e| e.lsn) else {
            return Ok(());
        };
        let mut records: Vec<LogRecord> = Vec::new();
        let mut samples: Vec<MetricSample> = Vec::new();
        let mut heartbeats: Vec<Heartbeat> = Vec::new();
        let mut ids = Vec::new();
        for entry in entries {
            ids.clear();
            let stored = entry.items.len() as u32;
            let with_metrics = entry.lsn >= metrics_from;
            for item in entry.items {
                match item {
                    IngestItem::Log(record) => {
                        ids.push(id_hash(&record.id));
                        records.push(*record);
                    }
                    IngestItem::Metric(sample) if with_metrics => samples.push(sample),
                    IngestItem::Heartbeat(beat) if with_metrics => heartbeats.push(beat),
                    IngestItem::Metric(_) | IngestItem::Heartbeat(_) => {}
                }
            }
            if journal {
                self.journal
                    .append(entry.lsn, entry.batch.as_ref().map(|key| (key, stored)), &ids)?;
            }
        }
        if journal && let Some(observer) = &self.observer {
            observer.on_stored(&records, &samples, &heartbeats);
        }
        if !records.is_empty() {
            self.index
                .add(&records)
                .map_err(|source| IndexerError::Index { stage: "add", source })?;
        }
        let metrics = self.index.metrics();
        if !samples.is_empty() {
            metrics
                .append_samples(&samples)
                .map_err(|source| IndexerError::Index {
                    stage: "metrics",
                    source,
                })?;
        }
        if !heartbeats.is_empty() {
            metrics
                .append_heartbeats(&heartbeats)
                .map_err(|source| IndexerError::Index {
                    stage: "metrics",
                    source,
                })?;
        }
        self.applied_lsn = self.applied_lsn.max(last_lsn);
        self.uncommitted_records += records.len();
        IndexAdded {
            records: records.len(),
            metrics: samples.len() + heartbeats.len(),
            pending: self.backlog.pending(),
        }
        .emit();
        Ok(())
    }

    /// Syncs the journal and the metrics store, commits the index, moves the checkpoint and drops
    /// covered segments.
    pub(crate) fn commit(&mut self) -> Result<(), IndexerError> {
        if self.applied_lsn <= self.committed_lsn {
            return Ok(());
        }
        let started = Instant::now();
        let through = self.applied_lsn;
        self.journal.sync()?;
        // Samples and heartbeats live outside tantivy: like the commit, their fsync must precede
        // the checkpoint, or a power loss after the segments go would lose acknowledged samples.
        self.index
            .metrics()
            .sync()
            .map_err(|source| IndexerError::Index {
                stage: "metrics sync",
                source,
            })?;
        self.index.commit().map_err(|source| IndexerError::Index {
            stage: "commit",
            source,
        })?;
        checkpoint::write(&self.wal_dir, through)?;
        self.committed_lsn = through;
        wal::truncate_through(&self.wal_dir, through)?;
        IndexCommitted {
            checkpoint: through,
            records: self.uncommitted_records,
            elapsed: started.elapsed(),
        }
        .emit();
        self.uncommitted_records = 0;
        Ok(())
    }

    /// Re-adds everything above the checkpoint from the WAL files.
    fn resync(&mut self, metrics_from: u64) -> Result<(), IndexerError> {
        let mut batch = Vec::new();
        let mut records = 0;
        let dir = self.wal_dir.clone();
        wal::read_range(&dir, self.committed_lsn, self.received_lsn, |entry: Entry| {
            records += entry.items.len();
            batch.push(entry);
            if records >= MAX_RECORDS_PER_ADD {
                records = 0;
                self.apply(std::mem::take(&mut batch), false, metrics_from)?;
            }
            Ok::<_, IndexerError>(())
        })?;
        self.apply(batch, false, metrics_from)?;
        self.applied_lsn = self.received_lsn;
        Ok(())
    }

    /// Runs until the WAL writer hangs up (shutdown), then commits what it has.
    pub(crate) fn run(mut self, entries: Receiver<Vec<Entry>>, stopping: CancellationToken) {
        let mut last_commit = Instant::now();
        let mut failure: Option<Failure> = None;
        loop {
            if let Some(current) = failure.as_mut() {
                if !sleep_unless(current.pause, &stopping) {
                    // Shutting down with the index still failing: what is above the checkpoint
                    // stays in the WAL and is replayed at the next start.
                    return;
                }
                match self.resync(current.metrics_from) {
                    Ok(()) => {
                        self.backlog.applied(current.owed_items);
                        failure = None;
                    }
                    Err(error) => {
                        current.pause = (current.pause * 2).min(MAX_RETRY_PAUSE);
                        IndexFailed {
                            stage: error.stage(),
                            error: &error,
                            retry_in: current.pause,
                        }
                        .emit();
                        continue;
                    }
                }
            }
            let wait = self.commit_interval.saturating_sub(last_commit.elapsed());
            match entries.recv_timeout(wait) {
                Ok(first) => {
                    let batch = gather(first, &entries);
                    let items: usize = batch.iter().map(|e| e.items.len()).sum();
                    let first_lsn = batch.first().map_or(u64::MAX, |e| e.lsn);
                    if let Some(last) = batch.last() {
                        self.received_lsn = last.lsn;
                    }
                    match self.apply(batch, true, 0) {
                        Ok(()) => self.backlog.applied(items),
                        Err(error) => {
                            let pause = FIRST_RETRY_PAUSE;
                            IndexFailed {
                                stage: error.stage(),
                                error: &error,
                                retry_in: pause,
                            }
                            .emit();
                            failure = Some(Failure {
                                owed_items: items,
                                metrics_from: first_lsn,
                                pause,
                            });
                            continue;
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    if let Err(error) = self.commit() {
                        IndexFailed {
                            stage: error.stage(),
                            error: &error,
                            retry_in: Duration::ZERO,
                        }
                        .emit();
                    }
                    return;
                }
            }
            if last_commit.elapsed() >= self.commit_interval {
                last_commit = Instant::now();
                if let Err(error) = self.commit() {
                    let pause = FIRST_RETRY_PAUSE;
                    IndexFailed {
                        stage: error.stage(),
                        error: &error,
                        retry_in: pause,
                    }
                    .emit();
                    failure = Some(Failure {
                        owed_items: 0,
                        metrics_from: u64::MAX,
                        pause,
                    });
                }
            }
        }
    }
}

/// Takes more entries already waiting, up to [`MAX_RECORDS_PER_ADD`] items.
fn gather(first: Vec<Entry>, entries: &Receiver<Vec<Entry>>) -> Vec<Entry> {
    let mut batch = first;
    let mut items: usize = batch.iter().map(|e| e.items.len()).sum();
    while items < MAX_RECORDS_PER_ADD {
        let Ok(more) = entries.try_recv() else { break };
        items += more.iter().map(|e| e.items.len()).sum::<usize>();
        batch.extend(more);
    }
    batch
}

/// Sleeps for `pause` in short steps; false if `stopping` was cancelled meanwhile.
fn sleep_unless(pause: Duration, stopping: &CancellationToken) -> bool {
    let until = Instant::now() + pause;
    while Instant::now() < until {
        if stopping.is_cancelled() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50).min(until.saturating_duration_since(Instant::now())));
    }
    !stopping.is_cancelled()
}
