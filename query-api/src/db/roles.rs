//! Roles, the permission catalogue and grants.

use serde::Serialize;

use super::{Database, DbError, parse_list, render_list};
use crate::permissions::{ADMIN_ROLE, CATALOGUE};

/// A role.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Role {
    /// Id.
    pub id: i64,
    /// Code.
    pub role_code: String,
    /// Display name.
    pub role_name: String,
    /// Level: 1 super admin, <= 2 manages users and organizations.
    pub role_level: i64,
    /// Description.
    pub description: String,
    /// 1 enabled, 0 disabled or deleted.
    pub status: i64,
    /// Log environments the role may read ([] = all).
    pub environments: Vec<String>,
    /// Whether the role is one of the log API's built-in roles.
    pub builtin: bool,
}

#[derive(sqlx::FromRow)]
struct RoleRow {
    id: i64,
    role_code: String,
    role_name: String,
    role_level: i64,
    description: String,
    status: i64,
    environments: String,
    builtin: i64,
}

impl TryFrom<RoleRow> for Role {
    type Error = DbError;

    fn try_from(row: RoleRow) -> Result<Role, DbError> {
        Ok(Role {
            environments: parse_list(&row.environments, "roles.environments", row.id)?,
            id: row.id,
            role_code: row.role_code,
            role_name: row.role_name,
            role_level: row.role_level,
            description: row.description,
            status: row.status,
            builtin: row.builtin != 0,
        })
    }
}

/// A permission as the admin API lists it.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct PermissionRow {
    /// Id.
    pub id: i64,
    /// Code (`log:read`).
    pub permission_code: String,
    /// Display name.
    pub permission_name: String,
    /// A representative path.
    pub api_path: String,
    /// Its method.
    pub api_method: String,
    /// Resource type.
    pub resource_type: String,
    /// Description.
    pub description: String,
    /// 1 enabled.
    pub status: i64,
}

/// A role to create.
#[derive(Debug, Clone)]
pub struct NewRole {
    /// Code.
    pub role_code: String,
    /// Name.
    pub role_name: String,
    /// Level.
    pub role_level: i64,
    /// Description.
    pub description: String,
    /// Status.
    pub status: i64,
    /// Environments ([] = all).
    pub environments: Vec<String>,
}

/// Fields to change.
#[derive(Debug, Clone, Default)]
pub struct RoleUpdate {
    /// Name.
    pub role_name: Option<String>,
    /// Level.
    pub role_level: Option<i64>,
    /// Description.
    pub description: Option<String>,
    /// Status.
    pub status: Option<i64>,
    /// Environments.
    pub environments: Option<Vec<String>>,
}

const SELECT_ROLE: &str =
    "SELECT id, role_code, role_name, role_level, description, status, environments, builtin FROM roles";
const SELECT_PERMISSION: &str = "SELECT p.id, p.permission_code, p.permission_name, p.api_path, p.api_method, p.resource_type, p.description, p.status FROM permissions p";

