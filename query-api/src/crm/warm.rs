//! The `warm_analytics_cache` job: computes the CRM analytics API's figures ([`Figure::defaults`]:
//! every analytics endpoint as a request without parameters asks for it today) into the answer
//! cache, for each organization scope held by an enabled user who may read analytics, so that
//! the requests that follow are hits. The entries are the ones a request would store, under the
//! same keys, fresh for `query_api.analytics_cache_ttl_s` from the run.
//!
//! It runs where the query API is (its scheduler, see [`crate::jobs`]): the cache is the query
//! API's, shared by every replica through Redis when `storage.redis_url` is set.

use std::collections::{BTreeSet, HashMap};

use futures::future::BoxFuture;
use owl_scheduler::{Job, RunReport, Task, TaskType};
use serde_json::{Value, json};

use super::{AnalyticsCache, CrmStore, OrgScope};
use crate::db::UserFilter;
use crate::permissions::Permission;
use crate::state::AppState;

/// How many scopes a run warms when its job does not say (`params.max_scopes`).
pub const DEFAULT_MAX_SCOPES: usize = 100;
/// The most `params.max_scopes` may ask.
pub const MAX_SCOPES_LIMIT: usize = 10_000;

/// A job's `max_scopes` (optional, 1 to [`MAX_SCOPES_LIMIT`]), or why it is refused.
pub fn max_scopes_of(params: &Value) -> Result<usize, String> {
    match params.get("max_scopes") {
        None | Some(Value::Null) => Ok(DEFAULT_MAX_SCOPES),
        Some(value) => value
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .filter(|n| (1..=MAX_SCOPES_LIMIT).contains(n))
            .ok_or_else(|| format!("params.max_scopes must be an integer from 1 to {MAX_SCOPES_LIMIT}")),
    }
}

/// The organization scopes of the enabled users who may read analytics, the unrestricted one
/// (super admins) first; at most `max`, and how many more there were.
async fn analytics_scopes(state: &AppState, max: usize) -> Result<(Vec<OrgScope>, usize), String> {
    let mut scopes: BTreeSet<OrgScope> = BTreeSet::new();
    let mut tree = None;
    // Whether each role reads analytics: its grants are read once, not once per user.
    let mut reads: HashMap<i64, bool> = HashMap::new();
    let mut filter = UserFilter {
        page: 1,
        page_size: 200,
        status: Some(1),
        ..UserFilter::default()
    };
    loop {
        let (users, total) = state.db.list_users(&filter).await.map_err(|e| e.to_string())?;
        for user in &users {
            let may_read = match reads.get(&user.role_id) {
                Some(may_read) => *may_read,
                None => {
                    let permissions = state.auth.permissions_of(user).await.map_err(|e| e.to_string())?;
                    let may_read = permissions.contains(Permission::AnalyticsRead.code());
                    reads.insert(user.role_id, may_read);
                    may_read
                }
            };
            if may_read {
                scopes.insert(
                    state
                        .auth
                        .org_scope_of(user, &mut tree)
                        .await
                        .map_err(|e| e.to_string())?,
                );
            }
        }
        if users.is_empty() || filter.page * filter.page_size >= total {
            break;
        }
        filter.page += 1;
    }
    let more = scopes.len().saturating_sub(max);
    Ok((scopes.into_iter().take(max).collect(), more))
}

/// One run: what it computed, or why it could not.
pub async fn warm(state: &AppState, max_scopes: usize) -> Result<RunReport, String> {
    let cache = AnalyticsCache::of(state);
    if !cache.enabled() {
        return Ok(RunReport {
            detail: json!({ "skipped": "query_api.analytics_cache_ttl_s is 0: answers are not cached" }),
            ..RunReport::default()
        });
    }
    let (scopes, more) = analytics_scopes(state, max_scopes).await?;
    let store = CrmStore::of(state).await.map_err(|e| e.to_string())?;
    let now = state.clock.now_ms();
    let figures = super::answers::Figure::defaults(
        state.clock.now().date_naive(),
        &state.config.query_api.crm_currency_code,
    );
    let (mut records, mut bytes) = (0i64, 0i64);
    for scope in &scopes {
        for figure in &figures {
            let data = figure
                .compute(&store, scope, now)
                .await
                .map_err(|e| format!("{}: {e}", figure.endpoint()))?;
            cache
                .put(&figure.cache_key(scope), &data, now)
                .await
                .map_err(|e| format!("the analytics cache refused a write: {e}"))?;
            records += 1;
            bytes += data.len() as i64;
        }
    }
    Ok(RunReport {
        records,
        bytes,
        detail: json!({
            "scopes": scopes.len(),
            "scopes_not_warmed": more,
            "figures": figures.iter().map(|f| f.endpoint()).collect::<Vec<_>>(),
            "ttl_s": state.config.query_api.analytics_cache_ttl_s,
        }),
        ..RunReport::default()
    })
}

/// The task of `warm_analytics_cache` jobs over a query API's state.
pub struct WarmTask(pub AppState);

impl Task for WarmTask {
    fn task_type(&self) -> TaskType {
        TaskType::WarmAnalyticsCache
    }

    fn run<'a>(&'a self, job: &'a Job) -> BoxFuture<'a, Result<RunReport, String>> {
        Box::pin(async move { warm(&self.0, max_scopes_of(&job.params)?).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_scopes_defaults_and_is_bounded() {
        assert_eq!(max_scopes_of(&json!({})), Ok(DEFAULT_MAX_SCOPES));
        assert_eq!(max_scopes_of(&json!({"max_scopes": 3})), Ok(3));
        for bad in [
            json!(0),
            json!(-1),
            json!("3"),
            json!(1.5),
            json!(MAX_SCOPES_LIMIT + 1),
        ] {
            let error = max_scopes_of(&json!({ "max_scopes": bad })).unwrap_err();
            assert!(error.contains("params.max_scopes"), "{error}");
        }
    }
}
