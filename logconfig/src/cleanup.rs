//! Manual cleanup (the log API's `POST /api/v1/logs/cleanup`): one at a time, run by whoever holds the index
//! writer.
//!
//! Deleting partitions needs the index writer. In `owl up` the query API holds it and runs the
//! cleanup itself; with `owl collector` and `owl query-api` as separate processes only the
//! collector does, so the query API queues the job in SQL and the collector's worker
//! ([`cleanup_worker`]) runs it and writes the report back.
//!
//! Table `log_cleanup_jobs` is both the queue and the lock: `active` is 1 while a job is pending or
//! running and NULL afterwards, and a unique index on it admits one active job across every process
//! sharing the database (NULLs never collide). A job whose process died keeps its row active only
//! for a lease ([`PENDING_LEASE_MS`] waiting for a worker, [`RUNNING_LEASE_MS`] running); the next
//! submission or claim expires it.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use owl_index::{Index, IndexError, RetentionPolicy, RetentionReport};
use owl_model::Kind;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::store::{LogConfigStore, StoreError};

/// How long a queued job may wait for a worker before it is given up, in milliseconds.
pub const PENDING_LEASE_MS: i64 = 120_000;
/// How long a running job may hold the lock before it is presumed dead, in milliseconds.
pub const RUNNING_LEASE_MS: i64 = 30 * 60_000;

/// Days to keep per kind; `None` leaves the kind alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CleanupPolicy {
    /// HTTP records.
    pub http_days: Option<u32>,
    /// Application records.
    pub application_days: Option<u32>,
    /// Error records.
    pub error_days: Option<u32>,
}

impl CleanupPolicy {
    /// The index's retention policy (metrics untouched).
    pub fn retention(&self) -> RetentionPolicy {
        RetentionPolicy {
            http_days: self.http_days,
            application_days: self.application_days,
            error_days: self.error_days,
            metrics_days: None,
        }
    }

    /// The parameters of a scheduled `cleanup` job, in the log API's CleanupLogDto spelling:
    /// `{"type": "all" | "http" | "application" | "error", "olderThanDays": 1..=3650}`; every
    /// problem is named.
    pub fn from_job_params(params: &serde_json::Value) -> Result<CleanupPolicy, String> {
        let kind = params["type"].as_str().unwrap_or("all");
        let days = params["olderThanDays"]
            .as_u64()
            .filter(|d| (1..=u64::from(crate::model::MAX_RETENTION_DAYS)).contains(d))
            .ok_or_else(|| {
                format!(
                    "params.olderThanDays must be a number of days from 1 to {}",
                    crate::model::MAX_RETENTION_DAYS
                )
            })? as u32;
        let mut policy = CleanupPolicy::default();
        match kind {
            "all" => {
                policy.http_days = Some(days);
                policy.application_days = Some(days);
                policy.error_days = Some(days);
            }
            "http" => policy.http_days = Some(days),
            "application" => policy.application_days = Some(days),
            "error" => policy.error_days = Some(days),
            other => {
                return Err(format!(
                    "params.type `{other}` is not a record kind: use all, http, application or error"
                ));
            }
        }
        Ok(policy)
    }

    /// The kinds the policy touches.
    pub fn kinds(&self) -> Vec<Kind> {
        Kind::ALL
            .into_iter()
            .filter(|&k| self.retention().days(k).is_some())
            .collect()
    }
}

/// One partition deleted (or that would be).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CleanedPartition {
    /// Its kind.
    pub kind: Kind,
    /// Its UTC day.
    pub day: NaiveDate,
    /// Files in it.
    pub files: u64,
    /// Bytes of those files.
    pub bytes: u64,
}

/// What a cleanup freed, or would free on a dry run.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CleanupReport {
    /// Whether nothing was deleted.
    pub dry_run: bool,
    /// The partitions.
    pub partitions: Vec<CleanedPartition>,
}

impl CleanupReport {
    fn from_retention(report: &RetentionReport) -> CleanupReport {
        CleanupReport {
            dry_run: report.dry_run,
            partitions: report
                .partitions
                .iter()
                .map(|p| CleanedPartition {
                    kind: p.key.kind,
                    day: p.key.day,
                    files: p.files,
                    bytes: p.bytes,
                })
                .collect(),
        }
    }

