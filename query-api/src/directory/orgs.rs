//! Organizations: a tree through `parent_code`. A user who is not a super admin sees and manages
//! only their own organization and its descendants; anything else answers 404, as if it did not
//! exist. Nobody but a super admin moves or deletes their own organization; an organization with
//! enabled sub-organizations or users is not deleted.

use serde::Deserialize;

use super::Creation;
use crate::auth::Principal;
use crate::authz::{self, OrgScope};
use crate::db::{NewOrganization, OrgUpdate, Organization, ROOT_PARENT, subtree};
use crate::envelope::Failure;
use crate::state::AppState;
use crate::validate::Validator;

/// An organization to create.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub(crate) struct NewOrgInput {
    pub org_code: Option<String>,
    pub org_name: Option<String>,
    pub parent_code: Option<String>,
    pub org_level: Option<i64>,
    pub description: Option<String>,
    pub status: Option<i64>,
}

/// Changes of an organization; absent fields keep their value.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub(crate) struct OrgChange {
    pub org_name: Option<String>,
    pub parent_code: Option<String>,
    pub org_level: Option<i64>,
    pub description: Option<String>,
    pub status: Option<i64>,
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

/// Creates an organization as `user` and returns it as stored.
pub(crate) async fn create(
    state: &AppState,
    user: &Principal,
    body: NewOrgInput,
) -> Result<Creation<Organization>, Failure> {
    let scope = authz::org_scope(user);
    let mut v = Validator::new();
    let org_code = v.code("org_code", body.org_code.as_deref(), 64);
    let org_name = v.required("org_name", body.org_name.as_deref(), 128);
    let parent_code = v
        .optional("parent_code", body.parent_code.as_deref(), 64)
        .filter(|p| !p.is_empty());
    let parent_code = parent_code.unwrap_or_else(|| ROOT_PARENT.to_string());
    let parent = check_parent(state, &scope, &mut v, &parent_code).await?;
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
    if let Some(existing) = state.db.find_organization_by_code(&new.org_code).await?
        && existing.org_name == new.org_name
        && existing.parent_code == new.parent_code
        && existing.org_level == new.org_level
        && existing.description == new.description
        && existing.status == new.status
        && authz::in_org_scope(&scope, &existing.org_code)
    {
        return Ok(Creation::Existing(existing));
    }
    let id = state.db.insert_organization(&new, state.clock.now_ms()).await?;
    super::inserted(id, "organization", state.db.find_organization(id).await?).map(Creation::Created)
}

/// The organizations `user` sees, of one status if given.
pub(crate) async fn visible(
    state: &AppState,
    user: &Principal,
    status: Option<i64>,
) -> Result<Vec<Organization>, Failure> {
    let scope = authz::org_scope(user);
    Ok(state
        .db
        .all_organizations()
        .await?
        .into_iter()
        .filter(|o| authz::in_org_scope(&scope, &o.org_code) && status.is_none_or(|s| o.status == s))
        .collect())
}

/// An organization `user` sees; 404 otherwise.
pub(crate) async fn find_in_scope(
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

/// Changes an organization as `user` and returns it as stored.
pub(crate) async fn update(
    state: &AppState,
    user: &Principal,
    id: i64,
    body: OrgChange,
) -> Result<Organization, Failure> {
    let (org, scope) = find_in_scope(state, user, id).await?;
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
            check_parent(state, &scope, &mut v, parent_code).await?;
            let all = state.db.all_organizations().await?;
            v.check(
                !subtree(&all, &org.org_code).contains(parent_code),
                "parent_code",
                "cycle",
                "上级组织不能是自己或自己的下级",
            );
            v.check(
                authz::may_restructure_own_org(user, &org.org_code),
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
    state
        .db
        .find_organization(id)
        .await?
        .ok_or_else(|| Failure::not_found(format!("组织 {id} 不存在")))
}

/// `DELETE /api/organizations/{id}`: status 0. Refused while enabled sub-organizations or users
/// remain, and for the caller's own organization.
pub(crate) async fn delete(state: &AppState, user: &Principal, id: i64) -> Result<(), Failure> {
    let (org, _) = find_in_scope(state, user, id).await?;
    if !authz::may_restructure_own_org(user, &org.org_code) {
        return Err(Failure::forbidden("不能删除自己所在的组织"));
    }
    let all = state.db.all_organizations().await?;
    if all.iter().any(|o| o.parent_code == org.org_code && o.status == 1) {
        return Err(Failure::conflict("请先删除下级组织"));
    }
    if state
        .db
        .count_active_users_in_orgs(std::slice::from_ref(&org.org_code))
        .await?
        > 0
    {
        return Err(Failure::conflict("组织下仍有启用的用户"));
    }
    let update = OrgUpdate {
        status: Some(0),
        ..OrgUpdate::default()
    };
    state
        .db
        .update_organization(id, &update, state.clock.now_ms())
        .await?;
    Ok(())
}
