//! The permission catalogue, the built-in roles and what each route requires.
//!
//! Built-in roles follow the log API's matrix:
//!
//! | role | level | permissions | data |
//! | --- | --- | --- | --- |
//! | `admin` | 1 | every permission, always (not editable) | everything |
//! | `ops` | 2 | `log:read`, `log:cleanup`, `log:alert`, `monitoring:read` | the user's regions |
//! | `developer` | 3 | `log:read` | the `development` environment only; no config |
//!
//! Why `ops` holds `log:read`: the log API's table puts `GET /logs/stats` under `log:read`, and its
//! region section has the CN ops user query logs (restricted to CN). What `ops` lacks next to `admin`
//! is `log:config` and the user, organization, role, audit and analytics administration. `developer`
//! reaches query, trace and stats through `log:read`, always within its environment scope.
//!
//! A permission code is granted through roles. Routes declare an [`Access`]: public, any signed-in
//! user, or a permission (optionally also a maximum role level, the admin API's "level <= 2 manages users and
//! organizations" and "level 1 manages roles"). The route table in `http` applies it before the
//! handler runs, and a test walks every route with every role.

use std::fmt;

/// One permission code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    /// Query, trace, errors, slow requests and stats of logs (log API).
    LogRead,
    /// Read and change the log configuration (log API).
    LogConfig,
    /// Clean up logs (log API).
    LogCleanup,
    /// Alert history, alert configuration, channel tests (log API).
    LogAlert,
    /// Read users.
    UserRead,
    /// Create, update, disable and delete users.
    UserWrite,
    /// Read organizations.
    OrgRead,
    /// Create, update and delete organizations.
    OrgWrite,
    /// Read roles and the permission list.
    RoleRead,
    /// Create, update and delete roles; assign permissions.
    RoleWrite,
    /// Read the audit log (CRM backend).
    AuditRead,
    /// Export the audit log (CRM backend).
    AuditExport,
    /// Read business analytics (the admin API `/api/analytics`, the CRM analytics API analytics).
    AnalyticsRead,
    /// Export business analytics.
    AnalyticsExport,
    /// Read service health, system and database metrics, active alerts (the CRM analytics API monitoring).
    MonitoringRead,
    /// See the scheduled jobs and their runs (the platform API's `/api/jobs`).
    SchedulerView,
    /// Create, change, delete, enable, disable, pause, resume and run jobs.
    SchedulerManage,
}

/// One catalogue entry.
#[derive(Debug, Clone, Copy)]
pub struct PermissionInfo {
    /// The permission.
    pub permission: Permission,
    /// `log:read`.
    pub code: &'static str,
    /// Display name (the admin API's `permission_name`).
    pub name: &'static str,
    /// A representative API path (the admin API's `api_path`).
    pub api_path: &'static str,
    /// Its method, or `*` for several.
    pub api_method: &'static str,
    /// The admin API's `resource_type`.
    pub resource_type: &'static str,
    /// Description.
    pub description: &'static str,
    /// Built-in roles that receive the permission when it first appears in a database.
    pub default_roles: &'static [&'static str],
}

/// The catalogue, in the order ids are assigned on a fresh database (`log:*` first, ids 1 to 4).
pub const CATALOGUE: &[PermissionInfo] = &[
    info(
        Permission::LogRead,
        "log:read",
        "日志查询",
        "/api/v1/logs/query",
        "GET",
        "查询日志、追踪链路、错误、慢请求与统计",
        &["admin", "ops", "developer"],
    ),
    info(
        Permission::LogConfig,
        "log:config",
        "日志配置",
        "/api/v1/logs/config",
        "*",
        "获取与更新日志配置",
        &["admin"],
    ),
    info(
        Permission::LogCleanup,
        "log:cleanup",
        "日志清理",
        "/api/v1/logs/cleanup",
        "POST",
        "手动清理日志",
        &["admin", "ops"],
    ),
    info(
        Permission::LogAlert,
        "log:alert",
        "告警管理",
        "/api/v1/logs/alerts",
        "*",
        "告警历史、告警配置与通道测试",
        &["admin", "ops"],
    ),
    info(
        Permission::UserRead,
        "user:read",
        "查看用户",
        "/api/users",
        "GET",
        "查看用户列表、详情与统计",
        &["admin"],
    ),
    info(
        Permission::UserWrite,
        "user:write",
        "管理用户",
        "/api/users",
        "*",
        "创建、更新、禁用与删除用户",
        &["admin"],
    ),
    info(
        Permission::OrgRead,
        "org:read",
        "查看组织",
        "/api/organizations",
        "GET",
        "查看组织机构",
        &["admin"],
    ),
    info(
        Permission::OrgWrite,
        "org:write",
        "管理组织",
        "/api/organizations",
        "*",
        "创建、更新与删除组织机构",
        &["admin"],
    ),
    info(
        Permission::RoleRead,
        "role:read",
        "查看角色",
        "/api/roles",
        "GET",
        "查看角色与权限列表",
        &["admin"],
    ),
    info(
        Permission::RoleWrite,
        "role:write",
        "管理角色",
        "/api/roles",
        "*",
        "创建、更新、删除角色与分配权限",
        &["admin"],
    ),
    info(
        Permission::AuditRead,
        "audit:read",
        "查看审计日志",
        "/api/foundation/audit-logs",
        "GET",
        "查询审计日志",
        &["admin"],
    ),
    info(
        Permission::AuditExport,
        "audit:export",
        "导出审计日志",
        "/api/foundation/audit-logs/export",
        "POST",
        "导出审计日志",
        &["admin"],
    ),
    info(
        Permission::AnalyticsRead,
        "analytics:read",
        "数据分析",
        "/api/analytics/overview",
        "*",
        "数据概览与查询",
        &["admin"],
    ),
    info(
        Permission::AnalyticsExport,
        "analytics:export",
        "导出数据",
        "/api/analytics/export",
        "*",
        "导出分析数据",
        &["admin"],
    ),
    info(
        Permission::MonitoringRead,
        "monitoring:read",
        "系统监控",
        "/api/analytics-monitoring/monitoring",
        "*",
        "服务健康、系统与数据库指标、活跃预警",
        &["admin", "ops"],
    ),
    info(
        Permission::SchedulerView,
        "scheduler_view",
        "查看定时任务",
        "/api/jobs",
        "GET",
        "查看定时任务与执行记录",
        &["admin", "ops"],
    ),
    info(
        Permission::SchedulerManage,
        "scheduler_manage",
        "管理定时任务",
        "/api/jobs",
        "*",
        "创建、修改、删除、启用、禁用、暂停、恢复与立即执行定时任务",
        &["admin"],
    ),
];

