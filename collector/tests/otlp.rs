//! OTLP/HTTP (`/v1/logs`, `/v1/traces`) against a real collector on 127.0.0.1:0, with messages
//! built from opentelemetry-proto's types as an SDK exporter sends them.

mod common;

use common::*;
use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
use owl_index::LogFilter;
use owl_model::{Kind, Level};
use prost::Message;

fn text(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..KeyValue::default()
    }
}

fn int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        ..KeyValue::default()
    }
}

fn resource(service: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![
            text("service.name", service),
            text("service.instance.id", &format!("{service}-1")),
            text("deployment.environment.name", "prod"),
            text("cloud.region", "CN"),
            text("host.name", "node-7"),
            text("team", "payments"),
        ],
        ..Resource::default()
    })
}

fn now_nanos() -> u64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap() as u64
}

const TRACE: [u8; 16] = [
    0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36,
];

fn logs_request(marker: &str) -> ExportLogsServiceRequest {
    let at = now_nanos();
    let record = |n: u64, severity: i32, attributes: Vec<KeyValue>| LogRecord {
        time_unix_nano: at + n,
        severity_number: severity,
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(format!("{marker} log {n}"))),
        }),
        attributes,
        trace_id: TRACE.to_vec(),
        span_id: vec![0, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7],
        ..LogRecord::default()
    };
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource("checkout"),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "checkout.payments".into(),
                    ..InstrumentationScope::default()
                }),
                log_records: vec![
                    record(
                        0,
                        9,
                        vec![
                            text("user.id", "u-42"),
                            text("order", "o-1"),
                            text("db.password", "hunter2"),
                        ],
                    ),
                    record(
                        1,
                        17,
                        vec![
                            text("exception.type", "ValueError"),
                            text("exception.message", "card declined"),
                            text("exception.stacktrace", "Traceback ..."),
                            text("code.function.name", "charge"),
                            int("code.line.number", 88),
                        ],
                    ),
                    record(
                        2,
                        13,
                        vec![
                            text("http.request.method", "POST"),
                            text("url.path", "/api/pay"),
                            int("http.response.status_code", 402),
                            text("client.address", "203.0.113.9"),
                        ],
                    ),
                ],
                ..ScopeLogs::default()
            }],
            ..ResourceLogs::default()
        }],
    }
}

async fn post(
    collector: &TestCollector,
    path: &str,
    content_type: &str,
    body: &[u8],
    extra: &[(&str, &str)],
) -> Response {
    let auth = format!("Bearer {TOKEN}");
    let mut headers = vec![("Authorization", auth.as_str()), ("Content-Type", content_type)];
    headers.extend_from_slice(extra);
    request(collector.addr, "POST", path, &headers, body)
        .await
        .expect("request")
}

