//! Tests of [`Index`] against an independent model: a deterministic dataset, and expected answers
//! computed with plain iterators over it. Filter, sort and aggregation tests run three times: all
//! records committed, all in the tail, and half of each, so the tantivy path and the tail path are
//! held to the same answers.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use owl_model::{Client, ErrorInfo, Http, Kind, Level, LogRecord, Service, Trace, User, parse_timestamp};

use super::*;
use crate::{SpanStatus, Usage};

fn ts(s: &str) -> DateTime<Utc> {
    parse_timestamp(s).unwrap()
}

/// A small deterministic generator (64-bit LCG, high bits).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

const MESSAGES: &[&str] = &[
    "用户登录失败：用户名或密码错误",
    "用户登录成功",
    "订单创建成功 order=42",
    "Database connection failed",
    "Connection refused by upstream",
    "cache miss for key ABC",
    "POST /api/v1/forms | 500 | 1234ms",
    "审批流程 Approval started for 表单",
    "Disconnected from broker",
    "x",
];
const SERVICES: &[&str] = &["IAM", "Form", "Approval", "Inventory", ""];
const REGIONS: &[Option<&str>] = &[Some("CN"), Some("US"), Some("UAE"), None];
const ENVIRONMENTS: &[Option<&str>] = &[Some("production"), Some("development"), None];
const URLS: &[&str] = &[
    "/api/v1/forms?page=2",
    "/api/v1/forms",
    "/api/v1/auth/verify",
    "/api/v1/approval/start#x",
    "/api/v1/Reports/generate?Format=CSV",
    "/health",
];
const METHODS: &[&str] = &["GET", "POST", "PUT"];
const STATUSES: &[u16] = &[200, 201, 404, 500, 503];
const ERROR_TYPES: &[&str] = &["DatabaseError", "ValidationError", "AuthenticationError"];
const ERROR_CODES: &[Option<&str>] = &[Some("CONNECTION_REFUSED"), Some("E42"), None];
const ERROR_MESSAGES: &[&str] = &["Failed to connect to database", "Timeout 超时", "Invalid input"];
const USERS: &[(&str, &str)] = &[
    ("user-001", "zhangsan"),
    ("user-002", "Admin"),
    ("user-003", "李四"),
];
const FILES: &[&str] = &[
    "/app/foundation_service/api/v1/auth.py",
    "/app/orders/Workflow.py",
    "main.rs",
];
const FUNCTIONS: &[&str] = &["login", "create_order", "handleLogin", "main"];
const MODULES: &[Option<&str>] = &[Some("auth"), Some("orders"), None];
const HOSTS: &[&str] = &["node-1", "node-2"];

/// Records from 2025-12-06 20:00 UTC over about two days: two midnights.
fn dataset() -> Vec<LogRecord> {
    let mut rng = Rng(7);
    let mut at = ts("2025-12-06T20:00:00Z");
    let mut records = Vec::new();
    for i in 0..480 {
        // Some records share a timestamp, so the id tie-break matters.
        if !rng.chance(15) {
            at += Duration::milliseconds(rng.below(800_000) as i64 + 1);
        }
        let level = *rng.pick(&Level::ALL);
        let mut record = LogRecord {
            id: format!("r{:04}", (i * 7919) % 10_000),
            timestamp: at,
            level,
            message: rng.pick(MESSAGES).to_string(),
            host: Some(rng.pick(HOSTS).to_string()),
            environment: rng.pick(ENVIRONMENTS).map(str::to_string),
            service: Service {
                name: rng.pick(SERVICES).to_string(),
                region: rng.pick(REGIONS).map(str::to_string),
                instance: Some("pod-1".into()),
            },
            trace: Some(Trace {
                id: format!("CN-trace-{}", i / 4),
                span_id: Some(format!("span-{i}")),
                parent_span_id: (i % 4 != 0).then(|| format!("span-{}", i - 1)),
                span: None,
            }),
            module: rng.pick(MODULES).map(str::to_string),
            ..LogRecord::default()
        };
        if rng.chance(60) {
            record.http = Some(Http {
                request_id: Some(format!("req-{i}")),
                method: Some(rng.pick(METHODS).to_string()),
                url: Some(rng.pick(URLS).to_string()),
                status_code: Some(*rng.pick(STATUSES)),
                duration_ms: rng
                    .chance(90)
                    .then(|| rng.below(5000) as f64 + (rng.below(4) as f64) * 0.25),
            });
        }
        if rng.chance(20) {
            record.error = Some(ErrorInfo {
                error_type: Some(rng.pick(ERROR_TYPES).to_string()),
                message: Some(rng.pick(ERROR_MESSAGES).to_string()),
                code: rng.pick(ERROR_CODES).map(str::to_string),
                stack: None,
            });
        }
        if rng.chance(50) {
            let (id, name) = *rng.pick(USERS);
            record.user = Some(User {
                id: Some(id.into()),
                name: Some(name.into()),
            });
            record.client = Some(Client {
                ip: Some("192.168.1.100".into()),
                user_agent: None,
            });
        }
        if rng.chance(40) {
            record.file = Some(rng.pick(FILES).to_string());
            record.function = Some(rng.pick(FUNCTIONS).to_string());
        }
        record.kind = record.classify();
        records.push(record);
    }
    records
}

#[derive(Debug, Clone, Copy)]
enum Mode {
    /// Everything committed, several segments per partition.
    Committed,
    /// Everything in the tail.
    Tail,
    /// The first half committed, the second in the tail.
    Mixed,
    /// Committed, then every fifth record re-sent and committed again: segments with deleted
    /// documents, which tantivy collects one document at a time instead of in blocks.
    Resent,
}

const MODES: [Mode; 4] = [Mode::Committed, Mode::Tail, Mode::Mixed, Mode::Resent];

fn settings() -> IndexSettings {
    IndexSettings {
        writer_memory_bytes: 15_000_000,
        max_open_writers: 16,
        ..IndexSettings::default()
    }
}

fn loaded(mode: Mode, records: &[LogRecord]) -> (tempfile::TempDir, Index) {
    let dir = tempfile::tempdir().unwrap();
    let index = Index::open(dir.path(), settings()).unwrap();
    match mode {
        Mode::Committed => {
            // Several commits make several segments per partition.
            for chunk in records.chunks(100) {
                index.add(chunk).unwrap();
                index.commit().unwrap();
            }
        }
        Mode::Tail => index.add(records).unwrap(),
        Mode::Resent => {
            index.add(records).unwrap();
            index.commit().unwrap();
            let resent: Vec<LogRecord> = records.iter().step_by(5).cloned().collect();
            index.add(&resent).unwrap();
            index.commit().unwrap();
        }
        Mode::Mixed => {
            let (first, second) = records.split_at(records.len() / 2);
            index.add(first).unwrap();
            index.commit().unwrap();
            index.add(second).unwrap();
        }
    }
    (dir, index)
}

fn ids(records: &[LogRecord]) -> BTreeSet<String> {
    records.iter().map(|r| r.id.clone()).collect()
}

