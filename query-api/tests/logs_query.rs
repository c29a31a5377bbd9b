//! The log API's read endpoints (query, errors, slow requests, stats, trace) and the platform API's extras (modules,
//! detail, export) against a generated dataset whose answers each test computes itself.

mod common;
mod logs_common;

use std::collections::BTreeMap;

use axum::http::StatusCode;
use chrono::{DateTime, Duration, Timelike, Utc};
use common::{TestEnv, Variant};
use logs_common::*;
use owl_model::{Level, LogRecord};
use serde_json::{Value, json};

struct Fixture {
    env: TestEnv,
    admin: String,
    records: Vec<LogRecord>,
    now: DateTime<Utc>,
}

async fn fixture(n: usize, seed: u64) -> Fixture {
    let env = TestEnv::start(Variant::Sqlite)
        .await
        .expect("SQLite needs no services");
    let now = env.clock.now();
    let records = dataset(n, now - Duration::minutes(1), seed);
    ingest(&env.state.index, records.clone()).await;
    let admin = env.admin().await;
    Fixture {
        env,
        admin,
        records,
        now,
    }
}

impl Fixture {
    async fn get(&self, path: &str) -> Value {
        let reply = self
            .env
            .call("GET", path, Some(&self.admin), None)
            .await
            .expect(StatusCode::OK);
        assert_eq!(reply.body["success"], true, "{}", reply.text);
        assert_eq!(reply.body["path"], path.split('?').next().unwrap());
        assert!(owl_model::parse_timestamp(reply.body["timestamp"].as_str().unwrap()).is_some());
        reply.body["data"].clone()
    }

    fn matching(&self, keep: impl Fn(&LogRecord) -> bool) -> Vec<&LogRecord> {
        let mut found: Vec<&LogRecord> = self.records.iter().filter(|r| keep(r)).collect();
        newest_first(&mut found);
        found
    }
}

fn contains_ci(haystack: Option<&str>, needle: &str) -> bool {
    haystack.is_some_and(|h| h.to_lowercase().contains(&needle.to_lowercase()))
}

fn url(r: &LogRecord) -> Option<&str> {
    r.http.as_ref().and_then(|h| h.url.as_deref())
}

fn path_of(r: &LogRecord) -> Option<String> {
    url(r).map(|u| u.split('?').next().unwrap().to_string())
}

