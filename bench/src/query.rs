//! Figure 4: query latency on a large index, beside ripgrep (or grep) over the raw NDJSON and
//! SQLite with FTS5 holding the same records.
//!
//! The data set (NDJSON file, Owl index, SQLite database) is built once per size and cached under
//! `<out>/query-v<version>-<records>/`; a `manifest.json` written last marks it complete. Records span seven
//! days, so the index has the partitions a week of logs has.
//!
//! | query | Owl (`owl_index::Index`) | ripgrep | SQLite |
//! | --- | --- | --- | --- |
//! | trace lookup | `trace(id)` | `rg -F <id>` | `WHERE trace_id = ?` (B-tree index) |
//! | filtered top-50 | `search`: service, level, 1 h window, newest 50 + total | regex on level and service, window and newest 50 in the reader | `WHERE service = ? AND level = ? AND ts in window ORDER BY ts DESC LIMIT 50` + count (index on service, ts) |
//! | keyword (Latin, Chinese) | `search`: keyword over the whole range, newest 50 + total | `rg -F -i`, newest 50 + count | FTS5 trigram `MATCH`, newest 50 by rowid + count |
//! | stats | `stats` over the whole range | `rg -o` of level and service, counted | `GROUP BY` level, service, hour; duration count/mean/max |

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use owl_index::{Index, IndexSettings, LogFilter, SearchRequest, StatsRequest};
use owl_model::{Level, LogRecord};
use serde::{Deserialize, Serialize};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Connection, Row, SqliteConnection};

use crate::Ctx;
use crate::agent::find_program;
use crate::client::percentile_ms;
use crate::data::{CJK_KEYWORD, FILTER_SERVICE, Generator, LATIN_KEYWORD};
use crate::report::{Better, Figure, Target};

const MANIFEST: &str = "manifest.json";
/// Bumped whenever the generator or the way the data set is built changes, so a stale cache is
/// never reused.
const DATASET_VERSION: u32 = 2;
const SPAN_DAYS: i64 = 7;
/// Records per request of the generator, on average (for spreading timestamps).
const RECORDS_PER_REQUEST: f64 = 3.55;
const SQL_BATCH: usize = 100;
const LATIN: [&str; 2] = [LATIN_KEYWORD, "currency=IDR"];
const CJK: [&str; 2] = [CJK_KEYWORD, "登录失败"];

/// What a cached data set holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Manifest {
    records: u64,
    bytes: u64,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    traces: Vec<String>,
    build_s: f64,
}

struct Dataset {
    dir: PathBuf,
    manifest: Manifest,
}

impl Dataset {
    fn ndjson(&self) -> PathBuf {
        self.dir.join("records.ndjson")
    }
    fn index(&self) -> PathBuf {
        self.dir.join("index")
    }
    fn sqlite(&self) -> PathBuf {
        self.dir.join("records.sqlite")
    }
}

/// The cache directory name of a data set of `records`.
pub fn dataset_dir_name(records: u64) -> String {
    format!("query-v{DATASET_VERSION}-{records}")
}

/// Disk a data set of `records` needs, roughly (NDJSON, index, SQLite), in bytes.
pub fn disk_needed(records: u64) -> u64 {
    records * 2_000
}

fn sqlite_options(path: &Path) -> anyhow::Result<SqliteConnectOptions> {
    Ok(
        SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Off)
            .synchronous(SqliteSynchronous::Off),
    )
}

fn micros(ts: &DateTime<Utc>) -> i64 {
    ts.timestamp_micros()
}

/// The text FTS5 indexes: what Owl's keyword searches (message, error message, user name).
fn keyword_text(record: &LogRecord) -> String {
    let mut text = record.message.clone();
    if let Some(message) = record.error.as_ref().and_then(|e| e.message.as_deref()) {
        text.push('\n');
        text.push_str(message);
    }
    if let Some(name) = record.user.as_ref().and_then(|u| u.name.as_deref()) {
        text.push('\n');
        text.push_str(name);
    }
    text
}

