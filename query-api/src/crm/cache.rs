//! The analytics answer cache (the CRM analytics API: "所有数据分析接口支持 Redis 缓存（5分钟过期）").
//!
//! - **Where.** The query API's [`KvStore`]: Redis when `storage.redis_url` is set, so every replica
//!   shares one cache, else the in-process store.
//! - **Key.** `analytics:<endpoint>:<hash>`, the hash (SHA-256, 128 bits shown) of the endpoint, its
//!   parameters after validation and defaults (so `?period=day` and no period share an entry) and
//!   the caller's organization scope (`all`, or the sorted codes the caller may read). Two users
//!   with the same scope share entries; users with different scopes never do.
//! - **Value.** `v1:<expires_at_ms>:<data JSON>`: the `data` of the answer exactly as first
//!   computed, so an answer served from cache is byte for byte the same answer. Expiry is checked
//!   against the query API's clock (a manual clock in tests), and the store's own expiry (Redis
//!   `PX`) removes the entry at the same time.
//! - **Failures.** A cache that cannot be read or written is bypassed with a warning: the answer is
//!   computed from the database, slower but correct.
//! - **TTL.** `query_api.analytics_cache_ttl_s` (300); 0 turns the cache off.
//!
//! Concurrent misses of one key each compute the answer (no request coalescing): the figures are
//! a handful of indexed aggregate queries, and coalescing across replicas would need a lock in Redis.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::OrgScope;
use crate::envelope::Failure;
use crate::kv::{KvError, KvStore};
use crate::state::AppState;
use owl_model::clock::Clock;

const FORMAT: &str = "v1";

/// Whether an answer came from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Served from the cache.
    Hit,
    /// Computed and stored.
    Miss,
    /// Computed without the cache (turned off or unavailable).
    Bypass,
}

impl CacheStatus {
    /// The `X-Cache` header value: `HIT`, `MISS` or `BYPASS`.
    pub fn header_value(self) -> &'static str {
        match self {
            CacheStatus::Hit => "HIT",
            CacheStatus::Miss => "MISS",
            CacheStatus::Bypass => "BYPASS",
        }
    }
}

/// The analytics answer cache.
#[derive(Clone)]
pub struct AnalyticsCache {
    kv: Arc<dyn KvStore>,
    clock: Clock,
    ttl: Duration,
}

impl std::fmt::Debug for AnalyticsCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnalyticsCache")
            .field("kv", &self.kv.backend())
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl AnalyticsCache {
    /// A cache in `kv` whose entries live `ttl` by `clock`.
    pub fn new(kv: Arc<dyn KvStore>, clock: Clock, ttl: Duration) -> AnalyticsCache {
        AnalyticsCache { kv, clock, ttl }
    }

    /// The cache of an application.
    pub fn of(state: &AppState) -> AnalyticsCache {
        AnalyticsCache::new(
            state.kv.clone(),
            state.clock.clone(),
            Duration::from_secs(state.config.query_api.analytics_cache_ttl_s),
        )
    }

    /// The key of an answer.
    pub fn key(endpoint: &str, params: &Value, scope: &OrgScope) -> String {
        let scope = match scope {
            None => "all".to_string(),
            Some(codes) => codes.iter().map(String::as_str).collect::<Vec<_>>().join(","),
        };
        let mut hasher = Sha256::new();
        for part in [endpoint, &params.to_string(), &scope] {
            hasher.update(part.len().to_le_bytes());
            hasher.update(part.as_bytes());
        }
        let digest = hasher.finalize();
        format!("analytics:{endpoint}:{}", hex::encode(&digest[..16]))
    }

    /// The cached data of `key` if fresh, else `compute`'s (stored for next time). Only successes
    /// are cached.
    pub async fn get_or_compute<F, Fut>(
        &self,
        key: &str,
        compute: F,
    ) -> Result<(String, CacheStatus), Failure>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<String, Failure>>,
    {
        if self.ttl.is_zero() {
            return Ok((compute().await?, CacheStatus::Bypass));
        }
        let now = self.clock.now_ms();
        let mut usable = true;
        match self.kv.get(key).await {
            Ok(Some(entry)) => {
                if let Some(data) = fresh(&entry, now) {
                    return Ok((data.to_string(), CacheStatus::Hit));
                }
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(%error, key, "analytics cache unreadable; computing without it");
                usable = false;
            }
        }
        let data = compute().await?;
        if !usable {
            return Ok((data, CacheStatus::Bypass));
        }
        match self.put(key, &data, now).await {
            Ok(()) => Ok((data, CacheStatus::Miss)),
            Err(error) => {
                tracing::warn!(%error, key, "analytics cache unwritable; answer not cached");
                Ok((data, CacheStatus::Bypass))
            }
        }
    }

    /// Stores `data` under `key`, fresh for the TTL from `now_ms` (what the warm job does ahead of
    /// the requests).
    pub async fn put(&self, key: &str, data: &str, now_ms: i64) -> Result<(), KvError> {
        let expires_at = now_ms.saturating_add(i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX));
        let entry = format!("{FORMAT}:{expires_at}:{data}");
        self.kv.set(key, &entry, Some(self.ttl)).await
    }

    /// Whether answers are cached at all (`query_api.analytics_cache_ttl_s` above 0).
    pub fn enabled(&self) -> bool {
        !self.ttl.is_zero()
    }
}