    /// Files, all partitions together.
    pub fn files(&self) -> u64 {
        self.partitions.iter().map(|p| p.files).sum()
    }

    /// Bytes, all partitions together.
    pub fn bytes(&self) -> u64 {
        self.partitions.iter().map(|p| p.bytes).sum()
    }

    /// Files and bytes per kind.
    pub fn by_kind(&self) -> BTreeMap<Kind, (u64, u64)> {
        let mut map: BTreeMap<Kind, (u64, u64)> = BTreeMap::new();
        for p in &self.partitions {
            let entry = map.entry(p.kind).or_default();
            entry.0 += p.files;
            entry.1 += p.bytes;
        }
        map
    }
}

/// Runs a cleanup on an index (blocking: call it from `spawn_blocking`). A real run needs the
/// writer; a dry run works on a reader too.
pub fn run_cleanup(
    index: &Index,
    policy: &CleanupPolicy,
    now: DateTime<Utc>,
    dry_run: bool,
) -> Result<CleanupReport, IndexError> {
    let report = index.apply_retention(now, &policy.retention(), dry_run)?;
    Ok(CleanupReport::from_retention(&report))
}

/// State of a queued cleanup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    /// Waiting for a worker.
    Pending,
    /// A worker runs it.
    Running,
    /// Finished; the report is there.
    Done,
    /// Failed or given up; the error says why.
    Failed,
}

impl JobStatus {
    fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Running => "running",
            JobStatus::Done => "done",
            JobStatus::Failed => "failed",
        }
    }

    fn parse(text: &str) -> JobStatus {
        match text {
            "pending" => JobStatus::Pending,
            "running" => JobStatus::Running,
            "done" => JobStatus::Done,
            _ => JobStatus::Failed,
        }
    }
}

/// A cleanup job.
#[derive(Debug, Clone, PartialEq)]
pub struct CleanupJob {
    /// Id.
    pub id: i64,
    /// The requested type (`http`, `application`, `error`, `all`).
    pub kind: String,
    /// Days to keep per kind.
    pub policy: CleanupPolicy,
    /// State.
    pub status: JobStatus,
    /// Who asked.
    pub requested_by: String,
    /// When (epoch ms).
    pub requested_at: i64,
    /// When a worker started it (epoch ms).
    pub started_at: Option<i64>,
    /// When it ended (epoch ms).
    pub finished_at: Option<i64>,
    /// What it freed, once done.
    pub report: Option<CleanupReport>,
    /// Why it failed.
    pub error: Option<String>,
}

/// Why a cleanup could not be queued.
#[derive(Debug, thiserror::Error)]
pub enum CleanupError {
    /// Another cleanup is pending or running.
    #[error("a log cleanup is already in progress (job {job_id:?})")]
    InProgress {
        /// The active job, when it could be read.
        job_id: Option<i64>,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

type JobRow = (
    i64,
    String,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    String,
    String,
    i64,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<String>,
);

const JOB_COLUMNS: &str = "id, kind, http_days, application_days, error_days, status, requested_by, requested_at, \
                           started_at, finished_at, result, error";

fn days(value: Option<u32>) -> Option<i64> {
    value.map(i64::from)
}

fn job_of(row: JobRow) -> Result<CleanupJob, StoreError> {
    let (
        id,
        kind,
        http,
        application,
        error_days,
        status,
        requested_by,
        requested_at,
        started_at,
        finished_at,
        result,
        error,
    ) = row;
    let as_days = |v: Option<i64>| v.and_then(|d| u32::try_from(d).ok());
    let report = match result {
        None => None,
        Some(text) => Some(serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
            version: id,
            message: format!("cleanup job report: {e}"),
        })?),
    };
    Ok(CleanupJob {
        id,
        kind,
        policy: CleanupPolicy {
            http_days: as_days(http),
            application_days: as_days(application),
            error_days: as_days(error_days),
        },
        status: JobStatus::parse(&status),
        requested_by,
        requested_at,
        started_at,
        finished_at,
        report,
        error,
    })
}

