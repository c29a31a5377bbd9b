//! Users, with their role and organization joined in.

use std::collections::BTreeMap;

use super::{Database, DbError, Sql, like_pattern, parse_list, render_list};

/// A user as read back, with the role and organization names.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserRecord {
    /// Id.
    pub id: i64,
    /// Login name.
    pub user_code: String,
    /// Display name.
    pub username: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// Organization code ("" for none).
    pub org_code: String,
    /// Organization name ("" when none or unknown).
    pub org_name: String,
    /// Role id.
    pub role_id: i64,
    /// Role code.
    pub role_code: String,
    /// Role display name.
    pub role_name: String,
    /// Role level (1 is the super admin).
    pub role_level: i64,
    /// Role status (0: disabled, grants nothing).
    pub role_status: i64,
    /// Environments the role may read ([] = all).
    pub environments: Vec<String>,
    /// Phone.
    pub phone: String,
    /// Address.
    pub address: String,
    /// Email.
    pub email: String,
    /// Avatar URL.
    pub avatar: String,
    /// Regions the user may read ([] = all).
    pub regions: Vec<String>,
    /// 1 enabled, 0 disabled or deleted.
    pub status: i64,
    /// Bumped to revoke every token.
    pub token_version: i64,
    /// Last successful login (epoch ms).
    pub last_login_at: Option<i64>,
    /// Created (epoch ms).
    pub created_at: i64,
    /// Updated (epoch ms).
    pub updated_at: i64,
}

