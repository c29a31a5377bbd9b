//! kill -9 of the collector mid-ingest loses no acknowledged record and stores none twice; the
//! replay after a kill stores each host metric sample and heartbeat once.
//!
//! The collector runs as a child process (`collector-proc`). Three clients keep sending batches
//! and re-send every batch until it is acknowledged, as agents do: two with agent batch keys, one
//! with record ids only. The test SIGKILLs the collector several times while they send, restarts
//! it each time (it recovers from its WAL), finally stops it gracefully and reads the committed
//! index: every record of every batch must be there exactly once.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, SubsecRound, Utc};
use common::{TOKEN, committed_ids, parse_response};
use owl_index::MetricsStore;

const CLIENTS: usize = 3;
const RECORDS_PER_BATCH: usize = 50;
const KILLS: usize = 6;

struct Collector {
    child: Child,
    addr: SocketAddr,
}

fn spawn(config: &Path, log: PathBuf) -> Collector {
    let mut child = Command::new(env!("CARGO_BIN_EXE_collector-proc"))
        .args([
            "--config".as_ref(),
            config.as_os_str(),
            "--listen".as_ref(),
            "127.0.0.1:0".as_ref(),
        ])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("start collector-proc");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening ")
        .unwrap_or_else(|| panic!("unexpected output {line:?}"));
    Collector {
        child,
        addr: addr.parse().unwrap(),
    }
}

/// One blocking request on a fresh connection; any I/O error is a failed attempt.
fn post(
    addr: SocketAddr,
    body: &[u8],
    headers: &[(String, String)],
) -> std::io::Result<(u16, serde_json::Value)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut head = format!(
        "POST /api/v1/ingest HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let response = parse_response(&raw)?;
    let json = serde_json::from_slice(&response.body).unwrap_or(serde_json::Value::Null);
    Ok((response.status, json))
}

fn batch_ids(client: usize, batch: usize) -> Vec<String> {
    (0..RECORDS_PER_BATCH)
        .map(|r| format!("crash-c{client}-b{batch}-r{r}"))
        .collect()
}

#[derive(Default)]
struct Tally {
    acked_batches: AtomicUsize,
    failed_attempts: AtomicUsize,
    duplicate_answers: AtomicUsize,
}

