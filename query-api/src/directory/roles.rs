//! Roles and their permissions. Built-in roles keep their code; `admin` always holds every
//! permission and keeps level 1; nobody changes the level of their own role or disables it; a role
//! held by enabled users is not deleted.

use serde::Deserialize;

use crate::auth::Principal;
use crate::db::{NewRole, PermissionRow, Role, RoleUpdate};
use crate::envelope::Failure;
use crate::permissions::{ADMIN_ROLE, SUPER_ADMIN_LEVEL};
use crate::state::AppState;
use crate::validate::Validator;

/// A role to create.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub(crate) struct NewRoleInput {
    pub role_code: Option<String>,
    pub role_name: Option<String>,
    pub role_level: Option<i64>,
    pub description: Option<String>,
    pub status: Option<i64>,
    pub environments: Option<Vec<String>>,
}

/// Changes of a role; absent fields keep their value.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub(crate) struct RoleChange {
    pub role_name: Option<String>,
    pub role_level: Option<i64>,
    pub description: Option<String>,
    pub status: Option<i64>,
    pub environments: Option<Vec<String>>,
}

/// A role by id; 404 when it does not exist.
pub(crate) async fn find(state: &AppState, id: i64) -> Result<Role, Failure> {
    state
        .db
        .find_role(id)
        .await?
        .ok_or_else(|| Failure::not_found(format!("角色 {id} 不存在")))
}

/// Creates a role and returns it as stored.
pub(crate) async fn create(state: &AppState, body: NewRoleInput) -> Result<Role, Failure> {
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
    super::inserted(id, "role", state.db.find_role(id).await?)
}

/// Changes a role as `user` and returns it as stored.
pub(crate) async fn update(
    state: &AppState,
    user: &Principal,
    id: i64,
    body: RoleChange,
) -> Result<Role, Failure> {
    let role = find(state, id).await?;
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
    find(state, id).await
}

/// `DELETE /api/roles/{id}`: status 0; not for built-in roles nor roles held by enabled users.
pub(crate) async fn delete(state: &AppState, id: i64) -> Result<(), Failure> {
    let role = find(state, id).await?;
    if role.builtin {
        return Err(Failure::forbidden("内置角色不能删除"));
    }
    if state.db.count_active_users_with_role(id).await? > 0 {
        return Err(Failure::conflict("仍有启用的用户使用该角色"));
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
    Ok(())
}

/// The permissions a role holds from now on.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct AssignPermissions {
    pub permission_ids: Vec<i64>,
}

/// `POST /api/roles/{id}/permissions`: replaces the role's permissions.
pub(crate) async fn assign(state: &AppState, id: i64, body: AssignPermissions) -> Result<(), Failure> {
    let role = find(state, id).await?;
    if role.role_code == ADMIN_ROLE {
        return Err(Failure::forbidden("admin 角色始终拥有全部权限"));
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
    Ok(())
}

/// What a role holds (`admin`: the whole catalogue).
pub(crate) async fn permissions_of(state: &AppState, id: i64) -> Result<Vec<PermissionRow>, Failure> {
    let role = find(state, id).await?;
    let permissions = if role.role_code == ADMIN_ROLE {
        state.db.list_permissions().await?
    } else {
        state.db.role_permissions(id).await?
    };
    Ok(permissions)
}
