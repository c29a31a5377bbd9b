//! Test harness: a real HTTP collector on 127.0.0.1:0 implementing the ingest contract (token,
//! zstd/gzip bodies, NDJSON, dedup by record id, per-line rejections, failure modes), agent
//! configs with short intervals, and polling helpers.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use owl_config::{Config, InputConfig, Secret};
use owl_model::{IngestItem, LogRecord};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

pub const TOKEN: &str = "test-token-0123456789";

/// How the collector answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// Stores and acknowledges.
    Up,
    /// Closes every connection without answering (a collector that is down).
    Down,
    /// Answers every request with this status (and `Retry-After` seconds if set).
    Status { code: u16, retry_after: Option<u64> },
}

/// What the collector received.
#[derive(Debug, Default)]
pub struct Received {
    /// Stored records by id (first version wins).
    pub records: HashMap<String, LogRecord>,
    /// Records whose id was already stored.
    pub duplicates: u64,
    /// Accepted requests.
    pub batches: u64,
    /// Every request's status.
    pub statuses: Vec<u16>,
    /// `(agent id, batch seq)` of accepted batches, in arrival order.
    pub batch_keys: Vec<(String, u64)>,
    pub metrics: Vec<owl_model::MetricSample>,
    pub heartbeats: Vec<owl_model::Heartbeat>,
    /// Line numbers (1-based) to reject, by message content.
    pub reject_messages: Vec<String>,
}

impl Received {
    /// Messages of stored records.
    pub fn messages(&self) -> Vec<String> {
        self.records.values().map(|r| r.message.clone()).collect()
    }
}

pub struct Collector {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Received>>,
    mode: Arc<Mutex<Mode>>,
    stop: CancellationToken,
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn decode(encoding: Option<&str>, body: &[u8]) -> Result<Vec<u8>, String> {
    match encoding {
        None | Some("identity") => Ok(body.to_vec()),
        Some("zstd") => zstd::stream::decode_all(body).map_err(|e| e.to_string()),
        Some("gzip") => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut out)
                .map_err(|e| e.to_string())?;
            Ok(out)
        }
        Some(other) => Err(format!("unsupported encoding {other}")),
    }
}

fn reply(status: u16, body: Value, retry_after: Option<u64>) -> Response<Full<Bytes>> {
    let mut response = Response::builder()
        .status(status)
        .header("content-type", "application/json");
    if let Some(seconds) = retry_after {
        response = response.header("retry-after", seconds.to_string());
    }
    response.body(Full::new(Bytes::from(body.to_string()))).unwrap()
}

async fn handle(
    request: Request<Incoming>,
    received: Arc<Mutex<Received>>,
    mode: Mode,
) -> Response<Full<Bytes>> {
    if let Mode::Status { code, retry_after } = mode {
        received.lock().unwrap().statuses.push(code);
        return reply(code, json!({"error": "test mode"}), retry_after);
    }
    let auth_ok = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {TOKEN}"));
    if request.uri().path() != "/api/v1/ingest" || request.method() != hyper::Method::POST {
        return reply(404, json!({"error": "not found"}), None);
    }
    if !auth_ok {
        received.lock().unwrap().statuses.push(401);
        return reply(401, json!({"error": "bad token"}), None);
    }
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let agent = header("x-owl-agent-id").unwrap_or_default();
    let seq: u64 = header("x-owl-batch-seq")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let encoding = header("content-encoding");
    assert_eq!(header("content-type").as_deref(), Some("application/x-ndjson"));
    let body = request.into_body().collect().await.unwrap().to_bytes();
    let body = match decode(encoding.as_deref(), &body) {
        Ok(b) => b,
        Err(e) => return reply(400, json!({"error": e}), None),
    };
    let now = chrono::Utc::now();
    let mut r = received.lock().unwrap();
    let (mut accepted, mut duplicates, mut rejected) = (0u64, 0u64, Vec::new());
    for (index, line) in body.split(|b| *b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match IngestItem::parse(line, now) {
            Ok(IngestItem::Log(record)) => {
                assert!(!record.id.is_empty(), "agent records carry an id");
                if r.reject_messages.contains(&record.message) {
                    rejected.push(json!({"line": index + 1, "reason": "rejected by test"}));
                } else if r.records.contains_key(&record.id) {
                    duplicates += 1;
                } else {
                    r.records.insert(record.id.clone(), *record);
                    accepted += 1;
                }
            }
            Ok(IngestItem::Metric(m)) => {
                r.metrics.push(m);
                accepted += 1;
            }
            Ok(IngestItem::Heartbeat(h)) => {
                r.heartbeats.push(h);
                accepted += 1;
            }
            Err(e) => rejected.push(json!({"line": index + 1, "reason": e})),
        }
    }
    r.duplicates += duplicates;
    r.batches += 1;
    r.statuses.push(200);
    r.batch_keys.push((agent, seq));
    reply(
        200,
        json!({"accepted": accepted, "duplicates": duplicates, "rejected": rejected}),
        None,
    )
}

