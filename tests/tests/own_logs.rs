//! Owl's own logs, shipped to Owl: with `log.format = "json"` every line a request logs carries
//! the request's `trace_id` and `request_id` at the top level, so the agent tailing Owl's log file
//! makes a request findable by the `X-Trace-Id` and `X-Request-Id` its client was answered.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use owl_config::LogFormat;
use tracing_subscriber::util::SubscriberInitExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_found_in_owl_by_the_ids_it_was_answered() {
    let node = start().await;
    // Owl's lines go where the node's agent tails (`*.log`, JSON parser). Only the query API's
    // lines, so that shipping them logs nothing more.
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(node.logs.path().join("owl.log"))
        .unwrap();
    owl_logging::subscriber(
        tracing_subscriber::EnvFilter::new("owl_query_api=debug"),
        LogFormat::Json,
        Arc::new(file),
    )
    .try_init()
    .unwrap();

    let http = reqwest::Client::new();
    let _ = admin_token(&http, &node).await;
    // A refused request: the query API logs why, inside the request's span.
    let trace_id = format!("CN-{}-0badf00d", chrono::Utc::now().timestamp_millis());
    let response = http
        .get(format!("{}/api/v1/logs/query", node.query))
        .header("X-Trace-Id", &trace_id)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["x-trace-id"], trace_id.as_str());
    let request_id = response.headers()["x-request-id"].to_str().unwrap().to_string();

    let index = owl_index::Index::open_reader(&node.data_dir.path().join("index")).unwrap();
    let by_trace = wait_for("Owl's own line in Owl", Duration::from_secs(30), || {
        let found = search_recent(
            &index,
            owl_index::LogFilter {
                trace_id: Some(trace_id.clone()),
                ..owl_index::LogFilter::default()
            },
        );
        async move { found }
    })
    .await;
    // The query API's refusal, with the request's ids, route, method and status as fields Owl
    // maps onto the record.
    let refused = by_trace
        .hits
        .iter()
        .find(|r| r.http.as_ref().and_then(|h| h.status_code) == Some(401))
        .unwrap_or_else(|| panic!("no refusal among {:?}", by_trace.hits));
    assert_eq!(refused.trace_id(), Some(trace_id.as_str()));
    assert_eq!(refused.level, owl_model::Level::Debug);
    assert_eq!(refused.message, "request refused");
    let http = refused.http.as_ref().unwrap();
    assert_eq!(http.request_id.as_deref(), Some(request_id.as_str()));
    assert_eq!(http.method.as_deref(), Some("GET"));
    let extra = refused.extra.as_ref().unwrap();
    assert_eq!(extra["route"], "/api/v1/logs/query");

    let by_request = search_recent(
        &index,
        owl_index::LogFilter {
            request_id: Some(request_id.clone()),
            ..owl_index::LogFilter::default()
        },
    )
    .expect("the same line, by the request id");
    assert!(by_request.hits.iter().any(|r| r.id == refused.id));

    node.stop().await;
}
