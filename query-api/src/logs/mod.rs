//! The log API's domain side: what `http/logs.rs` (log API and platform API under `/api/v1/logs`) and
//! `http/crm_logs.rs` (the CRM analytics API under `/api/analytics-monitoring/logs`) need beyond HTTP.
//!
//! - [`params`]: query parameters, time ranges, `LOG_QUERY_TIME_RANGE_TOO_LARGE`,
//!   `LOG_QUERY_TOO_BROAD`, and the caller's region and environment scope applied to the filter.
//! - [`render`]: the log API's LogItem and summaries, the CRM analytics API's log item, sizes.
//! - [`trace`]: the waterfall and timeline of a trace.
//! - [`settings`]: the log config (`owl_logconfig`) with its `alerts` section kept in the alert
//!   store.
//! - [`cleanup`]: manual cleanup, here when this process holds the index writer, queued for the
//!   collector otherwise.
//! - [`export`]: streamed CSV and NDJSON.
//! - [`stream`]: the live tail (Server-Sent Events).
//!
//! Every index call runs on the blocking pool ([`blocking`]).

pub(crate) mod cleanup;
pub(crate) mod export;
pub(crate) mod params;
pub(crate) mod render;
pub(crate) mod settings;
pub(crate) mod stream;
pub(crate) mod trace;

use owl_index::{Index, IndexError};

use crate::envelope::Failure;

pub use stream::StreamShutdown;

/// Runs a user's search on the blocking pool, within the user's share of searches
/// (`query_api.max_concurrent_queries_per_user`, 429 past it) and `query_api.query_timeout_ms`
/// (504 `LOG_QUERY_TIMEOUT`). The slot goes with the work: a search that timed out still counts
/// against its user until it really ends, so retrying in a loop cannot pile work up.
pub(crate) async fn search<T, F>(
    state: &crate::state::AppState,
    user: &crate::auth::Principal,
    call: F,
) -> Result<T, Failure>
where
    T: Send + 'static,
    F: FnOnce(&Index) -> Result<T, IndexError> + Send + 'static,
{
    let slot = state.queries.acquire(user.user_id).map_err(|_| {
        Failure::too_many_requests(
            format!(
                "同时进行的查询过多（每个用户最多 {} 个），请稍后重试",
                state.config.query_api.max_concurrent_queries_per_user
            ),
            1,
        )
        .with_code("LOG_QUERY_TOO_MANY")
    })?;
    let index = state.index.clone();
    let task = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        call(&index)
    });
    let limit = std::time::Duration::from_millis(state.config.query_api.query_timeout_ms);
    match tokio::time::timeout(limit, task).await {
        Ok(joined) => joined
            .map_err(|e| Failure::internal(anyhow::anyhow!("index task failed: {e}")))?
            .map_err(index_failure),
        Err(_) => Err(Failure::new(
            crate::envelope::FailureKind::Timeout,
            format!(
                "查询超过 {} 毫秒未完成，请缩小时间范围或添加过滤条件",
                state.config.query_api.query_timeout_ms
            ),
        )),
    }
}

/// Runs an index call on the blocking pool.
pub(crate) async fn blocking<T, F>(index: &Index, call: F) -> Result<T, Failure>
where
    T: Send + 'static,
    F: FnOnce(&Index) -> Result<T, IndexError> + Send + 'static,
{
    let index = index.clone();
    tokio::task::spawn_blocking(move || call(&index))
        .await
        .map_err(|e| Failure::internal(anyhow::anyhow!("index task failed: {e}")))?
        .map_err(index_failure)
}

/// An index error as an answer: a request the index refuses is the caller's mistake.
pub(crate) fn index_failure(error: IndexError) -> Failure {
    match error {
        IndexError::InvalidRequest { field, reason } => {
            Failure::invalid_field(field, "index", format!("{field} {reason}"))
        }
        other => Failure::internal(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn state(
        tweak: impl FnOnce(&mut owl_config::Config),
    ) -> (crate::state::AppState, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let mut config = owl_config::Config {
            data_dir: dir.path().to_path_buf(),
            ..Default::default()
        };
        config.auth.admin_password = owl_config::Secret::new("Admin123");
        tweak(&mut config);
        let index = Index::open(&dir.path().join("index"), Default::default()).unwrap();
        let (_, state) = crate::app_with(config, index, crate::Options::default())
            .await
            .unwrap();
        (state, dir)
    }

    fn principal(user_id: i64) -> crate::auth::Principal {
        crate::auth::Principal {
            user_id,
            ..crate::auth::Principal::default()
        }
    }

    #[tokio::test]
    async fn a_search_past_its_time_ends_with_504_and_keeps_its_slot_until_done() {
        let (state, _dir) = state(|c| {
            c.query_api.query_timeout_ms = 100;
            c.query_api.max_concurrent_queries_per_user = 1;
        })
        .await;
        let user = principal(7);
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let failure = search(&state, &user, move |_| {
            let _ = wait.recv_timeout(std::time::Duration::from_secs(10));
            Ok(())
        })
        .await
        .unwrap_err();
        assert_eq!(failure.code(), "LOG_QUERY_TIMEOUT");
        assert_eq!(failure.status(crate::envelope::Family::LogsV1).as_u16(), 504);
        // The timed-out work still runs, so the user's one slot is still taken.
        let busy = search(&state, &user, |_| Ok(())).await.unwrap_err();
        assert_eq!(busy.code(), "LOG_QUERY_TOO_MANY");
        assert_eq!(busy.status(crate::envelope::Family::LogsV1).as_u16(), 429);
        // Another user is not affected.
        search(&state, &principal(8), |_| Ok(())).await.unwrap();
        release.send(()).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while state.queries.held(7).0 > 0 {
            assert!(std::time::Instant::now() < deadline, "the slot never came back");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        search(&state, &user, |_| Ok(())).await.unwrap();
    }
}
