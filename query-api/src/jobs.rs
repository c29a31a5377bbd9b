//! The query API's scheduler. Jobs run where what they need is: the collector's scheduler runs
//! those of the index (retention, merging, cleanup, disk check, audit retention), this one those
//! of the query API's analytics cache (`warm_analytics_cache`). Both share the `jobs` table and
//! its leases, so each run happens once however many replicas there are.

use std::sync::Arc;

use owl_scheduler::{JobStore, NewJob, Scheduler, SchedulerOptions, Task, TaskType};
use serde_json::json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

/// The query API's built-in jobs (created once; ops may change or disable them).
pub fn builtin() -> Vec<NewJob> {
    vec![NewJob {
        name: "warm_analytics_cache".to_string(),
        task_type: TaskType::WarmAnalyticsCache,
        // Under the cache's 5 minutes, so a warmed entry is replaced before it lapses.
        schedule: "0 */4 * * * *"
            .parse()
            .expect("the built-in schedule parses (tested)"),
        description: "每 4 分钟预先计算数据分析接口的统计结果并写入缓存（每个可读数据分析的组织范围）"
            .to_string(),
        params: json!({}),
        builtin: true,
    }]
}

/// Creates the built-in jobs that are missing and starts the scheduler of the query API's tasks,
/// until `shutdown`.
pub async fn start(state: &AppState, shutdown: CancellationToken) -> anyhow::Result<JoinHandle<()>> {
    let store = JobStore::new(state.db.sql_db().clone());
    let created = store.ensure(&builtin(), state.clock.now_ms()).await?;
    if created > 0 {
        tracing::info!(created, "built-in jobs of the query API created");
    }
    let tasks: Vec<Arc<dyn Task>> = vec![Arc::new(crate::crm::warm::WarmTask(state.clone()))];
    let owner = format!("{}:{}:query-api", owl_host::host_name(), std::process::id());
    let scheduler = Scheduler::new(
        store,
        owner,
        state.clock.clone(),
        tasks,
        SchedulerOptions::default(),
    );
    Ok(scheduler.spawn(shutdown))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_builtin_jobs_parse_and_are_builtin() {
        let jobs = super::builtin();
        assert!(jobs.iter().all(|j| j.builtin));
        // Every 4 minutes from the hour.
        assert_eq!(jobs[0].schedule.next_after_ms(0), Some(240_000));
    }
}
