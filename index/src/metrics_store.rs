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
//! Durability: appends are not fsynced; the collector's WAL covers what was acknowledged.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, NaiveDate, Utc};
use owl_model::{Heartbeat, MetricSample};
use serde::Serialize;

use crate::error::{IndexError, Result};
use crate::partition::{lock, parse_day};
use crate::retention::{Usage, is_expired};

const SAMPLES: &str = "samples";
const HEARTBEATS: &str = "heartbeats";
const EXTENSION: &str = ".jsonl";

/// Reads and (in the writer process) appends host metric samples and heartbeats.
#[derive(Debug)]
pub struct MetricsStore {
    dir: PathBuf,
    writable: bool,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Bytes consumed per file.
    offsets: HashMap<PathBuf, u64>,
    latest_samples: BTreeMap<String, MetricSample>,
    latest_heartbeats: BTreeMap<String, Heartbeat>,
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
        if writable {
            std::fs::create_dir_all(dir).map_err(|e| IndexError::io(dir, e))?;
        }
        let store = MetricsStore {
            dir: dir.to_path_buf(),
            writable,
            state: Mutex::new(State::default()),
        };
        store.refresh(&mut lock(&store.state))?;
        Ok(store)
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends samples (writer only).
    pub fn append_samples(&self, samples: &[MetricSample]) -> Result<()> {
        self.append(SAMPLES, samples, |s| s.timestamp)
    }

    /// Appends heartbeats (writer only).
    pub fn append_heartbeats(&self, heartbeats: &[Heartbeat]) -> Result<()> {
        self.append(HEARTBEATS, heartbeats, |h| h.timestamp)
    }

    fn append<T: Serialize>(
        &self,
        stream: &str,
        items: &[T],
        time: impl Fn(&T) -> DateTime<Utc>,
    ) -> Result<()> {
        if !self.writable {
            return Err(IndexError::ReadOnly {
                root: self.dir.clone(),
                operation: "append metrics",
            });
        }
        let mut by_day: BTreeMap<NaiveDate, Vec<u8>> = BTreeMap::new();
        for item in items {
            let buf = by_day.entry(time(item).date_naive()).or_default();
            serde_json::to_writer(&mut *buf, item).expect("metric samples and heartbeats serialise to JSON");
            buf.push(b'\n');
        }
        let mut state = lock(&self.state);
        for (day, lines) in by_day {
            let path = self.dir.join(file_name(stream, day));
            append_lines(&path, &lines)?;
        }
        self.refresh(&mut state)
    }

    /// The latest sample of `host`.
    pub fn latest_metrics(&self, host: &str) -> Result<Option<MetricSample>> {
        let mut state = lock(&self.state);
        self.refresh(&mut state)?;
        Ok(state.latest_samples.get(host).cloned())
    }

    /// The latest sample of every host, by host name.
    pub fn latest_all_metrics(&self) -> Result<Vec<MetricSample>> {
        let mut state = lock(&self.state);
        self.refresh(&mut state)?;
        Ok(state.latest_samples.values().cloned().collect())
    }

    /// Hosts that sent a sample or a heartbeat, sorted.
    pub fn hosts(&self) -> Result<Vec<String>> {
        let mut state = lock(&self.state);
        self.refresh(&mut state)?;
        let hosts: BTreeSet<String> = state
            .latest_samples
            .keys()
            .cloned()
            .chain(state.latest_heartbeats.values().map(|h| h.host.clone()))
            .collect();
        Ok(hosts.into_iter().collect())
    }

    /// The latest heartbeat of every agent, by agent id.
    pub fn latest_heartbeats(&self) -> Result<Vec<Heartbeat>> {
        let mut state = lock(&self.state);
        self.refresh(&mut state)?;
        Ok(state.latest_heartbeats.values().cloned().collect())
    }

    /// Samples of `host` with `start <= timestamp < end`, oldest first.
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
        samples.sort_by_key(|s| s.timestamp);
        Ok(samples)
    }

    /// Drops (or, on a dry run, counts) the day files past `days` at `now`.
    pub(crate) fn apply_retention(&self, now: DateTime<Utc>, days: u32, dry_run: bool) -> Result<Usage> {
        let mut usage = Usage::default();
        let mut state = lock(&self.state);
        for (_, day, path) in self.files()? {
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
            }
        }
        if !dry_run {
            self.refresh(&mut state)?;
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
    fn refresh(&self, state: &mut State) -> Result<()> {
        let files = self.files()?;
        if state
            .offsets
            .keys()
            .any(|known| !files.iter().any(|(_, _, path)| path == known))
        {
            *state = State::default();
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

/// Appends complete lines, first ending a torn last line left by a crash.
fn append_lines(path: &Path, lines: &[u8]) -> Result<()> {
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
    file.write_all(&buf).map_err(|e| IndexError::io(path, e))
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
}
