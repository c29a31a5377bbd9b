//! Organizations: a tree through `parent_code` (admin API).

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;

use super::{Database, DbError};

/// The parent code of root organizations (the admin API shows `"parent_code": "0"`).
pub const ROOT_PARENT: &str = "0";

/// An organization.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct Organization {
    /// Id.
    pub id: i64,
    /// Code.
    pub org_code: String,
    /// Name.
    pub org_name: String,
    /// Parent code (`0` for a root).
    pub parent_code: String,
    /// Depth as the client states it.
    pub org_level: i64,
    /// Description.
    pub description: String,
    /// 1 enabled, 0 disabled or deleted.
    pub status: i64,
    /// Created (epoch ms).
    #[serde(skip)]
    pub created_at: i64,
    /// Updated (epoch ms).
    #[serde(skip)]
    pub updated_at: i64,
}

/// An organization to create.
#[derive(Debug, Clone)]
pub struct NewOrganization {
    /// Code.
    pub org_code: String,
    /// Name.
    pub org_name: String,
    /// Parent code.
    pub parent_code: String,
    /// Level.
    pub org_level: i64,
    /// Description.
    pub description: String,
    /// Status.
    pub status: i64,
}

/// Fields to change.
#[derive(Debug, Clone, Default)]
pub struct OrgUpdate {
    /// Name.
    pub org_name: Option<String>,
    /// Parent code.
    pub parent_code: Option<String>,
    /// Level.
    pub org_level: Option<i64>,
    /// Description.
    pub description: Option<String>,
    /// Status.
    pub status: Option<i64>,
}

const SELECT_ORG: &str = "SELECT id, org_code, org_name, parent_code, org_level, description, status, created_at, updated_at FROM organizations";

/// The codes of `root` and every organization below it, from a full list. Cycles (which updates
/// refuse, but a hand-edited database may hold) end the walk instead of looping.
pub fn subtree(all: &[Organization], root: &str) -> BTreeSet<String> {
    let mut children: HashMap<&str, Vec<&str>> = HashMap::new();
    for org in all {
        children
            .entry(org.parent_code.as_str())
            .or_default()
            .push(org.org_code.as_str());
    }
    let mut seen = BTreeSet::new();
    let mut stack = vec![root];
    while let Some(code) = stack.pop() {
        if !seen.insert(code.to_string()) {
            continue;
        }
        if let Some(kids) = children.get(code) {
            stack.extend(kids.iter().copied());
        }
    }
    seen
}

impl Database {
    /// Every organization, by id.
    pub async fn all_organizations(&self) -> Result<Vec<Organization>, DbError> {
        Ok(
            sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT_ORG} ORDER BY id")))
                .fetch_all(self.db.pool())
                .await?,
        )
    }

    /// An organization by id.
    pub async fn find_organization(&self, id: i64) -> Result<Option<Organization>, DbError> {
        let mut sql = self.sql(SELECT_ORG);
        sql.push(" WHERE id = ").bind(id);
        Ok(sql.query_as().fetch_optional(self.db.pool()).await?)
    }

    /// An organization by code.
    pub async fn find_organization_by_code(&self, code: &str) -> Result<Option<Organization>, DbError> {
        let mut sql = self.sql(SELECT_ORG);
        sql.push(" WHERE org_code = ").bind(code.to_string());
        Ok(sql.query_as().fetch_optional(self.db.pool()).await?)
    }

    /// Creates an organization; a taken code is [`DbError::Conflict`].
    pub async fn insert_organization(&self, org: &NewOrganization, now_ms: i64) -> Result<i64, DbError> {
        let mut sql = self.sql(
            "INSERT INTO organizations (org_code, org_name, parent_code, org_level, description, status, created_at, updated_at) VALUES (",
        );
        sql.bind(org.org_code.clone()).push(", ");
        sql.bind(org.org_name.clone()).push(", ");
        sql.bind(org.parent_code.clone()).push(", ");
        sql.bind(org.org_level).push(", ");
        sql.bind(org.description.clone()).push(", ");
        sql.bind(org.status).push(", ");
        sql.bind(now_ms).push(", ");
        sql.bind(now_ms).push(")");
        let id = sql
            .insert_returning_id(self.db.pool())
            .await
            .map_err(|e| DbError::conflict_on(e, "org_code", &org.org_code))?;
        // A new child widens the scope of everyone in the organizations above it.
        self.access_changed();
        Ok(id)
    }

    /// Applies an update; returns whether the organization exists.
    pub async fn update_organization(
        &self,
        id: i64,
        update: &OrgUpdate,
        now_ms: i64,
    ) -> Result<bool, DbError> {
        let mut sql = self.sql("UPDATE organizations SET updated_at = ");
        sql.bind(now_ms);
        if let Some(name) = &update.org_name {
            sql.push(", org_name = ").bind(name.clone());
        }
        if let Some(parent) = &update.parent_code {
            sql.push(", parent_code = ").bind(parent.clone());
        }
        if let Some(level) = update.org_level {
            sql.push(", org_level = ").bind(level);
        }
        if let Some(description) = &update.description {
            sql.push(", description = ").bind(description.clone());
        }
        if let Some(status) = update.status {
            sql.push(", status = ").bind(status);
        }
        sql.push(" WHERE id = ").bind(id);
        let found = sql.query().execute(self.db.pool()).await?.rows_affected() > 0;
        self.access_changed();
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org(code: &str, parent: &str) -> Organization {
        Organization {
            id: 0,
            org_code: code.into(),
            org_name: code.into(),
            parent_code: parent.into(),
            org_level: 1,
            description: String::new(),
            status: 1,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn subtree_walks_descendants_and_survives_cycles() {
        let all = vec![
            org("0501", "0"),
            org("050101", "0501"),
            org("05010101", "050101"),
            org("0502", "0"),
            org("x", "y"),
            org("y", "x"),
        ];
        let codes: Vec<String> = subtree(&all, "0501").into_iter().collect();
        assert_eq!(codes, ["0501", "050101", "05010101"]);
        assert_eq!(subtree(&all, "x").len(), 2);
        assert_eq!(
            subtree(&all, "missing").len(),
            1,
            "an unknown code is its own (empty) subtree"
        );
    }
}
