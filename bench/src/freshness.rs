//! Figure 3: under a steady ingest load, the time from the acknowledgement of a batch to one of
//! its records (a unique marker) being visible through the query API.
//!
//! A writer posts a batch every 50 ms (the target rate spread evenly) through the collector of an
//! `owl up`-style process; every fourth batch carries a marker record, and once its batch is
//! acknowledged a prober asks `GET /api/v1/logs/query?keyword=<marker>` every 2 ms until the
//! marker is found. When the query API has no log query route, the prober asks the shared index's
//! search API instead, and the figure says so.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use owl_index::{Index, LogFilter, SearchRequest};
use tokio::sync::Mutex;

use crate::Ctx;
use crate::client::{Conn, find_key, percentile_ms};
use crate::collector::post_batch;
use crate::data::Generator;
use crate::report::{Better, Figure, Target};
use crate::stack::Stack;

const TICK: Duration = Duration::from_millis(50);
const MARKER_EVERY: u64 = 4;

/// How a probe looks for the marker.
#[derive(Clone)]
enum Probe {
    Http {
        addr: std::net::SocketAddr,
        authorization: String,
    },
    Index(Index),
}

impl Probe {
    async fn visible(&self, conn: &mut Option<Conn>, marker: &str, since: &str) -> anyhow::Result<bool> {
        match self {
            Probe::Http { addr, authorization } => {
                if conn.is_none() {
                    *conn = Some(Conn::connect(*addr).await?);
                }
                let conn = conn.as_mut().expect("connected above");
                let path = format!("/api/v1/logs/query?keyword={marker}&startTime={since}&limit=1");
                let answer = conn.get(&path, &[("authorization", authorization)]).await?;
                anyhow::ensure!(
                    answer.status == 200,
                    "log query answered {}: {}",
                    answer.status,
                    String::from_utf8_lossy(&answer.body)
                );
                let value: serde_json::Value = serde_json::from_slice(&answer.body)?;
                Ok(find_key(&value, "total")
                    .and_then(serde_json::Value::as_u64)
                    .unwrap_or(0)
                    > 0)
            }
            Probe::Index(index) => {
                let index = index.clone();
                let request = SearchRequest {
                    filter: LogFilter {
                        keyword: Some(marker.to_string()),
                        ..LogFilter::default()
                    },
                    limit: 1,
                    ..SearchRequest::default()
                };
                Ok(tokio::task::spawn_blocking(move || index.search(&request))
                    .await??
                    .total
                    > 0)
            }
        }
    }
}

/// Whether the query API serves the log query endpoint.
async fn http_probe_available(stack: &Stack) -> anyhow::Result<bool> {
    let mut conn = Conn::connect(stack.query_addr).await?;
    let since = owl_model::format_timestamp(&(chrono::Utc::now() - chrono::Duration::minutes(5)));
    let answer = conn
        .get(
            &format!("/api/v1/logs/query?keyword=nothing-here&startTime={since}&limit=1"),
            &[("authorization", &stack.authorization)],
        )
        .await?;
    Ok(answer.status == 200)
}

/// Runs figure 3.
pub async fn figures(ctx: &Ctx) -> anyhow::Result<Vec<Figure>> {
    let stack = Stack::start(&ctx.work.join("freshness")).await?;
    let result = measure(ctx, &stack).await;
    stack.stop().await?;
    result
}