/// The data of an entry that has not expired at `now_ms`.
fn fresh(entry: &str, now_ms: i64) -> Option<&str> {
    let rest = entry.strip_prefix(FORMAT)?.strip_prefix(':')?;
    let (expires_at, data) = rest.split_once(':')?;
    let expires_at: i64 = expires_at.parse().ok()?;
    (now_ms < expires_at).then_some(data)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use serde_json::json;

    use super::*;
    use crate::kv::{MemoryKv, RedisKv};

    /// Counts how often the figure is computed; its answer changes every time.
    struct Source(AtomicUsize);

    impl Source {
        async fn compute(&self) -> Result<String, Failure> {
            let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
            Ok(json!({ "computed": n }).to_string())
        }
    }

    async fn hits_and_expiry(kv: Arc<dyn KvStore>, clock: Clock) {
        let cache = AnalyticsCache::new(kv, clock.clone(), Duration::from_secs(300));
        let source = Source(AtomicUsize::new(0));
        let key = AnalyticsCache::key("analytics-monitoring:customers/summary", &json!({}), &None);

        let (first, status) = cache.get_or_compute(&key, || source.compute()).await.unwrap();
        assert_eq!(status, CacheStatus::Miss);
        let (second, status) = cache.get_or_compute(&key, || source.compute()).await.unwrap();
        assert_eq!(
            (second.as_str(), status),
            (first.as_str(), CacheStatus::Hit),
            "the same answer"
        );

        clock.advance(Duration::from_millis(299_999));
        let (third, status) = cache.get_or_compute(&key, || source.compute()).await.unwrap();
        assert_eq!(
            (third.as_str(), status),
            (first.as_str(), CacheStatus::Hit),
            "fresh until 5 minutes"
        );

        clock.advance(Duration::from_millis(1));
        let (fourth, status) = cache.get_or_compute(&key, || source.compute()).await.unwrap();
        assert_eq!(status, CacheStatus::Miss, "expired at exactly 5 minutes");
        assert_eq!(fourth, r#"{"computed":2}"#);
        assert_eq!(source.0.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn memory_cache_hits_then_expires_by_the_clock() {
        let clock = Clock::manual(1_700_000_000_000);
        hits_and_expiry(Arc::new(MemoryKv::new("t:", clock.clone())), clock).await;
    }

    #[tokio::test]
    async fn redis_cache_hits_then_expires_by_the_clock() {
        let Some(url) = crate::testing::redis_url() else {
            return;
        };
        let prefix = format!("owltest:{}:", uuid::Uuid::new_v4().simple());
        let kv = RedisKv::connect(&url, &prefix)
            .await
            .expect("redis on 127.0.0.1:6379");
        let clock = Clock::manual(chrono::Utc::now().timestamp_millis());
        hits_and_expiry(Arc::new(kv.clone()), clock).await;
        assert!(kv.clear().await.unwrap() >= 1, "the entry lived in redis");
    }

    #[tokio::test]
    async fn failures_are_not_cached_and_ttl_zero_turns_the_cache_off() {
        let clock = Clock::manual(0);
        let kv: Arc<dyn KvStore> = Arc::new(MemoryKv::new("", clock.clone()));
        let cache = AnalyticsCache::new(kv.clone(), clock.clone(), Duration::from_secs(300));
        let failed = cache
            .get_or_compute("k", || async { Err(Failure::not_found("x")) })
            .await;
        assert!(failed.is_err());
        let (data, status) = cache
            .get_or_compute("k", || async { Ok("1".to_string()) })
            .await
            .unwrap();
        assert_eq!((data.as_str(), status), ("1", CacheStatus::Miss));

        let off = AnalyticsCache::new(kv, clock, Duration::ZERO);
        let (_, status) = off
            .get_or_compute("k", || async { Ok("2".to_string()) })
            .await
            .unwrap();
        assert_eq!(status, CacheStatus::Bypass);
    }

    #[test]
    fn keys_separate_endpoints_parameters_and_scopes() {
        let codes = |c: &[&str]| Some(c.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>());
        let base = AnalyticsCache::key(
            "analytics-monitoring:customers/trend",
            &json!({"period": "day"}),
            &None,
        );
        assert!(base.starts_with("analytics:analytics-monitoring:customers/trend:"));
        assert_eq!(
            base,
            AnalyticsCache::key(
                "analytics-monitoring:customers/trend",
                &json!({"period": "day"}),
                &None
            )
        );
        let others = [
            AnalyticsCache::key(
                "analytics-monitoring:customers/trend",
                &json!({"period": "week"}),
                &None,
            ),
            AnalyticsCache::key(
                "analytics-monitoring:orders/revenue",
                &json!({"period": "day"}),
                &None,
            ),
            AnalyticsCache::key(
                "analytics-monitoring:customers/trend",
                &json!({"period": "day"}),
                &codes(&["A"]),
            ),
            AnalyticsCache::key(
                "analytics-monitoring:customers/trend",
                &json!({"period": "day"}),
                &codes(&["A", "A1"]),
            ),
            AnalyticsCache::key(
                "analytics-monitoring:customers/trend",
                &json!({"period": "day"}),
                &codes(&[]),
            ),
        ];
        for (i, key) in others.iter().enumerate() {
            assert_ne!(key, &base, "{i}");
            assert!(others.iter().skip(i + 1).all(|k| k != key), "{i}");
        }
    }

    #[test]
    fn entries_round_trip_and_stale_or_foreign_ones_are_ignored() {
        assert_eq!(fresh(r#"v1:1000:{"a":1}"#, 999), Some(r#"{"a":1}"#));
        assert_eq!(fresh(r#"v1:1000:{"a":"x:y"}"#, 0), Some(r#"{"a":"x:y"}"#));
        assert_eq!(fresh(r#"v1:1000:{"a":1}"#, 1000), None);
        assert_eq!(fresh(r#"v0:9999:{}"#, 0), None);
        assert_eq!(fresh("garbage", 0), None);
    }
}
