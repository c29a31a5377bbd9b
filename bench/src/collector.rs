//! Figure 2: the collector from HTTP ingest to durable and searchable, beside the index alone
//! (`owl_index::Index::add` and `commit`, Owl's schema, records already parsed) on the same
//! records; and the index size per raw NDJSON byte.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use owl_config::{Config, Secret};
use owl_index::{Index, IndexSettings, LogFilter};
use owl_model::LogRecord;
use tokio_util::sync::CancellationToken;

use crate::Ctx;
use crate::client::Conn;
use crate::data::Generator;
use crate::report::{Better, Figure, Target};

/// The token the benchmark's collectors accept.
pub const TOKEN: &str = "owl-bench-token-0123456789";
const BATCH_RECORDS: usize = 1000;
const CONNECTIONS: usize = 4;

/// A collector config over `data_dir` accepting [`TOKEN`].
pub fn config(data_dir: &Path) -> Config {
    let mut config = Config {
        data_dir: data_dir.to_path_buf(),
        ..Config::default()
    };
    config.collector.agent_tokens = vec![Secret::new(TOKEN)];
    config
}

/// The index settings `owl up` uses for `config`.
pub fn index_settings(config: &Config) -> IndexSettings {
    IndexSettings {
        writer_memory_bytes: config.collector.writer_memory_bytes,
        ..IndexSettings::default()
    }
}

/// Bytes of the files under `dir`.
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&entry.path()),
            Ok(_) => entry.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}

/// A collector served in this process by `owl_collector::run`.
pub struct RunningCollector {
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    /// Its index.
    pub index: Index,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl RunningCollector {
    /// Starts a collector with `config` over `index`, waiting until it answers.
    pub async fn start(config: Config, index: Index) -> anyhow::Result<RunningCollector> {
        RunningCollector::start_observed(config, index, None).await
    }

    /// [`RunningCollector::start`] with an observer of what it stores (the alert engine).
    pub async fn start_observed(
        config: Config,
        index: Index,
        observer: Option<Arc<dyn owl_collector::IngestObserver>>,
    ) -> anyhow::Result<RunningCollector> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(owl_collector::run_with_hooks(
            config,
            index.clone(),
            listener,
            shutdown.clone(),
            Arc::new(owl_collector::AdmitAll),
            observer,
        ));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(mut conn) = Conn::connect(addr).await
                && conn.get("/health", &[]).await.is_ok_and(|a| a.status == 200)
            {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "the collector did not come up");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(RunningCollector {
            addr,
            index,
            shutdown,
            task,
        })
    }

    /// Stops it through its shutdown token.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.task.await.context("collector task panicked")?
    }
}

/// Posts `body` (zstd) to the ingest endpoint until it is accepted (429 is retried).
pub async fn post_batch(conn: &mut Conn, body: &Bytes) -> anyhow::Result<()> {
    let authorization = format!("Bearer {TOKEN}");
    loop {
        let answer = conn
            .send(
                "POST",
                "/api/v1/ingest",
                &[
                    ("authorization", &authorization),
                    ("content-encoding", "zstd"),
                    ("content-type", "application/x-ndjson"),
                ],
                body.clone(),
            )
            .await?;
        match answer.status {
            200 => return Ok(()),
            429 | 503 => tokio::time::sleep(Duration::from_millis(20)).await,
            status => anyhow::bail!(
                "ingest answered {status}: {}",
                String::from_utf8_lossy(&answer.body)
            ),
        }
    }
}