async fn build(ctx: &Ctx, dir: &Path, records: u64) -> anyhow::Result<Dataset> {
    let started = Instant::now();
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("while clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir)?;
    let end = Utc::now() - chrono::Duration::hours(1);
    let start = end - chrono::Duration::days(SPAN_DAYS);
    let requests = (records as f64 / RECORDS_PER_REQUEST).max(1.0);
    let step_us = ((end - start).num_microseconds().unwrap_or(1) as f64 / requests) as i64;
    let mut dataset = Dataset {
        dir: dir.to_path_buf(),
        manifest: Manifest {
            records: 0,
            bytes: 0,
            start,
            end,
            traces: Vec::new(),
            build_s: 0.0,
        },
    };

    ctx.progress(&format!(
        "query: building the {records}-record data set in {} (once; cached)",
        dir.display()
    ));
    let ndjson = dataset.ndjson();
    let (written, traces) = tokio::task::spawn_blocking(move || {
        let mut generator = Generator::new(47, start, step_us).sample_traces_every(500);
        let written = generator.write_file(&ndjson, u64::MAX, records)?;
        Ok::<_, std::io::Error>((written, generator.traces().to_vec()))
    })
    .await??;
    dataset.manifest.records = written.records;
    dataset.manifest.bytes = written.bytes;
    dataset.manifest.traces = traces;
    dataset.manifest.end = start
        + chrono::Duration::microseconds(
            step_us * (written.records as f64 / RECORDS_PER_REQUEST) as i64 + 60_000_000,
        );

    let timer = Instant::now();
    let (ndjson, index_dir) = (dataset.ndjson(), dataset.index());
    tokio::task::spawn_blocking(move || build_index(&ndjson, &index_dir)).await??;
    ctx.progress(&format!(
        "query: Owl index built in {:.0} s",
        timer.elapsed().as_secs_f64()
    ));

    let timer = Instant::now();
    build_sqlite(&dataset.ndjson(), &dataset.sqlite()).await?;
    ctx.progress(&format!(
        "query: SQLite FTS5 database built in {:.0} s",
        timer.elapsed().as_secs_f64()
    ));

    dataset.manifest.build_s = started.elapsed().as_secs_f64();
    std::fs::write(dir.join(MANIFEST), serde_json::to_vec_pretty(&dataset.manifest)?)?;
    Ok(dataset)
}

/// Parses `path` on one thread and adds to the index on another.
fn build_index(ndjson: &Path, index_dir: &Path) -> anyhow::Result<()> {
    let settings = IndexSettings {
        writer_memory_bytes: 256_000_000,
        writer_threads: 2,
        ..IndexSettings::default()
    };
    let index = Index::open(index_dir, settings)?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<LogRecord>>(4);
    let path = ndjson.to_path_buf();
    let reader = std::thread::spawn(move || -> anyhow::Result<()> {
        let now = Utc::now();
        let mut chunk = Vec::with_capacity(10_000);
        for line in BufReader::with_capacity(1 << 20, std::fs::File::open(&path)?).split(b'\n') {
            let line = line?;
            if line.is_empty() {
                continue;
            }
            chunk.push(LogRecord::from_json_slice(&line, now).map_err(|e| anyhow::anyhow!("{e}"))?);
            if chunk.len() == 10_000
                && tx
                    .send(std::mem::replace(&mut chunk, Vec::with_capacity(10_000)))
                    .is_err()
            {
                return Ok(());
            }
        }
        let _ = tx.send(chunk);
        Ok(())
    });
    for chunk in rx {
        index.add_owned(chunk)?;
    }
    reader
        .join()
        .map_err(|_| anyhow::anyhow!("the reader thread panicked"))??;
    index.commit()?;
    index.close()?;
    Ok(())
}

async fn build_sqlite(ndjson: &Path, path: &Path) -> anyhow::Result<()> {
    let mut conn = SqliteConnection::connect_with(&sqlite_options(path)?).await?;
    for statement in [
        "CREATE TABLE logs (id TEXT NOT NULL, ts INTEGER NOT NULL, level TEXT NOT NULL, service TEXT NOT NULL, trace_id TEXT, duration_ms REAL, doc TEXT NOT NULL)",
        "CREATE VIRTUAL TABLE fts USING fts5(text, content='', tokenize='trigram')",
    ] {
        sqlx::query(statement).execute(&mut conn).await?;
    }
    let log_sql = format!(
        "INSERT INTO logs (rowid, id, ts, level, service, trace_id, duration_ms, doc) VALUES {}",
        vec!["(?, ?, ?, ?, ?, ?, ?, ?)"; SQL_BATCH].join(", ")
    );
    let fts_sql = format!(
        "INSERT INTO fts (rowid, text) VALUES {}",
        vec!["(?, ?)"; SQL_BATCH].join(", ")
    );
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<(String, LogRecord)>>(8);
    let file = ndjson.to_path_buf();
    let reader = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let now = Utc::now();
        let mut chunk = Vec::with_capacity(SQL_BATCH);
        for line in BufReader::with_capacity(1 << 20, std::fs::File::open(&file)?).lines() {
            let line = line?;
            if line.is_empty() {
                continue;
            }
            let record =
                LogRecord::from_json_slice(line.as_bytes(), now).map_err(|e| anyhow::anyhow!("{e}"))?;
            chunk.push((line, record));
            if chunk.len() == SQL_BATCH
                && tx
                    .blocking_send(std::mem::replace(&mut chunk, Vec::with_capacity(SQL_BATCH)))
                    .is_err()
            {
                return Ok(());
            }
        }
        let _ = tx.blocking_send(chunk);
        Ok(())
    });
    let mut rowid: i64 = 0;
    let mut in_transaction = 0usize;
    sqlx::query("BEGIN").execute(&mut conn).await?;
    while let Some(chunk) = rx.recv().await {
        let full = chunk.len() == SQL_BATCH;
        let first = rowid + 1;
        // A full chunk uses the prepared multi-row statements; the last, short one goes row by row.
        if full {
            let mut logs = sqlx::query(sqlx::AssertSqlSafe(log_sql.clone()));
            let mut fts = sqlx::query(sqlx::AssertSqlSafe(fts_sql.clone()));
            for (i, (line, record)) in chunk.into_iter().enumerate() {
                let id = first + i as i64;
                fts = fts.bind(id).bind(keyword_text(&record));
                logs = logs
                    .bind(id)
                    .bind(record.id)
                    .bind(micros(&record.timestamp))
                    .bind(record.level.as_str())
                    .bind(record.service.name)
                    .bind(record.trace.map(|t| t.id))
                    .bind(record.http.and_then(|h| h.duration_ms))
                    .bind(line);
            }
            logs.execute(&mut conn).await?;
            fts.execute(&mut conn).await?;
            rowid += SQL_BATCH as i64;
        } else {
            for (line, record) in chunk {
                rowid += 1;
                sqlx::query("INSERT INTO fts (rowid, text) VALUES (?, ?)")
                    .bind(rowid)
                    .bind(keyword_text(&record))
                    .execute(&mut conn)
                    .await?;
                sqlx::query("INSERT INTO logs (rowid, id, ts, level, service, trace_id, duration_ms, doc) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
                    .bind(rowid)
                    .bind(record.id)
                    .bind(micros(&record.timestamp))
                    .bind(record.level.as_str())
                    .bind(record.service.name)
                    .bind(record.trace.map(|t| t.id))
                    .bind(record.http.and_then(|h| h.duration_ms))
                    .bind(line)
                    .execute(&mut conn)
                    .await?;
            }
        }
        in_transaction += 1;
        if in_transaction >= 1000 {
            sqlx::query("COMMIT").execute(&mut conn).await?;
            sqlx::query("BEGIN").execute(&mut conn).await?;
            in_transaction = 0;
        }
    }
    sqlx::query("COMMIT").execute(&mut conn).await?;
    reader.await??;
    for statement in [
        "CREATE INDEX logs_ts ON logs (ts)",
        "CREATE INDEX logs_trace ON logs (trace_id)",
        "CREATE INDEX logs_service_ts ON logs (service, ts)",
        "ANALYZE",
    ] {
        sqlx::query(statement).execute(&mut conn).await?;
    }
    conn.close().await?;
    Ok(())
}

