//! `/api/jobs` (the platform API's 任务调度): Owl's scheduled jobs, in the platform envelope
//! `{status, data, message}`. Reading needs `scheduler_view`; every change and run needs
//! `scheduler_manage`, and is audited. The jobs run in the process that holds what their task
//! needs (the collector's, for the index); a run asked for here is queued and started there within
//! a second.
//!
//! Parameter errors (a bad `schedule`, an unknown `task_type`) answer 400 naming the field, as the
//! platform API's 请求参数错误; a run asked for while one is queued or running answers 409.

use axum::Router;
use axum::extract::State;
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use owl_model::clock::format_millis;
use owl_scheduler::{
    Job, JobChange, JobRun, JobStore, NewJob, RunRequestError, Schedule, StoreError, TaskType,
};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::Routes;
use super::extract::{AuthUser, Json, Path, Query};
use crate::envelope::{Failure, Family, PlatformError, StatusOk, time_or_null};
use crate::permissions::{Access, Permission};
use crate::state::AppState;
use crate::validate::Validator;

/// Longest job name.
const MAX_NAME: usize = 128;
/// Largest page of runs.
const MAX_PER_PAGE: i64 = 100;

/// The routes.
pub(crate) fn routes() -> Routes {
    let view = Access::perm(Permission::SchedulerView);
    let manage = Access::perm(Permission::SchedulerManage);
    Routes::new(Family::Platform, "job")
        .route(Method::GET, "/api/jobs", view, list)
        .route(Method::POST, "/api/jobs", manage, create)
        .route(Method::GET, "/api/jobs/{job_id}", view, get)
        .route(Method::PUT, "/api/jobs/{job_id}", manage, update)
        .route(Method::DELETE, "/api/jobs/{job_id}", manage, delete)
        .route(Method::POST, "/api/jobs/{job_id}/enable", manage, enable)
        .route(Method::POST, "/api/jobs/{job_id}/disable", manage, disable)
        .route(Method::POST, "/api/jobs/{job_id}/pause", manage, pause)
        .route(Method::POST, "/api/jobs/{job_id}/resume", manage, resume)
        .route(Method::POST, "/api/jobs/{job_id}/run", manage, run)
        .route(Method::GET, "/api/jobs/{job_id}/runs", view, runs)
}

/// The jobs router.
pub fn router() -> Router<AppState> {
    routes().into_router()
}

fn store(state: &AppState) -> JobStore {
    JobStore::new(state.db.sql_db().clone())
}

fn store_failure(error: StoreError) -> Failure {
    match error {
        StoreError::NameTaken(name) => Failure::conflict(format!("任务名称 {name} 已存在")),
        other => Failure::internal(other),
    }
}

fn not_found(id: &str) -> Failure {
    Failure::not_found(format!("任务 {id} 不存在"))
}

/// A job as every endpoint shows it.
fn job_json(job: &Job, now_ms: i64) -> Value {
    json!({
        "id": job.id,
        "name": job.name,
        "task_type": job.task_type,
        "schedule": job.schedule,
        "description": job.description,
        "params": job.params,
        "builtin": job.builtin,
        "enabled": job.enabled,
        "paused": job.paused,
        "status": job.status(now_ms),
        "next_run_at": time_or_null(job.next_run_at),
        "last_run_at": time_or_null(job.last_run_at),
        "last_outcome": job.last_outcome,
        "running_on": job.lease_until.filter(|until| *until >= now_ms).and(job.lease_owner.clone()),
        "created_at": format_millis(job.created_at),
        "updated_at": format_millis(job.updated_at),
        "updated_by": job.updated_by,
    })
}

/// A run: when, how long, how it ended and what it did.
fn run_json(run: &JobRun) -> Value {
    json!({
        "id": run.id,
        "job_id": run.job_id,
        "trigger": run.trigger,
        "status": run.status,
        "queued_at": format_millis(run.queued_at),
        "started_at": time_or_null(run.started_at),
        "finished_at": time_or_null(run.finished_at),
        "duration_ms": run.duration_ms,
        "error": run.error,
        "files": run.report.files,
        "bytes": run.report.bytes,
        "records": run.report.records,
        "detail": run.report.detail,
        "runner": run.runner,
    })
}

fn parse_task_type(v: &mut Validator, text: Option<&str>, required: bool) -> Option<TaskType> {
    match text {
        Some(text) => match text.parse::<TaskType>() {
            Ok(task) => Some(task),
            Err(error) => {
                v.error("task_type", "enum", error.to_string());
                None
            }
        },
        None => {
            if required {
                v.error("task_type", "required", "task_type 不能为空");
            }
            None
        }
    }
}

