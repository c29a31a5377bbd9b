//! Small shared state with expiry: refresh-token families, revoked families, login-failure counters
//! and lockouts, and the response cache.
//!
//! One trait, [`KvStore`], two implementations: [`RedisKv`] when `storage.redis_url` is set, so every
//! query API replica sees the same revocations and counters, and [`MemoryKv`] otherwise (one node,
//! `owl up`). Both run the same tests. The in-process store forgets everything on restart; what that
//! means is decided where the keys are used (refresh tokens fail closed, see `auth`).
//!
//! Every key is prefixed (`storage.redis_prefix`, `owl:` by default) so deployments and test runs can
//! share a Redis.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;

use owl_model::clock::Clock;

/// Why the store could not answer.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// Redis refused or could not be reached.
    #[error("redis {operation} failed: {source}")]
    Redis {
        /// The command.
        operation: &'static str,
        /// The client error.
        source: redis::RedisError,
    },
}

/// The result of [`KvStore::compare_and_swap`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Swap {
    /// The key held the expected value and now holds the new one.
    Swapped,
    /// The key holds another value; nothing changed.
    Mismatch,
    /// The key does not exist (never set, deleted or expired).
    Missing,
}

/// Futures returned by [`KvStore`].
pub type KvFuture<'a, T> = BoxFuture<'a, Result<T, KvError>>;

/// A key-value store with per-key expiry.
pub trait KvStore: Send + Sync + 'static {
    /// `redis` or `memory`.
    fn backend(&self) -> &'static str;
    /// Whether other processes share this store, so state cached in one process must be checked
    /// against it (the principal cache's epoch).
    fn is_shared(&self) -> bool;
    /// The value of a key.
    fn get<'a>(&'a self, key: &'a str) -> KvFuture<'a, Option<String>>;
    /// Sets a key, with an expiry or forever.
    fn set<'a>(&'a self, key: &'a str, value: &'a str, ttl: Option<Duration>) -> KvFuture<'a, ()>;
    /// Deletes a key (no error when absent).
    fn delete<'a>(&'a self, key: &'a str) -> KvFuture<'a, ()>;
    /// Adds `delta` (which may be negative) to a counter and returns the new count; the expiry
    /// starts when the counter is created and is not extended by later changes (a fixed window).
    fn add<'a>(&'a self, key: &'a str, delta: i64, ttl: Duration) -> KvFuture<'a, i64>;
    /// Adds one to a counter and returns the new count, as [`KvStore::add`].
    fn incr<'a>(&'a self, key: &'a str, ttl: Duration) -> KvFuture<'a, i64> {
        self.add(key, 1, ttl)
    }
    /// The time a key has left: `None` when absent or without expiry.
    fn ttl<'a>(&'a self, key: &'a str) -> KvFuture<'a, Option<Duration>>;
    /// Atomically replaces `expected` by `new` (with a new expiry).
    fn compare_and_swap<'a>(
        &'a self,
        key: &'a str,
        expected: &'a str,
        new: &'a str,
        ttl: Duration,
    ) -> KvFuture<'a, Swap>;
}

/// The in-process store.
#[derive(Debug)]
pub struct MemoryKv {
    prefix: String,
    clock: Clock,
    entries: Mutex<HashMap<String, Entry>>,
    writes: AtomicU64,
}

#[derive(Debug, Clone)]
struct Entry {
    value: String,
    expires_at_ms: Option<i64>,
}

/// Writes between sweeps of expired entries, which bounds the memory of keys nobody reads again
/// (failure counters of guessed user names).
const SWEEP_EVERY_WRITES: u64 = 1024;

impl MemoryKv {
    /// An empty store whose expiries follow `clock`.
    pub fn new(prefix: &str, clock: Clock) -> MemoryKv {
        MemoryKv {
            prefix: prefix.to_string(),
            clock,
            entries: Mutex::new(HashMap::new()),
            writes: AtomicU64::new(0),
        }
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn expiry(&self, ttl: Option<Duration>) -> Option<i64> {
        ttl.map(|ttl| {
            self.clock
                .now_ms()
                .saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX))
        })
    }

    /// Runs `f` on the live entries (expired ones removed first).
    fn with<T>(&self, write: bool, f: impl FnOnce(&mut HashMap<String, Entry>, i64) -> T) -> T {
        let now = self.clock.now_ms();
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if write && self.writes.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY_WRITES == SWEEP_EVERY_WRITES - 1
        {
            entries.retain(|_, e| e.expires_at_ms.is_none_or(|at| at > now));
        }
        f(&mut entries, now)
    }
}

