//! The Elasticsearch bulk surface against a real collector on 127.0.0.1:0, request by request as
//! Filebeat, Fluent Bit, Vector and elasticsearch-py send them.

mod common;

use common::*;
use serde_json::{Value, json};

async fn es(
    collector: &TestCollector,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let auth = format!("Bearer {TOKEN}");
    let mut all = vec![("Authorization", auth.as_str())];
    all.extend_from_slice(headers);
    request(collector.addr, method, path, &all, body)
        .await
        .expect("request")
}

fn ndjson(lines: &[Value]) -> Vec<u8> {
    let mut body = Vec::new();
    for line in lines {
        body.extend_from_slice(line.to_string().as_bytes());
        body.push(b'\n');
    }
    body
}

const NDJSON: (&str, &str) = ("Content-Type", "application/x-ndjson");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probes_shippers_make_are_answered_as_elasticsearch() {
    let (_dir, data) = data_dir();
    let collector = TestCollector::start(config(&data)).await;
    let anonymous = request(collector.addr, "GET", "/", &[], b"").await.unwrap();
    assert_eq!(anonymous.status, 401);
    assert_eq!(anonymous.header("x-elastic-product"), Some("Elasticsearch"));
    assert_eq!(anonymous.json()["error"]["type"], "security_exception");

    let info = es(&collector, "GET", "/", &[], b"").await;
    assert_eq!(info.status, 200);
    assert_eq!(info.header("x-elastic-product"), Some("Elasticsearch"));
    assert!(
        info.json()["version"]["number"]
            .as_str()
            .unwrap()
            .starts_with("8.")
    );
    let head = es(&collector, "HEAD", "/", &[], b"").await;
    assert_eq!((head.status, head.body.len()), (200, 0));

    // elasticsearch-py 9 asks for compatibility with 9 and is answered in its media type.
    let compat = "application/vnd.elasticsearch+json; compatible-with=9";
    let info9 = es(&collector, "GET", "/", &[("Accept", compat)], b"").await;
    assert!(
        info9.json()["version"]["number"]
            .as_str()
            .unwrap()
            .starts_with("9.")
    );
    assert_eq!(info9.header("content-type"), Some(compat));

    // An ES API key carrying the token, as Filebeat's `api_key` setting sends it.
    use base64::Engine as _;
    let api_key = format!(
        "ApiKey {}",
        base64::engine::general_purpose::STANDARD.encode(format!("filebeat:{TOKEN}"))
    );
    let with_key = request(
        collector.addr,
        "GET",
        "/_cluster/health",
        &[("Authorization", &api_key)],
        b"",
    )
    .await
    .unwrap();
    assert_eq!(
        (with_key.status, with_key.json()["status"].clone()),
        (200, json!("green"))
    );

    for path in [
        "/_license",
        "/_xpack",
        "/_ilm/policy/filebeat",
        "/_index_template/filebeat-8.17.0",
        "/_ingest/pipeline/p",
        "/_data_stream/logs-app-default",
        "/_template/logstash",
    ] {
        let answer = es(&collector, "GET", path, &[], b"").await;
        assert_eq!(answer.status, 200, "{path}");
        assert_eq!(
            answer.header("x-elastic-product"),
            Some("Elasticsearch"),
            "{path}"
        );
    }
    for path in [
        "/_ilm/policy/filebeat",
        "/_index_template/filebeat-8.17.0",
        "/_ingest/pipeline/p",
    ] {
        let put = es(
            &collector,
            "PUT",
            path,
            &[("Content-Type", "application/json")],
            b"{}",
        )
        .await;
        assert_eq!(
            (put.status, put.json()["acknowledged"].clone()),
            (200, json!(true)),
            "{path}"
        );
    }
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_items_are_answered_one_by_one_and_stored_once() {
    let (_dir, data) = data_dir();
    let collector = TestCollector::start(config(&data)).await;
    let doc = |n: u32| json!({"@timestamp": chrono::Utc::now().to_rfc3339(), "message": format!("esitemmark doc {n}"), "log.level": "error"});
    let body = ndjson(&[
        json!({"index": {"_index": "app", "_id": "a1"}}),
        doc(1),
        json!({"create": {"_id": "c1"}}),
        doc(2),
        json!({"create": {}}),
        doc(3),
        json!({"update": {"_index": "app", "_id": "a1"}}),
        json!({"doc": {"message": "x"}}),
        json!({"delete": {"_index": "app", "_id": "a1"}}),
        json!({"index": {"_index": "app"}}),
        json!({"@timestamp": "not a time", "message": "esitemmark bad"}),
    ]);
    let answer = es(&collector, "POST", "/fallback/_bulk", &[NDJSON], &body).await;
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
    let json = answer.json();
    assert_eq!(json["errors"], true);
    let items = json["items"].as_array().unwrap();
    let status = |i: usize, op: &str| items[i][op]["status"].as_u64().unwrap();
    assert_eq!(items.len(), 6, "{json}");
    assert_eq!(
        (status(0, "index"), items[0]["index"]["result"].clone()),
        (201, json!("created"))
    );
    assert_eq!(
        (status(1, "create"), items[1]["create"]["_index"].clone()),
        (201, json!("fallback"))
    );
    assert!(!items[2]["create"]["_id"].as_str().unwrap().is_empty());
    assert_eq!(status(3, "update"), 400);
    assert_eq!(status(4, "delete"), 400);
    assert_eq!(status(5, "index"), 400);
    assert_eq!(items[5]["index"]["error"]["type"], "document_parsing_exception");
    wait_count(&collector.index, "esitemmark", 3).await;

    // Re-sent: `index` is an update of the same document, `create` a conflict; nothing is added.
    let again = ndjson(&[
        json!({"index": {"_index": "app", "_id": "a1"}}),
        doc(1),
        json!({"create": {"_index": "fallback", "_id": "c1"}}),
        doc(2),
    ]);
    let answer = es(&collector, "PUT", "/_bulk", &[NDJSON], &gzip(&again)).await;
    let bad_gzip = answer.status;
    assert_eq!(bad_gzip, 400, "gzip without Content-Encoding is not NDJSON");
    let answer = es(
        &collector,
        "PUT",
        "/_bulk",
        &[NDJSON, ("Content-Encoding", "gzip")],
        &gzip(&again),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
    let items = answer.json()["items"].clone();
    assert_eq!(items[0]["index"]["status"], 200);
    assert_eq!(items[0]["index"]["result"], "updated");
    assert_eq!(items[1]["create"]["status"], 409);
    assert_eq!(
        items[1]["create"]["error"]["type"],
        "version_conflict_engine_exception"
    );
    let marker = es(
        &collector,
        "POST",
        "/_bulk",
        &[NDJSON],
        &ndjson(&[
            json!({"index": {"_index": "app"}}),
            json!({"message": "esafterresend"}),
        ]),
    )
    .await;
    assert_eq!(marker.status, 200);
    wait_count(&collector.index, "esafterresend", 1).await;
    assert_eq!(count_marker(&collector.index, "esitemmark"), 3);
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bulk_requests_are_refused_whole_in_elasticsearch_shape() {
    let (_dir, data) = data_dir();
    let mut config = config(&data);
    config.collector.max_body_bytes = 64 * 1024;
    let collector = TestCollector::start(config).await;
    for body in [
        &b"{\"frobnicate\":{}}\n{}\n"[..],
        b"garbage\n",
        b"{\"index\":{\"_index\":\"a\"}}\n",
        b"",
    ] {
        let answer = es(&collector, "POST", "/_bulk", &[NDJSON], body).await;
        assert_eq!(answer.status, 400, "{:?}", String::from_utf8_lossy(body));
        let json = answer.json();
        assert_eq!(json["status"], 400);
        assert!(
            json["error"]["reason"].is_string() && json["error"]["root_cause"].is_array(),
            "{json}"
        );
        assert_eq!(answer.header("x-elastic-product"), Some("Elasticsearch"));
    }
    let wrong_type = es(
        &collector,
        "POST",
        "/_bulk",
        &[("Content-Type", "text/plain")],
        b"{}\n",
    )
    .await;
    assert_eq!(wrong_type.status, 406);
    let oversize = es(&collector, "POST", "/_bulk", &[NDJSON], &vec![b' '; 65 * 1024]).await;
    assert_eq!(oversize.status, 413);
    let bomb = gzip(&vec![b'\n'; 8 << 20]);
    let inflated = es(
        &collector,
        "POST",
        "/_bulk",
        &[NDJSON, ("Content-Encoding", "gzip")],
        &bomb,
    )
    .await;
    assert_eq!(inflated.status, 413);
    collector.stop().await;
}
