//! From file lines to shipped records through the whole agent: multiline, every parser on
//! realistic samples, masking of every rule, bad input files, host metrics, heartbeats and the
//! agent's own `/metrics`.

mod common;

use std::time::Duration;

use common::{Collector, Writer, config, input};
use owl_config::{InputConfig, ParserKind, ReadFrom};
use owl_model::{Kind, Level, LogRecord};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(30);

fn find<'a>(records: &'a [LogRecord], needle: &str) -> &'a LogRecord {
    records
        .iter()
        .find(|r| r.message.contains(needle))
        .unwrap_or_else(|| {
            panic!(
                "no record with {needle:?} among {:#?}",
                records.iter().map(|r| &r.message).collect::<Vec<_>>()
            )
        })
}

async fn run_with(inputs: Vec<InputConfig>, dir: &std::path::Path, expect: usize) -> Vec<LogRecord> {
    let collector = Collector::start().await;
    let cfg = config(dir, &collector.url(), inputs);
    let shutdown = CancellationToken::new();
    let agent = owl_agent::start(cfg, shutdown.clone()).await.unwrap();
    collector
        .wait_for(WAIT, "records", |r| r.records.len() >= expect)
        .await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    shutdown.cancel();
    agent.wait().await.unwrap();
    let received = collector.received();
    assert_eq!(received.records.len(), expect, "{:#?}", received.messages());
    received.records.values().cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multiline_records_are_joined() {
    common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let py = dir.path().join("py.log");
    let java = dir.path().join("java.log");
    std::fs::write(
        &py,
        "2025-01-01 12:00:00,100 - app.views - ERROR - request failed\n\
         Traceback (most recent call last):\n  File \"/app/views.py\", line 10, in get\n    return 1 / 0\n\
         ZeroDivisionError: division by zero\n\
         2025-01-01 12:00:01,000 - app.views - INFO - next request ok\n",
    )
    .unwrap();
    std::fs::write(
        &java,
        "[2025-01-01T12:00:00Z] ERROR c.e.OrderService - order failed\n\
         java.lang.IllegalStateException: stock is negative\n\tat com.example.OrderService.place(OrderService.java:42)\n\
         Caused by: java.sql.SQLException: deadlock\n\tat com.example.Db.run(Db.java:7)\n\t... 3 more\n\
         [2025-01-01T12:00:02Z] INFO c.e.OrderService - retry ok\n",
    )
    .unwrap();
    let mut java_input = input(&java, "orders");
    java_input.multiline.start_pattern = r"^\[\d{4}-".to_string();
    let records = run_with(vec![input(&py, "web"), java_input], dir.path(), 4).await;

    let failed = find(&records, "request failed");
    assert_eq!(failed.level, Level::Error);
    assert!(
        failed
            .exception
            .as_deref()
            .unwrap()
            .ends_with("ZeroDivisionError: division by zero")
    );
    assert_eq!(
        failed.error.as_ref().unwrap().error_type.as_deref(),
        Some("ZeroDivisionError")
    );
    assert_eq!(failed.logger.as_deref(), Some("app.views"));
    // The last record of the file is flushed by the multiline timeout.
    assert_eq!(find(&records, "next request ok").level, Level::Info);
    let order = find(&records, "order failed");
    assert!(
        order
            .message
            .contains("Caused by: java.sql.SQLException: deadlock\n\tat com.example.Db.run")
    );
    assert!(order.message.ends_with("\t... 3 more"));
    assert_eq!(order.level, Level::Error);
    assert!(
        find(&records, "retry ok")
            .message
            .starts_with("[2025-01-01T12:00:02Z]")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_parser_on_realistic_samples() {
    common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    std::fs::write(
        path("api.json"),
        concat!(
            r#"{"@timestamp":"2025-12-07T10:30:00.123Z","level":"ERROR","message":"POST /api/v1/forms | 500 | 1234ms","trace":{"id":"CN-1733580000000-a1b2c3d4","span_id":"FORM-1733580000123-x1y2z3"},"http":{"request_id":"1733580000123-abc","method":"POST","url":"/api/v1/forms","status_code":500,"duration_ms":1234},"user":{"id":"user-001","name":"zhangsan"},"client":{"ip":"192.168.1.100","user_agent":"Mozilla/5.0"},"service":{"name":"Form","region":"CN","instance":"form-pod-1"},"error":{"type":"InternalServerError","message":"Database connection failed"}}"#,
            "\n",
            r#"{"ts":1733580000456,"severity":"warn","msg":"slow query","traceId":"CN-1733580000000-a1b2c3d4","duration_ms":812.5,"db":"orders"}"#,
            "\n",
        ),
    )
    .unwrap();
    std::fs::write(
        path("crm.log"),
        "2025-01-01 12:00:00,123 - foundation_service.api.v1.auth - ERROR - [1:12345] /app/foundation_service/api/v1/auth.py:45 auth.login - 用户登录失败：用户名或密码错误\n\
         WARNING:root:disk almost full\n",
    )
    .unwrap();
    std::fs::write(
        path("access.log"),
        "192.168.1.100 - alice [07/Dec/2025:18:30:00 +0800] \"GET /api/v1/logs/query?level=ERROR HTTP/1.1\" 200 5123 \"-\" \"curl/8.5.0\" 0.042\n",
    )
    .unwrap();
    std::fs::write(
        path("custom.log"),
        "2025-06-01T08:00:00Z|WARN|CN-1-abc|quota almost used|tenant=acme\n",
    )
    .unwrap();
    std::fs::write(path("plain.log"), "just a line that matches nothing\n").unwrap();

    let with = |file: &str, service: &str, parser: ParserKind| InputConfig {
        parser,
        ..input(&path(file), service)
    };
    let mut custom = with("custom.log", "quota", ParserKind::Regex);
    custom.regex =
        r"^(?P<time>[^|]+)\|(?P<level>\w+)\|(?P<trace_id>[^|]+)\|(?P<message>[^|]+)\|tenant=(?P<tenant>\w+)$"
            .to_string();
    let inputs = vec![
        with("api.json", "api", ParserKind::Json),
        with("crm.log", "foundation-service", ParserKind::Python),
        with("access.log", "gateway", ParserKind::Combined),
        custom,
        with("plain.log", "misc", ParserKind::Auto),
    ];
    let records = run_with(inputs, dir.path(), 7).await;

    let form = find(&records, "POST /api/v1/forms");
    assert_eq!(
        owl_model::format_timestamp(&form.timestamp),
        "2025-12-07T10:30:00.123Z"
    );
    assert_eq!(form.trace_id(), Some("CN-1733580000000-a1b2c3d4"));
    assert_eq!(form.status_code(), Some(500));
    assert_eq!(form.service.name, "Form", "the record's own service wins");
    assert_eq!(form.service.instance.as_deref(), Some("form-pod-1"));
    assert_eq!(form.kind, Kind::Error);
    assert_eq!(form.host.as_deref(), Some("test-node"));
    assert_eq!(form.environment.as_deref(), Some("production"));
    assert_eq!(form.id.len(), 32);

    let slow = find(&records, "slow query");
    assert_eq!(slow.level, Level::Warn);
    assert_eq!(
        owl_model::format_timestamp(&slow.timestamp),
        "2024-12-07T14:00:00.456Z"
    );
    assert_eq!(slow.duration_ms(), Some(812.5));
    assert_eq!(slow.extra.as_ref().unwrap()["db"], "orders");
    assert_eq!(slow.service.name, "api");
    assert_eq!(slow.service.region.as_deref(), Some("CN"));

    let login = find(&records, "用户登录失败");
    assert_eq!(login.logger.as_deref(), Some("foundation_service.api.v1.auth"));
    assert_eq!(
        (login.function.as_deref(), login.line, login.module.as_deref()),
        (Some("login"), Some(45), Some("auth"))
    );
    assert_eq!((login.thread, login.process), (Some(12345), Some(1)));
    assert_eq!(
        login.file.as_deref(),
        Some("/app/foundation_service/api/v1/auth.py")
    );
    assert_eq!(find(&records, "disk almost full").level, Level::Warn);

    let access = find(&records, "GET /api/v1/logs/query");
    assert_eq!(access.kind, Kind::Http);
    assert_eq!(access.duration_ms(), Some(42.0));
    assert_eq!(
        access.client.as_ref().unwrap().ip.as_deref(),
        Some("192.168.1.100")
    );
    assert_eq!(access.message, "GET /api/v1/logs/query?level=ERROR | 200 | 42ms");

    let quota = find(&records, "quota almost used");
    assert_eq!((quota.level, quota.trace_id()), (Level::Warn, Some("CN-1-abc")));
    assert_eq!(quota.extra.as_ref().unwrap()["tenant"], "acme");

    let plain = find(&records, "matches nothing");
    assert_eq!((plain.level, plain.kind), (Level::Info, Kind::Application));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_masking_rule_applies_before_records_leave() {
    common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
    let secrets = [
        ("password=", "hunter2"),
        ("passwd=", "letmein1"),
        ("secret=", "s3cr3tvalue"),
        ("token=", "tok-abc-123"),
        ("access_token=", "at-zz9"),
        ("refresh_token=", "rt-yy8"),
        ("Authorization: Bearer ", "abcdefghijklmnop"),
        ("api_key=", "key-5551"),
        ("cookie=", "sid-77"),
        ("bearer ", "qwertyuiopasdf"),
        ("jwt ", jwt),
        ("id ", "110101199003074514"),
        ("card ", "4111 1111 1111 1111"),
    ];
    let mut writer = Writer::open(&log);
    for (i, (prefix, secret)) in secrets.iter().enumerate() {
        writer.line(&format!("case {i} {prefix}{secret} end"));
    }
    writer.line(
        r#"{"msg":"case json","user":{"name":"bob"},"password":"pw-json","nested":{"api_key":"k-json"}}"#,
    );
    drop(writer);
    let records = run_with(vec![input(&log, "auth")], dir.path(), secrets.len() + 1).await;
    let shipped = serde_json::to_string(&records).unwrap();
    for (_, secret) in secrets {
        assert!(!shipped.contains(secret), "{secret} left the node: {shipped}");
    }
    assert!(!shipped.contains("pw-json") && !shipped.contains("k-json"));
    for i in 0..secrets.len() {
        let record = find(&records, &format!("case {i} "));
        assert!(record.message.contains(owl_model::REDACTED), "{}", record.message);
        assert!(
            record.message.ends_with(" end"),
            "only the secret is masked: {}",
            record.message
        );
    }
    let json = find(&records, "case json");
    assert_eq!(json.extra.as_ref().unwrap()["password"], owl_model::REDACTED);
    assert_eq!(json.user.as_ref().unwrap().name.as_deref(), Some("bob"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_files_are_survived_and_counted() {
    common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("binary.log");
    let long = dir.path().join("long.log");
    let latin = dir.path().join("latin.log");
    // Binary garbage with NUL runs, then a normal line.
    let mut garbage: Vec<u8> = (0..20_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    garbage.extend_from_slice(&[0; 4096]);
    garbage.extend_from_slice(b"\nafter binary\n");
    std::fs::write(&binary, garbage).unwrap();
    // A 10 MiB line between two normal ones.
    let mut content = b"before long\n".to_vec();
    content.extend(std::iter::repeat_n(b'y', 10 * 1024 * 1024));
    content.extend_from_slice(b"\nafter long\n");
    std::fs::write(&long, content).unwrap();
    // Latin-1 text: invalid UTF-8.
    std::fs::write(&latin, b"caf\xe9 cr\xe8me\nafter latin\n").unwrap();
    let mut inputs = vec![
        input(&binary, "bin"),
        input(&long, "long"),
        input(&latin, "latin"),
    ];
    for i in &mut inputs {
        i.multiline.enabled = false;
    }

    let collector = Collector::start().await;
    let cfg = config(dir.path(), &collector.url(), inputs);
    let shutdown = CancellationToken::new();
    let agent = owl_agent::start(cfg, shutdown.clone()).await.unwrap();
    collector
        .wait_for(WAIT, "lines after the bad ones", |r| {
            ["after binary", "after long", "after latin"]
                .iter()
                .all(|m| r.records.values().any(|x| x.message == *m))
        })
        .await;
    let snapshot = agent.metrics().snapshot();
    shutdown.cancel();
    agent.wait().await.unwrap();
    assert_eq!(snapshot["lines_truncated_total"], 1);
    assert!(snapshot["nul_bytes_total"] >= 4096);
    assert!(snapshot["lines_invalid_utf8_total"] >= 2);
    let received = collector.received();
    let records: Vec<&LogRecord> = received.records.values().collect();
    let long = records
        .iter()
        .find(|r| r.service.name == "long" && r.message.starts_with("yyy"))
        .unwrap();
    assert_eq!(long.message.len(), 256 * 1024);
    let extra = long.extra.as_ref().unwrap();
    assert_eq!(
        (extra["owl_truncated"].as_bool(), extra["owl_line_bytes"].as_u64()),
        (Some(true), Some(10 * 1024 * 1024))
    );
    let latin = records.iter().find(|r| r.message.starts_with("caf")).unwrap();
    assert_eq!(latin.message, "caf\u{fffd} cr\u{fffd}me");
    assert_eq!(latin.extra.as_ref().unwrap()["owl_invalid_utf8"], true);
    assert!(
        records
            .iter()
            .filter(|r| r.service.name == "bin")
            .all(|r| !r.message.contains('\0'))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_metrics_heartbeats_and_the_metrics_endpoint() {
    common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    std::fs::write(&log, "hello\n").unwrap();
    let collector = Collector::start().await;
    let mut cfg = config(dir.path(), &collector.url(), vec![input(&log, "web")]);
    cfg.agent.host_metrics_interval_s = 1;
    cfg.agent.heartbeat_interval_s = 1;
    cfg.agent.region = "CN".to_string();
    let shutdown = CancellationToken::new();
    let agent = owl_agent::start(cfg, shutdown.clone()).await.unwrap();
    collector
        .wait_for(WAIT, "a sample and two heartbeats", |r| {
            !r.metrics.is_empty() && r.heartbeats.len() >= 2
        })
        .await;
    {
        let received = collector.received();
        let sample = &received.metrics[0];
        assert_eq!(sample.host, "test-node");
        assert_eq!(sample.region.as_deref(), Some("CN"));
        assert!((0.0..=100.0).contains(&sample.cpu_percent) && sample.memory_percent > 0.0);
        let beat = received.heartbeats.last().unwrap();
        assert_eq!(beat.services, ["web"]);
        assert_eq!(beat.version, env!("CARGO_PKG_VERSION"));
        assert!(beat.counters["lines_read_total"] >= 1);
        assert!(!beat.agent_id.is_empty());
    }
    let url = format!("http://{}/metrics", agent.metrics_addr().unwrap());
    let text = reqwest::get(&url).await.unwrap().text().await.unwrap();
    assert!(
        text.contains("# TYPE owl_agent_records_shipped_total counter"),
        "{text}"
    );
    assert!(text.contains("owl_agent_lines_read_total 1\n"), "{text}");
    assert!(text.contains("owl_agent_file_lag_bytes{path="), "{text}");
    shutdown.cancel();
    agent.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_from_end_skips_what_was_there_but_not_what_comes_next() {
    common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    std::fs::write(&log, "old 1\nold 2\n").unwrap();
    let collector = Collector::start().await;
    let mut app = input(&dir.path().join("*.log"), "web");
    app.read_from = ReadFrom::End;
    let cfg = config(dir.path(), &collector.url(), vec![app]);
    let shutdown = CancellationToken::new();
    let agent = owl_agent::start(cfg, shutdown.clone()).await.unwrap();
    common::wait_until(WAIT, "file tracked", || {
        agent.metrics().snapshot()["files_tracked"] == 2 - 1
    })
    .await;
    Writer::open(&log).line("new 1");
    // A file created later is read from its start.
    std::fs::write(dir.path().join("later.log"), "new 2\n").unwrap();
    collector
        .wait_for(WAIT, "new lines", |r| r.records.len() >= 2)
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut messages = collector.received().messages();
    messages.sort();
    assert_eq!(messages, ["new 1", "new 2"]);
    shutdown.cancel();
    agent.wait().await.unwrap();
}