fn live(entry: Option<&Entry>, now: i64) -> Option<&Entry> {
    entry.filter(|e| e.expires_at_ms.is_none_or(|at| at > now))
}

impl KvStore for MemoryKv {
    fn backend(&self) -> &'static str {
        "memory"
    }

    fn is_shared(&self) -> bool {
        false
    }

    fn get<'a>(&'a self, key: &'a str) -> KvFuture<'a, Option<String>> {
        let key = self.key(key);
        let value = self.with(false, |entries, now| {
            live(entries.get(&key), now).map(|e| e.value.clone())
        });
        Box::pin(async move { Ok(value) })
    }

    fn set<'a>(&'a self, key: &'a str, value: &'a str, ttl: Option<Duration>) -> KvFuture<'a, ()> {
        let key = self.key(key);
        let expires_at_ms = self.expiry(ttl);
        self.with(true, |entries, _| {
            entries.insert(
                key,
                Entry {
                    value: value.to_string(),
                    expires_at_ms,
                },
            )
        });
        Box::pin(async { Ok(()) })
    }

    fn delete<'a>(&'a self, key: &'a str) -> KvFuture<'a, ()> {
        let key = self.key(key);
        self.with(true, |entries, _| entries.remove(&key));
        Box::pin(async { Ok(()) })
    }

    fn add<'a>(&'a self, key: &'a str, delta: i64, ttl: Duration) -> KvFuture<'a, i64> {
        let key = self.key(key);
        let expires_at_ms = self.expiry(Some(ttl));
        let count = self.with(true, |entries, now| {
            let current = live(entries.get(&key), now).cloned();
            let (count, expires_at_ms) = match current {
                Some(entry) => (
                    entry.value.parse::<i64>().unwrap_or(0) + delta,
                    entry.expires_at_ms,
                ),
                None => (delta, expires_at_ms),
            };
            entries.insert(
                key,
                Entry {
                    value: count.to_string(),
                    expires_at_ms,
                },
            );
            count
        });
        Box::pin(async move { Ok(count) })
    }

    fn ttl<'a>(&'a self, key: &'a str) -> KvFuture<'a, Option<Duration>> {
        let key = self.key(key);
        let left = self.with(false, |entries, now| {
            live(entries.get(&key), now)
                .and_then(|e| e.expires_at_ms)
                .map(|at| Duration::from_millis(u64::try_from(at - now).unwrap_or(0)))
        });
        Box::pin(async move { Ok(left) })
    }

    fn compare_and_swap<'a>(
        &'a self,
        key: &'a str,
        expected: &'a str,
        new: &'a str,
        ttl: Duration,
    ) -> KvFuture<'a, Swap> {
        let key = self.key(key);
        let expires_at_ms = self.expiry(Some(ttl));
        let swap = self.with(true, |entries, now| match live(entries.get(&key), now) {
            None => Swap::Missing,
            Some(entry) if entry.value != expected => Swap::Mismatch,
            Some(_) => {
                entries.insert(
                    key,
                    Entry {
                        value: new.to_string(),
                        expires_at_ms,
                    },
                );
                Swap::Swapped
            }
        });
        Box::pin(async move { Ok(swap) })
    }
}

/// The Redis store.
#[derive(Clone)]
pub struct RedisKv {
    prefix: String,
    connection: redis::aio::ConnectionManager,
}

impl std::fmt::Debug for RedisKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisKv")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// INCR that sets the expiry on the first increment only, atomically.
const INCR_SCRIPT: &str = r"
local n = redis.call('INCRBY', KEYS[1], ARGV[2])
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n";

/// 0: missing, 1: mismatch, 2: swapped.
const CAS_SCRIPT: &str = r"
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
if v ~= ARGV[1] then return 1 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 2";

fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl RedisKv {
    /// Connects (failing within a few seconds when Redis is unreachable).
    pub async fn connect(url: &str, prefix: &str) -> Result<RedisKv, KvError> {
        let client = redis::Client::open(url).map_err(|source| KvError::Redis {
            operation: "open",
            source,
        })?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(3)))
            .set_response_timeout(Some(Duration::from_secs(3)))
            .set_number_of_retries(1);
        let connection = redis::aio::ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|source| KvError::Redis {
                operation: "connect",
                source,
            })?;
        let kv = RedisKv {
            prefix: prefix.to_string(),
            connection,
        };
        let _: String = redis::cmd("PING")
            .query_async(&mut kv.connection.clone())
            .await
            .map_err(|source| KvError::Redis {
                operation: "PING",
                source,
            })?;
        Ok(kv)
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// Deletes every key under this store's prefix (test clean-up, `owl admin`).
    pub async fn clear(&self) -> Result<u64, KvError> {
        let mut connection = self.connection.clone();
        let pattern = format!("{}*", self.prefix);
        let mut cursor: u64 = 0;
        let mut deleted = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(500)
                .query_async(&mut connection)
                .await
                .map_err(|source| KvError::Redis {
                    operation: "SCAN",
                    source,
                })?;
            if !keys.is_empty() {
                let n: u64 = redis::cmd("DEL")
                    .arg(&keys)
                    .query_async(&mut connection)
                    .await
                    .map_err(|source| KvError::Redis {
                        operation: "DEL",
                        source,
                    })?;
                deleted += n;
            }
            if next == 0 {
                return Ok(deleted);
            }
            cursor = next;
        }
    }
}

