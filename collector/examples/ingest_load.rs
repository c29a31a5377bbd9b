//! Ingest throughput end to end, next to the index alone, on the same records in one run.
//!
//! ```text
//! cargo run --release -p owl-collector --example ingest_load -- \
//!     [--records 200000] [--batch 1000] [--connections 4] [--encoding none|gzip|zstd]
//! ```
//!
//! 1. Generates records (~400 bytes of JSON each, HTTP, application and error records of a few
//!    services, Latin and Chinese messages) with ids, as NDJSON batches.
//! 2. Baseline: `owl_index::Index::add` of the same records, already parsed, in batches, with a
//!    commit every second and at the end: tantivy with Owl's schema, nothing else.
//! 3. Pipeline: a collector on 127.0.0.1 (`owl_collector::run`, its WAL and index in a temp dir)
//!    and a load client with keep-alive connections posting the batches: HTTP, decompression,
//!    parsing, masking, dedup, WAL group commit, then the indexing loop. Timed until every batch is
//!    acknowledged, until every record is searchable, and until every record is committed.
//!
//! Throughput is records (and raw NDJSON megabytes) per second of wall time; the ratio of the
//! two is the pipeline's overhead.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use owl_config::{Config, Secret};
use owl_index::{Index, IndexSettings, LogFilter};
use owl_model::LogRecord;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "load-test-token-0123456789";

struct Options {
    records: usize,
    batch: usize,
    connections: usize,
    encoding: String,
}

fn options() -> Options {
    let mut options = Options {
        records: 200_000,
        batch: 1000,
        connections: 4,
        encoding: "none".into(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--records" => options.records = value.parse().expect("--records N"),
            "--batch" => options.batch = value.parse().expect("--batch N"),
            "--connections" => options.connections = value.parse().expect("--connections N"),
            "--encoding" => options.encoding = value,
            other => panic!("unknown option {other}"),
        }
    }
    options
}

/// A small deterministic generator, so every run indexes the same records.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

fn record_line(i: usize, rng: &mut Rng, start: chrono::DateTime<chrono::Utc>) -> String {
    let services = ["Form", "foundation-service", "crm-api", "billing", "gateway"];
    let regions = ["CN", "US", "UAE"];
    let paths = [
        "/api/v1/forms",
        "/api/v1/users/login",
        "/api/v1/orders",
        "/api/v1/customers/search",
        "/health",
    ];
    let messages = [
        "用户登录失败：用户名或密码错误",
        "order created successfully",
        "cache miss, loading from database",
        "客户资料已更新",
        "payment gateway responded slowly",
        "connection pool exhausted, waiting for a free connection",
    ];
    let ts = start + chrono::Duration::milliseconds(i as i64);
    let service = rng.pick(&services);
    let region = rng.pick(&regions);
    let trace = format!("{region}-{}-{:08x}", ts.timestamp_millis(), rng.next() as u32);
    let roll = rng.next() % 10;
    let mut value = serde_json::json!({
        "id": format!("load-{i:09}"),
        "@timestamp": owl_model::format_timestamp(&ts),
        "level": match roll { 0 => "ERROR", 1 | 2 => "WARN", 3 => "DEBUG", _ => "INFO" },
        "message": format!("{} #{}", rng.pick(&messages), rng.next() % 100_000),
        "service": { "name": service, "region": region, "instance": format!("{service}-{}", rng.next() % 4) },
        "trace": { "id": trace, "span_id": format!("{}-{:06x}", service.to_uppercase(), rng.next() % 0xffffff) },
        "host": format!("node-{}", rng.next() % 8),
        "environment": "production",
    });
    if roll < 6 {
        let status = if roll == 0 {
            500
        } else if roll == 1 {
            404
        } else {
            200
        };
        value["http"] = serde_json::json!({
            "request_id": format!("{}-{:06x}", ts.timestamp_millis(), rng.next() % 0xffffff),
            "method": rng.pick(&["GET", "POST"]),
            "url": format!("{}?page={}", rng.pick(&paths), rng.next() % 50),
            "status_code": status,
            "duration_ms": (rng.next() % 2000) as f64 / 3.0,
        });
        value["user"] = serde_json::json!({ "id": format!("user-{}", rng.next() % 1000), "name": "张三" });
        value["client"] =
            serde_json::json!({ "ip": format!("10.0.{}.{}", rng.next() % 255, rng.next() % 255) });
    }
    if roll == 0 {
        value["error"] = serde_json::json!({ "type": "DatabaseError", "message": "Connection refused", "code": "CONNECTION_REFUSED" });
    }
    value.to_string()
}