#[tokio::test]
async fn query_filters_pages_and_sorting() {
    let f = fixture(600, 7).await;
    // No parameters: the last hour, newest first, 50 a page.
    let all = f.matching(|_| true);
    let data = f.get("/api/v1/logs/query").await;
    assert_eq!(data["total"], 600);
    assert_eq!(
        (
            data["page"].clone(),
            data["limit"].clone(),
            data["totalPages"].clone()
        ),
        (json!(1), json!(50), json!(12))
    );
    assert_eq!(
        (data["hasNext"].clone(), data["hasPrev"].clone()),
        (json!(true), json!(false))
    );
    let expected: Vec<String> = all.iter().take(50).map(|r| r.id.clone()).collect();
    assert_eq!(ids(&data["items"]), expected);
    let first = &data["items"][0];
    assert_eq!(first["@timestamp"], ts(&all[0].timestamp));
    assert_eq!(first["service"]["name"], all[0].service.name);

    // Pages.
    let data = f.get("/api/v1/logs/query?page=3&limit=7").await;
    let expected: Vec<String> = all.iter().skip(14).take(7).map(|r| r.id.clone()).collect();
    assert_eq!(ids(&data["items"]), expected);
    assert_eq!(
        (
            data["totalPages"].clone(),
            data["hasNext"].clone(),
            data["hasPrev"].clone()
        ),
        (json!(86), json!(true), json!(true))
    );
    let last = f.get("/api/v1/logs/query?page=86&limit=7").await;
    assert_eq!(
        (ids(&last["items"]).len(), last["hasNext"].clone()),
        (5, json!(false))
    );

    // Every filter of QueryLogDto, alone and together.
    let some_trace = f
        .records
        .iter()
        .find_map(|r| r.trace_id().map(str::to_string))
        .unwrap();
    let trace_param = format!("traceId={}", enc(&some_trace));
    let some_request = f
        .records
        .iter()
        .find_map(|r| r.http.as_ref().and_then(|h| h.request_id.clone()))
        .unwrap();
    let request_param = format!("requestId={some_request}");
    let request_id = some_request.clone();
    type Keep = Box<dyn Fn(&LogRecord) -> bool>;
    let trace_id = some_trace.clone();
    let cases: Vec<(&str, Keep)> = vec![
        ("level=ERROR", Box::new(|r| r.level == Level::Error)),
        ("level=WARN,ERROR", Box::new(|r| r.level >= Level::Warn)),
        ("level=warning", Box::new(|r| r.level == Level::Warn)),
        ("service=Form", Box::new(|r| r.service.name == "Form")),
        ("service=Form,IAM", Box::new(|r| r.service.name != "Approval")),
        (
            "region=US",
            Box::new(|r| r.service.region.as_deref() == Some("US")),
        ),
        (
            "userId=user-001",
            Box::new(|r| r.user.as_ref().and_then(|u| u.id.as_deref()) == Some("user-001")),
        ),
        (
            request_param.as_str(),
            Box::new(move |r| {
                r.http.as_ref().and_then(|h| h.request_id.as_deref()) == Some(request_id.as_str())
            }),
        ),
        (
            trace_param.as_str(),
            Box::new(move |r| r.trace_id() == Some(trace_id.as_str())),
        ),
        (
            "url=forms%2Fsubmit",
            Box::new(|r| contains_ci(url(r), "forms/submit")),
        ),
        ("url=FORMS", Box::new(|r| contains_ci(url(r), "forms"))),
        (
            "minDuration=2000",
            Box::new(|r| r.duration_ms().is_some_and(|d| d >= 2000.0)),
        ),
        (
            "maxDuration=100",
            Box::new(|r| r.duration_ms().is_some_and(|d| d <= 100.0)),
        ),
        (
            "minDuration=100&maxDuration=200",
            Box::new(|r| r.duration_ms().is_some_and(|d| (100.0..=200.0).contains(&d))),
        ),
        ("statusCode=404", Box::new(|r| r.status_code() == Some(404))),
        ("hasError=true", Box::new(is_error)),
        ("hasError=false", Box::new(|r| !is_error(r))),
        (
            "service=Form&level=INFO&region=CN",
            Box::new(|r| {
                r.service.name == "Form"
                    && r.level == Level::Info
                    && r.service.region.as_deref() == Some("CN")
            }),
        ),
    ];
    for (query, keep) in cases {
        let expected = f.matching(keep);
        let data = f.get(&format!("/api/v1/logs/query?{query}&limit=200")).await;
        assert_eq!(data["total"], expected.len(), "{query}");
        let want: Vec<String> = expected.iter().take(200).map(|r| r.id.clone()).collect();
        assert_eq!(ids(&data["items"]), want, "{query}");
        assert!(!expected.is_empty(), "the dataset exercises {query}");
    }

    // Sorting: the key, then newest first, then id; records without the key last.
    let sorted = |key: &dyn Fn(&LogRecord) -> Option<i64>, descending: bool| {
        let mut records: Vec<&LogRecord> = f.records.iter().collect();
        records.sort_by(|a, b| {
            let (ka, kb) = (key(a), key(b));
            let primary = match (ka, kb) {
                (Some(x), Some(y)) if descending => y.cmp(&x),
                (Some(x), Some(y)) => x.cmp(&y),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            };
            primary
                .then(b.timestamp.cmp(&a.timestamp))
                .then_with(|| a.id.cmp(&b.id))
        });
        records.iter().map(|r| r.id.clone()).collect::<Vec<_>>()
    };
    let duration = |r: &LogRecord| r.duration_ms().map(|d| d as i64);
    let level = |r: &LogRecord| Some(r.level.rank() as i64);
    let time = |r: &LogRecord| Some(r.timestamp.timestamp_micros());
    for (query, expected) in [
        ("sortBy=duration&sortOrder=asc", sorted(&duration, false)),
        ("sortBy=duration&sortOrder=desc", sorted(&duration, true)),
        ("sortBy=level", sorted(&level, true)),
        ("sortBy=@timestamp&sortOrder=asc", sorted(&time, false)),
    ] {
        for page in [1, 3] {
            let data = f
                .get(&format!("/api/v1/logs/query?{query}&limit=200&page={page}"))
                .await;
            let want: Vec<String> = expected
                .iter()
                .skip((page - 1) * 200)
                .take(200)
                .cloned()
                .collect();
            assert_eq!(ids(&data["items"]), want, "{query} page {page}");
        }
    }
    let mut by_service: Vec<&LogRecord> = f.records.iter().collect();
    by_service.sort_by(|a, b| {
        a.service
            .name
            .cmp(&b.service.name)
            .then(b.timestamp.cmp(&a.timestamp))
            .then_with(|| a.id.cmp(&b.id))
    });
    let data = f
        .get("/api/v1/logs/query?sortBy=service&sortOrder=asc&limit=200")
        .await;
    assert_eq!(
        ids(&data["items"]),
        by_service
            .iter()
            .take(200)
            .map(|r| r.id.clone())
            .collect::<Vec<_>>()
    );

    // An explicit range: the first ten minutes of the dataset, endTime inclusive.
    let from = f.now - Duration::minutes(51);
    let to = f.now - Duration::minutes(41);
    let expected = f.matching(|r| r.timestamp >= from && r.timestamp <= to);
    let data = f
        .get(&format!(
            "/api/v1/logs/query?startTime={}&endTime={}&limit=200",
            enc(&ts(&from)),
            enc(&ts(&to))
        ))
        .await;
    assert_eq!(data["total"], expected.len());
}

#[tokio::test]
async fn keywords_in_chinese_and_english() {
    let f = fixture(300, 11).await;
    let keyword = |needle: &str| {
        let needle = needle.to_lowercase();
        move |r: &LogRecord| {
            [
                Some(r.message.as_str()),
                r.error.as_ref().and_then(|e| e.message.as_deref()),
                r.user.as_ref().and_then(|u| u.name.as_deref()),
            ]
            .into_iter()
            .flatten()
            .any(|text| text.to_lowercase().contains(&needle))
        }
    };
    for needle in [
        "登录失败",
        "登录",
        "审批流程",
        "失",
        "DATABASE",
        "database connection",
        "Refused",
        "ZHANGSAN",
        "admin",
        "#1",
    ] {
        let expected = f.matching(keyword(needle));
        assert!(!expected.is_empty(), "the dataset has {needle}");
        let data = f
            .get(&format!("/api/v1/logs/query?keyword={}&limit=200", enc(needle)))
            .await;
        assert_eq!(data["total"], expected.len(), "keyword {needle}");
        assert_eq!(
            ids(&data["items"]),
            expected
                .iter()
                .take(200)
                .map(|r| r.id.clone())
                .collect::<Vec<_>>(),
            "keyword {needle}"
        );
    }
    let data = f
        .get(&format!("/api/v1/logs/query?keyword={}", enc("不存在的内容")))
        .await;
    assert_eq!(data["total"], 0);
}