async fn dataset(ctx: &Ctx) -> anyhow::Result<Dataset> {
    let records = ctx.sizes.query_records;
    let dir = ctx.cache.join(dataset_dir_name(records));
    if let Ok(text) = std::fs::read(dir.join(MANIFEST))
        && let Ok(manifest) = serde_json::from_slice::<Manifest>(&text)
    {
        ctx.progress(&format!(
            "query: using the cached {records}-record data set in {}",
            dir.display()
        ));
        return Ok(Dataset { dir, manifest });
    }
    build(ctx, &dir, records).await
}

/// The line-oriented tool of the baseline.
struct Grep {
    name: &'static str,
    program: PathBuf,
}

impl Grep {
    fn find() -> Option<Grep> {
        find_program("rg")
            .map(|program| Grep {
                name: "ripgrep",
                program,
            })
            .or_else(|| {
                find_program("grep").map(|program| Grep {
                    name: "grep",
                    program,
                })
            })
    }

    /// Runs the tool with `args` over `file` and hands every output line to `each`.
    fn run(&self, args: &[&str], file: &Path, mut each: impl FnMut(&[u8])) -> anyhow::Result<()> {
        let mut command = Command::new(&self.program);
        if self.name == "ripgrep" {
            command
                .arg("--no-filename")
                .arg("--no-line-number")
                .arg("--no-config");
        } else {
            command.arg("-h").arg("-a");
        }
        let mut child = command
            .args(args)
            .arg(file)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take().expect("stdout is piped");
        for line in BufReader::with_capacity(1 << 20, stdout).split(b'\n') {
            each(&line?);
        }
        let status = child.wait()?;
        // Exit status 1 means "no match" for both tools.
        anyhow::ensure!(
            status.success() || status.code() == Some(1),
            "{} exited with {status}",
            self.name
        );
        Ok(())
    }
}

