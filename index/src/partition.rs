//! One partition: the tantivy index of one kind and one UTC day, its reader, its writer while it
//! is active, and its in-memory tail of uncommitted records.
//!
//! Layout: `<root>/<kind>/<YYYY-MM-DD>/` holds an ordinary tantivy index. A directory without
//! `meta.json` is not a partition (yet) and is skipped.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use crate::directory::PartitionDirectory;
use chrono::{DateTime, Days, NaiveDate, Utc};
use owl_model::{Kind, LogRecord};
use tantivy::schema::IndexRecordOption;
use tantivy::{DocSet, IndexReader, IndexWriter, ReloadPolicy, Searcher, TERMINATED, Term};

use crate::error::{IndexError, Result};
use crate::gram::{GramTokenizer, TOKENIZER_NAME};
use crate::schema::{Fields, build_schema};

/// Name of tantivy's metadata file: its presence makes a directory a partition, and its change
/// tells a read-only process to reload.
const META_FILE: &str = "meta.json";

/// Identity of a partition: a kind and a UTC day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionKey {
    /// Retention kind of the records in it.
    pub kind: Kind,
    /// The UTC day of the records' timestamps.
    pub day: NaiveDate,
}

impl PartitionKey {
    /// The partition a record belongs to.
    pub fn of(record: &LogRecord) -> PartitionKey {
        PartitionKey {
            kind: record.kind,
            day: record.timestamp.date_naive(),
        }
    }

    /// The partition directory under `root`.
    pub fn dir(&self, root: &Path) -> PathBuf {
        root.join(self.kind.as_str())
            .join(self.day.format("%Y-%m-%d").to_string())
    }

    /// Start of the day, in microseconds since the epoch.
    pub(crate) fn start_micros(&self) -> i64 {
        day_start(self.day).timestamp_micros()
    }

    /// End of the day (exclusive), in microseconds since the epoch.
    pub(crate) fn end_micros(&self) -> i64 {
        day_start(self.day.checked_add_days(Days::new(1)).unwrap_or(NaiveDate::MAX)).timestamp_micros()
    }
}

impl fmt::Display for PartitionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind, self.day.format("%Y-%m-%d"))
    }
}

/// Midnight UTC starting `day`.
pub(crate) fn day_start(day: NaiveDate) -> DateTime<Utc> {
    day.and_hms_opt(0, 0, 0)
        .expect("midnight exists on every day")
        .and_utc()
}

/// Parses a partition directory name (`YYYY-MM-DD`).
pub(crate) fn parse_day(name: &str) -> Option<NaiveDate> {
    if name.len() != 10 {
        return None;
    }
    NaiveDate::parse_from_str(name, "%Y-%m-%d").ok()
}

/// Lists the partitions of `kind` under `root` whose day is in `[first, last]` (both optional).
pub(crate) fn list(
    root: &Path,
    kind: Kind,
    first: Option<NaiveDate>,
    last: Option<NaiveDate>,
) -> Result<Vec<PartitionKey>> {
    let kind_dir = root.join(kind.as_str());
    let entries = match std::fs::read_dir(&kind_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(IndexError::io(&kind_dir, e)),
    };
    let mut keys = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| IndexError::io(&kind_dir, e))?;
        let Some(day) = entry.file_name().to_str().and_then(parse_day) else {
            continue;
        };
        if first.is_some_and(|f| day < f) || last.is_some_and(|l| day > l) {
            continue;
        }
        if entry.path().join(META_FILE).is_file() {
            keys.push(PartitionKey { kind, day });
        }
    }
    keys.sort();
    Ok(keys)
}

/// An open writer and its bookkeeping.
pub(crate) struct OpenWriter {
    pub writer: IndexWriter,
    pub last_used: Instant,
    /// Sequence number of the last record added; 0 when nothing is waiting for a commit.
    pub pending_through: u64,
}

/// A record added but not committed yet.
#[derive(Debug)]
pub(crate) struct TailEntry {
    pub record: LogRecord,
    pub seq: u64,
    /// A committed record with the same id is visible in this partition: until the next commit
    /// replaces it, that copy answers and this one stays hidden, so the id shows once.
    pub shadowed: bool,
}

/// Uncommitted records of a partition, at most one per id.
#[derive(Debug, Default)]
pub(crate) struct Tail {
    entries: Vec<Arc<TailEntry>>,
    by_id: HashMap<String, usize>,
}

impl Tail {
    /// Adds or replaces the entry of the record's id; returns whether the tail grew.
    pub(crate) fn upsert(&mut self, entry: TailEntry) -> bool {
        match self.by_id.get(&entry.record.id) {
            Some(&at) => {
                self.entries[at] = Arc::new(entry);
                false
            }
            None => {
                self.by_id.insert(entry.record.id.clone(), self.entries.len());
                self.entries.push(Arc::new(entry));
                true
            }
        }
    }

    /// Drops the entries committed through `seq`; returns how many went.
    pub(crate) fn drop_through(&mut self, seq: u64) -> usize {
        let before = self.entries.len();
        self.entries.retain(|e| e.seq > seq);
        self.by_id = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.record.id.clone(), i))
            .collect();
        before - self.entries.len()
    }

    /// Drops everything; returns how many went.
    pub(crate) fn clear(&mut self) -> usize {
        let dropped = self.entries.len();
        self.entries.clear();
        self.by_id.clear();
        dropped
    }

    /// The visible entries, cheap to take (reference counts only).
    pub(crate) fn snapshot(&self) -> Vec<Arc<TailEntry>> {
        self.entries.iter().filter(|e| !e.shadowed).cloned().collect()
    }

    /// Whether a record with this id is waiting for a commit (hidden or not).
    pub(crate) fn contains(&self, id: &str) -> bool {
        self.by_id.contains_key(id)
    }
}

