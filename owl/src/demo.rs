//! The demo generator of `owl up --demo`: realistic logs written into files the local agent tails.
//!
//! Requests flow Gateway -> IAM -> Form -> Approval in three regions with one trace id shared by
//! every hop (each hop's span has the previous hop as parent), so the trace API has real trees to
//! show. Alongside: JSON application logs of those services, HTTP access logs of the gateway in
//! nginx combined format, a Python service in the CRM's logging format with Chinese messages,
//! errors with stack traces, slow requests, and a development-environment service for the
//! developer role. Files are rotated by rename when they grow past a limit, as logrotate would.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use owl_config::{InputConfig, MultilineConfig, ParserKind, ReadFrom};
use rand::Rng;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// Files rotate once they exceed this size.
const ROTATE_BYTES: u64 = 32 * 1024 * 1024;

const REGIONS: [&str; 3] = ["CN", "US", "UAE"];
const USERS: [(&str, &str); 5] = [
    ("user-001", "zhangsan"),
    ("user-002", "lisi"),
    ("user-003", "wangwu"),
    ("user-004", "alice"),
    ("user-005", "bob"),
];
const FORM_URLS: [&str; 4] = [
    "/api/v1/forms",
    "/api/v1/forms/submit",
    "/api/v1/forms/42",
    "/api/v1/files/upload",
];
const AGENTS: [&str; 3] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 Version/17.1 Safari/605.1.15",
    "okhttp/4.12.0",
];

/// One demo log file and how the agent should read it.
#[derive(Debug, Clone)]
pub struct DemoFile {
    /// File name inside the demo directory.
    pub name: &'static str,
    /// Service name given to its records.
    pub service: &'static str,
    /// Region given to its records.
    pub region: &'static str,
    /// Environment given to its records.
    pub environment: &'static str,
    /// Parser the agent uses.
    pub parser: ParserKind,
}

/// The files the generator writes.
pub const FILES: [DemoFile; 6] = [
    DemoFile {
        name: "gateway-access.log",
        service: "Gateway",
        region: "CN",
        environment: "production",
        parser: ParserKind::Combined,
    },
    DemoFile {
        name: "iam.log",
        service: "IAM",
        region: "CN",
        environment: "production",
        parser: ParserKind::Json,
    },
    DemoFile {
        name: "form.log",
        service: "Form",
        region: "CN",
        environment: "production",
        parser: ParserKind::Json,
    },
    DemoFile {
        name: "approval.log",
        service: "Approval",
        region: "CN",
        environment: "production",
        parser: ParserKind::Json,
    },
    DemoFile {
        name: "foundation-service.log",
        service: "foundation-service",
        region: "CN",
        environment: "production",
        parser: ParserKind::Python,
    },
    DemoFile {
        name: "report-dev.log",
        service: "Report",
        region: "CN",
        environment: "development",
        parser: ParserKind::Json,
    },
];

/// The agent inputs that tail the demo files in `dir`.
pub fn agent_inputs(dir: &Path) -> Vec<InputConfig> {
    FILES
        .iter()
        .map(|f| InputConfig {
            paths: vec![dir.join(f.name).display().to_string()],
            service: f.service.to_string(),
            region: f.region.to_string(),
            instance: format!("{}-pod-1", f.service.to_ascii_lowercase()),
            environment: f.environment.to_string(),
            parser: f.parser,
            read_from: ReadFrom::Beginning,
            poll_interval_ms: 250,
            multiline: MultilineConfig {
                enabled: f.parser == ParserKind::Python,
                ..MultilineConfig::default()
            },
            ..InputConfig::default()
        })
        .collect()
}

struct Sink {
    path: PathBuf,
    out: BufWriter<File>,
    written: u64,
}

impl Sink {
    fn open(path: PathBuf) -> std::io::Result<Sink> {
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let written = file.metadata()?.len();
        Ok(Sink {
            path,
            out: BufWriter::new(file),
            written,
        })
    }

    fn line(&mut self, line: &str) -> std::io::Result<()> {
        self.out.write_all(line.as_bytes())?;
        self.out.write_all(b"\n")?;
        self.written += line.len() as u64 + 1;
        Ok(())
    }

    fn flush_and_rotate(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        if self.written > ROTATE_BYTES {
            let rotated = self.path.with_extension("log.1");
            std::fs::rename(&self.path, rotated)?;
            *self = Sink::open(self.path.clone())?;
        }
        Ok(())
    }
}

/// The generator's state: a seeded random source and one sink per file.
pub struct Generator {
    rng: StdRng,
    sinks: Vec<Sink>,
    sequence: u64,
}

