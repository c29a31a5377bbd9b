//! The audit log (CRM backend): one row per audited request, append-only.

use super::{Database, DbError, Sql};

/// An audit row to append.
#[derive(Debug, Clone, Default)]
pub struct NewAuditEntry {
    /// The acting user, when known.
    pub user_id: Option<i64>,
    /// Their login name (for a failed login: the name that was tried).
    pub user_code: Option<String>,
    /// `login`, `login_failed`, `create`, `update`, `delete`, `export`, ...
    pub action: String,
    /// `user`, `organization`, `role`, `auth`, `audit_log`, ...
    pub resource_type: String,
    /// The resource id, when the request names one.
    pub resource_id: Option<String>,
    /// HTTP method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// Request parameters as JSON, secrets already replaced.
    pub params: Option<String>,
    /// Client IP.
    pub ip_address: String,
    /// User agent.
    pub user_agent: String,
    /// Response status.
    pub status_code: i64,
    /// Handling time in milliseconds.
    pub duration_ms: i64,
    /// The request id answered in `X-Request-Id`.
    pub request_id: Option<String>,
    /// When (epoch ms).
    pub created_at: i64,
}

/// A stored audit row.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct AuditEntry {
    /// Id.
    pub id: i64,
    /// Acting user.
    pub user_id: Option<i64>,
    /// Their login name.
    pub user_code: Option<String>,
    /// Action.
    pub action: String,
    /// Resource type.
    pub resource_type: String,
    /// Resource id.
    pub resource_id: Option<String>,
    /// Method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Parameters (JSON, filtered).
    pub params: Option<String>,
    /// Client IP.
    pub ip_address: String,
    /// User agent.
    pub user_agent: String,
    /// Response status.
    pub status_code: i64,
    /// Duration in ms.
    pub duration_ms: i64,
    /// Request id.
    pub request_id: Option<String>,
    /// When (epoch ms).
    pub created_at: i64,
}

/// Audit query filters.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Acting user id.
    pub user_id: Option<i64>,
    /// Acting user's login name.
    pub user_code: Option<String>,
    /// Action.
    pub action: Option<String>,
    /// Resource type.
    pub resource_type: Option<String>,
    /// Resource id.
    pub resource_id: Option<String>,
    /// From (epoch ms, inclusive).
    pub start_ms: Option<i64>,
    /// To (epoch ms, inclusive).
    pub end_ms: Option<i64>,
    /// Lowest status code.
    pub status_min: Option<i64>,
    /// Highest status code.
    pub status_max: Option<i64>,
}

const SELECT_AUDIT: &str = "SELECT id, user_id, user_code, action, resource_type, resource_id, method, path, params, \
     ip_address, user_agent, status_code, duration_ms, request_id, created_at FROM audit_logs";

impl AuditFilter {
    fn push(&self, sql: &mut Sql) {
        sql.push(" WHERE 1 = 1");
        if let Some(user_id) = self.user_id {
            sql.push(" AND user_id = ").bind(user_id);
        }
        if let Some(user_code) = &self.user_code {
            sql.push(" AND user_code = ").bind(user_code.clone());
        }
        if let Some(action) = &self.action {
            sql.push(" AND action = ").bind(action.clone());
        }
        if let Some(resource_type) = &self.resource_type {
            sql.push(" AND resource_type = ").bind(resource_type.clone());
        }
        if let Some(resource_id) = &self.resource_id {
            sql.push(" AND resource_id = ").bind(resource_id.clone());
        }
        if let Some(start) = self.start_ms {
            sql.push(" AND created_at >= ").bind(start);
        }
        if let Some(end) = self.end_ms {
            sql.push(" AND created_at <= ").bind(end);
        }
        if let Some(min) = self.status_min {
            sql.push(" AND status_code >= ").bind(min);
        }
        if let Some(max) = self.status_max {
            sql.push(" AND status_code <= ").bind(max);
        }
    }
}

impl Database {
    /// Appends an audit row.
    pub async fn insert_audit(&self, entry: &NewAuditEntry) -> Result<i64, DbError> {
        let mut sql = self.sql(
            "INSERT INTO audit_logs (user_id, user_code, action, resource_type, resource_id, method, path, params, \
             ip_address, user_agent, status_code, duration_ms, request_id, created_at) VALUES (",
        );
        sql.bind(entry.user_id).push(", ");
        sql.bind(entry.user_code.clone()).push(", ");
        sql.bind(entry.action.clone()).push(", ");
        sql.bind(entry.resource_type.clone()).push(", ");
        sql.bind(entry.resource_id.clone()).push(", ");
        sql.bind(entry.method.clone()).push(", ");
        sql.bind(entry.path.clone()).push(", ");
        sql.bind(entry.params.clone()).push(", ");
        sql.bind(entry.ip_address.clone()).push(", ");
        sql.bind(entry.user_agent.clone()).push(", ");
        sql.bind(entry.status_code).push(", ");
        sql.bind(entry.duration_ms).push(", ");
        sql.bind(entry.request_id.clone()).push(", ");
        sql.bind(entry.created_at).push(")");
        Ok(sql.insert_returning_id(self.db.pool()).await?)
    }

    /// Deletes audit rows created before `before_ms`; returns how many went.
    pub async fn delete_audit_before(&self, before_ms: i64) -> Result<u64, DbError> {
        let mut sql = self.sql("DELETE FROM audit_logs WHERE created_at < ");
        sql.bind(before_ms);
        Ok(sql.query().execute(self.db.pool()).await?.rows_affected())
    }

    /// One page of audit rows, newest first, and the total matching.
    pub async fn list_audit(
        &self,
        filter: &AuditFilter,
        page: i64,
        page_size: i64,
    ) -> Result<(Vec<AuditEntry>, i64), DbError> {
        let mut count = self.sql("SELECT COUNT(*) FROM audit_logs");
        filter.push(&mut count);
        let total: i64 = count.query_scalar().fetch_one(self.db.pool()).await?;
        let mut sql = self.sql(SELECT_AUDIT);
        filter.push(&mut sql);
        sql.push(" ORDER BY id DESC LIMIT ").bind(page_size);
        sql.push(" OFFSET ").bind((page - 1).max(0) * page_size);
        Ok((sql.query_as().fetch_all(self.db.pool()).await?, total))
    }

    /// The rows after `after_id` (oldest first), for streaming exports page by page.
    pub async fn audit_after(
        &self,
        filter: &AuditFilter,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, DbError> {
        let mut sql = self.sql(SELECT_AUDIT);
        filter.push(&mut sql);
        sql.push(" AND id > ").bind(after_id);
        sql.push(" ORDER BY id LIMIT ").bind(limit);
        Ok(sql.query_as().fetch_all(self.db.pool()).await?)
    }

    /// One audit row.
    pub async fn find_audit(&self, id: i64) -> Result<Option<AuditEntry>, DbError> {
        let mut sql = self.sql(SELECT_AUDIT);
        sql.push(" WHERE id = ").bind(id);
        Ok(sql.query_as().fetch_optional(self.db.pool()).await?)
    }
}
