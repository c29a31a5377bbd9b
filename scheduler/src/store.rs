//! The job store: jobs and their runs in Owl's database (step `0301_jobs` of its schema).
//!
//! Every statement goes through `owl-sql`. The claims that make a run happen once are single
//! compare-and-set `UPDATE`s on the job's lease, which every backend applies atomically: among
//! schedulers racing for a due job, exactly one sees its update change a row.

use serde_json::Value;
use sqlx::Row;
use sqlx::any::AnyRow;
use uuid::Uuid;

use crate::model::{Job, JobRun, RunReport, RunTrigger, TaskType};
use crate::schedule::Schedule;
use owl_sql::Db;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another job has that name.
    #[error("a job named `{0}` exists already")]
    NameTaken(String),
    /// A stored value could not be read back.
    #[error("corrupt {what} in job row {id}: {message}")]
    Corrupt {
        /// The column.
        what: &'static str,
        /// The row.
        id: String,
        /// What is wrong.
        message: String,
    },
    /// The database refused or could not be reached.
    #[error("job store database error: {0}")]
    Sqlx(#[from] sqlx::Error),
}

/// Why a run was not queued.
#[derive(Debug, thiserror::Error)]
pub enum RunRequestError {
    /// No such job.
    #[error("no job {0}")]
    NotFound(String),
    /// The job is disabled.
    #[error("job {0} is disabled")]
    Disabled(String),
    /// A run of the job is queued or running.
    #[error("job {0} is running")]
    Running(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A job to create.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// Unique name.
    pub name: String,
    /// What it does.
    pub task_type: TaskType,
    /// When it runs.
    pub schedule: Schedule,
    /// What it is for.
    pub description: String,
    /// The task's parameters.
    pub params: Value,
    /// Owl's own (created at first start).
    pub builtin: bool,
}

/// Changes of a job; absent fields keep their value.
#[derive(Debug, Clone, Default)]
pub struct JobChange {
    /// New name.
    pub name: Option<String>,
    /// New task type.
    pub task_type: Option<TaskType>,
    /// New schedule (the next run follows it from now).
    pub schedule: Option<Schedule>,
    /// New description.
    pub description: Option<String>,
    /// New parameters.
    pub params: Option<Value>,
}

/// How long the history of finished runs is kept: a job every five minutes leaves some 8,600 rows.
pub const RUN_HISTORY_MS: i64 = 30 * 86_400_000;

const JOB_COLUMNS: &str = "id, name, task_type, schedule, description, params, builtin, enabled, paused, next_run_at, \
     last_run_at, last_outcome, lease_owner, lease_until, created_at, updated_at, updated_by";

const RUN_COLUMNS: &str = "id, job_id, run_trigger, status, queued_at, started_at, finished_at, duration_ms, error, \
     files, bytes, records, detail, runner";

/// The job store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct JobStore {
    db: Db,
}

impl JobStore {
    /// A store over Owl's database, already migrated ([`owl_sql::migrate`]).
    pub fn new(db: Db) -> JobStore {
        JobStore { db }
    }

    // ----- jobs, as the API changes them -----

    /// Creates a job; its first run is the schedule's next time after `now_ms`.
    pub async fn insert(&self, job: &NewJob, now_ms: i64, by: &str) -> Result<Job, StoreError> {
        let id = Uuid::now_v7().to_string();
        let mut sql = self.db.sql(&format!("INSERT INTO jobs ({JOB_COLUMNS}) VALUES ("));
        sql.bind(id.clone()).push(", ");
        sql.bind(job.name.clone()).push(", ");
        sql.bind(job.task_type.as_str().to_string()).push(", ");
        sql.bind(job.schedule.as_str().to_string()).push(", ");
        sql.bind(job.description.clone()).push(", ");
        sql.bind(job.params.to_string()).push(", ");
        sql.bind(i64::from(job.builtin)).push(", 1, 0, ");
        sql.bind(job.schedule.next_after_ms(now_ms))
            .push(", NULL, NULL, NULL, NULL, ");
        sql.bind(now_ms).push(", ");
        sql.bind(now_ms).push(", ");
        sql.bind(by.to_string()).push(")");
        match sql.query().execute(self.db.pool()).await {
            Ok(_) => {}
            Err(error) if owl_sql::is_unique_violation(&error) => {
                return Err(StoreError::NameTaken(job.name.clone()));
            }
            Err(error) => return Err(error.into()),
        }
        self.get(&id).await?.ok_or_else(|| StoreError::Corrupt {
            what: "jobs",
            id,
            message: "the row vanished right after its insert".into(),
        })
    }