impl Database {
    /// Every role, by id.
    pub async fn list_roles(&self) -> Result<Vec<Role>, DbError> {
        let rows: Vec<RoleRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT_ROLE} ORDER BY id")))
            .fetch_all(self.db.pool())
            .await?;
        rows.into_iter().map(Role::try_from).collect()
    }

    /// A role by id.
    pub async fn find_role(&self, id: i64) -> Result<Option<Role>, DbError> {
        let mut sql = self.sql(SELECT_ROLE);
        sql.push(" WHERE id = ").bind(id);
        sql.query_as::<RoleRow>()
            .fetch_optional(self.db.pool())
            .await?
            .map(Role::try_from)
            .transpose()
    }

    /// A role by code.
    pub async fn find_role_by_code(&self, code: &str) -> Result<Option<Role>, DbError> {
        let mut sql = self.sql(SELECT_ROLE);
        sql.push(" WHERE role_code = ").bind(code.to_string());
        sql.query_as::<RoleRow>()
            .fetch_optional(self.db.pool())
            .await?
            .map(Role::try_from)
            .transpose()
    }

    /// Creates a role; a taken code is [`DbError::Conflict`].
    pub async fn insert_role(&self, role: &NewRole, now_ms: i64) -> Result<i64, DbError> {
        let mut sql = self.sql(
            "INSERT INTO roles (role_code, role_name, role_level, description, status, environments, builtin, created_at, updated_at) VALUES (",
        );
        sql.bind(role.role_code.clone()).push(", ");
        sql.bind(role.role_name.clone()).push(", ");
        sql.bind(role.role_level).push(", ");
        sql.bind(role.description.clone()).push(", ");
        sql.bind(role.status).push(", ");
        sql.bind(render_list(&role.environments)).push(", 0, ");
        sql.bind(now_ms).push(", ");
        sql.bind(now_ms).push(")");
        sql.insert_returning_id(self.db.pool())
            .await
            .map_err(|e| DbError::conflict_on(e, "role_code", &role.role_code))
    }

    /// Applies an update; returns whether the role exists.
    pub async fn update_role(&self, id: i64, update: &RoleUpdate, now_ms: i64) -> Result<bool, DbError> {
        let mut sql = self.sql("UPDATE roles SET updated_at = ");
        sql.bind(now_ms);
        if let Some(name) = &update.role_name {
            sql.push(", role_name = ").bind(name.clone());
        }
        if let Some(level) = update.role_level {
            sql.push(", role_level = ").bind(level);
        }
        if let Some(description) = &update.description {
            sql.push(", description = ").bind(description.clone());
        }
        if let Some(status) = update.status {
            sql.push(", status = ").bind(status);
        }
        if let Some(environments) = &update.environments {
            sql.push(", environments = ").bind(render_list(environments));
        }
        sql.push(" WHERE id = ").bind(id);
        let found = sql.query().execute(self.db.pool()).await?.rows_affected() > 0;
        self.access_changed();
        Ok(found)
    }

    /// The permission catalogue as stored.
    pub async fn list_permissions(&self) -> Result<Vec<PermissionRow>, DbError> {
        Ok(
            sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT_PERMISSION} ORDER BY p.id")))
                .fetch_all(self.db.pool())
                .await?,
        )
    }

    /// The enabled permissions granted to a role.
    pub async fn role_permissions(&self, role_id: i64) -> Result<Vec<PermissionRow>, DbError> {
        let mut sql = self.sql(SELECT_PERMISSION);
        sql.push(" JOIN role_permissions rp ON rp.permission_id = p.id WHERE p.status = 1 AND rp.role_id = ")
            .bind(role_id)
            .push(" ORDER BY p.id");
        Ok(sql.query_as().fetch_all(self.db.pool()).await?)
    }

    /// Replaces the grants of a role, in one transaction.
    pub async fn set_role_permissions(&self, role_id: i64, permission_ids: &[i64]) -> Result<(), DbError> {
        let mut tx = self.db.pool().begin().await?;
        let mut delete = self.sql("DELETE FROM role_permissions WHERE role_id = ");
        delete.bind(role_id);
        delete.query().execute(&mut *tx).await?;
        for permission_id in permission_ids {
            let mut insert = self.sql("INSERT INTO role_permissions (role_id, permission_id) VALUES (");
            insert.bind(role_id).push(", ").bind(*permission_id).push(")");
            insert.query().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        self.access_changed();
        Ok(())
    }

    /// Inserts every catalogue permission the table lacks, granting it to its default built-in
    /// roles, and makes sure `admin` holds every permission. Existing grants are left alone, so an
    /// operator's changes to `ops` or `developer` survive restarts.
    pub async fn sync_permission_catalogue(&self) -> Result<usize, DbError> {
        let existing: Vec<String> = sqlx::query_scalar("SELECT permission_code FROM permissions")
            .fetch_all(self.db.pool())
            .await?;
        let mut added = 0;
        for entry in CATALOGUE.iter().filter(|e| !existing.iter().any(|c| c == e.code)) {
            let mut tx = self.db.pool().begin().await?;
            let mut insert = self.sql(
                "INSERT INTO permissions (permission_code, permission_name, api_path, api_method, resource_type, description, status) VALUES (",
            );
            insert.bind(entry.code.to_string()).push(", ");
            insert.bind(entry.name.to_string()).push(", ");
            insert.bind(entry.api_path.to_string()).push(", ");
            insert.bind(entry.api_method.to_string()).push(", ");
            insert.bind(entry.resource_type.to_string()).push(", ");
            insert.bind(entry.description.to_string()).push(", 1)");
            let permission_id = insert.insert_returning_id(&mut *tx).await?;
            let mut grant = self.sql("INSERT INTO role_permissions (role_id, permission_id) SELECT id, ");
            grant
                .bind(permission_id)
                .push(" FROM roles WHERE builtin = 1 AND role_code IN ");
            grant.bind_list(entry.default_roles.iter().map(|r| r.to_string()));
            grant.query().execute(&mut *tx).await?;
            tx.commit().await?;
            added += 1;
        }
        let mut admin = self.sql(
            "INSERT INTO role_permissions (role_id, permission_id) SELECT r.id, p.id FROM roles r, permissions p \
             WHERE r.role_code = ",
        );
        admin.bind(ADMIN_ROLE.to_string()).push(
            " AND NOT EXISTS (SELECT 1 FROM role_permissions rp WHERE rp.role_id = r.id AND rp.permission_id = p.id)",
        );
        admin.query().execute(self.db.pool()).await?;
        self.access_changed();
        Ok(added)
    }
}