fn all_hits(index: &Index, filter: &LogFilter) -> SearchResponse {
    index
        .search(&SearchRequest {
            filter: filter.clone(),
            limit: 1000,
            ..SearchRequest::default()
        })
        .unwrap()
}

fn ilike(haystack: Option<&str>, needle: &str) -> bool {
    haystack.is_some_and(|h| h.to_lowercase().contains(&needle.to_lowercase()))
}

fn duration(r: &LogRecord) -> Option<f64> {
    r.duration_ms()
}

fn url(r: &LogRecord) -> Option<&str> {
    r.http.as_ref().and_then(|h| h.url.as_deref())
}

fn error_message(r: &LogRecord) -> Option<&str> {
    r.error.as_ref().and_then(|e| e.message.as_deref())
}

fn user_name(r: &LogRecord) -> Option<&str> {
    r.user.as_ref().and_then(|u| u.name.as_deref())
}

type Case = (&'static str, LogFilter, Box<dyn Fn(&LogRecord) -> bool>);

fn filter_cases(records: &[LogRecord]) -> Vec<Case> {
    let f = LogFilter::default;
    let request_id = records
        .iter()
        .find_map(|r| r.http.as_ref()?.request_id.clone())
        .unwrap();
    let wanted_request_id = request_id.clone();
    let s = |v: &str| Some(v.to_string());
    vec![
        (
            "time range",
            LogFilter::between(ts("2025-12-06T23:00:00Z"), ts("2025-12-07T01:30:00Z")),
            Box::new(|r: &LogRecord| {
                r.timestamp >= ts("2025-12-06T23:00:00Z") && r.timestamp < ts("2025-12-07T01:30:00Z")
            }),
        ),
        (
            "start only",
            LogFilter {
                start: Some(ts("2025-12-07T12:00:00Z")),
                ..f()
            },
            Box::new(|r: &LogRecord| r.timestamp >= ts("2025-12-07T12:00:00Z")),
        ),
        (
            "end only",
            LogFilter {
                end: Some(ts("2025-12-07T00:00:00Z")),
                ..f()
            },
            Box::new(|r: &LogRecord| r.timestamp < ts("2025-12-07T00:00:00Z")),
        ),
        (
            "levels",
            LogFilter {
                levels: vec![Level::Error, Level::Warn],
                ..f()
            },
            Box::new(|r: &LogRecord| matches!(r.level, Level::Error | Level::Warn)),
        ),
        (
            "services",
            LogFilter {
                services: vec!["Form".into(), "IAM".into()],
                ..f()
            },
            Box::new(|r: &LogRecord| r.service.name == "Form" || r.service.name == "IAM"),
        ),
        (
            "regions",
            LogFilter {
                regions: vec!["UAE".into()],
                ..f()
            },
            Box::new(|r: &LogRecord| r.service.region.as_deref() == Some("UAE")),
        ),
        (
            "environments",
            LogFilter {
                environments: vec!["production".into()],
                ..f()
            },
            Box::new(|r: &LogRecord| r.environment.as_deref() == Some("production")),
        ),
        (
            "kinds",
            LogFilter {
                kinds: vec![Kind::Http],
                ..f()
            },
            Box::new(|r: &LogRecord| r.kind == Kind::Http),
        ),
        (
            "modules",
            LogFilter {
                modules: vec!["auth".into()],
                ..f()
            },
            Box::new(|r: &LogRecord| r.module.as_deref() == Some("auth")),
        ),
        (
            "hosts",
            LogFilter {
                hosts: vec!["node-2".into()],
                ..f()
            },
            Box::new(|r: &LogRecord| r.host.as_deref() == Some("node-2")),
        ),
        (
            "trace id",
            LogFilter {
                trace_id: s("CN-trace-7"),
                ..f()
            },
            Box::new(|r: &LogRecord| r.trace_id() == Some("CN-trace-7")),
        ),
        (
            "request id",
            LogFilter {
                request_id: Some(request_id),
                ..f()
            },
            Box::new(move |r: &LogRecord| {
                r.http.as_ref().and_then(|h| h.request_id.as_deref()) == Some(wanted_request_id.as_str())
            }),
        ),
        (
            "user id",
            LogFilter {
                user_id: s("user-002"),
                ..f()
            },
            Box::new(|r: &LogRecord| r.user.as_ref().and_then(|u| u.id.as_deref()) == Some("user-002")),
        ),
        (
            "url substring",
            LogFilter {
                url: s("FORMS"),
                ..f()
            },
            Box::new(|r: &LogRecord| ilike(url(r), "forms")),
        ),
        (
            "url in query string",
            LogFilter {
                url: s("format=csv"),
                ..f()
            },
            Box::new(|r: &LogRecord| ilike(url(r), "format=csv")),
        ),
        (
            "url one character",
            LogFilter { url: s("h"), ..f() },
            Box::new(|r: &LogRecord| ilike(url(r), "h")),
        ),
        (
            "keyword cjk",
            LogFilter {
                keyword: s("登录失败"),
                ..f()
            },
            Box::new(|r: &LogRecord| {
                ilike(Some(&r.message), "登录失败")
                    || ilike(error_message(r), "登录失败")
                    || ilike(user_name(r), "登录失败")
            }),
        ),
        (
            "keyword inside a word",
            LogFilter {
                keyword: s("nection"),
                ..f()
            },
            Box::new(|r: &LogRecord| {
                ilike(Some(&r.message), "nection") || ilike(error_message(r), "nection")
            }),
        ),
        (
            "keyword matches user name",
            LogFilter {
                keyword: s("ADMIN"),
                ..f()
            },
            Box::new(|r: &LogRecord| ilike(Some(&r.message), "admin") || ilike(user_name(r), "admin")),
        ),
        (
            "error keyword ignores the user name",
            LogFilter {
                // "in" is in "Admin" (a user) and in "Invalid input" (an error message).
                error_keyword: s("IN"),
                ..f()
            },
            Box::new(|r: &LogRecord| ilike(Some(&r.message), "in") || ilike(error_message(r), "in")),
        ),
        (
            "keyword two characters",
            LogFilter {
                keyword: s("超时"),
                ..f()
            },
            Box::new(|r: &LogRecord| ilike(Some(&r.message), "超时") || ilike(error_message(r), "超时")),
        ),
        (
            "keyword one character",
            LogFilter {
                keyword: s("X"),
                ..f()
            },
            Box::new(|r: &LogRecord| {
                ilike(Some(&r.message), "x") || ilike(error_message(r), "x") || ilike(user_name(r), "x")
            }),
        ),
        (
            "keyword mixed script",
            LogFilter {
                keyword: s("approval STARTED for 表"),
                ..f()
            },
            Box::new(|r: &LogRecord| ilike(Some(&r.message), "approval started for 表")),
        ),
        (
            "keyword nowhere",
            LogFilter {
                keyword: s("nections"),
                ..f()
            },
            Box::new(|_: &LogRecord| false),
        ),
        (
            "message only",
            LogFilter {
                message: s("connect"),
                ..f()
            },
            Box::new(|r: &LogRecord| ilike(Some(&r.message), "connect")),
        ),
        (
            "file",
            LogFilter {
                file: s("AUTH.py"),
                ..f()
            },
            Box::new(|r: &LogRecord| ilike(r.file.as_deref(), "auth.py")),
        ),
        (
            "function",
            LogFilter {
                function: s("login"),
                ..f()
            },
            Box::new(|r: &LogRecord| ilike(r.function.as_deref(), "login")),
        ),
        (
            "error type",
            LogFilter {
                error_type: s("DatabaseError"),
                ..f()
            },
            Box::new(|r: &LogRecord| {
                r.error.as_ref().and_then(|e| e.error_type.as_deref()) == Some("DatabaseError")
            }),
        ),
        (
            "error code",
            LogFilter {
                error_code: s("E42"),
                ..f()
            },
            Box::new(|r: &LogRecord| r.error.as_ref().and_then(|e| e.code.as_deref()) == Some("E42")),
        ),
        (
            "min duration",
            LogFilter {
                min_duration_ms: Some(2000.0),
                ..f()
            },
            Box::new(|r: &LogRecord| duration(r).is_some_and(|d| d >= 2000.0)),
        ),
        (
            "max duration",
            LogFilter {
                max_duration_ms: Some(100.25),
                ..f()
            },
            Box::new(|r: &LogRecord| duration(r).is_some_and(|d| d <= 100.25)),
        ),
        (
            "duration window",
            LogFilter {
                min_duration_ms: Some(500.0),
                max_duration_ms: Some(900.0),
                ..f()
            },
            Box::new(|r: &LogRecord| duration(r).is_some_and(|d| (500.0..=900.0).contains(&d))),
        ),
        (
            "status",
            LogFilter {
                status_code: Some(503),
                ..f()
            },
            Box::new(|r: &LogRecord| r.status_code() == Some(503)),
        ),
        (
            "has error",
            LogFilter {
                has_error: Some(true),
                ..f()
            },
            Box::new(|r: &LogRecord| {
                r.level == Level::Error || r.error.is_some() || r.status_code().is_some_and(|s| s >= 500)
            }),
        ),
        (
            "has no error",
            LogFilter {
                has_error: Some(false),
                ..f()
            },
            Box::new(|r: &LogRecord| {
                !(r.level == Level::Error || r.error.is_some() || r.status_code().is_some_and(|s| s >= 500))
            }),
        ),
        (
            "combined",
            LogFilter {
                start: Some(ts("2025-12-07T00:00:00Z")),
                end: Some(ts("2025-12-08T00:00:00Z")),
                services: vec!["Form".into(), "Approval".into()],
                levels: vec![Level::Info, Level::Error],
                url: s("api"),
                ..f()
            },
            Box::new(|r: &LogRecord| {
                r.timestamp.date_naive() == NaiveDate::from_ymd_opt(2025, 12, 7).unwrap()
                    && (r.service.name == "Form" || r.service.name == "Approval")
                    && matches!(r.level, Level::Info | Level::Error)
                    && ilike(url(r), "api")
            }),
        ),
        (
            "empty values filter nothing",
            LogFilter {
                keyword: s(""),
                trace_id: s(""),
                ..f()
            },
            Box::new(|_: &LogRecord| true),
        ),
        (
            "empty range",
            LogFilter::between(ts("2025-12-07T10:00:00Z"), ts("2025-12-07T10:00:00Z")),
            Box::new(|_: &LogRecord| false),
        ),
    ]
}

#[test]
fn every_filter_matches_the_model_in_every_mode() {
    let records = dataset();
    for mode in MODES {
        let (_dir, index) = loaded(mode, &records);
        for (name, filter, model) in filter_cases(&records) {
            let expected: BTreeSet<String> = records
                .iter()
                .filter(|r| model(r))
                .map(|r| r.id.clone())
                .collect();
            let found = all_hits(&index, &filter);
            assert_eq!(found.total, expected.len() as u64, "{name} ({mode:?}): total");
            assert_eq!(ids(&found.hits), expected, "{name} ({mode:?}): ids");
            assert_eq!(
                index.count(&filter).unwrap(),
                expected.len() as u64,
                "{name} ({mode:?}): count"
            );
        }
    }
}

#[test]
fn the_dataset_exercises_every_filter() {
    // Guards the test above against vacuous passes: every case but the deliberately empty ones
    // matches something, and none matches everything.
    let records = dataset();
    for (name, _, model) in filter_cases(&records) {
        let matching = records.iter().filter(|r| model(r)).count();
        if matches!(name, "keyword nowhere" | "empty range") {
            assert_eq!(matching, 0, "{name}");
        } else if name == "empty values filter nothing" {
            assert_eq!(matching, records.len());
        } else {
            assert!(
                matching > 0 && matching < records.len(),
                "{name} matches {matching}"
            );
        }
    }
    let days: BTreeSet<NaiveDate> = records.iter().map(|r| r.timestamp.date_naive()).collect();
    assert_eq!(days.len(), 3, "the dataset crosses two midnights");
}

/// The documented order: key (missing last), then timestamp descending, then id ascending.
fn model_order(records: &[LogRecord], by: SortBy, order: SortOrder) -> Vec<String> {
    let mut sorted: Vec<&LogRecord> = records.iter().collect();
    let directed = |o: std::cmp::Ordering| if order == SortOrder::Desc { o.reverse() } else { o };
    sorted.sort_by(|a, b| {
        let primary = match by {
            SortBy::Timestamp => directed(a.timestamp.cmp(&b.timestamp)),
            SortBy::Level => directed(a.level.cmp(&b.level)),
            SortBy::Duration => match (duration(a), duration(b)) {
                (Some(x), Some(y)) => directed(x.total_cmp(&y)),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            },
            SortBy::Service => match (a.service.name.as_str(), b.service.name.as_str()) {
                ("", "") => std::cmp::Ordering::Equal,
                ("", _) => std::cmp::Ordering::Greater,
                (_, "") => std::cmp::Ordering::Less,
                (x, y) => directed(x.cmp(y)),
            },
        };
        primary
            .then_with(|| b.timestamp.cmp(&a.timestamp))
            .then_with(|| a.id.cmp(&b.id))
    });
    sorted.into_iter().map(|r| r.id.clone()).collect()
}

#[test]
fn sorting_and_paging_follow_the_model_in_every_mode() {
    let records = dataset();
    let filter = LogFilter {
        start: Some(ts("2025-12-06T22:00:00Z")),
        ..LogFilter::default()
    };
    let subset: Vec<LogRecord> = records
        .iter()
        .filter(|r| r.timestamp >= ts("2025-12-06T22:00:00Z"))
        .cloned()
        .collect();
    for mode in MODES {
        let (_dir, index) = loaded(mode, &records);
        for by in [
            SortBy::Timestamp,
            SortBy::Level,
            SortBy::Duration,
            SortBy::Service,
        ] {
            for order in [SortOrder::Asc, SortOrder::Desc] {
                let expected = model_order(&subset, by, order);
                let mut paged = Vec::new();
                for page in 0.. {
                    let request = SearchRequest {
                        filter: filter.clone(),
                        sort_by: by,
                        order,
                        offset: page * 37,
                        limit: 37,
                    };
                    let response = index.search(&request).unwrap();
                    assert_eq!(response.total, subset.len() as u64, "{by:?} {order:?} ({mode:?})");
                    if response.hits.is_empty() {
                        break;
                    }
                    paged.extend(response.hits.into_iter().map(|r| r.id));
                }
                assert_eq!(paged, expected, "{by:?} {order:?} ({mode:?})");
            }
        }
    }
}

#[test]
fn filtered_windows_sort_and_page_like_the_model_in_every_mode() {
    // A window with other conditions: the time condition is applied while collecting, and
    // segments outside the window are skipped.
    let records = dataset();
    let (from, to) = (ts("2025-12-06T22:00:00Z"), ts("2025-12-07T09:00:00Z"));
    let filter = LogFilter {
        levels: vec![Level::Info, Level::Error],
        ..LogFilter::between(from, to)
    };
    let subset: Vec<LogRecord> = records
        .iter()
        .filter(|r| r.timestamp >= from && r.timestamp < to && matches!(r.level, Level::Info | Level::Error))
        .cloned()
        .collect();
    assert!(
        subset.len() > 40 && subset.len() < records.len() / 2,
        "{}",
        subset.len()
    );
    for mode in MODES {
        let (_dir, index) = loaded(mode, &records);
        for by in [SortBy::Timestamp, SortBy::Duration, SortBy::Service] {
            for order in [SortOrder::Asc, SortOrder::Desc] {
                let expected = model_order(&subset, by, order);
                let mut paged = Vec::new();
                for page in 0.. {
                    let response = index
                        .search(&SearchRequest {
                            filter: filter.clone(),
                            sort_by: by,
                            order,
                            offset: page * 13,
                            limit: 13,
                        })
                        .unwrap();
                    assert_eq!(response.total, subset.len() as u64, "{by:?} {order:?} ({mode:?})");
                    if response.hits.is_empty() {
                        break;
                    }
                    paged.extend(response.hits.into_iter().map(|r| r.id));
                }
                assert_eq!(paged, expected, "{by:?} {order:?} ({mode:?})");
            }
        }
    }
}

#[test]
fn traces_match_the_model_in_every_mode() {
    let records = dataset();
    let trace_ids: BTreeSet<&str> = records.iter().filter_map(|r| r.trace_id()).collect();
    // Some traces cross a midnight or mix kinds, so they span partitions.
    let spanning = trace_ids
        .iter()
        .filter(|&&id| {
            let keys: BTreeSet<PartitionKey> = records
                .iter()
                .filter(|r| r.trace_id() == Some(id))
                .map(PartitionKey::of)
                .collect();
            keys.len() > 1
        })
        .count();
    assert!(spanning > 10, "{spanning} traces span partitions");
    for mode in MODES {
        let (_dir, index) = loaded(mode, &records);
        for &id in &trace_ids {
            let mut expected: Vec<&LogRecord> = records.iter().filter(|r| r.trace_id() == Some(id)).collect();
            expected.sort_by(|a, b| a.timestamp.cmp(&b.timestamp).then_with(|| a.id.cmp(&b.id)));
            let trace = index.trace(id).unwrap().unwrap();
            let found: Vec<&LogRecord> = trace.records.iter().collect();
            assert_eq!(found, expected, "{id} ({mode:?})");
            assert_eq!(trace.spans.len(), expected.len(), "{id} ({mode:?})");
        }
    }
}

#[test]
fn a_reader_sees_a_restarted_writer() {
    // Readers re-list partitions only when the writer's generation changes, so a new writer must
    // continue its predecessor's generation rather than repeat values a reader has seen.
    let dir = tempfile::tempdir().unwrap();
    let reader = Index::open_reader(dir.path()).unwrap();
    {
        let writer = Index::open(dir.path(), settings()).unwrap();
        writer.add(&[record("a", "2025-12-07T10:00:00Z", "one")]).unwrap();
        writer.commit().unwrap();
        assert_eq!(reader.count(&LogFilter::default()).unwrap(), 1);
        assert_eq!(reader.count(&LogFilter::default()).unwrap(), 1, "nothing changed");
        writer.close().unwrap();
    }
    let writer = Index::open(dir.path(), settings()).unwrap();
    writer.add(&[record("b", "2025-12-09T10:00:00Z", "two")]).unwrap();
    writer.commit().unwrap();
    assert_eq!(
        reader.count(&LogFilter::default()).unwrap(),
        2,
        "finds the new partition"
    );
    writer
        .add(&[record("c", "2025-12-09T11:00:00Z", "three")])
        .unwrap();
    writer.commit().unwrap();
    assert_eq!(
        reader.count(&LogFilter::default()).unwrap(),
        3,
        "reloads the partition"
    );
    assert_eq!(reader.trace("none").unwrap(), None);
}

#[test]
fn hits_are_the_records_as_added() {
    let records = dataset();
    let (_dir, index) = loaded(Mode::Mixed, &records);
    let by_id: BTreeMap<&str, &LogRecord> = records.iter().map(|r| (r.id.as_str(), r)).collect();
    for hit in all_hits(&index, &LogFilter::default()).hits {
        assert_eq!(&&hit, by_id.get(hit.id.as_str()).unwrap());
    }
}

fn nearest_rank(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    Some(sorted[rank - 1])
}

fn count_by<K: Ord>(records: &[&LogRecord], key: impl Fn(&LogRecord) -> Option<K>) -> BTreeMap<K, u64> {
    let mut map = BTreeMap::new();
    for record in records {
        if let Some(k) = key(record) {
            *map.entry(k).or_insert(0) += 1;
        }
    }
    map
}

fn approx(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => (a - b).abs() < 1e-6,
        (None, None) => true,
        _ => false,
    }
}

