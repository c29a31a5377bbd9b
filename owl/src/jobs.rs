//! Owl's built-in jobs and the tasks the `owl` binary runs for them. The scheduler runs where the
//! index is (`owl up`, `owl collector`): retention drops the partitions past the retention in force
//! (the live log settings), audit retention deletes audit rows past `storage.retention.audit_days`,
//! merging compacts each sealed day partition into one segment, disk check samples the collector's
//! own host for the alert rules (DISK_SPACE), and a `cleanup`
//! job is the log API's cleanup on a schedule (`params`: `type`, `olderThanDays`).
//! Both used to be loops of their own; as jobs, ops see their runs and can pause, reschedule or
//! run them through `/api/jobs`.

use std::sync::Arc;

use futures::future::BoxFuture;
use owl_collector::RetentionJob;
use owl_config::Config;
use owl_model::Clock;
use owl_scheduler::{Job, JobStore, NewJob, RunReport, Scheduler, SchedulerOptions, Task, TaskType};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The jobs every Owl has from its first start (created once; ops may change or disable them).
pub fn builtin() -> Vec<NewJob> {
    let job = |name: &str, task_type, schedule: &str, description: &str| NewJob {
        name: name.to_string(),
        task_type,
        schedule: schedule.parse().expect("the built-in schedules parse (tested)"),
        description: description.to_string(),
        params: json!({}),
        builtin: true,
    };
    vec![
        job(
            "retention",
            TaskType::Retention,
            "0 0 * * * *",
            "每小时按日志配置的保留天数删除过期的日志分区与指标文件",
        ),
        job(
            "merge_partitions",
            TaskType::MergePartitions,
            "0 30 0 * * *",
            "每天 00:30 (UTC) 合并已封存日分区的段，每天一个段，追踪与查询打开更少的文件",
        ),
        job(
            "disk_check",
            TaskType::DiskCheck,
            "0 */5 * * * *",
            "每 5 分钟采样本机磁盘、CPU 与内存，超过告警阈值时发出 DISK_SPACE 等告警",
        ),
        job(
            "audit_retention",
            TaskType::AuditRetention,
            "0 30 3 * * *",
            "每天 03:30 (UTC) 删除超过 storage.retention.audit_days 的审计日志",
        ),
    ]
}

/// Retention over the index writer, with the retention in force at each run.
struct RetentionTask(RetentionJob);

impl Task for RetentionTask {
    fn task_type(&self) -> TaskType {
        TaskType::Retention
    }

    fn run<'a>(&'a self, _job: &'a Job) -> BoxFuture<'a, Result<RunReport, String>> {
        Box::pin(async move {
            let job = self.0.clone();
            let policy = job.policy();
            let report = tokio::task::spawn_blocking(move || job.tick(chrono::Utc::now()))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            let by_kind: serde_json::Map<String, Value> = report
                .by_kind()
                .into_iter()
                .map(|(kind, usage)| {
                    (
                        kind.as_str().to_string(),
                        json!({ "files": usage.files, "bytes": usage.bytes }),
                    )
                })
                .collect();
            Ok(RunReport {
                files: report.files() as i64,
                bytes: report.bytes() as i64,
                records: 0,
                detail: json!({
                    "partitions": report.partitions.iter().map(|p| p.key.to_string()).collect::<Vec<_>>(),
                    "by_kind": by_kind,
                    "metrics": { "files": report.metrics.files, "bytes": report.metrics.bytes },
                    "policy": {
                        "http_days": policy.http_days,
                        "application_days": policy.application_days,
                        "error_days": policy.error_days,
                        "metrics_days": policy.metrics_days,
                    },
                }),
            })
        })
    }
}

/// The log API's cleanup on a schedule: the records of a kind (or all) older than the job's
/// `olderThanDays`.
struct CleanupTask(owl_index::Index);

impl Task for CleanupTask {
    fn task_type(&self) -> TaskType {
        TaskType::Cleanup
    }

