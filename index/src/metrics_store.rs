//! Host metric samples and agent heartbeats: append-only JSON lines, one file per kind and UTC day.
//!
//! Layout: `<root>/metrics/samples-YYYY-MM-DD.jsonl` and `<root>/metrics/heartbeats-YYYY-MM-DD.jsonl`,
//! the day being the UTC day of each item's own timestamp. One line is one [`MetricSample`] or
//! [`Heartbeat`] in its serde JSON shape.
//!
//! Why not sled: sled lets one process open a database, and the query API may run in another
//! process than the collector. Plain append-only files can be read by any number of processes while
//! one appends, and retention is deleting whole day files, like index partitions.
//!
//! Invariants and recovery:
//! - only the writer (the process holding the index root lock) appends, each batch in one
//!   `write_all` of complete lines;
//! - a reader consumes a file only up to its last newline, so a line being written is picked up on
//!   the next read, and remembers per file how far it has read, so a refresh reads only new bytes;
//! - a crash can leave a torn last line: before appending, the writer ends an unterminated file
//!   with a newline so the torn bytes stay one bad line, which readers skip (and count in a warning);
//! - when a file disappears (retention), the reader rebuilds its state from the remaining files, so
//!   "latest" never shows what history no longer holds.
//!
//! Durability: an append is one `write_all` without fsync. [`MetricsStore::sync`] fsyncs every file
//! appended to since the previous sync, and the directory when a file was created since then; the
//! collector calls it before it moves its WAL checkpoint, so a WAL segment is deleted only once
//! the samples and heartbeats it held are on disk (the same rule as the index commit). A failed
//! fsync is final: Linux may drop the pages it could not write and report success on the next
//! fsync, so every later `sync` fails too, the checkpoint stays, and a restart re-appends what
//! is missing from the WAL.
//!
//! Idempotent appends: an item is identified by who sent it and when (a sample by `host` and
//! `@timestamp`, a heartbeat by `agent_id` and `@timestamp`; a sample carries all metrics of its
//! host, so the host is the series), and an append skips items whose key its day file already
//! holds, and repeats within the batch. A WAL replay after a crash (or a re-add after a failed
//! step) re-appends items that may already have reached the file; with this rule they are stored
//! once. The writer keeps the keys of the `KEYED_DAY_FILES` (4) day files it appended to most
//! recently, each loaded from its file on first use (one read of the file) and extended with every
//! append (about 25 bytes of memory per item, a tenth of its line); after a failed write it drops
//! that day's keys and reads them again from the file, which stays the truth. Considered and rejected: skipping items not newer than the host's
//! latest, which is cheaper but drops samples that arrive out of order (a late agent buffer, a
//! clock stepped back); and keys for every retained day, whose memory grows with the retention.
//! Readers also collapse equal keys in [`MetricsStore::metric_history`], for files written before
//! appends were idempotent.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, NaiveDate, Utc};
use owl_model::{Heartbeat, MetricSample};
use serde::{Deserialize, Serialize};

use crate::error::{IndexError, Result};
use crate::partition::{lock, parse_day};
use crate::retention::{Usage, is_expired};

const SAMPLES: &str = "samples";
const HEARTBEATS: &str = "heartbeats";
const EXTENSION: &str = ".jsonl";

/// Day files whose item keys the writer keeps in memory (today and yesterday of both kinds).
const KEYED_DAY_FILES: usize = 4;

/// Reads and (in the writer process) appends host metric samples and heartbeats.
#[derive(Debug)]
pub struct MetricsStore {
    dir: PathBuf,
    writable: bool,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    view: View,
    writes: Writes,
}

/// What readers have consumed; rebuilt from scratch when a file disappears.
#[derive(Debug, Default)]
struct View {
    /// Bytes consumed per file.
    offsets: HashMap<PathBuf, u64>,
    latest_samples: BTreeMap<String, MetricSample>,
    latest_heartbeats: BTreeMap<String, Heartbeat>,
}

