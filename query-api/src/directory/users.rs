//! Users: creating, listing, changing and disabling them. Beyond the route's permission:
//! - a user who is not a super admin sees and manages only users of their organization subtree
//!   (others answer 404), and only assigns organizations inside it;
//! - except for a super admin, nobody manages another user unless that user's role is strictly less
//!   privileged (higher level) than their own and, for a region-limited manager, the user's regions
//!   are within theirs; nobody assigns a role of their own level or better, nor one that grants a
//!   permission they do not hold ([`crate::authz`]);
//! - a region-limited manager only grants regions they hold, never "all";
//! - nobody disables, deletes or changes the role of themselves;
//! - disabling, deleting or changing the password of a user revokes all their tokens.

use serde::Deserialize;

use super::Creation;
use crate::auth::{Principal, check_policy, hash_password};
use crate::authz::{self, GrantProblem, OrgScope};
use crate::db::{NewUser, Role, UserFilter, UserRecord, UserStats, UserUpdate};
use crate::envelope::Failure;
use crate::state::AppState;
use crate::validate::{Page, Validator};

/// A user to create, as the admin API (`user_code`, `username`) or the platform API (`username`,
/// `role`) sends it.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub(crate) struct NewUserInput {
    pub user_code: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub org_code: Option<String>,
    pub role_id: Option<i64>,
    /// The platform API's body names the role by code.
    pub role: Option<String>,
    pub phone: Option<String>,
    pub address: Option<String>,
    pub email: Option<String>,
    pub avatar: Option<String>,
    pub regions: Option<Vec<String>>,
    pub status: Option<i64>,
}

/// Changes of a user; absent fields keep their value.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub(crate) struct UserChange {
    pub username: Option<String>,
    pub password: Option<String>,
    pub org_code: Option<String>,
    pub role_id: Option<i64>,
    pub role: Option<String>,
    pub phone: Option<String>,
    pub address: Option<String>,
    pub email: Option<String>,
    pub avatar: Option<String>,
    pub regions: Option<Vec<String>>,
    pub status: Option<i64>,
}

/// A page of the users list with its filters.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub(crate) struct UserQuery {
    pub page: Option<i64>,
    pub page_size: Option<i64>,
    pub status: Option<i64>,
    pub org_code: Option<String>,
    pub role_level: Option<i64>,
    pub keyword: Option<String>,
}

/// Loads a user the caller may manage or see; 404 outside their organization scope.
pub(crate) async fn find_visible(
    state: &AppState,
    actor: &Principal,
    id: i64,
) -> Result<(UserRecord, OrgScope), Failure> {
    let scope = authz::org_scope(actor);
    match state.db.find_user(id).await? {
        Some(user) if authz::may_see_user(actor, &scope, &user) => Ok((user, scope)),
        _ => Err(Failure::not_found(format!("用户 {id} 不存在"))),
    }
}

/// Resolves the role by id or (the platform API's body) by code, and checks the actor may assign it.
async fn resolve_role(
    state: &AppState,
    actor: &Principal,
    v: &mut Validator,
    role_id: Option<i64>,
    role_code: Option<&str>,
) -> Result<Option<Role>, Failure> {
    let role = match (role_id, role_code) {
        (Some(id), _) => state.db.find_role(id).await?,
        (None, Some(code)) => state.db.find_role_by_code(code).await?,
        (None, None) => return Ok(None),
    };
    match role {
        Some(role) if role.status == 1 => {
            let granted: Vec<String> = state
                .db
                .role_permissions(role.id)
                .await?
                .into_iter()
                .map(|p| p.permission_code)
                .collect();
            for problem in authz::grant_problems(actor, role.role_level, &granted) {
                match problem {
                    GrantProblem::Rank => v.error("role_id", "rank", "只能分配级别低于自己的角色"),
                    GrantProblem::Permissions(lacking) => v.error(
                        "role_id",
                        "permissions",
                        format!("不能分配包含自己没有的权限的角色：{}", lacking.join(", ")),
                    ),
                }
            }
            Ok(Some(role))
        }
        _ => {
            v.error("role_id", "exists", "角色不存在或已禁用");
            Ok(None)
        }
    }
}

