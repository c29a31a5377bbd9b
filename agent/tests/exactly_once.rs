//! Every line arrives exactly once: through rename and copytruncate rotation while a writer
//! appends, and across stops, aborts and kill -9 of the agent mid-stream.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::{Collector, Writer, assert_exactly_once, config, count, input};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(40);

/// Writes `total` JSON lines `line <n> ...`, calling `rotate` every `every` lines, pausing
/// briefly now and then so the agent reads while the writer writes.
fn write_continuously(
    path: &Path,
    total: u64,
    every: u64,
    written: Arc<AtomicU64>,
    mut rotate: impl FnMut(&mut Writer) + Send + 'static,
) -> std::thread::JoinHandle<()> {
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        let mut writer = Writer::open(&path);
        for n in 0..total {
            if n > 0 && n % every == 0 {
                rotate(&mut writer);
            }
            writer.line(&format!(
                r#"{{"ts":"2025-01-01T00:00:00Z","level":"info","msg":"line {n} of the stream","request_id":"r-{n}","pad":"{}"}}"#,
                "x".repeat((n % 50) as usize)
            ));
            written.store(n + 1, Ordering::Relaxed);
            if n % 20 == 0 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_rotation_while_writing_is_exactly_once() {
    common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let collector = Collector::start().await;
    // `*.log` does not match the rotated `app.log.1`: the agent must drain the old file through
    // its open handle, including after the next rotation deletes it by renaming over it.
    let cfg = config(
        dir.path(),
        &collector.url(),
        vec![input(&dir.path().join("*.log"), "orders")],
    );
    let shutdown = CancellationToken::new();
    let agent = owl_agent::start(cfg, shutdown.clone()).await.unwrap();

    let total = 3000;
    let log2 = log.clone();
    let writer = write_continuously(&log, total, 500, Arc::new(AtomicU64::new(0)), move |w| {
        std::fs::rename(&log2, log2.with_extension("log.1")).unwrap();
        *w = Writer::open(&log2);
    });
    writer.join().unwrap();
    collector
        .wait_for(WAIT, "all lines", |r| count(r, "line ") >= total as usize)
        .await;
    assert_exactly_once(&collector.received(), "line ", total);
    assert!(owl_agent::Metrics::snapshot(agent.metrics())["files_rotated_total"] >= 5);
    shutdown.cancel();
    agent.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copytruncate_rotation_while_writing_is_exactly_once() {
    common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let collector = Collector::start().await;
    // The rotated copy must match the paths for the unread rest of a truncated file to be found.
    let cfg = config(
        dir.path(),
        &collector.url(),
        vec![input(&dir.path().join("app.log*"), "orders")],
    );
    let shutdown = CancellationToken::new();
    let agent = owl_agent::start(cfg, shutdown.clone()).await.unwrap();

    let total = 3000;
    let log2 = log.clone();
    // As logrotate's copytruncate with `dateext` does, with the writer held across the
    // copy-to-truncate window (lines written inside it would reach neither file; see
    // tail/mod.rs). Each copy keeps its own name, as rotated files do until they expire.
    let mut rotations = 0;
    let writer = write_continuously(&log, total, 600, Arc::new(AtomicU64::new(0)), move |_| {
        rotations += 1;
        let copy = log2.with_extension(format!("log.{rotations}"));
        std::fs::copy(&log2, &copy).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&log2)
            .unwrap()
            .set_len(0)
            .unwrap();
    });
    writer.join().unwrap();
    collector
        .settle(WAIT, |r| count(r, "line ") >= total as usize)
        .await;
    // Judged once the agent has stopped with an empty buffer: nothing is left to arrive late.
    let metrics = agent.metrics_handle();
    shutdown.cancel();
    agent.wait().await.unwrap();
    assert_eq!(metrics.snapshot()["buffer_entries"], 0, "the buffer was drained");
    assert_exactly_once(&collector.received(), "line ", total);
    assert!(metrics.snapshot()["files_truncated_total"] >= 1);
}

/// Runs an agent over a file being written, interrupting it with `interrupt` twice mid-stream.
async fn interrupted_twice(abort: bool) {
    common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let collector = Collector::start().await;
    let cfg = config(dir.path(), &collector.url(), vec![input(&log, "orders")]);
    let total = 6000;
    let written = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let done = done.clone();
        let w = write_continuously(&log, total, u64::MAX, written.clone(), |_| {});
        std::thread::spawn(move || {
            w.join().unwrap();
            done.store(true, Ordering::Relaxed);
        })
    };
    for round in 1..=2u64 {
        let shutdown = CancellationToken::new();
        let agent = owl_agent::start(cfg.clone(), shutdown.clone()).await.unwrap();
        let target = (total * round / 3) as usize;
        collector
            .wait_for(WAIT, "progress before the interruption", |r| {
                count(r, "line ") >= target
            })
            .await;
        if abort {
            agent.abort().await;
        } else {
            shutdown.cancel();
            agent.wait().await.unwrap();
        }
    }
    let shutdown = CancellationToken::new();
    let agent = owl_agent::start(cfg, shutdown.clone()).await.unwrap();
    writer.join().unwrap();
    assert!(done.load(Ordering::Relaxed));
    collector
        .wait_for(WAIT, "all lines", |r| count(r, "line ") >= total as usize)
        .await;
    assert_exactly_once(&collector.received(), "line ", total);
    shutdown.cancel();
    agent.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_and_restarted_mid_stream_is_exactly_once() {
    interrupted_twice(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_and_restarted_mid_stream_is_exactly_once() {
    interrupted_twice(true).await;
}

fn agent_toml(dir: &Path, collector_url: &str, glob: &Path) -> String {
    format!(
        r#"data_dir = "{data}"
[agent]
collector_url = "{collector_url}"
token = "{token}"
host = "node-kill"
metrics_listen = ""
host_metrics_interval_s = 0
heartbeat_interval_s = 3600
shutdown_timeout_ms = 2000
[agent.batch]
timeout_ms = 50
max_bytes = 65536
[agent.retry]
initial_backoff_ms = 10
max_backoff_ms = 200
[[agent.inputs]]
paths = ["{glob}"]
service = "from-file"
poll_interval_ms = 50
rotate_wait_ms = 300
"#,
        data = dir.join("data").display(),
        token = common::TOKEN,
        glob = glob.display(),
    )
}

fn spawn_binary(config: &Path) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_owl-agent"))
        .arg("--config")
        .arg(config)
        .args(["--service", "from-flag"])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_then_restart_is_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let collector = Collector::start().await;
    let config_path = dir.path().join("agent.toml");
    std::fs::write(&config_path, agent_toml(dir.path(), &collector.url(), &log)).unwrap();
    let total = 6000;
    let writer = write_continuously(&log, total, u64::MAX, Arc::new(AtomicU64::new(0)), |_| {});
    for round in 1..=2u64 {
        let mut child = spawn_binary(&config_path);
        let target = (total * round / 3) as usize;
        collector
            .wait_for(WAIT, "progress before kill -9", |r| count(r, "line ") >= target)
            .await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    let mut child = spawn_binary(&config_path);
    writer.join().unwrap();
    collector
        .wait_for(WAIT, "all lines", |r| count(r, "line ") >= total as usize)
        .await;
    let received = collector.received();
    assert_exactly_once(&received, "line ", total);
    // Flags override the file.
    assert!(received.records.values().all(|r| r.service.name == "from-flag"));
    assert!(
        received
            .records
            .values()
            .all(|r| r.host.as_deref() == Some("node-kill"))
    );
    drop(received);
    // SIGTERM stops the binary gracefully, with exit code 0.
    let status = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
}

/// A CRI line of `content`, split into `P` chunks of 16 KiB as containerd does.
fn cri_lines(content: &str, n: u64) -> String {
    let time = format!("2025-12-07T10:30:{:02}.{:09}Z", n / 1000 % 60, n);
    let bytes = content.as_bytes();
    let chunks: Vec<&[u8]> = bytes.chunks(16 * 1024).collect();
    let mut out = String::new();
    for (i, chunk) in chunks.iter().enumerate() {
        let flag = if i + 1 == chunks.len() { "F" } else { "P" };
        let stream = if n.is_multiple_of(7) { "stderr" } else { "stdout" };
        out.push_str(&format!(
            "{time} {stream} {flag} {}\n",
            std::str::from_utf8(chunk).unwrap()
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cri_files_rotated_by_the_kubelet_are_exactly_once_with_pod_metadata() {
    common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let container = dir.path().join("pods/shop_web-7d4f8b-x2x9z_0f1e2d3c/nginx");
    std::fs::create_dir_all(&container).unwrap();
    let log = container.join("0.log");
    let collector = Collector::start().await;
    // As the DaemonSet reads them: rotated files match too (a file renamed away before the agent
    // opened it is still found), compressed ones are skipped.
    let mut cri = input(&dir.path().join("pods/*/*/*.log*"), "web");
    cri.exclude = vec![dir.path().join("pods/*/*/*.gz").display().to_string()];
    cri.parser = owl_config::ParserKind::Cri;
    cri.instance = String::new();
    let cfg = config(dir.path(), &collector.url(), vec![cri]);
    let shutdown = CancellationToken::new();
    let agent = owl_agent::start(cfg, shutdown.clone()).await.unwrap();

    let total = 1500u64;
    let writer = {
        let log = log.clone();
        std::thread::spawn(move || {
            let mut file = Writer::open(&log);
            for n in 0..total {
                if n > 0 && n % 400 == 0 {
                    // The kubelet renames the file away (it compresses older ones later) and
                    // the runtime reopens the path.
                    std::fs::rename(&log, log.with_extension(format!("log.20251207-10300{}", n / 400)))
                        .unwrap();
                    file = Writer::open(&log);
                }
                // Every 50th line is 40 KiB: the runtime splits it into three chunks.
                let pad = if n % 50 == 0 {
                    "p".repeat(40 * 1024)
                } else {
                    String::new()
                };
                let content = format!(r#"{{"level":"info","msg":"line {n} of the stream","pad":"{pad}"}}"#);
                file.raw(cri_lines(&content, n).as_bytes());
                if n % 20 == 0 {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        })
    };
    writer.join().unwrap();
    collector
        .wait_for(WAIT, "all lines", |r| count(r, "line ") >= total as usize)
        .await;
    {
        let received = collector.received();
        assert_exactly_once(&received, "line ", total);
        let long = received
            .records
            .values()
            .find(|r| r.message == "line 50 of the stream")
            .unwrap();
        let extra = long.extra.as_ref().unwrap();
        assert_eq!(
            extra["pad"].as_str().unwrap().len(),
            40 * 1024,
            "split chunks are joined"
        );
        assert_eq!(extra["kubernetes.namespace"], "shop");
        assert_eq!(extra["kubernetes.pod"], "web-7d4f8b-x2x9z");
        assert_eq!(extra["kubernetes.container"], "nginx");
        assert_eq!(long.service.instance.as_deref(), Some("web-7d4f8b-x2x9z"));
        assert_eq!(long.timestamp.timestamp(), 1_765_103_400, "the runtime's time");
        let later = received
            .records
            .values()
            .find(|r| r.message == "line 1050 of the stream")
            .unwrap();
        assert_eq!(later.timestamp.timestamp(), 1_765_103_401);
        let stderr = received
            .records
            .values()
            .find(|r| r.message == "line 7 of the stream")
            .unwrap();
        assert_eq!(stderr.extra.as_ref().unwrap()["stream"], "stderr");
    }
    shutdown.cancel();
    agent.wait().await.unwrap();
}
