//! Per-agent ingest tokens: `owl admin agent-token create --name NODE [--region R]`, `list` and
//! `revoke`. Each token names one node; a token with a region may only write records of that
//! region (the collector sets it on every record), and the node's batch keys and heartbeats are
//! namespaced by its name, so no node can collide with or speak for another. The table holds the
//! SHA-256 digest of each token, never the token.
//!
//! Collectors read the table when a token they do not know arrives (at most once a second) and
//! every [`REFRESH`] otherwise, so a new token works on its first request and a revoked one stops
//! within [`REFRESH`]. The shared `collector.agent_tokens` keep working beside them.

use std::time::Duration;

use rand::Rng;
use rand::distr::Alphanumeric;
use sha2::{Digest, Sha256};
use sqlx::Row;

/// How stale the collector's copy of the table may get.
pub const REFRESH: Duration = Duration::from_secs(5);

/// Why a token operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AgentTokenError {
    /// The name is not 1 to 64 letters, digits, `-`, `_` or `.`.
    #[error("--name `{0}`: use 1 to 64 letters, digits, `-`, `_` or `.`")]
    BadName(String),
    /// The region is not a region code.
    #[error("--region `{0}`: use a region code of letters and digits, such as CN")]
    BadRegion(String),
    /// A token of that name exists.
    #[error("an agent token named `{0}` exists already; revoke it first or choose another name")]
    Exists(String),
    /// The database URL names no backend Owl speaks.
    #[error("agent token store: {0}")]
    Sql(#[from] owl_sql::SqlError),
    /// The database refused.
    #[error("agent token store: {0}")]
    Sqlx(#[from] sqlx::Error),
}

/// Who a token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentIdentity {
    /// The node's name; `None` for a shared `collector.agent_tokens` token.
    pub name: Option<String>,
    /// The region every record of this node carries, when the token has one.
    pub region: Option<String>,
}

impl AgentIdentity {
    /// A shared token: the identity existing setups always had.
    pub fn shared() -> AgentIdentity {
        AgentIdentity {
            name: None,
            region: None,
        }
    }
}

/// A token as `list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// Its name.
    pub name: String,
    /// Its region ("" for any).
    pub region: String,
    /// When it was created, epoch ms.
    pub created_at: i64,
    /// When it was revoked, epoch ms.
    pub revoked_at: Option<i64>,
}

/// The SHA-256 digest of a token, as stored.
pub(crate) fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The `agent_tokens` table.
#[derive(Debug, Clone)]
pub struct AgentTokenStore {
    db: owl_sql::Db,
}

impl AgentTokenStore {
    /// A store over `url` that connects on first use (the schema comes from the migrations).
    pub fn connect_lazy(url: &str) -> Result<AgentTokenStore, AgentTokenError> {
        let db = owl_sql::Db::connect_lazy(url, 2, Duration::from_secs(10))?;
        Ok(AgentTokenStore { db })
    }

    /// Creates a token for `name` and returns it; only its digest is stored.
    pub async fn create(
        &self,
        name: &str,
        region: Option<&str>,
        now_ms: i64,
    ) -> Result<String, AgentTokenError> {
        let valid_name = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid_name {
            return Err(AgentTokenError::BadName(name.to_string()));
        }
        let region = region.map(|r| r.trim().to_ascii_uppercase()).unwrap_or_default();
        if region.len() > 16 || !region.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(AgentTokenError::BadRegion(region));
        }
        let mut sql = self.db.sql("SELECT COUNT(*) FROM agent_tokens WHERE name = ");
        sql.bind(name.to_string());
        let exists: i64 = sql.query_scalar().fetch_one(self.db.pool()).await?;
        if exists > 0 {
            return Err(AgentTokenError::Exists(name.to_string()));
        }
        let secret: String = rand::rng()
            .sample_iter(Alphanumeric)
            .take(40)
            .map(char::from)
            .collect();
        let token = format!("owl_{secret}");
        let mut sql = self
            .db
            .sql("INSERT INTO agent_tokens (name, region, digest, created_at) VALUES (");
        sql.bind(name.to_string()).push(", ").bind(region).push(", ");
        sql.bind(hex::encode(digest(&token)))
            .push(", ")
            .bind(now_ms)
            .push(")");
        sql.query().execute(self.db.pool()).await?;
        Ok(token)
    }

    /// Every token, revoked ones included, by name.
    pub async fn list(&self) -> Result<Vec<IssuedToken>, AgentTokenError> {
        let rows = sqlx::query("SELECT name, region, created_at, revoked_at FROM agent_tokens ORDER BY name")
            .fetch_all(self.db.pool())
            .await?;
        rows.iter()
            .map(|row| {
                Ok(IssuedToken {
                    name: row.try_get(0)?,
                    region: row.try_get(1)?,
                    created_at: row.try_get(2)?,
                    revoked_at: row.try_get(3)?,
                })
            })
            .collect()
    }

    /// Revokes the token of `name`; whether one was in force.
    pub async fn revoke(&self, name: &str, now_ms: i64) -> Result<bool, AgentTokenError> {
        let mut sql = self.db.sql("UPDATE agent_tokens SET revoked_at = ");
        sql.bind(now_ms)
            .push(" WHERE name = ")
            .bind(name.to_string())
            .push(" AND revoked_at IS NULL");
        let done = sql.query().execute(self.db.pool()).await?;
        Ok(done.rows_affected() > 0)
    }

    /// The tokens in force: digest, name and region.
    pub(crate) async fn in_force(&self) -> Result<Vec<([u8; 32], AgentIdentity)>, AgentTokenError> {
        let rows = sqlx::query("SELECT digest, name, region FROM agent_tokens WHERE revoked_at IS NULL")
            .fetch_all(self.db.pool())
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let digest_hex: String = row.try_get(0)?;
            let Ok(Ok(digest)) = hex::decode(&digest_hex).map(<[u8; 32]>::try_from) else {
                continue;
            };
            let region: String = row.try_get(2)?;
            out.push((
                digest,
                AgentIdentity {
                    name: Some(row.try_get(1)?),
                    region: (!region.is_empty()).then_some(region),
                },
            ));
        }
        Ok(out)
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.db.close().await;
    }
}