fn parse_schedule(v: &mut Validator, text: Option<&str>, required: bool) -> Option<Schedule> {
    match text {
        Some(text) => match text.parse() {
            Ok(schedule) => Some(schedule),
            Err(error) => {
                v.error("schedule", "cron", error.to_string());
                None
            }
        },
        None => {
            if required {
                v.error("schedule", "required", "schedule 不能为空");
            }
            None
        }
    }
}

/// The parameters a task needs (a `cleanup` its `type` and `olderThanDays`).
fn check_params(v: &mut Validator, task_type: Option<TaskType>, params: &Value) {
    let checked = match task_type {
        Some(TaskType::Cleanup) => owl_logconfig::CleanupPolicy::from_job_params(params).map(|_| ()),
        Some(TaskType::WarmAnalyticsCache) => crate::crm::warm::max_scopes_of(params).map(|_| ()),
        _ => Ok(()),
    };
    if let Err(problem) = checked {
        v.error("params", task_type.map_or("params", TaskType::as_str), problem);
    }
}

fn parse_params(v: &mut Validator, params: Option<Value>) -> Option<Value> {
    match params {
        None | Some(Value::Null) => None,
        Some(Value::Object(map)) => Some(Value::Object(map)),
        Some(_) => {
            v.error("params", "type", "params 必须是 JSON 对象");
            None
        }
    }
}

/// The body of `POST /api/jobs` (the platform API's example also sends `db_type`, kept in `params`).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct CreateBody {
    name: Option<String>,
    task_type: Option<String>,
    schedule: Option<String>,
    description: Option<String>,
    params: Option<Value>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

/// `GET /api/jobs`.
async fn list(State(state): State<AppState>) -> Result<StatusOk<Value>, PlatformError> {
    let now = state.clock.now_ms();
    let jobs = store(&state).list().await.map_err(store_failure)?;
    let data: Vec<Value> = jobs.iter().map(|j| job_json(j, now)).collect();
    Ok(StatusOk::new(Value::Array(data), "获取任务列表成功"))
}

/// `GET /api/jobs/{job_id}`.
async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusOk<Value>, PlatformError> {
    let job = store(&state).get(&id).await.map_err(store_failure)?;
    let job = job.ok_or_else(|| not_found(&id))?;
    Ok(StatusOk::new(
        job_json(&job, state.clock.now_ms()),
        "获取任务详情成功",
    ))
}

/// `POST /api/jobs`.
async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    Json(body): Json<CreateBody>,
) -> Result<Response, PlatformError> {
    let mut v = Validator::new();
    let name = v.required("name", body.name.as_deref(), MAX_NAME);
    let task_type = parse_task_type(&mut v, body.task_type.as_deref(), true);
    let schedule = parse_schedule(&mut v, body.schedule.as_deref(), true);
    let description = v
        .optional("description", body.description.as_deref(), 512)
        .unwrap_or_default();
    let mut params = parse_params(&mut v, body.params)
        .and_then(|p| p.as_object().cloned())
        .unwrap_or_default();
    // Fields Owl does not model (`db_type` of the platform API's example) are kept as parameters.
    for (key, value) in body.extra {
        params.entry(key).or_insert(value);
    }
    let params = Value::Object(params);
    check_params(&mut v, task_type, &params);
    v.finish_parameters()?;
    let new = NewJob {
        name: name.expect("validated above"),
        task_type: task_type.expect("validated above"),
        schedule: schedule.expect("validated above"),
        description,
        params,
        builtin: false,
    };
    let now = state.clock.now_ms();
    let job = store(&state)
        .insert(&new, now, &user.user_code)
        .await
        .map_err(store_failure)?;
    let body = StatusOk::new(job_json(&job, now), "任务创建成功").created();
    Ok(super::created(&job.id, body))
}

/// The body of `PUT /api/jobs/{job_id}`; absent fields keep their value.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    name: Option<String>,
    task_type: Option<String>,
    schedule: Option<String>,
    description: Option<String>,
    params: Option<Value>,
}

/// `PUT /api/jobs/{job_id}`.
async fn update(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
    Json(body): Json<UpdateBody>,
) -> Result<StatusOk<Value>, PlatformError> {
    let mut v = Validator::new();
    let name = match body.name {
        Some(name) => v.required("name", Some(&name), MAX_NAME),
        None => None,
    };
    let change = JobChange {
        name,
        task_type: parse_task_type(&mut v, body.task_type.as_deref(), false),
        schedule: parse_schedule(&mut v, body.schedule.as_deref(), false),
        description: v.optional("description", body.description.as_deref(), 512),
        params: parse_params(&mut v, body.params),
    };
    v.finish_parameters()?;
    let store = store(&state);
    let current = store.get(&id).await.map_err(store_failure)?;
    let current = current.ok_or_else(|| not_found(&id))?;
    let mut v = Validator::new();
    let params = change.params.clone().unwrap_or_else(|| current.params.clone());
    check_params(
        &mut v,
        Some(change.task_type.unwrap_or(current.task_type)),
        &params,
    );
    v.finish_parameters()?;
    let now = state.clock.now_ms();
    let job = store
        .update(&id, &change, now, &user.user_code)
        .await
        .map_err(store_failure)?
        .ok_or_else(|| not_found(&id))?;
    Ok(StatusOk::new(job_json(&job, now), "任务更新成功"))
}

