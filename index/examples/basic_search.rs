//! Index a few records, then search them: a CJK keyword, a substring inside a word, filters, sort
//! and paging, and a trace.
//!
//! Run with `cargo run -p owl-index --example basic_search`; it works in a temporary directory.

use owl_index::{Index, IndexSettings, LogFilter, SearchRequest, SortBy, SortOrder};
use owl_model::{LogRecord, parse_timestamp};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    // The collector's side: one writer per index root.
    let index = Index::open(dir.path(), IndexSettings::default())?;

    let lines = [
        r#"{"id":"1","@timestamp":"2025-12-07T10:30:00.100Z","level":"INFO","message":"POST /api/v1/auth/verify | 200 | 50ms",
            "trace":{"id":"CN-1733580000000-a1b2c3d4","span_id":"IAM-1"},
            "http":{"method":"POST","url":"/api/v1/auth/verify","status_code":200,"duration_ms":50},
            "service":{"name":"IAM","region":"CN"}}"#,
        r#"{"id":"2","@timestamp":"2025-12-07T10:30:00.150Z","level":"ERROR","message":"POST /api/v1/forms | 500 | 1234ms",
            "trace":{"id":"CN-1733580000000-a1b2c3d4","span_id":"FORM-1","parent_span_id":"IAM-1"},
            "http":{"method":"POST","url":"/api/v1/forms","status_code":500,"duration_ms":1234},
            "user":{"id":"user-001","name":"zhangsan"},
            "service":{"name":"Form","region":"CN"},
            "error":{"type":"InternalServerError","message":"Database connection failed"}}"#,
        r#"{"id":"3","timestamp":"2025-12-07T10:31:00","level":"ERROR","message":"用户登录失败：用户名或密码错误",
            "service":"foundation-service","function":"login","file":"/app/foundation_service/api/v1/auth.py","module":"auth"}"#,
    ];
    let now = parse_timestamp("2025-12-07T10:35:00Z").expect("a valid time");
    let records = lines
        .iter()
        .map(|line| LogRecord::from_json_slice(line.as_bytes(), now))
        .collect::<Result<Vec<_>, _>>()?;
    index.add(&records)?;
    // Searchable already (from the in-memory tail); durable and visible to other processes after
    // the commit.
    index.commit()?;

    let search = |filter: LogFilter| {
        index.search(&SearchRequest {
            filter,
            limit: 20,
            ..SearchRequest::default()
        })
    };

    let cjk = search(LogFilter {
        keyword: Some("登录失败".into()),
        ..LogFilter::default()
    })?;
    println!(
        "keyword 登录失败: {} hit(s): {:?}",
        cjk.total,
        cjk.hits.iter().map(|r| &r.message).collect::<Vec<_>>()
    );

    let inside_a_word = search(LogFilter {
        keyword: Some("NECTION".into()),
        ..LogFilter::default()
    })?;
    println!(
        "keyword NECTION (matches error.message): {} hit(s)",
        inside_a_word.total
    );

    let file = search(LogFilter {
        file: Some("auth.py".into()),
        function: Some("log".into()),
        ..LogFilter::default()
    })?;
    println!("file auth.py + function log: {} hit(s)", file.total);

    let window = LogFilter::between(
        parse_timestamp("2025-12-07T10:00:00Z").expect("a valid time"),
        parse_timestamp("2025-12-07T11:00:00Z").expect("a valid time"),
    );
    let slowest = index.search(&SearchRequest {
        filter: LogFilter {
            min_duration_ms: Some(10.0),
            ..window.clone()
        },
        sort_by: SortBy::Duration,
        order: SortOrder::Desc,
        offset: 0,
        limit: 1,
    })?;
    println!(
        "slowest of {} request(s): {}",
        slowest.total, slowest.hits[0].message
    );

    let errors = index.count(&LogFilter {
        has_error: Some(true),
        ..window
    })?;
    println!("errors in the hour: {errors}");

    if let Some(trace) = index.trace("CN-1733580000000-a1b2c3d4")? {
        println!("trace {} took {} ms:", trace.trace_id, trace.total_duration_ms);
        for span in &trace.spans {
            println!(
                "  {} {} {} {}ms",
                span.service,
                span.operation,
                span.status.as_str(),
                span.duration_ms
            );
        }
    }

    // The query API's side, possibly another process: read-only, no writer lock.
    let reader = Index::open_reader(dir.path())?;
    println!("reader sees record 3: {}", reader.get("3")?.is_some());
    Ok(())
}
