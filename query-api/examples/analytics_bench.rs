//! Serves the query API over the demo CRM data, next to a minimal axum handler, for a load tool
//! on 127.0.0.1 (see the `wrk` lines it prints). Everything lives in a temporary directory;
//! stop with Ctrl-C.
//!
//! ```text
//! cargo run --release -p owl-query-api --example analytics_bench
//! wrk -t1 -c32 -d10s http://$HELLO/                                          # minimal axum handler
//! wrk -t1 -c32 -d10s -H "Authorization: Bearer $TOKEN" "$API/...orders/summary?start_date=...&end_date=..."  # cache hit
//! wrk -t1 -c32 -d10s -H "Authorization: Bearer $TOKEN" -s query-api/examples/analytics_bench_miss.lua $API  # misses
//! ```
//!
//! `analytics_bench_miss.lua` asks every request for a new date range, so each one is a miss
//! (computed from SQLite, then stored).

use axum::Router;
use axum::routing::get;
use owl_config::{Config, Secret};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    config.auth.admin_password = Secret::new("Bench12345");
    let report = owl_query_api::crm::load_demo_data(&config).await?;
    let index = owl_index::Index::open(&config.index_dir(), Default::default())?;
    let (router, state) = owl_query_api::app_with(config, index, Default::default()).await?;
    let (_, tokens) = state.auth.login("admin", "Bench12345", "127.0.0.1").await?;

    let shutdown = CancellationToken::new();
    let api = TcpListener::bind("127.0.0.1:0").await?;
    let api_address = api.local_addr()?;
    tokio::spawn(owl_http::serve(api, router, shutdown.clone()));
    let hello = TcpListener::bind("127.0.0.1:0").await?;
    let hello_address = hello.local_addr()?;
    let minimal = Router::new().route("/", get(|| async { "hello" }));
    tokio::spawn(owl_http::serve(hello, minimal, shutdown.clone()));

    println!(
        "demo rows: {} customers, {} orders, {} service records",
        report.customers, report.orders, report.service_records
    );
    println!("TOKEN={}", tokens.access_token);
    println!("HELLO=http://{hello_address}/");
    println!("API=http://{api_address}");
    println!("wrk -t1 -c32 -d10s http://{hello_address}/");
    println!(
        "wrk -t1 -c32 -d10s -H \"Authorization: Bearer $TOKEN\" \"http://{api_address}/api/analytics-monitoring/analytics/orders/summary?start_date=2025-01-01&end_date=2025-12-31\""
    );
    println!(
        "wrk -t1 -c32 -d10s -H \"Authorization: Bearer $TOKEN\" -s query-api/examples/analytics_bench_miss.lua http://{api_address}"
    );
    println!("READY");
    tokio::signal::ctrl_c().await?;
    shutdown.cancel();
    Ok(())
}
