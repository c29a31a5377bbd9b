//! Who may do what, beyond a route's permission. The route table (`http/`) checks the permission
//! and role level an endpoint needs before its handler runs; the rules here decide the rest, for
//! every handler alike:
//!
//! - **regions and environments** ([`scope`]): which log records a user reads;
//! - **organizations** ([`org_scope`]): which organizations, users and CRM rows a user sees and
//!   manages (their organization and its descendants; everything for a super admin);
//! - **rank** ([`check_rank`], [`grant_problems`], [`regions_grantable`]): a manager acts only on
//!   users strictly below them and within their regions, and grants no role, permission or region
//!   they do not hold themselves.
//!
//! A refusal is a [`Denied`] with the reason the client is told.

pub mod scope;

use std::collections::BTreeSet;

use crate::auth::Principal;
use crate::db::UserRecord;

pub use scope::Scope;

/// The organization codes a user may see: `None` for everything (a super admin), else their
/// organization and its descendants (empty when they have none).
pub type OrgScope = Option<BTreeSet<String>>;

/// A refused action and the reason given to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied(pub &'static str);

/// The organizations `principal` may see, computed when the principal was loaded and reloaded
/// whenever an organization changes (see `auth`).
pub fn org_scope(principal: &Principal) -> OrgScope {
    principal.orgs.clone()
}

/// Whether an organization lies within a scope.
pub fn in_org_scope(scope: &OrgScope, org_code: &str) -> bool {
    scope.as_ref().is_none_or(|codes| codes.contains(org_code))
}

/// Whether `actor` may see `user`: themselves, or a user of an organization in their scope.
pub fn may_see_user(actor: &Principal, scope: &OrgScope, user: &UserRecord) -> bool {
    user.id == actor.user_id || in_org_scope(scope, &user.org_code)
}

/// Whether `actor` may change their own organization's place or existence (only a super admin
/// may: anyone else would cut the branch they stand on).
pub fn may_restructure_own_org(actor: &Principal, org_code: &str) -> bool {
    actor.is_super_admin() || org_code != actor.org_code
}

/// Refuses managing another user unless a super admin acts, or the target's role is strictly less
/// privileged than the actor's and the target lies within the actor's regions (a region-limited
/// manager never touches a user who sees more than they do). Peers cannot take each other over.
pub fn check_rank(actor: &Principal, target: &UserRecord) -> Result<(), Denied> {
    if actor.is_super_admin() || target.id == actor.user_id {
        return Ok(());
    }
    if target.role_level <= actor.role_level {
        return Err(Denied("只能管理角色级别低于自己的用户"));
    }
    if !actor.regions.is_empty() {
        let allowed = normalised(&actor.regions);
        let within = !target.regions.is_empty()
            && target
                .regions
                .iter()
                .all(|r| allowed.contains(&scope::normalise_region(r)));
        if !within {
            return Err(Denied("只能管理自己区域内的用户"));
        }
    }
    Ok(())
}

/// Why `actor` may not assign a role of `role_level` granting `role_permissions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantProblem {
    /// The role is not strictly below the actor's.
    Rank,
    /// The role grants permissions the actor lacks.
    Permissions(Vec<String>),
}

/// Every reason `actor` may not assign the role: a super admin assigns any; anyone else only a
/// role strictly below their own that grants nothing they lack.
pub fn grant_problems(actor: &Principal, role_level: i64, role_permissions: &[String]) -> Vec<GrantProblem> {
    if actor.is_super_admin() {
        return Vec::new();
    }
    let mut problems = Vec::new();
    if role_level <= actor.role_level {
        problems.push(GrantProblem::Rank);
    }
    let lacking: Vec<String> = role_permissions
        .iter()
        .filter(|code| !actor.permissions.contains(*code))
        .cloned()
        .collect();
    if !lacking.is_empty() {
        problems.push(GrantProblem::Permissions(lacking));
    }
    problems
}

/// Whether `actor` may grant `regions`: a region-limited actor grants only a non-empty subset of
/// theirs.
pub fn regions_grantable(actor: &Principal, regions: &[String]) -> bool {
    if actor.regions.is_empty() || actor.is_super_admin() {
        return true;
    }
    let allowed = normalised(&actor.regions);
    !regions.is_empty() && regions.iter().all(|r| allowed.contains(r))
}

fn normalised(regions: &[String]) -> BTreeSet<String> {
    regions.iter().map(|r| scope::normalise_region(r)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(level: i64, regions: &[&str]) -> Principal {
        Principal {
            user_id: 1,
            role_level: level,
            regions: regions.iter().map(|r| r.to_string()).collect(),
            permissions: ["log:read".to_string()].into(),
            ..Principal::default()
        }
    }

    fn target(level: i64, regions: &[&str]) -> UserRecord {
        UserRecord {
            id: 2,
            role_level: level,
            regions: regions.iter().map(|r| r.to_string()).collect(),
            ..UserRecord::default()
        }
    }

    #[test]
    fn managers_act_only_below_their_rank_and_within_their_regions() {
        let ops = principal(2, &["CN"]);
        assert_eq!(check_rank(&ops, &target(3, &["cn"])), Ok(()));
        assert!(check_rank(&ops, &target(2, &["CN"])).is_err(), "a peer");
        assert!(check_rank(&ops, &target(3, &["CN", "US"])).is_err(), "sees more");
        assert!(check_rank(&ops, &target(3, &[])).is_err(), "sees every region");
        assert_eq!(
            check_rank(&principal(1, &[]), &target(1, &[])),
            Ok(()),
            "super admin"
        );
    }

    #[test]
    fn nobody_grants_what_they_do_not_hold() {
        let ops = principal(2, &["CN"]);
        assert_eq!(grant_problems(&ops, 3, &["log:read".into()]), []);
        assert_eq!(
            grant_problems(&ops, 2, &["log:read".into(), "user:write".into()]),
            [
                GrantProblem::Rank,
                GrantProblem::Permissions(vec!["user:write".into()])
            ]
        );
        assert!(grant_problems(&principal(1, &[]), 1, &["user:write".into()]).is_empty());
        assert!(regions_grantable(&ops, &["CN".into()]));
        assert!(!regions_grantable(&ops, &["US".into()]));
        assert!(!regions_grantable(&ops, &[]), "no regions means every region");
    }
}