/// `DELETE /api/jobs/{job_id}`: a built-in job is disabled, not deleted (it would come back at
/// the next start).
async fn delete(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, PlatformError> {
    let store = store(&state);
    let job = store.get(&id).await.map_err(store_failure)?;
    let job = job.ok_or_else(|| not_found(&id))?;
    if job.builtin {
        return Err(Failure::forbidden(format!("内置任务 {} 不能删除，可以禁用", job.name)).into());
    }
    store.delete(&id).await.map_err(store_failure)?;
    Ok(StatusOk::new(json!({ "id": id }), "任务删除成功").into_response())
}

/// One of enable, disable, pause and resume.
async fn switch(
    state: &AppState,
    user: &AuthUser,
    id: &str,
    change: Switch,
) -> Result<StatusOk<Value>, PlatformError> {
    let store = store(state);
    let now = state.clock.now_ms();
    let by = user.user_code.as_str();
    let (job, message) = match change {
        Switch::Enable => (store.set_enabled(id, true, now, by).await, "任务已启用"),
        Switch::Disable => (store.set_enabled(id, false, now, by).await, "任务已禁用"),
        Switch::Pause => (store.set_paused(id, true, now, by).await, "任务已暂停"),
        Switch::Resume => (store.set_paused(id, false, now, by).await, "任务已恢复"),
    };
    let job = job.map_err(store_failure)?.ok_or_else(|| not_found(id))?;
    Ok(StatusOk::new(job_json(&job, now), message))
}

enum Switch {
    Enable,
    Disable,
    Pause,
    Resume,
}

/// `POST /api/jobs/{job_id}/enable`.
async fn enable(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<StatusOk<Value>, PlatformError> {
    switch(&state, &user, &id, Switch::Enable).await
}

/// `POST /api/jobs/{job_id}/disable`: the job never runs until enabled again.
async fn disable(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<StatusOk<Value>, PlatformError> {
    switch(&state, &user, &id, Switch::Disable).await
}

/// `POST /api/jobs/{job_id}/pause`: the job keeps its schedule and skips its runs until resumed.
async fn pause(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<StatusOk<Value>, PlatformError> {
    switch(&state, &user, &id, Switch::Pause).await
}

/// `POST /api/jobs/{job_id}/resume`.
async fn resume(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<StatusOk<Value>, PlatformError> {
    switch(&state, &user, &id, Switch::Resume).await
}

/// `POST /api/jobs/{job_id}/run`: queues a run now and answers its id (`202`); 409 while a run
/// of the job is queued or running, or when the job is disabled.
async fn run(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, PlatformError> {
    match store(&state).request_run(&id, state.clock.now_ms()).await {
        Ok(run) => Ok(StatusOk::new(
            json!({ "job_id": id, "run_id": run.id, "status": run.status }),
            "任务已开始执行",
        )
        .with_status(axum::http::StatusCode::ACCEPTED)
        .into_response()),
        Err(RunRequestError::NotFound(_)) => Err(not_found(&id).into()),
        Err(RunRequestError::Running(_)) => Err(Failure::conflict("任务正在执行，请等待本次执行结束").into()),
        Err(RunRequestError::Disabled(_)) => Err(Failure::conflict("任务已禁用，启用后才能执行").into()),
        Err(RunRequestError::Store(error)) => Err(store_failure(error).into()),
    }
}

/// The page of `GET /api/jobs/{job_id}/runs`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
struct RunsParams {
    page: Option<i64>,
    per_page: Option<i64>,
}

/// `GET /api/jobs/{job_id}/runs`: newest first, `page` and `per_page` (20 by default, at most 100).
async fn runs(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(params): Query<RunsParams>,
) -> Result<StatusOk<Value>, PlatformError> {
    let mut v = Validator::new();
    let page = params.page.unwrap_or(1);
    let per_page = params.per_page.unwrap_or(20);
    v.range("page", page, 1, 1_000_000);
    v.range("per_page", per_page, 1, MAX_PER_PAGE);
    v.finish_parameters()?;
    let store = store(&state);
    if store.get(&id).await.map_err(store_failure)?.is_none() {
        return Err(not_found(&id).into());
    }
    let (found, total) = store
        .runs(&id, (page - 1) * per_page, per_page)
        .await
        .map_err(store_failure)?;
    let data: Vec<Value> = found.iter().map(run_json).collect();
    Ok(StatusOk::page(
        Value::Array(data),
        page,
        per_page,
        total,
        "获取执行记录成功",
    ))
}
