//! Figure 6: requests per second of a cached CRM analytics endpoint and of a log query, beside a
//! minimal axum handler, with the same keep-alive load client on 127.0.0.1.

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use crate::Ctx;
use crate::client::load;
use crate::collector::post_batch;
use crate::data::Generator;
use crate::report::{Better, Figure, Target};
use crate::stack::Stack;

const ANALYTICS: &str = "/api/analytics-monitoring/analytics/customers/summary";
const BASELINE: &str = "minimal axum handler";

/// Runs figure 6.
pub async fn figures(ctx: &Ctx) -> anyhow::Result<Vec<Figure>> {
    let connections = ctx.sizes.api_connections;
    let duration = Duration::from_secs_f64(ctx.sizes.api_s);
    ctx.progress(&format!(
        "api: {connections} connections, {:.0} s per endpoint",
        duration.as_secs_f64()
    ));

    // The baseline: the smallest axum JSON handler, served the way Owl serves (owl_http::serve).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let minimal_addr = listener.local_addr()?;
    let stop = CancellationToken::new();
    let app = Router::new().route(
        "/hello",
        get(|| async { axum::Json(serde_json::json!({"code": 200, "message": "ok", "data": {}})) }),
    );
    let server = tokio::spawn(owl_http::serve(listener, app, stop.clone()));
    let minimal = load(minimal_addr, "/hello", &[], connections, duration).await?;

    let stack = Stack::start(&ctx.work.join("api")).await?;
    let result = async {
        // Without demo rows the endpoint still answers (zeros) through the same cache.
        let demo = owl_query_api::crm::load_demo_data(&stack.config)
            .await
            .err()
            .map(|e| {
                format!("the CRM demo data did not load ({e}); the endpoint answered over empty CRM tables")
            });
        // Some records for the log query to find.
        let mut generator = Generator::new(41, chrono::Utc::now() - chrono::Duration::minutes(10), 5_000);
        let mut conn = crate::client::Conn::connect(stack.collector.addr).await?;
        for _ in 0..ctx.sizes.api_log_batches {
            let mut lines = Vec::new();
            generator.records_into(1000, &mut lines);
            post_batch(&mut conn, &Bytes::from(zstd::encode_all(&lines[..], 1)?)).await?;
        }
        let auth = [("authorization", stack.authorization.as_str())];
        let analytics = load(stack.query_addr, ANALYTICS, &auth, connections, duration).await?;
        let since = owl_model::format_timestamp(&(chrono::Utc::now() - chrono::Duration::minutes(30)));
        let log_path = format!("/api/v1/logs/query?service=Form&level=ERROR&startTime={since}&limit=50");
        let log_query = match load(stack.query_addr, &log_path, &auth, connections, duration).await {
            Ok(rps) => Ok(rps),
            Err(error) if error.to_string().contains("answered 404") => {
                Err("the query API has no /api/v1/logs/query route yet".to_string())
            }
            Err(error) => Err(format!("failed: {error:#}")),
        };
        Ok::<_, anyhow::Error>((analytics, log_query, demo))
    }
    .await;
    stack.stop().await?;
    stop.cancel();
    let _ = server.await;
    let (analytics, log_query, demo) = result?;
    let mut note = format!("{connections} keep-alive connections on 127.0.0.1, client in the same process");
    if let Some(demo) = demo {
        note = format!("{note}; {demo}");
    }
    let mut log_figure = Figure::compared(
        "api_log_query_rps",
        "requests/s",
        Better::Higher,
        log_query.as_ref().ok().copied(),
        BASELINE,
        Some(minimal),
    );
    if let Err(reason) = &log_query {
        log_figure.failed = reason.starts_with("failed");
        log_figure = log_figure.baseline_skipped(reason.clone());
    }
    Ok(vec![
        Figure::compared(
            "api_cached_analytics_rps",
            "requests/s",
            Better::Higher,
            Some(analytics),
            BASELINE,
            Some(minimal),
        )
        .target(Target::RatioAtLeast(0.5))
        .note(note),
        log_figure,
    ])
}