/// Sends batches until `stop`, re-sending each until it is acknowledged; returns how many it sent.
fn client(number: usize, addr: Arc<RwLock<SocketAddr>>, stop: Arc<AtomicBool>, tally: Arc<Tally>) -> usize {
    let mut batch = 0;
    while !stop.load(Ordering::Acquire) {
        let body = common::records(&batch_ids(number, batch), "crashmark");
        // Client 2 ships like curl (ids only); the others like owl-agent (batch keys too).
        let headers = if number == 2 {
            Vec::new()
        } else {
            vec![
                ("x-owl-agent-id".to_string(), format!("crash-agent-{number}")),
                ("x-owl-batch-seq".to_string(), batch.to_string()),
            ]
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let target = *addr.read().unwrap();
            match post(target, &body, &headers) {
                Ok((200, answer)) => {
                    if answer["duplicates"].as_u64().unwrap_or(0) > 0 {
                        tally.duplicate_answers.fetch_add(1, Ordering::Relaxed);
                    }
                    break;
                }
                Ok((status, answer)) => {
                    assert!(
                        status == 429 || status == 503,
                        "unexpected answer {status}: {answer}"
                    );
                }
                Err(_) => {
                    tally.failed_attempts.fetch_add(1, Ordering::Relaxed);
                }
            }
            assert!(
                Instant::now() < deadline,
                "client {number}: batch {batch} never acknowledged"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        tally.acked_batches.fetch_add(1, Ordering::AcqRel);
        batch += 1;
    }
    batch
}

fn wait_for_progress(tally: &Tally, batches: usize) {
    let target = tally.acked_batches.load(Ordering::Acquire) + batches;
    let deadline = Instant::now() + Duration::from_secs(60);
    while tally.acked_batches.load(Ordering::Acquire) < target {
        assert!(Instant::now() < deadline, "no ingest progress");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn kill_9_mid_ingest_loses_no_acknowledged_record_and_stores_none_twice() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("owl.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {data:?}\n[log]\nlevel = \"warn\"\n[collector]\nagent_tokens = [\"{TOKEN}\"]\ncommit_interval_ms = 100\n"
        ),
    )
    .unwrap();

    let mut collector = spawn(&config, dir.path().join("collector-0.log"));
    let addr = Arc::new(RwLock::new(collector.addr));
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let clients: Vec<_> = (0..CLIENTS)
        .map(|n| {
            let (addr, stop, tally) = (addr.clone(), stop.clone(), tally.clone());
            std::thread::spawn(move || client(n, addr, stop, tally))
        })
        .collect();

    for kill in 1..=KILLS {
        // Kill after a varying amount of progress, while every client is mid-request.
        wait_for_progress(&tally, 5 + rand::random_range(0..20));
        collector.child.kill().unwrap();
        collector.child.wait().unwrap();
        collector = spawn(&config, dir.path().join(format!("collector-{kill}.log")));
        *addr.write().unwrap() = collector.addr;
    }
    wait_for_progress(&tally, 10);
    stop.store(true, Ordering::Release);
    let sent: Vec<usize> = clients.into_iter().map(|c| c.join().unwrap()).collect();

    // Graceful stop: everything acknowledged gets committed.
    let term = Command::new("kill")
        .args(["-TERM", &collector.child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status = collector.child.wait().unwrap();
    assert!(status.success(), "collector exited with {status}");

    let stored = committed_ids(&data.join("index"), "crashmark");
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for id in &stored {
        *counts.entry(id.as_str()).or_default() += 1;
    }
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "stored more than once: {twice:?}");
    let mut missing = Vec::new();
    for (client, batches) in sent.iter().enumerate() {
        for batch in 0..*batches {
            missing.extend(
                batch_ids(client, batch)
                    .into_iter()
                    .filter(|id| !counts.contains_key(id.as_str())),
            );
        }
    }
    assert!(
        missing.is_empty(),
        "{} acknowledged records lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let expected: usize = sent.iter().sum::<usize>() * RECORDS_PER_BATCH;
    assert_eq!(stored.len(), expected);
    println!(
        "{KILLS} kills: {} batches ({expected} records) acknowledged, {} failed attempts re-sent, {} answers with duplicates",
        sent.iter().sum::<usize>(),
        tally.failed_attempts.load(Ordering::Relaxed),
        tally.duplicate_answers.load(Ordering::Relaxed),
    );
    assert!(
        tally.failed_attempts.load(Ordering::Relaxed) > 0,
        "no request was cut off: the kills missed ingest"
    );
}

const HOSTS: usize = 3;
const SAMPLES_PER_HOST: usize = 20;

/// Sends `body` until a 200 (the collector may still be recovering) and returns the answer.
fn post_until_acknowledged(addr: SocketAddr, body: &[u8]) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok((200, answer)) = post(addr, body, &[]) {
            return answer;
        }
        assert!(Instant::now() < deadline, "no answer from {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sample_line(host: usize, at: DateTime<Utc>) -> String {
    serde_json::json!({"@type": "metric", "host": format!("replay-host-{host}"), "@timestamp": at.to_rfc3339(),
        "cpu_percent": 10.0, "memory_percent": 20.0})
    .to_string()
}

fn heartbeat_line(host: usize, at: DateTime<Utc>) -> String {
    serde_json::json!({"@type": "heartbeat", "agent_id": format!("replay-agent-{host}"), "host": format!("replay-host-{host}"),
        "@timestamp": at.to_rfc3339(), "version": "0.1.0", "uptime_s": 5})
    .to_string()
}

/// Lines of the store's files whose text contains `needle`.
fn stored_lines(dir: &Path, needle: &str) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .map(|entry| std::fs::read_to_string(entry.unwrap().path()).unwrap())
        .map(|text| text.lines().filter(|line| line.contains(needle)).count())
        .sum()
}

// Regression: entries above the checkpoint are replayed after a crash, and their samples were
// appended to the metrics store a second time.
#[test]
fn kill_9_then_replay_stores_each_sample_and_heartbeat_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("owl.toml");
    // The longest commit interval: nothing is committed before the kill, so the restart replays
    // every entry.
    std::fs::write(
        &config,
        format!(
            "data_dir = {data:?}\n[log]\nlevel = \"warn\"\n[collector]\nagent_tokens = [\"{TOKEN}\"]\ncommit_interval_ms = 60000\n"
        ),
    )
    .unwrap();
    let metrics_dir = data.join("index").join("metrics");
    let start = (Utc::now() - chrono::Duration::minutes(30)).trunc_subsecs(0);
    let at = |i: usize| start + chrono::Duration::seconds(10 * i as i64);

    let mut collector = spawn(&config, dir.path().join("replay-0.log"));
    // Several requests, so the replay has several entries.
    for i in 0..SAMPLES_PER_HOST {
        let mut body = String::new();
        for host in 0..HOSTS {
            body.push_str(&sample_line(host, at(i)));
            body.push('\n');
        }
        body.push_str(&heartbeat_line(0, at(i)));
        body.push('\n');
        let answer = post_until_acknowledged(collector.addr, body.as_bytes());
        assert_eq!(answer["accepted"], HOSTS + 1, "{answer}");
    }
    let expected_samples = HOSTS * SAMPLES_PER_HOST;
    let deadline = Instant::now() + Duration::from_secs(60);
    while stored_lines(&metrics_dir, "replay-host-") < expected_samples + SAMPLES_PER_HOST {
        assert!(
            Instant::now() < deadline,
            "samples never reached the metrics store"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    collector.child.kill().unwrap();
    collector.child.wait().unwrap();
    assert!(
        !data.join("collector/wal/checkpoint").exists(),
        "a commit happened before the kill: the replay would have nothing to re-apply"
    );

    collector = spawn(&config, dir.path().join("replay-1.log"));
    // Answered only once recovery (the replay) is done.
    let late = format!("{}\n", sample_line(0, at(SAMPLES_PER_HOST)));
    post_until_acknowledged(collector.addr, late.as_bytes());
    let term = Command::new("kill")
        .args(["-TERM", &collector.child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status = collector.child.wait().unwrap();
    assert!(status.success(), "collector exited with {status}");
    assert!(
        data.join("collector/wal/checkpoint").exists(),
        "the replayed entries were committed"
    );

    assert_eq!(
        stored_lines(&metrics_dir, "\"@timestamp\""),
        expected_samples + 1 + SAMPLES_PER_HOST,
        "each sample and heartbeat stored once"
    );
    let store = MetricsStore::open(&metrics_dir, false).unwrap();
    for host in 0..HOSTS {
        let history = store
            .metric_history(
                &format!("replay-host-{host}"),
                start,
                at(SAMPLES_PER_HOST) + chrono::Duration::seconds(1),
            )
            .unwrap();
        let times: Vec<DateTime<Utc>> = history.iter().map(|s| s.timestamp).collect();
        let count = SAMPLES_PER_HOST + usize::from(host == 0);
        let expected: Vec<DateTime<Utc>> = (0..count).map(at).collect();
        assert_eq!(times, expected, "host {host}");
    }
}
