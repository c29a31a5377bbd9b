//! Jobs and their runs, as stored and as the API shows them.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use serde_json::Value;

/// What a job does. Each runs in the process that holds what it needs (the index, the database).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskType {
    /// Deletes records past the retention of their kind (the live log settings).
    Retention,
    /// Deletes audit rows past `auth.audit_retention_days`.
    AuditRetention,
    /// The log API's cleanup, with its parameters (`type`, `olderThanDays`).
    Cleanup,
    /// Merges the segments of sealed day partitions.
    MergePartitions,
    /// Raises DISK_SPACE from the host samples.
    DiskCheck,
    /// Computes the analytics figures ahead of their readers.
    WarmAnalyticsCache,
}

impl TaskType {
    /// Every type, in the order the API lists them.
    pub const ALL: [TaskType; 6] = [
        TaskType::Retention,
        TaskType::AuditRetention,
        TaskType::Cleanup,
        TaskType::MergePartitions,
        TaskType::DiskCheck,
        TaskType::WarmAnalyticsCache,
    ];

    /// The stored and API name (`audit_retention`).
    pub fn as_str(self) -> &'static str {
        match self {
            TaskType::Retention => "retention",
            TaskType::AuditRetention => "audit_retention",
            TaskType::Cleanup => "cleanup",
            TaskType::MergePartitions => "merge_partitions",
            TaskType::DiskCheck => "disk_check",
            TaskType::WarmAnalyticsCache => "warm_analytics_cache",
        }
    }
}

impl fmt::Display for TaskType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A task type Owl does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown task_type `{0}`: use retention, audit_retention, cleanup, merge_partitions, disk_check or warm_analytics_cache"
)]
pub struct UnknownTaskType(pub String);

impl FromStr for TaskType {
    type Err = UnknownTaskType;

    fn from_str(text: &str) -> Result<TaskType, UnknownTaskType> {
        TaskType::ALL
            .into_iter()
            .find(|t| t.as_str() == text)
            .ok_or_else(|| UnknownTaskType(text.to_string()))
    }
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// Its id (a UUID).
    pub id: String,
    /// Its unique name.
    pub name: String,
    /// What it does.
    pub task_type: TaskType,
    /// When it runs (cron, UTC).
    pub schedule: String,
    /// What it is for.
    pub description: String,
    /// The task's parameters.
    pub params: Value,
    /// Created by Owl at first start (it may be disabled, not deleted).
    pub builtin: bool,
    /// A disabled job never runs.
    pub enabled: bool,
    /// A paused job keeps its schedule and skips its runs until resumed.
    pub paused: bool,
    /// When it runs next (epoch ms); `None` while disabled.
    pub next_run_at: Option<i64>,
    /// When it last started (epoch ms).
    pub last_run_at: Option<i64>,
    /// How its last run ended (`succeeded`, `failed`).
    pub last_outcome: Option<String>,
    /// The scheduler running it now, if any.
    pub lease_owner: Option<String>,
    /// Until when that scheduler holds it (epoch ms).
    pub lease_until: Option<i64>,
    /// Created, epoch ms.
    pub created_at: i64,
    /// Last changed, epoch ms.
    pub updated_at: i64,
    /// Who changed it last.
    pub updated_by: String,
}

impl Job {
    /// `disabled`, `paused`, `running` or `active` (scheduled), as of `now_ms`.
    pub fn status(&self, now_ms: i64) -> &'static str {
        if !self.enabled {
            "disabled"
        } else if self.lease_until.is_some_and(|until| until >= now_ms) {
            "running"
        } else if self.paused {
            "paused"
        } else {
            "active"
        }
    }
}

/// How a run came about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunTrigger {
    /// Its schedule came due.
    Schedule,
    /// Someone asked for it (`POST /api/jobs/{job_id}/run`).
    Manual,
}

impl RunTrigger {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunTrigger::Schedule => "schedule",
            RunTrigger::Manual => "manual",
        }
    }

    pub(crate) fn parse(text: &str) -> RunTrigger {
        if text == "manual" {
            RunTrigger::Manual
        } else {
            RunTrigger::Schedule
        }
    }
}

/// One run of a job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRun {
    /// Its id (a UUID).
    pub id: String,
    /// The job's id.
    pub job_id: String,
    /// Scheduled or asked for.
    pub trigger: RunTrigger,
    /// `queued`, `running`, `succeeded` or `failed`.
    pub status: String,
    /// When it was asked for or came due, epoch ms.
    pub queued_at: i64,
    /// When it started.
    pub started_at: Option<i64>,
    /// When it ended.
    pub finished_at: Option<i64>,
    /// How long it took, ms.
    pub duration_ms: Option<i64>,
    /// Why it failed.
    pub error: Option<String>,
    /// What it did.
    pub report: RunReport,
    /// The scheduler that ran it.
    pub runner: Option<String>,
}

/// What a run did: the files (partitions, segments), bytes and records it touched, and more as
/// the task sees fit.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RunReport {
    /// Files or partitions touched.
    pub files: i64,
    /// Bytes freed or written.
    pub bytes: i64,
    /// Records deleted, merged or computed.
    pub records: i64,
    /// Anything else worth showing.
    pub detail: Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_types_round_trip_and_unknown_ones_are_named() {
        for task in TaskType::ALL {
            assert_eq!(task.as_str().parse::<TaskType>(), Ok(task));
        }
        let error = "sync_accounts".parse::<TaskType>().unwrap_err();
        assert!(error.to_string().contains("`sync_accounts`"), "{error}");
    }
}