/// The writer's bookkeeping: what awaits an fsync and the keys of recent day files.
#[derive(Debug, Default)]
struct Writes {
    /// Files appended to since the last sync.
    unsynced: BTreeSet<PathBuf>,
    /// Whether a file was created since the last sync, so the directory needs one too.
    created: bool,
    /// The first fsync failure; once set, every sync fails.
    sync_failed: Option<String>,
    /// Keys of recently appended-to day files, by (stream, day).
    keys: HashMap<(&'static str, NaiveDate), DayKeys>,
    /// Counter that orders uses of `keys`, to evict the least recently used.
    uses: u64,
}

/// When an item was taken, to the nanosecond.
type Instant = (i64, u32);

fn instant(time: DateTime<Utc>) -> Instant {
    (time.timestamp(), time.timestamp_subsec_nanos())
}

/// The keys of the items in one day file.
#[derive(Debug, Default)]
struct DayKeys {
    last_used: u64,
    /// Timestamps by identity (host or agent id).
    by_identity: HashMap<String, HashSet<Instant>>,
}

impl DayKeys {
    fn contains(&self, identity: &str, at: Instant) -> bool {
        self.by_identity
            .get(identity)
            .is_some_and(|times| times.contains(&at))
    }

    fn insert(&mut self, identity: String, at: Instant) {
        self.by_identity.entry(identity).or_default().insert(at);
    }
}

/// What identifies a stored item.
trait Keyed: Serialize {
    /// The sender: a sample's host, a heartbeat's agent id.
    fn identity(&self) -> &str;
    /// The item's own timestamp.
    fn time(&self) -> DateTime<Utc>;
}

impl Keyed for MetricSample {
    fn identity(&self) -> &str {
        &self.host
    }
    fn time(&self) -> DateTime<Utc> {
        self.timestamp
    }
}

impl Keyed for Heartbeat {
    fn identity(&self) -> &str {
        &self.agent_id
    }
    fn time(&self) -> DateTime<Utc> {
        self.timestamp
    }
}

/// The key fields of a stored line, read without the rest of it.
#[derive(Deserialize)]
struct LineKey {
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    agent_id: Option<String>,
    #[serde(rename = "@timestamp", alias = "timestamp")]
    timestamp: DateTime<Utc>,
}

/// A day file's name parts.
fn file_name(stream: &str, day: NaiveDate) -> String {
    format!("{stream}-{}{EXTENSION}", day.format("%Y-%m-%d"))
}

fn parse_file_name(name: &str) -> Option<(&'static str, NaiveDate)> {
    let stem = name.strip_suffix(EXTENSION)?;
    for stream in [SAMPLES, HEARTBEATS] {
        if let Some(day) = stem.strip_prefix(stream).and_then(|rest| rest.strip_prefix('-')) {
            return parse_day(day).map(|day| (stream, day));
        }
    }
    None
}

impl MetricsStore {
    /// Opens the store in `dir`; `writable` creates the directory and allows appends. A read-only
    /// store over a missing directory is empty until the writer creates it.
    pub fn open(dir: &Path, writable: bool) -> Result<MetricsStore> {
        if writable && !dir.is_dir() {
            std::fs::create_dir_all(dir).map_err(|e| IndexError::io(dir, e))?;
            // The new directory's entry, so files synced into it later are reachable after a crash.
            if let Some(parent) = dir.parent() {
                sync_dir(parent)?;
            }
        }
        let store = MetricsStore {
            dir: dir.to_path_buf(),
            writable,
            state: Mutex::new(State::default()),
        };
        store.refresh(&mut lock(&store.state).view)?;
        Ok(store)
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends samples (writer only), skipping those whose host and timestamp are stored already.
    pub fn append_samples(&self, samples: &[MetricSample]) -> Result<()> {
        self.append(SAMPLES, samples)
    }

    /// Appends heartbeats (writer only), skipping those whose agent id and timestamp are stored
    /// already.
    pub fn append_heartbeats(&self, heartbeats: &[Heartbeat]) -> Result<()> {
        self.append(HEARTBEATS, heartbeats)
    }

    fn append<T: Keyed>(&self, stream: &'static str, items: &[T]) -> Result<()> {
        if !self.writable {
            return Err(IndexError::ReadOnly {
                root: self.dir.clone(),
                operation: "append metrics",
            });
        }
        let mut by_day: BTreeMap<NaiveDate, Vec<&T>> = BTreeMap::new();
        for item in items {
            by_day.entry(item.time().date_naive()).or_default().push(item);
        }
        let mut state = lock(&self.state);
        let writes = &mut state.writes;
        let mut skipped = 0usize;
        for (day, items) in by_day {
            let path = self.dir.join(file_name(stream, day));
            let known = writes.day_keys(stream, day, &path)?;
            let mut fresh: HashSet<(&str, Instant)> = HashSet::new();
            let mut lines = Vec::new();
            for item in items {
                let key = (item.identity(), instant(item.time()));
                if known.contains(key.0, key.1) || !fresh.insert(key) {
                    skipped += 1;
                    continue;
                }
                serde_json::to_writer(&mut lines, item)
                    .expect("metric samples and heartbeats serialise to JSON");
                lines.push(b'\n');
            }
            if lines.is_empty() {
                continue;
            }
            // Bytes may have reached the file even when the write failed.
            writes.unsynced.insert(path.clone());
            match append_lines(&path, &lines) {
                Ok(created) => {
                    writes.created |= created;
                    let known = writes
                        .keys
                        .get_mut(&(stream, day))
                        .expect("day_keys loaded this day's keys above");
                    for (identity, at) in fresh {
                        known.insert(identity.to_string(), at);
                    }
                }
                Err(error) => {
                    // The file is the truth: read its keys again before the next append to it.
                    writes.keys.remove(&(stream, day));
                    return Err(error);
                }
            }
        }
        writes.evict();
        if skipped > 0 {
            tracing::debug!(dir = %self.dir.display(), stream, skipped, "skipped metric items already stored");
        }
        self.refresh(&mut state.view)
    }

    /// Makes everything appended so far durable: fsyncs each file appended to since the last sync
    /// and, when one was created, the directory. After a failure every later call fails as well
    /// (see the module docs). A no-op on a read-only store.
    pub fn sync(&self) -> Result<()> {
        if !self.writable {
            return Ok(());
        }
        let (files, created) = {
            let mut state = lock(&self.state);
            if let Some(failure) = &state.writes.sync_failed {
                return Err(IndexError::io(
                    &self.dir,
                    std::io::Error::other(format!(
                        "an earlier fsync of the metrics store failed ({failure}); restart the writer to recover what it held from the write-ahead log"
                    )),
                ));
            }
            (
                std::mem::take(&mut state.writes.unsynced),
                std::mem::take(&mut state.writes.created),
            )
        };
        let synced = files
            .iter()
            .try_for_each(|path| sync_file(path))
            .and_then(|()| if created { sync_dir(&self.dir) } else { Ok(()) });
        if let Err(error) = &synced {
            tracing::error!(dir = %self.dir.display(), %error, "fsync of the metrics store failed");
            lock(&self.state).writes.sync_failed = Some(error.to_string());
        }
        synced
    }

    /// The latest sample of `host`.
    pub fn latest_metrics(&self, host: &str) -> Result<Option<MetricSample>> {
        let mut state = lock(&self.state);
        self.refresh(&mut state.view)?;
        Ok(state.view.latest_samples.get(host).cloned())
    }

    /// The latest sample of every host, by host name.
    pub fn latest_all_metrics(&self) -> Result<Vec<MetricSample>> {
        let mut state = lock(&self.state);
        self.refresh(&mut state.view)?;
        Ok(state.view.latest_samples.values().cloned().collect())
    }

    /// Hosts that sent a sample or a heartbeat, sorted.
    pub fn hosts(&self) -> Result<Vec<String>> {
        let mut state = lock(&self.state);
        self.refresh(&mut state.view)?;
        let view = &state.view;
        let hosts: BTreeSet<String> = view
            .latest_samples
            .keys()
            .cloned()
            .chain(view.latest_heartbeats.values().map(|h| h.host.clone()))
            .collect();
        Ok(hosts.into_iter().collect())
    }

    /// The latest heartbeat of every agent, by agent id.
    pub fn latest_heartbeats(&self) -> Result<Vec<Heartbeat>> {
        let mut state = lock(&self.state);
        self.refresh(&mut state.view)?;
        Ok(state.view.latest_heartbeats.values().cloned().collect())
    }

    /// Samples of `host` with `start <= timestamp < end`, oldest first, one per timestamp.
    pub fn metric_history(
        &self,
        host: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<MetricSample>> {
        if start >= end {
            return Ok(Vec::new());
        }
        let last_day = (end - chrono::Duration::microseconds(1)).date_naive();
        // Lines start with the host (`MetricSample` serialises it first), so most foreign lines are
        // skipped without parsing.
        let marker = format!(
            "\"host\":{}",
            serde_json::to_string(host).expect("a string serialises")
        );
        let mut samples = Vec::new();
        for (stream, day, path) in self.files()? {
            if stream != SAMPLES || day < start.date_naive() || day > last_day {
                continue;
            }
            let Some(bytes) = read_complete_lines(&path, 0)? else {
                continue;
            };
            for line in bytes.split(|&b| b == b'\n') {
                if line.is_empty() || !contains(line, marker.as_bytes()) {
                    continue;
                }
                if let Ok(sample) = serde_json::from_slice::<MetricSample>(line)
                    && sample.host == host
                    && sample.timestamp >= start
                    && sample.timestamp < end
                {
                    samples.push(sample);
                }
            }
        }
        // Stable: of equal keys (stored twice before appends were idempotent) the first stays.
        samples.sort_by_key(|s| s.timestamp);
        samples.dedup_by_key(|s| s.timestamp);
        Ok(samples)
    }

    /// Drops (or, on a dry run, counts) the day files past `days` at `now`.
    pub(crate) fn apply_retention(&self, now: DateTime<Utc>, days: u32, dry_run: bool) -> Result<Usage> {
        let mut usage = Usage::default();
        let mut state = lock(&self.state);
        for (stream, day, path) in self.files()? {
            if !is_expired(day, days, now) {
                continue;
            }
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            usage.files += 1;
            usage.bytes += meta.len();
            if !dry_run {
                std::fs::remove_file(&path).map_err(|e| IndexError::io(&path, e))?;
                state.writes.keys.remove(&(stream, day));
                state.writes.unsynced.remove(&path);
            }
        }
        if !dry_run {
            self.refresh(&mut state.view)?;
        }
        Ok(usage)
    }

    /// Day files in the directory, sorted by day.
    fn files(&self) -> Result<Vec<(&'static str, NaiveDate, PathBuf)>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(IndexError::io(&self.dir, e)),
        };
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| IndexError::io(&self.dir, e))?;
            if let Some((stream, day)) = entry.file_name().to_str().and_then(parse_file_name) {
                files.push((stream, day, entry.path()));
            }
        }
        files.sort_by_key(|(_, day, _)| *day);
        Ok(files)
    }