fn check_stats(
    index: &Index,
    records: &[LogRecord],
    filter: LogFilter,
    model: impl Fn(&LogRecord) -> bool,
    label: &str,
) {
    let request = StatsRequest {
        filter,
        slow_threshold_ms: 3000.0,
        top_paths: 3,
    };
    let stats = index.stats(&request).unwrap();
    let matching: Vec<&LogRecord> = records.iter().filter(|r| model(r)).collect();
    assert_eq!(stats.total, matching.len() as u64, "{label}");
    assert_eq!(
        stats.error_count,
        matching.iter().filter(|r| r.has_error()).count() as u64,
        "{label}"
    );
    for level in Level::ALL {
        assert_eq!(
            stats.level_count(level),
            matching.iter().filter(|r| r.level == level).count() as u64,
            "{label}"
        );
    }
    let non_empty = |s: Option<&str>| s.filter(|s| !s.is_empty()).map(str::to_string);
    assert_eq!(
        stats.by_service,
        count_by(&matching, |r| non_empty(Some(&r.service.name))),
        "{label}"
    );
    assert_eq!(
        stats.by_region,
        count_by(&matching, |r| non_empty(r.service.region.as_deref())),
        "{label}"
    );
    assert_eq!(
        stats.by_module,
        count_by(&matching, |r| non_empty(r.module.as_deref())),
        "{label}"
    );
    assert_eq!(
        stats.by_error_type,
        count_by(&matching, |r| non_empty(
            r.error.as_ref().and_then(|e| e.error_type.as_deref())
        )),
        "{label}"
    );
    assert_eq!(
        stats.services(),
        stats.by_service.keys().cloned().collect::<Vec<_>>()
    );
    assert_eq!(
        stats.modules(),
        vec!["auth".to_string(), "orders".to_string()],
        "{label}"
    );

    let mut durations: Vec<f64> = matching.iter().filter_map(|r| duration(r)).collect();
    durations.sort_by(f64::total_cmp);
    let d = &stats.durations;
    assert_eq!(d.count, durations.len() as u64, "{label}");
    assert!(
        approx(
            d.avg_ms,
            Some(durations.iter().sum::<f64>() / durations.len() as f64)
        ),
        "{label}"
    );
    assert_eq!(d.max_ms, durations.last().copied(), "{label}");
    assert_eq!(d.p95_ms, nearest_rank(&durations, 95.0), "{label}");
    assert_eq!(d.p99_ms, nearest_rank(&durations, 99.0), "{label}");
    assert_eq!(
        stats.slow_count,
        durations.iter().filter(|&&d| d >= 3000.0).count() as u64,
        "{label}"
    );

    for (buckets, width) in [
        (&stats.by_hour, Duration::hours(1)),
        (&stats.by_day, Duration::days(1)),
    ] {
        let mut expected: BTreeMap<i64, Vec<&LogRecord>> = BTreeMap::new();
        for r in &matching {
            let start = r.timestamp.timestamp().div_euclid(width.num_seconds()) * width.num_seconds();
            expected.entry(start).or_default().push(r);
        }
        assert_eq!(buckets.len(), expected.len(), "{label}");
        for (bucket, (start, members)) in buckets.iter().zip(&expected) {
            assert_eq!(bucket.start.timestamp(), *start, "{label}");
            assert_eq!(bucket.count, members.len() as u64, "{label}");
            assert_eq!(
                bucket.error_count,
                members.iter().filter(|r| r.has_error()).count() as u64,
                "{label}"
            );
            let ds: Vec<f64> = members.iter().filter_map(|r| duration(r)).collect();
            assert_eq!(bucket.duration_count, ds.len() as u64, "{label}");
            let mean = (!ds.is_empty()).then(|| ds.iter().sum::<f64>() / ds.len() as f64);
            assert!(approx(bucket.avg_duration_ms, mean), "{label}");
            assert!((bucket.error_rate() - bucket.error_count as f64 / bucket.count as f64).abs() < 1e-12);
        }
    }

    let mut paths: BTreeMap<String, (u64, Vec<f64>)> = BTreeMap::new();
    for r in &matching {
        if let Some(u) = url(r) {
            let path = owl_model::url_path(u).to_string();
            let entry = paths.entry(path).or_default();
            entry.0 += 1;
            entry.1.extend(duration(r));
        }
    }
    let mut expected_paths: Vec<(String, u64, Vec<f64>)> =
        paths.into_iter().map(|(p, (c, d))| (p, c, d)).collect();
    expected_paths.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    expected_paths.truncate(3);
    assert_eq!(stats.top_paths.len(), expected_paths.len(), "{label}");
    for (got, (path, count, ds)) in stats.top_paths.iter().zip(&expected_paths) {
        assert_eq!((&got.path, got.count), (path, *count), "{label}");
        let mean = (!ds.is_empty()).then(|| ds.iter().sum::<f64>() / ds.len() as f64);
        assert!(approx(got.avg_duration_ms, mean), "{label}");
    }
}

