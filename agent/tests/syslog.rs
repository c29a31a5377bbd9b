//! Syslog listeners with the real clients of the machine (util-linux `logger`, syslog-ng
//! forwarding), exactly once over TCP through an agent restart, and back-pressure when the
//! buffer is full.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{Collector, Mode, assert_exactly_once, config};
use owl_config::{Compression, Config, SyslogConfig};
use owl_model::Level;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(30);

fn listener(listen: &str) -> SyslogConfig {
    SyslogConfig {
        listen: listen.to_string(),
        region: "CN".to_string(),
        ..SyslogConfig::default()
    }
}

fn syslog_config(dir: &Path, collector: &Collector, listeners: Vec<SyslogConfig>) -> Config {
    let mut config = config(dir, &collector.url(), Vec::new());
    config.agent.syslog = listeners;
    config.validate().unwrap();
    config
}

fn host_port(address: &str) -> (String, String) {
    let rest = address.split_once("://").unwrap().1;
    let (host, port) = rest.rsplit_once(':').unwrap();
    (host.to_string(), port.to_string())
}

fn logger(args: &[&str]) {
    let out = Command::new("logger")
        .args(args)
        .output()
        .expect("util-linux logger is on every Debian machine");
    assert!(
        out.status.success(),
        "logger {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logger_over_tcp_udp_and_unix_sockets_in_both_formats() {
    let collector = Collector::start().await;
    let dir = tempfile::tempdir().unwrap();
    let dgram = dir.path().join("sock/log");
    let stream = dir.path().join("sock/log-stream");
    let config = syslog_config(
        dir.path(),
        &collector,
        vec![
            listener("tcp://127.0.0.1:0"),
            listener("udp://127.0.0.1:0"),
            listener(&format!("unix://{}", dgram.display())),
            listener(&format!("unix-stream://{}", stream.display())),
        ],
    );
    let shutdown = CancellationToken::new();
    let agent = owl_agent::start(config, shutdown.clone()).await.unwrap();
    let addresses = agent.syslog_addresses().to_vec();
    let (tcp_host, tcp_port) = host_port(&addresses[0]);
    let (udp_host, udp_port) = host_port(&addresses[1]);
    assert!(
        addresses[0].starts_with("tcp://127.0.0.1:") && tcp_port != "0",
        "{addresses:?}"
    );

    let sends: Vec<(&str, Vec<String>)> = vec![
        (
            "tcp-5424",
            vec![
                "--tcp".into(),
                "-n".into(),
                tcp_host.clone(),
                "-P".into(),
                tcp_port.clone(),
                "--rfc5424".into(),
            ],
        ),
        (
            "tcp-3164",
            vec![
                "--tcp".into(),
                "-n".into(),
                tcp_host.clone(),
                "-P".into(),
                tcp_port.clone(),
                "--rfc3164".into(),
            ],
        ),
        (
            "tcp-octet",
            vec![
                "--tcp".into(),
                "--octet-count".into(),
                "-n".into(),
                tcp_host,
                "-P".into(),
                tcp_port,
                "--rfc5424".into(),
            ],
        ),
        (
            "udp-5424",
            vec![
                "--udp".into(),
                "-n".into(),
                udp_host.clone(),
                "-P".into(),
                udp_port.clone(),
                "--rfc5424".into(),
            ],
        ),
        (
            "udp-3164",
            vec![
                "--udp".into(),
                "-n".into(),
                udp_host,
                "-P".into(),
                udp_port,
                "--rfc3164".into(),
            ],
        ),
        (
            "unix-dgram",
            vec!["--udp".into(), "--socket".into(), dgram.display().to_string()],
        ),
        (
            "unix-stream",
            vec!["--tcp".into(), "--socket".into(), stream.display().to_string()],
        ),
    ];
    for (name, args) in &sends {
        let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
        let message = format!("marker {name} payment failed for order 42");
        all.extend([
            "-t",
            "billing",
            "-p",
            "local3.err",
            "--socket-errors=on",
            &message,
        ]);
        logger(&all);
    }
    collector
        .wait_for(WAIT, "a record from every logger", |r| {
            sends.iter().all(|(name, _)| {
                r.records
                    .values()
                    .any(|x| x.message.contains(&format!("marker {name} ")))
            })
        })
        .await;
    {
        let received = collector.received();
        for (name, _) in &sends {
            let record = received
                .records
                .values()
                .find(|x| x.message.contains(&format!("marker {name} ")))
                .unwrap();
            assert_eq!(
                record.message,
                format!("marker {name} payment failed for order 42"),
                "{name}"
            );
            assert_eq!(record.level, Level::Error, "{name}");
            assert_eq!(record.service.name, "billing", "{name}");
            assert_eq!(record.service.region.as_deref(), Some("CN"), "{name}");
            let extra = record.extra.as_ref().unwrap();
            assert_eq!(extra["syslog.facility"], "local3", "{name}");
            assert_eq!(extra["syslog.severity"], "err", "{name}");
            assert!(record.process.is_none() || record.process.is_some_and(|p| p > 0));
            // logger stamps the time: it is the record's, within the last minute.
            let age = chrono::Utc::now() - record.timestamp;
            assert!(
                age < chrono::Duration::seconds(60) && age > chrono::Duration::seconds(-60),
                "{name}: {age}"
            );
            if name.starts_with("tcp") || name.starts_with("udp") {
                assert_eq!(extra["syslog.peer"], "127.0.0.1", "{name}");
                assert!(
                    record
                        .host
                        .as_deref()
                        .is_some_and(|h| !h.is_empty() && h != "test-node"),
                    "{name}"
                );
            } else {
                // syslog(3)'s local format has no host: the agent's is used.
                assert_eq!(record.host.as_deref(), Some("test-node"), "{name}");
            }
        }
    }
    shutdown.cancel();
    agent.wait().await.unwrap();
    assert!(
        !dgram.exists() && !stream.exists(),
        "the sockets are removed on stop"
    );
}

/// A sender that behaves like rsyslog and syslog-ng: it watches its connection and, once the
/// agent has closed its side, stops writing, closes, and reconnects (to the restarted agent) with
/// the messages it did not send yet.
fn send_through_restarts(
    port: Arc<AtomicU64>,
    total: u64,
    sent: Arc<AtomicU64>,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut n = 0;
        let mut connections = 0;
        while n < total {
            let address = format!("127.0.0.1:{}", port.load(Ordering::Relaxed));
            let Ok(mut stream) = TcpStream::connect(&address) else {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            connections += 1;
            stream.set_nonblocking(true).unwrap();
            let octet_counting = connections % 2 == 0;
            while n < total {
                let mut probe = [0u8; 1];
                match stream.read(&mut probe) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => break,
                }
                let message = format!("<14>1 2026-12-02T07:00:00Z sender relay - - - seq {n} of the stream");
                let frame = if octet_counting {
                    format!("{} {message}", message.len())
                } else {
                    format!("{message}\n")
                };
                let mut bytes = frame.as_bytes();
                let mut failed = false;
                while !bytes.is_empty() {
                    match stream.write(bytes) {
                        Ok(written) => bytes = &bytes[written..],
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        Err(_) => {
                            failed = true;
                            break;
                        }
                    }
                }
                assert!(
                    !failed || bytes.len() == frame.len(),
                    "a connection failed in the middle of message {n}"
                );
                if failed {
                    break;
                }
                n += 1;
                sent.store(n, Ordering::Relaxed);
                if n % 10 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            let _ = stream.shutdown(std::net::Shutdown::Write);
        }
        connections
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_tcp_messages_arrive_exactly_once_through_an_agent_restart() {
    let collector = Collector::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = syslog_config(dir.path(), &collector, vec![listener("tcp://127.0.0.1:0")]);
    let shutdown = CancellationToken::new();
    let agent = owl_agent::start(config.clone(), shutdown.clone()).await.unwrap();
    let (_, port) = host_port(&agent.syslog_addresses()[0]);
    let port: u64 = port.parse().unwrap();
    config.agent.syslog[0].listen = format!("tcp://127.0.0.1:{port}");

    const TOTAL: u64 = 10_000;
    let sent = Arc::new(AtomicU64::new(0));
    let sender = send_through_restarts(Arc::new(AtomicU64::new(port)), TOTAL, sent.clone());
    common::wait_until(WAIT, "a third of the messages sent", || {
        sent.load(Ordering::Relaxed) > TOTAL / 3
    })
    .await;
    shutdown.cancel();
    agent.wait().await.unwrap();
    let before_restart = sent.load(Ordering::Relaxed);
    assert!(
        before_restart < TOTAL,
        "the restart should fall in the middle of the stream"
    );

    let shutdown = CancellationToken::new();
    let agent = owl_agent::start(config, shutdown.clone()).await.unwrap();
    let connections = tokio::task::spawn_blocking(move || sender.join().unwrap())
        .await
        .unwrap();
    assert!(connections >= 2, "the sender reconnected after the restart");
    collector
        .settle(WAIT, |r| common::count(r, "seq ") as u64 >= TOTAL)
        .await;
    // A stopped agent has shipped all it had: anything doubled would be there by now.
    shutdown.cancel();
    agent.wait().await.unwrap();
    assert_exactly_once(&collector.received(), "seq ", TOTAL);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_buffer_back_pressures_tcp_senders_and_nothing_is_dropped() {
    let collector = Collector::start().await;
    collector.set_mode(Mode::Down);
    let dir = tempfile::tempdir().unwrap();
    let mut config = syslog_config(dir.path(), &collector, vec![listener("tcp://127.0.0.1:0")]);
    config.agent.buffer.max_bytes = 1024 * 1024;
    config.agent.batch.compression = Compression::None;
    let shutdown = CancellationToken::new();
    let agent = owl_agent::start(config, shutdown.clone()).await.unwrap();
    let address = agent.syslog_addresses()[0]
        .trim_start_matches("tcp://")
        .to_string();

    // 20 MB of messages into a 1 MiB buffer (and the kernel's socket buffers, a few MiB) while
    // the collector is down.
    const TOTAL: u64 = 20_000;
    let sent = Arc::new(AtomicU64::new(0));
    let sender = {
        let sent = sent.clone();
        std::thread::spawn(move || {
            let mut stream = TcpStream::connect(address).unwrap();
            let pad = "p".repeat(1000);
            for n in 0..TOTAL {
                let line = format!("<13>Dec  2 07:00:00 h app: held {n} {pad}\n");
                stream.write_all(line.as_bytes()).unwrap();
                sent.store(n + 1, Ordering::Relaxed);
            }
        })
    };
    // The agent stops reading at the full buffer; the sender is held back, far from done.
    common::wait_until(WAIT, "the reader waiting for room in the buffer", || {
        agent.metrics().snapshot()["buffer_full_waits_total"] > 0
    })
    .await;
    assert!(
        sent.load(Ordering::Relaxed) < TOTAL,
        "every message was taken although the buffer holds a twentieth of them"
    );
    collector.set_mode(Mode::Up);
    tokio::task::spawn_blocking(move || sender.join().unwrap())
        .await
        .unwrap();
    collector
        .settle(WAIT, |r| common::count(r, "held ") as u64 >= TOTAL)
        .await;
    shutdown.cancel();
    agent.wait().await.unwrap();
    assert_exactly_once(&collector.received(), "held ", TOTAL);
}

/// syslog-ng, from Debian's package: installed by `scripts/install-test-peers.sh` when missing
/// (CI runs it first and requires syslog-ng; elsewhere a failed install is reported as a skip).
fn syslog_ng() -> Option<PathBuf> {
    let find = || {
        ["/usr/sbin/syslog-ng", "/usr/bin/syslog-ng"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
    };
    if let Some(path) = find() {
        return Some(path);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/install-test-peers.sh");
    let installed = Command::new("bash")
        .arg(&script)
        .status()
        .is_ok_and(|s| s.success());
    if let (true, Some(path)) = (installed, find()) {
        return Some(path);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "syslog-ng is missing and {} could not install it",
        script.display()
    );
    eprintln!(
        "SKIPPED: syslog-ng is not installed and {} could not install it (it needs root)",
        script.display()
    );
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_ng_forwards_rfc5424_and_rfc3164_to_the_agent() {
    let Some(syslog_ng) = syslog_ng() else { return };
    let collector = Collector::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = syslog_config(
        dir.path(),
        &collector,
        vec![listener("tcp://127.0.0.1:0"), listener("udp://127.0.0.1:0")],
    );
    let shutdown = CancellationToken::new();
    let agent = owl_agent::start(config, shutdown.clone()).await.unwrap();
    let (_, tcp_port) = host_port(&agent.syslog_addresses()[0]);
    let (_, udp_port) = host_port(&agent.syslog_addresses()[1]);

    // Written before syslog-ng starts: a file it has no position for is read from its start.
    const TOTAL: u64 = 1000;
    let input = dir.path().join("app.log");
    {
        let mut file = std::fs::File::create(&input).unwrap();
        for n in 0..TOTAL {
            writeln!(file, "forwarded {n} checkout completed").unwrap();
        }
    }
    let conf = dir.path().join("syslog-ng.conf");
    std::fs::write(
        &conf,
        format!(
            r#"@version: current
options {{ keep-hostname(yes); stats-freq(0); }};
source s_app {{ file("{input}" follow-freq(0.1) flags(no-parse) program-override("shop") default-priority(warning) default-facility(local1)); }};
destination d_5424 {{ syslog("127.0.0.1" port({tcp_port}) transport("tcp")); }};
destination d_3164 {{ network("127.0.0.1" port({udp_port}) transport("udp")); }};
log {{ source(s_app); destination(d_5424); destination(d_3164); }};
"#,
            input = input.display()
        ),
    )
    .unwrap();
    let run = dir.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    let mut daemon = Command::new(&syslog_ng)
        .arg("-F")
        .arg("--no-caps")
        .arg(format!("--cfgfile={}", conf.display()))
        .arg(format!("--persist-file={}", run.join("persist").display()))
        .arg(format!("--pidfile={}", run.join("pid").display()))
        .arg(format!("--control={}", run.join("ctl").display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    collector
        .settle(WAIT, |r| common::count(r, "forwarded ") as u64 >= 2 * TOTAL)
        .await;
    let _ = daemon.kill();
    let output = daemon.wait_with_output().unwrap();
    shutdown.cancel();
    agent.wait().await.unwrap();
    {
        let received = collector.received();
        assert_eq!(
            common::count(&received, "forwarded ") as u64,
            2 * TOTAL,
            "each line once over TCP (RFC 5424) and once over UDP (RFC 3164); syslog-ng said: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        for record in received
            .records
            .values()
            .filter(|r| r.message.starts_with("forwarded "))
        {
            assert_eq!(record.service.name, "shop");
            assert_eq!(record.level, Level::Warn);
            assert_eq!(record.extra.as_ref().unwrap()["syslog.facility"], "local1");
        }
        let counts = common::seq_counts(&received, "forwarded ");
        let not_twice: Vec<_> = counts.iter().filter(|(_, c)| **c != 2).take(30).collect();
        assert!(
            not_twice.is_empty(),
            "every line comes twice, once per transport: {not_twice:?}"
        );
        assert_eq!(counts.len() as u64, TOTAL);
    }
}