    /// Creates each of `jobs` whose name is not taken yet (Owl's built-in jobs at start).
    pub async fn ensure(&self, jobs: &[NewJob], now_ms: i64) -> Result<usize, StoreError> {
        let mut created = 0;
        for job in jobs {
            match self.insert(job, now_ms, "system").await {
                Ok(_) => created += 1,
                Err(StoreError::NameTaken(_)) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(created)
    }

    /// A job by id.
    pub async fn get(&self, id: &str) -> Result<Option<Job>, StoreError> {
        let mut sql = self
            .db
            .sql(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = "));
        sql.bind(id.to_string());
        let row = sql.query().fetch_optional(self.db.pool()).await?;
        row.as_ref().map(job_of).transpose()
    }

    /// Every job, by name.
    pub async fn list(&self) -> Result<Vec<Job>, StoreError> {
        let sql = self
            .db
            .sql(&format!("SELECT {JOB_COLUMNS} FROM jobs ORDER BY name"));
        let rows = sql.query().fetch_all(self.db.pool()).await?;
        rows.iter().map(job_of).collect()
    }

    /// Applies `change`; `None` when there is no such job.
    pub async fn update(
        &self,
        id: &str,
        change: &JobChange,
        now_ms: i64,
        by: &str,
    ) -> Result<Option<Job>, StoreError> {
        let Some(current) = self.get(id).await? else {
            return Ok(None);
        };
        let mut sql = self.db.sql("UPDATE jobs SET updated_at = ");
        sql.bind(now_ms).push(", updated_by = ").bind(by.to_string());
        if let Some(name) = &change.name {
            sql.push(", name = ").bind(name.clone());
        }
        if let Some(task_type) = change.task_type {
            sql.push(", task_type = ").bind(task_type.as_str().to_string());
        }
        if let Some(schedule) = &change.schedule {
            sql.push(", schedule = ").bind(schedule.as_str().to_string());
            if current.enabled {
                sql.push(", next_run_at = ").bind(schedule.next_after_ms(now_ms));
            }
        }
        if let Some(description) = &change.description {
            sql.push(", description = ").bind(description.clone());
        }
        if let Some(params) = &change.params {
            sql.push(", params = ").bind(params.to_string());
        }
        sql.push(" WHERE id = ").bind(id.to_string());
        match sql.query().execute(self.db.pool()).await {
            Ok(_) => {}
            Err(error) if owl_sql::is_unique_violation(&error) => {
                return Err(StoreError::NameTaken(change.name.clone().unwrap_or_default()));
            }
            Err(error) => return Err(error.into()),
        }
        self.get(id).await
    }

    /// Deletes a job and its history; `false` when there was none.
    pub async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let mut tx = self.db.pool().begin().await?;
        let mut runs = self.db.sql("DELETE FROM job_runs WHERE job_id = ");
        runs.bind(id.to_string());
        runs.query().execute(&mut *tx).await?;
        let mut job = self.db.sql("DELETE FROM jobs WHERE id = ");
        job.bind(id.to_string());
        let deleted = job.query().execute(&mut *tx).await?.rows_affected() > 0;
        tx.commit().await?;
        Ok(deleted)
    }

    /// Enables (the next run follows the schedule from now) or disables (no next run) a job.
    pub async fn set_enabled(
        &self,
        id: &str,
        enabled: bool,
        now_ms: i64,
        by: &str,
    ) -> Result<Option<Job>, StoreError> {
        let Some(current) = self.get(id).await? else {
            return Ok(None);
        };
        let next = if enabled {
            current
                .schedule
                .parse::<Schedule>()
                .ok()
                .and_then(|s| s.next_after_ms(now_ms))
        } else {
            None
        };
        let mut sql = self.db.sql("UPDATE jobs SET enabled = ");
        sql.bind(i64::from(enabled)).push(", next_run_at = ").bind(next);
        sql.push(", updated_at = ").bind(now_ms);
        sql.push(", updated_by = ").bind(by.to_string());
        sql.push(" WHERE id = ").bind(id.to_string());
        sql.query().execute(self.db.pool()).await?;
        self.get(id).await
    }

    /// Pauses (runs are skipped, the schedule goes on) or resumes a job.
    pub async fn set_paused(
        &self,
        id: &str,
        paused: bool,
        now_ms: i64,
        by: &str,
    ) -> Result<Option<Job>, StoreError> {
        let mut sql = self.db.sql("UPDATE jobs SET paused = ");
        sql.bind(i64::from(paused)).push(", updated_at = ").bind(now_ms);
        sql.push(", updated_by = ").bind(by.to_string());
        sql.push(" WHERE id = ").bind(id.to_string());
        if sql.query().execute(self.db.pool()).await?.rows_affected() == 0 {
            return Ok(None);
        }
        self.get(id).await
    }

    /// Queues a run of a job now (`POST /api/jobs/{job_id}/run`); the scheduler that holds what
    /// the task needs starts it within a tick. Refused while a run is queued or running.
    pub async fn request_run(&self, id: &str, now_ms: i64) -> Result<JobRun, RunRequestError> {
        let job = self
            .get(id)
            .await?
            .ok_or_else(|| RunRequestError::NotFound(id.to_string()))?;
        if !job.enabled {
            return Err(RunRequestError::Disabled(id.to_string()));
        }
        if job.lease_until.is_some_and(|until| until >= now_ms) {
            return Err(RunRequestError::Running(id.to_string()));
        }
        let run_id = Uuid::now_v7().to_string();
        let mut sql = self
            .db
            .sql("INSERT INTO job_runs (id, job_id, run_trigger, status, queued_at) VALUES (");
        sql.bind(run_id.clone()).push(", ");
        sql.bind(id.to_string()).push(", 'manual', 'queued', ");
        sql.bind(now_ms).push(")");
        match sql.query().execute(self.db.pool()).await {
            Ok(_) => {}
            // The partial unique index: one queued or running run per job.
            Err(error) if owl_sql::is_unique_violation(&error) => {
                return Err(RunRequestError::Running(id.to_string()));
            }
            Err(error) => return Err(StoreError::from(error).into()),
        }
        Ok(self.run(&run_id).await?.expect("inserted above"))
    }

    /// A run by id.
    pub async fn run(&self, run_id: &str) -> Result<Option<JobRun>, StoreError> {
        let mut sql = self
            .db
            .sql(&format!("SELECT {RUN_COLUMNS} FROM job_runs WHERE id = "));
        sql.bind(run_id.to_string());
        let row = sql.query().fetch_optional(self.db.pool()).await?;
        row.as_ref().map(run_of).transpose()
    }

    /// The newest `limit` runs of a job, newest first, and how many it has in all.
    pub async fn runs(
        &self,
        job_id: &str,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<JobRun>, i64), StoreError> {
        let mut count = self.db.sql("SELECT COUNT(*) FROM job_runs WHERE job_id = ");
        count.bind(job_id.to_string());
        let total: i64 = count.query_scalar().fetch_one(self.db.pool()).await?;
        let mut sql = self
            .db
            .sql(&format!("SELECT {RUN_COLUMNS} FROM job_runs WHERE job_id = "));
        sql.bind(job_id.to_string())
            .push(" ORDER BY queued_at DESC, id DESC LIMIT ")
            .bind(limit)
            .push(" OFFSET ")
            .bind(offset);
        let rows = sql.query().fetch_all(self.db.pool()).await?;
        Ok((rows.iter().map(run_of).collect::<Result<_, _>>()?, total))
    }

    // ----- the scheduler's side -----

    /// Enabled jobs whose next run is due and whose lease is free.
    pub(crate) async fn due(&self, now_ms: i64) -> Result<Vec<Job>, StoreError> {
        let mut sql = self.db.sql(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE enabled = 1 AND next_run_at IS NOT NULL AND next_run_at <= "
        ));
        sql.bind(now_ms)
            .push(" AND (lease_until IS NULL OR lease_until < ")
            .bind(now_ms)
            .push(") ORDER BY next_run_at");
        let rows = sql.query().fetch_all(self.db.pool()).await?;
        rows.iter().map(job_of).collect()
    }

    /// Runs asked for and not started yet, oldest first.
    pub(crate) async fn queued(&self) -> Result<Vec<JobRun>, StoreError> {
        let sql = self.db.sql(&format!(
            "SELECT {RUN_COLUMNS} FROM job_runs WHERE status = 'queued' ORDER BY queued_at"
        ));
        let rows = sql.query().fetch_all(self.db.pool()).await?;
        rows.iter().map(run_of).collect()
    }

    /// Moves a paused job's next run on without running it, if no one did meanwhile.
    pub(crate) async fn skip(&self, job: &Job, next: Option<i64>) -> Result<bool, StoreError> {
        let mut sql = self.db.sql("UPDATE jobs SET next_run_at = ");
        sql.bind(next).push(" WHERE id = ").bind(job.id.clone());
        sql.push(" AND next_run_at = ").bind(job.next_run_at);
        Ok(sql.query().execute(self.db.pool()).await?.rows_affected() == 1)
    }

    /// Takes a job's lease for `owner` until `until_ms` if it is free at `now_ms`; a scheduled
    /// claim also moves the next run on (and only succeeds while the run it saw is still due),
    /// so that among racing schedulers exactly one wins.
    pub(crate) async fn claim(
        &self,
        job_id: &str,
        owner: &str,
        now_ms: i64,
        until_ms: i64,
        scheduled: Option<(i64, Option<i64>)>,
    ) -> Result<bool, StoreError> {
        let mut sql = self.db.sql("UPDATE jobs SET lease_owner = ");
        sql.bind(owner.to_string())
            .push(", lease_until = ")
            .bind(until_ms);
        if let Some((_, next)) = scheduled {
            sql.push(", next_run_at = ").bind(next);
        }
        sql.push(", last_run_at = ").bind(now_ms);
        sql.push(" WHERE id = ").bind(job_id.to_string());
        sql.push(" AND (lease_until IS NULL OR lease_until < ")
            .bind(now_ms)
            .push(")");
        if let Some((due, _)) = scheduled {
            sql.push(" AND enabled = 1 AND next_run_at = ").bind(due);
        }
        Ok(sql.query().execute(self.db.pool()).await?.rows_affected() == 1)
    }

    /// Extends a lease its owner still holds.
    pub(crate) async fn renew(&self, job_id: &str, owner: &str, until_ms: i64) -> Result<bool, StoreError> {
        let mut sql = self.db.sql("UPDATE jobs SET lease_until = ");
        sql.bind(until_ms).push(" WHERE id = ").bind(job_id.to_string());
        sql.push(" AND lease_owner = ").bind(owner.to_string());
        Ok(sql.query().execute(self.db.pool()).await?.rows_affected() == 1)
    }

    /// Starts a run of a job whose lease `owner` holds: the queued one if someone asked for one,
    /// else a new scheduled one. Runs left `running` by a scheduler that died are failed first.
    pub(crate) async fn start(&self, job_id: &str, owner: &str, now_ms: i64) -> Result<JobRun, StoreError> {
        let mut lost = self
            .db
            .sql("UPDATE job_runs SET status = 'failed', finished_at = ");
        lost.bind(now_ms)
            .push(", error = 'its scheduler stopped before it finished' WHERE job_id = ")
            .bind(job_id.to_string())
            .push(" AND status = 'running'");
        lost.query().execute(self.db.pool()).await?;
        let mut queued = self
            .db
            .sql("UPDATE job_runs SET status = 'running', started_at = ");
        queued
            .bind(now_ms)
            .push(", runner = ")
            .bind(owner.to_string())
            .push(" WHERE job_id = ")
            .bind(job_id.to_string())
            .push(" AND status = 'queued'");
        if queued.query().execute(self.db.pool()).await?.rows_affected() == 0 {
            let mut sql = self.db.sql(
                "INSERT INTO job_runs (id, job_id, run_trigger, status, queued_at, started_at, runner) VALUES (",
            );
            sql.bind(Uuid::now_v7().to_string()).push(", ");
            sql.bind(job_id.to_string()).push(", 'schedule', 'running', ");
            sql.bind(now_ms).push(", ");
            sql.bind(now_ms).push(", ");
            sql.bind(owner.to_string()).push(")");
            sql.query().execute(self.db.pool()).await?;
        }
        let mut sql = self.db.sql(&format!(
            "SELECT {RUN_COLUMNS} FROM job_runs WHERE status = 'running' AND job_id = "
        ));
        sql.bind(job_id.to_string());
        let row = sql.query().fetch_one(self.db.pool()).await?;
        run_of(&row)
    }

    /// Records how a run ended and gives the job's lease back.
    pub(crate) async fn finish(
        &self,
        run: &JobRun,
        owner: &str,
        now_ms: i64,
        outcome: Result<&RunReport, &str>,
    ) -> Result<(), StoreError> {
        let started = run.started_at.unwrap_or(now_ms);
        let (status, report, error) = match outcome {
            Ok(report) => ("succeeded", report.clone(), None),
            Err(error) => ("failed", RunReport::default(), Some(error.to_string())),
        };
        let mut sql = self.db.sql("UPDATE job_runs SET status = ");
        sql.bind(status.to_string()).push(", finished_at = ").bind(now_ms);
        sql.push(", duration_ms = ").bind(now_ms - started);
        sql.push(", error = ").bind(error);
        sql.push(", files = ").bind(report.files);
        sql.push(", bytes = ").bind(report.bytes);
        sql.push(", records = ").bind(report.records);
        sql.push(", detail = ").bind(report.detail.to_string());
        sql.push(" WHERE id = ").bind(run.id.clone());
        sql.query().execute(self.db.pool()).await?;
        let mut job = self
            .db
            .sql("UPDATE jobs SET lease_owner = NULL, lease_until = NULL, last_outcome = ");
        job.bind(status.to_string())
            .push(" WHERE id = ")
            .bind(run.job_id.clone());
        job.push(" AND lease_owner = ").bind(owner.to_string());
        job.query().execute(self.db.pool()).await?;
        let mut old = self.db.sql("DELETE FROM job_runs WHERE job_id = ");
        old.bind(run.job_id.clone())
            .push(" AND status IN ('succeeded', 'failed') AND queued_at < ")
            .bind(now_ms - RUN_HISTORY_MS);
        old.query().execute(self.db.pool()).await?;
        Ok(())
    }
}

fn corrupt(what: &'static str, id: &str, message: impl ToString) -> StoreError {
    StoreError::Corrupt {
        what,
        id: id.to_string(),
        message: message.to_string(),
    }
}

fn job_of(row: &AnyRow) -> Result<Job, StoreError> {
    let id: String = row.try_get("id")?;
    let task_type: String = row.try_get("task_type")?;
    let params: String = row.try_get("params")?;
    Ok(Job {
        task_type: task_type.parse().map_err(|e| corrupt("jobs.task_type", &id, e))?,
        params: serde_json::from_str(&params).map_err(|e| corrupt("jobs.params", &id, e))?,
        name: row.try_get("name")?,
        schedule: row.try_get("schedule")?,
        description: row.try_get("description")?,
        builtin: row.try_get::<i64, _>("builtin")? != 0,
        enabled: row.try_get::<i64, _>("enabled")? != 0,
        paused: row.try_get::<i64, _>("paused")? != 0,
        next_run_at: row.try_get("next_run_at")?,
        last_run_at: row.try_get("last_run_at")?,
        last_outcome: row.try_get("last_outcome")?,
        lease_owner: row.try_get("lease_owner")?,
        lease_until: row.try_get("lease_until")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        updated_by: row.try_get("updated_by")?,
        id,
    })
}

fn run_of(row: &AnyRow) -> Result<JobRun, StoreError> {
    let id: String = row.try_get("id")?;
    let trigger: String = row.try_get("run_trigger")?;
    let detail: String = row.try_get("detail")?;
    Ok(JobRun {
        job_id: row.try_get("job_id")?,
        trigger: RunTrigger::parse(&trigger),
        status: row.try_get("status")?,
        queued_at: row.try_get("queued_at")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        duration_ms: row.try_get("duration_ms")?,
        error: row.try_get("error")?,
        report: RunReport {
            files: row.try_get("files")?,
            bytes: row.try_get("bytes")?,
            records: row.try_get("records")?,
            detail: serde_json::from_str(&detail).map_err(|e| corrupt("job_runs.detail", &id, e))?,
        },
        runner: row.try_get("runner")?,
        id,
    })
}