#[test]
fn aggregations_match_the_model_in_every_mode() {
    let records = dataset();
    for mode in MODES {
        let (_dir, index) = loaded(mode, &records);
        check_stats(
            &index,
            &records,
            LogFilter::default(),
            |_| true,
            &format!("all ({mode:?})"),
        );
        let start = ts("2025-12-06T23:30:00Z");
        let end = ts("2025-12-07T05:00:00Z");
        check_stats(
            &index,
            &records,
            LogFilter {
                start: Some(start),
                end: Some(end),
                services: vec!["Form".into(), "IAM".into()],
                ..LogFilter::default()
            },
            |r| {
                r.timestamp >= start
                    && r.timestamp < end
                    && (r.service.name == "Form" || r.service.name == "IAM")
            },
            &format!("filtered ({mode:?})"),
        );
    }
}

#[test]
fn substring_search_is_exact_for_cjk_latin_and_short_needles() {
    let dir = tempfile::tempdir().unwrap();
    let index = Index::open(dir.path(), settings()).unwrap();
    let at = ts("2025-01-01T12:00:00Z");
    let texts = [
        ("cjk", "用户登录失败：用户名或密码错误"),
        ("cjk2", "用户登录成功"),
        ("latin", "Database Connection failed"),
        ("mixed", "订单Order创建失败 code=E42"),
        ("short", "ab"),
        ("one", "z"),
    ];
    let records: Vec<LogRecord> = texts
        .iter()
        .map(|(id, message)| LogRecord {
            id: id.to_string(),
            timestamp: at,
            message: message.to_string(),
            ..LogRecord::default()
        })
        .collect();
    index.add(&records).unwrap();
    index.commit().unwrap();
    let search = |keyword: &str| {
        let filter = LogFilter {
            keyword: Some(keyword.to_string()),
            ..LogFilter::default()
        };
        ids(&all_hits(&index, &filter).hits)
            .into_iter()
            .collect::<Vec<_>>()
    };
    assert_eq!(search("登录失败"), vec!["cjk"]);
    assert_eq!(search("登录"), vec!["cjk", "cjk2"]);
    assert_eq!(search("登"), vec!["cjk", "cjk2"]);
    assert_eq!(search("失败"), vec!["cjk", "mixed"]);
    assert_eq!(search("败：用户"), vec!["cjk"], "across punctuation");
    assert_eq!(
        search("登录失败：用户名或密码错误"),
        vec!["cjk"],
        "the whole text"
    );
    assert_eq!(
        search("用户登录失败：用户名或密码错误!"),
        Vec::<String>::new(),
        "longer than the text"
    );
    assert_eq!(search("nection"), vec!["latin"]);
    assert_eq!(search("CONNECTION FAILED"), vec!["latin"]);
    assert_eq!(search("connection  failed"), Vec::<String>::new(), "spaces count");
    assert_eq!(search("nections"), Vec::<String>::new());
    assert_eq!(search("Order创建"), vec!["mixed"]);
    assert_eq!(search("r创"), vec!["mixed"]);
    assert_eq!(search("E42"), vec!["mixed"]);
    assert_eq!(search("AB"), vec!["latin", "short"], "datAbase");
    assert_eq!(search("b"), vec!["latin", "short"]);
    assert_eq!(search("z"), vec!["one"]);
    assert_eq!(
        search("登录成功失败"),
        Vec::<String>::new(),
        "grams present but not in sequence"
    );
    assert_eq!(search("户登录失败败"), Vec::<String>::new());
}