impl Generator {
    /// Opens (appending) the demo files in `dir`.
    pub fn new(dir: &Path, seed: u64) -> std::io::Result<Generator> {
        std::fs::create_dir_all(dir)?;
        let sinks = FILES
            .iter()
            .map(|f| Sink::open(dir.join(f.name)))
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Generator {
            rng: StdRng::seed_from_u64(seed),
            sinks,
            sequence: 0,
        })
    }

    fn id(&mut self, len: usize) -> String {
        const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        (0..len)
            .map(|_| ALNUM[self.rng.random_range(0..ALNUM.len())] as char)
            .collect()
    }

    fn hex(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| char::from_digit(self.rng.random_range(0..16), 16).expect("digit below 16"))
            .collect()
    }

    /// Writes the log API's own examples at `now`: its trace `CN-1733580000000-a1b2c3d4` (IAM ->
    /// Form -> Approval, the span ids it shows), its LogItem (the failed Form request) and its
    /// database error, so that its curl examples find what they show.
    pub fn seed_examples(&mut self, now: DateTime<Utc>) -> std::io::Result<()> {
        const TRACE: &str = "CN-1733580000000-a1b2c3d4";
        let ts = |offset: i64| owl_model::format_timestamp(&(now + chrono::Duration::milliseconds(offset)));
        let user = json!({"id": "user-001", "name": "zhangsan"});
        let client = json!({"ip": "192.168.1.100", "user_agent": "Mozilla/5.0..."});
        let iam = json!({
            "@timestamp": ts(0), "level": "INFO", "message": "POST /api/v1/auth/verify | 200 | 23ms",
            "trace": {"id": TRACE, "span_id": "IAM-1733580000100-m1n2o3", "parent_span_id": null},
            "http": {"request_id": "1733580000100-iam", "method": "POST", "url": "/api/v1/auth/verify", "status_code": 200, "duration_ms": 23},
            "user": user, "client": client,
            "service": {"name": "IAM", "region": "CN", "instance": "iam-pod-1"},
        });
        let form = json!({
            "@timestamp": ts(23), "level": "ERROR", "message": "POST /api/v1/forms | 500 | 1234ms",
            "trace": {"id": TRACE, "span_id": "FORM-1733580000123-x1y2z3", "parent_span_id": "IAM-1733580000100-m1n2o3"},
            "http": {"request_id": "1733580000123-abc", "method": "POST", "url": "/api/v1/forms", "status_code": 500, "duration_ms": 1234},
            "user": user, "client": client,
            "service": {"name": "Form", "region": "CN", "instance": "form-pod-1"},
            "error": {"type": "InternalServerError", "message": "Database connection failed"},
        });
        let database = json!({
            "@timestamp": ts(23), "level": "ERROR", "message": "Database connection failed",
            "trace": {"id": TRACE, "span_id": "FORM-1733580000123-x1y2z3"},
            "http": {"request_id": "1733580000123-abc", "method": "POST", "url": "/api/v1/forms", "status_code": 500, "duration_ms": 1234},
            "user": user,
            "service": {"name": "Form", "region": "CN", "instance": "form-pod-1"},
            "error": {"type": "DatabaseError", "code": "CONNECTION_REFUSED", "message": "Failed to connect to database",
                      "stack": "Error: Failed to connect...\n    at ..."},
        });
        let approval = json!({
            "@timestamp": ts(100), "level": "INFO", "message": "POST /api/v1/approvals | 200 | 45ms",
            "trace": {"id": TRACE, "span_id": "APPROVAL-1733580000200-p1q2r3", "parent_span_id": "FORM-1733580000123-x1y2z3"},
            "http": {"request_id": "1733580000200-apv", "method": "POST", "url": "/api/v1/approvals", "status_code": 200, "duration_ms": 45},
            "user": user,
            "service": {"name": "Approval", "region": "CN", "instance": "approval-pod-1"},
        });
        self.sinks[1].line(&iam.to_string())?;
        self.sinks[2].line(&form.to_string())?;
        self.sinks[2].line(&database.to_string())?;
        self.sinks[3].line(&approval.to_string())?;
        self.flush()
    }

    /// Writes one user request (four services, one trace) plus background lines at `now`.
    pub fn request(&mut self, now: DateTime<Utc>) -> std::io::Result<()> {
        self.sequence += 1;
        let ms = now.timestamp_millis();
        let region = REGIONS[self.rng.random_range(0..REGIONS.len())];
        let trace_id = format!("{region}-{ms}-{}", self.hex(8));
        let (user_id, user_name) = USERS[self.rng.random_range(0..USERS.len())];
        let url = FORM_URLS[self.rng.random_range(0..FORM_URLS.len())];
        let method = if url.ends_with("42") { "GET" } else { "POST" };
        let ip = format!(
            "192.168.{}.{}",
            self.rng.random_range(0..4),
            self.rng.random_range(2..250)
        );
        let agent = AGENTS[self.rng.random_range(0..AGENTS.len())];
        // About 1 in 40 requests fails, 1 in 25 is slow.
        let failed = self.rng.random_range(0..40) == 0;
        let slow = self.rng.random_range(0..25) == 0;
        let form_ms = if slow {
            self.rng.random_range(2100..6000)
        } else {
            self.rng.random_range(20..300)
        };
        let iam_ms = self.rng.random_range(5..60);
        let approval_ms = self.rng.random_range(10..120);
        let total_ms = iam_ms + form_ms + approval_ms + self.rng.random_range(1..10);
        let status = if failed {
            500
        } else if method == "POST" {
            201
        } else {
            200
        };

        let gateway_span = format!("GATEWAY-{ms}-{}", self.id(6));
        let iam_span = format!("IAM-{}-{}", ms + 1, self.id(6));
        let form_span = format!("FORM-{}-{}", ms + 1 + iam_ms, self.id(6));
        let approval_span = format!("APPROVAL-{}-{}", ms + 1 + iam_ms + form_ms, self.id(6));
        let request_id = format!("{ms}-{}", self.id(6));
        let ts = |offset: i64| owl_model::format_timestamp(&(now + chrono::Duration::milliseconds(offset)));

        let hop = |service: &str, span: &str, parent: &str, offset: i64, op: &str, dur: i64, status: u16| {
            json!({
                "@timestamp": ts(offset),
                "level": if status >= 500 { "ERROR" } else { "INFO" },
                "message": format!("{op} | {status} | {dur}ms"),
                "trace": {"id": trace_id, "span_id": span, "parent_span_id": parent},
                "http": {"request_id": request_id, "method": "POST", "url": op.split_once(' ').map_or(op, |(_, u)| u),
                         "status_code": status, "duration_ms": dur},
                "user": {"id": user_id, "name": user_name},
                "client": {"ip": ip, "user_agent": agent},
                "service": {"name": service, "region": region, "instance": format!("{}-pod-{}", service.to_ascii_lowercase(), 1 + (ms % 3))},
            })
        };

        let iam = hop(
            "IAM",
            &iam_span,
            &gateway_span,
            1,
            "POST /api/v1/auth/verify",
            iam_ms,
            200,
        );
        self.sinks[1].line(&iam.to_string())?;

        let mut form = hop(
            "Form",
            &form_span,
            &iam_span,
            1 + iam_ms,
            &format!("{method} {url}"),
            form_ms,
            status,
        );
        form["http"]["method"] = json!(method);
        if failed {
            form["error"] = json!({
                "type": "DatabaseError",
                "message": "Database connection failed",
                "code": "CONNECTION_REFUSED",
                "stack": "Error: Failed to connect to database\n    at Pool.connect (/app/node_modules/pg/lib/pool.js:45:11)\n    at FormRepository.save (/app/src/forms/form.repository.ts:88:20)\n    at FormService.create (/app/src/forms/form.service.ts:41:31)",
            });
        }
        self.sinks[2].line(&form.to_string())?;
        if slow {
            let warn = json!({
                "@timestamp": ts(1 + iam_ms + form_ms),
                "level": "WARN",
                "message": format!("慢查询: 表单提交耗时 {form_ms}ms, 超过阈值 2000ms"),
                "trace": {"id": trace_id, "span_id": form_span},
                "user": {"id": user_id, "name": user_name},
            });
            self.sinks[2].line(&warn.to_string())?;
        }

        if !failed {
            let approval = hop(
                "Approval",
                &approval_span,
                &form_span,
                1 + iam_ms + form_ms,
                "POST /api/v1/approval/start",
                approval_ms,
                200,
            );
            self.sinks[3].line(&approval.to_string())?;
        }

        // The gateway's access log: nginx combined plus request time, as `log_format` often adds.
        let access = format!(
            "{ip} - {user_name} [{}] \"{method} {url} HTTP/1.1\" {status} {} \"-\" \"{agent}\" {:.3} trace_id={trace_id} span_id={gateway_span}",
            now.format("%d/%b/%Y:%H:%M:%S %z"),
            self.rng.random_range(200..4000),
            total_ms as f64 / 1000.0,
        );
        self.sinks[0].line(&access)?;

        // The CRM's Python service: its logging format, Chinese messages, a traceback now and then.
        if self.sequence.is_multiple_of(3) {
            let local = now.format("%Y-%m-%d %H:%M:%S,%3f");
            let thread = 140_245_000 + self.rng.random_range(0..1000);
            let (level, func, line_no, message) = match self.rng.random_range(0..10) {
                0 => ("ERROR", "login", 45, "用户登录失败：用户名或密码错误".to_string()),
                1 => (
                    "WARNING",
                    "get_customer",
                    112,
                    format!("客户 {} 的资料不完整", self.rng.random_range(1000..9999)),
                ),
                2 => (
                    "INFO",
                    "create_order",
                    77,
                    "订单已创建, status=submitted, currency=IDR".to_string(),
                ),
                _ => ("INFO", "login", 39, format!("用户 {user_name} 登录成功")),
            };
            let line = format!(
                "{local} - foundation_service.api.v1.auth - {level} - [auth.py:{line_no}] - {func}() - [thread:{thread}] - [process:1] - {message}"
            );
            self.sinks[4].line(&line)?;
            if level == "ERROR" && self.sequence.is_multiple_of(2) {
                for tb in [
                    "Traceback (most recent call last):",
                    "  File \"/app/foundation_service/api/v1/auth.py\", line 45, in login",
                    "    user = authenticate(username, password)",
                    "  File \"/app/foundation_service/services/auth.py\", line 88, in authenticate",
                    "    raise AuthenticationError(\"invalid credentials\")",
                    "foundation_service.errors.AuthenticationError: invalid credentials",
                ] {
                    self.sinks[4].line(tb)?;
                }
            }
        }

        // A development service for the developer role, with debug chatter.
        if self.sequence.is_multiple_of(5) {
            let dev = json!({
                "@timestamp": ts(0),
                "level": if self.sequence.is_multiple_of(15) { "ERROR" } else { "DEBUG" },
                "message": format!("report job {} rendered {} rows", self.sequence, self.rng.random_range(10..5000)),
                "service": {"name": "Report", "region": region, "instance": "report-dev-1"},
                "trace": {"id": format!("{region}-{ms}-{}", self.hex(8))},
            });
            self.sinks[5].line(&dev.to_string())?;
        }
        Ok(())
    }

    /// Flushes every file and rotates the ones that grew past the limit.
    pub fn flush(&mut self) -> std::io::Result<()> {
        for sink in &mut self.sinks {
            sink.flush_and_rotate()?;
        }
        Ok(())
    }
}