fn search(collector: &TestCollector, marker: &str) -> Vec<owl_model::LogRecord> {
    let mut hits = collector
        .index
        .search(&owl_index::SearchRequest {
            filter: LogFilter {
                keyword: Some(marker.to_string()),
                ..LogFilter::default()
            },
            limit: 100,
            ..owl_index::SearchRequest::default()
        })
        .unwrap()
        .hits;
    hits.sort_by(|a, b| a.message.cmp(&b.message));
    hits
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_logs_are_stored_mapped_and_a_resent_export_once() {
    let (_dir, data) = data_dir();
    let collector = TestCollector::start(config(&data)).await;
    let body = logs_request("otlpprotomark").encode_to_vec();
    let answer = post(&collector, "/v1/logs", "application/x-protobuf", &body, &[]).await;
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
    assert_eq!(answer.header("content-type"), Some("application/x-protobuf"));
    let decoded = ExportLogsServiceResponse::decode(&answer.body[..]).unwrap();
    assert_eq!(decoded.partial_success, None);
    wait_count(&collector.index, "otlpprotomark", 3).await;

    let hits = search(&collector, "otlpprotomark");
    let [info, error, http] = &hits[..] else {
        panic!("{hits:?}")
    };
    for record in &hits {
        assert_eq!(record.service.name, "checkout");
        assert_eq!(record.service.instance.as_deref(), Some("checkout-1"));
        assert_eq!(record.service.region.as_deref(), Some("CN"));
        assert_eq!(record.environment.as_deref(), Some("prod"));
        assert_eq!(record.host.as_deref(), Some("node-7"));
        assert_eq!(record.logger.as_deref(), Some("checkout.payments"));
        let trace = record.trace.as_ref().unwrap();
        assert_eq!(trace.id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(trace.span_id.as_deref(), Some("00f067aa0ba902b7"));
        assert_eq!(record.extra.as_ref().unwrap()["team"], "payments");
    }
    assert_eq!((info.level, info.kind), (Level::Info, Kind::Application));
    assert_eq!(info.user.as_ref().unwrap().id.as_deref(), Some("u-42"));
    assert_eq!(info.extra.as_ref().unwrap()["order"], "o-1");
    // Masked before storage, as native ingest is.
    assert_eq!(info.extra.as_ref().unwrap()["db.password"], owl_model::REDACTED);
    assert_eq!((error.level, error.kind), (Level::Error, Kind::Error));
    let e = error.error.as_ref().unwrap();
    assert_eq!(
        (e.error_type.as_deref(), e.message.as_deref(), e.stack.as_deref()),
        (Some("ValueError"), Some("card declined"), Some("Traceback ..."))
    );
    assert_eq!(
        (error.function.as_deref(), error.line),
        (Some("charge"), Some(88))
    );
    assert_eq!((http.level, http.kind), (Level::Warn, Kind::Http));
    let h = http.http.as_ref().unwrap();
    assert_eq!(
        (h.method.as_deref(), h.url.as_deref(), h.status_code),
        (Some("POST"), Some("/api/pay"), Some(402))
    );
    assert_eq!(http.client.as_ref().unwrap().ip.as_deref(), Some("203.0.113.9"));

    // Records equal in every byte are one, unless `log.record.uid` tells them apart.
    let mut twins = logs_request("otlptwinmark");
    let first = twins.resource_logs[0].scope_logs[0].log_records[0].clone();
    twins.resource_logs[0].scope_logs[0].log_records = vec![first.clone(), first.clone(), first.clone()];
    for (i, record) in twins.resource_logs[0].scope_logs[0]
        .log_records
        .iter_mut()
        .enumerate()
        .skip(1)
    {
        record
            .attributes
            .push(text("log.record.uid", &format!("uid-{i}")));
    }
    let answer = post(
        &collector,
        "/v1/logs",
        "application/x-protobuf",
        &twins.encode_to_vec(),
        &[],
    )
    .await;
    assert_eq!(answer.status, 200);
    wait_count(&collector.index, "otlptwinmark", 3).await;

    // The SDK retries an export it got no answer for: the same bytes store nothing new.
    let again = post(&collector, "/v1/logs", "application/x-protobuf", &body, &[]).await;
    assert_eq!(again.status, 200);
    let marker = post(
        &collector,
        "/v1/logs",
        "application/x-protobuf",
        &logs_request("otlpafterresend").encode_to_vec(),
        &[],
    )
    .await;
    assert_eq!(marker.status, 200);
    wait_count(&collector.index, "otlpafterresend", 3).await;
    assert_eq!(count_marker(&collector.index, "otlpprotomark"), 3);

    // The collector's detailed health counts per receiver, for a token holder only.
    let anonymous = get(collector.addr, "/health/detailed").await.unwrap();
    assert_eq!(anonymous.status, 401);
    let auth = format!("Bearer {TOKEN}");
    let health = request(
        collector.addr,
        "GET",
        "/health/detailed",
        &[("Authorization", &auth)],
        b"",
    )
    .await
    .unwrap()
    .json();
    let otlp_logs = health["receivers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["protocol"] == "otlp_logs")
        .unwrap()
        .clone();
    assert_eq!(
        (otlp_logs["requests"].as_u64(), otlp_logs["records"].as_u64()),
        (Some(4), Some(12)),
        "{health}"
    );
    let metrics = request(
        collector.addr,
        "GET",
        "/metrics",
        &[("Authorization", &auth)],
        b"",
    )
    .await
    .unwrap();
    assert_eq!(metrics.status, 200);
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.lines()
            .any(|l| l.starts_with("owl_collector_ingest_requests_total{")
                && l.contains("protocol=\"otlp_logs\"")),
        "{text}"
    );
    assert_eq!(get(collector.addr, "/metrics").await.unwrap().status, 401);
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_with_gzip_and_string_int64_are_stored_and_answered_in_json() {
    let (_dir, data) = data_dir();
    let collector = TestCollector::start(config(&data)).await;
    let at = now_nanos();
    // As the OTLP/JSON examples write it: hex ids, int64 as strings, an unknown field.
    let body = serde_json::json!({
        "resourceLogs": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "billing"}}]},
            "scopeLogs": [{
                "scope": {"name": "billing.jobs"},
                "logRecords": [{
                    "timeUnixNano": at.to_string(),
                    "severityNumber": 13,
                    "severityText": "WARN",
                    "body": {"stringValue": "otlpjsonmark invoice late"},
                    "attributes": [{"key": "http.response.status_code", "value": {"intValue": "503"}}],
                    "traceId": "5b8efff798038103d269b633813fc60c",
                    "spanId": "eee19b7ec3c1b174",
                    "someFutureField": true
                }]
            }]
        }]
    });
    let answer = post(
        &collector,
        "/v1/logs",
        "application/json",
        &gzip(body.to_string().as_bytes()),
        &[("Content-Encoding", "gzip")],
    )
    .await;
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
    assert_eq!(answer.header("content-type"), Some("application/json"));
    assert_eq!(answer.json(), serde_json::json!({}));
    wait_count(&collector.index, "otlpjsonmark", 1).await;
    let hits = search(&collector, "otlpjsonmark");
    let record = &hits[0];
    assert_eq!(record.service.name, "billing");
    assert_eq!(record.level, Level::Warn);
    assert!(
        record.has_error(),
        "a 503 counts as an error whatever the severity"
    );
    assert_eq!(record.status_code(), Some(503));
    assert_eq!(record.trace_id(), Some("5b8efff798038103d269b633813fc60c"));
    assert_eq!(record.timestamp.timestamp_millis(), (at / 1_000_000) as i64);
    collector.stop().await;
}