#[test]
fn a_partition_boundary_at_midnight_utc() {
    let dir = tempfile::tempdir().unwrap();
    let index = Index::open(dir.path(), settings()).unwrap();
    let before = LogRecord {
        id: "before".into(),
        timestamp: ts("2025-12-06T23:59:59.999Z"),
        ..LogRecord::default()
    };
    let after = LogRecord {
        id: "after".into(),
        timestamp: ts("2025-12-07T00:00:00.000Z"),
        ..LogRecord::default()
    };
    index.add(&[before, after]).unwrap();
    index.commit().unwrap();
    let keys: Vec<String> = index
        .partitions()
        .unwrap()
        .iter()
        .map(|p| p.key.to_string())
        .collect();
    assert_eq!(keys, vec!["application/2025-12-06", "application/2025-12-07"]);
    assert!(dir.path().join("application/2025-12-06/meta.json").is_file());
    let found = |start: &str, end: &str| {
        let filter = LogFilter::between(ts(start), ts(end));
        all_hits(&index, &filter)
            .hits
            .into_iter()
            .map(|r| r.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        found("2025-12-06T23:00:00Z", "2025-12-07T01:00:00Z"),
        vec!["after", "before"]
    );
    assert_eq!(
        found("2025-12-06T23:00:00Z", "2025-12-07T00:00:00Z"),
        vec!["before"],
        "end is exclusive"
    );
    assert_eq!(
        found("2025-12-07T00:00:00Z", "2025-12-07T01:00:00Z"),
        vec!["after"],
        "start is inclusive"
    );
    assert_eq!(
        found("2025-12-06T23:59:59.999Z", "2025-12-07T00:00:00Z"),
        vec!["before"]
    );
    let stats = index.stats(&StatsRequest::default()).unwrap();
    let days: Vec<(String, u64)> = stats
        .by_day
        .iter()
        .map(|b| (b.start.to_rfc3339(), b.count))
        .collect();
    assert_eq!(
        days,
        vec![
            ("2025-12-06T00:00:00+00:00".to_string(), 1),
            ("2025-12-07T00:00:00+00:00".to_string(), 1)
        ]
    );
}

fn record(id: &str, at: &str, message: &str) -> LogRecord {
    LogRecord {
        id: id.into(),
        timestamp: ts(at),
        message: message.into(),
        ..LogRecord::default()
    }
}

#[test]
fn the_tail_serves_records_before_commit_and_exactly_once_after() {
    let dir = tempfile::tempdir().unwrap();
    let index = Index::open(dir.path(), settings()).unwrap();
    let keyword = LogFilter {
        keyword: Some("fresh".into()),
        ..LogFilter::default()
    };
    index
        .add(&[record("a", "2025-12-07T10:00:00Z", "fresh record")])
        .unwrap();
    assert_eq!(index.tail_len(), 1);
    assert_eq!(index.count(&keyword).unwrap(), 1, "searchable right after add");
    assert_eq!(index.get("a").unwrap().unwrap().message, "fresh record");
    index.commit().unwrap();
    assert_eq!(index.tail_len(), 0, "dropped once committed");
    assert_eq!(index.count(&keyword).unwrap(), 1, "exactly once after commit");

    // Re-sent before a commit: one copy, the latest.
    index
        .add(&[record("b", "2025-12-07T10:00:01Z", "fresh v1")])
        .unwrap();
    index
        .add(&[record("b", "2025-12-07T10:00:01Z", "fresh v2")])
        .unwrap();
    assert_eq!(index.count(&keyword).unwrap(), 2);
    index.commit().unwrap();
    assert_eq!(index.count(&keyword).unwrap(), 2);
    assert_eq!(index.get("b").unwrap().unwrap().message, "fresh v2");

    // Re-sent after a commit: the committed copy answers until the next commit replaces it.
    index
        .add(&[record("a", "2025-12-07T10:00:00Z", "fresh again")])
        .unwrap();
    assert_eq!(
        index.count(&keyword).unwrap(),
        2,
        "no duplicate while uncommitted"
    );
    index.commit().unwrap();
    assert_eq!(index.count(&keyword).unwrap(), 2, "stored once");
    assert_eq!(index.get("a").unwrap().unwrap().message, "fresh again");
    assert_eq!(index.get("missing").unwrap(), None);
}

#[test]
fn a_record_without_an_id_gets_one() {
    let dir = tempfile::tempdir().unwrap();
    let index = Index::open(dir.path(), settings()).unwrap();
    index
        .add(&[record("", "2025-12-07T10:00:00Z", "anonymous")])
        .unwrap();
    let hit = all_hits(&index, &LogFilter::default()).hits.pop().unwrap();
    assert!(!hit.id.is_empty());
    assert_eq!(index.get(&hit.id).unwrap().unwrap().message, "anonymous");
}

#[test]
fn the_tail_is_bounded_by_committing() {
    let dir = tempfile::tempdir().unwrap();
    let index = Index::open(
        dir.path(),
        IndexSettings {
            max_tail_records: 10,
            ..settings()
        },
    )
    .unwrap();
    let records: Vec<LogRecord> = (0..11)
        .map(|i| record(&format!("r{i}"), "2025-12-07T10:00:00Z", "bounded"))
        .collect();
    index.add(&records).unwrap();
    assert_eq!(index.tail_len(), 0, "exceeding the bound commits");
    assert_eq!(
        Index::open_reader(dir.path())
            .unwrap()
            .count(&LogFilter::default())
            .unwrap(),
        11
    );
}

#[test]
fn a_reader_process_sees_commits_and_new_partitions_but_not_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let writer = Index::open(dir.path(), settings()).unwrap();
    let reader = Index::open_reader(dir.path()).unwrap();
    assert!(reader.is_read_only());
    assert_eq!(reader.count(&LogFilter::default()).unwrap(), 0);
    writer.add(&[record("a", "2025-12-07T10:00:00Z", "one")]).unwrap();
    assert_eq!(
        reader.count(&LogFilter::default()).unwrap(),
        0,
        "the tail is in the writer's memory"
    );
    writer.commit().unwrap();
    assert_eq!(reader.count(&LogFilter::default()).unwrap(), 1);
    writer
        .add(&[
            record("b", "2025-12-07T11:00:00Z", "two"),
            record("c", "2025-12-08T01:00:00Z", "three"),
        ])
        .unwrap();
    writer.commit().unwrap();
    assert_eq!(
        reader.count(&LogFilter::default()).unwrap(),
        3,
        "reloads the partition and finds the new one"
    );
    assert_eq!(reader.get("c").unwrap().unwrap().message, "three");
    assert_eq!(reader.trace("none").unwrap(), None);

    assert!(matches!(reader.add(&[]), Err(IndexError::ReadOnly { .. })));
    assert!(matches!(reader.commit(), Err(IndexError::ReadOnly { .. })));
    let now = ts("2025-12-30T00:00:00Z");
    assert!(matches!(
        reader.apply_retention(now, &RetentionPolicy::default(), false),
        Err(IndexError::ReadOnly { .. })
    ));
    assert_eq!(
        reader
            .apply_retention(now, &RetentionPolicy::all_kinds(1), true)
            .unwrap()
            .partitions
            .len(),
        2
    );

    writer
        .apply_retention(now, &RetentionPolicy::only(Kind::Application, 22), false)
        .unwrap();
    assert_eq!(
        reader.count(&LogFilter::default()).unwrap(),
        1,
        "forgets dropped partitions"
    );
    assert!(
        Index::open_reader(&dir.path().join("missing"))
            .unwrap()
            .search(&SearchRequest::default())
            .unwrap()
            .hits
            .is_empty()
    );
}

