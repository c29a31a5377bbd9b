//! Helpers of the collector's integration tests: a collector on 127.0.0.1:0 over a temp data dir,
//! and a small HTTP/1.1 client that shows exactly what went over the wire.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use owl_config::{Config, Secret};
use owl_index::{Index, IndexSettings, LogFilter, SearchRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const TOKEN: &str = "test-agent-token-0123456789";

/// A config over `data_dir` with the test token and a short commit interval.
pub fn config(data_dir: &Path) -> Config {
    let mut config = Config {
        data_dir: data_dir.to_path_buf(),
        ..Config::default()
    };
    config.collector.agent_tokens = vec![Secret::new(TOKEN)];
    config.collector.commit_interval_ms = 200;
    config
}

/// Index settings small enough for tests.
pub fn index_settings() -> IndexSettings {
    IndexSettings {
        writer_memory_bytes: 15_000_000,
        ..IndexSettings::default()
    }
}

/// A collector served by `owl_collector::run` in this process.
pub struct TestCollector {
    pub addr: SocketAddr,
    pub index: Index,
    pub config: Config,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl TestCollector {
    pub async fn start(config: Config) -> TestCollector {
        TestCollector::start_with(config, owl_collector::Hooks::default()).await
    }

    pub async fn start_with(config: Config, hooks: owl_collector::Hooks) -> TestCollector {
        let index = Index::open(&config.index_dir(), index_settings()).expect("open index");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(owl_collector::run_with(
            config.clone(),
            index.clone(),
            listener,
            shutdown.clone(),
            hooks,
        ));
        let collector = TestCollector {
            addr,
            index,
            config,
            shutdown,
            task,
        };
        // Recovery runs before the listener serves; wait until it answers.
        let deadline = Instant::now() + Duration::from_secs(20);
        while get(addr, "/health").await.map(|r| r.status).ok() != Some(200) {
            assert!(Instant::now() < deadline, "collector did not come up");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        collector
    }

    /// Stops through the production shutdown path and returns the index handle.
    pub async fn stop(self) -> Index {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("collector stopped in time")
            .expect("collector task")
            .expect("collector run");
        self.index
    }

    pub async fn ingest(&self, body: &[u8], extra: &[(&str, &str)]) -> Response {
        ingest(self.addr, body, extra).await
    }
}

/// An HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one request on a fresh connection (`Connection: close`) and reads the whole answer.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect(addr).await?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    // A server refusing early (413 by Content-Length) may close before reading the body.
    let _ = stream.write_all(body).await;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    parse_response(&raw)
}

/// Sends a request with `Expect: 100-continue`, as curl does for large bodies: the body goes out
/// only if the server asks for it, so a refusal by headers alone never leaves it unread.
pub async fn request_expect_continue(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect(addr).await?;
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nExpect: 100-continue\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        if raw.starts_with(b"HTTP/1.1 100")
            && let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n")
        {
            raw.drain(..end + 4);
            stream.write_all(body).await?;
        }
    }
    parse_response(&raw)
}

pub fn parse_response(raw: &[u8]) -> std::io::Result<Response> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| bad("headers not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or_else(|| bad("no status line"))?;
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad status"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect::<Vec<_>>();
    let mut body = raw[end + 4..].to_vec();
    if let Some(len) = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
    {
        body.truncate(len);
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

pub async fn get(addr: SocketAddr, path: &str) -> std::io::Result<Response> {
    request(addr, "GET", path, &[], b"").await
}

/// `POST /api/v1/ingest` with the test token and `extra` headers.
pub async fn ingest(addr: SocketAddr, body: &[u8], extra: &[(&str, &str)]) -> Response {
    let auth = format!("Bearer {TOKEN}");
    let mut headers = vec![
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/x-ndjson"),
    ];
    headers.extend_from_slice(extra);
    request(addr, "POST", "/api/v1/ingest", &headers, body)
        .await
        .expect("ingest request")
}

/// NDJSON of records with the given ids and a common marker word in the message.
pub fn records(ids: &[String], marker: &str) -> Vec<u8> {
    let mut body = Vec::new();
    for id in ids {
        let line = serde_json::json!({
            "id": id,
            "@timestamp": chrono::Utc::now().to_rfc3339(),
            "level": "INFO",
            "message": format!("{marker} record {id}"),
            "service": "Form",
        });
        body.extend_from_slice(line.to_string().as_bytes());
        body.push(b'\n');
    }
    body
}

pub fn ids(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}-{i}")).collect()
}

/// Records whose message contains `marker`, through the given index handle.
pub fn count_marker(index: &Index, marker: &str) -> u64 {
    index
        .count(&LogFilter {
            keyword: Some(marker.to_string()),
            ..LogFilter::default()
        })
        .expect("count")
}

/// Waits until exactly `expected` records carry `marker` (ingest acknowledges durability; the
/// indexer adds a few milliseconds later).
pub async fn wait_count(index: &Index, marker: &str, expected: u64) {
    let mut last = 0;
    let reached = eventually(Duration::from_secs(20), || {
        last = count_marker(index, marker);
        last == expected
    })
    .await;
    assert!(reached.is_some(), "{marker}: {last} records, expected {expected}");
}

/// Every record id under the index root, as committed (read through a read-only handle).
pub fn committed_ids(root: &Path, marker: &str) -> Vec<String> {
    let reader = Index::open_reader(root).expect("open reader");
    let request = SearchRequest {
        filter: LogFilter {
            keyword: Some(marker.to_string()),
            ..LogFilter::default()
        },
        limit: owl_index::MAX_SEARCH_DEPTH,
        ..SearchRequest::default()
    };
    let found = reader.search(&request).expect("search");
    assert!(found.total as usize <= owl_index::MAX_SEARCH_DEPTH);
    found.hits.into_iter().map(|r| r.id).collect()
}

/// Polls `check` until it holds or `timeout` passes; returns the time it took.
pub async fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    loop {
        if check() {
            return Some(started.elapsed());
        }
        if started.elapsed() > timeout {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub fn gzip(body: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(body).unwrap();
    encoder.finish().unwrap()
}

pub fn zstd(body: &[u8]) -> Vec<u8> {
    zstd::encode_all(body, 3).unwrap()
}

pub fn data_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data");
    (dir, path)
}
