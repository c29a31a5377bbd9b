//! Figure 5: alert latency, from the collector's acknowledgement of a slow request record to the
//! Slack-style webhook arriving at a local sink.
//!
//! A collector (`owl_collector::run_with_hooks`) feeds an alert engine (`owl-alerts`) through an
//! [`IngestObserver`](owl_collector::IngestObserver), as `owl up` wires them; the engine runs the
//! SLOW_REQUEST rule (2000 ms) with a Slack webhook pointing at an axum sink on 127.0.0.1. Each
//! round posts one request record of 5000 ms on a path of its own (so every round opens a new
//! incident and sends a new notice) and waits for the webhook that names that path.
//!
//! `alert_engine_latency_*` measures the engine and notifier alone: from handing the record to
//! the engine (what the collector's indexing thread does) to the webhook.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::routing::post;
use owl_alerts::{AlertEngine, AlertStore, EngineOptions};
use owl_config::Secret;
use owl_index::Index;
use owl_model::{Heartbeat, LogRecord, MetricSample};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::Ctx;
use crate::client::{Conn, percentile_ms};
use crate::collector::{self, RunningCollector, post_batch};
use crate::report::{Better, Figure, Target};

/// Hands what the collector stored to the engine, as `owl up` does.
struct Observer(AlertEngine);

impl owl_collector::IngestObserver for Observer {
    fn on_stored(&self, records: &[LogRecord], samples: &[MetricSample], _heartbeats: &[Heartbeat]) {
        self.0.observe(records, samples);
    }
}

fn slow_request_line(path: &str, round: usize) -> String {
    let now = owl_model::format_timestamp(&chrono::Utc::now());
    format!(
        r#"{{"@timestamp":"{now}","level":"INFO","message":"POST {path} | 200 | 5000ms","http":{{"method":"POST","url":"{path}","status_code":200,"duration_ms":5000}},"client":{{"ip":"10.9.{}.{}"}},"service":{{"name":"Form","region":"CN"}}}}"#,
        round / 250,
        round % 250
    )
}

async fn webhook(
    rx: &mut mpsc::UnboundedReceiver<(Instant, Bytes)>,
    needle: &str,
    since: Instant,
) -> anyhow::Result<Duration> {
    let deadline = since + Duration::from_secs(30);
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let (arrived, body) = tokio::time::timeout(remaining, rx.recv())
            .await
            .with_context(|| format!("no webhook naming {needle} within 30 s"))?
            .context("the webhook sink stopped")?;
        // Paths are unique per round and one is never a prefix of another (`/r1/` vs `/r10/`).
        if memchr::memmem::find(&body, needle.as_bytes()).is_some() {
            return Ok(arrived - since);
        }
    }
}

/// Runs figure 5.
pub async fn figures(ctx: &Ctx) -> anyhow::Result<Vec<Figure>> {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Bytes)>();
    let app = Router::new().route(
        "/slack",
        post(move |body: Bytes| {
            let tx = tx.clone();
            async move {
                let _ = tx.send((Instant::now(), body));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sink_addr = listener.local_addr()?;
    let stop = CancellationToken::new();
    let server = tokio::spawn(owl_http::serve(listener, app, stop.clone()));

    let mut config = collector::config(&ctx.work.join("alerts"));
    std::fs::create_dir_all(&config.data_dir)?;
    config.alerts.slow_request.threshold_ms = 2000;
    config.notifications.slack.enabled = true;
    config.notifications.allowed_networks =
        owl_config::Networks::parse(&["127.0.0.0/8"]).expect("static networks");
    config.notifications.slack.webhook_url = Secret::new(format!("http://{sink_addr}/slack"));
    let db = owl_sql::open(&config.database_url(), 2)
        .await
        .context("while opening the alert store")?;
    let store = AlertStore::new(db, std::sync::Arc::new(owl_alerts::SecretCipher::random()));
    let shutdown = CancellationToken::new();
    let (engine, task): (AlertEngine, _) =
        AlertEngine::start(&config, store.clone(), EngineOptions::default(), shutdown.clone()).await?;
    let index = {
        let (root, settings) = (config.index_dir(), collector::index_settings(&config));
        tokio::task::spawn_blocking(move || Index::open(&root, settings)).await??
    };
    let running =
        RunningCollector::start_observed(config, index, Some(Arc::new(Observer(engine.clone())))).await?;

    let rounds = ctx.sizes.alert_rounds;
    ctx.progress(&format!(
        "alerts: {rounds} slow requests through the collector, then {rounds} handed to the engine"
    ));
    let result = async {
        let mut conn = Conn::connect(running.addr).await?;
        let mut end_to_end = Vec::with_capacity(rounds);
        for round in 0..rounds {
            let path = format!("/api/v1/bench/ingest/r{round}/slow");
            let mut line = slow_request_line(&path, round).into_bytes();
            line.push(b'\n');
            let body = Bytes::from(zstd::encode_all(&line[..], 1)?);
            post_batch(&mut conn, &body).await?;
            let acked = Instant::now();
            end_to_end.push(webhook(&mut rx, &path, acked).await?);
        }
        let mut engine_only = Vec::with_capacity(rounds);
        for round in 0..rounds {
            let path = format!("/api/v1/bench/engine/r{round}/slow");
            let record =
                LogRecord::from_json_slice(slow_request_line(&path, round).as_bytes(), chrono::Utc::now())
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            let handed = Instant::now();
            engine.observe_records(std::slice::from_ref(&record));
            engine_only.push(webhook(&mut rx, &path, handed).await?);
        }
        Ok::<_, anyhow::Error>((end_to_end, engine_only))
    }
    .await;
    running.stop().await?;
    shutdown.cancel();
    let _ = task.await;
    store.close().await;
    stop.cancel();
    let _ = server.await;
    let (end_to_end, engine_only) = result?;
    let ms = |values: &[Duration], p| percentile_ms(values, p).context("no alert measured");
    let note = format!(
        "{rounds} alerts, SLOW_REQUEST rule (2000 ms), Slack webhook to 127.0.0.1; from the ingest acknowledgement"
    );
    let engine_note =
        format!("{rounds} alerts; from handing the record to the engine (no HTTP, WAL or indexing thread)");
    Ok(vec![
        Figure::owl(
            "alert_latency_p50_ms",
            "ms",
            Better::Lower,
            ms(&end_to_end, 50.0)?,
        )
        .note(note.clone()),
        Figure::owl(
            "alert_latency_p99_ms",
            "ms",
            Better::Lower,
            ms(&end_to_end, 99.0)?,
        )
        .target(Target::OwlAtMost(2000.0))
        .note(note),
        Figure::owl(
            "alert_engine_latency_p50_ms",
            "ms",
            Better::Lower,
            ms(&engine_only, 50.0)?,
        )
        .note(engine_note.clone()),
        Figure::owl(
            "alert_engine_latency_p99_ms",
            "ms",
            Better::Lower,
            ms(&engine_only, 99.0)?,
        )
        .note(engine_note),
    ])
}