impl LogConfigStore {
    /// Gives up active jobs whose lease ran out.
    async fn expire_stale_cleanups(&self, now_ms: i64) -> Result<(), StoreError> {
        let mut sql = self
            .db()
            .sql("UPDATE log_cleanup_jobs SET status = 'failed', active = NULL, finished_at = ");
        sql.bind(now_ms).push(
            ", error = 'no worker finished the job within its lease' \
             WHERE active = 1 AND ((status = 'pending' AND requested_at < ",
        );
        sql.bind(now_ms - PENDING_LEASE_MS)
            .push(") OR (status = 'running' AND started_at < ")
            .bind(now_ms - RUNNING_LEASE_MS)
            .push("))");
        let expired = sql.query().execute(self.pool()).await?;
        if expired.rows_affected() > 0 {
            tracing::warn!(jobs = expired.rows_affected(), "stale log cleanup jobs given up");
        }
        Ok(())
    }

    /// Queues a cleanup, or registers one the caller runs itself (`run_here`: it starts as running
    /// so no worker claims it). Fails with [`CleanupError::InProgress`] while another is active.
    pub async fn submit_cleanup(
        &self,
        kind: &str,
        policy: &CleanupPolicy,
        requested_by: &str,
        now_ms: i64,
        run_here: bool,
    ) -> Result<i64, CleanupError> {
        self.expire_stale_cleanups(now_ms).await?;
        let (status, started_at) = if run_here {
            (JobStatus::Running, Some(now_ms))
        } else {
            (JobStatus::Pending, None)
        };
        let mut sql = self.db().sql(
            "INSERT INTO log_cleanup_jobs (kind, http_days, application_days, error_days, status, active, requested_by, \
             requested_at, started_at) VALUES (",
        );
        sql.bind(kind.to_string()).push(", ");
        sql.bind(days(policy.http_days)).push(", ");
        sql.bind(days(policy.application_days)).push(", ");
        sql.bind(days(policy.error_days)).push(", ");
        sql.bind(status.as_str().to_string()).push(", 1, ");
        sql.bind(requested_by.to_string()).push(", ");
        sql.bind(now_ms).push(", ").bind(started_at).push(")");
        let inserted = sql.insert_returning_id(self.pool()).await;
        match inserted {
            Ok(id) => Ok(id),
            Err(error) if owl_sql::is_unique_violation(&error) => {
                let job_id = self.active_cleanup().await.ok().flatten().map(|j| j.id);
                Err(CleanupError::InProgress { job_id })
            }
            Err(error) => Err(StoreError::from(error).into()),
        }
    }

    /// The pending or running job, if any.
    pub async fn active_cleanup(&self) -> Result<Option<CleanupJob>, StoreError> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM log_cleanup_jobs WHERE active = 1");
        let row: Option<JobRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_optional(self.pool())
            .await?;
        row.map(job_of).transpose()
    }

    /// One job.
    pub async fn cleanup_job(&self, id: i64) -> Result<Option<CleanupJob>, StoreError> {
        let mut sql = self
            .db()
            .sql(&format!("SELECT {JOB_COLUMNS} FROM log_cleanup_jobs WHERE id = "));
        sql.bind(id);
        let row: Option<JobRow> = sql.query_as().fetch_optional(self.pool()).await?;
        row.map(job_of).transpose()
    }

    /// Takes the oldest pending job for this worker, if any.
    pub async fn claim_cleanup(&self, now_ms: i64) -> Result<Option<CleanupJob>, StoreError> {
        let pending: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM log_cleanup_jobs WHERE status = 'pending' AND active = 1 ORDER BY id LIMIT 1",
        )
        .fetch_optional(self.pool())
        .await?;
        let Some(id) = pending else {
            return Ok(None);
        };
        let mut sql = self
            .db()
            .sql("UPDATE log_cleanup_jobs SET status = 'running', started_at = ");
        sql.bind(now_ms)
            .push(" WHERE id = ")
            .bind(id)
            .push(" AND status = 'pending'");
        let claimed = sql.query().execute(self.pool()).await?;
        if claimed.rows_affected() != 1 {
            return Ok(None);
        }
        self.cleanup_job(id).await
    }

    /// Records the end of a job and releases the lock.
    pub async fn finish_cleanup(
        &self,
        id: i64,
        outcome: Result<&CleanupReport, &str>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let (status, result, error) = match outcome {
            Ok(report) => (
                JobStatus::Done,
                Some(serde_json::to_string(report).expect("a report serialises")),
                None,
            ),
            Err(error) => (JobStatus::Failed, None, Some(error.to_string())),
        };
        let mut sql = self.db().sql("UPDATE log_cleanup_jobs SET status = ");
        sql.bind(status.as_str().to_string())
            .push(", active = NULL, finished_at = ")
            .bind(now_ms);
        sql.push(", result = ")
            .bind(result)
            .push(", error = ")
            .bind(error);
        sql.push(" WHERE id = ").bind(id);
        sql.query().execute(self.pool()).await?;
        Ok(())
    }

    /// Withdraws a job no worker has taken yet; returns whether it was still pending.
    pub async fn withdraw_cleanup(&self, id: i64, now_ms: i64) -> Result<bool, StoreError> {
        let mut sql = self
            .db()
            .sql("UPDATE log_cleanup_jobs SET status = 'failed', active = NULL, finished_at = ");
        sql.bind(now_ms)
            .push(", error = 'withdrawn: no worker took it' WHERE id = ")
            .bind(id)
            .push(" AND status = 'pending'");
        let withdrawn = sql.query().execute(self.pool()).await?;
        Ok(withdrawn.rows_affected() == 1)
    }
}

