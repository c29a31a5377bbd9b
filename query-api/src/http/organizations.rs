//! `/api/organizations` (admin API): create, list as a tree or a list, get, update, soft delete.
//!
//! The rules of organizations are the directory's ([`crate::directory::orgs`]).

use std::collections::BTreeSet;

use axum::Router;
use axum::extract::State;
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Routes;
use super::extract::{AuthUser, Json, Path, Query};
use crate::db::Organization;
use crate::directory::{Creation, orgs};
use crate::envelope::{AuthAdminError, Family, Success};
use crate::permissions::{Access, Permission};
use crate::state::AppState;
use crate::validate::Validator;

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

/// `POST /api/organizations`.
async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    Json(body): Json<orgs::NewOrgInput>,
) -> Result<Response, AuthAdminError> {
    Ok(match orgs::create(&state, &user, body).await? {
        Creation::Created(org) => super::created_success(org.id, "组织创建成功", org_json(&org)),
        Creation::Existing(org) => {
            Success::with_message("组织已存在，与请求一致", org_json(&org)).into_response()
        }
    })
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
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
    let visible = orgs::visible(&state, &user, status).await?;
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

/// `GET /api/organizations/{id}`.
async fn get(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
) -> Result<Success<Value>, AuthAdminError> {
    let (org, _) = orgs::find_in_scope(&state, &user, id).await?;
    Ok(Success::data(org_json(&org)))
}

/// `PUT /api/organizations/{id}`.
async fn update(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
    Json(body): Json<orgs::OrgChange>,
) -> Result<Success<Value>, AuthAdminError> {
    let org = orgs::update(&state, &user, id, body).await?;
    Ok(Success::with_message("组织更新成功", org_json(&org)))
}

/// `DELETE /api/organizations/{id}`: status 0. Refused while enabled sub-organizations or users
/// remain, and for the caller's own organization.
async fn delete(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
) -> Result<Response, AuthAdminError> {
    orgs::delete(&state, &user, id).await?;
    Ok(Success::message("组织删除成功").into_response())
}
