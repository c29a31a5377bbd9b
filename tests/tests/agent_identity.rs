//! Per-agent tokens end to end, against a real collector: a token's region is the region of its
//! records, its heartbeats speak for its node only, a revoked token stops working, two agents
//! cloned from one data directory (a VM image copied with the agent's state) both deliver every
//! line, and the ingest endpoint bounds concurrent requests and zstd windows.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use owl_config::{Config, InputConfig, ReadFrom, Secret};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const SHARED: &str = "shared-token-0123456789abcdef";

struct Collector {
    url: String,
    config: Config,
    _dir: tempfile::TempDir,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn start(tweak: impl FnOnce(&mut Config)) -> Collector {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    config.collector.agent_tokens = vec![Secret::new(SHARED)];
    config.collector.commit_interval_ms = 100;
    tweak(&mut config);
    owl_query_api::admin::migrate(&config).await.unwrap();
    let index = owl_index::Index::open(&config.index_dir(), Default::default()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(owl_collector::run(
        config.clone(),
        index,
        listener,
        shutdown.clone(),
    ));
    Collector {
        url,
        config,
        _dir: dir,
        shutdown,
        task,
    }
}

impl Collector {
    fn tokens(&self) -> owl_collector::AgentTokenStore {
        owl_collector::AgentTokenStore::connect_lazy(&self.config.database_url()).unwrap()
    }

    async fn ingest(&self, token: &str, body: String) -> reqwest::Response {
        reqwest::Client::new()
            .post(format!("{}/api/v1/ingest", self.url))
            .bearer_auth(token)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// Records whose message contains `marker`, once `count` of them are searchable.
    async fn records(&self, marker: &str, count: u64) -> Vec<owl_model::LogRecord> {
        let index = owl_index::Index::open_reader(&self.config.index_dir()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let now = chrono::Utc::now();
            let request = owl_index::SearchRequest {
                filter: owl_index::LogFilter {
                    keyword: Some(marker.to_string()),
                    ..owl_index::LogFilter::between(
                        now - chrono::Duration::hours(1),
                        now + chrono::Duration::hours(1),
                    )
                },
                limit: 1000,
                ..owl_index::SearchRequest::default()
            };
            let found = index.search(&request).unwrap();
            if found.total >= count || Instant::now() > deadline {
                return found.hits;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_agent_token_binds_region_and_heartbeats_and_can_be_revoked() {
    let collector = start(|_| {}).await;
    let store = collector.tokens();
    let us = store.create("node-us", Some("us"), now_ms()).await.unwrap();
    let other = store.create("node-b", None, now_ms()).await.unwrap();
    assert!(
        store.create("node-us", None, now_ms()).await.is_err(),
        "names are unique"
    );
    assert!(store.create("bad name", None, now_ms()).await.is_err());

    // Created a moment ago, it works at once; the region it claims is its token's.
    let line = json!({"message": "identity-marker from us", "service": {"name": "Form", "region": "CN"}});
    let reply = collector.ingest(&us, format!("{line}\n")).await;
    assert_eq!(reply.status(), 200, "{}", reply.text().await.unwrap());
    let heartbeat = json!({"@type": "heartbeat", "agent_id": "spoofed", "host": "h", "@timestamp": owl_model::format_timestamp(&chrono::Utc::now()), "version": "1", "uptime_s": 1});
    let reply = collector.ingest(&us, format!("{heartbeat}\n")).await;
    assert_eq!(reply.status(), 200, "{}", reply.text().await.unwrap());
    let records = collector.records("identity-marker", 1).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].service.region.as_deref(), Some("US"));

    // The shared token keeps working, and keeps the record's own region.
    let line = json!({"message": "identity-marker shared", "service": {"name": "Form", "region": "CN"}});
    assert_eq!(collector.ingest(SHARED, format!("{line}\n")).await.status(), 200);
    let records = collector.records("identity-marker", 2).await;
    assert!(records.iter().any(|r| r.service.region.as_deref() == Some("CN")));

    // Revoked: refused within the refresh bound.
    assert!(store.revoke("node-b", now_ms()).await.unwrap());
    let deadline = Instant::now() + owl_collector::agent_tokens::REFRESH + Duration::from_secs(3);
    loop {
        let status = collector
            .ingest(&other, "{\"message\":\"late\"}\n".into())
            .await
            .status();
        if status == 401 {
            break;
        }
        assert!(Instant::now() < deadline, "a revoked token still works");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        collector
            .ingest("owl_not-a-token", "{\"message\":\"x\"}\n".into())
            .await
            .status()
            == 401
    );
    let listed = store.list().await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(
        listed
            .iter()
            .any(|t| t.name == "node-b" && t.revoked_at.is_some())
    );
    store.close().await;
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_bounds_concurrent_requests_and_zstd_windows() {
    let collector = start(|config| config.collector.max_concurrent_requests = 1).await;
    // One request whose body never finishes holds the only slot...
    let address = collector.url.trim_start_matches("http://").to_string();
    let mut slow = std::net::TcpStream::connect(&address).unwrap();
    write!(
        slow,
        "POST /api/v1/ingest HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {SHARED}\r\nContent-Length: 1000\r\n\r\n{{\"mess"
    )
    .unwrap();
    slow.flush().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // ...so the next is answered 429 with Retry-After, not queued.
    let reply = collector.ingest(SHARED, "{\"message\":\"busy\"}\n".into()).await;
    assert_eq!(reply.status(), 429);
    assert!(reply.headers().contains_key("retry-after"));
    drop(slow);
    let deadline = Instant::now() + Duration::from_secs(10);
    while collector
        .ingest(SHARED, "{\"message\":\"free\"}\n".into())
        .await
        .status()
        != 200
    {
        assert!(Instant::now() < deadline, "the slot never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A zstd frame that asks for a 128 MiB window is refused before it takes that memory.
    let mut encoder = zstd::stream::Encoder::new(Vec::new(), 3).unwrap();
    encoder
        .set_parameter(zstd::zstd_safe::CParameter::WindowLog(27))
        .unwrap();
    encoder
        .set_parameter(zstd::zstd_safe::CParameter::EnableLongDistanceMatching(true))
        .unwrap();
    encoder
        .write_all(&b"{\"message\":\"wide\"}\n".repeat(10))
        .unwrap();
    let body = encoder.finish().unwrap();
    let reply = reqwest::Client::new()
        .post(format!("{}/api/v1/ingest", collector.url))
        .bearer_auth(SHARED)
        .header("content-encoding", "zstd")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 400);
    let body: Value = reply.json().await.unwrap();
    assert!(
        body["error"]["message"].as_str().unwrap().contains("zstd"),
        "{body}"
    );
    collector.stop().await;
}

/// An agent config shipping `file` to `collector` with `token`, keeping state in `state`.
fn agent_config(state: &Path, file: &Path, collector: &str, token: &str) -> Config {
    let mut config = Config {
        data_dir: state.to_path_buf(),
        ..Config::default()
    };
    let agent = &mut config.agent;
    agent.collector_url = collector.to_string();
    agent.token = Secret::new(token);
    agent.data_dir = Some(state.join("agent"));
    agent.host = "cloned-node".to_string();
    agent.metrics_listen = String::new();
    agent.host_metrics_interval_s = 0;
    agent.heartbeat_interval_s = 3600;
    agent.batch.timeout_ms = 50;
    agent.retry.initial_backoff_ms = 10;
    agent.retry.max_backoff_ms = 200;
    agent.inputs = vec![InputConfig {
        paths: vec![file.display().to_string()],
        service: "Form".into(),
        region: "CN".into(),
        read_from: ReadFrom::Beginning,
        poll_interval_ms: 50,
        ..InputConfig::default()
    }];
    config.validate().unwrap();
    config
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_cloned_from_one_data_directory_both_deliver_everything() {
    let collector = start(|_| {}).await;
    let store = collector.tokens();
    let token_a = store.create("vm-a", None, now_ms()).await.unwrap();
    let token_b = store.create("vm-b", None, now_ms()).await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let (state_a, state_b) = (work.path().join("a"), work.path().join("b"));
    let (file_a, file_b) = (work.path().join("a.log"), work.path().join("b.log"));

    // The image: an agent that ran once (its id, its batch sequence) and stopped.
    std::fs::write(&file_a, "{\"message\":\"clone-marker before the image\"}\n").unwrap();
    let first = CancellationToken::new();
    let running = tokio::spawn(owl_agent::run(
        agent_config(&state_a, &file_a, &collector.url, &token_a),
        first.clone(),
    ));
    collector.records("clone-marker", 1).await;
    first.cancel();
    running.await.unwrap().unwrap();
    copy_dir(&state_a, &state_b);
    std::fs::write(&file_b, "").unwrap();

    // Both copies run on, each with its own token and its own log, from the same id and sequence.
    let stop = CancellationToken::new();
    let a = tokio::spawn(owl_agent::run(
        agent_config(&state_a, &file_a, &collector.url, &token_a),
        stop.clone(),
    ));
    let b = tokio::spawn(owl_agent::run(
        agent_config(&state_b, &file_b, &collector.url, &token_b),
        stop.clone(),
    ));
    let lines = 200;
    {
        let mut fa = std::fs::OpenOptions::new().append(true).open(&file_a).unwrap();
        let mut fb = std::fs::OpenOptions::new().append(true).open(&file_b).unwrap();
        for i in 0..lines {
            writeln!(fa, "{{\"message\":\"clone-marker a-{i}\"}}").unwrap();
            writeln!(fb, "{{\"message\":\"clone-marker b-{i}\"}}").unwrap();
            if i % 20 == 0 {
                fa.flush().unwrap();
                fb.flush().unwrap();
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        }
    }
    let records = collector.records("clone-marker", 1 + 2 * lines).await;
    stop.cancel();
    a.await.unwrap().unwrap();
    b.await.unwrap().unwrap();
    let mut messages: Vec<String> = records.iter().map(|r| r.message.clone()).collect();
    messages.sort();
    let before = messages.len();
    messages.dedup();
    assert_eq!(before, messages.len(), "a line stored twice");
    for side in ["a", "b"] {
        let got = messages
            .iter()
            .filter(|m| m.starts_with(&format!("clone-marker {side}-")))
            .count();
        assert_eq!(got, lines as usize, "lines of clone {side} delivered");
    }
    store.close().await;
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_batch_key_from_two_nodes_is_two_batches() {
    let collector = start(|_| {}).await;
    let store = collector.tokens();
    let token_a = store.create("twin-a", None, now_ms()).await.unwrap();
    let token_b = store.create("twin-b", None, now_ms()).await.unwrap();
    // Cloned state: the same agent id and the same next sequence number on two nodes.
    let send = |token: String, text: &'static str| {
        let url = collector.url.clone();
        async move {
            reqwest::Client::new()
                .post(format!("{url}/api/v1/ingest"))
                .bearer_auth(token)
                .header("x-owl-agent-id", "cloned-agent-id")
                .header("x-owl-batch-seq", "42")
                .body(format!("{{\"message\":\"twin-marker {text}\"}}\n"))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let a = send(token_a.clone(), "from a").await;
    let b = send(token_b, "from b").await;
    assert_eq!(
        (a["accepted"].clone(), b["accepted"].clone()),
        (json!(1), json!(1)),
        "{a} {b}"
    );
    // A real re-send of one node's batch is still recognised.
    let again = send(token_a, "from a").await;
    assert_eq!(again["duplicates"], 1, "{again}");
    let records = collector.records("twin-marker", 2).await;
    let mut messages: Vec<&str> = records.iter().map(|r| r.message.as_str()).collect();
    messages.sort();
    assert_eq!(messages, ["twin-marker from a", "twin-marker from b"]);
    store.close().await;
    collector.stop().await;
}
