//! Measures how long a problem takes to reach ops: from the collector acknowledging the record that
//! crosses a threshold to the Slack webhook receiving the notice.
//!
//! A collector (`owl_collector::run_with_hooks`) feeds an alert engine on SQLite; a webhook sink on
//! 127.0.0.1 stamps the moment each notice arrives. Each round posts one slow request on a new
//! path (a new incident), takes the time of the `200`, and waits for the notice. Optionally other
//! HTTP records are ingested in the background meanwhile.
//!
//! ```text
//! cargo run -p owl-alerts --release --example alert_latency -- [rounds] [background records/s]
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;
use owl_alerts::{AlertEngine, AlertStore, EngineOptions};
use owl_collector::IngestObserver;
use owl_model::{Heartbeat, Http, IngestItem, LogRecord, MetricSample, Service};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "latency-bench-agent-token-0123456789";

struct EngineObserver(AlertEngine);

impl IngestObserver for EngineObserver {
    fn on_stored(&self, records: &[LogRecord], samples: &[MetricSample], _heartbeats: &[Heartbeat]) {
        self.0.observe(records, samples);
    }
}

fn record(path: &str, duration_ms: f64) -> LogRecord {
    LogRecord {
        id: LogRecord::new_id(),
        timestamp: chrono::Utc::now(),
        message: "request".into(),
        http: Some(Http {
            method: Some("POST".into()),
            url: Some(path.into()),
            status_code: Some(200),
            duration_ms: Some(duration_ms),
            ..Http::default()
        }),
        service: Service {
            name: "Form".into(),
            ..Service::default()
        },
        ..LogRecord::default()
    }
}

fn ndjson(records: &[LogRecord]) -> Vec<u8> {
    let mut body = Vec::new();
    for record in records {
        body.extend(IngestItem::Log(Box::new(record.clone())).to_line());
        body.push(b'\n');
    }
    body
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args().collect();
    let rounds: usize = args.get(1).map_or(Ok(200), |a| a.parse())?;
    let background_rps: u64 = args.get(2).map_or(Ok(0), |a| a.parse())?;

    // The webhook: stamps each arrival.
    let (arrivals, mut arrived) = mpsc::unbounded_channel::<Instant>();
    let sink = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sink_url = format!("http://{}/hook", sink.local_addr()?);
    let app = Router::new().route(
        "/hook",
        post(move || {
            let arrivals = arrivals.clone();
            async move {
                let _ = arrivals.send(Instant::now());
                "ok"
            }
        }),
    );
    tokio::spawn(async move { axum::serve(sink, app).await });

    let dir = tempfile::tempdir()?;
    let mut config = owl_config::Config {
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    config.collector.agent_tokens = vec![owl_config::Secret::new(TOKEN)];
    config.alerts.ip_anomaly.enabled = false;
    config.alerts.error_rate.enabled = false;
    config.notifications.slack.enabled = true;
    config.notifications.slack.webhook_url = owl_config::Secret::new(sink_url);
    let db = owl_sql::open(&config.database_url(), 4).await?;
    let store = AlertStore::new(db, Arc::new(owl_alerts::SecretCipher::random()));
    let stop = CancellationToken::new();
    let (engine, engine_task) =
        AlertEngine::start(&config, store, EngineOptions::default(), stop.clone()).await?;
    let index = owl_index::Index::open(&config.index_dir(), Default::default())?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let ingest_url = format!("http://{}/api/v1/ingest", listener.local_addr()?);
    let observer: Arc<dyn IngestObserver> = Arc::new(EngineObserver(engine));
    let collector = tokio::spawn(owl_collector::run_with_hooks(
        config.clone(),
        index,
        listener,
        stop.clone(),
        Arc::new(owl_collector::AdmitAll),
        Some(observer),
    ));
    let http = reqwest::Client::new();
    let post = |body: Vec<u8>| {
        http.post(&ingest_url)
            .bearer_auth(TOKEN)
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
    };
    // Wait for recovery, then warm up (first SQLite writes, connections).
    let deadline = Instant::now() + Duration::from_secs(30);
    while post(ndjson(&[record("/warmup", 1.0)])).await.is_err() {
        anyhow::ensure!(Instant::now() < deadline, "collector did not come up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let background = (background_rps > 0).then(|| {
        let http = http.clone();
        let url = ingest_url.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            const BATCH: u64 = 500;
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 * BATCH / background_rps));
            let mut sent = 0u64;
            while !stop.is_cancelled() {
                tick.tick().await;
                let batch: Vec<LogRecord> = (0..BATCH)
                    .map(|i| record(&format!("/api/v1/items/{i}"), 12.0))
                    .collect();
                if http
                    .post(&url)
                    .bearer_auth(TOKEN)
                    .body(ndjson(&batch))
                    .send()
                    .await
                    .is_ok()
                {
                    sent += BATCH;
                }
            }
            sent
        })
    });

    let mut latencies = Vec::with_capacity(rounds);
    let started = Instant::now();
    for round in 0..rounds {
        let response = post(ndjson(&[record(&format!("/api/v1/slow/{round}"), 5234.0)])).await?;
        let acknowledged = Instant::now();
        anyhow::ensure!(response.status() == 200, "ingest answered {}", response.status());
        let received = tokio::time::timeout(Duration::from_secs(10), arrived.recv())
            .await?
            .ok_or_else(|| anyhow::anyhow!("sink closed"))?;
        latencies.push(received.saturating_duration_since(acknowledged));
    }
    let elapsed = started.elapsed();
    stop.cancel();
    let background_sent = match background {
        Some(task) => task.await?,
        None => 0,
    };
    collector.await??;
    engine_task.await?;

    latencies.sort();
    println!(
        "ack -> webhook over {rounds} alerts: p50 {:?}, p90 {:?}, p99 {:?}, max {:?} (background ingest: {} records/s)",
        percentile(&latencies, 50.0),
        percentile(&latencies, 90.0),
        percentile(&latencies, 99.0),
        latencies[latencies.len() - 1],
        (background_sent as f64 / elapsed.as_secs_f64()) as u64,
    );
    Ok(())
}