/// Runs queued cleanups on the index writer: every `interval`, claims a pending job, deletes its
/// partitions and records the report, until `shutdown`.
pub async fn cleanup_worker(
    store: LogConfigStore,
    index: Index,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut failing = false;
    loop {
        let now = Utc::now();
        match store.claim_cleanup(now.timestamp_millis()).await {
            Ok(Some(job)) => {
                failing = false;
                tracing::info!(job = job.id, kind = %job.kind, by = %job.requested_by, "running a queued log cleanup");
                let index = index.clone();
                let policy = job.policy;
                let ran = tokio::task::spawn_blocking(move || run_cleanup(&index, &policy, now, false)).await;
                let outcome = match ran {
                    Ok(Ok(report)) => Ok(report),
                    Ok(Err(error)) => Err(error.to_string()),
                    Err(panic) => Err(format!("the cleanup panicked: {panic}")),
                };
                if let Err(error) = &outcome {
                    tracing::warn!(job = job.id, %error, "queued log cleanup failed");
                }
                let finished = match &outcome {
                    Ok(report) => {
                        store
                            .finish_cleanup(job.id, Ok(report), Utc::now().timestamp_millis())
                            .await
                    }
                    Err(error) => {
                        store
                            .finish_cleanup(job.id, Err(error), Utc::now().timestamp_millis())
                            .await
                    }
                };
                if let Err(error) = finished {
                    tracing::warn!(job = job.id, %error, "could not record the end of a log cleanup; its lease will expire");
                }
                // Look for the next job at once.
                continue;
            }
            Ok(None) => failing = false,
            Err(error) if !failing => {
                tracing::warn!(%error, "cannot read the log cleanup queue");
                failing = true;
            }
            Err(error) => tracing::debug!(%error, "log cleanup queue still unreachable"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn job_params_name_their_problems() {
        let all = CleanupPolicy::from_job_params(&json!({"olderThanDays": 30})).unwrap();
        assert_eq!(all.kinds(), Kind::ALL.to_vec());
        let http = CleanupPolicy::from_job_params(&json!({"type": "http", "olderThanDays": 7})).unwrap();
        assert_eq!((http.http_days, http.error_days), (Some(7), None));
        for (params, named) in [
            (json!({"type": "http"}), "olderThanDays"),
            (json!({"olderThanDays": 0}), "olderThanDays"),
            (json!({"olderThanDays": 4000}), "olderThanDays"),
            (json!({"type": "debug", "olderThanDays": 7}), "`debug`"),
        ] {
            let problem = CleanupPolicy::from_job_params(&params).unwrap_err();
            assert!(problem.contains(named), "{params}: {problem}");
        }
    }
}
