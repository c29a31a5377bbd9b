//! The ingest endpoint against a real collector on 127.0.0.1:0.

mod common;

use std::time::Duration;

use common::*;
use owl_index::{LogFilter, SearchRequest};
use owl_model::REDACTED;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_gzip_and_zstd_bodies_are_stored() {
    let (_dir, data) = data_dir();
    let collector = TestCollector::start(config(&data)).await;
    let plain = records(&ids("plain", 0..3), "encodingmark");
    let gz = records(&ids("gz", 0..4), "encodingmark");
    let zs = records(&ids("zs", 0..5), "encodingmark");
    let answers = [
        collector.ingest(&plain, &[]).await,
        collector
            .ingest(&gzip(&gz), &[("Content-Encoding", "gzip")])
            .await,
        collector
            .ingest(&zstd(&zs), &[("Content-Encoding", "zstd")])
            .await,
    ];
    for (answer, expected) in answers.iter().zip([3, 4, 5]) {
        assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
        let json = answer.json();
        assert_eq!(json["accepted"], expected);
        assert_eq!(json["duplicates"], 0);
        assert_eq!(json["rejected"], serde_json::json!([]));
    }
    wait_count(&collector.index, "encodingmark", 12).await;
    assert!(collector.index.get("zs-4").unwrap().is_some());
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_a_valid_token_get_401() {
    let (_dir, data) = data_dir();
    let collector = TestCollector::start(config(&data)).await;
    let body = records(&ids("noauth", 0..1), "noauthmark");
    let cases: [&[(&str, &str)]; 4] = [
        &[],
        &[("Authorization", "Bearer wrong-token-0123456789")],
        &[("Authorization", "Basic dGVzdDp0ZXN0")],
        &[("Authorization", TOKEN)],
    ];
    for headers in cases {
        let answer = request(collector.addr, "POST", "/api/v1/ingest", headers, &body)
            .await
            .unwrap();
        assert_eq!(answer.status, 401, "{headers:?}");
        let json = answer.json();
        assert_eq!(json["success"], false);
        assert_eq!(json["error"]["code"], "UNAUTHORIZED");
        assert_eq!(json["statusCode"], 401);
        assert_eq!(json["path"], "/api/v1/ingest");
        assert_eq!(answer.header("www-authenticate"), Some("Bearer"));
    }
    assert_eq!(count_marker(&collector.index, "noauthmark"), 0);
    // Health needs no token and has the platform API shape.
    let health = get(collector.addr, "/health").await.unwrap();
    assert_eq!(health.status, 200);
    let json = health.json();
    assert_eq!(json["status"], "success");
    assert_eq!(json["data"]["status"], "healthy");
    assert_eq!(json["data"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(json["data"]["timestamp"].as_f64().unwrap() > 1.7e9);
    assert_eq!(json["message"], "服务运行正常");
    assert!(
        health.header("x-request-id").is_some(),
        "the trace layer stamps every response"
    );
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_400_or_415_with_a_clear_error() {
    let (_dir, data) = data_dir();
    let collector = TestCollector::start(config(&data)).await;
    // Body, headers, expected status, error code, and a word the message must contain.
    type Case<'a> = (&'a [u8], &'a [(&'a str, &'a str)], u16, &'a str, &'a str);
    let cases: [Case; 7] = [
        (
            b"this is not json\nnor this\n",
            &[],
            400,
            "LOG_INGEST_INVALID_BODY",
            "JSON object",
        ),
        (
            b"[{\"message\":\"in an array\"}]",
            &[],
            400,
            "LOG_INGEST_INVALID_BODY",
            "array",
        ),
        (b"", &[], 400, "LOG_INGEST_INVALID_BODY", "empty"),
        (
            b"{\"message\":\"x\"}",
            &[("Content-Encoding", "gzip")],
            400,
            "LOG_INGEST_INVALID_BODY",
            "gzip",
        ),
        (
            b"{\"message\":\"x\"}",
            &[("Content-Encoding", "zstd")],
            400,
            "LOG_INGEST_INVALID_BODY",
            "zstd",
        ),
        (
            b"{\"message\":\"x\"}",
            &[("Content-Encoding", "br")],
            415,
            "LOG_INGEST_UNSUPPORTED_ENCODING",
            "br",
        ),
        (
            b"{\"message\":\"x\"}",
            &[("x-owl-agent-id", "agent-1"), ("x-owl-batch-seq", "minus one")],
            400,
            "LOG_INGEST_INVALID_HEADER",
            "x-owl-batch-seq",
        ),
    ];
    for (body, headers, status, code, hint) in cases {
        let answer = collector.ingest(body, headers).await;
        assert_eq!(
            answer.status,
            status,
            "{body:?} {headers:?}: {}",
            String::from_utf8_lossy(&answer.body)
        );
        let json = answer.json();
        assert_eq!(json["error"]["code"], code);
        let message = json["error"]["message"].as_str().unwrap();
        assert!(message.contains(hint), "{message:?} should mention {hint:?}");
    }
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_lines_are_reported_by_position_and_the_rest_is_stored_masked() {
    let (_dir, data) = data_dir();
    let collector = TestCollector::start(config(&data)).await;
    let body = concat!(
        r#"{"id":"part-1","message":"partialmark first password=hunter2"}"#,
        "\n",
        r#"{"id":"part-2","message":"partialmark bad level","level":"LOUD"}"#,
        "\n\n",
        "garbage\n",
        r#"{"id":"part-3","message":"partialmark third","@timestamp":"not a time"}"#,
        "\n",
        r#"{"id":"part-4","message":"partialmark fourth","user":{"id":7,"name":"Zhang"}}"#,
        "\n",
    );
    let answer = collector.ingest(body.as_bytes(), &[]).await;
    assert_eq!(answer.status, 200);
    let json = answer.json();
    assert_eq!(json["accepted"], 2);
    let rejected = json["rejected"].as_array().unwrap();
    let lines: Vec<u64> = rejected.iter().map(|r| r["line"].as_u64().unwrap()).collect();
    assert_eq!(lines, [2, 4, 5]);
    assert!(rejected[0]["reason"].as_str().unwrap().contains("level"));
    assert!(rejected[2]["reason"].as_str().unwrap().contains("@timestamp"));
    wait_count(&collector.index, "partialmark", 2).await;
    let first = collector.index.get("part-1").unwrap().expect("stored");
    assert!(
        first.message.contains(REDACTED) && !first.message.contains("hunter2"),
        "{}",
        first.message
    );
    assert_eq!(
        collector
            .index
            .get("part-4")
            .unwrap()
            .unwrap()
            .user
            .unwrap()
            .id
            .as_deref(),
        Some("7")
    );
    assert!(collector.index.get("part-2").unwrap().is_none());
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resent_batches_and_record_ids_are_stored_once_across_restarts() {
    let (_dir, data) = data_dir();
    let agent = [("x-owl-agent-id", "agent-9"), ("x-owl-batch-seq", "41")];
    let first = records(&ids("dup", 0..10), "dupmark");
    {
        let collector = TestCollector::start(config(&data)).await;
        let answer = collector.ingest(&first, &agent).await.json();
        assert_eq!(
            (answer["accepted"].as_u64(), answer["duplicates"].as_u64()),
            (Some(10), Some(0))
        );
        // The same batch again, even with a different body: recognised by its key.
        let answer = collector.ingest(b"{\"message\":\"other\"}", &agent).await.json();
        assert_eq!(
            (answer["accepted"].as_u64(), answer["duplicates"].as_u64()),
            (Some(0), Some(10))
        );
        // Overlapping ids in a new batch (no key): only the new ones are stored.
        let overlap = records(&ids("dup", 5..15), "dupmark");
        let answer = collector.ingest(&overlap, &[]).await.json();
        assert_eq!(
            (answer["accepted"].as_u64(), answer["duplicates"].as_u64()),
            (Some(5), Some(5))
        );
        // Twice the same id within one batch.
        let twice = records(&["dup-twice".to_string(), "dup-twice".to_string()], "dupmark");
        let answer = collector.ingest(&twice, &[]).await.json();
        assert_eq!(
            (answer["accepted"].as_u64(), answer["duplicates"].as_u64()),
            (Some(1), Some(1))
        );
        wait_count(&collector.index, "dupmark", 16).await;
        collector.stop().await;
    }
    // After a restart, the batch key and the ids are still known.
    let collector = TestCollector::start(config(&data)).await;
    let answer = collector.ingest(&first, &agent).await.json();
    assert_eq!(
        (answer["accepted"].as_u64(), answer["duplicates"].as_u64()),
        (Some(0), Some(10))
    );
    let again = records(&ids("dup", 0..16), "dupmark");
    let answer = collector
        .ingest(
            &again,
            &[("x-owl-agent-id", "agent-9"), ("x-owl-batch-seq", "42")],
        )
        .await
        .json();
    assert_eq!(
        (answer["accepted"].as_u64(), answer["duplicates"].as_u64()),
        (Some(1), Some(15))
    );
    let index = collector.stop().await;
    assert_eq!(count_marker(&index, "dupmark"), 17);
    let mut stored = committed_ids(index.root(), "dupmark");
    stored.sort();
    let before = stored.len();
    stored.dedup();
    assert_eq!(before, stored.len(), "an id is stored twice");
    assert_eq!(stored.len(), 17);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_record_is_searchable_within_a_second_without_restart() {
    let (_dir, data) = data_dir();
    let mut config = config(&data);
    // Commits far apart: freshness must come from the index's tail, not from commits.
    config.collector.commit_interval_ms = 30_000;
    let collector = TestCollector::start(config).await;
    let mut worst = Duration::ZERO;
    for round in 0..5 {
        let marker = format!("freshmark{round}x");
        let answer = collector
            .ingest(&records(&ids(&marker, 0..1), &marker), &[])
            .await;
        assert_eq!(answer.status, 200);
        let index = collector.index.clone();
        let took = eventually(Duration::from_secs(1), || count_marker(&index, &marker) == 1)
            .await
            .unwrap_or_else(|| panic!("round {round}: not searchable within a second of the ack"));
        worst = worst.max(took);
    }
    println!("worst time from ack to searchable: {worst:?}");
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexing_behind_answers_429_with_retry_after_then_recovers() {
    let (_dir, data) = data_dir();
    let mut config = config(&data);
    config.collector.max_pending_records = 1;
    let collector = TestCollector::start(config).await;
    // A batch large enough that adding it to the index takes far longer than a round trip.
    let big = records(&ids("bp", 0..20_000), "backpressuremark");
    let answer = collector.ingest(&big, &[]).await;
    assert_eq!(answer.status, 200);
    let refused = collector
        .ingest(&records(&ids("bp-late", 0..1), "backpressuremark"), &[])
        .await;
    assert_eq!(refused.status, 429, "{}", String::from_utf8_lossy(&refused.body));
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(refused.json()["error"]["code"], "LOG_INGEST_BACKPRESSURE");
    // Once the indexer caught up, the same request goes through.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let answer = collector
            .ingest(&records(&ids("bp-late", 0..1), "backpressuremark"), &[])
            .await;
        if answer.status == 200 {
            break;
        }
        assert_eq!(answer.status, 429);
        assert!(
            std::time::Instant::now() < deadline,
            "never recovered from back-pressure"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_count(&collector.index, "backpressuremark", 20_001).await;
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limit_get_413_also_when_they_only_decompress_over_it() {
    let (_dir, data) = data_dir();
    let mut config = config(&data);
    config.collector.max_body_bytes = 10 * 1024 * 1024;
    let collector = TestCollector::start(config).await;
    // 16 MiB of one repeated record: a zip bomb of a few dozen KiB.
    let line = b"{\"message\":\"bombmark aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}\n";
    let inflated = line.repeat(16 * 1024 * 1024 / line.len());
    let bombs = [("gzip", gzip(&inflated)), ("zstd", zstd(&inflated))];
    for (encoding, bomb) in &bombs {
        assert!(
            bomb.len() < 1024 * 1024,
            "{encoding} bomb is {} bytes",
            bomb.len()
        );
        let answer = collector.ingest(bomb, &[("Content-Encoding", encoding)]).await;
        assert_eq!(answer.status, 413, "{encoding}");
        assert_eq!(answer.json()["error"]["code"], "LOG_INGEST_TOO_LARGE");
        assert!(
            answer.json()["error"]["message"]
                .as_str()
                .unwrap()
                .contains("after decompression")
        );
    }
    // An uncompressed body over the limit, refused by its Content-Length.
    let auth = format!("Bearer {TOKEN}");
    let answer = request_expect_continue(
        collector.addr,
        "/api/v1/ingest",
        &[("Authorization", &auth)],
        &inflated[..11 * 1024 * 1024],
    )
    .await
    .unwrap();
    assert_eq!(answer.status, 413);
    assert_eq!(answer.json()["error"]["code"], "LOG_INGEST_TOO_LARGE");
    // Just under the limit is fine: nine records of 1 MiB (the padding lands in `extra`, which is
    // stored but not indexed).
    let padding = "a".repeat(1024 * 1024);
    let fits: Vec<u8> = (0..9)
        .flat_map(|i| {
            serde_json::json!({"id": format!("fits-{i}"), "message": "bombmark", "padding": padding})
                .to_string()
                .into_bytes()
                .into_iter()
                .chain([b'\n'])
        })
        .collect();
    assert!(fits.len() > 9 * 1024 * 1024 && fits.len() < 10 * 1024 * 1024);
    let answer = collector
        .ingest(&gzip(&fits), &[("Content-Encoding", "gzip")])
        .await;
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
    assert_eq!(answer.json()["accepted"], 9);
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_and_heartbeats_reach_the_metrics_store() {
    let (_dir, data) = data_dir();
    let collector = TestCollector::start(config(&data)).await;
    let now = chrono::Utc::now().to_rfc3339();
    let body = format!(
        "{}\n{}\n",
        serde_json::json!({"@type":"metric","host":"node-7","@timestamp":now,"cpu_percent":12.5,"memory_percent":40.0,
            "disks":[{"mount":"/","total_bytes":100,"used_bytes":91,"percent":91.0}]}),
        serde_json::json!({"@type":"heartbeat","agent_id":"agent-7","host":"node-7","@timestamp":now,"version":"0.1.0","uptime_s":5}),
    );
    let answer = collector.ingest(body.as_bytes(), &[]).await;
    assert_eq!(answer.json()["accepted"], 2);
    let index = collector.index.clone();
    let found = eventually(Duration::from_secs(5), || {
        index.metrics().latest_metrics("node-7").unwrap().is_some()
            && index
                .metrics()
                .latest_heartbeats()
                .unwrap()
                .iter()
                .any(|h| h.agent_id == "agent-7")
    })
    .await;
    assert!(found.is_some(), "sample and heartbeat not stored");
    let sample = index.metrics().latest_metrics("node-7").unwrap().unwrap();
    assert_eq!(sample.max_disk_percent(), 91.0);
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_commits_what_was_acknowledged() {
    let (_dir, data) = data_dir();
    let mut config = config(&data);
    config.collector.commit_interval_ms = 60_000;
    let collector = TestCollector::start(config).await;
    let answer = collector
        .ingest(&records(&ids("shut", 0..25), "shutdownmark"), &[])
        .await;
    assert_eq!(answer.status, 200);
    let root = collector.index.root().to_path_buf();
    // Nothing committed yet: a read-only handle sees nothing.
    assert!(committed_ids(&root, "shutdownmark").is_empty());
    collector.stop().await;
    assert_eq!(committed_ids(&root, "shutdownmark").len(), 25);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_answer_404_in_the_envelope() {
    let (_dir, data) = data_dir();
    let collector = TestCollector::start(config(&data)).await;
    let answer = get(collector.addr, "/api/v1/nothing").await.unwrap();
    assert_eq!(answer.status, 404);
    assert_eq!(answer.json()["error"]["code"], "NOT_FOUND");
    let search = SearchRequest {
        filter: LogFilter::default(),
        ..SearchRequest::default()
    };
    assert_eq!(collector.index.search(&search).unwrap().total, 0);
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_drops_expired_partitions_on_schedule() {
    let (_dir, data) = data_dir();
    let old = serde_json::json!({"id": "old-1", "@timestamp": "2020-01-01T00:00:00Z", "message": "retentionmark old"});
    let fresh = records(&ids("fresh", 0..1), "retentionmark");
    {
        let collector = TestCollector::start(config(&data)).await;
        let body = format!("{old}\n{}", String::from_utf8(fresh).unwrap());
        assert_eq!(collector.ingest(body.as_bytes(), &[]).await.json()["accepted"], 2);
        wait_count(&collector.index, "retentionmark", 2).await;
        collector.stop().await;
    }
    // Retention runs when the collector starts and then every check_interval_s.
    let collector = TestCollector::start(config(&data)).await;
    wait_count(&collector.index, "retentionmark", 1).await;
    assert!(collector.index.get("old-1").unwrap().is_none());
    assert!(collector.index.get("fresh-0").unwrap().is_some());
    collector.stop().await;
}