impl Collector {
    pub async fn start() -> Collector {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Received::default()));
        let mode = Arc::new(Mutex::new(Mode::Up));
        let stop = CancellationToken::new();
        {
            let (received, mode, stop) = (received.clone(), mode.clone(), stop.clone());
            tokio::spawn(async move {
                loop {
                    let (stream, _) = tokio::select! {
                        a = listener.accept() => a.unwrap(),
                        () = stop.cancelled() => return,
                    };
                    stream.set_nodelay(true).unwrap();
                    if *mode.lock().unwrap() == Mode::Down {
                        drop(stream);
                        continue;
                    }
                    let (received, mode, stop) = (received.clone(), mode.clone(), stop.clone());
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |request| {
                            let (received, mode) = (received.clone(), mode.lock().unwrap().clone());
                            async move {
                                if mode == Mode::Down {
                                    return Err("down");
                                }
                                Ok::<_, &str>(handle(request, received, mode).await)
                            }
                        });
                        let conn = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service);
                        tokio::select! {
                            _ = conn => {}
                            () = stop.cancelled() => {}
                        }
                    });
                }
            });
        }
        Collector {
            addr,
            received,
            mode,
            stop,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    pub fn received(&self) -> std::sync::MutexGuard<'_, Received> {
        self.received.lock().unwrap()
    }

    /// Waits until `done` holds or `timeout` passes; the caller judges what it got.
    pub async fn settle(&self, timeout: Duration, done: impl Fn(&Received) -> bool) {
        let deadline = Instant::now() + timeout;
        while !done(&self.received()) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until `done` holds, failing with `what` after `timeout`.
    pub async fn wait_for(&self, timeout: Duration, what: &str, done: impl Fn(&Received) -> bool) {
        wait_until(timeout, what, || done(&self.received())).await;
    }
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes.
pub async fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An input with short intervals for tests.
pub fn input(glob: &Path, service: &str) -> InputConfig {
    let mut input = InputConfig {
        paths: vec![glob.display().to_string()],
        service: service.to_string(),
        region: "CN".to_string(),
        poll_interval_ms: 50,
        rotate_wait_ms: 300,
        ..InputConfig::default()
    };
    input.multiline.timeout_ms = 100;
    input
}

/// An agent config for `collector` keeping its state under `dir`.
pub fn config(dir: &Path, collector_url: &str, inputs: Vec<InputConfig>) -> Config {
    let mut config = Config {
        data_dir: dir.join("data"),
        ..Config::default()
    };
    let agent = &mut config.agent;
    agent.collector_url = collector_url.to_string();
    agent.token = Secret::new(TOKEN);
    agent.host = "test-node".to_string();
    agent.metrics_listen = "127.0.0.1:0".to_string();
    agent.host_metrics_interval_s = 0;
    agent.heartbeat_interval_s = 3600;
    agent.batch.timeout_ms = 50;
    agent.batch.max_bytes = 64 * 1024;
    agent.retry.initial_backoff_ms = 10;
    agent.retry.max_backoff_ms = 200;
    agent.retry.request_timeout_ms = 5000;
    agent.shutdown_timeout_ms = 3000;
    agent.inputs = inputs;
    config.validate().unwrap();
    config
}

/// Appends lines to a file (opened with O_APPEND, as loggers do).
pub struct Writer {
    file: std::fs::File,
}

impl Writer {
    pub fn open(path: &Path) -> Writer {
        Writer {
            file: std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .unwrap(),
        }
    }

    pub fn line(&mut self, text: &str) {
        use std::io::Write;
        self.file.write_all(format!("{text}\n").as_bytes()).unwrap();
    }

    pub fn raw(&mut self, bytes: &[u8]) {
        use std::io::Write;
        self.file.write_all(bytes).unwrap();
    }
}

/// The numbers `n` of stored messages `"{prefix}{n} ..."`, counted.
pub fn seq_counts(received: &Received, prefix: &str) -> BTreeMap<u64, usize> {
    let mut counts = BTreeMap::new();
    for record in received.records.values() {
        if let Some(rest) = record.message.strip_prefix(prefix) {
            let n: u64 = rest
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap()
                .parse()
                .unwrap();
            *counts.entry(n).or_insert(0) += 1;
        }
    }
    counts
}

/// Asserts every `n` in `0..total` was stored exactly once.
pub fn assert_exactly_once(received: &Received, prefix: &str, total: u64) {
    let counts = seq_counts(received, prefix);
    let missing: Vec<u64> = (0..total).filter(|n| !counts.contains_key(n)).collect();
    let doubled: Vec<(&u64, &usize)> = counts.iter().filter(|(_, c)| **c > 1).collect();
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    for n in &missing {
        match ranges.last_mut() {
            Some(r) if r.1 + 1 == *n => r.1 = *n,
            _ => ranges.push((*n, *n)),
        }
    }
    assert!(
        missing.is_empty(),
        "{} lines missing: {:?}",
        missing.len(),
        &ranges[..ranges.len().min(20)]
    );
    assert!(
        doubled.is_empty(),
        "lines stored more than once: {:?}",
        &doubled[..doubled.len().min(20)]
    );
    assert_eq!(counts.len() as u64, total, "unexpected extra lines");
}

/// Number of stored messages with the prefix.
pub fn count(received: &Received, prefix: &str) -> usize {
    received
        .records
        .values()
        .filter(|r| r.message.starts_with(prefix))
        .count()
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}
