//! `/api/roles` (admin API): create, list, get, update, soft delete, assign permissions; and the
//! permission list `/api/permissions`. Managing roles needs role level 1 (admin API).
//!
//! Built-in roles keep their code; `admin` always holds every permission and keeps level 1; a role
//! still held by enabled users cannot be deleted.

use axum::Router;
use axum::extract::State;
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::{AuthUser, Json, Path};
use super::validate::Validator;
use super::{AuditPolicy, Routes};
use crate::db::{NewRole, Role, RoleUpdate};
use crate::envelope::{AuthAdminError, Failure, Family, Success};
use crate::permissions::{ADMIN_ROLE, Access, Permission, SUPER_ADMIN_LEVEL};
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

async fn find(state: &AppState, id: i64) -> Result<Role, Failure> {
    state
        .db
        .find_role(id)
        .await?
        .ok_or_else(|| Failure::not_found(format!("角色 {id} 不存在")))
}

#[derive(Debug, Deserialize)]
struct CreateBody {
    role_code: Option<String>,
    role_name: Option<String>,
    role_level: Option<i64>,
    description: Option<String>,
    status: Option<i64>,
    environments: Option<Vec<String>>,
}

/// `POST /api/roles`.
async fn create(
    State(state): State<AppState>,
    Json(body): Json<CreateBody>,
) -> Result<Response, AuthAdminError> {
    let mut v = Validator::new();
    let role_code = v.code("role_code", body.role_code.as_deref(), 64);
    let role_name = v.required("role_name", body.role_name.as_deref(), 64);
    let role_level = match body.role_level {
        Some(level) => {
            v.range("role_level", level, 1, 100);
            level
        }
        None => {
            v.error("role_level", "required", "role_level 不能为空");
            0
        }
    };
    let description = v
        .optional("description", body.description.as_deref(), 512)
        .unwrap_or_default();
    let status = v.status("status", body.status).unwrap_or(1);
    let environments = v
        .environments("environments", body.environments.as_deref())
        .unwrap_or_default();
    v.finish()?;
    let new = NewRole {
        role_code: role_code.expect("validated above"),
        role_name: role_name.expect("validated above"),
        role_level,
        description,
        status,
        environments,
    };
    let id = state.db.insert_role(&new, state.clock.now_ms()).await?;
    let found = state.db.find_role(id).await?;
    Ok(super::created(id, "role", found, "角色创建成功", role_json)?)
}

/// `GET /api/roles`.
async fn list(State(state): State<AppState>) -> Result<Success<Value>, AuthAdminError> {
    let roles: Vec<Value> = state.db.list_roles().await?.iter().map(role_json).collect();
    Ok(Success::data(Value::Array(roles)))
}

/// `GET /api/roles/{id}`: the role with its permissions.
async fn get(State(state): State<AppState>, Path(id): Path<i64>) -> Result<Success<Value>, AuthAdminError> {
    let role = find(&state, id).await?;
    let permissions = state.db.role_permissions(id).await?;
    let mut value = role_json(&role);
    value["permissions"] = serde_json::to_value(permissions).map_err(Failure::internal)?;
    Ok(Success::data(value))
}

#[derive(Debug, Deserialize)]
struct UpdateBody {
    role_name: Option<String>,
    role_level: Option<i64>,
    description: Option<String>,
    status: Option<i64>,
    environments: Option<Vec<String>>,
}

/// `PUT /api/roles/{id}`.
async fn update(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
    Json(body): Json<UpdateBody>,
) -> Result<Success<Value>, AuthAdminError> {
    let role = find(&state, id).await?;
    let mut v = Validator::new();
    let role_name = match body.role_name {
        Some(name) => v.required("role_name", Some(&name), 64),
        None => None,
    };
    if let Some(level) = body.role_level {
        v.range("role_level", level, 1, 100);
        v.check(
            role.role_code != ADMIN_ROLE || level == SUPER_ADMIN_LEVEL,
            "role_level",
            "builtin",
            "admin 角色的级别固定为 1",
        );
        v.check(
            role.id != user.role_id || level == role.role_level,
            "role_level",
            "self",
            "不能修改自己角色的级别",
        );
    }
    let description = v.optional("description", body.description.as_deref(), 512);
    let status = v.status("status", body.status);
    if status == Some(0) {
        v.check(
            role.role_code != ADMIN_ROLE && role.id != user.role_id,
            "status",
            "self",
            "不能禁用 admin 角色或自己的角色",
        );
    }
    let environments = v.environments("environments", body.environments.as_deref());
    v.finish()?;
    let update = RoleUpdate {
        role_name,
        role_level: body.role_level,
        description,
        status,
        environments,
    };
    state.db.update_role(id, &update, state.clock.now_ms()).await?;
    let role = find(&state, id).await?;
    Ok(Success::with_message("角色更新成功", role_json(&role)))
}

/// `DELETE /api/roles/{id}`: status 0; not for built-in roles nor roles held by enabled users.
async fn delete(State(state): State<AppState>, Path(id): Path<i64>) -> Result<Response, AuthAdminError> {
    let role = find(&state, id).await?;
    if role.builtin {
        return Err(Failure::forbidden("内置角色不能删除").into());
    }
    if state.db.count_active_users_with_role(id).await? > 0 {
        return Err(Failure::conflict("仍有启用的用户使用该角色").into());
    }
    state
        .db
        .update_role(
            id,
            &RoleUpdate {
                status: Some(0),
                ..RoleUpdate::default()
            },
            state.clock.now_ms(),
        )
        .await?;
    Ok(Success::message("角色删除成功").into_response())
}

#[derive(Debug, Deserialize)]
struct AssignBody {
    permission_ids: Vec<i64>,
}

/// `POST /api/roles/{id}/permissions`: replaces the role's permissions.
async fn assign(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Json(body): Json<AssignBody>,
) -> Result<Response, AuthAdminError> {
    let role = find(&state, id).await?;
    if role.role_code == ADMIN_ROLE {
        return Err(Failure::forbidden("admin 角色始终拥有全部权限").into());
    }
    let known: Vec<i64> = state
        .db
        .list_permissions()
        .await?
        .into_iter()
        .map(|p| p.id)
        .collect();
    let mut v = Validator::new();
    let mut ids = Vec::with_capacity(body.permission_ids.len());
    for (i, id) in body.permission_ids.iter().enumerate() {
        if !known.contains(id) {
            v.error(
                &format!("permission_ids[{i}]"),
                "exists",
                format!("权限 {id} 不存在"),
            );
        } else if !ids.contains(id) {
            ids.push(*id);
        }
    }
    v.finish()?;
    state.db.set_role_permissions(id, &ids).await?;
    Ok(Success::message("权限分配成功").into_response())
}

/// `GET /api/roles/{id}/permissions`.
async fn role_permissions(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Success<Value>, AuthAdminError> {
    let role = find(&state, id).await?;
    let permissions = if role.role_code == ADMIN_ROLE {
        state.db.list_permissions().await?
    } else {
        state.db.role_permissions(id).await?
    };
    Ok(Success::data(
        serde_json::to_value(permissions).map_err(Failure::internal)?,
    ))
}

/// `GET /api/permissions`: the catalogue.
async fn permissions(State(state): State<AppState>) -> Result<Success<Value>, AuthAdminError> {
    let permissions = state.db.list_permissions().await?;
    Ok(Success::data(json!(permissions)))
}
