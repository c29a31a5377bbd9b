//! Aggregations over filtered records: counts by level, service and region, hourly buckets with
//! error rate and mean duration, exact duration percentiles, slow requests and top paths.
//!
//! Run with `cargo run -p owl-index --example aggregation`; it works in a temporary directory.

use chrono::Duration;
use owl_index::{Index, IndexSettings, LogFilter, StatsRequest};
use owl_model::{Http, Level, LogRecord, Service, parse_timestamp};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let index = Index::open(dir.path(), IndexSettings::default())?;

    let start = parse_timestamp("2025-12-07T08:00:00Z").expect("a valid time");
    let services = ["IAM", "Form", "Approval"];
    let regions = ["CN", "US", "UAE"];
    let paths = [
        "/api/v1/forms/submit?draft=1",
        "/api/v1/reports/generate",
        "/api/v1/auth/verify",
    ];
    let records: Vec<LogRecord> = (0..3000u32)
        .map(|i| {
            let status = if i % 97 == 0 { 500 } else { 200 };
            let mut record = LogRecord {
                id: format!("r{i}"),
                timestamp: start + Duration::seconds(i64::from(i) * 7),
                level: if status == 500 { Level::Error } else { Level::Info },
                message: format!("request {i}"),
                service: Service {
                    name: services[i as usize % 3].to_string(),
                    region: Some(regions[i as usize % 3].to_string()),
                    instance: None,
                },
                http: Some(Http {
                    url: Some(paths[i as usize % 3].to_string()),
                    method: Some("POST".into()),
                    status_code: Some(status),
                    duration_ms: Some(f64::from((i * 37) % 5000)),
                    ..Http::default()
                }),
                ..LogRecord::default()
            };
            record.kind = record.classify();
            record
        })
        .collect();
    index.add(&records)?;
    index.commit()?;

    let stats = index.stats(&StatsRequest {
        filter: LogFilter::between(start, start + Duration::hours(6)),
        slow_threshold_ms: 3000.0,
        top_paths: 3,
    })?;
    println!("total {} (errors {})", stats.total, stats.error_count);
    println!("by level: {:?}", stats.by_level);
    println!("by service: {:?}", stats.by_service);
    println!("by region: {:?}", stats.by_region);
    let d = &stats.durations;
    println!(
        "requests {}: avg {:.1} ms, p95 {:?} ms, p99 {:?} ms, max {:?} ms, slow (>= 3 s) {}",
        d.count,
        d.avg_ms.unwrap_or_default(),
        d.p95_ms,
        d.p99_ms,
        d.max_ms,
        stats.slow_count
    );
    for bucket in &stats.by_hour {
        println!(
            "  {} count {:5} error rate {:.3} avg {:.0} ms",
            bucket.start.format("%H:%M"),
            bucket.count,
            bucket.error_rate(),
            bucket.avg_duration_ms.unwrap_or_default()
        );
    }
    for path in &stats.top_paths {
        println!(
            "  {} x{} avg {:.0} ms",
            path.path,
            path.count,
            path.avg_duration_ms.unwrap_or_default()
        );
    }

    let usage = index.disk_usage()?;
    println!(
        "disk: {} bytes in {} files; by kind {:?}",
        usage.total.bytes, usage.total.files, usage.by_kind
    );
    Ok(())
}
