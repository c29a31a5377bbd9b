//! The collector's own log lines name the request and the batch they belong to.

mod common;

use common::*;
use owl_config::LogFormat;
use tracing_subscriber::util::SubscriberInitExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingest_line_carries_the_request_and_the_batch() {
    let lines = owl_logging::Captured::default();
    lines
        .subscriber("owl_collector=debug", LogFormat::Json)
        .try_init()
        .unwrap();
    let (_dir, data) = data_dir();
    let collector = TestCollector::start(config(&data)).await;
    let body = records(&ids("ownlog", 0..3), "ownlogmark");
    let answer = collector
        .ingest(
            &body,
            &[
                ("x-owl-agent-id", "node-7"),
                ("x-owl-batch-seq", "41"),
                ("X-Trace-Id", "CN-1733580000000-feedf00d"),
            ],
        )
        .await;
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
    assert_eq!(answer.header("x-trace-id"), Some("CN-1733580000000-feedf00d"));
    let request_id = answer.header("x-request-id").unwrap().to_string();
    collector.stop().await;

    let answered = lines
        .json_lines()
        .into_iter()
        .find(|l| l["message"] == "ingest answered")
        .unwrap_or_else(|| panic!("no ingest line in {}", lines.text()));
    assert_eq!(answered["trace_id"], "CN-1733580000000-feedf00d", "{answered}");
    assert_eq!(answered["request_id"], request_id.as_str());
    assert_eq!(answered["route"], "/api/v1/ingest");
    assert_eq!(answered["agent"], "node-7");
    assert_eq!(answered["batch_key"], "node-7:41");
    assert_eq!(answered["records"], 3);
    assert_eq!(answered["accepted"], 3);
    assert_eq!(answered["spans"], "request:ingest_batch");
}
