//! The real clients of the ecosystem against `owl up`: the OpenTelemetry Python SDK with its
//! OTLP/HTTP exporters, from the pinned virtual environment `scripts/install-python-clients.sh`
//! creates (CI runs it first).

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join(name)
}

/// Runs a client script to its end and returns the JSON line it printed.
async fn run(python: PathBuf, args: Vec<String>) -> Value {
    let output = tokio::task::spawn_blocking(move || Command::new(python).args(&args).output())
        .await
        .unwrap()
        .expect("run the client");
    assert!(
        output.status.success(),
        "client failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("client printed no JSON line ({e}): {stdout}"))
}

/// Runs a client script against the node's collector with its agent token and a marker.
async fn send(python: PathBuf, name: &str, node: &Node, marker: &str) -> Value {
    let args = vec![
        script(name).display().to_string(),
        node.collector.clone(),
        node.agent_token(),
        marker.to_string(),
    ];
    run(python, args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opentelemetry_sdk_logs_and_traces_make_one_waterfall() {
    let Some(python) = python() else { return };
    let node = start().await;
    let http = reqwest::Client::new();
    let token = admin_token(&http, &node).await;
    let marker = format!("otelsdk{}", chrono::Utc::now().timestamp_millis());
    let sent = send(python, "otlp_sdk.py", &node, &marker).await;
    let trace_id = sent["trace_id"].as_str().unwrap().to_string();
    let span_id = |name: &str| sent["spans"][name].as_str().unwrap().to_string();

    // Exported spans and logs are acknowledged once durable; the trace shows all three spans.
    let trace: Value = wait_for("the trace with its three spans", Duration::from_secs(30), || {
        let (http, url, token) = (
            &http,
            format!("{}/api/v1/logs/trace/{trace_id}", node.query),
            &token,
        );
        async move {
            let (status, body) = get_json(http, url, token).await;
            (status == 200 && body["data"]["spans"].as_array().map(Vec::len) == Some(3)).then_some(body)
        }
    })
    .await;
    let data = &trace["data"];
    assert_eq!(data["traceId"], trace_id.as_str());
    let spans = data["spans"].as_array().unwrap();
    let by_name = |name: &str| {
        spans
            .iter()
            .find(|s| s["operation"] == name)
            .unwrap_or_else(|| panic!("no span {name}: {data}"))
    };
    let root = by_name("POST /checkout");
    let stock = by_name("reserve stock");
    let charge = by_name("charge card");
    assert_eq!(root["spanId"], span_id("POST /checkout").as_str());
    assert_eq!(root["service"], "gateway");
    assert_eq!(root["region"], "CN");
    assert!(root["parentSpanId"].is_null(), "{root}");
    for (child, service) in [(stock, "orders"), (charge, "payments")] {
        assert_eq!(child["service"], service);
        assert_eq!(
            child["parentSpanId"],
            span_id("POST /checkout").as_str(),
            "{child}"
        );
    }
    assert!(stock["duration"].as_f64().unwrap() >= 30.0, "{stock}");
    assert!(charge["duration"].as_f64().unwrap() >= 20.0, "{charge}");
    assert!(
        root["duration"].as_f64().unwrap()
            >= stock["duration"].as_f64().unwrap() + charge["duration"].as_f64().unwrap(),
        "{data}"
    );
    assert_eq!(charge["status"], "ERROR");
    assert_eq!(stock["status"], "SUCCESS");
    // The exception event and both log records are in the timeline.
    let events: Vec<&str> = data["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert!(events.contains(&"payments charge card: exception"), "{events:?}");
    assert!(
        events
            .iter()
            .any(|e| e.contains(&format!("{marker} checkout started"))),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e.contains(&format!("{marker} payment failed"))),
        "{events:?}"
    );

    // The server span is a request: slow requests list it with its duration and status.
    let (status, slow) = get_json(
        &http,
        format!("{}/api/v1/logs/slow-requests?thresholdMs=40", node.query),
        &token,
    )
    .await;
    assert_eq!(status, 200, "{slow}");
    let request = slow["data"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["traceId"] == trace_id.as_str())
        .unwrap_or_else(|| panic!("the server span is not a slow request: {slow}"));
    assert_eq!(
        (&request["method"], &request["url"]),
        (&"POST".into(), &"/checkout".into()),
        "{request}"
    );
    assert_eq!(request["statusCode"], 500, "{request}");
    assert!(request["duration"].as_f64().unwrap() >= 50.0, "{request}");

    // The query API's detailed health shows what the collector's receivers took.
    let (status, health) = get_json(&http, format!("{}/health/detailed", node.query), &token).await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["data"]["receivers"], "up", "{health}");
    let receivers = &health["data"]["checks"]["receivers"];
    assert!(
        receivers["otlp_traces"]["records"].as_u64() >= Some(3),
        "{receivers}"
    );
    assert!(
        receivers["otlp_logs"]["records"].as_u64() >= Some(2),
        "{receivers}"
    );
    assert_eq!(receivers["loki"]["requests"], 0, "{receivers}");

    // A W3C id resolves however it is cased.
    let (status, upper) = get_json(
        &http,
        format!(
            "{}/api/v1/logs/trace/{}",
            node.query,
            trace_id.to_ascii_uppercase()
        ),
        &token,
    )
    .await;
    assert_eq!((status, &upper["data"]["spans"]), (200, &data["spans"]));

    // The log records are searchable with what the SDK sent: level, logger, exception, user.
    let (status, found) = get_json(
        &http,
        format!("{}/api/v1/logs/query?keyword={marker}&level=ERROR", node.query),
        &token,
    )
    .await;
    assert_eq!(status, 200, "{found}");
    let items = found["data"]["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{found}");
    let failed = &items[0];
    assert_eq!(failed["service"]["name"], "gateway", "{failed}");
    assert_eq!(
        failed["trace"]["span_id"],
        span_id("charge card").as_str(),
        "{failed}"
    );
    assert_eq!(failed["error"]["type"], "ValueError", "{failed}");
    assert!(
        failed["error"]["stack"]
            .as_str()
            .unwrap()
            .contains("card declined"),
        "{failed}"
    );
    node.stop().await;
}

/// The records of `GET /api/v1/logs/query` for a keyword and more parameters.
async fn query(http: &reqwest::Client, node: &Node, token: &str, params: &str) -> Value {
    let (status, body) = get_json(http, format!("{}/api/v1/logs/query?{params}", node.query), token).await;
    assert_eq!(status, 200, "{body}");
    body["data"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elasticsearch_py_bulk_helpers_store_each_document_once() {
    let Some(python) = python() else { return };
    let node = start().await;
    let http = reqwest::Client::new();
    let token = admin_token(&http, &node).await;
    let marker = format!("esbulk{}", chrono::Utc::now().timestamp_millis());
    let seen = send(python, "es_bulk.py", &node, &marker).await;
    // The client accepted the server and every item of both sends of the 100 documents.
    assert!(
        seen["version"].as_str().unwrap().starts_with('9')
            || seen["version"].as_str().unwrap().starts_with('8')
    );
    assert_eq!(seen["first"], serde_json::json!([100, 0]), "{seen}");
    assert_eq!(seen["again"], serde_json::json!([100, 0]), "{seen}");
    let streamed = seen["streamed"].as_array().unwrap();
    assert_eq!(streamed.len(), 51, "{seen}");
    assert!(
        streamed[..50]
            .iter()
            .all(|o| o["op"] == "create" && o["status"] == 201),
        "{seen}"
    );
    assert_eq!(
        streamed[50],
        serde_json::json!({"op": "update", "ok": false, "status": 400})
    );

    // Durable when answered; searchable within the second. The re-send stored nothing twice.
    let data = wait_for("the bulk documents", Duration::from_secs(20), || {
        let (http, node, token, marker) = (&http, &node, &token, &marker);
        async move {
            let data = query(http, node, token, &format!("keyword={marker}&limit=1")).await;
            (data["total"].as_u64() >= Some(150)).then_some(data)
        }
    })
    .await;
    assert_eq!(data["total"], 150, "{data}");
    let orders = query(
        &http,
        &node,
        &token,
        &format!("keyword={marker}&service=crm-api&limit=1"),
    )
    .await;
    assert_eq!(orders["total"], 100, "{orders}");
    let record = &orders["items"][0];
    assert_eq!(record["kind"], "http", "{record}");
    assert_eq!(record["http"]["method"], "POST");
    assert_eq!(record["http"]["url"], "/api/orders");
    assert_eq!(record["http"]["duration_ms"], 12.5);
    assert_eq!(record["name"], "orders.worker");
    assert_eq!(record["environment"], "prod");
    assert_eq!(record["extra"]["labels.batch"], "first");
    // A data stream's dataset names the service of a document that names none.
    let payments = query(
        &http,
        &node,
        &token,
        &format!("keyword={marker}&service=payments&limit=1"),
    )
    .await;
    assert_eq!(payments["total"], 50, "{payments}");
    assert_eq!(payments["items"][0]["level"], "WARN", "{payments}");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_logging_loki_handler_pushes_records() {
    let Some(python) = python() else { return };
    let node = start().await;
    let http = reqwest::Client::new();
    let token = admin_token(&http, &node).await;
    let marker = format!("lokipy{}", chrono::Utc::now().timestamp_millis());
    let sent = send(python, "loki_handler.py", &node, &marker).await;
    assert_eq!(sent["logged"], 3);
    let data = wait_for("the handler's records", Duration::from_secs(20), || {
        let (http, node, token, marker) = (&http, &node, &token, &marker);
        async move {
            let data = query(http, node, token, &format!("keyword={marker}")).await;
            (data["total"].as_u64() >= Some(3)).then_some(data)
        }
    })
    .await;
    assert_eq!(data["total"], 3, "{data}");
    let mut levels: Vec<&str> = data["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["level"].as_str().unwrap())
        .collect();
    levels.sort();
    assert_eq!(levels, ["ERROR", "INFO", "WARN"], "{data}");
    for record in data["items"].as_array().unwrap() {
        assert_eq!(record["service"]["name"], "billing", "{record}");
        assert_eq!(record["environment"], "staging", "{record}");
        assert_eq!(record["extra"]["logger"], "billing.invoices", "{record}");
    }
    node.stop().await;
}
