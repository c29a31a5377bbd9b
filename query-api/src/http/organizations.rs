//! `/api/organizations` (admin API): create, list as a tree or a list, get, update, soft delete.
//!
//! A user who is not a super admin sees and manages only their own organization and its
//! descendants; anything else answers 404, as if it did not exist.

use std::collections::BTreeSet;

use axum::Router;
use axum::extract::State;
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Routes;
use super::extract::{AuthUser, Json, Path, Query};
use super::validate::Validator;
use crate::auth::Principal;
use crate::authz::{self, OrgScope};
use crate::db::{NewOrganization, OrgUpdate, Organization, ROOT_PARENT, subtree};
use crate::envelope::{AuthAdminError, Failure, Family, Success};
use crate::permissions::{Access, Permission};
use crate::state::AppState;

/// Role level that may manage organizations (admin API).
const MANAGE_LEVEL: i64 = 2;

/// The routes.
pub(crate) fn routes() -> Routes {
    Routes::new(Family::AuthAdmin, "organization")
        .route(
            Method::POST,
            "/api/organizations",
            Access::perm_at_level(Permission::OrgWrite, MANAGE_LEVEL),
            create,
        )
        .route(
            Method::GET,
            "/api/organizations",
            Access::perm(Permission::OrgRead),
            list,
        )
        .route(
            Method::GET,
            "/api/organizations/{id}",
            Access::perm(Permission::OrgRead),
            get,
        )
        .route(
            Method::PUT,
            "/api/organizations/{id}",
            Access::perm_at_level(Permission::OrgWrite, MANAGE_LEVEL),
            update,
        )
        .route(
            Method::DELETE,
            "/api/organizations/{id}",
            Access::perm_at_level(Permission::OrgWrite, MANAGE_LEVEL),
            delete,
        )
}

/// The organizations router.
pub fn router() -> Router<AppState> {
    routes().into_router()
}

fn org_json(org: &Organization) -> Value {
    let mut value = serde_json::to_value(org).expect("organizations serialise");
    value["created_at"] = json!(owl_model::clock::format_millis(org.created_at));
    value["updated_at"] = json!(owl_model::clock::format_millis(org.updated_at));
    value
}

#[derive(Debug, Deserialize)]
struct CreateBody {
    org_code: Option<String>,
    org_name: Option<String>,
    parent_code: Option<String>,
    org_level: Option<i64>,
    description: Option<String>,
    status: Option<i64>,
}

/// Checks a parent: `0` (a root, super admins only) or an existing organization in scope.
async fn check_parent(
    state: &AppState,
    scope: &OrgScope,
    validator: &mut Validator,
    parent_code: &str,
) -> Result<Option<Organization>, Failure> {
    if parent_code == ROOT_PARENT {
        validator.check(
            scope.is_none(),
            "parent_code",
            "scope",
            "只有超级管理员可以创建顶级组织",
        );
        return Ok(None);
    }
    let parent = state.db.find_organization_by_code(parent_code).await?;
    match &parent {
        Some(parent) if authz::in_org_scope(scope, &parent.org_code) => {}
        _ => validator.error("parent_code", "exists", format!("上级组织 {parent_code} 不存在")),
    }
    Ok(parent)
}

/// `POST /api/organizations`.
async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    Json(body): Json<CreateBody>,
) -> Result<Response, AuthAdminError> {
    let scope = authz::org_scope(&user);
    let mut v = Validator::new();
    let org_code = v.code("org_code", body.org_code.as_deref(), 64);
    let org_name = v.required("org_name", body.org_name.as_deref(), 128);
    let parent_code = v
        .optional("parent_code", body.parent_code.as_deref(), 64)
        .filter(|p| !p.is_empty());
    let parent_code = parent_code.unwrap_or_else(|| ROOT_PARENT.to_string());
    let parent = check_parent(&state, &scope, &mut v, &parent_code).await?;
    let org_level = body
        .org_level
        .unwrap_or_else(|| parent.as_ref().map_or(1, |p| p.org_level + 1));
    v.range("org_level", org_level, 1, 32);
    let description = v
        .optional("description", body.description.as_deref(), 512)
        .unwrap_or_default();
    let status = v.status("status", body.status).unwrap_or(1);
    if let (Some(code), true) = (&org_code, parent_code != ROOT_PARENT) {
        v.check(*code != parent_code, "parent_code", "cycle", "上级组织不能是自己");
    }
    v.finish()?;
    let new = NewOrganization {
        org_code: org_code.expect("validated above"),
        org_name: org_name.expect("validated above"),
        parent_code,
        org_level,
        description,
        status,
    };
    let id = state.db.insert_organization(&new, state.clock.now_ms()).await?;
    let found = state.db.find_organization(id).await?;
    Ok(super::created(
        id,
        "organization",
        found,
        "组织创建成功",
        org_json,
    )?)
}

#[derive(Debug, Deserialize)]
struct ListParams {
    #[serde(rename = "type")]
    kind: Option<String>,
    status: Option<i64>,
    parent_code: Option<String>,
}

/// Nests organizations under their parents; `roots` are the codes to start from.
fn build_tree(orgs: &[Organization], roots: &[&Organization]) -> Vec<Value> {
    fn node(orgs: &[Organization], org: &Organization, depth: usize, seen: &mut BTreeSet<String>) -> Value {
        let mut value = org_json(org);
        seen.insert(org.org_code.clone());
        // Depth bound: a hand-edited cycle cannot recurse forever.
        let children: Vec<Value> = if depth < 64 {
            orgs.iter()
                .filter(|o| o.parent_code == org.org_code && !seen.contains(&o.org_code))
                .collect::<Vec<_>>()
                .into_iter()
                .map(|child| node(orgs, child, depth + 1, seen))
                .collect()
        } else {
            Vec::new()
        };
        if !children.is_empty() {
            value["children"] = Value::Array(children);
        }
        value
    }
    let mut seen = BTreeSet::new();
    roots.iter().map(|root| node(orgs, root, 0, &mut seen)).collect()
}

