//! The agent against a collector that is away, slow, or refusing, and against a full or damaged
//! disk buffer.

mod common;

use std::time::{Duration, Instant};

use common::{Collector, Mode, Writer, assert_exactly_once, config, count, input};
use owl_config::{Compression, WhenFull};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(30);

fn counter(agent: &owl_agent::RunningAgent, name: &str) -> u64 {
    agent.metrics().snapshot()[name]
}

fn write_lines(path: &std::path::Path, prefix: &str, range: std::ops::Range<u64>, pad: usize) {
    let mut writer = Writer::open(path);
    for n in range {
        writer.line(&format!("{prefix}{n} {}", "p".repeat(pad)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_down_then_back_everything_arrives_from_the_disk_buffer() {
    common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let collector = Collector::start().await;
    collector.set_mode(Mode::Down);
    let mut cfg = config(dir.path(), &collector.url(), vec![input(&log, "billing")]);
    cfg.agent.shutdown_timeout_ms = 200;
    let total = 2000;
    write_lines(&log, "event ", 0..total, 40);

    // Phase 1: the collector is down; everything read goes to the disk buffer.
    let shutdown = CancellationToken::new();
    let agent = owl_agent::start(cfg.clone(), shutdown.clone()).await.unwrap();
    // Every line read: a graceful stop seals the open batch into the buffer. (Counting
    // `records_buffered_total` would not do: it includes the heartbeat sent at start, and the last
    // line may still wait for its multiline timeout.)
    common::wait_until(WAIT, "all lines read", || {
        counter(&agent, "records_read_total") >= total
    })
    .await;
    assert!(counter(&agent, "send_retries_total") > 0);
    shutdown.cancel();
    agent.wait().await.unwrap();
    assert_eq!(count(&collector.received(), "event "), 0);

    // The file is gone: only the disk buffer still has the records.
    std::fs::remove_file(&log).unwrap();

    // Phase 2: the collector is back; a new agent ships the buffer.
    collector.set_mode(Mode::Up);
    let shutdown = CancellationToken::new();
    let agent = owl_agent::start(cfg, shutdown.clone()).await.unwrap();
    collector
        .wait_for(WAIT, "all records", |r| count(r, "event ") >= total as usize)
        .await;
    assert_exactly_once(&collector.received(), "event ", total);
    common::wait_until(WAIT, "buffer drained", || counter(&agent, "buffer_bytes") == 0).await;
    shutdown.cancel();
    agent.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_buffer_pauses_reading_and_resumes_with_nothing_lost() {
    common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let collector = Collector::start().await;
    collector.set_mode(Mode::Down);
    let mut cfg = config(dir.path(), &collector.url(), vec![input(&log, "billing")]);
    cfg.agent.buffer.max_bytes = 1024 * 1024;
    cfg.agent.batch.compression = Compression::None;
    let total = 12_000; // about 3.5 MiB of records: more than three times the buffer
    write_lines(&log, "event ", 0..total, 60);

    let shutdown = CancellationToken::new();
    let agent = owl_agent::start(cfg, shutdown.clone()).await.unwrap();
    common::wait_until(WAIT, "reading paused on a full buffer", || {
        counter(&agent, "buffer_full_waits_total") > 0
    })
    .await;
    // Reading is paused: the buffer keeps its bound, and the reader, waiting with one sealed
    // batch in hand, has read no more than that batch beyond what the buffer holds (the
    // collector is down, so nothing frees room meanwhile).
    let buffered = counter(&agent, "buffer_bytes");
    assert!(
        buffered <= 1024 * 1024 + 64 * 1024,
        "buffer holds {buffered} bytes"
    );
    let (read, stored) = (
        counter(&agent, "records_read_total"),
        counter(&agent, "records_buffered_total"),
    );
    assert!(stored < total / 2, "{stored} of {total} records buffered");
    // A 64 KiB batch holds about 400 of these records.
    assert!(
        read <= stored + 1000,
        "reading did not pause: {read} read, {stored} buffered"
    );

    collector.set_mode(Mode::Up);
    collector
        .wait_for(WAIT, "all records", |r| count(r, "event ") >= total as usize)
        .await;
    assert_exactly_once(&collector.received(), "event ", total);
    assert_eq!(counter(&agent, "records_dropped_total"), 0);
    shutdown.cancel();
    agent.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_newest_counts_every_dropped_record() {
    common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let collector = Collector::start().await;
    collector.set_mode(Mode::Down);
    let mut cfg = config(dir.path(), &collector.url(), vec![input(&log, "billing")]);
    cfg.agent.buffer.max_bytes = 1024 * 1024;
    cfg.agent.buffer.when_full = WhenFull::DropNewest;
    cfg.agent.batch.compression = Compression::None;
    let total = 12_000;
    write_lines(&log, "event ", 0..total, 60);
    let shutdown = CancellationToken::new();
    let agent = owl_agent::start(cfg, shutdown.clone()).await.unwrap();
    common::wait_until(WAIT, "file read", || {
        counter(&agent, "records_read_total") >= total
    })
    .await;
    let dropped = counter(&agent, "records_dropped_total");
    assert!(dropped > 0);
    collector.set_mode(Mode::Up);
    collector
        .wait_for(WAIT, "the rest", |r| count(r, "event ") as u64 + dropped >= total)
        .await;
    // Judged once the agent has stopped with an empty buffer: nothing is left to arrive late.
    let metrics = agent.metrics_handle();
    shutdown.cancel();
    agent.wait().await.unwrap();
    assert_eq!(metrics.snapshot()["buffer_entries"], 0, "the buffer was drained");
    assert_eq!(count(&collector.received(), "event ") as u64 + dropped, total);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured_on_429_and_503() {
    common::init_tracing();
    for code in [429, 503] {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        let collector = Collector::start().await;
        collector.set_mode(Mode::Status {
            code,
            retry_after: Some(1),
        });
        let cfg = config(dir.path(), &collector.url(), vec![input(&log, "billing")]);
        write_lines(&log, "event ", 0..10, 0);
        let shutdown = CancellationToken::new();
        let agent = owl_agent::start(cfg, shutdown.clone()).await.unwrap();
        collector
            .wait_for(WAIT, "first refusal", |r| !r.statuses.is_empty())
            .await;
        let refused_at = Instant::now();
        collector.set_mode(Mode::Up);
        collector
            .wait_for(WAIT, "records", |r| count(r, "event ") == 10)
            .await;
        let waited = refused_at.elapsed();
        // Backoff alone would retry within 200 ms; Retry-After asked for 1 s.
        assert!(
            waited >= Duration::from_millis(800),
            "{code}: retried after {waited:?}"
        );
        assert_eq!(
            collector
                .received()
                .statuses
                .iter()
                .filter(|s| **s == code)
                .count(),
            1
        );
        shutdown.cancel();
        agent.wait().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_batch_is_dead_lettered_and_the_pipeline_moves_on() {
    common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let collector = Collector::start().await;
    collector.set_mode(Mode::Status {
        code: 400,
        retry_after: None,
    });
    let mut billing = input(&log, "billing");
    // One line, one record: all five poison lines are in the first batch.
    billing.multiline.enabled = false;
    let cfg = config(dir.path(), &collector.url(), vec![billing]);
    let dead_dir = cfg.agent_data_dir().join("dead-letter");
    write_lines(&log, "poison ", 0..5, 0);
    let shutdown = CancellationToken::new();
    let agent = owl_agent::start(cfg, shutdown.clone()).await.unwrap();
    common::wait_until(WAIT, "dead letter", || {
        counter(&agent, "batches_dead_lettered_total") == 1
    })
    .await;
    collector.set_mode(Mode::Up);
    write_lines(&log, "after ", 0..5, 0);
    collector
        .wait_for(WAIT, "later records", |r| count(r, "after ") == 5)
        .await;
    assert_eq!(
        count(&collector.received(), "poison "),
        0,
        "a refused batch is not retried"
    );
    let index = std::fs::read_to_string(dead_dir.join("index.ndjson")).unwrap();
    assert!(index.contains("\"status\":400"), "{index}");
    let batch_file = std::fs::read_dir(&dead_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("batch-"))
        .unwrap();
    let body = std::fs::read_to_string(batch_file).unwrap();
    assert_eq!(body.lines().filter(|l| l.contains("poison ")).count(), 5);

    // Records the collector rejects one by one are kept too.
    collector.received().reject_messages.push("reject-me".to_string());
    Writer::open(&log).line("reject-me");
    common::wait_until(WAIT, "rejection kept", || {
        counter(&agent, "records_rejected_total") == 1
    })
    .await;
    let rejected = std::fs::read_to_string(dead_dir.join("rejected.ndjson")).unwrap();
    assert!(
        rejected.contains("rejected by test") && rejected.contains("reject-me"),
        "{rejected}"
    );
    shutdown.cancel();
    agent.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_is_retried_never_dead_lettered() {
    common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let collector = Collector::start().await;
    let mut cfg = config(dir.path(), &collector.url(), vec![input(&log, "billing")]);
    cfg.agent.token = owl_config::Secret::new("wrong-token");
    cfg.agent.retry.max_backoff_ms = 50;
    cfg.agent.shutdown_timeout_ms = 100;
    write_lines(&log, "event ", 0..10, 0);
    let shutdown = CancellationToken::new();
    let agent = owl_agent::start(cfg.clone(), shutdown.clone()).await.unwrap();
    common::wait_until(WAIT, "several 401s", || {
        counter(&agent, "send_auth_failures_total") >= 3
    })
    .await;
    assert_eq!(counter(&agent, "batches_dead_lettered_total"), 0);
    shutdown.cancel();
    agent.wait().await.unwrap();
    // With the right token, the buffered records go out.
    cfg.agent.token = owl_config::Secret::new(common::TOKEN);
    let shutdown = CancellationToken::new();
    let agent = owl_agent::start(cfg, shutdown.clone()).await.unwrap();
    collector
        .wait_for(WAIT, "records", |r| count(r, "event ") == 10)
        .await;
    assert_exactly_once(&collector.received(), "event ", 10);
    shutdown.cancel();
    agent.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_buffer_entries_are_skipped_and_counted() {
    common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let collector = Collector::start().await;
    let cfg = config(dir.path(), &collector.url(), vec![input(&log, "billing")]);
    // Damage the buffer as a bad disk would: an entry with a wrong checksum, one that is not an
    // entry at all. (Layout: `state/` sled database, tree `buffer`, u64 big-endian keys.)
    {
        let db = sled::open(cfg.agent_data_dir().join("state")).unwrap();
        let tree = db.open_tree("buffer").unwrap();
        let mut bad = b"OWB1\0\0\0\0".to_vec();
        bad.extend_from_slice(&[1; 40]);
        tree.insert(3u64.to_be_bytes(), bad).unwrap();
        tree.insert(4u64.to_be_bytes(), &b"garbage"[..]).unwrap();
        db.flush().unwrap();
    }
    write_lines(&log, "event ", 0..50, 0);
    let shutdown = CancellationToken::new();
    let agent = owl_agent::start(cfg, shutdown.clone()).await.unwrap();
    collector
        .wait_for(WAIT, "records", |r| count(r, "event ") == 50)
        .await;
    assert_eq!(counter(&agent, "buffer_corrupt_entries_total"), 2);
    assert_exactly_once(&collector.received(), "event ", 50);
    shutdown.cancel();
    agent.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_carry_agent_id_and_increasing_sequence_numbers_across_restarts() {
    common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let collector = Collector::start().await;
    let cfg = config(dir.path(), &collector.url(), vec![input(&log, "billing")]);
    for round in 0..2u64 {
        write_lines(&log, "event ", round * 10..round * 10 + 10, 0);
        let shutdown = CancellationToken::new();
        let agent = owl_agent::start(cfg.clone(), shutdown.clone()).await.unwrap();
        collector
            .wait_for(WAIT, "records", |r| {
                count(r, "event ") == (round as usize + 1) * 10
            })
            .await;
        shutdown.cancel();
        agent.wait().await.unwrap();
    }
    let received = collector.received();
    let agent_id = std::fs::read_to_string(cfg.agent_data_dir().join("agent_id")).unwrap();
    assert!(received.batch_keys.iter().all(|(id, _)| id == agent_id.trim()));
    let seqs: Vec<u64> = received.batch_keys.iter().map(|(_, s)| *s).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
}