#[derive(sqlx::FromRow)]
struct UserRow {
    id: i64,
    user_code: String,
    username: String,
    password_hash: String,
    org_code: String,
    org_name: String,
    role_id: i64,
    role_code: String,
    role_name: String,
    role_level: i64,
    role_status: i64,
    environments: String,
    phone: String,
    address: String,
    email: String,
    avatar: String,
    regions: String,
    status: i64,
    token_version: i64,
    last_login_at: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<UserRow> for UserRecord {
    type Error = DbError;

    fn try_from(row: UserRow) -> Result<UserRecord, DbError> {
        Ok(UserRecord {
            regions: parse_list(&row.regions, "users.regions", row.id)?,
            environments: parse_list(&row.environments, "roles.environments", row.role_id)?,
            id: row.id,
            user_code: row.user_code,
            username: row.username,
            password_hash: row.password_hash,
            org_code: row.org_code,
            org_name: row.org_name,
            role_id: row.role_id,
            role_code: row.role_code,
            role_name: row.role_name,
            role_level: row.role_level,
            role_status: row.role_status,
            phone: row.phone,
            address: row.address,
            email: row.email,
            avatar: row.avatar,
            status: row.status,
            token_version: row.token_version,
            last_login_at: row.last_login_at,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

const SELECT_USER: &str = "SELECT u.id, u.user_code, u.username, u.password_hash, u.org_code, \
     COALESCE(o.org_name, '') AS org_name, u.role_id, r.role_code, r.role_name, r.role_level, \
     r.status AS role_status, r.environments, u.phone, u.address, u.email, u.avatar, u.regions, u.status, \
     u.token_version, u.last_login_at, u.created_at, u.updated_at \
     FROM users u JOIN roles r ON r.id = u.role_id LEFT JOIN organizations o ON o.org_code = u.org_code";

/// A user to create.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Login name.
    pub user_code: String,
    /// Display name.
    pub username: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// Organization code.
    pub org_code: String,
    /// Role id.
    pub role_id: i64,
    /// Phone.
    pub phone: String,
    /// Address.
    pub address: String,
    /// Email.
    pub email: String,
    /// Avatar URL.
    pub avatar: String,
    /// Regions ([] = all).
    pub regions: Vec<String>,
    /// Status.
    pub status: i64,
}

/// Fields to change; `None` keeps the value.
#[derive(Debug, Clone, Default)]
pub struct UserUpdate {
    /// Display name.
    pub username: Option<String>,
    /// New password hash.
    pub password_hash: Option<String>,
    /// Organization code.
    pub org_code: Option<String>,
    /// Role id.
    pub role_id: Option<i64>,
    /// Phone.
    pub phone: Option<String>,
    /// Address.
    pub address: Option<String>,
    /// Email.
    pub email: Option<String>,
    /// Avatar.
    pub avatar: Option<String>,
    /// Regions.
    pub regions: Option<Vec<String>>,
    /// Status.
    pub status: Option<i64>,
    /// Revoke every token of the user.
    pub revoke_tokens: bool,
}

/// List filters (the admin API's query parameters) and the caller's organization scope.
#[derive(Debug, Clone, Default)]
pub struct UserFilter {
    /// Page, from 1.
    pub page: i64,
    /// Page size.
    pub page_size: i64,
    /// Status.
    pub status: Option<i64>,
    /// Organization code.
    pub org_code: Option<String>,
    /// Role level.
    pub role_level: Option<i64>,
    /// Matches user code, name, phone or email, case-insensitively.
    pub keyword: Option<String>,
    /// The organizations the caller may see (`None`: all).
    pub scope_orgs: Option<Vec<String>>,
    /// A user the caller may always see (themselves).
    pub scope_self: Option<i64>,
}

/// Counts for the platform API's user stats.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct UserStats {
    /// All users in scope.
    pub total: i64,
    /// Enabled.
    pub active: i64,
    /// Disabled or deleted.
    pub inactive: i64,
    /// Per role code.
    pub by_role: BTreeMap<String, i64>,
    /// Per organization code ("" for none).
    pub by_org: BTreeMap<String, i64>,
}

fn push_scope(sql: &mut Sql, scope_orgs: &Option<Vec<String>>, scope_self: Option<i64>) {
    if let Some(orgs) = scope_orgs {
        sql.push(" AND (u.org_code IN ").bind_list(orgs.iter().cloned());
        if let Some(id) = scope_self {
            sql.push(" OR u.id = ").bind(id);
        }
        sql.push(")");
    }
}

impl Database {
    /// A user by id.
    pub async fn find_user(&self, id: i64) -> Result<Option<UserRecord>, DbError> {
        let mut sql = self.sql(SELECT_USER);
        sql.push(" WHERE u.id = ").bind(id);
        sql.query_as::<UserRow>()
            .fetch_optional(self.db.pool())
            .await?
            .map(UserRecord::try_from)
            .transpose()
    }

    /// A user by login name.
    pub async fn find_user_by_code(&self, user_code: &str) -> Result<Option<UserRecord>, DbError> {
        let mut sql = self.sql(SELECT_USER);
        sql.push(" WHERE u.user_code = ").bind(user_code.to_string());
        sql.query_as::<UserRow>()
            .fetch_optional(self.db.pool())
            .await?
            .map(UserRecord::try_from)
            .transpose()
    }

    /// Number of users, any status.
    pub async fn count_users(&self) -> Result<i64, DbError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(self.db.pool())
            .await?)
    }

    /// Creates a user; a taken `user_code` is [`DbError::Conflict`].
    pub async fn insert_user(&self, user: &NewUser, now_ms: i64) -> Result<i64, DbError> {
        let mut sql = self.sql(
            "INSERT INTO users (user_code, username, password_hash, org_code, role_id, phone, address, email, avatar, \
             regions, status, token_version, created_at, updated_at) VALUES (",
        );
        sql.bind(user.user_code.clone()).push(", ");
        sql.bind(user.username.clone()).push(", ");
        sql.bind(user.password_hash.clone()).push(", ");
        sql.bind(user.org_code.clone()).push(", ");
        sql.bind(user.role_id).push(", ");
        sql.bind(user.phone.clone()).push(", ");
        sql.bind(user.address.clone()).push(", ");
        sql.bind(user.email.clone()).push(", ");
        sql.bind(user.avatar.clone()).push(", ");
        sql.bind(render_list(&user.regions)).push(", ");
        sql.bind(user.status).push(", 0, ");
        sql.bind(now_ms).push(", ");
        sql.bind(now_ms).push(")");
        sql.insert_returning_id(self.db.pool())
            .await
            .map_err(|e| DbError::conflict_on(e, "user_code", &user.user_code))
    }

    /// Applies an update; returns whether the user exists.
    pub async fn update_user(&self, id: i64, update: &UserUpdate, now_ms: i64) -> Result<bool, DbError> {
        let mut sql = self.sql("UPDATE users SET updated_at = ");
        sql.bind(now_ms);
        let mut set = |column: &str, value: Option<String>| {
            if let Some(value) = value {
                sql.push(", ").push(column).push(" = ").bind(value);
            }
        };
        set("username", update.username.clone());
        set("password_hash", update.password_hash.clone());
        set("org_code", update.org_code.clone());
        set("phone", update.phone.clone());
        set("address", update.address.clone());
        set("email", update.email.clone());
        set("avatar", update.avatar.clone());
        set("regions", update.regions.as_deref().map(render_list));
        if let Some(role_id) = update.role_id {
            sql.push(", role_id = ").bind(role_id);
        }
        if let Some(status) = update.status {
            sql.push(", status = ").bind(status);
        }
        if update.revoke_tokens {
            sql.push(", token_version = token_version + 1");
        }
        sql.push(" WHERE id = ").bind(id);
        let found = sql.query().execute(self.db.pool()).await?.rows_affected() > 0;
        self.access_changed();
        Ok(found)
    }

    /// Revokes every token of a user.
    pub async fn revoke_user_tokens(&self, id: i64, now_ms: i64) -> Result<(), DbError> {
        self.update_user(
            id,
            &UserUpdate {
                revoke_tokens: true,
                ..UserUpdate::default()
            },
            now_ms,
        )
        .await?;
        Ok(())
    }

    /// Records a revoked token family until `expires_at_ms`, dropping rows whose time has passed.
    pub async fn revoke_token_family(
        &self,
        family: &str,
        user_id: i64,
        expires_at_ms: i64,
        now_ms: i64,
    ) -> Result<(), DbError> {
        let mut sql = self.sql("DELETE FROM revoked_token_families WHERE expires_at < ");
        sql.bind(now_ms);
        sql.query().execute(self.db.pool()).await?;
        let backend = self.db.backend();
        let mut sql = self.sql(&format!(
            "{}revoked_token_families (family, user_id, expires_at, created_at) VALUES (",
            backend.insert_ignore()
        ));
        sql.bind(family.to_string())
            .push(", ")
            .bind(user_id)
            .push(", ")
            .bind(expires_at_ms)
            .push(", ")
            .bind(now_ms)
            .push(")")
            .push(&backend.on_conflict_ignore("family"));
        sql.query().execute(self.db.pool()).await?;
        Ok(())
    }

    /// Whether a token family was revoked (and its revocation has not run out).
    pub async fn is_token_family_revoked(&self, family: &str, now_ms: i64) -> Result<bool, DbError> {
        let mut sql = self.sql("SELECT COUNT(*) FROM revoked_token_families WHERE family = ");
        sql.bind(family.to_string())
            .push(" AND expires_at >= ")
            .bind(now_ms);
        Ok(sql.query_scalar::<i64>().fetch_one(self.db.pool()).await? > 0)
    }

    /// Records a successful login.
    pub async fn set_last_login(&self, id: i64, now_ms: i64) -> Result<(), DbError> {
        let mut sql = self.sql("UPDATE users SET last_login_at = ");
        sql.bind(now_ms).push(" WHERE id = ").bind(id);
        sql.query().execute(self.db.pool()).await?;
        Ok(())
    }

    /// One page of users and the total matching.
    pub async fn list_users(&self, filter: &UserFilter) -> Result<(Vec<UserRecord>, i64), DbError> {
        let build = |select: &str| {
            let mut sql = self.sql(select);
            sql.push(" WHERE 1 = 1");
            if let Some(status) = filter.status {
                sql.push(" AND u.status = ").bind(status);
            }
            if let Some(org_code) = &filter.org_code {
                sql.push(" AND u.org_code = ").bind(org_code.clone());
            }
            if let Some(level) = filter.role_level {
                sql.push(" AND r.role_level = ").bind(level);
            }
            if let Some(keyword) = filter.keyword.as_deref().filter(|k| !k.is_empty()) {
                let pattern = like_pattern(keyword);
                sql.push(" AND (LOWER(u.user_code) LIKE ")
                    .bind(pattern.clone())
                    .push(owl_sql::LIKE_ESCAPE);
                sql.push(" OR LOWER(u.username) LIKE ")
                    .bind(pattern.clone())
                    .push(owl_sql::LIKE_ESCAPE);
                sql.push(" OR LOWER(u.phone) LIKE ")
                    .bind(pattern.clone())
                    .push(owl_sql::LIKE_ESCAPE);
                sql.push(" OR LOWER(u.email) LIKE ")
                    .bind(pattern)
                    .push(owl_sql::LIKE_ESCAPE)
                    .push(")");
            }
            push_scope(&mut sql, &filter.scope_orgs, filter.scope_self);
            sql
        };
        let total: i64 = build("SELECT COUNT(*) FROM users u JOIN roles r ON r.id = u.role_id")
            .query_scalar()
            .fetch_one(self.db.pool())
            .await?;
        let mut sql = build(SELECT_USER);
        sql.push(" ORDER BY u.id LIMIT ").bind(filter.page_size);
        sql.push(" OFFSET ")
            .bind((filter.page - 1).max(0) * filter.page_size);
        let rows = sql.query_as::<UserRow>().fetch_all(self.db.pool()).await?;
        let users = rows
            .into_iter()
            .map(UserRecord::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        Ok((users, total))
    }

    /// Counts users by status, role and organization, within a scope.
    pub async fn user_stats(
        &self,
        scope_orgs: &Option<Vec<String>>,
        scope_self: Option<i64>,
    ) -> Result<UserStats, DbError> {
        let mut sql = self.sql(
            "SELECT r.role_code, u.org_code, u.status, COUNT(*) FROM users u JOIN roles r ON r.id = u.role_id WHERE 1 = 1",
        );
        push_scope(&mut sql, scope_orgs, scope_self);
        sql.push(" GROUP BY r.role_code, u.org_code, u.status");
        let rows: Vec<(String, String, i64, i64)> = sql.query_as().fetch_all(self.db.pool()).await?;
        let mut stats = UserStats::default();
        for (role_code, org_code, status, count) in rows {
            stats.total += count;
            if status == 1 {
                stats.active += count;
            } else {
                stats.inactive += count;
            }
            *stats.by_role.entry(role_code).or_default() += count;
            *stats.by_org.entry(org_code).or_default() += count;
        }
        Ok(stats)
    }

    /// Number of enabled users holding a role.
    pub async fn count_active_users_with_role(&self, role_id: i64) -> Result<i64, DbError> {
        let mut sql = self.sql("SELECT COUNT(*) FROM users WHERE status = 1 AND role_id = ");
        sql.bind(role_id);
        Ok(sql.query_scalar().fetch_one(self.db.pool()).await?)
    }

    /// Number of enabled users in organizations.
    pub async fn count_active_users_in_orgs(&self, org_codes: &[String]) -> Result<i64, DbError> {
        if org_codes.is_empty() {
            return Ok(0);
        }
        let mut sql = self.sql("SELECT COUNT(*) FROM users WHERE status = 1 AND org_code IN ");
        sql.bind_list(org_codes.iter().cloned());
        Ok(sql.query_scalar().fetch_one(self.db.pool()).await?)
    }
}