impl KvStore for RedisKv {
    fn backend(&self) -> &'static str {
        "redis"
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn get<'a>(&'a self, key: &'a str) -> KvFuture<'a, Option<String>> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            redis::cmd("GET")
                .arg(self.key(key))
                .query_async(&mut connection)
                .await
                .map_err(|source| KvError::Redis {
                    operation: "GET",
                    source,
                })
        })
    }

    fn set<'a>(&'a self, key: &'a str, value: &'a str, ttl: Option<Duration>) -> KvFuture<'a, ()> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let mut cmd = redis::cmd("SET");
            cmd.arg(self.key(key)).arg(value);
            if let Some(ttl) = ttl {
                cmd.arg("PX").arg(millis(ttl));
            }
            cmd.query_async::<()>(&mut connection)
                .await
                .map_err(|source| KvError::Redis {
                    operation: "SET",
                    source,
                })
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> KvFuture<'a, ()> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            redis::cmd("DEL")
                .arg(self.key(key))
                .query_async::<()>(&mut connection)
                .await
                .map_err(|source| KvError::Redis {
                    operation: "DEL",
                    source,
                })
        })
    }

    fn add<'a>(&'a self, key: &'a str, delta: i64, ttl: Duration) -> KvFuture<'a, i64> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            redis::Script::new(INCR_SCRIPT)
                .key(self.key(key))
                .arg(millis(ttl))
                .arg(delta)
                .invoke_async(&mut connection)
                .await
                .map_err(|source| KvError::Redis {
                    operation: "INCR",
                    source,
                })
        })
    }

    fn ttl<'a>(&'a self, key: &'a str) -> KvFuture<'a, Option<Duration>> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let ms: i64 = redis::cmd("PTTL")
                .arg(self.key(key))
                .query_async(&mut connection)
                .await
                .map_err(|source| KvError::Redis {
                    operation: "PTTL",
                    source,
                })?;
            // -2: no such key, -1: no expiry.
            Ok(u64::try_from(ms).ok().map(Duration::from_millis))
        })
    }

    fn compare_and_swap<'a>(
        &'a self,
        key: &'a str,
        expected: &'a str,
        new: &'a str,
        ttl: Duration,
    ) -> KvFuture<'a, Swap> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let outcome: i64 = redis::Script::new(CAS_SCRIPT)
                .key(self.key(key))
                .arg(expected)
                .arg(new)
                .arg(millis(ttl))
                .invoke_async(&mut connection)
                .await
                .map_err(|source| KvError::Redis {
                    operation: "CAS",
                    source,
                })?;
            Ok(match outcome {
                0 => Swap::Missing,
                1 => Swap::Mismatch,
                _ => Swap::Swapped,
            })
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The contract both stores meet. `advance` moves time past expiries: the manual clock for the
    /// memory store, a real wait of a few milliseconds for Redis (expiry is Redis' own clock).
    pub(crate) async fn contract(kv: &dyn KvStore, clock: &Clock, real_time: bool) {
        let short = Duration::from_millis(if real_time { 150 } else { 1000 });
        let advance = || async {
            if real_time {
                let deadline = std::time::Instant::now() + Duration::from_secs(5);
                while kv.get("a").await.unwrap().is_some() {
                    assert!(std::time::Instant::now() < deadline, "key never expired");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            } else {
                clock.advance(short + Duration::from_millis(1));
            }
        };

        assert_eq!(kv.get("a").await.unwrap(), None);
        kv.set("a", "1", Some(short)).await.unwrap();
        kv.set("forever", "x", None).await.unwrap();
        assert_eq!(kv.get("a").await.unwrap().as_deref(), Some("1"));
        let left = kv.ttl("a").await.unwrap().expect("a has an expiry");
        assert!(left <= short && !left.is_zero(), "{left:?}");
        assert_eq!(kv.ttl("forever").await.unwrap(), None);
        assert_eq!(kv.incr("n", Duration::from_secs(60)).await.unwrap(), 1);
        assert_eq!(kv.incr("n", Duration::from_secs(60)).await.unwrap(), 2);
        assert_eq!(kv.add("n", -1, Duration::from_secs(60)).await.unwrap(), 1);
        assert_eq!(kv.add("n", 3, Duration::from_secs(60)).await.unwrap(), 4);
        assert!(kv.ttl("n").await.unwrap().is_some(), "counters expire");

        assert_eq!(
            kv.compare_and_swap("fam", "j1", "j2", Duration::from_secs(60))
                .await
                .unwrap(),
            Swap::Missing
        );
        kv.set("fam", "j1", Some(Duration::from_secs(60))).await.unwrap();
        assert_eq!(
            kv.compare_and_swap("fam", "j0", "j2", Duration::from_secs(60))
                .await
                .unwrap(),
            Swap::Mismatch
        );
        assert_eq!(
            kv.compare_and_swap("fam", "j1", "j2", Duration::from_secs(60))
                .await
                .unwrap(),
            Swap::Swapped
        );
        assert_eq!(kv.get("fam").await.unwrap().as_deref(), Some("j2"));
        assert_eq!(
            kv.compare_and_swap("fam", "j1", "j3", Duration::from_secs(60))
                .await
                .unwrap(),
            Swap::Mismatch
        );

        advance().await;
        assert_eq!(kv.get("a").await.unwrap(), None, "expired");
        assert_eq!(kv.ttl("a").await.unwrap(), None);
        assert_eq!(kv.get("forever").await.unwrap().as_deref(), Some("x"));
        kv.delete("forever").await.unwrap();
        kv.delete("never-set").await.unwrap();
        assert_eq!(kv.get("forever").await.unwrap(), None);
    }

    #[tokio::test]
    async fn memory_store_meets_the_contract() {
        let clock = Clock::manual(1_000_000);
        let kv = MemoryKv::new("t:", clock.clone());
        contract(&kv, &clock, false).await;
    }

    #[tokio::test]
    async fn memory_store_sweeps_expired_keys() {
        let clock = Clock::manual(0);
        let kv = MemoryKv::new("", clock.clone());
        for i in 0..SWEEP_EVERY_WRITES {
            kv.incr(&format!("guess-{i}"), Duration::from_secs(1))
                .await
                .unwrap();
        }
        clock.advance(Duration::from_secs(2));
        for i in 0..SWEEP_EVERY_WRITES {
            kv.set(&format!("k{}", i % 2), "v", None).await.unwrap();
        }
        assert!(
            kv.entries.lock().unwrap().len() <= 3,
            "expired counters were swept"
        );
    }

    #[tokio::test]
    async fn redis_store_meets_the_contract() {
        let Some(url) = crate::testing::redis_url() else {
            return;
        };
        let prefix = format!("owltest:{}:", uuid::Uuid::new_v4().simple());
        let kv = RedisKv::connect(&url, &prefix)
            .await
            .expect("redis on 127.0.0.1:6379");
        contract(&kv, &Clock::system(), true).await;
        kv.set("left", "over", None).await.unwrap();
        assert!(kv.clear().await.unwrap() >= 1);
        assert_eq!(kv.get("left").await.unwrap(), None);
    }
}