#[test]
fn one_writer_per_root() {
    let dir = tempfile::tempdir().unwrap();
    let writer = Index::open(dir.path(), settings()).unwrap();
    assert!(matches!(
        Index::open(dir.path(), settings()),
        Err(IndexError::Locked { .. })
    ));
    drop(writer);
    Index::open(dir.path(), settings()).unwrap();
}

#[test]
fn traces_are_spans_sorted_by_start() {
    let dir = tempfile::tempdir().unwrap();
    let index = Index::open(dir.path(), settings()).unwrap();
    let span = |id: &str,
                at: &str,
                span: &str,
                parent: Option<&str>,
                service: &str,
                url: &str,
                ms: f64,
                status: u16| LogRecord {
        id: id.into(),
        timestamp: ts(at),
        message: format!("{url} done"),
        trace: Some(Trace {
            id: "CN-1733580000000-a1b2c3d4".into(),
            span_id: Some(span.into()),
            parent_span_id: parent.map(Into::into),
            span: None,
        }),
        http: Some(Http {
            method: Some("POST".into()),
            url: Some(url.into()),
            status_code: Some(status),
            duration_ms: Some(ms),
            ..Http::default()
        }),
        service: Service {
            name: service.into(),
            region: Some("CN".into()),
            instance: None,
        },
        kind: Kind::Http,
        ..LogRecord::default()
    };
    let records = [
        span(
            "3",
            "2025-12-07T10:30:00.300Z",
            "APPROVAL-1",
            Some("FORM-1"),
            "Approval",
            "/api/v1/approval/start",
            50.0,
            200,
        ),
        span(
            "1",
            "2025-12-07T10:30:00.100Z",
            "IAM-1",
            None,
            "IAM",
            "/api/v1/auth/verify",
            50.0,
            200,
        ),
        span(
            "2",
            "2025-12-07T10:30:00.150Z",
            "FORM-1",
            Some("IAM-1"),
            "Form",
            "/api/v1/forms",
            150.0,
            500,
        ),
        record("4", "2025-12-07T10:30:00.200Z", "unrelated"),
    ];
    index.add(&records[..2]).unwrap();
    index.commit().unwrap();
    index.add(&records[2..]).unwrap();
    let trace = index.trace("CN-1733580000000-a1b2c3d4").unwrap().unwrap();
    let spans: Vec<(&str, Option<&str>, &str, &str, SpanStatus)> = trace
        .spans
        .iter()
        .map(|s| {
            (
                s.span_id.as_deref().unwrap(),
                s.parent_span_id.as_deref(),
                s.service.as_str(),
                s.operation.as_str(),
                s.status,
            )
        })
        .collect();
    assert_eq!(
        spans,
        vec![
            (
                "IAM-1",
                None,
                "IAM",
                "POST /api/v1/auth/verify",
                SpanStatus::Success
            ),
            (
                "FORM-1",
                Some("IAM-1"),
                "Form",
                "POST /api/v1/forms",
                SpanStatus::Error
            ),
            (
                "APPROVAL-1",
                Some("FORM-1"),
                "Approval",
                "POST /api/v1/approval/start",
                SpanStatus::Success
            ),
        ]
    );
    assert_eq!(trace.start, ts("2025-12-07T10:30:00.100Z"));
    assert_eq!(trace.end, ts("2025-12-07T10:30:00.350Z"));
    assert_eq!(trace.total_duration_ms, 250.0);
    assert_eq!(trace.records.len(), 3);
    assert_eq!(trace.spans[1].region.as_deref(), Some("CN"));
    assert_eq!(trace.spans[1].duration_ms, 150.0);
    assert_eq!(SpanStatus::Error.as_str(), "ERROR");
    assert_eq!(index.trace("CN-unknown").unwrap(), None);
}