    /// Reads what was appended since the last refresh into the latest maps.
    fn refresh(&self, state: &mut View) -> Result<()> {
        let files = self.files()?;
        if state
            .offsets
            .keys()
            .any(|known| !files.iter().any(|(_, _, path)| path == known))
        {
            *state = View::default();
        }
        let mut bad_lines = 0usize;
        for (stream, _, path) in files {
            let offset = state.offsets.get(&path).copied().unwrap_or(0);
            let Some(bytes) = read_complete_lines(&path, offset)? else {
                continue;
            };
            for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                let parsed = if stream == SAMPLES {
                    serde_json::from_slice::<MetricSample>(line)
                        .map(|s| keep_latest(&mut state.latest_samples, s.host.clone(), s, |s| s.timestamp))
                } else {
                    serde_json::from_slice::<Heartbeat>(line).map(|h| {
                        keep_latest(&mut state.latest_heartbeats, h.agent_id.clone(), h, |h| {
                            h.timestamp
                        })
                    })
                };
                bad_lines += usize::from(parsed.is_err());
            }
            state.offsets.insert(path, offset + bytes.len() as u64);
        }
        if bad_lines > 0 {
            tracing::warn!(dir = %self.dir.display(), bad_lines, "skipped unreadable metric lines (torn by a crash?)");
        }
        Ok(())
    }
}

