//! Helpers of the log API tests: records, a generated dataset whose answers the tests compute
//! themselves, users of each role, a real server.

#![allow(dead_code)]

use std::time::Duration;

use chrono::{DateTime, Utc};
use owl_index::Index;
use owl_model::{Level, LogRecord};
use serde_json::{Value, json};

use crate::common::TestEnv;

/// A record from JSON (`@timestamp` and the rest in the log API's shape).
pub fn record(value: Value) -> LogRecord {
    LogRecord::from_json_value(value, Utc::now()).expect("test record parses")
}

/// Adds and commits records.
pub async fn ingest(index: &Index, records: Vec<LogRecord>) {
    let index = index.clone();
    tokio::task::spawn_blocking(move || {
        index.add(&records).unwrap();
        index.commit().unwrap();
    })
    .await
    .unwrap();
}

pub fn ts(at: &DateTime<Utc>) -> String {
    owl_model::format_timestamp(at)
}

/// Percent-encodes a query value.
pub fn enc(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// A small deterministic generator.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

pub const SERVICES: &[&str] = &["Form", "IAM", "Approval"];
pub const REGIONS: &[&str] = &["CN", "US", "UAE"];
pub const PATHS: &[&str] = &[
    "/api/v1/forms",
    "/api/v1/forms/submit",
    "/api/v1/auth/verify",
    "/api/v1/reports/generate",
];
pub const ERROR_TYPES: &[&str] = &["DatabaseError", "ValidationError", "AuthenticationError"];
pub const MESSAGES: &[&str] = &[
    "Database connection failed",
    "用户登录失败：用户名或密码错误",
    "Form submitted",
    "审批流程已启动",
    "cache miss for key",
];

/// `n` records spread over the 50 minutes before `end`, one millisecond apart at least, in every
/// service, region, environment and level, about half of them HTTP requests (some slow), some with
/// errors, users and traces.
pub fn dataset(n: usize, end: DateTime<Utc>, seed: u64) -> Vec<LogRecord> {
    let mut rng = Rng::new(seed);
    let start = end - chrono::Duration::minutes(50);
    let step_ms = (50 * 60 * 1000 / n as i64).max(1);
    (0..n)
        .map(|i| {
            let at = start + chrono::Duration::milliseconds(i as i64 * step_ms + rng.below(step_ms as u64 / 2 + 1) as i64);
            let level = *rng.pick(&["DEBUG", "INFO", "INFO", "INFO", "WARN", "ERROR"]);
            let mut value = json!({
                "id": format!("rec-{i:05}"),
                "@timestamp": ts(&at),
                "level": level,
                "message": format!("{} #{i}", rng.pick(MESSAGES)),
                "service": { "name": rng.pick(SERVICES), "region": rng.pick(REGIONS), "instance": "pod-1" },
                "environment": rng.pick(&["production", "development", "dev"]),
            });
            if rng.below(2) == 0 {
                let duration = if rng.below(6) == 0 { 2000 + rng.below(6000) } else { 5 + rng.below(1500) };
                let status = if level == "ERROR" { 500 } else { *rng.pick(&[200, 200, 201, 404]) };
                value["http"] = json!({
                    "request_id": format!("req-{i}"),
                    "method": rng.pick(&["GET", "POST"]),
                    "url": format!("{}?page={}", rng.pick(PATHS), rng.below(3)),
                    "status_code": status,
                    "duration_ms": duration,
                });
            }
            if rng.below(3) == 0 {
                value["user"] = json!({ "id": format!("user-{:03}", rng.below(4)), "name": rng.pick(&["zhangsan", "lisi", "Admin"]) });
            }
            if level == "ERROR" && rng.below(4) != 0 {
                value["error"] = json!({
                    "type": rng.pick(ERROR_TYPES),
                    "code": rng.pick(&["CONNECTION_REFUSED", "TIMEOUT"]),
                    "message": rng.pick(&["Connection refused", "Timeout waiting for upstream"]),
                });
            }
            if rng.below(4) == 0 {
                value["trace"] = json!({ "id": format!("CN-17335800{:05}-t{}", rng.below(20), rng.below(20)), "span_id": format!("S-{i}") });
            }
            record(value)
        })
        .collect()
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank - 1]
}

/// Whether a record counts as an error (the log API: ERROR, an error object, or a 5xx).
pub fn is_error(r: &LogRecord) -> bool {
    r.level == Level::Error || r.error.is_some() || r.status_code().is_some_and(|s| s >= 500)
}

/// Ids of `items`.
pub fn ids(items: &Value) -> Vec<String> {
    items
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect()
}

/// The fields a log API error names, in order (`error.errors[].field`).
pub fn error_fields(body: &Value) -> Vec<String> {
    body["error"]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_string())
        .collect()
}

/// Sorts newest first, ties by id (the index's order).
pub fn newest_first(records: &mut [&LogRecord]) {
    records.sort_by(|a, b| b.timestamp.cmp(&a.timestamp).then_with(|| a.id.cmp(&b.id)));
}

/// Creates a user of `role_id` (2 ops, 3 developer) with regions and returns an access token.
pub async fn user(env: &TestEnv, admin: &str, code: &str, role_id: i64, regions: &[&str]) -> String {
    env.create_user(admin, json!({ "user_code": code, "username": code, "password": "Passw0rd", "role_id": role_id, "regions": regions }))
        .await;
    env.login(code, "Passw0rd").await.0
}

/// An HTTP client (reqwest wants a TLS provider chosen even for plain HTTP: Owl's is ring).
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// Polls `check` until it holds or `seconds` pass.
pub async fn eventually<F, Fut>(seconds: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