fn hour_start(at: &DateTime<Utc>) -> DateTime<Utc> {
    at.with_minute(0)
        .unwrap()
        .with_second(0)
        .unwrap()
        .with_nanosecond(0)
        .unwrap()
}

#[tokio::test]
async fn errors_with_their_summary() {
    let f = fixture(600, 13).await;
    let errors = f.matching(is_error);
    let data = f.get("/api/v1/logs/errors?limit=100").await;
    assert_eq!(data["total"], errors.len());
    assert_eq!(data["summary"]["total"], errors.len());
    assert_eq!(
        ids(&data["items"]),
        errors.iter().take(100).map(|r| r.id.clone()).collect::<Vec<_>>()
    );
    let mut by_type: BTreeMap<String, u64> = BTreeMap::new();
    for r in &errors {
        let name = r
            .error
            .as_ref()
            .and_then(|e| e.error_type.clone())
            .unwrap_or_else(|| "Unknown".into());
        *by_type.entry(name).or_default() += 1;
    }
    assert_eq!(data["summary"]["byType"], json!(by_type));
    let mut by_hour: BTreeMap<DateTime<Utc>, u64> = BTreeMap::new();
    for r in &errors {
        *by_hour.entry(hour_start(&r.timestamp)).or_default() += 1;
    }
    let expected: Vec<Value> = by_hour
        .iter()
        .map(|(h, n)| json!({ "hour": format!("{:02}:00", h.hour()), "time": ts(h), "count": n }))
        .collect();
    assert_eq!(data["summary"]["byHour"], json!(expected));

    type Keep = Box<dyn Fn(&LogRecord) -> bool>;
    let cases: Vec<(&str, Keep)> = vec![
        (
            "errorType=DatabaseError",
            Box::new(|r| r.error.as_ref().and_then(|e| e.error_type.as_deref()) == Some("DatabaseError")),
        ),
        (
            "errorCode=TIMEOUT",
            Box::new(|r| r.error.as_ref().and_then(|e| e.code.as_deref()) == Some("TIMEOUT")),
        ),
        (
            "userId=user-002",
            Box::new(|r| r.user.as_ref().and_then(|u| u.id.as_deref()) == Some("user-002")),
        ),
        ("url=submit", Box::new(|r| contains_ci(url(r), "submit"))),
        (
            "keyword=refused",
            Box::new(|r| {
                contains_ci(r.error.as_ref().and_then(|e| e.message.as_deref()), "refused")
                    || contains_ci(Some(&r.message), "refused")
            }),
        ),
        (
            "service=IAM&region=CN",
            Box::new(|r| r.service.name == "IAM" && r.service.region.as_deref() == Some("CN")),
        ),
    ];
    for (query, keep) in cases {
        let expected: Vec<&LogRecord> = errors.iter().copied().filter(|r| keep(r)).collect();
        assert!(!expected.is_empty(), "the dataset exercises {query}");
        let data = f.get(&format!("/api/v1/logs/errors?{query}&limit=200")).await;
        assert_eq!(data["total"], expected.len(), "{query}");
        assert_eq!(data["summary"]["total"], expected.len(), "{query}");
        assert_eq!(
            ids(&data["items"]),
            expected.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
            "{query}"
        );
    }
    // The log API: the error list's keyword searches message and error.message, not the user name.
    let by_user = errors
        .iter()
        .filter(|r| contains_ci(r.user.as_ref().and_then(|u| u.name.as_deref()), "zhangsan"))
        .count();
    assert!(by_user > 0, "the dataset has errors of zhangsan");
    let by_text = errors
        .iter()
        .filter(|r| {
            contains_ci(Some(&r.message), "zhangsan")
                || contains_ci(r.error.as_ref().and_then(|e| e.message.as_deref()), "zhangsan")
        })
        .count();
    let data = f.get("/api/v1/logs/errors?keyword=zhangsan&limit=200").await;
    assert_eq!(data["total"], by_text);
}

