//! `/api/roles` (admin API): create, list, get, update, soft delete, assign permissions; and the
//! permission list `/api/permissions`. Managing roles needs role level 1 (admin API).
//!
//! The rules of roles are the directory's ([`crate::directory::roles`]).

use axum::Router;
use axum::extract::State;
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::extract::{AuthUser, Json, Path};
use super::{AuditPolicy, Routes};
use crate::db::Role;
use crate::directory::roles;
use crate::envelope::{AuthAdminError, Failure, Family, Success};
use crate::permissions::{Access, Permission, SUPER_ADMIN_LEVEL};
use crate::state::AppState;

/// The routes.
pub(crate) fn routes() -> Routes {
    let write = Access::perm_at_level(Permission::RoleWrite, SUPER_ADMIN_LEVEL);
    Routes::new(Family::AuthAdmin, "role")
        .route(Method::POST, "/api/roles", write, create)
        .route(
            Method::GET,
            "/api/roles",
            Access::perm(Permission::RoleRead),
            list,
        )
        .route(
            Method::GET,
            "/api/roles/{id}",
            Access::perm(Permission::RoleRead),
            get,
        )
        .route(Method::PUT, "/api/roles/{id}", write, update)
        .route(Method::DELETE, "/api/roles/{id}", write, delete)
        .audited(
            Method::POST,
            "/api/roles/{id}/permissions",
            write,
            "assign_permissions",
            AuditPolicy::Mutations,
            assign,
        )
        .route(
            Method::GET,
            "/api/roles/{id}/permissions",
            Access::perm(Permission::RoleRead),
            role_permissions,
        )
        .resource("permission")
        .route(
            Method::GET,
            "/api/permissions",
            Access::perm(Permission::RoleRead),
            permissions,
        )
}

/// The roles router.
pub fn router() -> Router<AppState> {
    routes().into_router()
}

fn role_json(role: &Role) -> Value {
    serde_json::to_value(role).expect("roles serialise")
}

/// `POST /api/roles`.
async fn create(
    State(state): State<AppState>,
    Json(body): Json<roles::NewRoleInput>,
) -> Result<Response, AuthAdminError> {
    let role = roles::create(&state, body).await?;
    Ok(super::created_success(role.id, "角色创建成功", role_json(&role)))
}

/// `GET /api/roles`.
async fn list(State(state): State<AppState>) -> Result<Success<Value>, AuthAdminError> {
    let roles: Vec<Value> = state.db.list_roles().await?.iter().map(role_json).collect();
    Ok(Success::data(Value::Array(roles)))
}

/// `GET /api/roles/{id}`: the role with its permissions.
async fn get(State(state): State<AppState>, Path(id): Path<i64>) -> Result<Success<Value>, AuthAdminError> {
    let role = roles::find(&state, id).await?;
    let permissions = state.db.role_permissions(id).await?;
    let mut value = role_json(&role);
    value["permissions"] = serde_json::to_value(permissions).map_err(Failure::internal)?;
    Ok(Success::data(value))
}

/// `PUT /api/roles/{id}`.
async fn update(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
    Json(body): Json<roles::RoleChange>,
) -> Result<Success<Value>, AuthAdminError> {
    let role = roles::update(&state, &user, id, body).await?;
    Ok(Success::with_message("角色更新成功", role_json(&role)))
}

/// `DELETE /api/roles/{id}`: status 0; not for built-in roles nor roles held by enabled users.
async fn delete(State(state): State<AppState>, Path(id): Path<i64>) -> Result<Response, AuthAdminError> {
    roles::delete(&state, id).await?;
    Ok(Success::message("角色删除成功").into_response())
}

/// `POST /api/roles/{id}/permissions`: replaces the role's permissions.
async fn assign(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Json(body): Json<roles::AssignPermissions>,
) -> Result<Response, AuthAdminError> {
    roles::assign(&state, id, body).await?;
    Ok(Success::message("权限分配成功").into_response())
}

/// `GET /api/roles/{id}/permissions`.
async fn role_permissions(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Success<Value>, AuthAdminError> {
    let permissions = roles::permissions_of(&state, id).await?;
    Ok(Success::data(
        serde_json::to_value(permissions).map_err(Failure::internal)?,
    ))
}

/// `GET /api/permissions`: the catalogue.
async fn permissions(State(state): State<AppState>) -> Result<Success<Value>, AuthAdminError> {
    let permissions = state.db.list_permissions().await?;
    Ok(Success::data(json!(permissions)))
}