/// Checks an organization code exists and is in the actor's scope.
async fn check_org(
    state: &AppState,
    scope: &OrgScope,
    v: &mut Validator,
    org_code: &str,
) -> Result<(), Failure> {
    let exists = state
        .db
        .find_organization_by_code(org_code)
        .await?
        .is_some_and(|o| o.status == 1);
    let allowed = authz::in_org_scope(scope, org_code);
    v.check(
        exists && allowed,
        "org_code",
        "exists",
        format!("组织 {org_code} 不存在"),
    );
    Ok(())
}

/// Checks granted regions: a region-limited actor grants only a non-empty subset of theirs.
fn check_regions(actor: &Principal, v: &mut Validator, regions: &[String]) {
    v.check(
        authz::regions_grantable(actor, regions),
        "regions",
        "scope",
        format!("只能授予自己拥有的区域：{}", actor.regions.join(", ")),
    );
}

fn check_email(v: &mut Validator, email: &Option<String>) {
    if let Some(email) = email.as_deref().filter(|e| !e.is_empty()) {
        let ok = email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'));
        v.check(ok, "email", "format", "email 格式错误");
    }
}

/// Creates a user and returns it as stored.
pub(crate) async fn create(
    state: &AppState,
    actor: &Principal,
    body: NewUserInput,
) -> Result<Creation<UserRecord>, Failure> {
    let scope = authz::org_scope(actor);
    let mut v = Validator::new();
    // The platform API's body has only `username`, the login name; the admin API's has `user_code` and a display name.
    let user_code = v.code(
        "user_code",
        body.user_code.as_deref().or(body.username.as_deref()),
        64,
    );
    let username = v.required(
        "username",
        body.username.as_deref().or(body.user_code.as_deref()),
        64,
    );
    let password = body.password.unwrap_or_default();
    if password.is_empty() {
        v.error("password", "required", "password 不能为空");
    } else if let Err(error) = check_policy(
        &password,
        user_code.as_deref().unwrap_or_default(),
        state.config.auth.min_password_length,
    ) {
        v.push(error);
    }
    let role = resolve_role(state, actor, &mut v, body.role_id, body.role.as_deref()).await?;
    if body.role_id.is_none() && body.role.is_none() {
        v.error("role_id", "required", "role_id 不能为空");
    }
    let org_code = v
        .optional("org_code", body.org_code.as_deref(), 64)
        .unwrap_or_default();
    if org_code.is_empty() {
        v.check(scope.is_none(), "org_code", "required", "org_code 不能为空");
    } else {
        check_org(state, &scope, &mut v, &org_code).await?;
    }
    let phone = v.optional("phone", body.phone.as_deref(), 32).unwrap_or_default();
    let address = v
        .optional("address", body.address.as_deref(), 255)
        .unwrap_or_default();
    check_email(&mut v, &body.email);
    let email = v
        .optional("email", body.email.as_deref(), 128)
        .unwrap_or_default();
    let avatar = v
        .optional("avatar", body.avatar.as_deref(), 512)
        .unwrap_or_default();
    let regions = v.regions("regions", body.regions.as_deref()).unwrap_or_default();
    check_regions(actor, &mut v, &regions);
    let status = v.status("status", body.status).unwrap_or(1);
    v.finish()?;

    let user_code = user_code.expect("validated above");
    let username = username.expect("validated above");
    let role_id = role.expect("validated above").id;
    if let Some(existing) = state.db.find_user_by_code(&user_code).await? {
        let same = existing.username == username
            && existing.org_code == org_code
            && existing.role_id == role_id
            && existing.phone == phone
            && existing.address == address
            && existing.email == email
            && existing.avatar == avatar
            && existing.regions == regions
            && existing.status == status
            && state
                .auth
                .password_matches(password.clone(), existing.password_hash.clone())
                .await;
        if same && authz::may_see_user(actor, &scope, &existing) {
            return Ok(Creation::Existing(existing));
        }
    }
    let new = NewUser {
        user_code,
        username,
        password_hash: hash_password(password).await.map_err(Failure::internal)?,
        org_code,
        role_id,
        phone,
        address,
        email,
        avatar,
        regions,
        status,
    };
    let id = state.db.insert_user(&new, state.clock.now_ms()).await?;
    super::inserted(id, "user", state.db.find_user(id).await?).map(Creation::Created)
}