#[tokio::test]
async fn slow_requests_with_percentiles_and_top_paths() {
    let f = fixture(800, 17).await;
    for (query, threshold, service) in [
        ("", 2000.0, None),
        ("?thresholdMs=3000&service=Form", 3000.0, Some("Form")),
    ] {
        let slow = f.matching(|r| {
            r.duration_ms().is_some_and(|d| d >= threshold) && service.is_none_or(|s| r.service.name == s)
        });
        assert!(slow.len() > 10, "the dataset has slow requests");
        let data = f.get(&format!("/api/v1/logs/slow-requests{query}")).await;
        let summary = &data["summary"];
        assert_eq!(data["total"], slow.len());
        assert_eq!(summary["total"], slow.len());
        let mut durations: Vec<f64> = slow.iter().map(|r| r.duration_ms().unwrap()).collect();
        durations.sort_by(f64::total_cmp);
        let mean = durations.iter().sum::<f64>() / durations.len() as f64;
        assert_eq!(summary["avgDuration"], json!(mean.round() as i64), "{query}");
        assert_eq!(summary["maxDuration"], json!(*durations.last().unwrap() as i64));
        assert_eq!(
            summary["p95Duration"],
            json!(percentile(&durations, 95.0) as i64),
            "{query}"
        );
        assert_eq!(
            summary["p99Duration"],
            json!(percentile(&durations, 99.0) as i64),
            "{query}"
        );
        let mut paths: BTreeMap<String, (u64, f64)> = BTreeMap::new();
        let mut services: BTreeMap<String, u64> = BTreeMap::new();
        for r in &slow {
            let entry = paths.entry(path_of(r).unwrap()).or_default();
            entry.0 += 1;
            entry.1 += r.duration_ms().unwrap();
            *services.entry(r.service.name.clone()).or_default() += 1;
        }
        let mut top: Vec<(String, u64, f64)> = paths
            .into_iter()
            .map(|(p, (n, sum))| (p, n, sum / n as f64))
            .collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let expected: Vec<Value> = top
            .iter()
            .take(10)
            .map(|(p, n, avg)| json!({ "path": p, "count": n, "avgDuration": avg.round() as i64 }))
            .collect();
        assert_eq!(summary["topPaths"], json!(expected), "{query}");
        assert_eq!(summary["byService"], json!(services), "{query}");
        let item = &data["items"][0];
        let newest = slow[0];
        assert_eq!(item["id"], newest.id);
        assert_eq!(item["timestamp"], ts(&newest.timestamp));
        assert_eq!(item["duration"], json!(newest.duration_ms().unwrap() as i64));
        assert_eq!(item["url"], url(newest).unwrap());
        assert_eq!(
            item["requestId"],
            newest.http.as_ref().unwrap().request_id.clone().unwrap()
        );
        assert_eq!(item["service"], newest.service.name);
        assert_eq!(item["region"], json!(newest.service.region));
    }
}

