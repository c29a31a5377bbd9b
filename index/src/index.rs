//! [`Index`]: the partitioned log index, its writer side (add, commit, retention) and its read side
//! (search, get, stats, trace).

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use fs2::FileExt;
use owl_model::{Kind, LogRecord};
use tantivy::collector::Count;
use tantivy::columnar::StrColumn;
use tantivy::indexer::IndexWriterOptions;
use tantivy::schema::{IndexRecordOption, Value};
use tantivy::{DocAddress, DocSet, IndexWriter, Searcher, SegmentOrdinal, TERMINATED, TantivyDocument, Term};

use crate::error::{IndexError, Result};
use crate::filter::{CompiledFilter, LogFilter};
use crate::metrics_store::MetricsStore;
use crate::partition::{self, OpenWriter, Partition, PartitionKey, TailEntry, lock};
use crate::retention::{DiskUsage, PartitionUsage, RetentionPolicy, RetentionReport, dir_usage, is_expired};
use crate::schema::{F_ID, RecordView};
use crate::search::{
    Hit, HitSource, MAX_SEARCH_DEPTH, SearchRequest, SearchResponse, SortBy, SortOrder, SortSpec,
    TopCollector, order_hits,
};
use crate::stats::{LogStats, Partial, StatsCollector, StatsRequest};
use crate::trace::TraceView;

/// Name of the lock file that makes one process the writer of an index root.
const WRITER_LOCK_FILE: &str = ".owl-writer.lock";
/// Directory of the metrics store under the root.
const METRICS_DIR: &str = "metrics";
/// File under the root holding the writer's generation: a number it changes after every commit,
/// partition creation and partition drop, so a reader knows when to look at the disk again.
const GENERATION_FILE: &str = ".owl-generation";
/// Most records a trace returns.
pub const MAX_TRACE_RECORDS: usize = 10_000;
/// tantivy's smallest memory budget per indexing thread.
const MIN_WRITER_MEMORY_BYTES: usize = 15_000_000;

/// Runtime settings of the writer side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexSettings {
    /// Memory budget of each partition writer, in bytes, split across its threads (at least 15 MB
    /// per thread).
    pub writer_memory_bytes: usize,
    /// Indexing threads per partition writer.
    pub writer_threads: usize,
    /// Segment merge threads per partition writer.
    pub merge_threads: usize,
    /// Writers kept open at most; beyond it the least recently used is committed and closed.
    pub max_open_writers: usize,
    /// A writer with nothing to commit and unused this long is closed by `commit`, in milliseconds.
    pub writer_idle_ms: u64,
    /// Uncommitted records kept searchable in memory at most; `add` commits when there are more.
    pub max_tail_records: usize,
}

impl Default for IndexSettings {
    /// 24 MB and one indexing thread per writer (the target machine has two cores), six writers
    /// (today and yesterday of the three kinds around midnight), one minute idle, 200k tail records.
    fn default() -> Self {
        IndexSettings {
            writer_memory_bytes: 24_000_000,
            writer_threads: 1,
            merge_threads: 1,
            max_open_writers: 6,
            writer_idle_ms: 60_000,
            max_tail_records: 200_000,
        }
    }
}

impl IndexSettings {
    fn validate(&self) -> Result<()> {
        let invalid = |field, reason: String| Err(IndexError::InvalidSettings { field, reason });
        if self.writer_threads == 0 {
            return invalid("writer_threads", "must be at least 1".into());
        }
        if self.merge_threads == 0 {
            return invalid("merge_threads", "must be at least 1".into());
        }
        if self.max_open_writers == 0 {
            return invalid("max_open_writers", "must be at least 1".into());
        }
        if self.writer_memory_bytes / self.writer_threads < MIN_WRITER_MEMORY_BYTES {
            return invalid(
                "writer_memory_bytes",
                format!(
                    "{} bytes for {} threads is below tantivy's {MIN_WRITER_MEMORY_BYTES} bytes per thread",
                    self.writer_memory_bytes, self.writer_threads
                ),
            );
        }
        Ok(())
    }
}

/// The partitioned log index. Cheap to clone (one `Arc`), `Send + Sync`; every method is
/// synchronous and meant for `spawn_blocking`.
#[derive(Clone)]
pub struct Index {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("root", &self.inner.root)
            .field("writable", &self.inner.writable)
            .finish()
    }
}