/// The `@timestamp` of an NDJSON line, as written by the generator.
fn line_timestamp(line: &[u8]) -> Option<&[u8]> {
    let at = memchr::memmem::find(line, b"\"@timestamp\":\"")? + 14;
    let end = at + memchr::memchr(b'"', &line[at..])?;
    Some(&line[at..end])
}

/// Keeps the newest `n` lines (the file is in time order, so the last ones) and a count.
struct Newest {
    lines: std::collections::VecDeque<Vec<u8>>,
    count: u64,
    n: usize,
}

impl Newest {
    fn new(n: usize) -> Newest {
        Newest {
            lines: std::collections::VecDeque::with_capacity(n + 1),
            count: 0,
            n,
        }
    }
    fn push(&mut self, line: &[u8]) {
        self.count += 1;
        self.lines.push_back(line.to_vec());
        if self.lines.len() > self.n {
            self.lines.pop_front();
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Query {
    Trace,
    Top50,
    Keyword,
    KeywordCjk,
    Stats,
}

impl Query {
    const ALL: [Query; 5] = [
        Query::Trace,
        Query::Top50,
        Query::Keyword,
        Query::KeywordCjk,
        Query::Stats,
    ];

    fn name(self) -> &'static str {
        match self {
            Query::Trace => "query_trace_lookup",
            Query::Top50 => "query_filtered_top50",
            Query::Keyword => "query_keyword",
            Query::KeywordCjk => "query_keyword_cjk",
            Query::Stats => "query_stats",
        }
    }
}

/// The parameters of the `i`-th run of a query.
struct Params {
    trace: String,
    window: (DateTime<Utc>, DateTime<Utc>),
    keyword: &'static str,
}

fn params(manifest: &Manifest, query: Query, i: usize) -> Params {
    let traces = &manifest.traces;
    let trace = if traces.is_empty() {
        String::new()
    } else {
        traces[(i * 7919) % traces.len()].clone()
    };
    let span_s = (manifest.end - manifest.start).num_seconds().max(7200);
    let offset = ((i as i64 * 104_729) % (span_s - 3600)).max(0);
    let window_start = manifest.start + chrono::Duration::seconds(offset);
    let keyword = match query {
        Query::KeywordCjk => CJK[i % CJK.len()],
        _ => LATIN[i % LATIN.len()],
    };
    Params {
        trace,
        window: (window_start, window_start + chrono::Duration::hours(1)),
        keyword,
    }
}

fn owl_query(index: &Index, manifest: &Manifest, query: Query, p: &Params) -> anyhow::Result<u64> {
    let whole = LogFilter::between(
        manifest.start - chrono::Duration::hours(1),
        manifest.end + chrono::Duration::hours(1),
    );
    Ok(match query {
        Query::Trace => index.trace(&p.trace)?.map_or(0, |t| t.spans.len() as u64),
        Query::Top50 => {
            let filter = LogFilter {
                services: vec![FILTER_SERVICE.to_string()],
                levels: vec![Level::Error],
                ..LogFilter::between(p.window.0, p.window.1)
            };
            index
                .search(&SearchRequest {
                    filter,
                    limit: 50,
                    ..SearchRequest::default()
                })?
                .total
        }
        Query::Keyword | Query::KeywordCjk => {
            let filter = LogFilter {
                keyword: Some(p.keyword.to_string()),
                ..whole
            };
            index
                .search(&SearchRequest {
                    filter,
                    limit: 50,
                    ..SearchRequest::default()
                })?
                .total
        }
        Query::Stats => {
            index
                .stats(&StatsRequest {
                    filter: whole,
                    ..StatsRequest::default()
                })?
                .total
        }
    })
}

fn grep_query(grep: &Grep, file: &Path, query: Query, p: &Params) -> anyhow::Result<u64> {
    let mut newest = Newest::new(50);
    match query {
        Query::Trace => grep.run(&["-F", &p.trace], file, |l| newest.push(l))?,
        Query::Top50 => {
            let (from, to) = (
                owl_model::format_timestamp(&p.window.0),
                owl_model::format_timestamp(&p.window.1),
            );
            let pattern = format!(r#""level":"ERROR".*"service":\{{"name":"{FILTER_SERVICE}""#);
            let regex_flag = if grep.name == "grep" { "-E" } else { "-e" };
            grep.run(&[regex_flag, &pattern], file, |l| {
                if line_timestamp(l).is_some_and(|ts| ts >= from.as_bytes() && ts < to.as_bytes()) {
                    newest.push(l);
                }
            })?
        }
        Query::Keyword | Query::KeywordCjk => grep.run(&["-F", "-i", p.keyword], file, |l| newest.push(l))?,
        Query::Stats => {
            let mut counts = std::collections::HashMap::<Vec<u8>, u64>::new();
            let regex_flag = if grep.name == "grep" { "-E" } else { "-e" };
            grep.run(
                &["-o", regex_flag, r#""level":"[A-Z]+"|"service":\{"name":"[^"]+""#],
                file,
                |l| {
                    *counts.entry(l.to_vec()).or_default() += 1;
                },
            )?;
            newest.count = counts.values().sum();
        }
    }
    Ok(newest.count)
}

async fn sqlite_query(
    conn: &mut SqliteConnection,
    manifest: &Manifest,
    query: Query,
    p: &Params,
) -> anyhow::Result<u64> {
    Ok(match query {
        Query::Trace => sqlx::query("SELECT doc FROM logs WHERE trace_id = ? ORDER BY ts")
            .bind(&p.trace)
            .fetch_all(&mut *conn)
            .await?
            .len() as u64,
        Query::Top50 => {
            let (from, to) = (micros(&p.window.0), micros(&p.window.1));
            let rows = sqlx::query("SELECT doc FROM logs WHERE service = ? AND level = 'ERROR' AND ts >= ? AND ts < ? ORDER BY ts DESC LIMIT 50")
                .bind(FILTER_SERVICE)
                .bind(from)
                .bind(to)
                .fetch_all(&mut *conn)
                .await?;
            let total: i64 = sqlx::query(
                "SELECT count(*) FROM logs WHERE service = ? AND level = 'ERROR' AND ts >= ? AND ts < ?",
            )
            .bind(FILTER_SERVICE)
            .bind(from)
            .bind(to)
            .fetch_one(&mut *conn)
            .await?
            .get(0);
            debug_assert!(rows.len() <= 50);
            total as u64
        }
        Query::Keyword | Query::KeywordCjk => {
            let phrase = format!("\"{}\"", p.keyword.replace('"', "\"\""));
            let rows = sqlx::query("SELECT doc FROM logs WHERE rowid IN (SELECT rowid FROM fts WHERE fts MATCH ? ORDER BY rowid DESC LIMIT 50) ORDER BY ts DESC")
                .bind(&phrase)
                .fetch_all(&mut *conn)
                .await?;
            let total: i64 = sqlx::query("SELECT count(*) FROM fts WHERE fts MATCH ?")
                .bind(&phrase)
                .fetch_one(&mut *conn)
                .await?
                .get(0);
            debug_assert!(rows.len() <= 50);
            total as u64
        }
        Query::Stats => {
            let (from, to) = (
                micros(&manifest.start) - 3_600_000_000,
                micros(&manifest.end) + 3_600_000_000,
            );
            let mut total = 0u64;
            for sql in [
                "SELECT level, count(*) FROM logs WHERE ts >= ? AND ts < ? GROUP BY level",
                "SELECT service, count(*) FROM logs WHERE ts >= ? AND ts < ? GROUP BY service",
                "SELECT ts / 3600000000, count(*), sum(level = 'ERROR'), avg(duration_ms) FROM logs WHERE ts >= ? AND ts < ? GROUP BY 1",
                "SELECT count(duration_ms), avg(duration_ms), max(duration_ms) FROM logs WHERE ts >= ? AND ts < ?",
            ] {
                total += sqlx::query(sql)
                    .bind(from)
                    .bind(to)
                    .fetch_all(&mut *conn)
                    .await?
                    .len() as u64;
            }
            total
        }
    })
}

fn time<T>(run: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<Duration> {
    let started = Instant::now();
    run()?;
    Ok(started.elapsed())
}

/// Runs figure 4.
pub async fn figures(ctx: &Ctx) -> anyhow::Result<Vec<Figure>> {
    let data = dataset(ctx).await?;
    let manifest = data.manifest.clone();
    anyhow::ensure!(
        !manifest.traces.is_empty(),
        "the data set has no sampled trace ids"
    );
    let index = Index::open_reader(&data.index())?;
    let mut sqlite = SqliteConnection::connect_with(&sqlite_options(&data.sqlite())?.read_only(true)).await?;
    let grep = Grep::find();
    let iterations = ctx.sizes.query_iterations;
    let grep_iterations = ctx.sizes.grep_iterations;
    ctx.progress(&format!(
        "query: {} records ({:.1} GB NDJSON); {iterations} runs per query for Owl and SQLite, {grep_iterations} for {}",
        manifest.records,
        manifest.bytes as f64 / 1e9,
        grep.as_ref().map_or("grep (not found)", |g| g.name)
    ));
    let budget = Duration::from_secs(if ctx.smoke { 2 } else { 15 });
    let mut runs = Vec::new();
    let mut figures = Vec::new();
    for query in Query::ALL {
        // One warm-up run each (first open of partitions, page cache).
        let warm = params(&manifest, query, 100_000);
        {
            let (index, manifest) = (index.clone(), manifest.clone());
            tokio::task::spawn_blocking(move || owl_query(&index, &manifest, query, &warm)).await??;
        }
        // Each engine gets `iterations` runs, but stops after its time budget once it has three
        // (a full scan of ten million rows takes seconds; thirty of them would take minutes).
        let within =
            |runs: &[Duration], min: usize| runs.len() < min || runs.iter().sum::<Duration>() < budget;
        let mut owl = Vec::with_capacity(iterations);
        while owl.len() < iterations && within(&owl, 3) {
            let p = params(&manifest, query, owl.len());
            let (index, manifest2) = (index.clone(), manifest.clone());
            owl.push(
                tokio::task::spawn_blocking(move || time(|| owl_query(&index, &manifest2, query, &p)))
                    .await??,
            );
        }
        let mut sql = Vec::with_capacity(iterations);
        while sql.len() < iterations && within(&sql, 3) {
            let p = params(&manifest, query, sql.len());
            let started = Instant::now();
            sqlite_query(&mut sqlite, &manifest, query, &p).await?;
            sql.push(started.elapsed());
        }
        let mut grepped = Vec::new();
        if let Some(grep) = &grep {
            while grepped.len() < grep_iterations && within(&grepped, 2) {
                let p = params(&manifest, query, grepped.len());
                let file = data.ndjson();
                grepped.push(time(|| grep_query(grep, &file, query, &p))?);
            }
        }
        runs.push(format!(
            "{}: Owl {}, SQLite {}, grep {}",
            query.name(),
            owl.len(),
            sql.len(),
            grepped.len()
        ));
        for (suffix, pct) in [("p50_ms", 50.0), ("p99_ms", 99.0)] {
            let name = format!("{}_{suffix}", query.name());
            let owl_ms = percentile_ms(&owl, pct);
            let grep_name = grep.as_ref().map_or("ripgrep", |g| g.name);
            let mut by_grep = Figure::compared(
                &name,
                "ms",
                Better::Lower,
                owl_ms,
                grep_name,
                percentile_ms(&grepped, pct),
            );
            if grep.is_none() {
                by_grep = by_grep.baseline_skipped("neither ripgrep nor grep is installed");
            }
            let mut by_sql = Figure::compared(
                &name,
                "ms",
                Better::Lower,
                owl_ms,
                "SQLite FTS5",
                percentile_ms(&sql, pct),
            );
            if pct == 99.0 && matches!(query, Query::Trace | Query::Top50) {
                by_grep = by_grep.target(Target::RatioAtLeast(100.0));
                by_sql = by_sql.target(Target::RatioAtLeast(3.0));
            }
            if query == Query::Stats {
                by_grep = by_grep.note("stats: Owl computes every breakdown of the log API stats (levels, services, hours, errors, exact p95/p99, top paths); ripgrep extracts and counts levels and services; SQLite runs four GROUP BY queries");
            }
            figures.push(by_grep);
            figures.push(by_sql);
        }
    }
    figures[0] = figures[0].clone().note(format!(
        "{} records over {SPAN_DAYS} days, {:.1} GB of NDJSON; runs (at most {iterations}, {grep_iterations} for {}, fewer when {}s of runs were spent): {}; data set built once in {:.0} s and cached in {}",
        manifest.records,
        manifest.bytes as f64 / 1e9,
        grep.as_ref().map_or("grep", |g| g.name),
        budget.as_secs(),
        runs.join("; "),
        manifest.build_s,
        data.dir.display()
    ));
    sqlite.close().await?;
    Ok(figures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_timestamp_of_a_line() {
        let line = br#"{"id":"x","@timestamp":"2026-01-01T00:00:00.000Z","level":"INFO"}"#;
        assert_eq!(line_timestamp(line), Some(&b"2026-01-01T00:00:00.000Z"[..]));
        assert_eq!(line_timestamp(b"{}"), None);
    }

    #[test]
    fn newest_keeps_the_last_lines_and_counts_all() {
        let mut newest = Newest::new(2);
        for line in [b"a", b"b", b"c"] {
            newest.push(line);
        }
        assert_eq!(newest.count, 3);
        assert_eq!(newest.lines, [b"b".to_vec(), b"c".to_vec()]);
    }
}