fn span(
    name: &str,
    id: u8,
    parent: Option<u8>,
    kind: span::SpanKind,
    start_ms: u64,
    duration_ms: u64,
    attributes: Vec<KeyValue>,
) -> Span {
    let base = now_nanos() / 1_000_000 * 1_000_000;
    Span {
        trace_id: TRACE.to_vec(),
        span_id: vec![0, 0, 0, 0, 0, 0, 0, id],
        parent_span_id: parent.map(|p| vec![0, 0, 0, 0, 0, 0, 0, p]).unwrap_or_default(),
        name: name.into(),
        kind: kind as i32,
        start_time_unix_nano: base + start_ms * 1_000_000,
        end_time_unix_nano: base + (start_ms + duration_ms) * 1_000_000,
        attributes,
        ..Span::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_become_records_with_their_facts_and_a_server_span_is_a_request() {
    let (_dir, data) = data_dir();
    let collector = TestCollector::start(config(&data)).await;
    let mut failing = span(
        "charge card",
        3,
        Some(1),
        span::SpanKind::Internal,
        20,
        30,
        vec![],
    );
    failing.status = Some(Status {
        code: 2,
        message: "gateway refused".into(),
    });
    failing.events = vec![span::Event {
        time_unix_nano: failing.start_time_unix_nano + 5_000_000,
        name: "exception".into(),
        attributes: vec![
            text("exception.type", "GatewayError"),
            text("exception.message", "refused by acquirer"),
        ],
        ..span::Event::default()
    }];
    let request = ExportTraceServiceRequest {
        resource_spans: vec![
            ResourceSpans {
                resource: resource("gateway"),
                scope_spans: vec![ScopeSpans {
                    spans: vec![span(
                        "POST /checkout",
                        1,
                        None,
                        span::SpanKind::Server,
                        0,
                        100,
                        vec![
                            text("http.request.method", "POST"),
                            text("url.path", "/checkout"),
                            int("http.response.status_code", 200),
                        ],
                    )],
                    ..ScopeSpans::default()
                }],
                ..ResourceSpans::default()
            },
            ResourceSpans {
                resource: resource("payments"),
                scope_spans: vec![ScopeSpans {
                    spans: vec![
                        failing,
                        span(
                            "GET",
                            4,
                            Some(3),
                            span::SpanKind::Client,
                            22,
                            10,
                            vec![
                                text("http.request.method", "GET"),
                                text("url.full", "https://acquirer.example/api"),
                            ],
                        ),
                    ],
                    ..ScopeSpans::default()
                }],
                ..ResourceSpans::default()
            },
        ],
    };
    let answer = post(
        &collector,
        "/v1/traces",
        "application/x-protobuf",
        &request.encode_to_vec(),
        &[],
    )
    .await;
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
    assert_eq!(
        ExportTraceServiceResponse::decode(&answer.body[..])
            .unwrap()
            .partial_success,
        None
    );

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut view = None;
    eventually(std::time::Duration::from_secs(20), || {
        view = collector
            .index
            .trace(trace_id)
            .unwrap()
            .filter(|v| v.spans.len() == 3);
        view.is_some()
    })
    .await
    .expect("three spans indexed");
    let view = view.unwrap();
    let by_name = |name: &str| {
        view.spans
            .iter()
            .zip(&view.records)
            .find(|(s, _)| s.operation == name)
            .unwrap()
    };
    let (server, server_record) = by_name("POST /checkout");
    assert!(server.recorded);
    assert_eq!(
        (server.duration_ms, server.parent_span_id.as_deref()),
        (100.0, None)
    );
    assert_eq!(server_record.kind, Kind::Http, "a server span is a request");
    assert_eq!(server_record.duration_ms(), Some(100.0));
    assert_eq!(server_record.service.name, "gateway");
    let (charge, charge_record) = by_name("charge card");
    assert_eq!(charge.parent_span_id.as_deref(), Some("0000000000000001"));
    assert_eq!(charge.status, owl_index::SpanStatus::Error);
    assert_eq!(charge.duration_ms, 30.0);
    assert_eq!(charge.events.len(), 1);
    assert_eq!(charge.events[0].name, "exception");
    let error = charge_record.error.as_ref().unwrap();
    assert_eq!(
        (error.error_type.as_deref(), error.message.as_deref()),
        (Some("GatewayError"), Some("refused by acquirer"))
    );
    let (client, client_record) = by_name("GET");
    assert_eq!(client.parent_span_id.as_deref(), Some("0000000000000003"));
    assert_eq!(
        client_record.kind,
        Kind::Application,
        "a client span is not a request to this service"
    );
    assert_eq!(
        client_record.extra.as_ref().unwrap()["url.full"],
        "https://acquirer.example/api"
    );
    assert_eq!(
        client_record
            .trace
            .as_ref()
            .unwrap()
            .span
            .as_ref()
            .unwrap()
            .kind
            .as_deref(),
        Some("client")
    );
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_items_are_a_partial_success_and_the_rest_is_stored() {
    let (_dir, data) = data_dir();
    let collector = TestCollector::start(config(&data)).await;
    let mut request = logs_request("otlppartialmark");
    request.resource_logs[0].scope_logs[0].log_records[1].trace_id = vec![1, 2, 3];
    let answer = post(
        &collector,
        "/v1/logs",
        "application/x-protobuf",
        &request.encode_to_vec(),
        &[],
    )
    .await;
    assert_eq!(answer.status, 200);
    let partial = ExportLogsServiceResponse::decode(&answer.body[..])
        .unwrap()
        .partial_success
        .unwrap();
    assert_eq!(partial.rejected_log_records, 1);
    assert!(
        partial.error_message.contains("item 2") && partial.error_message.contains("traceId"),
        "{}",
        partial.error_message
    );
    wait_count(&collector.index, "otlppartialmark", 2).await;

    let bad_span = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    name: "no ids".into(),
                    ..Span::default()
                }],
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    };
    let answer = post(
        &collector,
        "/v1/traces",
        "application/json",
        serde_json::to_string(&bad_span).unwrap().as_bytes(),
        &[],
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["partialSuccess"]["rejectedSpans"], 1);
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_their_status_and_a_google_rpc_status_body() {
    #[derive(Clone, PartialEq, prost::Message)]
    struct RpcStatus {
        #[prost(int32, tag = "1")]
        code: i32,
        #[prost(string, tag = "2")]
        message: String,
    }
    let (_dir, data) = data_dir();
    let mut config = config(&data);
    config.collector.max_body_bytes = 64 * 1024;
    let collector = TestCollector::start(config).await;

    let garbage = post(
        &collector,
        "/v1/logs",
        "application/x-protobuf",
        b"\xff\xff\xff\xff garbage",
        &[],
    )
    .await;
    assert_eq!(garbage.status, 400);
    let status = RpcStatus::decode(&garbage.body[..]).unwrap();
    assert_eq!(status.code, 3);
    assert!(status.message.contains("protobuf"), "{}", status.message);

    let bad_json = post(
        &collector,
        "/v1/traces",
        "application/json",
        b"{\"resourceSpans\": 7}",
        &[],
    )
    .await;
    assert_eq!(bad_json.status, 400);
    assert_eq!(bad_json.json()["code"], 3);

    let wrong_type = post(&collector, "/v1/logs", "text/plain", b"hello", &[]).await;
    assert_eq!(wrong_type.status, 415);
    assert!(
        wrong_type.json()["message"]
            .as_str()
            .unwrap()
            .contains("application/x-protobuf")
    );

    let no_token = request(
        collector.addr,
        "POST",
        "/v1/logs",
        &[("Content-Type", "application/x-protobuf")],
        &logs_request("x").encode_to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(no_token.status, 401);
    assert_eq!(RpcStatus::decode(&no_token.body[..]).unwrap().code, 16);

    // HTTP Basic with the token as password, as some exporters are configured.
    use base64::Engine as _;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("otel:{TOKEN}"))
    );
    let with_basic = request(
        collector.addr,
        "POST",
        "/v1/logs",
        &[
            ("Content-Type", "application/x-protobuf"),
            ("Authorization", &basic),
        ],
        &logs_request("otlpbasicmark").encode_to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(with_basic.status, 200);
    wait_count(&collector.index, "otlpbasicmark", 3).await;

    let oversize = post(
        &collector,
        "/v1/logs",
        "application/x-protobuf",
        &vec![0u8; 65 * 1024],
        &[],
    )
    .await;
    assert_eq!(oversize.status, 413);
    // A zip bomb: small on the wire, over the limit once inflated; refused without storing.
    let bomb = gzip(&vec![b' '; 8 << 20]);
    assert!(bomb.len() < 64 * 1024);
    let inflated = post(
        &collector,
        "/v1/logs",
        "application/json",
        &bomb,
        &[("Content-Encoding", "gzip")],
    )
    .await;
    assert_eq!(inflated.status, 413);
    assert_eq!(inflated.json()["code"], 8);
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_503_with_retry_after() {
    let (_dir, data) = data_dir();
    let mut config = config(&data);
    config.collector.max_pending_records = 1;
    let collector = TestCollector::start(config).await;
    // Enough records that indexing them takes far longer than a round trip.
    let big = records(&ids("otlp-bp", 0..20_000), "otlpbackpressure");
    assert_eq!(collector.ingest(&big, &[]).await.status, 200);
    let refused = post(
        &collector,
        "/v1/logs",
        "application/x-protobuf",
        &logs_request("late").encode_to_vec(),
        &[],
    )
    .await;
    assert_eq!(refused.status, 503, "{}", String::from_utf8_lossy(&refused.body));
    assert_eq!(refused.header("retry-after"), Some("1"));
    collector.stop().await;
}