/// `GET /api/organizations?type=tree|list&status=&parent_code=`.
async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    Query(params): Query<ListParams>,
) -> Result<Success<Value>, AuthAdminError> {
    let mut v = Validator::new();
    let kind = params.kind.as_deref().unwrap_or("tree");
    v.check(
        matches!(kind, "tree" | "list"),
        "type",
        "enum",
        "type 只能是 tree 或 list",
    );
    let status = v.status("status", params.status);
    v.finish()?;
    let scope = authz::org_scope(&user);
    let visible: Vec<Organization> = state
        .db
        .all_organizations()
        .await?
        .into_iter()
        .filter(|o| authz::in_org_scope(&scope, &o.org_code) && status.is_none_or(|s| o.status == s))
        .collect();
    let parent = params.parent_code.filter(|p| !p.is_empty());
    if kind == "list" {
        let items: Vec<Value> = visible
            .iter()
            .filter(|o| parent.as_deref().is_none_or(|p| o.parent_code == p))
            .map(org_json)
            .collect();
        return Ok(Success::data(Value::Array(items)));
    }
    let codes: BTreeSet<&str> = visible.iter().map(|o| o.org_code.as_str()).collect();
    let roots: Vec<&Organization> = visible
        .iter()
        .filter(|o| match &parent {
            Some(parent) => o.parent_code == *parent,
            // A root of what this user sees: its parent is not visible to them.
            None => !codes.contains(o.parent_code.as_str()),
        })
        .collect();
    Ok(Success::data(Value::Array(build_tree(&visible, &roots))))
}

async fn find_in_scope(
    state: &AppState,
    user: &Principal,
    id: i64,
) -> Result<(Organization, OrgScope), Failure> {
    let scope = authz::org_scope(user);
    match state.db.find_organization(id).await? {
        Some(org) if authz::in_org_scope(&scope, &org.org_code) => Ok((org, scope)),
        _ => Err(Failure::not_found(format!("组织 {id} 不存在"))),
    }
}

/// `GET /api/organizations/{id}`.
async fn get(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
) -> Result<Success<Value>, AuthAdminError> {
    let (org, _) = find_in_scope(&state, &user, id).await?;
    Ok(Success::data(org_json(&org)))
}

#[derive(Debug, Deserialize)]
struct UpdateBody {
    org_name: Option<String>,
    parent_code: Option<String>,
    org_level: Option<i64>,
    description: Option<String>,
    status: Option<i64>,
}

/// `PUT /api/organizations/{id}`.
async fn update(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
    Json(body): Json<UpdateBody>,
) -> Result<Success<Value>, AuthAdminError> {
    let (org, scope) = find_in_scope(&state, &user, id).await?;
    let mut v = Validator::new();
    let org_name = match body.org_name {
        Some(name) => v.required("org_name", Some(&name), 128),
        None => None,
    };
    let parent_code = v
        .optional("parent_code", body.parent_code.as_deref(), 64)
        .filter(|p| !p.is_empty());
    if let Some(parent_code) = &parent_code {
        if *parent_code != org.parent_code {
            check_parent(&state, &scope, &mut v, parent_code).await?;
            let all = state.db.all_organizations().await?;
            v.check(
                !subtree(&all, &org.org_code).contains(parent_code),
                "parent_code",
                "cycle",
                "上级组织不能是自己或自己的下级",
            );
            v.check(
                authz::may_restructure_own_org(&user, &org.org_code),
                "parent_code",
                "scope",
                "不能移动自己所在的组织",
            );
        }
    }
    if let Some(level) = body.org_level {
        v.range("org_level", level, 1, 32);
    }
    let description = v.optional("description", body.description.as_deref(), 512);
    let status = v.status("status", body.status);
    v.finish()?;
    let update = OrgUpdate {
        org_name,
        parent_code,
        org_level: body.org_level,
        description,
        status,
    };
    state
        .db
        .update_organization(id, &update, state.clock.now_ms())
        .await?;
    let org = state
        .db
        .find_organization(id)
        .await?
        .ok_or_else(|| Failure::not_found(format!("组织 {id} 不存在")))?;
    Ok(Success::with_message("组织更新成功", org_json(&org)))
}

/// `DELETE /api/organizations/{id}`: status 0. Refused while enabled sub-organizations or users
/// remain, and for the caller's own organization.
async fn delete(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
) -> Result<Response, AuthAdminError> {
    let (org, _) = find_in_scope(&state, &user, id).await?;
    if !authz::may_restructure_own_org(&user, &org.org_code) {
        return Err(Failure::forbidden("不能删除自己所在的组织").into());
    }
    let all = state.db.all_organizations().await?;
    if all.iter().any(|o| o.parent_code == org.org_code && o.status == 1) {
        return Err(Failure::conflict("请先删除下级组织").into());
    }
    if state
        .db
        .count_active_users_in_orgs(std::slice::from_ref(&org.org_code))
        .await?
        > 0
    {
        return Err(Failure::conflict("组织下仍有启用的用户").into());
    }
    let update = OrgUpdate {
        status: Some(0),
        ..OrgUpdate::default()
    };
    state
        .db
        .update_organization(id, &update, state.clock.now_ms())
        .await?;
    Ok(Success::message("组织删除成功").into_response())
}