/// A page of the users `actor` sees, the total, and the page as asked.
pub(crate) async fn list(
    state: &AppState,
    actor: &Principal,
    params: UserQuery,
) -> Result<(Vec<UserRecord>, i64, Page), Failure> {
    let mut v = Validator::new();
    let page = Page::new(&mut v, params.page, params.page_size);
    let status = v.status("status", params.status);
    if let Some(level) = params.role_level {
        v.range("role_level", level, 1, 100);
    }
    let keyword = v
        .optional("keyword", params.keyword.as_deref(), 64)
        .filter(|k| !k.is_empty());
    v.finish()?;
    let scope = authz::org_scope(actor);
    let filter = UserFilter {
        page: page.page,
        page_size: page.page_size,
        status,
        org_code: params.org_code.filter(|o| !o.is_empty()),
        role_level: params.role_level,
        keyword,
        scope_orgs: scope.map(|s| s.into_iter().collect()),
        scope_self: Some(actor.user_id),
    };
    let (users, total) = state.db.list_users(&filter).await?;
    Ok((users, total, page))
}

/// Changes a user and returns it as stored.
pub(crate) async fn update(
    state: &AppState,
    actor: &Principal,
    id: i64,
    body: UserChange,
) -> Result<UserRecord, Failure> {
    let (target, scope) = find_visible(state, actor, id).await?;
    authz::check_rank(actor, &target)?;
    let is_self = target.id == actor.user_id;
    let mut v = Validator::new();
    let username = match body.username {
        Some(name) => v.required("username", Some(&name), 64),
        None => None,
    };
    let password_hash = match body.password {
        Some(password) => match check_policy(
            &password,
            &target.user_code,
            state.config.auth.min_password_length,
        ) {
            Ok(()) => Some(hash_password(password).await.map_err(Failure::internal)?),
            Err(error) => {
                v.push(error);
                None
            }
        },
        None => None,
    };
    let role = resolve_role(state, actor, &mut v, body.role_id, body.role.as_deref()).await?;
    if let Some(role) = &role {
        v.check(
            !is_self || role.id == target.role_id,
            "role_id",
            "self",
            "不能修改自己的角色",
        );
    }
    let org_code = v.optional("org_code", body.org_code.as_deref(), 64);
    if let Some(org_code) = org_code.as_deref().filter(|o| *o != target.org_code) {
        if org_code.is_empty() {
            v.check(scope.is_none(), "org_code", "required", "org_code 不能为空");
        } else {
            check_org(state, &scope, &mut v, org_code).await?;
        }
    }
    let phone = v.optional("phone", body.phone.as_deref(), 32);
    let address = v.optional("address", body.address.as_deref(), 255);
    check_email(&mut v, &body.email);
    let email = v.optional("email", body.email.as_deref(), 128);
    let avatar = v.optional("avatar", body.avatar.as_deref(), 512);
    let regions = v.regions("regions", body.regions.as_deref());
    if let Some(regions) = &regions {
        check_regions(actor, &mut v, regions);
    }
    let status = v.status("status", body.status);
    v.check(!(is_self && status == Some(0)), "status", "self", "不能禁用自己");
    v.finish()?;

    let revoke_tokens = password_hash.is_some() || status == Some(0);
    let update = UserUpdate {
        username,
        password_hash,
        org_code,
        role_id: role.map(|r| r.id),
        phone,
        address,
        email,
        avatar,
        regions,
        status,
        revoke_tokens,
    };
    state.db.update_user(id, &update, state.clock.now_ms()).await?;
    state
        .db
        .find_user(id)
        .await?
        .ok_or_else(|| Failure::not_found(format!("用户 {id} 不存在")))
}

/// Sets a status after the rank and self checks; revokes tokens when disabling.
pub(crate) async fn set_status(
    state: &AppState,
    actor: &Principal,
    id: i64,
    status: impl FnOnce(&UserRecord) -> i64,
) -> Result<UserRecord, Failure> {
    let (target, _) = find_visible(state, actor, id).await?;
    authz::check_rank(actor, &target)?;
    if target.id == actor.user_id {
        return Err(Failure::forbidden("不能禁用或删除自己"));
    }
    let status = status(&target);
    let update = UserUpdate {
        status: Some(status),
        revoke_tokens: status == 0,
        ..UserUpdate::default()
    };
    state.db.update_user(id, &update, state.clock.now_ms()).await?;
    Ok(UserRecord { status, ..target })
}

/// The user counts of what `actor` sees.
pub(crate) async fn stats(state: &AppState, actor: &Principal) -> Result<UserStats, Failure> {
    let scope = authz::org_scope(actor).map(|s| s.into_iter().collect());
    Ok(state.db.user_stats(&scope, Some(actor.user_id)).await?)
}
