use chrono::NaiveDate;
use serde_json::{Value, json};

use super::catalogue::*;
use super::csv::*;
use super::query::*;
use super::sql::*;
use crate::crm::period::{Period, Window};
use crate::validate::Validator;

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2025, 6, 15).unwrap()
}

fn parse(body: Value) -> Result<AnalyticsQuery, Vec<String>> {
    let body: QueryBody = serde_json::from_value(body).unwrap();
    let mut v = Validator::new();
    match AnalyticsQuery::parse(&mut v, &body, today()) {
        Some(query) => Ok(query),
        None => Err(v
            .finish()
            .unwrap_err()
            .errors
            .into_iter()
            .map(|e| e.field)
            .collect()),
    }
}

#[test]
fn the_seed_example_is_valid() {
    let query = parse(json!({
        "start_date": "2025-01-01",
        "end_date": "2025-12-31",
        "org_codes": ["050101", "050102"],
        "metrics": ["user_count", "data_volume"],
        "dimensions": ["org", "date"],
        "filters": { "status": 1 }
    }))
    .unwrap();
    assert_eq!(query.metrics, [Metric::UserCount, Metric::DataVolume]);
    assert_eq!(query.dimensions, [Dimension::Org, Dimension::Time(Period::Day)]);
    assert_eq!(
        query.columns(),
        ["org_code", "org_name", "date", "user_count", "data_volume"]
    );
    assert_eq!(query.window.days(), 365);
    assert_eq!(query.filters[&Filter::Status], FilterValue::Integer(1));
}

#[test]
fn every_problem_is_reported_with_its_field() {
    let fields = parse(json!({
        "start_date": "2025-13-01",
        "metrics": ["user_count", "bogus", "user_count"],
        "dimensions": ["date", "month", "region"],
        "filters": { "status": 2, "color": "red", "priority": "high" },
        "org_codes": [""]
    }))
    .unwrap_err();
    assert_eq!(
        fields,
        [
            "start_date",
            "metrics[1]",
            "metrics[2]",
            "dimensions[1]",
            "dimensions[2]",
            "filters.status",
            "filters.color",
            "filters.priority",
            "org_codes[0]"
        ]
    );
    assert_eq!(parse(json!({})).unwrap_err(), ["metrics"]);
    assert_eq!(
        parse(json!({"metrics": ["revenue"], "start_date": "2025-02-01", "end_date": "2025-01-01"}))
            .unwrap_err(),
        ["start_date"]
    );
    assert_eq!(
        parse(json!({"metrics": ["revenue"], "dimensions": ["date"], "start_date": "2020-01-01", "end_date": "2025-01-01"})).unwrap_err(),
        ["dimensions"],
        "more than 1000 days by day"
    );
    assert!(parse(json!({"metrics": ["revenue"], "dimensions": ["month"], "start_date": "2020-01-01", "end_date": "2025-01-01"})).is_ok());
}

#[test]
fn defaults_are_the_last_30_days_and_the_canonical_form_is_stable() {
    let a = parse(json!({"metrics": ["data_volume", "user_count"], "org_codes": ["B", "A", "B"]})).unwrap();
    assert_eq!(a.window.first.to_string(), "2025-05-17");
    assert_eq!(a.window.last.to_string(), "2025-06-15");
    let canonical = a.canonical();
    assert_eq!(canonical["org_codes"], json!(["A", "B"]));
    let b = parse(
        json!({"metrics": ["data_volume", "user_count"], "org_codes": ["A", "B"], "end_date": "2025-06-15"}),
    )
    .unwrap();
    assert_eq!(b.canonical(), canonical);
}

#[test]
fn csv_escapes_and_defuses_formulas() {
    let rows = [
        json!({"org_code": "A", "org_name": "=HYPERLINK(\"x\")", "user_count": 3}),
        json!({"org_code": "B,1", "user_count": 0}),
    ];
    let csv = to_csv(&["org_code", "org_name", "user_count"], &rows);
    assert_eq!(
        csv,
        "org_code,org_name,user_count\r\nA,\"'=HYPERLINK(\"\"x\"\")\",3\r\n\"B,1\",,0\r\n"
    );
}

#[test]
fn overview_buckets_grow_with_the_range() {
    let window = |days: u64| Window {
        first: today() - chrono::Days::new(days - 1),
        last: today(),
    };
    assert_eq!(overview_period(&window(30)), Period::Day);
    assert_eq!(overview_period(&window(365)), Period::Week);
    assert_eq!(overview_period(&window(3660)), Period::Month);
    assert!(window(3660).buckets(Period::Month).is_ok());
}