/// Modification stamp of `meta.json`, to notice commits of another process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MetaStamp {
    modified: Option<SystemTime>,
    len: u64,
}

fn meta_stamp(dir: &Path) -> Option<MetaStamp> {
    let meta = std::fs::metadata(dir.join(META_FILE)).ok()?;
    Some(MetaStamp {
        modified: meta.modified().ok(),
        len: meta.len(),
    })
}

/// One open partition.
pub(crate) struct Partition {
    pub key: PartitionKey,
    pub dir: PathBuf,
    pub index: tantivy::Index,
    pub fields: Fields,
    pub reader: IndexReader,
    /// The writer while the partition is active (writer mode only).
    pub writer: Mutex<Option<OpenWriter>>,
    pub tail: Mutex<Tail>,
    /// Last `meta.json` stamp the reader loaded (read-only mode).
    stamp: Mutex<Option<MetaStamp>>,
    /// Set when retention deleted the directory; a holder of an old handle must not write to it.
    pub removed: AtomicBool,
}

impl Partition {
    /// Opens the partition at `dir`, creating it when `create` is set and it does not exist.
    pub(crate) fn open(root: &Path, key: PartitionKey, create: bool) -> Result<Partition> {
        let dir = key.dir(root);
        let exists = dir.join(META_FILE).is_file();
        let index = if exists {
            let directory =
                PartitionDirectory::open(&dir).map_err(|e| IndexError::tantivy(&dir, e.into()))?;
            tantivy::Index::open(directory).map_err(|e| IndexError::tantivy(&dir, e))?
        } else if create {
            std::fs::create_dir_all(&dir).map_err(|e| IndexError::io(&dir, e))?;
            let directory =
                PartitionDirectory::open(&dir).map_err(|e| IndexError::tantivy(&dir, e.into()))?;
            tantivy::Index::open_or_create(directory, build_schema())
                .map_err(|e| IndexError::tantivy(&dir, e))?
        } else {
            return Err(IndexError::io(
                dir.join(META_FILE),
                std::io::Error::new(std::io::ErrorKind::NotFound, "partition has no meta.json"),
            ));
        };
        index.tokenizers().register(TOKENIZER_NAME, GramTokenizer);
        let fields = Fields::resolve(&index.schema(), &dir)?;
        let stamp = meta_stamp(&dir);
        // Manual reloads: the writer reloads right after its commit (exact freshness and a
        // consistent hand-over from the tail), a read-only process on a `meta.json` change. The
        // file watcher of `OnCommitWithDelay` would cost a thread per partition.
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(|e| IndexError::tantivy(&dir, e))?;
        Ok(Partition {
            key,
            dir,
            index,
            fields,
            reader,
            writer: Mutex::new(None),
            tail: Mutex::new(Tail::default()),
            stamp: Mutex::new(stamp),
            removed: AtomicBool::new(false),
        })
    }

    /// Reloads the reader if another process committed since the last load.
    pub(crate) fn reload_if_changed(&self) -> Result<()> {
        let current = meta_stamp(&self.dir);
        let mut stamp = lock(&self.stamp);
        if current != *stamp {
            self.reader
                .reload()
                .map_err(|e| IndexError::tantivy(&self.dir, e))?;
            *stamp = current;
        }
        Ok(())
    }

    /// Whether a live (not deleted) document with this id is visible to `searcher`.
    pub(crate) fn id_visible(&self, searcher: &Searcher, id: &str) -> Result<bool> {
        let term = Term::from_field_text(self.fields.id, id);
        for segment in searcher.segment_readers() {
            let inverted = segment
                .inverted_index(self.fields.id)
                .map_err(|e| IndexError::tantivy(&self.dir, e))?;
            let postings = inverted
                .read_postings(&term, IndexRecordOption::Basic)
                .map_err(|e| IndexError::io(&self.dir, e))?;
            let Some(mut postings) = postings else { continue };
            let mut doc = postings.doc();
            while doc != TERMINATED {
                if segment.alive_bitset().is_none_or(|alive| alive.is_alive(doc)) {
                    return Ok(true);
                }
                doc = postings.advance();
            }
        }
        Ok(false)
    }

    pub(crate) fn is_removed(&self) -> bool {
        self.removed.load(Ordering::Acquire)
    }
}

/// Locks a mutex, recovering the data of a poisoned one: every critical section here leaves its
/// data consistent before anything that can panic.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_days_are_utc_days() {
        let key = PartitionKey {
            kind: Kind::Http,
            day: NaiveDate::from_ymd_opt(2025, 12, 7).unwrap(),
        };
        assert_eq!(key.dir(Path::new("/data")), Path::new("/data/http/2025-12-07"));
        assert_eq!(key.end_micros() - key.start_micros(), 86_400_000_000);
        assert_eq!(key.to_string(), "http/2025-12-07");
        assert_eq!(parse_day("2025-12-07"), key.day.into());
        assert_eq!(parse_day("2025-12-7"), None);
        assert_eq!(parse_day("tmp"), None);
    }
}
