//! The principal cache: a request whose access token was seen recently runs no SQL.
//!
//! Checking a token means loading the user (status, token version, role, regions), the role's
//! permissions and, for users bound to an organization, the organization tree. That is two or three
//! queries, far more than a cached answer costs, so the resulting [`Principal`] is kept in process,
//! keyed by the access token itself, together with the token's expiry and the [`Epoch`] it was
//! loaded under. Only a token that verified (signature, type, validity window) is ever stored, so a
//! request presenting the very same bytes needs no second signature check: its expiry is checked
//! against the stored `exp`, its epoch and age against the entry, and it gets the cached principal.
//! Anything else is verified and loaded afresh.
//!
//! # When an entry stops being used
//!
//! - **A write in this process** that changes who may do what (users, roles, grants,
//!   organizations) bumps the database handle's access generation
//!   ([`Database::access_generation`](crate::db::Database::access_generation)); revoking a token
//!   family bumps the cache's own counter. Both are part of the epoch, so the very next request
//!   reloads.
//! - **A write in another replica**: with Redis configured, every such write also stores a new
//!   random value under `auth:epoch`, and every request reads it (one `GET`; the family-revocation
//!   lookup runs only when a principal is loaded). Replicas therefore see a logout, a disabled user
//!   or a role change on their next request, like the replica that made it. The authentication
//!   middleware publishes whenever the access generation moved while a request ran, before its
//!   answer leaves, so a new write path cannot forget to; revocations publish themselves.
//! - **Anything else** (`owl admin reset-password` from another process, a direct SQL edit, a
//!   failed `auth:epoch` write while Redis is down): entries are trusted for at most
//!   [`PRINCIPAL_TTL`] by the query API's clock. That is the documented bound.
//!
//! The epoch is read before the database, and writers bump it after their commit, so a load that
//! races with a write is stored under the old epoch and is never served after the write.
//!
//! One epoch for everything (rather than per user) keeps the check to one value: writes that change
//! access are rare, and after one every active session reloads once. Refused tokens are not cached:
//! each is verified (and, when it verifies, loaded) again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::Principal;
use owl_model::clock::Clock;

/// The longest a cached principal is trusted without a reload.
pub const PRINCIPAL_TTL: Duration = Duration::from_secs(5);

/// Entries kept at most; past it expired entries are swept, and if that frees nothing the cache
/// starts over (a flood of distinct tokens costs SQL, not memory).
const MAX_ENTRIES: usize = 10_000;

/// The shared epoch key in the [`KvStore`](crate::kv::KvStore).
pub(crate) const EPOCH_KEY: &str = "auth:epoch";

/// The state of everything a principal depends on, as far as this process can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Epoch {
    /// Access-changing SQL writes made through this process's database handle.
    pub(crate) writes: u64,
    /// Token-family revocations and other invalidations made by this process.
    pub(crate) local: u64,
    /// The value of [`EPOCH_KEY`] in the shared store (`None` without one, or when unset).
    pub(crate) shared: Option<String>,
}

struct Cached {
    principal: Arc<Principal>,
    /// The token's `exp` (epoch s).
    expires_at_s: i64,
    epoch: Epoch,
    loaded_at_ms: i64,
}

/// Principals by access token.
pub(crate) struct PrincipalCache {
    entries: RwLock<HashMap<String, Cached>>,
    local: AtomicU64,
    clock: Clock,
    ttl_ms: i64,
}

impl std::fmt::Debug for PrincipalCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrincipalCache")
            .field("local", &self.local.load(Ordering::Relaxed))
            .field("ttl_ms", &self.ttl_ms)
            .finish_non_exhaustive()
    }
}

impl PrincipalCache {
    /// An empty cache whose entries live [`PRINCIPAL_TTL`] by `clock`.
    pub(crate) fn new(clock: Clock) -> PrincipalCache {
        PrincipalCache {
            entries: RwLock::new(HashMap::new()),
            local: AtomicU64::new(0),
            clock,
            ttl_ms: i64::try_from(PRINCIPAL_TTL.as_millis()).unwrap_or(i64::MAX),
        }
    }

    /// The counter of this process's invalidations (part of the [`Epoch`]).
    pub(crate) fn local_epoch(&self) -> u64 {
        self.local.load(Ordering::Acquire)
    }

    /// The principal of `token` and the epoch it was loaded under, if the token verified less than
    /// the TTL ago and has not expired since. The caller compares the epoch with the current one.
    pub(crate) fn get(&self, token: &str) -> Option<(Arc<Principal>, Epoch)> {
        let entries = self
            .entries
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let cached = entries.get(token)?;
        let now_ms = self.clock.now_ms();
        let fresh = now_ms - cached.loaded_at_ms < self.ttl_ms;
        // The same rule as `TokenService::verify`: expired from `exp` on.
        let unexpired = now_ms.div_euclid(1000) < cached.expires_at_s;
        (fresh && unexpired).then(|| (cached.principal.clone(), cached.epoch.clone()))
    }

