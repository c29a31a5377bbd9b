//! Loki's push API against a real collector on 127.0.0.1:0: protobuf with raw snappy as Promtail
//! and Alloy send it (messages built from Loki's `push.proto`), and JSON.

mod common;

use common::*;
use owl_model::Level;
use prost::Message;

use owl_collector::loki_proto::{
    EntryAdapter, LabelPairAdapter as LabelPair, ProtoTimestamp as Timestamp, PushRequest, StreamAdapter,
};

fn snappy(bytes: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(bytes).unwrap()
}

fn push_request(marker: &str, n: usize) -> PushRequest {
    let now = chrono::Utc::now();
    PushRequest {
        streams: vec![StreamAdapter {
            labels: r#"{service_name="shop", env="prod", region="EU", level="error", pod="shop-7", note="say \"hi\""}"#.into(),
            entries: (0..n)
                .map(|i| EntryAdapter {
                    timestamp: Some(Timestamp {
                        seconds: now.timestamp(),
                        nanos: i as i32,
                    }),
                    line: if i % 2 == 0 {
                        format!(r#"{{"message":"{marker} json {i}","http":{{"method":"GET","url":"/cart","status_code":500}}}}"#)
                    } else {
                        format!("{marker} plain {i}")
                    },
                    structured_metadata: vec![LabelPair {
                        name: "trace_id".into(),
                        value: "CN-1733580000000-a1b2c3d4".into(),
                    }],
                })
                .collect(),
            ..StreamAdapter::default()
        }],
    }
}

async fn push(collector: &TestCollector, headers: &[(&str, &str)], body: &[u8]) -> Response {
    let auth = format!("Bearer {TOKEN}");
    let mut all = vec![("Authorization", auth.as_str())];
    all.extend_from_slice(headers);
    request(collector.addr, "POST", "/loki/api/v1/push", &all, body)
        .await
        .expect("request")
}

const PROTOBUF: (&str, &str) = ("Content-Type", "application/x-protobuf");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_snappy_pushes_are_stored_with_their_labels_and_once() {
    let (_dir, data) = data_dir();
    let collector = TestCollector::start(config(&data)).await;
    let ready = get(collector.addr, "/ready").await.unwrap();
    assert_eq!(ready.status, 200);

    let body = snappy(&push_request("lokiprotomark", 4).encode_to_vec());
    let answer = push(&collector, &[PROTOBUF], &body).await;
    assert_eq!(answer.status, 204, "{}", String::from_utf8_lossy(&answer.body));
    wait_count(&collector.index, "lokiprotomark", 4).await;
    let hits = collector
        .index
        .search(&owl_index::SearchRequest {
            filter: owl_index::LogFilter {
                keyword: Some("lokiprotomark".into()),
                ..owl_index::LogFilter::default()
            },
            limit: 10,
            ..owl_index::SearchRequest::default()
        })
        .unwrap()
        .hits;
    for record in &hits {
        assert_eq!(record.service.name, "shop");
        assert_eq!(record.service.region.as_deref(), Some("EU"));
        assert_eq!(record.environment.as_deref(), Some("prod"));
        assert_eq!(record.level, Level::Error);
        assert_eq!(record.trace_id(), Some("CN-1733580000000-a1b2c3d4"));
        let extra = record.extra.as_ref().unwrap();
        assert_eq!(
            (&extra["pod"], &extra["note"]),
            (&"shop-7".into(), &"say \"hi\"".into())
        );
    }
    let json_line = hits.iter().find(|r| r.message.contains("json 0")).unwrap();
    assert_eq!(json_line.status_code(), Some(500), "a JSON line is parsed");
    assert!(hits.iter().any(|r| r.message.ends_with("plain 1")));

    // `Content-Encoding: snappy` said outright, and a retried push: nothing new.
    let again = push(&collector, &[PROTOBUF, ("Content-Encoding", "snappy")], &body).await;
    assert_eq!(again.status, 204);
    let after = snappy(&push_request("lokiafterresend", 1).encode_to_vec());
    assert_eq!(push(&collector, &[PROTOBUF], &after).await.status, 204);
    wait_count(&collector.index, "lokiafterresend", 1).await;
    assert_eq!(count_marker(&collector.index, "lokiprotomark"), 4);
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_pushes_with_gzip_are_stored_and_bad_entries_named() {
    let (_dir, data) = data_dir();
    let collector = TestCollector::start(config(&data)).await;
    let ns = chrono::Utc::now().timestamp_nanos_opt().unwrap();
    let body = serde_json::json!({"streams": [
        {"stream": {"app": "billing", "level": "info"}, "values": [
            [ns.to_string(), "lokijsonmark first", {"span_id": "s1"}],
            [(ns + 1).to_string(), "lokijsonmark second"],
            ["yesterday", "lokijsonmark bad time"]
        ]}
    ]});
    let answer = push(
        &collector,
        &[("Content-Type", "application/json"), ("Content-Encoding", "gzip")],
        &gzip(body.to_string().as_bytes()),
    )
    .await;
    // Loki's answer to a push with a bad entry; the good ones are stored.
    assert_eq!(answer.status, 400);
    let text = String::from_utf8_lossy(&answer.body).to_string();
    assert!(text.contains("entry 3") && text.contains("nanoseconds"), "{text}");
    wait_count(&collector.index, "lokijsonmark", 2).await;
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_pushes_get_their_status_and_store_nothing() {
    let (_dir, data) = data_dir();
    let mut config = config(&data);
    config.collector.max_body_bytes = 64 * 1024;
    let collector = TestCollector::start(config).await;
    let not_snappy = push(&collector, &[PROTOBUF], b"\x00\x01 definitely not snappy").await;
    assert_eq!(not_snappy.status, 400);
    let garbage = push(&collector, &[PROTOBUF], &snappy(b"\xff\xff\xff\xff garbage")).await;
    assert_eq!(garbage.status, 400);
    assert!(String::from_utf8_lossy(&garbage.body).contains("PushRequest"));
    let no_labels = PushRequest {
        streams: vec![StreamAdapter {
            labels: "{}".into(),
            entries: vec![EntryAdapter {
                line: "lokinolabels".into(),
                ..EntryAdapter::default()
            }],
            ..StreamAdapter::default()
        }],
    };
    let refused = push(&collector, &[PROTOBUF], &snappy(&no_labels.encode_to_vec())).await;
    assert_eq!(refused.status, 400);
    assert!(String::from_utf8_lossy(&refused.body).contains("label"));
    let wrong_type = push(&collector, &[("Content-Type", "text/plain")], b"hello").await;
    assert_eq!(wrong_type.status, 415);
    let gzip_protobuf = push(&collector, &[PROTOBUF, ("Content-Encoding", "gzip")], &gzip(b"x")).await;
    assert_eq!(gzip_protobuf.status, 415);
    // Small on the wire, over the limit once inflated: refused before it is inflated, as is a
    // block whose header claims 4 GiB.
    let bomb = snappy(&vec![0u8; 1 << 20]);
    assert!(bomb.len() < 64 * 1024, "{}", bomb.len());
    let inflated = push(&collector, &[PROTOBUF], &bomb).await;
    assert_eq!(inflated.status, 413);
    let mut forged = vec![0xff, 0xff, 0xff, 0xff, 0x0f];
    forged.extend_from_slice(&snappy(b"tiny")[1..]);
    let claimed = push(&collector, &[PROTOBUF], &forged).await;
    assert_eq!(claimed.status, 413);
    let anonymous = request(collector.addr, "POST", "/loki/api/v1/push", &[PROTOBUF], b"")
        .await
        .unwrap();
    assert_eq!(anonymous.status, 401);
    // Python's logging-loki handler offers only HTTP Basic auth: the token is the password.
    use base64::Engine as _;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("promtail:{TOKEN}"))
    );
    let body = serde_json::json!({"streams": [{"stream": {"job": "cron"}, "values": [[chrono::Utc::now().timestamp_nanos_opt().unwrap().to_string(), "lokibasicmark"]]}]});
    let with_basic = request(
        collector.addr,
        "POST",
        "/loki/api/v1/push",
        &[("Content-Type", "application/json"), ("Authorization", &basic)],
        body.to_string().as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(with_basic.status, 204);
    wait_count(&collector.index, "lokibasicmark", 1).await;
    assert_eq!(count_marker(&collector.index, "lokinolabels"), 0);
    collector.stop().await;
}