    fn run<'a>(&'a self, job: &'a Job) -> BoxFuture<'a, Result<RunReport, String>> {
        Box::pin(async move {
            let policy = owl_logconfig::CleanupPolicy::from_job_params(&job.params)?;
            let index = self.0.clone();
            let report = tokio::task::spawn_blocking(move || {
                owl_logconfig::run_cleanup(&index, &policy, chrono::Utc::now(), false)
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
            Ok(RunReport {
                files: report.files() as i64,
                bytes: report.bytes() as i64,
                records: 0,
                detail: json!({
                    "partitions": report
                        .partitions
                        .iter()
                        .map(|p| format!("{}/{}", p.kind.as_str(), p.day))
                        .collect::<Vec<_>>(),
                    "params": job.params,
                }),
            })
        })
    }
}

/// Merges the segments of the sealed day partitions, one segment per day.
struct MergePartitionsTask(owl_index::Index);

impl Task for MergePartitionsTask {
    fn task_type(&self) -> TaskType {
        TaskType::MergePartitions
    }

    fn run<'a>(&'a self, _job: &'a Job) -> BoxFuture<'a, Result<RunReport, String>> {
        Box::pin(async move {
            let index = self.0.clone();
            let report = tokio::task::spawn_blocking(move || index.merge_sealed(chrono::Utc::now()))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            let before: u64 = report.partitions.iter().map(|p| p.bytes_before).sum();
            let after: u64 = report.partitions.iter().map(|p| p.bytes_after).sum();
            Ok(RunReport {
                files: report.partitions.len() as i64,
                bytes: before.saturating_sub(after) as i64,
                records: 0,
                detail: json!({
                    "partitions": report
                        .partitions
                        .iter()
                        .map(|p| json!({
                            "partition": p.key.to_string(),
                            "segments_before": p.segments_before,
                            "bytes_before": p.bytes_before,
                            "bytes_after": p.bytes_after,
                        }))
                        .collect::<Vec<_>>(),
                }),
            })
        })
    }
}

/// Samples the host the collector runs on and hands the sample to the alert engine, which raises
/// DISK_SPACE (and CPU_HIGH, MEMORY_HIGH) from it as from any agent's sample: for a collector
/// whose host no agent reports.
struct DiskCheckTask {
    sampler: Arc<std::sync::Mutex<owl_host::Sampler>>,
    engine: owl_alerts::AlertEngine,
    region: Option<String>,
}

impl Task for DiskCheckTask {
    fn task_type(&self) -> TaskType {
        TaskType::DiskCheck
    }

    fn run<'a>(&'a self, _job: &'a Job) -> BoxFuture<'a, Result<RunReport, String>> {
        Box::pin(async move {
            let (sampler, region) = (self.sampler.clone(), self.region.clone());
            // Sampling CPU waits sysinfo's minimum interval: off the runtime's threads.
            let sample = tokio::task::spawn_blocking(move || {
                let mut sampler = sampler
                    .lock()
                    .map_err(|_| "the host sampler failed".to_string())?;
                Ok::<_, String>(sampler.sample(&owl_host::host_name(), region))
            })
            .await
            .map_err(|e| e.to_string())??;
            self.engine.observe_metric(&sample);
            let disks: Vec<Value> = sample
                .disks
                .iter()
                .map(|d| json!({ "mount": d.mount, "percent": d.percent, "used_bytes": d.used_bytes, "total_bytes": d.total_bytes }))
                .collect();
            Ok(RunReport {
                files: sample.disks.len() as i64,
                bytes: sample.disks.iter().map(|d| d.used_bytes as i64).sum(),
                records: 1,
                detail: json!({
                    "host": sample.host,
                    "max_disk_percent": sample.max_disk_percent(),
                    "disks": disks,
                }),
            })
        })
    }
}

/// Deletes audit rows older than the configured days.
struct AuditRetentionTask {
    db: owl_query_api::Database,
    days: u32,
    clock: Clock,
}

impl Task for AuditRetentionTask {
    fn task_type(&self) -> TaskType {
        TaskType::AuditRetention
    }

    fn run<'a>(&'a self, _job: &'a Job) -> BoxFuture<'a, Result<RunReport, String>> {
        Box::pin(async move {
            let cutoff = self.clock.now_ms() - i64::from(self.days) * 86_400_000;
            let deleted = self
                .db
                .delete_audit_before(cutoff)
                .await
                .map_err(|e| e.to_string())?;
            Ok(RunReport {
                records: deleted as i64,
                detail: json!({ "days": self.days, "before": owl_model::clock::format_millis(cutoff) }),
                ..RunReport::default()
            })
        })
    }
}

/// A running scheduler.
pub struct Jobs {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Jobs {
    /// Creates the built-in jobs that are missing and starts the scheduler of this process over
    /// Owl's database, with the index writer's retention.
    pub async fn start(
        config: &Config,
        db: &owl_sql::Db,
        index: &owl_index::Index,
        retention: RetentionJob,
        engine: owl_alerts::AlertEngine,
    ) -> anyhow::Result<Jobs> {
        let store = JobStore::new(db.clone());
        let clock = Clock::system();
        let created = store.ensure(&builtin(), clock.now_ms()).await?;
        if created > 0 {
            tracing::info!(created, "built-in jobs created");
        }
        let mut tasks: Vec<Arc<dyn Task>> = vec![
            Arc::new(RetentionTask(retention)),
            Arc::new(CleanupTask(index.clone())),
            Arc::new(MergePartitionsTask(index.clone())),
            Arc::new(AuditRetentionTask {
                db: owl_query_api::Database::over(db.clone()),
                days: config.storage.retention.audit_days,
                clock: clock.clone(),
            }),
        ];
        match owl_host::Sampler::new() {
            Ok(sampler) => tasks.push(Arc::new(DiskCheckTask {
                sampler: Arc::new(std::sync::Mutex::new(sampler)),
                engine,
                region: None,
            })),
            Err(error) => {
                tracing::warn!(%error, "this host cannot be sampled; disk_check jobs wait for another collector")
            }
        }
        let owner = format!("{}:{}", owl_host::host_name(), std::process::id());
        let scheduler = Scheduler::new(store, owner, clock, tasks, SchedulerOptions::default());
        let stop = CancellationToken::new();
        let task = scheduler.spawn(stop.clone());
        Ok(Jobs { stop, task })
    }

    /// Stops looking for due runs (runs in flight finish or lapse).
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_jobs_are_valid_and_named_once() {
        let jobs = builtin();
        let mut names: Vec<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), jobs.len());
        assert!(jobs.iter().all(|j| j.builtin));
    }
}
