//! `[collector]`, `[query_api]`, `[storage]` and `[auth]`: the server roles.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{Problems, Secret};

/// `[collector]`: ingest, durability and indexing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CollectorConfig {
    /// Listen address of the ingest endpoint.
    pub listen: String,
    /// Tokens agents present (`Authorization: Bearer`); empty means the generated token in
    /// `<data_dir>/agent-token` (or `OWL_AGENT_TOKEN`).
    pub agent_tokens: Vec<Secret>,
    /// Largest accepted request body in bytes (after decompression).
    pub max_body_bytes: usize,
    /// Milliseconds between index commits (freshness of search).
    pub commit_interval_ms: u64,
    /// Records accepted but not yet indexed before ingest answers 429.
    pub max_pending_records: usize,
    /// Bytes of memory each partition writer of the index may use.
    pub writer_memory_bytes: usize,
    /// Most recent record ids (and agent batch keys) remembered, across restarts, to store a
    /// re-sent record once; each costs about 36 bytes of memory.
    pub dedup_max_ids: usize,
    /// Ingest requests handled at once (each may hold `max_body_bytes`); more are answered 429
    /// `LOG_INGEST_BACKPRESSURE` with `Retry-After`.
    pub max_concurrent_requests: usize,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        CollectorConfig {
            listen: "127.0.0.1:4318".to_string(),
            agent_tokens: Vec::new(),
            max_body_bytes: 16 * 1024 * 1024,
            commit_interval_ms: 1000,
            max_pending_records: 200_000,
            writer_memory_bytes: 32 * 1024 * 1024,
            dedup_max_ids: 2_000_000,
            max_concurrent_requests: 64,
        }
    }
}

/// `[query_api]`: the HTTP API for ops and CRM clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryApiConfig {
    /// Listen address.
    pub listen: String,
    /// Largest accepted request body in bytes.
    pub max_body_bytes: usize,
    /// Public base URL used in links (alert notifications); empty means `http://<listen>`.
    pub public_url: String,
    /// Region stamped into generated trace ids (`{region}-{timestamp}-{random8}`).
    pub region: String,
    /// Seconds an analytics answer is cached; 0 turns the cache off.
    pub analytics_cache_ttl_s: u64,
    /// Most rows an export returns.
    pub export_max_rows: usize,
    /// ISO 4217 code of the currency CRM analytics report amounts in (`total_amount`, revenue);
    /// orders in other currencies are counted but their amounts reported apart, never added.
    pub crm_currency_code: String,
    /// Reverse proxies (CIDRs) whose `X-Forwarded-For` and `Forwarded` headers are believed;
    /// empty by default, so the client is the connection's peer.
    pub trusted_proxies: crate::Networks,
    /// Live tails (`/api/v1/logs/stream`) one user may hold open at once.
    pub max_streams_per_user: usize,
    /// Live tails open at once over all users.
    pub max_streams: usize,
    /// Longest a log query, stats, trace or export search may run, in milliseconds.
    pub query_timeout_ms: u64,
    /// Log searches one user may run at once; more are answered 429.
    pub max_concurrent_queries_per_user: usize,
}

impl Default for QueryApiConfig {
    fn default() -> Self {
        QueryApiConfig {
            listen: "127.0.0.1:3001".to_string(),
            max_body_bytes: 1024 * 1024,
            public_url: String::new(),
            region: "CN".to_string(),
            analytics_cache_ttl_s: 300,
            export_max_rows: 100_000,
            crm_currency_code: "IDR".to_string(),
            trusted_proxies: crate::Networks::default(),
            max_streams_per_user: 4,
            max_streams: 64,
            query_timeout_ms: 10_000,
            max_concurrent_queries_per_user: 4,
        }
    }
}

/// Retention in days per record kind (the log API's `retention`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Days HTTP access records are kept.
    pub http_days: u32,
    /// Days application records are kept.
    pub application_days: u32,
    /// Days error records are kept.
    pub error_days: u32,
    /// Days host metric samples and heartbeats are kept.
    pub metrics_days: u32,
    /// Seconds between retention runs.
    pub check_interval_s: u64,
    /// Days audit log rows are kept; the query API deletes older ones on the same schedule.
    pub audit_days: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            http_days: 14,
            application_days: 30,
            error_days: 30,
            metrics_days: 7,
            check_interval_s: 3600,
            audit_days: 180,
        }
    }
}