    /// Keeps the principal of `token`, which verified and expires at `expires_at_s`, loaded under
    /// `epoch` (read before the load).
    pub(crate) fn insert(&self, token: &str, expires_at_s: i64, principal: Arc<Principal>, epoch: Epoch) {
        let now = self.clock.now_ms();
        let mut entries = self
            .entries
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(token) {
            entries.retain(|_, cached| now - cached.loaded_at_ms < self.ttl_ms && cached.epoch == epoch);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(
            token.to_string(),
            Cached {
                principal,
                expires_at_s,
                epoch,
                loaded_at_ms: now,
            },
        );
    }

    /// Makes every entry stale (the counter) and frees them.
    pub(crate) fn invalidate(&self) {
        self.local.fetch_add(1, Ordering::AcqRel);
        self.entries
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
    }

    /// Entries held (tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn principal(user_id: i64, family: &str) -> Arc<Principal> {
        Arc::new(Principal {
            user_id,
            user_code: format!("u{user_id}"),
            username: String::new(),
            org_code: String::new(),
            role_id: 2,
            role_code: "ops".into(),
            role_level: 2,
            permissions: BTreeSet::new(),
            regions: Vec::new(),
            environments: Vec::new(),
            orgs: None,
            token_family: family.into(),
        })
    }

    fn epoch(writes: u64, local: u64, shared: Option<&str>) -> Epoch {
        Epoch {
            writes,
            local,
            shared: shared.map(str::to_string),
        }
    }

    /// Far in the future (epoch s).
    const LATER: i64 = 1 << 40;

    #[test]
    fn hits_need_the_same_token_and_tell_their_epoch() {
        let cache = PrincipalCache::new(Clock::manual(0));
        cache.insert("t1", LATER, principal(7, "f"), epoch(3, 0, Some("a")));
        let (hit, loaded_under) = cache.get("t1").unwrap();
        assert_eq!((hit.user_id, hit.token_family.as_str()), (7, "f"));
        assert_eq!(loaded_under, epoch(3, 0, Some("a")));
        assert!(cache.get("t2").is_none(), "other token");
        for (other, what) in [
            (epoch(4, 0, Some("a")), "a local write"),
            (epoch(3, 1, Some("a")), "a revocation"),
            (epoch(3, 0, Some("b")), "another replica"),
            (epoch(3, 0, None), "shared epoch gone"),
        ] {
            assert_ne!(loaded_under, other, "{what}");
        }
    }

    #[test]
    fn entries_expire_after_the_ttl_by_the_clock() {
        let clock = Clock::manual(1_000);
        let cache = PrincipalCache::new(clock.clone());
        let current = epoch(0, 0, None);
        cache.insert("t", LATER, principal(1, "f"), current.clone());
        clock.advance(PRINCIPAL_TTL - Duration::from_millis(1));
        assert!(cache.get("t").is_some());
        clock.advance(Duration::from_millis(1));
        assert!(cache.get("t").is_none());
    }

    #[test]
    fn an_expired_token_is_never_served() {
        let clock = Clock::manual(99_000);
        let cache = PrincipalCache::new(clock.clone());
        let current = epoch(0, 0, None);
        cache.insert("t", 100, principal(1, "f"), current.clone());
        clock.advance(Duration::from_millis(999));
        assert!(cache.get("t").is_some(), "valid until exp");
        clock.advance(Duration::from_millis(1));
        assert!(cache.get("t").is_none(), "expired at exp");
    }

    #[test]
    fn invalidate_bumps_the_local_epoch_and_frees_entries() {
        let cache = PrincipalCache::new(Clock::manual(0));
        let before = cache.local_epoch();
        cache.insert("t", LATER, principal(1, "f"), epoch(0, before, None));
        cache.invalidate();
        assert_eq!(cache.len(), 0);
        assert_ne!(cache.local_epoch(), before);
    }

    #[test]
    fn the_cache_is_bounded() {
        let clock = Clock::manual(0);
        let cache = PrincipalCache::new(clock.clone());
        let current = epoch(0, 0, None);
        for i in 0..MAX_ENTRIES {
            cache.insert(&format!("t{i}"), LATER, principal(1, "f"), current.clone());
        }
        assert_eq!(cache.len(), MAX_ENTRIES);
        clock.advance(PRINCIPAL_TTL);
        cache.insert("new", LATER, principal(1, "f"), current.clone());
        assert_eq!(cache.len(), 1, "expired entries swept");
        assert!(cache.get("new").is_some());
    }
}