impl Writes {
    /// The keys of a day file, read from the file unless they are in memory.
    fn day_keys(&mut self, stream: &'static str, day: NaiveDate, path: &Path) -> Result<&mut DayKeys> {
        self.uses += 1;
        let uses = self.uses;
        let keys = match self.keys.entry((stream, day)) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => entry.insert(read_keys(stream, path)?),
        };
        keys.last_used = uses;
        Ok(keys)
    }

    /// Forgets the least recently used day files beyond `KEYED_DAY_FILES`.
    fn evict(&mut self) {
        while self.keys.len() > KEYED_DAY_FILES {
            let Some(oldest) = self
                .keys
                .iter()
                .min_by_key(|(_, keys)| keys.last_used)
                .map(|(key, _)| *key)
            else {
                return;
            };
            self.keys.remove(&oldest);
        }
    }
}

/// The keys of the complete lines of a day file (none when it does not exist); unreadable lines
/// have no key.
fn read_keys(stream: &'static str, path: &Path) -> Result<DayKeys> {
    let mut keys = DayKeys::default();
    let Some(bytes) = read_complete_lines(path, 0)? else {
        return Ok(keys);
    };
    for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let Ok(key) = serde_json::from_slice::<LineKey>(line) else {
            continue;
        };
        let identity = if stream == SAMPLES { key.host } else { key.agent_id };
        if let Some(identity) = identity {
            keys.insert(identity, instant(key.timestamp));
        }
    }
    Ok(keys)
}