/// `[storage]`: where state lives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// SQL database for users, roles, organizations, alerts, config and audit
    /// (`sqlite://...` or `postgres://...`); empty means `sqlite://<data_dir>/owl.db`.
    pub database_url: Secret,
    /// SQL database holding CRM business data (`sqlite://`, `postgres://` or `mysql://`); empty
    /// means the same database as `database_url`.
    pub crm_database_url: Secret,
    /// Redis URL for the shared cache, token revocation and rate limits; empty means in process.
    pub redis_url: Secret,
    /// Key (64 hex characters, 32 bytes) that encrypts channel secrets stored in SQL; empty means
    /// generated once into `<data_dir>/secret-key`. Processes sharing one database need the same
    /// key: set it (or `OWL_SECRET_KEY`) on each.
    pub secret_key: Secret,
    /// Prefix of every Redis key Owl writes, so several deployments can share one Redis.
    pub redis_prefix: String,
    /// Tantivy index directory; empty means `<data_dir>/index`.
    pub index_dir: Option<PathBuf>,
    /// Maximum connections of the SQL pool.
    pub max_connections: u32,
    /// Retention per kind.
    pub retention: RetentionConfig,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            database_url: Secret::default(),
            crm_database_url: Secret::default(),
            redis_url: Secret::default(),
            secret_key: Secret::default(),
            redis_prefix: "owl:".to_string(),
            index_dir: None,
            max_connections: 10,
            retention: RetentionConfig::default(),
        }
    }
}

/// `[auth]`: login and tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// HS256 signing secret (at least 32 bytes); empty means generated on first start and kept
    /// in `<data_dir>/jwt-secret`.
    pub jwt_secret: Secret,
    /// Lifetime of access tokens in seconds.
    pub access_token_ttl_s: u64,
    /// Lifetime of refresh tokens in seconds.
    pub refresh_token_ttl_s: u64,
    /// Consecutive failed logins (per user and per client IP) before a lockout.
    pub max_failed_logins: u32,
    /// Seconds an account or IP stays locked.
    pub lockout_s: u64,
    /// Password of the first `admin` user; empty means `OWL_ADMIN_PASSWORD` or a generated one.
    pub admin_password: Secret,
    /// Shortest accepted password.
    pub min_password_length: usize,
    /// Password checks (argon2id, about 19 MiB and a core each) running at once; 0 means one
    /// per core. Four times as many logins may wait; more are answered 503 with `Retry-After`.
    pub max_concurrent_logins: usize,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            jwt_secret: Secret::default(),
            access_token_ttl_s: 30 * 60,
            refresh_token_ttl_s: 7 * 24 * 3600,
            max_failed_logins: 5,
            lockout_s: 15 * 60,
            admin_password: Secret::default(),
            min_password_length: 8,
            max_concurrent_logins: 0,
        }
    }
}

impl CollectorConfig {
    pub(crate) fn validate(&self, p: &mut Problems) {
        p.socket_addr("collector.listen", &self.listen);
        p.range(
            "collector.max_body_bytes",
            self.max_body_bytes as u64,
            10 * 1024 * 1024,
            1 << 32,
        );
        p.range(
            "collector.commit_interval_ms",
            self.commit_interval_ms,
            50,
            60_000,
        );
        p.positive("collector.max_pending_records", self.max_pending_records as u64);
        p.range(
            "collector.max_concurrent_requests",
            self.max_concurrent_requests as u64,
            1,
            10_000,
        );
        p.range(
            "collector.writer_memory_bytes",
            self.writer_memory_bytes as u64,
            15_000_000,
            4 << 30,
        );
        p.range(
            "collector.dedup_max_ids",
            self.dedup_max_ids as u64,
            1000,
            1 << 32,
        );
        for (i, token) in self.agent_tokens.iter().enumerate() {
            p.not_placeholder(&format!("collector.agent_tokens[{i}]"), token);
            if token.expose().len() < 16 {
                p.push(
                    &format!("collector.agent_tokens[{i}]"),
                    "(secret)",
                    "tokens must be at least 16 characters",
                );
            }
        }
    }
}

impl QueryApiConfig {
    pub(crate) fn validate(&self, p: &mut Problems) {
        p.socket_addr("query_api.listen", &self.listen);
        if !self.public_url.is_empty() {
            p.url("query_api.public_url", &self.public_url);
        }
        if self.region.is_empty() || !self.region.chars().all(|c| c.is_ascii_alphanumeric()) {
            p.push(
                "query_api.region",
                &self.region,
                "a region code of letters and digits, e.g. CN",
            );
        }
        p.range(
            "query_api.max_body_bytes",
            self.max_body_bytes as u64,
            1024,
            1 << 30,
        );
        p.positive("query_api.export_max_rows", self.export_max_rows as u64);
        p.range(
            "query_api.max_streams_per_user",
            self.max_streams_per_user as u64,
            1,
            1000,
        );
        p.range("query_api.max_streams", self.max_streams as u64, 1, 100_000);
        p.range("query_api.query_timeout_ms", self.query_timeout_ms, 100, 600_000);
        p.range(
            "query_api.max_concurrent_queries_per_user",
            self.max_concurrent_queries_per_user as u64,
            1,
            1000,
        );
        p.range(
            "query_api.analytics_cache_ttl_s",
            self.analytics_cache_ttl_s,
            0,
            86_400,
        );
        if self.crm_currency_code.len() != 3
            || !self.crm_currency_code.chars().all(|c| c.is_ascii_uppercase())
        {
            p.push(
                "query_api.crm_currency_code",
                &self.crm_currency_code,
                "three upper-case letters (ISO 4217), e.g. IDR",
            );
        }
    }
}