#[tokio::test]
async fn stats_are_the_whole_log_stats_response() {
    let f = fixture(700, 19).await;
    let data = f.get("/api/v1/logs/stats").await;
    let summary = &data["summary"];
    let records: Vec<&LogRecord> = f.records.iter().collect();
    let mut durations: Vec<f64> = records.iter().filter_map(|r| r.duration_ms()).collect();
    durations.sort_by(f64::total_cmp);
    let count = |level: Level| records.iter().filter(|r| r.level == level).count();
    assert_eq!(summary["totalLogs"], 700);
    assert_eq!(summary["totalRequests"], durations.len());
    assert_eq!(summary["errorCount"], count(Level::Error));
    assert_eq!(summary["warnCount"], count(Level::Warn));
    assert_eq!(
        summary["avgDuration"],
        json!((durations.iter().sum::<f64>() / durations.len() as f64).round() as i64)
    );
    assert_eq!(summary["p95Duration"], json!(percentile(&durations, 95.0) as i64));
    assert_eq!(summary["p99Duration"], json!(percentile(&durations, 99.0) as i64));
    assert_eq!(
        summary["slowRequestCount"],
        durations.iter().filter(|d| **d >= 2000.0).count()
    );
    assert_eq!(
        data["byLevel"],
        json!({ "ERROR": count(Level::Error), "WARN": count(Level::Warn), "INFO": count(Level::Info), "DEBUG": count(Level::Debug) })
    );
    let tally = |key: &dyn Fn(&LogRecord) -> String| {
        let mut map: BTreeMap<String, u64> = BTreeMap::new();
        for r in &records {
            *map.entry(key(r)).or_default() += 1;
        }
        map
    };
    assert_eq!(data["byService"], json!(tally(&|r| r.service.name.clone())));
    assert_eq!(
        data["byRegion"],
        json!(tally(&|r| r.service.region.clone().unwrap()))
    );
    let mut hours: BTreeMap<DateTime<Utc>, Vec<&LogRecord>> = BTreeMap::new();
    for r in &records {
        hours.entry(hour_start(&r.timestamp)).or_default().push(r);
    }
    let expected: Vec<Value> = hours
        .iter()
        .map(|(h, rs)| {
            let errors = rs.iter().filter(|r| is_error(r)).count() as f64;
            let ds: Vec<f64> = rs.iter().filter_map(|r| r.duration_ms()).collect();
            let avg = if ds.is_empty() { 0 } else { (ds.iter().sum::<f64>() / ds.len() as f64).round() as i64 };
            let rate = (errors / rs.len() as f64 * 10_000.0).round() / 100.0;
            let rate = if rate.fract() == 0.0 { json!(rate as i64) } else { json!(rate) };
            json!({ "hour": format!("{:02}:00", h.hour()), "time": ts(h), "count": rs.len(), "errorRate": rate, "avgDuration": avg })
        })
        .collect();
    assert_eq!(data["byHour"], json!(expected));
    assert_eq!(data["period"]["start"], ts(&(f.now - Duration::hours(1))));
    assert_eq!(data["period"]["end"], ts(&(f.now - Duration::milliseconds(1))));

    // Disk usage is measured on the real data directory.
    let disk = &data["diskUsage"];
    let root = f.env.state.index.root().to_path_buf();
    assert_eq!(disk["totalBytes"], fs2::total_space(&root).unwrap());
    assert!(disk["usedBytes"].as_u64().unwrap() > 0);
    for kind in ["http", "application", "error"] {
        assert_ne!(disk["byType"][kind], "0B", "{kind} partitions exist");
    }
    assert!(disk["used"].as_str().unwrap().ends_with("B"));

    // groupBy adds the breakdown.
    let grouped = f.get("/api/v1/logs/stats?groupBy=service").await;
    let mut services: Vec<(String, u64)> = tally(&|r| r.service.name.clone()).into_iter().collect();
    services.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let expected: Vec<Value> = services
        .iter()
        .map(|(k, n)| json!({ "key": k, "count": n }))
        .collect();
    assert_eq!(grouped["groups"], json!(expected));
    assert_eq!(grouped["groupBy"], "service");
    let by_day = f.get("/api/v1/logs/stats?groupBy=day").await;
    let days: u64 = by_day["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["count"].as_u64().unwrap())
        .sum();
    assert_eq!(days, 700);

    // Thirty days is the limit.
    let start = f.now - Duration::days(30);
    f.get(&format!(
        "/api/v1/logs/stats?startTime={}&endTime={}",
        enc(&ts(&start)),
        enc(&ts(&f.now))
    ))
    .await;
    let reply = f
        .env
        .call(
            "GET",
            &format!(
                "/api/v1/logs/stats?startTime={}&endTime={}",
                enc(&ts(&(start - Duration::hours(1)))),
                enc(&ts(&f.now))
            ),
            Some(&f.admin),
            None,
        )
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert_eq!(reply.body["error"]["code"], "LOG_QUERY_TIME_RANGE_TOO_LARGE");
}

/// The log API's trace example, plus an application line inside the Form span and a line without a span.
fn trace_records() -> Vec<LogRecord> {
    let trace = "CN-1733580000000-a1b2c3d4";
    let span = |id: &str,
                parent: Option<&str>,
                service: &str,
                region: &str,
                env: &str,
                at: &str,
                method: &str,
                url: &str,
                ms: u64| {
        record(json!({
            "id": format!("span-{id}"),
            "@timestamp": at,
            "level": "INFO",
            "message": format!("{method} {url} | 200 | {ms}ms"),
            "environment": env,
            "trace": { "id": trace, "span_id": id, "parent_span_id": parent },
            "http": { "method": method, "url": url, "status_code": 200, "duration_ms": ms },
            "service": { "name": service, "region": region },
        }))
    };
    vec![
        span(
            "IAM-1733580000100-m1n2o3",
            None,
            "IAM",
            "CN",
            "development",
            "2025-12-07T10:30:00.100Z",
            "POST",
            "/api/v1/auth/verify",
            50,
        ),
        span(
            "FORM-1733580000123-x1y2z3",
            Some("IAM-1733580000100-m1n2o3"),
            "Form",
            "CN",
            "production",
            "2025-12-07T10:30:00.150Z",
            "POST",
            "/api/v1/forms",
            150,
        ),
        span(
            "APPROVAL-1733580000200-p1q2r3",
            Some("FORM-1733580000123-x1y2z3"),
            "Approval",
            "US",
            "production",
            "2025-12-07T10:30:00.300Z",
            "POST",
            "/api/v1/approval/start",
            50,
        ),
        record(json!({
            "id": "form-line", "@timestamp": "2025-12-07T10:30:00.200Z", "level": "ERROR", "message": "form validation retried",
            "environment": "production",
            "trace": { "id": trace, "span_id": "FORM-1733580000123-x1y2z3" }, "service": { "name": "Form", "region": "CN" },
        })),
        record(json!({
            "id": "loose-line", "@timestamp": "2025-12-07T10:30:00.320Z", "level": "INFO", "message": "audit written",
            "environment": "production",
            "trace": { "id": trace }, "service": { "name": "Audit", "region": "CN" },
        })),
        record(json!({
            "id": "other-trace", "@timestamp": "2025-12-07T10:30:00.100Z", "level": "INFO", "message": "elsewhere",
            "trace": { "id": "CN-1-zzz", "span_id": "X" }, "service": { "name": "IAM", "region": "CN" },
        })),
    ]
}

#[tokio::test]
async fn trace_is_a_waterfall_and_a_timeline() {
    let env = TestEnv::start(Variant::Sqlite).await.unwrap();
    ingest(&env.state.index, trace_records()).await;
    let admin = env.admin().await;
    let path = "/api/v1/logs/trace/CN-1733580000000-a1b2c3d4";
    let reply = env
        .call("GET", path, Some(&admin), None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(reply.body["path"], path);
    let data = &reply.body["data"];
    assert_eq!(data["traceId"], "CN-1733580000000-a1b2c3d4");
    assert_eq!(data["startTime"], "2025-12-07T10:30:00.100Z");
    assert_eq!(data["endTime"], "2025-12-07T10:30:00.350Z");
    assert_eq!(data["totalDuration"], 250);
    let spans = data["spans"].as_array().unwrap();
    let tree: Vec<(String, Value, String, i64, String)> = spans
        .iter()
        .map(|s| {
            (
                s["spanId"].as_str().unwrap().to_string(),
                s["parentSpanId"].clone(),
                s["service"].as_str().unwrap().to_string(),
                s["duration"].as_i64().unwrap(),
                s["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        tree,
        [
            (
                "IAM-1733580000100-m1n2o3".into(),
                Value::Null,
                "IAM".into(),
                50,
                "SUCCESS".into()
            ),
            (
                "FORM-1733580000123-x1y2z3".into(),
                json!("IAM-1733580000100-m1n2o3"),
                "Form".into(),
                150,
                "ERROR".into()
            ),
            (
                "APPROVAL-1733580000200-p1q2r3".into(),
                json!("FORM-1733580000123-x1y2z3"),
                "Approval".into(),
                50,
                "SUCCESS".into()
            ),
        ]
    );
    assert_eq!(
        spans[1]["operation"], "POST /api/v1/forms",
        "the HTTP record names the span"
    );
    assert_eq!(spans[2]["region"], "US");
    assert_eq!(spans[1]["startTime"], "2025-12-07T10:30:00.150Z");
    let timeline: Vec<(i64, String)> = data["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["time"].as_i64().unwrap(),
                e["event"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        timeline,
        [
            (0, "IAM POST /api/v1/auth/verify started".to_string()),
            (50, "IAM POST /api/v1/auth/verify completed".to_string()),
            (50, "Form POST /api/v1/forms started".to_string()),
            (200, "Form POST /api/v1/forms failed".to_string()),
            (200, "Approval POST /api/v1/approval/start started".to_string()),
            (220, "Audit audit written".to_string()),
            (250, "Approval POST /api/v1/approval/start completed".to_string()),
        ]
    );

    // Scope: a CN user does not see the US span; a developer sees the development span only.
    let cn = user(&env, &admin, "cnops", 2, &["CN"]).await;
    let data = env
        .call("GET", path, Some(&cn), None)
        .await
        .expect(StatusCode::OK)
        .body["data"]
        .clone();
    assert_eq!(data["spans"].as_array().unwrap().len(), 2);
    assert_eq!(data["endTime"], "2025-12-07T10:30:00.320Z");
    let dev = user(&env, &admin, "dev", 3, &[]).await;
    let data = env
        .call("GET", path, Some(&dev), None)
        .await
        .expect(StatusCode::OK)
        .body["data"]
        .clone();
    assert_eq!(data["spans"].as_array().unwrap().len(), 1);
    assert_eq!(data["spans"][0]["service"], "IAM");
    let us = user(&env, &admin, "usops", 2, &["UAE"]).await;
    let reply = env
        .call("GET", path, Some(&us), None)
        .await
        .expect(StatusCode::NOT_FOUND);
    assert_eq!(reply.body["error"]["code"], "LOG_TRACE_NOT_FOUND");

    let reply = env
        .call("GET", "/api/v1/logs/trace/CN-0-nothing", Some(&admin), None)
        .await
        .expect(StatusCode::NOT_FOUND);
    assert_eq!(reply.body["success"], false);
    assert_eq!(reply.body["error"]["code"], "LOG_TRACE_NOT_FOUND");
    assert_eq!(reply.body["statusCode"], 404);
    assert_eq!(reply.body["method"], "GET");
    assert_eq!(reply.body["path"], "/api/v1/logs/trace/CN-0-nothing");
}

#[tokio::test]
async fn every_error_code_of_the_query_endpoints() {
    let f = fixture(50, 23).await;
    let call = |path: String, token: Option<String>| {
        let env = &f.env;
        async move { env.call("GET", &path, token.as_deref(), None).await }
    };
    let admin = Some(f.admin.clone());
    // 401 and 403.
    let reply = call("/api/v1/logs/query".into(), None)
        .await
        .expect(StatusCode::UNAUTHORIZED);
    assert_eq!(reply.body["error"]["code"], "UNAUTHORIZED");
    let dev = user(&f.env, &f.admin, "dev", 3, &[]).await;
    let reply = call("/api/v1/logs/config".into(), Some(dev.clone()))
        .await
        .expect(StatusCode::FORBIDDEN);
    assert_eq!(reply.body["error"]["code"], "LOG_PERMISSION_DENIED");
    let ops = user(&f.env, &f.admin, "ops", 2, &[]).await;
    call("/api/v1/logs/config".into(), Some(ops.clone()))
        .await
        .expect(StatusCode::FORBIDDEN);
    call("/api/v1/logs/stats".into(), Some(ops.clone()))
        .await
        .expect(StatusCode::OK);
    let reply = f
        .env
        .call(
            "POST",
            "/api/v1/logs/cleanup",
            Some(&dev),
            Some(json!({"dryRun": true})),
        )
        .await
        .expect(StatusCode::FORBIDDEN);
    assert_eq!(reply.body["error"]["code"], "LOG_PERMISSION_DENIED");

    // LOG_QUERY_INVALID_PARAMS, with the field and every error.
    for (query, field) in [
        ("limit=201", "limit"),
        ("limit=0", "limit"),
        ("limit=ten", "limit"),
        ("page=0", "page"),
        ("sortBy=size", "sortBy"),
        ("sortOrder=up", "sortOrder"),
        ("level=LOUD", "level"),
        ("startTime=yesterday", "startTime"),
        ("statusCode=99", "statusCode"),
        ("hasError=maybe", "hasError"),
        ("minDuration=-1", "minDuration"),
        ("minDuration=10&maxDuration=5", "maxDuration"),
        ("levle=ERROR", "levle"),
        ("page=1000&limit=200", "page"),
        (
            "startTime=2025-12-08T00:00:00Z&endTime=2025-12-07T00:00:00Z",
            "endTime",
        ),
    ] {
        let reply = call(format!("/api/v1/logs/query?{query}"), admin.clone())
            .await
            .expect(StatusCode::BAD_REQUEST);
        let error = &reply.body["error"];
        assert_eq!(error["code"], "LOG_QUERY_INVALID_PARAMS", "{query}");
        assert_eq!(error["field"], field, "{query}: {}", reply.text);
        assert_eq!(error["errors"][0]["field"], field, "{query}");
        assert_eq!(reply.body["statusCode"], 400);
    }
    let reply = call(
        "/api/v1/logs/query?limit=500&sortBy=size&level=LOUD".into(),
        admin.clone(),
    )
    .await
    .expect(StatusCode::BAD_REQUEST);
    let fields = error_fields(&reply.body);
    assert_eq!(fields, ["level", "sortBy", "limit"], "every error at once");
    for path in [
        "/api/v1/logs/errors?thresholdMs=5",
        "/api/v1/logs/slow-requests?thresholdMs=0",
        "/api/v1/logs/stats?groupBy=week",
    ] {
        let reply = call(path.into(), admin.clone())
            .await
            .expect(StatusCode::BAD_REQUEST);
        assert_eq!(reply.body["error"]["code"], "LOG_QUERY_INVALID_PARAMS", "{path}");
    }

    // LOG_QUERY_TIME_RANGE_TOO_LARGE: seven days for query, errors and slow requests.
    let seven = format!(
        "startTime={}&endTime={}",
        enc("2025-12-01T00:00:00.000Z"),
        enc("2025-12-08T00:00:00.000Z")
    );
    let eight = format!(
        "startTime={}&endTime={}",
        enc("2025-12-01T00:00:00.000Z"),
        enc("2025-12-08T00:00:00.001Z")
    );
    for endpoint in ["query", "errors", "slow-requests"] {
        call(
            format!("/api/v1/logs/{endpoint}?{seven}&service=Form"),
            admin.clone(),
        )
        .await
        .expect(StatusCode::OK);
        let reply = call(format!("/api/v1/logs/{endpoint}?{eight}"), admin.clone())
            .await
            .expect(StatusCode::BAD_REQUEST);
        assert_eq!(
            reply.body["error"]["code"], "LOG_QUERY_TIME_RANGE_TOO_LARGE",
            "{endpoint}"
        );
        assert_eq!(reply.body["error"]["details"]["maxDays"], 7);
    }

    // LOG_QUERY_TOO_BROAD: no filter, more than a day and more than 100 a page.
    let two_days = format!(
        "startTime={}&endTime={}",
        enc("2025-12-01T00:00:00Z"),
        enc("2025-12-03T00:00:00Z")
    );
    let reply = call(format!("/api/v1/logs/query?{two_days}&limit=150"), admin.clone())
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert_eq!(reply.body["error"]["code"], "LOG_QUERY_TOO_BROAD");
    call(format!("/api/v1/logs/query?{two_days}&limit=100"), admin.clone())
        .await
        .expect(StatusCode::OK);
    call(
        format!("/api/v1/logs/query?{two_days}&limit=150&service=Form"),
        admin.clone(),
    )
    .await
    .expect(StatusCode::OK);
    call("/api/v1/logs/query?limit=200".into(), admin.clone())
        .await
        .expect(StatusCode::OK);

    // Detail of an unknown id.
    let reply = call("/api/v1/logs/no-such-record".into(), admin.clone())
        .await
        .expect(StatusCode::NOT_FOUND);
    assert_eq!(reply.body["error"]["code"], "LOG_NOT_FOUND");
}

#[tokio::test]
async fn region_and_environment_scope_is_forced() {
    let f = fixture(400, 29).await;
    let cn = user(&f.env, &f.admin, "cnops", 2, &["CN"]).await;
    let dev = user(&f.env, &f.admin, "dev", 3, &[]).await;
    let total = |token: &str, path: &str| {
        let env = &f.env;
        let (token, path) = (token.to_string(), path.to_string());
        async move {
            env.call("GET", &path, Some(&token), None)
                .await
                .expect(StatusCode::OK)
                .body["data"]
                .clone()
        }
    };
    let in_cn = |r: &LogRecord| r.service.region.as_deref() == Some("CN");
    let in_dev = |r: &LogRecord| matches!(r.environment.as_deref(), Some("development" | "dev"));
    // Whatever region a CN user asks for, only CN comes back.
    let data = total(&cn, "/api/v1/logs/query?limit=200").await;
    assert_eq!(data["total"], f.matching(in_cn).len());
    assert!(
        data["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["service"]["region"] == "CN")
    );
    assert_eq!(total(&cn, "/api/v1/logs/query?region=US").await["total"], 0);
    assert_eq!(
        total(&cn, "/api/v1/logs/query?region=US,CN").await["total"],
        f.matching(in_cn).len()
    );
    let stats = total(&cn, "/api/v1/logs/stats").await;
    assert_eq!(stats["byRegion"], json!({ "CN": f.matching(in_cn).len() }));
    assert_eq!(
        total(&cn, "/api/v1/logs/errors").await["total"],
        f.matching(|r| in_cn(r) && is_error(r)).len()
    );
    assert_eq!(
        total(&cn, "/api/v1/logs/slow-requests").await["total"],
        f.matching(|r| in_cn(r) && r.duration_ms().is_some_and(|d| d >= 2000.0))
            .len()
    );
    // The developer sees only the development environment.
    let data = total(&dev, "/api/v1/logs/query?limit=200").await;
    assert_eq!(data["total"], f.matching(in_dev).len());
    assert!(
        data["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["environment"] == "development" || i["environment"] == "dev")
    );
    assert_eq!(
        total(&dev, "/api/v1/logs/stats").await["summary"]["totalLogs"],
        f.matching(in_dev).len()
    );
    let production = f
        .records
        .iter()
        .find(|r| r.environment.as_deref() == Some("production"))
        .unwrap();
    let reply = f
        .env
        .call(
            "GET",
            &format!("/api/v1/logs/{}", production.id),
            Some(&dev),
            None,
        )
        .await
        .expect(StatusCode::NOT_FOUND);
    assert_eq!(reply.body["error"]["code"], "LOG_NOT_FOUND");
    let development = f.records.iter().find(|r| in_dev(r)).unwrap();
    f.env
        .call(
            "GET",
            &format!("/api/v1/logs/{}", development.id),
            Some(&dev),
            None,
        )
        .await
        .expect(StatusCode::OK);
    // The admin sees everything.
    assert_eq!(total(&f.admin, "/api/v1/logs/query").await["total"], 400);
}

#[tokio::test]
async fn modules_detail_and_export() {
    let env = TestEnv::start_with(Variant::Sqlite, |config| config.query_api.export_max_rows = 120)
        .await
        .unwrap();
    let now = env.clock.now();
    let mut records = dataset(300, now - Duration::minutes(1), 31);
    for (i, r) in records.iter_mut().enumerate() {
        r.module = Some(["auth", "forms", "billing"][i % 3].to_string());
    }
    ingest(&env.state.index, records.clone()).await;
    let admin = env.admin().await;

    let data = env
        .call("GET", "/api/v1/logs/modules", Some(&admin), None)
        .await
        .expect(StatusCode::OK)
        .body["data"]
        .clone();
    assert_eq!(data["services"], json!(["Approval", "Form", "IAM"]));
    assert_eq!(data["modules"], json!(["auth", "billing", "forms"]));
    assert_eq!(data["moduleCounts"]["auth"], 100);

    let target = &records[42];
    let data = env
        .call("GET", &format!("/api/v1/logs/{}", target.id), Some(&admin), None)
        .await
        .expect(StatusCode::OK)
        .body["data"]
        .clone();
    assert_eq!(data["id"], target.id);
    assert_eq!(data["message"], target.message);
    assert_eq!(data["@timestamp"], ts(&target.timestamp));

    // CSV: every Form record, newest first, header plus rows; NDJSON: the LogItems.
    let mut form: Vec<&LogRecord> = records.iter().filter(|r| r.service.name == "Form").collect();
    newest_first(&mut form);
    let reply = env
        .call(
            "GET",
            "/api/v1/logs/export?format=csv&service=Form",
            Some(&admin),
            None,
        )
        .await
        .expect(StatusCode::OK);
    assert!(
        reply.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    assert!(
        reply.headers["content-disposition"]
            .to_str()
            .unwrap()
            .contains("attachment")
    );
    assert_eq!(reply.headers["x-total-count"], form.len().to_string().as_str());
    let lines: Vec<&str> = reply.text.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert!(lines[0].starts_with("id,@timestamp,level,service"));
    assert_eq!(lines.len(), form.len() + 1);
    let exported: Vec<&str> = lines[1..].iter().map(|l| l.split(',').next().unwrap()).collect();
    assert_eq!(exported, form.iter().map(|r| r.id.as_str()).collect::<Vec<_>>());

    let reply = env
        .call(
            "GET",
            "/api/v1/logs/export?format=ndjson&sortOrder=asc&level=ERROR",
            Some(&admin),
            None,
        )
        .await
        .expect(StatusCode::OK);
    let mut errors: Vec<&LogRecord> = records.iter().filter(|r| r.level == Level::Error).collect();
    errors.sort_by_key(|r| r.timestamp);
    let lines: Vec<Value> = reply
        .text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines
            .iter()
            .map(|l| l["id"].as_str().unwrap())
            .collect::<Vec<_>>(),
        errors.iter().map(|r| r.id.as_str()).collect::<Vec<_>>()
    );
    assert_eq!(lines[0]["service"]["name"], errors[0].service.name);

    // Capped at query_api.export_max_rows, across several pages.
    let reply = env
        .call(
            "GET",
            "/api/v1/logs/export?format=ndjson&limit=5",
            Some(&admin),
            None,
        )
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert_eq!(
        reply.body["error"]["field"], "limit",
        "export has no limit: the cap applies"
    );
    let reply = env
        .call("GET", "/api/v1/logs/export?format=ndjson", Some(&admin), None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(reply.text.lines().count(), 120);
    assert_eq!(reply.headers["x-total-count"], "300");
    let reply = env
        .call("GET", "/api/v1/logs/export?format=xml", Some(&admin), None)
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert_eq!(reply.body["error"]["field"], "format");

    // Exports are audited.
    let (entries, total) = env
        .state
        .db
        .list_audit(
            &owl_query_api::AuditFilter {
                action: Some("export".into()),
                ..Default::default()
            },
            1,
            50,
        )
        .await
        .unwrap();
    assert!(total >= 3, "{entries:?}");
    assert!(entries.iter().any(|e| e.path == "/api/v1/logs/export"));
}