#[test]
fn retention_drops_whole_partitions_with_a_dry_run_first() {
    let dir = tempfile::tempdir().unwrap();
    let index = Index::open(dir.path(), settings()).unwrap();
    let http = |id: &str, at: &str| LogRecord {
        id: id.into(),
        timestamp: ts(at),
        http: Some(Http {
            url: Some("/a".into()),
            status_code: Some(200),
            ..Http::default()
        }),
        kind: Kind::Http,
        ..LogRecord::default()
    };
    index
        .add(&[
            http("h-old", "2025-11-20T10:00:00Z"),
            http("h-edge", "2025-11-23T23:00:00Z"),
            http("h-new", "2025-12-07T09:00:00Z"),
            record("a-old", "2025-11-01T10:00:00Z", "old app"),
            record("a-new", "2025-11-20T10:00:00Z", "newer app"),
        ])
        .unwrap();
    index.commit().unwrap();
    // Uncommitted record in a partition about to be dropped: goes with it.
    index.add(&[http("h-old-2", "2025-11-20T11:00:00Z")]).unwrap();
    let now = ts("2025-12-07T10:00:00Z");
    let before = index.disk_usage().unwrap();

    let dry = index
        .apply_retention(now, &RetentionPolicy::default(), true)
        .unwrap();
    let dropped: Vec<String> = dry.partitions.iter().map(|p| p.key.to_string()).collect();
    assert_eq!(dropped, vec!["http/2025-11-20", "application/2025-11-01"]);
    assert!(dry.dry_run && dry.files() > 0 && dry.bytes() > 0);
    assert_eq!(dry.by_kind()[&Kind::Http].files, dry.partitions[0].files);
    assert!(
        dir.path().join("http/2025-11-20").is_dir(),
        "a dry run deletes nothing"
    );
    assert!(
        dir.path().join("application/2025-11-01").is_dir(),
        "a dry run deletes nothing"
    );
    assert_eq!(index.count(&LogFilter::default()).unwrap(), 6);

    let done = index
        .apply_retention(now, &RetentionPolicy::default(), false)
        .unwrap();
    // Sizes can differ: the dry run saw the live writer's files.
    assert_eq!(
        done.partitions.iter().map(|p| p.key).collect::<Vec<_>>(),
        dry.partitions.iter().map(|p| p.key).collect::<Vec<_>>()
    );
    assert!(!done.dry_run);
    assert!(!dir.path().join("http/2025-11-20").exists());
    assert!(
        dir.path().join("http/2025-11-23").exists(),
        "its day ends after the cutoff"
    );
    assert_eq!(
        ids(&all_hits(&index, &LogFilter::default()).hits)
            .into_iter()
            .collect::<Vec<_>>(),
        vec!["a-new", "h-edge", "h-new"]
    );
    assert_eq!(index.tail_len(), 0);
    let after = index.disk_usage().unwrap();
    // Other partitions' writers may add files meanwhile, so only the direction is certain.
    assert!(after.total.bytes < before.total.bytes);
    assert!(after.by_kind[&Kind::Application].bytes < before.by_kind[&Kind::Application].bytes);
    assert_eq!(after.by_kind[&Kind::Error], Usage::default());
    assert!(after.by_kind[&Kind::Http].bytes > 0);

    // A late record for a dropped day recreates its partition.
    index.add(&[http("h-late", "2025-11-20T12:00:00Z")]).unwrap();
    index.commit().unwrap();
    assert_eq!(index.get("h-late").unwrap().unwrap().id, "h-late");
}