fn keep_latest<T>(map: &mut BTreeMap<String, T>, key: String, item: T, time: impl Fn(&T) -> DateTime<Utc>) {
    match map.get(&key) {
        Some(existing) if time(existing) > time(&item) => {}
        _ => {
            map.insert(key, item);
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The bytes of `path` from `offset` through its last newline; `None` if the file is gone.
fn read_complete_lines(path: &Path, offset: u64) -> Result<Option<Vec<u8>>> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(IndexError::io(path, e)),
    };
    let len = file.metadata().map_err(|e| IndexError::io(path, e))?.len();
    if len <= offset {
        return Ok(Some(Vec::new()));
    }
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| IndexError::io(path, e))?;
    let mut bytes = Vec::with_capacity((len - offset) as usize);
    file.read_to_end(&mut bytes)
        .map_err(|e| IndexError::io(path, e))?;
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |last| last + 1);
    bytes.truncate(complete);
    Ok(Some(bytes))
}

/// Appends complete lines, first ending a torn last line left by a crash; returns whether the file
/// was created.
fn append_lines(path: &Path, lines: &[u8]) -> Result<bool> {
    // Only the writer creates files, under the store's lock, so this cannot race.
    let created = !path.exists();
    let mut file = OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)
        .map_err(|e| IndexError::io(path, e))?;
    let len = file.metadata().map_err(|e| IndexError::io(path, e))?.len();
    let mut buf = Vec::with_capacity(lines.len() + 1);
    if len > 0 {
        let mut last = [0u8; 1];
        file.seek(SeekFrom::Start(len - 1))
            .map_err(|e| IndexError::io(path, e))?;
        file.read_exact(&mut last).map_err(|e| IndexError::io(path, e))?;
        if last[0] != b'\n' {
            buf.push(b'\n');
        }
    }
    buf.extend_from_slice(lines);
    file.write_all(&buf).map_err(|e| IndexError::io(path, e))?;
    Ok(created)
}