/// Runs figure 2.
pub async fn figures(ctx: &Ctx) -> anyhow::Result<Vec<Figure>> {
    let records = ctx.sizes.collector_records;
    let start = chrono::Utc::now() - chrono::Duration::minutes(20);
    let (lines, raw_bytes) = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        Generator::new(23, start, 1000).records_into(records, &mut out);
        let raw = out.len();
        let lines: Vec<Vec<u8>> = out
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(<[u8]>::to_vec)
            .collect();
        (lines, raw)
    })
    .await?;
    let n = lines.len();
    let mb = raw_bytes as f64 / 1e6;
    ctx.progress(&format!(
        "collector: {n} records, {mb:.0} MB; baseline: the index alone"
    ));

    // Baseline: the index alone, on records already parsed.
    let base_config = config(&ctx.work.join("collector-baseline"));
    let (baseline_s, baseline_bytes) = {
        let settings = index_settings(&base_config);
        let root = base_config.index_dir();
        let parsed: Vec<LogRecord> = lines
            .iter()
            .map(|l| LogRecord::from_json_slice(l, chrono::Utc::now()).map_err(|e| anyhow::anyhow!("{e}")))
            .collect::<anyhow::Result<_>>()?;
        tokio::task::spawn_blocking(move || -> anyhow::Result<(f64, u64)> {
            let index = Index::open(&root, settings)?;
            let started = Instant::now();
            let mut last_commit = Instant::now();
            for chunk in parsed.chunks(BATCH_RECORDS) {
                index.add(chunk)?;
                if last_commit.elapsed() >= Duration::from_secs(1) {
                    index.commit()?;
                    last_commit = Instant::now();
                }
            }
            index.commit()?;
            let elapsed = started.elapsed().as_secs_f64();
            anyhow::ensure!(
                index.count(&LogFilter::default())? as usize == parsed.len(),
                "baseline lost records"
            );
            index.close()?;
            Ok((elapsed, dir_bytes(&root)))
        })
        .await??
    };

    ctx.progress("collector: pipeline (HTTP, zstd, WAL, dedup, index)");
    let pipe_config = config(&ctx.work.join("collector-pipeline"));
    let index = Index::open(&pipe_config.index_dir(), index_settings(&pipe_config))?;
    let collector = RunningCollector::start(pipe_config.clone(), index.clone()).await?;
    let bodies: Arc<Vec<Bytes>> = Arc::new(
        lines
            .chunks(BATCH_RECORDS)
            .map(|chunk| {
                let mut body = chunk.join(&b'\n');
                body.push(b'\n');
                Bytes::from(zstd::encode_all(&body[..], 3).expect("compressing in memory cannot fail"))
            })
            .collect(),
    );
    drop(lines);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..CONNECTIONS {
        let (bodies, next, addr) = (bodies.clone(), next.clone(), collector.addr);
        clients.push(tokio::spawn(async move {
            let mut conn = Conn::connect(addr).await?;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else {
                    return Ok::<_, anyhow::Error>(());
                };
                post_batch(&mut conn, body).await?;
            }
        }));
    }
    for client in clients {
        client.await.context("load client panicked")??;
    }
    let acked_s = started.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let index = index.clone();
        let count = tokio::task::spawn_blocking(move || index.count(&LogFilter::default())).await??;
        if count as usize >= n {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {count} of {n} records became searchable"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let pipeline_s = started.elapsed().as_secs_f64();
    collector.stop().await?;
    let pipeline_bytes = dir_bytes(&pipe_config.index_dir());
    let baseline_name = "tantivy alone (owl-index add+commit)";
    let note = format!(
        "{n} records posted as zstd NDJSON batches of {BATCH_RECORDS} on {CONNECTIONS} connections; all acknowledged after {acked_s:.1} s, all searchable after {pipeline_s:.1} s"
    );
    Ok(vec![
        Figure::compared(
            "collector_records_per_s",
            "records/s",
            Better::Higher,
            Some(n as f64 / pipeline_s),
            baseline_name,
            Some(n as f64 / baseline_s),
        )
        .target(Target::RatioAtLeast(0.7))
        .note(note),
        Figure::compared(
            "collector_mb_per_s",
            "MB/s",
            Better::Higher,
            Some(mb / pipeline_s),
            baseline_name,
            Some(mb / baseline_s),
        ),
        Figure::compared(
            "collector_index_bytes_per_raw_byte",
            "bytes/byte",
            Better::Lower,
            Some(pipeline_bytes as f64 / raw_bytes as f64),
            baseline_name,
            Some(baseline_bytes as f64 / raw_bytes as f64),
        ),
    ])
}