async fn measure(ctx: &Ctx, stack: &Stack) -> anyhow::Result<Vec<Figure>> {
    let rate = ctx.sizes.freshness_rate;
    let per_tick = (rate * TICK.as_millis() as u64 / 1000).max(1);
    let duration = Duration::from_secs_f64(ctx.sizes.freshness_s);
    let (probe, via) = if http_probe_available(stack).await? {
        (
            Probe::Http {
                addr: stack.query_addr,
                authorization: stack.authorization.clone(),
            },
            "GET /api/v1/logs/query?keyword=",
        )
    } else {
        (
            Probe::Index(stack.collector.index.clone()),
            "the index search API (the query API has no /api/v1/logs/query route yet)",
        )
    };
    ctx.progress(&format!(
        "freshness: {rate} records/s for {:.0} s, visibility through {via}",
        duration.as_secs_f64()
    ));
    let since = owl_model::format_timestamp(&(chrono::Utc::now() - chrono::Duration::minutes(5)));
    let generator = Arc::new(std::sync::Mutex::new(Generator::new(
        31,
        chrono::Utc::now(),
        1_000_000 / rate.max(1) as i64,
    )));
    let pool: Arc<Mutex<Vec<Conn>>> = Arc::new(Mutex::new(Vec::new()));
    let acked = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(std::sync::Mutex::new(Vec::<Duration>::new()));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut tasks = tokio::task::JoinSet::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < duration {
        tick.tick().await;
        n += 1;
        let marker = (n % MARKER_EVERY == 0).then(|| format!("fmk{}x{n}", std::process::id()));
        let body = {
            let mut generator = generator.lock().unwrap_or_else(|p| p.into_inner());
            let mut lines = Vec::with_capacity(per_tick as usize * 450);
            let mut count = 0;
            while count < per_tick {
                count += generator.request(&mut lines);
            }
            if let Some(marker) = &marker {
                let now = owl_model::format_timestamp(&chrono::Utc::now());
                lines.extend_from_slice(
                    format!(r#"{{"@timestamp":"{now}","level":"INFO","message":"freshness marker {marker}","service":{{"name":"bench"}}}}"#).as_bytes(),
                );
                lines.push(b'\n');
                count += 1;
            }
            (
                Bytes::from(zstd::encode_all(&lines[..], 1).expect("compressing in memory cannot fail")),
                count,
            )
        };
        let (pool, acked, latencies, failures, probe, since, addr) = (
            pool.clone(),
            acked.clone(),
            latencies.clone(),
            failures.clone(),
            probe.clone(),
            since.clone(),
            stack.collector.addr,
        );
        tasks.spawn(async move {
            let result = async {
                let conn = pool.lock().await.pop();
                let mut conn = match conn {
                    Some(conn) => conn,
                    None => Conn::connect(addr).await?,
                };
                post_batch(&mut conn, &body.0).await?;
                let ack = Instant::now();
                acked.fetch_add(body.1, Ordering::Relaxed);
                pool.lock().await.push(conn);
                if let Some(marker) = marker {
                    let mut probe_conn = None;
                    let deadline = ack + Duration::from_secs(30);
                    loop {
                        if probe.visible(&mut probe_conn, &marker, &since).await? {
                            latencies
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .push(ack.elapsed());
                            break;
                        }
                        anyhow::ensure!(
                            Instant::now() < deadline,
                            "marker {marker} not visible after 30 s"
                        );
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }
                Ok::<_, anyhow::Error>(())
            }
            .await;
            if let Err(error) = result {
                failures
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(format!("{error:#}"));
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = started.elapsed().as_secs_f64();
    if let Some(failure) = failures.lock().unwrap_or_else(|p| p.into_inner()).first() {
        anyhow::bail!("freshness load failed: {failure}");
    }
    let latencies = latencies.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let achieved = acked.load(Ordering::Relaxed) as f64 / elapsed;
    let p50 = percentile_ms(&latencies, 50.0).context("no marker was measured")?;
    let p99 = percentile_ms(&latencies, 99.0).context("no marker was measured")?;
    let note = format!(
        "{} markers under {achieved:.0} records/s (target rate {rate}); visibility through {via}",
        latencies.len()
    );
    Ok(vec![
        Figure::owl("freshness_p50_ms", "ms", Better::Lower, p50).note(note.clone()),
        Figure::owl("freshness_p99_ms", "ms", Better::Lower, p99)
            .target(Target::OwlAtMost(1000.0))
            .note(note),
        Figure::owl(
            "freshness_load_records_per_s",
            "records/s",
            Better::Higher,
            achieved,
        )
        .target(Target::OwlAtLeast(rate as f64 * 0.95)),
    ])
}