/// The URL schemes of the databases Owl speaks, for its own schema and the CRM's alike.
const DATABASE_SCHEMES: [&str; 5] = [
    "sqlite:",
    "postgres://",
    "postgresql://",
    "mysql://",
    "mariadb://",
];

impl StorageConfig {
    pub(crate) fn validate(&self, p: &mut Problems) {
        p.not_placeholder("storage.secret_key", &self.secret_key);
        let key = self.secret_key.expose();
        if !key.is_empty() && (key.len() != 64 || !key.bytes().all(|b| b.is_ascii_hexdigit())) {
            p.push(
                "storage.secret_key",
                "(secret)",
                "must be 64 hex characters (32 bytes, e.g. `openssl rand -hex 32`); leave empty to generate one",
            );
        }
        let known = |url: &str| DATABASE_SCHEMES.iter().any(|s| url.starts_with(s));
        let db = self.database_url.expose();
        if !db.is_empty() && !known(db) {
            p.push(
                "storage.database_url",
                "(secret)",
                "must start with sqlite:, postgres:// or mariadb:// (mysql://)",
            );
        }
        let crm = self.crm_database_url.expose();
        if !crm.is_empty() && !known(crm) {
            p.push(
                "storage.crm_database_url",
                "(secret)",
                "must start with sqlite:, postgres:// or mysql://",
            );
        }
        let redis = self.redis_url.expose();
        let known_redis = redis.starts_with("redis://") || redis.starts_with("rediss://");
        if !redis.is_empty() && !known_redis {
            p.push(
                "storage.redis_url",
                "(secret)",
                "must start with redis:// or rediss://",
            );
        }
        if self.redis_prefix.len() > 64
            || self
                .redis_prefix
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            p.push(
                "storage.redis_prefix",
                format!("{:?}", self.redis_prefix),
                "at most 64 characters without spaces, e.g. owl:",
            );
        }
        p.range(
            "storage.max_connections",
            u64::from(self.max_connections),
            1,
            1000,
        );
        let r = &self.retention;
        p.range("storage.retention.http_days", u64::from(r.http_days), 1, 3650);
        p.range(
            "storage.retention.application_days",
            u64::from(r.application_days),
            1,
            3650,
        );
        p.range("storage.retention.error_days", u64::from(r.error_days), 1, 3650);
        p.range("storage.retention.audit_days", u64::from(r.audit_days), 1, 3650);
        p.range(
            "storage.retention.metrics_days",
            u64::from(r.metrics_days),
            1,
            3650,
        );
        p.range(
            "storage.retention.check_interval_s",
            r.check_interval_s,
            10,
            86_400,
        );
    }
}

impl AuthConfig {
    pub(crate) fn validate(&self, p: &mut Problems) {
        p.not_placeholder("auth.jwt_secret", &self.jwt_secret);
        p.not_placeholder("auth.admin_password", &self.admin_password);
        if !self.jwt_secret.is_empty() && self.jwt_secret.expose().len() < 32 {
            p.push(
                "auth.jwt_secret",
                "(secret)",
                "must be at least 32 bytes; leave empty to generate one",
            );
        }
        p.range("auth.access_token_ttl_s", self.access_token_ttl_s, 60, 86_400);
        p.range(
            "auth.refresh_token_ttl_s",
            self.refresh_token_ttl_s,
            self.access_token_ttl_s.max(60),
            90 * 86_400,
        );
        p.range(
            "auth.max_failed_logins",
            u64::from(self.max_failed_logins),
            1,
            1000,
        );
        p.range("auth.lockout_s", self.lockout_s, 1, 86_400);
        p.range(
            "auth.max_concurrent_logins",
            self.max_concurrent_logins as u64,
            0,
            1024,
        );
        p.range(
            "auth.min_password_length",
            self.min_password_length as u64,
            6,
            128,
        );
        if !self.admin_password.is_empty() && self.admin_password.expose().len() < self.min_password_length {
            p.push(
                "auth.admin_password",
                "(secret)",
                "is shorter than auth.min_password_length",
            );
        }
    }
}