/// Flushes a file's data to disk; a file removed meanwhile (retention) needs nothing.
fn sync_file(path: &Path) -> Result<()> {
    match OpenOptions::new().append(true).open(path) {
        Ok(file) => file.sync_data().map_err(|e| IndexError::io(path, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(IndexError::io(path, e)),
    }
}

/// Flushes a directory's entries (files created in it) to disk.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| IndexError::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use owl_model::{DiskUsage, LoadAverage, parse_timestamp};

    fn ts(s: &str) -> DateTime<Utc> {
        parse_timestamp(s).unwrap()
    }

    fn sample(host: &str, at: &str, cpu: f64) -> MetricSample {
        MetricSample {
            host: host.to_string(),
            timestamp: ts(at),
            cpu_percent: cpu,
            memory_percent: 50.0,
            disks: vec![DiskUsage {
                mount: "/".into(),
                total_bytes: 100,
                used_bytes: 40,
                percent: 40.0,
            }],
            load: LoadAverage {
                one: 0.5,
                five: 0.4,
                fifteen: 0.3,
            },
            region: Some("CN".into()),
        }
    }

    fn heartbeat(agent: &str, host: &str, at: &str) -> Heartbeat {
        Heartbeat {
            agent_id: agent.to_string(),
            host: host.to_string(),
            timestamp: ts(at),
            version: "0.1.0".into(),
            uptime_s: 10,
            services: vec!["Form".into()],
            region: None,
            counters: BTreeMap::new(),
        }
    }

    // Golden: the line format of a samples file as written by this version; readers must keep
    // accepting it.
    const GOLDEN_SAMPLE_LINE: &str = r#"{"host":"node-1","@timestamp":"2025-12-07T10:00:00Z","cpu_percent":12.5,"memory_percent":50.0,"disks":[{"mount":"/","total_bytes":100,"used_bytes":40,"percent":40.0}],"load":{"one":0.5,"five":0.4,"fifteen":0.3},"region":"CN"}"#;

    #[test]
    fn golden_sample_line_round_trips() {
        let sample = sample("node-1", "2025-12-07T10:00:00Z", 12.5);
        assert_eq!(serde_json::to_string(&sample).unwrap(), GOLDEN_SAMPLE_LINE);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("samples-2025-12-07.jsonl"),
            format!("{GOLDEN_SAMPLE_LINE}\n"),
        )
        .unwrap();
        let store = MetricsStore::open(dir.path(), false).unwrap();
        assert_eq!(store.latest_metrics("node-1").unwrap(), Some(sample));
    }

    #[test]
    fn latest_history_and_hosts() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetricsStore::open(dir.path(), true).unwrap();
        store
            .append_samples(&[
                sample("a", "2025-12-06T23:59:50Z", 1.0),
                sample("a", "2025-12-07T00:00:10Z", 2.0),
                sample("b", "2025-12-07T00:00:05Z", 3.0),
            ])
            .unwrap();
        // Out of order: an older sample must not replace the latest.
        store
            .append_samples(&[sample("a", "2025-12-07T00:00:00Z", 9.0)])
            .unwrap();
        store
            .append_heartbeats(&[heartbeat("agent-1", "c", "2025-12-07T00:00:00Z")])
            .unwrap();
        assert_eq!(store.latest_metrics("a").unwrap().unwrap().cpu_percent, 2.0);
        assert_eq!(store.hosts().unwrap(), vec!["a", "b", "c"]);
        assert_eq!(store.latest_heartbeats().unwrap().len(), 1);
        assert_eq!(store.latest_all_metrics().unwrap().len(), 2);
        let history = store
            .metric_history("a", ts("2025-12-06T00:00:00Z"), ts("2025-12-08T00:00:00Z"))
            .unwrap();
        let cpus: Vec<f64> = history.iter().map(|s| s.cpu_percent).collect();
        assert_eq!(cpus, vec![1.0, 9.0, 2.0]);
        let window = store
            .metric_history("a", ts("2025-12-07T00:00:00Z"), ts("2025-12-07T00:00:10Z"))
            .unwrap();
        assert_eq!(window.len(), 1, "end is exclusive, start inclusive");
        assert!(
            dir.path().join("samples-2025-12-06.jsonl").is_file(),
            "split by the sample's UTC day"
        );
    }

    #[test]
    fn reader_sees_appends_of_another_handle_and_skips_torn_lines() {
        let dir = tempfile::tempdir().unwrap();
        let writer = MetricsStore::open(dir.path(), true).unwrap();
        let reader = MetricsStore::open(dir.path(), false).unwrap();
        assert_eq!(reader.latest_metrics("a").unwrap(), None);
        writer
            .append_samples(&[sample("a", "2025-12-07T10:00:00Z", 1.0)])
            .unwrap();
        assert_eq!(reader.latest_metrics("a").unwrap().unwrap().cpu_percent, 1.0);
        // A crash mid-line, then a restart that appends again.
        let path = dir.path().join("samples-2025-12-07.jsonl");
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(br#"{"host":"a","@timesta"#).unwrap();
        assert_eq!(
            reader.latest_metrics("a").unwrap().unwrap().cpu_percent,
            1.0,
            "partial line not read yet"
        );
        writer
            .append_samples(&[sample("a", "2025-12-07T10:00:10Z", 5.0)])
            .unwrap();
        assert_eq!(reader.latest_metrics("a").unwrap().unwrap().cpu_percent, 5.0);
        assert!(reader.append_samples(&[]).is_err(), "read-only");
    }

    #[test]
    fn retention_drops_day_files_and_forgets_their_latest() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetricsStore::open(dir.path(), true).unwrap();
        store
            .append_samples(&[
                sample("old", "2025-11-01T10:00:00Z", 1.0),
                sample("new", "2025-12-07T10:00:00Z", 1.0),
            ])
            .unwrap();
        let now = ts("2025-12-07T12:00:00Z");
        let dry = store.apply_retention(now, 7, true).unwrap();
        assert_eq!(dry.files, 1);
        assert!(dry.bytes > 0);
        assert_eq!(store.hosts().unwrap(), vec!["new", "old"]);
        let done = store.apply_retention(now, 7, false).unwrap();
        assert_eq!(done, dry);
        assert_eq!(store.hosts().unwrap(), vec!["new"]);
    }

    #[test]
    fn appending_the_same_items_again_stores_them_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetricsStore::open(dir.path(), true).unwrap();
        let batch = [
            sample("a", "2025-12-06T23:59:50Z", 1.0),
            sample("a", "2025-12-07T00:00:10Z", 2.0),
            sample("b", "2025-12-07T00:00:10Z", 3.0),
        ];
        let beats = [heartbeat("agent-1", "a", "2025-12-07T00:00:00Z")];
        store.append_samples(&batch).unwrap();
        store.append_heartbeats(&beats).unwrap();
        // A replay: the same items again, plus one new sample and a repeat inside the batch.
        let mut again = batch.to_vec();
        again.push(sample("a", "2025-12-07T00:00:20Z", 4.0));
        again.push(sample("a", "2025-12-07T00:00:20Z", 4.0));
        store.append_samples(&again).unwrap();
        store.append_heartbeats(&beats).unwrap();
        // A new handle (a restart) reads the keys back from the files.
        drop(store);
        let store = MetricsStore::open(dir.path(), true).unwrap();
        store.append_samples(&again).unwrap();
        store.append_heartbeats(&beats).unwrap();

        assert_eq!(lines(&dir.path().join("samples-2025-12-06.jsonl")), 1);
        assert_eq!(lines(&dir.path().join("samples-2025-12-07.jsonl")), 3);
        assert_eq!(lines(&dir.path().join("heartbeats-2025-12-07.jsonl")), 1);
        let history = store
            .metric_history("a", ts("2025-12-06T00:00:00Z"), ts("2025-12-08T00:00:00Z"))
            .unwrap();
        let cpus: Vec<f64> = history.iter().map(|s| s.cpu_percent).collect();
        assert_eq!(cpus, vec![1.0, 2.0, 4.0]);
        // Another heartbeat time or another agent is a new item.
        store
            .append_heartbeats(&[
                heartbeat("agent-1", "a", "2025-12-07T00:00:01Z"),
                heartbeat("agent-2", "a", "2025-12-07T00:00:00Z"),
            ])
            .unwrap();
        assert_eq!(lines(&dir.path().join("heartbeats-2025-12-07.jsonl")), 3);
    }

    #[test]
    fn keys_of_an_evicted_day_file_are_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetricsStore::open(dir.path(), true).unwrap();
        let first = sample("a", "2025-12-01T10:00:00Z", 1.0);
        store.append_samples(std::slice::from_ref(&first)).unwrap();
        for day in 2..=(2 + KEYED_DAY_FILES) {
            store
                .append_samples(&[sample("a", &format!("2025-12-{day:02}T10:00:00Z"), 1.0)])
                .unwrap();
        }
        assert!(
            !lock(&store.state)
                .writes
                .keys
                .contains_key(&(SAMPLES, first.timestamp.date_naive())),
            "the first day was evicted"
        );
        store.append_samples(&[first]).unwrap();
        assert_eq!(lines(&dir.path().join("samples-2025-12-01.jsonl")), 1);
        assert!(lock(&store.state).writes.keys.len() <= KEYED_DAY_FILES);
    }

    #[test]
    fn history_collapses_duplicates_written_before_appends_were_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let line = format!("{GOLDEN_SAMPLE_LINE}\n");
        std::fs::write(dir.path().join("samples-2025-12-07.jsonl"), line.repeat(2)).unwrap();
        let store = MetricsStore::open(dir.path(), true).unwrap();
        let history = store
            .metric_history("node-1", ts("2025-12-07T00:00:00Z"), ts("2025-12-08T00:00:00Z"))
            .unwrap();
        assert_eq!(history.len(), 1);
        store
            .append_samples(&[sample("node-1", "2025-12-07T10:00:00Z", 12.5)])
            .unwrap();
        assert_eq!(
            lines(&dir.path().join("samples-2025-12-07.jsonl")),
            2,
            "nothing appended"
        );
    }

    #[test]
    fn sync_flushes_what_was_appended_and_a_failure_is_final() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("metrics");
        let store = MetricsStore::open(&root, true).unwrap();
        store.sync().unwrap();
        store
            .append_samples(&[sample("a", "2025-12-07T10:00:00Z", 1.0)])
            .unwrap();
        {
            let state = lock(&store.state);
            assert_eq!(state.writes.unsynced.len(), 1);
            assert!(state.writes.created, "a new file needs a directory sync");
        }
        store.sync().unwrap();
        {
            let state = lock(&store.state);
            assert!(state.writes.unsynced.is_empty());
            assert!(!state.writes.created);
        }
        // A file that cannot be synced (a directory in its place makes the open fail).
        store
            .append_samples(&[sample("a", "2025-12-08T10:00:00Z", 1.0)])
            .unwrap();
        let path = root.join("samples-2025-12-08.jsonl");
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        assert!(store.sync().is_err());
        std::fs::remove_dir(&path).unwrap();
        // Nothing is left to sync, yet the earlier failure stands.
        let again = store.sync().unwrap_err().to_string();
        assert!(again.contains("earlier fsync"), "{again}");
        assert!(
            MetricsStore::open(&root, false).unwrap().sync().is_ok(),
            "read-only: a no-op"
        );
    }

    #[test]
    fn retention_forgets_the_keys_of_dropped_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetricsStore::open(dir.path(), true).unwrap();
        let old = sample("old", "2025-11-01T10:00:00Z", 1.0);
        store.append_samples(std::slice::from_ref(&old)).unwrap();
        store
            .apply_retention(ts("2025-12-07T12:00:00Z"), 7, false)
            .unwrap();
        // Arriving again after its day was dropped, it is stored again (and dropped next run).
        store.append_samples(&[old]).unwrap();
        assert_eq!(lines(&dir.path().join("samples-2025-11-01.jsonl")), 1);
        store.sync().unwrap();
    }

    fn lines(path: &Path) -> usize {
        std::fs::read_to_string(path).unwrap().lines().count()
    }
}