#[allow(clippy::too_many_arguments)]
const fn info(
    permission: Permission,
    code: &'static str,
    name: &'static str,
    api_path: &'static str,
    api_method: &'static str,
    description: &'static str,
    default_roles: &'static [&'static str],
) -> PermissionInfo {
    PermissionInfo {
        permission,
        code,
        name,
        api_path,
        api_method,
        resource_type: "api",
        description,
        default_roles,
    }
}

impl Permission {
    /// Every permission.
    pub fn all() -> impl Iterator<Item = Permission> {
        CATALOGUE.iter().map(|i| i.permission)
    }

    /// Its catalogue entry.
    pub fn info(self) -> &'static PermissionInfo {
        CATALOGUE
            .iter()
            .find(|i| i.permission == self)
            .expect("every permission has a catalogue entry (tested)")
    }

    /// Its code (`log:read`).
    pub fn code(self) -> &'static str {
        self.info().code
    }

    /// The permission of a code.
    pub fn from_code(code: &str) -> Option<Permission> {
        CATALOGUE.iter().find(|i| i.code == code).map(|i| i.permission)
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// The role code of the super admin, which always holds every permission.
pub const ADMIN_ROLE: &str = "admin";
/// The built-in role codes.
pub const BUILTIN_ROLES: &[&str] = &[ADMIN_ROLE, "ops", "developer"];
/// The level of the super admin (admin API).
pub const SUPER_ADMIN_LEVEL: i64 = 1;

/// What a route requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (health, login, refresh).
    Public,
    /// Any signed-in, enabled user (profile, own permissions, logout).
    Authenticated,
    /// A permission and, when set, a role level at most this number.
    Require {
        /// The permission.
        permission: Permission,
        /// The highest role level allowed (1 is the most privileged).
        max_level: Option<i64>,
        /// Whether the action affects every region (cleanup, global alert and log settings,
        /// mutes, blocked IPs), so only a principal without region or environment limits may
        /// take it.
        all_regions: bool,
    },
}

impl Access {
    /// A permission at any level.
    pub const fn perm(permission: Permission) -> Access {
        Access::Require {
            permission,
            max_level: None,
            all_regions: false,
        }
    }

    /// A permission held by a role of level `max_level` or better.
    pub const fn perm_at_level(permission: Permission, max_level: i64) -> Access {
        Access::Require {
            permission,
            max_level: Some(max_level),
            all_regions: false,
        }
    }

    /// The same access for an action that affects every region.
    pub const fn all_regions(self) -> Access {
        match self {
            Access::Require {
                permission,
                max_level,
                ..
            } => Access::Require {
                permission,
                max_level,
                all_regions: true,
            },
            other => other,
        }
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Access::Public => f.write_str("public"),
            Access::Authenticated => f.write_str("authenticated"),
            Access::Require {
                permission,
                max_level,
                all_regions,
            } => {
                write!(f, "{permission}")?;
                if let Some(level) = max_level {
                    write!(f, " at level <= {level}")?;
                }
                if *all_regions {
                    f.write_str(" over all regions")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_is_consistent() {
        let mut codes = std::collections::BTreeSet::new();
        for (i, entry) in CATALOGUE.iter().enumerate() {
            assert!(codes.insert(entry.code), "duplicate code {}", entry.code);
            assert_eq!(Permission::from_code(entry.code), Some(entry.permission));
            assert_eq!(entry.permission.info().code, entry.code);
            assert!(
                entry.default_roles.contains(&ADMIN_ROLE),
                "admin holds everything: {}",
                entry.code
            );
            assert!(entry.default_roles.iter().all(|r| BUILTIN_ROLES.contains(r)));
            assert!(CATALOGUE[..i].iter().all(|e| e.permission != entry.permission));
        }
        // The log API's four codes come first so they get ids 1 to 4 on a fresh database.
        let first: Vec<&str> = CATALOGUE[..4].iter().map(|e| e.code).collect();
        assert_eq!(first, ["log:read", "log:config", "log:cleanup", "log:alert"]);
    }

    #[test]
    fn builtin_roles_follow_the_log_api_matrix() {
        let granted = |role: &str| -> Vec<&str> {
            CATALOGUE
                .iter()
                .filter(|e| e.default_roles.contains(&role))
                .map(|e| e.code)
                .collect()
        };
        assert_eq!(
            granted("ops"),
            [
                "log:read",
                "log:cleanup",
                "log:alert",
                "monitoring:read",
                "scheduler_view"
            ]
        );
        assert!(
            !granted("ops").contains(&"scheduler_manage"),
            "ops sees jobs, admin steers them"
        );
        assert_eq!(granted("developer"), ["log:read"]);
        assert!(!granted("ops").contains(&"log:config"));
    }
}