#[test]
fn idle_and_excess_writers_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let index = Index::open(
        dir.path(),
        IndexSettings {
            max_open_writers: 2,
            writer_idle_ms: 0,
            ..settings()
        },
    )
    .unwrap();
    let days = [
        "2025-12-01T10:00:00Z",
        "2025-12-02T10:00:00Z",
        "2025-12-03T10:00:00Z",
    ];
    for (i, day) in days.iter().enumerate() {
        index.add(&[record(&format!("r{i}"), day, "writer")]).unwrap();
        assert!(index.open_writer_count() <= 2);
    }
    assert_eq!(index.count(&LogFilter::default()).unwrap(), 3);
    index.commit().unwrap();
    assert_eq!(index.open_writer_count(), 0, "idle writers are closed by commit");
    assert_eq!(index.count(&LogFilter::default()).unwrap(), 3);
    index.add(&[record("r3", days[0], "writer")]).unwrap();
    index.close().unwrap();
    assert_eq!(index.open_writer_count(), 0);
    assert_eq!(
        Index::open_reader(dir.path())
            .unwrap()
            .count(&LogFilter::default())
            .unwrap(),
        4
    );
}

#[test]
fn requests_and_settings_are_validated() {
    let dir = tempfile::tempdir().unwrap();
    let small = IndexSettings {
        writer_memory_bytes: 1_000_000,
        ..settings()
    };
    assert!(matches!(
        Index::open(dir.path(), small),
        Err(IndexError::InvalidSettings {
            field: "writer_memory_bytes",
            ..
        })
    ));
    let index = Index::open(dir.path(), settings()).unwrap();
    let deep = SearchRequest {
        offset: MAX_SEARCH_DEPTH,
        limit: 1,
        ..SearchRequest::default()
    };
    assert!(matches!(
        index.search(&deep),
        Err(IndexError::InvalidRequest { field: "offset", .. })
    ));
    let nan = LogFilter {
        min_duration_ms: Some(f64::NAN),
        ..LogFilter::default()
    };
    assert!(matches!(
        index.count(&nan),
        Err(IndexError::InvalidRequest { .. })
    ));
}

#[test]
fn the_index_is_shareable_across_threads() {
    fn assert_shareable<T: Clone + Send + Sync + 'static>() {}
    assert_shareable::<Index>();
    let dir = tempfile::tempdir().unwrap();
    let index = Index::open(dir.path(), settings()).unwrap();
    let writer = {
        let index = index.clone();
        std::thread::spawn(move || {
            for i in 0..50 {
                index
                    .add(&[record(&format!("t{i}"), "2025-12-07T10:00:00Z", "threaded")])
                    .unwrap();
                if i % 10 == 9 {
                    index.commit().unwrap();
                }
            }
        })
    };
    // Whatever the interleaving, a search never sees a record twice.
    for _ in 0..50 {
        let hits = all_hits(&index, &LogFilter::default()).hits;
        assert_eq!(ids(&hits).len(), hits.len());
    }
    writer.join().unwrap();
    assert_eq!(index.count(&LogFilter::default()).unwrap(), 50);
}

#[test]
fn stats_group_absolute_and_relative_urls_by_their_path() {
    let urls = [
        "/api/v1/forms?page=2",
        "https://form.example.com/api/v1/forms",
        "http://form.example.com:8080/api/v1/forms#top",
        "https://form.example.com",
    ];
    let records: Vec<LogRecord> = urls
        .iter()
        .enumerate()
        .map(|(i, url)| LogRecord {
            kind: Kind::Http,
            http: Some(Http {
                url: Some(url.to_string()),
                ..Http::default()
            }),
            ..record(&format!("url-{i}"), "2025-12-07T10:00:00Z", "GET")
        })
        .collect();
    for mode in MODES {
        let (_dir, index) = loaded(mode, &records);
        let stats = index
            .stats(&StatsRequest {
                filter: LogFilter::default(),
                slow_threshold_ms: 3000.0,
                top_paths: 10,
            })
            .unwrap();
        let paths: Vec<(&str, u64)> = stats
            .top_paths
            .iter()
            .map(|p| (p.path.as_str(), p.count))
            .collect();
        assert_eq!(paths, [("/api/v1/forms", 3), ("/", 1)], "{mode:?}");
    }
}

#[test]
fn sealed_partitions_merge_into_one_segment_and_answer_the_same() {
    let records = dataset();
    let (_dir, index) = loaded(Mode::Committed, &records);
    index.close().unwrap();
    let before = ids(&all_hits(&index, &LogFilter::default()).hits);
    assert_eq!(before, ids(&records));
    let segments = |index: &Index| -> Vec<usize> {
        index
            .cached_partitions()
            .iter()
            .map(|p| p.index.searchable_segment_ids().unwrap().len())
            .collect()
    };
    assert!(
        segments(&index).iter().any(|&n| n > 1),
        "the test needs partitions of several segments"
    );
    let report = index.merge_sealed(Utc::now()).unwrap();
    assert!(!report.partitions.is_empty());
    assert!(
        report
            .partitions
            .iter()
            .all(|p| p.segments_before > 1 && p.bytes_after > 0)
    );
    assert!(segments(&index).iter().all(|&n| n <= 1), "{:?}", segments(&index));
    assert_eq!(ids(&all_hits(&index, &LogFilter::default()).hits), before);
    assert!(
        index.merge_sealed(Utc::now()).unwrap().partitions.is_empty(),
        "nothing left to merge"
    );
    // A partition of today is not sealed: it stays as it is.
    let today = Utc::now();
    for i in 0..3 {
        let record = LogRecord::from_json_value(
            serde_json::json!({"id": format!("today-{i}"), "@timestamp": today.to_rfc3339(), "message": "m", "level": "INFO"}),
            today,
        )
        .unwrap();
        index.add(&[record]).unwrap();
        index.commit().unwrap();
    }
    index.close().unwrap();
    assert!(index.merge_sealed(today).unwrap().partitions.is_empty());
}
