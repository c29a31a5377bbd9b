//! `POST /api/v1/logs/cleanup`: where it runs and how it answers.
//!
//! - Dry run: here, on whatever index handle this process has (a reader can measure).
//! - This process holds the index writer (`owl up`): registered as running in the cleanup table
//!   (the cross-process lock), run here, released.
//! - Otherwise (`owl query-api` beside `owl collector`): queued for the collector's worker, which
//!   deletes and records the report; this request waits for it up to [`DELEGATE_TIMEOUT`].
//!
//! While a cleanup is pending or running anywhere, another is `409 LOG_CLEANUP_IN_PROGRESS`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use owl_logconfig::{CleanupError, CleanupPolicy, CleanupReport, JobStatus, LogConfigStore};
use owl_model::Kind;
use serde_json::{Map, Value, json};

use super::render::human_bytes;
use super::settings;
use crate::envelope::Failure;
use crate::state::AppState;

/// How long a request waits for the collector to run a queued cleanup.
pub(crate) const DELEGATE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often it looks.
const DELEGATE_POLL: Duration = Duration::from_millis(100);

/// What to clean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CleanupType {
    /// One kind.
    Kind(Kind),
    /// Every kind.
    All,
}

impl CleanupType {
    /// The log API name.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CleanupType::Kind(kind) => kind.as_str(),
            CleanupType::All => "all",
        }
    }

    /// Parses the log API's `type`.
    pub(crate) fn parse(text: &str) -> Option<CleanupType> {
        match text {
            "all" => Some(CleanupType::All),
            other => other
                .parse::<Kind>()
                .ok()
                .filter(|k| k.as_str() == other)
                .map(CleanupType::Kind),
        }
    }

    fn kinds(self) -> Vec<Kind> {
        match self {
            CleanupType::Kind(kind) => vec![kind],
            CleanupType::All => Kind::ALL.to_vec(),
        }
    }
}

fn in_progress(job_id: Option<i64>) -> Failure {
    let mut failure = Failure::conflict("清理任务进行中，请稍后再试").with_code("LOG_CLEANUP_IN_PROGRESS");
    if let Some(job_id) = job_id {
        failure = failure.with_details(json!({ "jobId": job_id }));
    }
    failure
}

/// The days to keep per kind: `olderThanDays` for the chosen kinds, or the configured retention.
async fn policy(
    state: &AppState,
    what: CleanupType,
    older_than_days: Option<u32>,
) -> Result<CleanupPolicy, Failure> {
    let retention = match older_than_days {
        Some(_) => None,
        None => Some(
            settings::store(state)
                .load()
                .await
                .map_err(Failure::internal)?
                .config
                .retention,
        ),
    };
    let mut policy = CleanupPolicy::default();
    for kind in what.kinds() {
        let days = older_than_days.unwrap_or_else(|| {
            let retention = retention.expect("loaded above when olderThanDays is absent");
            match kind {
                Kind::Http => retention.http,
                Kind::Application => retention.application,
                Kind::Error => retention.error,
            }
        });
        match kind {
            Kind::Http => policy.http_days = Some(days),
            Kind::Application => policy.application_days = Some(days),
            Kind::Error => policy.error_days = Some(days),
        }
    }
    Ok(policy)
}

/// Runs (or has the collector run) a cleanup and returns its report.
pub(crate) async fn run(
    state: &AppState,
    what: CleanupType,
    older_than_days: Option<u32>,
    dry_run: bool,
    by: &str,
) -> Result<(CleanupPolicy, CleanupReport), Failure> {
    let policy = policy(state, what, older_than_days).await?;
    let now = state.clock.now();
    if dry_run {
        let report = super::blocking(&state.index, move |index| {
            owl_logconfig::run_cleanup(index, &policy, now, true)
        })
        .await?;
        return Ok((policy, report));
    }
    let store = settings::store(state);
    if !state.index.is_read_only() {
        let job = store
            .submit_cleanup(what.as_str(), &policy, by, now.timestamp_millis(), true)
            .await
            .map_err(refused)?;
        let ran = super::blocking(&state.index, move |index| {
            owl_logconfig::run_cleanup(index, &policy, now, false)
        })
        .await;
        let finished = match &ran {
            Ok(report) => store.finish_cleanup(job, Ok(report), state.clock.now_ms()).await,
            Err(failure) => {
                store
                    .finish_cleanup(job, Err(&failure.to_string()), state.clock.now_ms())
                    .await
            }
        };
        if let Err(error) = finished {
            tracing::warn!(job, %error, "could not release the cleanup lock; it expires with its lease");
        }
        return ran.map(|report| (policy, report));
    }
    let job = store
        .submit_cleanup(what.as_str(), &policy, by, now.timestamp_millis(), false)
        .await
        .map_err(refused)?;
    let report = wait_for_worker(&store, job).await?;
    Ok((policy, report))
}

fn refused(error: CleanupError) -> Failure {
    match error {
        CleanupError::InProgress { job_id } => in_progress(job_id),
        CleanupError::Store(error) => Failure::internal(error),
    }
}

async fn wait_for_worker(store: &LogConfigStore, job: i64) -> Result<CleanupReport, Failure> {
    let deadline = tokio::time::Instant::now() + DELEGATE_TIMEOUT;
    loop {
        let current = store.cleanup_job(job).await.map_err(Failure::internal)?;
        match current {
            Some(found) if found.status == JobStatus::Done => return Ok(found.report.unwrap_or_default()),
            Some(found) if found.status == JobStatus::Failed => {
                let reason = found.error.unwrap_or_default();
                return Err(Failure::internal(anyhow::anyhow!(
                    "cleanup job {job} failed on the collector: {reason}"
                )));
            }
            Some(_) => {}
            None => return Err(Failure::internal(anyhow::anyhow!("cleanup job {job} vanished"))),
        }
        if tokio::time::Instant::now() >= deadline {
            let now = chrono::Utc::now().timestamp_millis();
            if store
                .withdraw_cleanup(job, now)
                .await
                .map_err(Failure::internal)?
            {
                return Err(Failure::unavailable(
                    "日志清理需要采集器（collector）执行，但它未在 60 秒内接手；请确认采集器正在运行",
                    anyhow::anyhow!("no collector took cleanup job {job}"),
                ));
            }
            return Err(in_progress(Some(job)));
        }
        tokio::time::sleep(DELEGATE_POLL).await;
    }
}

/// The log API's CleanupResponse data.
pub(crate) fn render(policy: &CleanupPolicy, report: &CleanupReport, completed_at: DateTime<Utc>) -> Value {
    let by_kind = report.by_kind();
    let mut details = Map::new();
    for kind in policy.kinds() {
        let (files, bytes) = by_kind.get(&kind).copied().unwrap_or_default();
        details.insert(
            kind.as_str().to_string(),
            json!({ "files": files, "size": human_bytes(bytes), "bytes": bytes }),
        );
    }
    let partitions: Vec<Value> = report
        .partitions
        .iter()
        .map(|p| json!({ "type": p.kind.as_str(), "day": p.day.to_string(), "files": p.files, "size": human_bytes(p.bytes) }))
        .collect();
    json!({
        "dryRun": report.dry_run,
        "deletedFiles": report.files(),
        "freedSpace": human_bytes(report.bytes()),
        "freedBytes": report.bytes(),
        "details": details,
        "partitions": partitions,
        "completedAt": owl_model::format_timestamp(&completed_at),
    })
}