fn encode(body: &[u8], encoding: &str) -> Vec<u8> {
    match encoding {
        "none" => body.to_vec(),
        "gzip" => {
            use std::io::Write;
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            encoder.write_all(body).unwrap();
            encoder.finish().unwrap()
        }
        "zstd" => zstd::encode_all(body, 3).unwrap(),
        other => panic!("unknown encoding {other}: none, gzip or zstd"),
    }
}

/// Posts `body` on a keep-alive connection; returns the status.
async fn post(
    stream: &mut TcpStream,
    body: &[u8],
    encoding: &str,
    buf: &mut Vec<u8>,
) -> std::io::Result<u16> {
    let mut head = format!(
        "POST /api/v1/ingest HTTP/1.1\r\nHost: load\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {}\r\n",
        body.len()
    );
    if encoding != "none" {
        head.push_str(&format!("Content-Encoding: {encoding}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    buf.clear();
    let header_end = loop {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_string();
    let status: u16 = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        })
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < header_end + length {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(status)
}

/// Indexes `records` with the index alone, committing every second and at the end.
fn baseline(
    records: &[LogRecord],
    root: &std::path::Path,
    settings: &IndexSettings,
    batch: usize,
) -> anyhow::Result<Duration> {
    let index = Index::open(root, settings.clone())?;
    let started = Instant::now();
    let mut last_commit = Instant::now();
    for chunk in records.chunks(batch) {
        index.add(chunk)?;
        if last_commit.elapsed() >= Duration::from_secs(1) {
            index.commit()?;
            last_commit = Instant::now();
        }
    }
    index.commit()?;
    let elapsed = started.elapsed();
    assert_eq!(index.count(&LogFilter::default())? as usize, records.len());
    Ok(elapsed)
}

fn rate(count: f64, elapsed: Duration) -> f64 {
    count / elapsed.as_secs_f64()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = options();
    if let Ok(filter) = std::env::var("OWL_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .init();
    }
    let dir = tempfile::tempdir()?;
    let start = chrono::Utc::now() - chrono::Duration::hours(1);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let lines: Vec<String> = (0..options.records)
        .map(|i| record_line(i, &mut rng, start))
        .collect();
    let raw_bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
    let mb = raw_bytes as f64 / 1e6;
    println!(
        "{} records, {:.1} MB of NDJSON ({} bytes a record), batches of {}, {} connections, encoding {}",
        options.records,
        mb,
        raw_bytes / options.records,
        options.batch,
        options.connections,
        options.encoding
    );
    let settings = IndexSettings {
        writer_memory_bytes: 32 * 1024 * 1024,
        ..IndexSettings::default()
    };

    // Baseline: the index alone, records already parsed; run before and after the pipeline, since
    // the same work varies between runs on this machine.
    let parsed: Vec<LogRecord> = lines
        .iter()
        .map(|l| LogRecord::from_json_slice(l.as_bytes(), chrono::Utc::now()).unwrap())
        .collect();
    let baseline_before = baseline(&parsed, &dir.path().join("baseline-1"), &settings, options.batch)?;

    // Pipeline: HTTP -> durable -> indexed.
    let data = dir.path().join("pipeline");
    let mut config = Config {
        data_dir: data.clone(),
        ..Config::default()
    };
    config.collector.agent_tokens = vec![Secret::new(TOKEN)];
    let index = Index::open(&config.index_dir(), settings.clone())?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(owl_collector::run(
        config,
        index.clone(),
        listener,
        shutdown.clone(),
    ));
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
        lines
            .chunks(options.batch)
            .map(|chunk| {
                let mut body = chunk.join("\n").into_bytes();
                body.push(b'\n');
                encode(&body, &options.encoding)
            })
            .collect(),
    );
    let wire: usize = bodies.iter().map(Vec::len).sum();
    drop(lines);
    // Wait until the collector answers.
    loop {
        if let Ok(mut stream) = TcpStream::connect(addr).await {
            let mut buf = Vec::new();
            if post(&mut stream, b"{\"message\":\"warm-up\"}\n", "none", &mut buf)
                .await
                .is_ok()
            {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let next = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..options.connections {
        let (bodies, next, refused, encoding) = (
            bodies.clone(),
            next.clone(),
            refused.clone(),
            options.encoding.clone(),
        );
        clients.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let mut buf = Vec::new();
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else { break };
                loop {
                    let sent = Instant::now();
                    match post(&mut stream, body, &encoding, &mut buf).await.unwrap() {
                        200 => {
                            latencies.push(sent.elapsed());
                            break;
                        }
                        429 => {
                            refused.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        status => panic!("ingest answered {status}"),
                    }
                }
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for client in clients {
        latencies.extend(client.await?);
    }
    let acked = started.elapsed();
    let everything = LogFilter {
        environments: vec!["production".into()],
        ..LogFilter::default()
    };
    while index.count(&everything)? < options.records as u64 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let searchable = started.elapsed();
    let reader = Index::open_reader(&data.join("index"))?;
    while reader.count(&everything)? < options.records as u64 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let committed = started.elapsed();
    // What a dedup by looking ids up in the index would cost per record.
    let lookups = 2000;
    let lookup_started = Instant::now();
    for i in 0..lookups {
        let id = format!("load-{:09}", i * (options.records / lookups));
        assert!(index.get(&id)?.is_some());
    }
    let per_lookup = lookup_started.elapsed() / lookups as u32;
    shutdown.cancel();
    server.await??;
    drop(index);
    let baseline_after = baseline(&parsed, &dir.path().join("baseline-2"), &settings, options.batch)?;

    latencies.sort();
    let n = options.records as f64;
    for (label, baseline) in [("before", baseline_before), ("after", baseline_after)] {
        println!(
            "baseline  Index::add ({label:<6})           {:>8.0} records/s {:>6.1} MB/s  ({:.2} s)",
            rate(n, baseline),
            rate(mb, baseline),
            baseline.as_secs_f64()
        );
    }
    let baseline = (baseline_before + baseline_after) / 2;
    println!(
        "pipeline  all acknowledged (durable)   {:>8.0} records/s {:>6.1} MB/s  ({:.2} s)",
        rate(n, acked),
        rate(mb, acked),
        acked.as_secs_f64()
    );
    println!(
        "pipeline  all searchable               {:>8.0} records/s {:>6.1} MB/s  ({:.2} s)",
        rate(n, searchable),
        rate(mb, searchable),
        searchable.as_secs_f64()
    );
    println!(
        "pipeline  all committed                {:>8.0} records/s {:>6.1} MB/s  ({:.2} s)",
        rate(n, committed),
        rate(mb, committed),
        committed.as_secs_f64()
    );
    println!(
        "pipeline/baseline (searchable): {:.2}; wire {:.1} MB; request p50 {:?} p99 {:?}; 429 answers {}",
        searchable.as_secs_f64() / baseline.as_secs_f64(),
        wire as f64 / 1e6,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        refused.load(Ordering::Relaxed)
    );
    println!("Index::get by id (dedup by index lookup would pay this per record): {per_lookup:?}");
    Ok(())
}