/// Runs the generator until `shutdown`: `rate` requests a second.
pub async fn run(dir: PathBuf, rate: u32, shutdown: CancellationToken) -> std::io::Result<()> {
    let mut generator = Generator::new(&dir, rand::rng().random())?;
    // The seed examples once per data directory: a restart does not write them again.
    let marker = dir.join(".seed-examples-written");
    if !marker.exists() {
        generator.seed_examples(Utc::now())?;
        std::fs::write(&marker, b"")?;
    }
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let per_tick = (rate / 5).max(1);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {
                let now = Utc::now();
                for i in 0..per_tick {
                    generator.request(now + chrono::Duration::milliseconds(i64::from(i) * 200 / i64::from(per_tick)))?;
                }
                generator.flush()?;
            }
        }
    }
    generator.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_parseable_linked_logs() {
        let dir = tempfile::tempdir().unwrap();
        let mut generator = Generator::new(dir.path(), 7).unwrap();
        let start = Utc::now();
        for i in 0..200 {
            generator
                .request(start + chrono::Duration::milliseconds(i * 10))
                .unwrap();
        }
        generator.flush().unwrap();

        let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
        let mut traces = std::collections::HashMap::<String, Vec<String>>::new();
        for name in ["iam.log", "form.log", "approval.log", "report-dev.log"] {
            for line in read(name).lines() {
                let record = owl_model::LogRecord::from_json_slice(line.as_bytes(), start).unwrap();
                if let Some(id) = record.trace_id() {
                    traces
                        .entry(id.to_string())
                        .or_default()
                        .push(record.service.name.clone());
                }
            }
        }
        // Every request's trace is shared by IAM and Form at least.
        let linked = traces
            .values()
            .filter(|s| s.contains(&"IAM".to_string()) && s.contains(&"Form".to_string()))
            .count();
        assert!(linked >= 190, "only {linked} linked traces");
        let form = read("form.log");
        assert!(form.contains("DatabaseError"), "some requests fail");
        assert!(form.contains("慢查询"), "some requests are slow");
        let access = read("gateway-access.log");
        assert_eq!(access.lines().count(), 200);
        assert!(
            access
                .lines()
                .all(|l| l.contains("\" 200 ") || l.contains("\" 201 ") || l.contains("\" 500 "))
        );
        let python = read("foundation-service.log");
        assert!(python.contains("foundation_service.api.v1.auth") && python.contains("登录"));
        assert_eq!(agent_inputs(dir.path()).len(), FILES.len());
    }
}
