//! The 5-minute analytics cache end to end: in process (SQLite) and in Redis (PostgreSQL + Redis):
//! a hit is the same answer byte for byte, entries are separated by endpoint, parameters and
//! scope, and they expire at 300 s by the application's clock.

mod common;
mod crm_support;

use std::time::Duration;

use axum::http::StatusCode;
use common::Variant;
use crm_support::{CrmDb, CrmEnv, DAY, Dataset};
use owl_query_api::crm::AnalyticsCache;
use serde_json::json;

const SUMMARY: &str = "/api/analytics-monitoring/analytics/customers/summary";

#[tokio::test]
async fn in_process_cache_hits_and_expires() {
    hits_scopes_and_expiry(Variant::Sqlite).await;
}

#[tokio::test]
async fn redis_cache_hits_and_expires() {
    hits_scopes_and_expiry(Variant::Redis).await;
}

async fn hits_scopes_and_expiry(variant: Variant) {
    let Some(env) = CrmEnv::start_on(CrmDb::Shared, variant, |_| {}).await else {
        return;
    };
    let admin = env.admin().await;
    env.create_org(&admin, "A", "甲", "0").await;
    let now = env.now();
    let mut d = Dataset::default();
    d.customer("individual", "own", "A", now - DAY);
    d.customer("organization", "agent", "B", now - DAY);
    env.insert(&d).await;
    let analyst = env.user_with(&admin, "analyst", "A", &["analytics:read"]).await;

    let get = |token: String, path: String| {
        let env = &env;
        async move {
            let reply = env
                .call("GET", &path, Some(&token), None)
                .await
                .expect(StatusCode::OK);
            (
                reply.headers["x-cache"].to_str().unwrap().to_string(),
                reply.text,
                reply.body["data"].clone(),
            )
        }
    };
    let (status, first, data) = get(admin.clone(), SUMMARY.into()).await;
    assert_eq!(status, "MISS");
    assert_eq!(data["total"], 2);

    // A new customer is not seen while the answer is cached: the same bytes come back.
    let mut more = Dataset::default();
    more.customer("individual", "own", "A", now);
    env.insert(&more).await;
    let (status, second, _) = get(admin.clone(), SUMMARY.into()).await;
    assert_eq!((status.as_str(), second.as_str()), ("HIT", first.as_str()));

    // Another scope, other parameters, another endpoint: entries of their own.
    let (status, _, mine) = get(analyst.clone(), SUMMARY.into()).await;
    assert_eq!(
        (status.as_str(), mine["total"].clone()),
        ("MISS", json!(2)),
        "A's two customers, fresh"
    );
    let trend = "/api/analytics-monitoring/analytics/customers/trend";
    assert_eq!(get(admin.clone(), format!("{trend}?period=day")).await.0, "MISS");
    assert_eq!(
        get(admin.clone(), trend.into()).await.0,
        "HIT",
        "no period is the default day"
    );
    assert_eq!(get(admin.clone(), format!("{trend}?period=week")).await.0, "MISS");
    let overview = env
        .call("GET", "/api/analytics/overview", Some(&admin), None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(overview.headers["x-cache"], "MISS");
    let again = env
        .call("GET", "/api/analytics/overview", Some(&admin), None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        (again.headers["x-cache"].to_str().unwrap(), again.text.as_str()),
        ("HIT", overview.text.as_str())
    );

    let key = AnalyticsCache::key("analytics-monitoring:customers/summary", &json!({}), &None);
    assert!(
        env.state.kv.get(&key).await.unwrap().is_some(),
        "the entry is in the {} store",
        env.state.kv.backend()
    );
    assert_eq!(
        env.state.kv.backend(),
        if variant == Variant::Redis {
            "redis"
        } else {
            "memory"
        }
    );

    env.clock.advance(Duration::from_millis(299_999));
    let (status, third, _) = get(admin.clone(), SUMMARY.into()).await;
    assert_eq!(
        (status.as_str(), third.as_str()),
        ("HIT", first.as_str()),
        "fresh until 300 s"
    );
    env.clock.advance(Duration::from_millis(1));
    let (status, _, data) = get(admin.clone(), SUMMARY.into()).await;
    assert_eq!(status, "MISS", "expired at 300 s");
    assert_eq!(data["total"], 3, "recomputed from the database");
    assert_eq!(get(admin.clone(), SUMMARY.into()).await.0, "HIT");
}

#[tokio::test]
async fn ttl_zero_turns_the_cache_off() {
    let env = CrmEnv::start_on(CrmDb::Shared, Variant::Sqlite, |c| {
        c.query_api.analytics_cache_ttl_s = 0
    })
    .await
    .unwrap();
    let admin = env.admin().await;
    for _ in 0..2 {
        let reply = env
            .call("GET", SUMMARY, Some(&admin), None)
            .await
            .expect(StatusCode::OK);
        assert_eq!(reply.headers["x-cache"], "BYPASS");
    }
}

#[tokio::test]
async fn warming_in_process_fills_every_figure_of_every_analytics_scope() {
    warming_fills_every_figure(Variant::Sqlite).await;
}

#[tokio::test]
async fn warming_in_redis_fills_every_figure_of_every_analytics_scope() {
    warming_fills_every_figure(Variant::Redis).await;
}

/// The `warm_analytics_cache` job stores what a request without parameters would, under its key:
/// for the admin's scope and each scope of a user who may read analytics, not for others.
async fn warming_fills_every_figure(variant: Variant) {
    let Some(env) = CrmEnv::start_on(CrmDb::Shared, variant, |_| {}).await else {
        return;
    };
    let admin = env.admin().await;
    env.create_org(&admin, "A", "甲", "0").await;
    env.create_org(&admin, "B", "乙", "0").await;
    let now = env.now();
    let mut d = Dataset::default();
    d.customer("individual", "own", "A", now - DAY);
    d.customer("organization", "agent", "B", now - DAY);
    env.insert(&d).await;
    let analyst = env.user_with(&admin, "analyst", "A", &["analytics:read"]).await;
    // Reads logs only: their scope is not warmed.
    let _reader = env.user_with(&admin, "reader", "B", &["log:read"]).await;

    let report = owl_query_api::crm::warm::warm(&env.state, 100).await.unwrap();
    assert_eq!(report.records, 14, "7 figures x 2 scopes: {report:?}");
    assert_eq!(report.detail["scopes"], 2, "{report:?}");
    assert!(report.bytes > 0);

    let figures = [
        "customers/summary",
        "customers/trend",
        "orders/summary",
        "orders/revenue",
        "service-records/statistics",
        "users/activity",
        "organizations/summary",
    ];
    for figure in figures {
        let path = format!("/api/analytics-monitoring/analytics/{figure}");
        for token in [&admin, &analyst] {
            let reply = env
                .call("GET", &path, Some(token), None)
                .await
                .expect(StatusCode::OK);
            assert_eq!(reply.headers["x-cache"], "HIT", "{figure}");
        }
    }
    let (everyone, mine) = (
        env.call("GET", SUMMARY, Some(&admin), None)
            .await
            .expect(StatusCode::OK),
        env.call("GET", SUMMARY, Some(&analyst), None)
            .await
            .expect(StatusCode::OK),
    );
    assert_eq!(everyone.body["data"]["total"], 2, "{}", everyone.text);
    assert_eq!(mine.body["data"]["total"], 1, "A's own customer: {}", mine.text);

    // Past the TTL the warmed entries lapse like any other; a run with one scope warms the
    // unrestricted one first and says how many it left.
    env.clock.advance(Duration::from_secs(300));
    let report = owl_query_api::crm::warm::warm(&env.state, 1).await.unwrap();
    assert_eq!(
        (report.records, report.detail["scopes_not_warmed"].clone()),
        (7, json!(1)),
        "{report:?}"
    );
    let hit = |token: String| {
        let env = &env;
        async move {
            let reply = env
                .call("GET", SUMMARY, Some(&token), None)
                .await
                .expect(StatusCode::OK);
            reply.headers["x-cache"].to_str().unwrap().to_string()
        }
    };
    assert_eq!(hit(admin.clone()).await, "HIT");
    assert_eq!(hit(analyst.clone()).await, "MISS");
}

#[tokio::test]
async fn warming_with_the_cache_off_computes_nothing() {
    let env = CrmEnv::start_on(CrmDb::Shared, Variant::Sqlite, |c| {
        c.query_api.analytics_cache_ttl_s = 0
    })
    .await
    .unwrap();
    let report = owl_query_api::crm::warm::warm(&env.state, 100).await.unwrap();
    assert_eq!(report.records, 0);
    assert!(
        report.detail["skipped"]
            .as_str()
            .unwrap()
            .contains("analytics_cache_ttl_s")
    );
}
