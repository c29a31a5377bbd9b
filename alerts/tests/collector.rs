//! The whole path: records and samples posted to a real collector (`run_with_hooks`), acknowledged,
//! seen by the engine through the collector's observer hook, and delivered to a webhook.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use owl_alerts::{AlertEngine, AlertType, EngineOptions};
use owl_collector::IngestObserver;
use owl_model::{DiskUsage, Heartbeat, IngestItem, LoadAverage, LogRecord, MetricSample};
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "alerts-test-agent-token-0123456789";

/// What `owl up` wires: the collector's observer feeding the engine.
struct EngineObserver(AlertEngine);

impl IngestObserver for EngineObserver {
    fn on_stored(&self, records: &[LogRecord], samples: &[MetricSample], _heartbeats: &[Heartbeat]) {
        self.0.observe(records, samples);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_collector_acknowledges_reaches_the_webhook() {
    install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let mut slack = Sink::slack().await;
    let mut config = config_with(Some(&slack), None);
    config.data_dir = dir.path().to_path_buf();
    config.collector.agent_tokens = vec![owl_config::Secret::new(TOKEN)];
    config.collector.commit_interval_ms = 200;
    let store = sqlite_store(dir.path()).await;
    let stop = CancellationToken::new();
    let options = EngineOptions {
        notifier: fast_notifier(),
        ..EngineOptions::default()
    };
    let (engine, engine_task) = AlertEngine::start(&config, store.clone(), options, stop.clone())
        .await
        .unwrap();

    let index = owl_index::Index::open(&config.index_dir(), Default::default()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/api/v1/ingest", listener.local_addr().unwrap());
    let observer: Arc<dyn IngestObserver> = Arc::new(EngineObserver(engine.clone()));
    let collector = tokio::spawn(owl_collector::run_with_hooks(
        config.clone(),
        index,
        listener,
        stop.clone(),
        Arc::new(owl_collector::AdmitAll),
        Some(observer),
    ));

    let now = chrono::Utc::now();
    let slow = request(
        now.timestamp_millis(),
        "Form",
        "POST",
        "/api/v1/forms/submit",
        5234.0,
        200,
    );
    let sample = MetricSample {
        host: "db-1".into(),
        timestamp: now,
        cpu_percent: 97.0,
        memory_percent: 20.0,
        disks: vec![DiskUsage {
            mount: "/".into(),
            total_bytes: 100,
            used_bytes: 10,
            percent: 10.0,
        }],
        load: LoadAverage::default(),
        region: None,
    };
    let mut body = Vec::new();
    for item in [IngestItem::Log(Box::new(slow)), IngestItem::Metric(sample)] {
        body.extend(item.to_line());
        body.push(b'\n');
    }
    let http = reqwest::Client::new();
    let deadline = Instant::now() + DEADLINE;
    let acknowledged = loop {
        // The collector recovers before it serves: retry until it answers.
        match http
            .post(&url)
            .bearer_auth(TOKEN)
            .header("content-type", "application/x-ndjson")
            .body(body.clone())
            .send()
            .await
        {
            Ok(response) => {
                assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
                break Instant::now();
            }
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(error) => panic!("collector unreachable: {error}"),
        }
    };
    let mut texts = vec![slack.next().await.body["text"].as_str().unwrap().to_string()];
    texts.push(slack.next().await.body["text"].as_str().unwrap().to_string());
    let latency = acknowledged.elapsed();
    texts.sort();
    assert!(
        texts[0].starts_with("*[WARNING] CPU使用率超过70% (db-1: 97%)*"),
        "{texts:?}"
    );
    assert!(
        texts[1].starts_with("*[WARNING] 慢请求告警: POST /api/v1/forms/submit 耗时 5234ms*"),
        "{texts:?}"
    );
    eprintln!("acknowledged -> both webhooks received: {latency:?}");

    let open = store.open_alerts().await.unwrap();
    let mut types: Vec<AlertType> = open.iter().map(|a| a.alert_type).collect();
    types.sort();
    assert_eq!(types, [AlertType::SlowRequest, AlertType::CpuHigh]);

    stop.cancel();
    collector.await.unwrap().unwrap();
    engine_task.await.unwrap();
}