struct Inner {
    root: PathBuf,
    settings: IndexSettings,
    writable: bool,
    /// Held for the life of a writer; the OS releases it when the process dies.
    _writer_lock: Option<File>,
    partitions: RwLock<HashMap<PartitionKey, Arc<Partition>>>,
    /// Searches take a searcher and a tail snapshot of each partition under the read side; a
    /// commit reloads the reader and drops the committed tail under the write side. A search thus
    /// sees every record exactly once: in the tail before the commit, in the index after.
    view: RwLock<()>,
    seq: AtomicU64,
    tail_len: AtomicUsize,
    metrics: MetricsStore,
    /// The writer's generation (see [`GENERATION_FILE`]); bumped under the lock, so the file
    /// never goes back to a value a reader already saw.
    generation: Mutex<u64>,
    /// Every partition on disk, by kind then day, as listed at a generation.
    listing: Mutex<Option<Listing>>,
}

/// The partitions on disk as of a generation of the writer.
struct Listing {
    generation: u64,
    keys: Vec<PartitionKey>,
}

/// One partition as a request sees it.
struct PartView {
    partition: Arc<Partition>,
    searcher: Searcher,
    tail: Vec<Arc<TailEntry>>,
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Index {
    /// Opens (creating if needed) the index at `root` as its writer. Fails with
    /// [`IndexError::Locked`] while another `Index` (in any process) writes it.
    pub fn open(root: &Path, settings: IndexSettings) -> Result<Index> {
        settings.validate()?;
        std::fs::create_dir_all(root).map_err(|e| IndexError::io(root, e))?;
        let lock_path = root.join(WRITER_LOCK_FILE);
        let lock_file = File::create(&lock_path).map_err(|e| IndexError::io(&lock_path, e))?;
        if lock_file.try_lock_exclusive().is_err() {
            return Err(IndexError::Locked { path: lock_path });
        }
        let metrics = MetricsStore::open(&root.join(METRICS_DIR), true)?;
        let index = Index::new(root, settings, true, Some(lock_file), metrics);
        // Continue from a predecessor's generation: readers compare values, and a value they
        // already saw must not come back.
        *lock(&index.inner.generation) = read_generation(root).unwrap_or(0);
        index.bump_generation()?;
        tracing::debug!(root = %root.display(), "opened index for writing");
        Ok(index)
    }

    /// Opens the index at `root` read-only, for a process beside the writer (the query API beside
    /// the collector). It never takes a writer lock, sees what the writer has committed (reloading a
    /// partition when its `meta.json` changes, finding new partitions as they appear), and does not
    /// see the writer's in-memory tail. A missing root reads as empty.
    pub fn open_reader(root: &Path) -> Result<Index> {
        let metrics = MetricsStore::open(&root.join(METRICS_DIR), false)?;
        Ok(Index::new(root, IndexSettings::default(), false, None, metrics))
    }

    fn new(
        root: &Path,
        settings: IndexSettings,
        writable: bool,
        lock: Option<File>,
        metrics: MetricsStore,
    ) -> Index {
        Index {
            inner: Arc::new(Inner {
                root: root.to_path_buf(),
                settings,
                writable,
                _writer_lock: lock,
                partitions: RwLock::new(HashMap::new()),
                view: RwLock::new(()),
                seq: AtomicU64::new(0),
                tail_len: AtomicUsize::new(0),
                metrics,
                generation: Mutex::new(0),
                listing: Mutex::new(None),
            }),
        }
    }

    /// The index root directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Whether this handle was opened with [`Index::open_reader`].
    pub fn is_read_only(&self) -> bool {
        !self.inner.writable
    }

    /// The host metrics and heartbeat store.
    pub fn metrics(&self) -> &MetricsStore {
        &self.inner.metrics
    }

    /// Records added but not committed yet.
    pub fn tail_len(&self) -> usize {
        self.inner.tail_len.load(Ordering::Acquire)
    }

    /// Partition writers currently open.
    pub fn open_writer_count(&self) -> usize {
        self.cached_partitions()
            .iter()
            .filter(|p| lock(&p.writer).is_some())
            .count()
    }

    fn ensure_writable(&self, operation: &'static str) -> Result<()> {
        if self.inner.writable {
            Ok(())
        } else {
            Err(IndexError::ReadOnly {
                root: self.inner.root.clone(),
                operation,
            })
        }
    }

    fn cached_partitions(&self) -> Vec<Arc<Partition>> {
        read(&self.inner.partitions).values().cloned().collect()
    }

    /// The open handle of a partition, opening it if it exists (or `create` is set).
    fn partition(&self, key: PartitionKey, create: bool) -> Result<Option<Arc<Partition>>> {
        if let Some(partition) = read(&self.inner.partitions).get(&key) {
            return Ok(Some(partition.clone()));
        }
        let mut partitions = write(&self.inner.partitions);
        if let Some(partition) = partitions.get(&key) {
            return Ok(Some(partition.clone()));
        }
        if !create && !key.dir(&self.inner.root).join("meta.json").is_file() {
            return Ok(None);
        }
        let partition = match Partition::open(&self.inner.root, key, create) {
            Ok(partition) => Arc::new(partition),
            // Retention (perhaps in the writer process) deleted it since it was listed.
            Err(_) if !create && !key.dir(&self.inner.root).join("meta.json").is_file() => return Ok(None),
            Err(e) => return Err(e),
        };
        tracing::debug!(partition = %key, "opened partition");
        partitions.insert(key, partition.clone());
        drop(partitions);
        if create {
            // Possibly a new directory: listings taken before it are stale.
            self.bump_generation()?;
        }
        Ok(Some(partition))
    }

    // ----- writer side -----

    /// Adds records, each to the partition of its kind and UTC day. A record without an id gets
    /// one. Adding an id that the partition already holds (committed or not) replaces it: after
    /// the next commit the id is stored once, and until then searches show exactly one copy. The
    /// records are searchable as soon as this returns; they are durable after [`Index::commit`].
    pub fn add(&self, records: &[LogRecord]) -> Result<()> {
        self.add_owned(records.to_vec())
    }

    /// [`Index::add`] for records the caller no longer needs, saving a copy of each.
    pub fn add_owned(&self, records: Vec<LogRecord>) -> Result<()> {
        self.ensure_writable("add")?;
        let mut batches: BTreeMap<PartitionKey, Vec<LogRecord>> = BTreeMap::new();
        for mut record in records {
            record.ensure_id();
            batches.entry(PartitionKey::of(&record)).or_default().push(record);
        }
        for (key, batch) in batches {
            self.add_to_partition(key, batch)?;
        }
        self.close_excess_writers()?;
        if self.tail_len() > self.inner.settings.max_tail_records {
            self.commit()?;
        }
        Ok(())
    }

    fn add_to_partition(&self, key: PartitionKey, batch: Vec<LogRecord>) -> Result<()> {
        loop {
            let partition = self.partition(key, true)?.expect("created when missing");
            let mut writer_slot = lock(&partition.writer);
            if partition.is_removed() {
                // Retention dropped the partition (and its cache entry) after we found it: look it
                // up again, which recreates it.
                continue;
            }
            if writer_slot.is_none() {
                *writer_slot = Some(self.open_writer(&partition)?);
            }
            let open = writer_slot.as_mut().expect("opened above");
            let searcher = partition.reader.searcher();
            let committed = searcher.num_docs() > 0;
            for record in batch {
                let view = RecordView::of(&record);
                let source = serde_json::to_vec(&record).expect("a LogRecord serialises to JSON");
                let doc = view.document(&partition.fields, &source);
                let shadowed = committed && partition.id_visible(&searcher, &record.id)?;
                let pending = lock(&partition.tail).contains(&record.id);
                if shadowed || pending {
                    open.writer
                        .delete_term(Term::from_field_text(partition.fields.id, &record.id));
                }
                open.writer
                    .add_document(doc)
                    .map_err(|e| IndexError::tantivy(&partition.dir, e))?;
                let seq = self.inner.seq.fetch_add(1, Ordering::AcqRel) + 1;
                open.pending_through = seq;
                if lock(&partition.tail).upsert(TailEntry {
                    record,
                    seq,
                    shadowed,
                }) {
                    self.inner.tail_len.fetch_add(1, Ordering::AcqRel);
                }
            }
            open.last_used = Instant::now();
            return Ok(());
        }
    }

    fn open_writer(&self, partition: &Partition) -> Result<OpenWriter> {
        let settings = &self.inner.settings;
        let options = IndexWriterOptions::builder()
            .memory_budget_per_thread(settings.writer_memory_bytes / settings.writer_threads)
            .num_worker_threads(settings.writer_threads)
            .num_merge_threads(settings.merge_threads)
            .build();
        let writer: IndexWriter = partition
            .index
            .writer_with_options(options)
            .map_err(|e| IndexError::tantivy(&partition.dir, e))?;
        tracing::debug!(partition = %partition.key, "opened partition writer");
        Ok(OpenWriter {
            writer,
            last_used: Instant::now(),
            pending_through: 0,
        })
    }

    /// Commits every partition with added records, then closes writers idle for
    /// `writer_idle_ms`. When this returns, what was added is durable and searchable from other
    /// processes. If a partition's commit fails, its uncommitted records are discarded (writer and
    /// tail) and the error returned: the caller re-adds them from its own log.
    pub fn commit(&self) -> Result<()> {
        self.ensure_writable("commit")?;
        for partition in self.cached_partitions() {
            self.commit_partition(&partition)?;
        }
        let idle = Duration::from_millis(self.inner.settings.writer_idle_ms);
        for partition in self.cached_partitions() {
            let mut slot = lock(&partition.writer);
            if slot
                .as_ref()
                .is_some_and(|w| w.pending_through == 0 && w.last_used.elapsed() >= idle)
            {
                let open = slot.take().expect("checked above");
                close_writer(&partition, open)?;
            }
        }
        Ok(())
    }

    fn commit_partition(&self, partition: &Partition) -> Result<()> {
        let mut slot = lock(&partition.writer);
        let Some(open) = slot.as_mut() else { return Ok(()) };
        if open.pending_through == 0 {
            return Ok(());
        }
        let through = open.pending_through;
        if let Err(e) = open.writer.commit() {
            tracing::error!(partition = %partition.key, error = %e, "commit failed, uncommitted records dropped");
            *slot = None;
            let dropped = lock(&partition.tail).clear();
            self.inner.tail_len.fetch_sub(dropped, Ordering::AcqRel);
            return Err(IndexError::tantivy(&partition.dir, e));
        }
        open.pending_through = 0;
        let view = write(&self.inner.view);
        partition
            .reader
            .reload()
            .map_err(|e| IndexError::tantivy(&partition.dir, e))?;
        let dropped = lock(&partition.tail).drop_through(through);
        self.inner.tail_len.fetch_sub(dropped, Ordering::AcqRel);
        drop(view);
        drop(slot);
        self.bump_generation()
    }

    /// Commits and closes the least recently used writers beyond `max_open_writers`.
    fn close_excess_writers(&self) -> Result<()> {
        let mut open: Vec<(Instant, Arc<Partition>)> = self
            .cached_partitions()
            .into_iter()
            .filter_map(|p| {
                let last_used = lock(&p.writer).as_ref().map(|w| w.last_used)?;
                Some((last_used, p))
            })
            .collect();
        let excess = open.len().saturating_sub(self.inner.settings.max_open_writers);
        if excess == 0 {
            return Ok(());
        }
        open.sort_by_key(|(last_used, _)| *last_used);
        for (_, partition) in open.into_iter().take(excess) {
            self.commit_partition(&partition)?;
            if let Some(writer) = lock(&partition.writer).take() {
                close_writer(&partition, writer)?;
            }
        }
        Ok(())
    }

    /// Commits everything and closes all writers (graceful shutdown of the collector).
    pub fn close(&self) -> Result<()> {
        self.ensure_writable("close")?;
        for partition in self.cached_partitions() {
            self.commit_partition(&partition)?;
            if let Some(writer) = lock(&partition.writer).take() {
                close_writer(&partition, writer)?;
            }
        }
        Ok(())
    }

    // ----- retention and disk usage -----

    /// Drops the partitions (and metric day files) past the policy at `now`, or on a dry run only
    /// reports them. A dropped partition's writer, tail and cached reader go first, then its
    /// directory. Deleting needs the writer; a read-only handle can do dry runs.
    pub fn apply_retention(
        &self,
        now: DateTime<Utc>,
        policy: &RetentionPolicy,
        dry_run: bool,
    ) -> Result<RetentionReport> {
        if !dry_run {
            self.ensure_writable("retention")?;
        }
        let mut report = RetentionReport {
            dry_run,
            ..RetentionReport::default()
        };
        for kind in Kind::ALL {
            let Some(days) = policy.days(kind) else { continue };
            for key in partition::list(&self.inner.root, kind, None, None)? {
                if !is_expired(key.day, days, now) {
                    continue;
                }
                let dir = key.dir(&self.inner.root);
                if dry_run {
                    let usage = dir_usage(&dir)?;
                    report.partitions.push(PartitionUsage {
                        key,
                        files: usage.files,
                        bytes: usage.bytes,
                    });
                } else {
                    report.partitions.push(self.drop_partition(key, &dir)?);
                }
            }
        }
        if let Some(days) = policy.metrics_days {
            report.metrics = self.inner.metrics.apply_retention(now, days, dry_run)?;
        }
        if !dry_run && !report.partitions.is_empty() {
            tracing::info!(
                partitions = report.partitions.len(),
                bytes = report.bytes(),
                "retention dropped partitions"
            );
        }
        Ok(report)
    }

    /// Merges the segments of every sealed partition (a UTC day before `now`'s, with no writer
    /// open: nothing is being added to it) into one, so that a search opens one segment per day
    /// instead of one per commit. A partition that a late record reopens meanwhile waits for the
    /// merge (its writer lock is held throughout). Needs the writer.
    pub fn merge_sealed(&self, now: DateTime<Utc>) -> Result<MergeReport> {
        self.ensure_writable("merge")?;
        let today = now.date_naive();
        let mut report = MergeReport::default();
        for kind in Kind::ALL {
            for key in partition::list(&self.inner.root, kind, None, None)? {
                if key.day >= today {
                    continue;
                }
                let Some(partition) = self.partition(key, false)? else {
                    continue;
                };
                let slot = lock(&partition.writer);
                if slot.is_some() || partition.is_removed() {
                    continue;
                }
                let tantivy = |e| IndexError::tantivy(&partition.dir, e);
                let segments = partition.index.searchable_segment_ids().map_err(tantivy)?;
                if segments.len() < 2 {
                    continue;
                }
                let before = dir_usage(&partition.dir)?;
                let mut open = self.open_writer(&partition)?;
                open.writer.merge(&segments).wait().map_err(tantivy)?;
                open.writer.garbage_collect_files().wait().map_err(tantivy)?;
                open.writer.wait_merging_threads().map_err(tantivy)?;
                partition.reader.reload().map_err(tantivy)?;
                let after = dir_usage(&partition.dir)?;
                drop(slot);
                report.partitions.push(MergedPartition {
                    key,
                    segments_before: segments.len(),
                    bytes_before: before.bytes,
                    bytes_after: after.bytes,
                });
            }
        }
        if !report.partitions.is_empty() {
            tracing::info!(
                partitions = report.partitions.len(),
                "merged the segments of sealed partitions"
            );
        }
        Ok(report)
    }

    /// Closes and deletes a partition; returns what deleting it freed.
    ///
    /// The partition map stays write-locked throughout, so no `add` or search can open the
    /// partition between closing its writer and deleting its directory (the map lock is always
    /// taken before a partition's writer lock). Searches already holding the old handle keep
    /// reading their open, now unlinked, files.
    fn drop_partition(&self, key: PartitionKey, dir: &Path) -> Result<PartitionUsage> {
        let mut partitions = write(&self.inner.partitions);
        if let Some(partition) = partitions.remove(&key) {
            let mut slot = lock(&partition.writer);
            partition.removed.store(true, Ordering::Release);
            // Uncommitted records of an expired day go with it.
            drop(slot.take());
            let dropped = lock(&partition.tail).clear();
            self.inner.tail_len.fetch_sub(dropped, Ordering::AcqRel);
        }
        // Counted after the writer is gone, so the figure is what deleting frees.
        let usage = dir_usage(dir)?;
        std::fs::remove_dir_all(dir).map_err(|e| IndexError::io(dir, e))?;
        drop(partitions);
        self.bump_generation()?;
        Ok(PartitionUsage {
            key,
            files: usage.files,
            bytes: usage.bytes,
        })
    }

    /// Every partition with its files and bytes, by kind then day.
    pub fn partitions(&self) -> Result<Vec<PartitionUsage>> {
        let mut out = Vec::new();
        for kind in Kind::ALL {
            for key in partition::list(&self.inner.root, kind, None, None)? {
                let usage = dir_usage(&key.dir(&self.inner.root))?;
                out.push(PartitionUsage {
                    key,
                    files: usage.files,
                    bytes: usage.bytes,
                });
            }
        }
        Ok(out)
    }

    /// Bytes on disk: the whole root, each kind and the metrics store.
    pub fn disk_usage(&self) -> Result<DiskUsage> {
        let root = &self.inner.root;
        let mut by_kind = BTreeMap::new();
        for kind in Kind::ALL {
            by_kind.insert(kind, dir_usage(&root.join(kind.as_str()))?);
        }
        Ok(DiskUsage {
            total: dir_usage(root)?,
            by_kind,
            metrics: dir_usage(&root.join(METRICS_DIR))?,
        })
    }

    // ----- read side -----

    /// The writer's current generation: this process's own as the writer, else the generation
    /// file's (`None` without one: a writer of an older version, so every request looks at disk).
    fn current_generation(&self) -> Option<u64> {
        if self.inner.writable {
            Some(*lock(&self.inner.generation))
        } else {
            read_generation(&self.inner.root)
        }
    }

    /// Changes the generation; as the writer, also the file readers watch. Called after the change
    /// it announces, so a reader that read the old value before looking at the disk looks again.
    fn bump_generation(&self) -> Result<()> {
        let mut generation = lock(&self.inner.generation);
        *generation += 1;
        let path = self.inner.root.join(GENERATION_FILE);
        let temporary = self.inner.root.join(format!("{GENERATION_FILE}.tmp"));
        // Written aside and renamed, so a reader never sees a partial number.
        std::fs::write(&temporary, generation.to_string()).map_err(|e| IndexError::io(&temporary, e))?;
        std::fs::rename(&temporary, &path).map_err(|e| IndexError::io(&path, e))
    }

    /// Every partition on disk, by kind then day. The directories are listed (and, in a reader,
    /// changed partitions reloaded) only when the writer's generation moved since the last
    /// listing: a request then costs no file-system call per partition.
    fn partition_keys(&self) -> Result<Vec<PartitionKey>> {
        // Read before looking at the disk: a change after this read bumps the generation again.
        let generation = self.current_generation();
        if let Some(generation) = generation
            && let Some(listing) = lock(&self.inner.listing).as_ref()
            && listing.generation == generation
        {
            return Ok(listing.keys.clone());
        }
        let mut keys = Vec::new();
        for kind in Kind::ALL {
            keys.extend(partition::list(&self.inner.root, kind, None, None)?);
        }
        if !self.inner.writable {
            // Forget partitions the writer dropped, reload those it committed to.
            write(&self.inner.partitions).retain(|key, _| keys.contains(key));
            for partition in self.cached_partitions() {
                partition.reload_if_changed()?;
            }
        }
        if let Some(generation) = generation {
            *lock(&self.inner.listing) = Some(Listing {
                generation,
                keys: keys.clone(),
            });
        }
        Ok(keys)
    }

    /// Takes a consistent view of the partitions the filter can touch.
    fn view(&self, filter: &LogFilter, compiled: &CompiledFilter) -> Result<Vec<PartView>> {
        let first = compiled
            .start
            .and_then(DateTime::from_timestamp_micros)
            .map(|t| t.date_naive());
        let last = compiled
            .end
            .and_then(|end| DateTime::from_timestamp_micros(end - 1))
            .map(|t| t.date_naive());
        let keys = self.partition_keys()?;
        let in_scope = keys.into_iter().filter(|key| {
            filter.wants_kind(key.kind)
                && first.is_none_or(|f| key.day >= f)
                && last.is_none_or(|l| key.day <= l)
        });
        let mut partitions = Vec::new();
        for key in in_scope.collect::<Vec<_>>().into_iter().rev() {
            let Some(partition) = self.partition(key, false)? else {
                continue;
            };
            partitions.push(partition);
        }
        let _view = read(&self.inner.view);
        Ok(partitions
            .into_iter()
            .map(|partition| {
                let searcher = partition.reader.searcher();
                let tail = lock(&partition.tail).snapshot();
                PartView {
                    partition,
                    searcher,
                    tail,
                }
            })
            .collect())
    }

    /// Searches: exact total, the requested page in the requested order.
    pub fn search(&self, request: &SearchRequest) -> Result<SearchResponse> {
        let depth = request.offset.saturating_add(request.limit);
        if depth > MAX_SEARCH_DEPTH {
            return Err(IndexError::InvalidRequest {
                field: "offset",
                reason: format!(
                    "offset + limit is {depth}; at most {MAX_SEARCH_DEPTH} hits can be paged through"
                ),
            });
        }
        let compiled = request.filter.compile()?;
        if compiled
            .start
            .zip(compiled.end)
            .is_some_and(|(start, end)| start >= end)
        {
            return Ok(SearchResponse::default());
        }
        let parts = self.view(&request.filter, &compiled)?;
        let sort = SortSpec {
            by: request.sort_by,
            order: request.order,
        };
        let mut total = 0u64;
        let mut hits: Vec<Hit> = Vec::new();
        for (number, part) in parts.iter().enumerate() {
            let partition = &part.partition;
            if depth == 0 {
                let query = compiled.to_query(
                    &partition.fields,
                    partition.key.start_micros(),
                    partition.key.end_micros(),
                );
                let count = part
                    .searcher
                    .search(&query, &Count)
                    .map_err(|e| IndexError::tantivy(&partition.dir, e))?;
                total += count as u64;
            } else {
                let (query, time) = compiled.to_search_query(
                    &partition.fields,
                    partition.key.start_micros(),
                    partition.key.end_micros(),
                );
                let collector = TopCollector {
                    k: depth,
                    sort,
                    partition: number,
                    time,
                };
                let (count, found) = part
                    .searcher
                    .search(&query, &collector)
                    .map_err(|e| IndexError::tantivy(&partition.dir, e))?;
                total += count;
                hits.extend(found);
            }
            for (at, entry) in part.tail.iter().enumerate() {
                let view = RecordView::of(&entry.record);
                if compiled.matches(&view) {
                    total += 1;
                    if depth > 0 {
                        hits.push(Hit {
                            key: sort.key_of(&view),
                            id: Some(entry.record.id.clone()),
                            source: HitSource::Tail(number, at),
                        });
                    }
                }
            }
        }
        let mut id_columns: HashMap<(usize, SegmentOrdinal), Option<StrColumn>> = HashMap::new();
        let hits = order_hits(hits, depth, |source| resolve_id(&parts, source, &mut id_columns))?;
        let mut records = Vec::with_capacity(hits.len().saturating_sub(request.offset));
        for hit in hits.into_iter().skip(request.offset) {
            records.push(load(&parts, &hit.source)?);
        }
        Ok(SearchResponse { total, hits: records })
    }

    /// Counts the records matching a filter.
    pub fn count(&self, filter: &LogFilter) -> Result<u64> {
        let request = SearchRequest {
            filter: filter.clone(),
            offset: 0,
            limit: 0,
            ..SearchRequest::default()
        };
        Ok(self.search(&request)?.total)
    }

    /// The record with this id, if any partition (or the tail) holds it.
    pub fn get(&self, id: &str) -> Result<Option<LogRecord>> {
        if id.is_empty() {
            return Ok(None);
        }
        let filter = LogFilter::default();
        let parts = self.view(&filter, &filter.compile()?)?;
        let sort = SortSpec {
            by: SortBy::Timestamp,
            order: SortOrder::Desc,
        };
        for (number, part) in parts.iter().enumerate() {
            if let Some(entry) = part.tail.iter().find(|e| e.record.id == id) {
                return Ok(Some(entry.record.clone()));
            }
            let query = crate::filter::exact_query(part.partition.fields.id, id);
            let collector = TopCollector {
                k: 1,
                sort,
                partition: number,
                time: None,
            };
            let (_, found) = part
                .searcher
                .search(&query, &collector)
                .map_err(|e| IndexError::tantivy(&part.partition.dir, e))?;
            if let Some(hit) = found.first() {
                return Ok(Some(load(&parts, &hit.source)?));
            }
        }
        Ok(None)
    }

    /// Aggregations over the records matching the request's filter, from fast fields.
    pub fn stats(&self, request: &StatsRequest) -> Result<LogStats> {
        let compiled = request.filter.compile()?;
        if compiled
            .start
            .zip(compiled.end)
            .is_some_and(|(start, end)| start >= end)
        {
            return Ok(Partial::default().finish(request.top_paths));
        }
        let parts = self.view(&request.filter, &compiled)?;
        let collector = StatsCollector {
            slow_threshold_ms: request.slow_threshold_ms,
        };
        let mut partial = Partial::default();
        for part in &parts {
            let partition = &part.partition;
            let query = compiled.to_query(
                &partition.fields,
                partition.key.start_micros(),
                partition.key.end_micros(),
            );
            let found = part
                .searcher
                .search(&query, &collector)
                .map_err(|e| IndexError::tantivy(&partition.dir, e))?;
            partial.merge(found);
            for entry in &part.tail {
                let view = RecordView::of(&entry.record);
                if compiled.matches(&view) {
                    partial.add_view(&view, request.slow_threshold_ms);
                }
            }
        }
        Ok(partial.finish(request.top_paths))
    }

    /// All records of a trace as spans, by start; `None` if no record carries the id. At most
    /// [`MAX_TRACE_RECORDS`] records (the earliest) are returned.
    pub fn trace(&self, trace_id: &str) -> Result<Option<TraceView>> {
        if trace_id.is_empty() {
            return Ok(None);
        }
        let filter = LogFilter {
            trace_id: Some(trace_id.to_string()),
            ..LogFilter::default()
        };
        let compiled = filter.compile()?;
        let parts = self.view(&filter, &compiled)?;
        // A trace has a handful of records: read the id's postings directly rather than run a
        // sorted search, which opens sort columns in every segment of every partition. Partition
        // order and the tail after the committed records match the search's, so records tying on
        // timestamp and id keep the same order through `assemble`'s stable sort.
        let mut sources = Vec::new();
        for (number, part) in parts.iter().enumerate() {
            let partition = &part.partition;
            let term = Term::from_field_text(partition.fields.trace_id, trace_id);
            for (segment, reader) in part.searcher.segment_readers().iter().enumerate() {
                let inverted = reader
                    .inverted_index(partition.fields.trace_id)
                    .map_err(|e| IndexError::tantivy(&partition.dir, e))?;
                let postings = inverted
                    .read_postings(&term, IndexRecordOption::Basic)
                    .map_err(|e| IndexError::io(&partition.dir, e))?;
                let Some(mut postings) = postings else { continue };
                let alive = reader.alive_bitset();
                let mut doc = postings.doc();
                while doc != TERMINATED {
                    if alive.is_none_or(|alive| alive.is_alive(doc)) {
                        sources.push(HitSource::Doc(
                            number,
                            DocAddress::new(segment as SegmentOrdinal, doc),
                        ));
                    }
                    doc = postings.advance();
                }
            }
            for (at, entry) in part.tail.iter().enumerate() {
                if compiled.matches(&RecordView::of(&entry.record)) {
                    sources.push(HitSource::Tail(number, at));
                }
            }
            if sources.len() > MAX_TRACE_RECORDS {
                break;
            }
        }
        if sources.len() <= MAX_TRACE_RECORDS {
            let records = sources
                .iter()
                .map(|source| load(&parts, source))
                .collect::<Result<Vec<_>>>()?;
            return Ok(TraceView::assemble(trace_id, records));
        }
        // More than a trace may return: the sorted search picks the earliest.
        let request = SearchRequest {
            filter,
            sort_by: SortBy::Timestamp,
            order: SortOrder::Asc,
            offset: 0,
            limit: MAX_TRACE_RECORDS,
        };
        let found = self.search(&request)?;
        Ok(TraceView::assemble(trace_id, found.hits))
    }
}

/// The generation in the root's generation file, if a writer of this version wrote one.
fn read_generation(root: &Path) -> Option<u64> {
    std::fs::read_to_string(root.join(GENERATION_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn close_writer(partition: &Partition, open: OpenWriter) -> Result<()> {
    open.writer
        .wait_merging_threads()
        .map_err(|e| IndexError::tantivy(&partition.dir, e))?;
    tracing::debug!(partition = %partition.key, "closed partition writer");
    Ok(())
}

/// The id of a hit, for breaking a tie; `id_columns` caches the id column of each segment.
fn resolve_id(
    parts: &[PartView],
    source: &HitSource,
    id_columns: &mut HashMap<(usize, SegmentOrdinal), Option<StrColumn>>,
) -> Result<String> {
    match *source {
        HitSource::Tail(number, at) => Ok(parts[number].tail[at].record.id.clone()),
        HitSource::Doc(number, address) => {
            let part = &parts[number];
            let column = match id_columns.entry((number, address.segment_ord)) {
                Entry::Occupied(entry) => entry.into_mut(),
                Entry::Vacant(entry) => {
                    let reader = part.searcher.segment_reader(address.segment_ord);
                    let column = reader
                        .fast_fields()
                        .str(F_ID)
                        .map_err(|e| IndexError::tantivy(&part.partition.dir, e))?;
                    entry.insert(column)
                }
            };
            let mut id = String::new();
            if let Some(column) = column
                && let Some(ord) = column.ords().first(address.doc_id)
            {
                column
                    .ord_to_str(ord, &mut id)
                    .map_err(|e| IndexError::io(&part.partition.dir, e))?;
            }
            Ok(id)
        }
    }
}

/// Loads the record of a hit.
fn load(parts: &[PartView], source: &HitSource) -> Result<LogRecord> {
    match *source {
        HitSource::Tail(number, at) => Ok(parts[number].tail[at].record.clone()),
        HitSource::Doc(number, address) => {
            let part = &parts[number];
            let dir = &part.partition.dir;
            let doc: TantivyDocument = part
                .searcher
                .doc(address)
                .map_err(|e| IndexError::tantivy(dir, e))?;
            let bytes = doc
                .get_first(part.partition.fields.source)
                .and_then(|v| v.as_bytes())
                .ok_or_else(|| IndexError::CorruptRecord {
                    partition: dir.clone(),
                    reason: "no source".into(),
                })?;
            LogRecord::from_json_slice(bytes, Utc::now()).map_err(|reason| IndexError::CorruptRecord {
                partition: dir.clone(),
                reason,
            })
        }
    }
}

#[cfg(test)]
mod tests;

/// What [`Index::merge_sealed`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergeReport {
    /// The partitions merged, each now one segment.
    pub partitions: Vec<MergedPartition>,
}

/// One merged partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergedPartition {
    /// The partition.
    pub key: PartitionKey,
    /// Its segments before.
    pub segments_before: usize,
    /// Its bytes on disk before.
    pub bytes_before: u64,
    /// And after.
    pub bytes_after: u64,
}
