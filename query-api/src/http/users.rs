//! `/api/users` (the admin API: create, get, list, update, soft delete) and the platform API's `toggle-status` and `stats`.
//!
//! The routes need `user:*` at role level <= 2; the rules beyond that are the directory's
//! ([`crate::directory::users`]) and the authorization module's ([`crate::authz`]).

use axum::Router;
use axum::extract::State;
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::extract::{AuthUser, Json, Path, Query};
use super::{AuditPolicy, Routes};
use crate::db::UserRecord;
use crate::directory::{Creation, users};
use crate::envelope::{AuthAdminError, Failure, Family, PlatformError, StatusOk, Success};
use crate::permissions::{Access, Permission};
use crate::state::AppState;
use owl_model::clock::format_millis;

/// Role level that may manage users (admin API).
const MANAGE_LEVEL: i64 = 2;

/// The routes.
pub(crate) fn routes() -> Routes {
    let write = Access::perm_at_level(Permission::UserWrite, MANAGE_LEVEL);
    Routes::new(Family::AuthAdmin, "user")
        .route(Method::POST, "/api/users", write, create)
        .route(
            Method::GET,
            "/api/users",
            Access::perm(Permission::UserRead),
            list,
        )
        .route(
            Method::GET,
            "/api/users/{id}",
            Access::perm(Permission::UserRead),
            get,
        )
        .route(Method::PUT, "/api/users/{id}", write, update)
        .route(Method::DELETE, "/api/users/{id}", write, delete)
        .family(Family::Platform)
        .route(
            Method::GET,
            "/api/users/stats",
            Access::perm(Permission::UserRead),
            stats,
        )
        .audited(
            Method::POST,
            "/api/users/{id}/toggle-status",
            write,
            "toggle_status",
            AuditPolicy::Mutations,
            toggle_status,
        )
}

/// The users router.
pub fn router() -> Router<AppState> {
    routes().into_router()
}

/// A user as every endpoint shows it (the admin API's fields first; never the password hash).
pub(crate) fn user_json(user: &UserRecord) -> Value {
    json!({
        "id": user.id,
        "user_code": user.user_code,
        "username": user.username,
        "org_code": user.org_code,
        "org_name": user.org_name,
        "role_id": user.role_id,
        "role_code": user.role_code,
        "role_name": user.role_name,
        "role_level": user.role_level,
        "phone": user.phone,
        "address": user.address,
        "email": user.email,
        "avatar": user.avatar,
        "regions": user.regions,
        "status": user.status,
        "last_login_at": user.last_login_at.map(format_millis),
        "created_at": format_millis(user.created_at),
        "updated_at": format_millis(user.updated_at),
    })
}

/// `POST /api/users`.
async fn create(
    State(state): State<AppState>,
    actor: AuthUser,
    Json(body): Json<users::NewUserInput>,
) -> Result<Response, AuthAdminError> {
    Ok(match users::create(&state, &actor, body).await? {
        Creation::Created(user) => super::created_success(user.id, "用户创建成功", user_json(&user)),
        Creation::Existing(user) => {
            Success::with_message("用户已存在，与请求一致", user_json(&user)).into_response()
        }
    })
}

/// `GET /api/users`: `{success, data:{list, pagination}}`.
async fn list(
    State(state): State<AppState>,
    actor: AuthUser,
    Query(params): Query<users::UserQuery>,
) -> Result<Success<Value>, AuthAdminError> {
    let (found, total, page) = users::list(&state, &actor, params).await?;
    let list: Vec<Value> = found.iter().map(user_json).collect();
    Ok(Success::data(
        json!({ "list": list, "pagination": page.describe(total) }),
    ))
}

/// `GET /api/users/{id}`.
async fn get(
    State(state): State<AppState>,
    actor: AuthUser,
    Path(id): Path<i64>,
) -> Result<Success<Value>, AuthAdminError> {
    let (user, _) = users::find_visible(&state, &actor, id).await?;
    Ok(Success::data(user_json(&user)))
}

/// `PUT /api/users/{id}`.
async fn update(
    State(state): State<AppState>,
    actor: AuthUser,
    Path(id): Path<i64>,
    Json(body): Json<users::UserChange>,
) -> Result<Success<Value>, AuthAdminError> {
    let user = users::update(&state, &actor, id, body).await?;
    Ok(Success::with_message("用户更新成功", user_json(&user)))
}

/// `DELETE /api/users/{id}`: soft delete (status 0).
async fn delete(
    State(state): State<AppState>,
    actor: AuthUser,
    Path(id): Path<i64>,
) -> Result<Response, AuthAdminError> {
    users::set_status(&state, &actor, id, |_| 0).await?;
    Ok(Success::message("用户删除成功").into_response())
}

/// `POST /api/users/{id}/toggle-status` (platform API).
async fn toggle_status(
    State(state): State<AppState>,
    actor: AuthUser,
    Path(id): Path<i64>,
) -> Result<StatusOk<Value>, PlatformError> {
    let user = users::set_status(&state, &actor, id, |u| if u.status == 1 { 0 } else { 1 }).await?;
    let message = if user.status == 1 {
        "用户已启用"
    } else {
        "用户已禁用"
    };
    Ok(StatusOk::new(
        json!({ "id": user.id, "user_code": user.user_code, "status": user.status }),
        message,
    ))
}

/// `GET /api/users/stats` (platform API).
async fn stats(State(state): State<AppState>, actor: AuthUser) -> Result<StatusOk<Value>, PlatformError> {
    let stats = users::stats(&state, &actor).await?;
    Ok(StatusOk::new(
        serde_json::to_value(stats).map_err(Failure::internal)?,
        "获取用户统计成功",
    ))
}
