//! The figures of the CRM analytics API's monitoring endpoints (`/api/analytics-monitoring/monitoring/*`, except the
//! alerts), each defined here and in `README.md`.
//!
//! - **Services** (`health/services`): a service is a name an agent's heartbeat lists (the services
//!   whose logs it tails). An agent is live while its latest heartbeat is at most
//!   [`STALE_HEARTBEATS`] heartbeat intervals (`agent.heartbeat_interval_s`) old. A service is
//!   `unhealthy` without a live agent, `degraded` when some of its agents are not live or when at
//!   least [`DEGRADED_ERROR_RATE`] of its records in the last [`ERROR_WINDOW`] are errors (ERROR
//!   level, an error object or a status >= 500, per the index), else `healthy`. `uptime` is the
//!   longest uptime of its live agents now (heartbeat uptime plus the heartbeat's age), `version` the
//!   version of the agent that reported last: services report no version of their own through
//!   agents. `overall_status`: `healthy` when every service is, `unhealthy` when every service is,
//!   else `degraded`; `unknown` when no agent reported any service.
//! - **Database** (`health/database`, `metrics/database`): the CRM database, the business database
//!   these endpoints are about (Owl's own database is `/health/detailed`'s). Pool size is the pool's
//!   maximum, active connections those checked out, the response time a measured `SELECT 1`.
//!   Connection, query and slow query counts come from the server itself where it keeps them:
//!   PostgreSQL `pg_stat_statements` (calls, and calls of statements averaging at least 1 s) or else
//!   `pg_stat_database` (transactions committed and rolled back) and `pg_stat_activity` (statements
//!   running longer than 1 s now); MySQL/MariaDB `SHOW GLOBAL STATUS` (`Threads_connected`,
//!   `Questions`, `Slow_queries`, slow by the server's `long_query_time`). SQLite is a file without a
//!   server: the counts are the pool's open connections and the statements this query API ran
//!   against it since start, slow ones taking at least [`SLOW_QUERY`](super::SLOW_QUERY).
//! - **System** (`metrics/system`): the latest host sample an agent shipped (CPU, memory, the fullest
//!   disk); the query API's own host is sampled directly with sysinfo when no agent reports it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use owl_model::Heartbeat;
use owl_sql::Backend;
use serde::Serialize;
use serde_json::{Value, json};

use super::{CrmStore, CrmStoreError};

/// An agent is live while its latest heartbeat is younger than this many intervals.
pub const STALE_HEARTBEATS: u32 = 3;
/// The share of error records that makes a service degraded.
pub const DEGRADED_ERROR_RATE: f64 = 0.05;
/// The window of records the error rate is computed over.
pub const ERROR_WINDOW: Duration = Duration::from_secs(300);
/// The longest a database probe may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// A ping slower than this makes the database degraded.
pub const SLOW_PING: Duration = Duration::from_secs(1);

/// The timestamp format of the CRM analytics API's monitoring answers (UTC, as the CRM analytics API shows it, without a zone).
pub fn format_time(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%dT%H:%M:%S").to_string()
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// One service of `health/services`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceHealth {
    /// Service name.
    pub name: String,
    /// `healthy`, `degraded` or `unhealthy`.
    pub status: &'static str,
    /// Seconds (longest live agent).
    pub uptime: u64,
    /// Version of the agent that reported last.
    pub version: String,
    /// Errors over records in the error window, 0 to 1.
    pub error_rate: f64,
    /// Records in the error window.
    pub record_count: u64,
    /// Hosts of its agents.
    pub hosts: Vec<String>,
    /// Agents live / all.
    pub live_agents: usize,
    /// All agents listing the service.
    pub agents: usize,
    /// Latest heartbeat of any of its agents.
    pub last_heartbeat: String,
}

/// Builds `health/services` from the latest heartbeats and per-service record and error counts.
pub fn services_health(
    heartbeats: &[Heartbeat],
    records: &BTreeMap<String, u64>,
    errors: &BTreeMap<String, u64>,
    now: DateTime<Utc>,
    heartbeat_interval: Duration,
) -> Value {
    let stale_after = heartbeat_interval.max(Duration::from_secs(1)) * STALE_HEARTBEATS;
    let mut by_service: BTreeMap<&str, Vec<&Heartbeat>> = BTreeMap::new();
    for heartbeat in heartbeats {
        let names: BTreeSet<&str> = heartbeat
            .services
            .iter()
            .map(String::as_str)
            .filter(|s| !s.is_empty())
            .collect();
        for name in names {
            by_service.entry(name).or_default().push(heartbeat);
        }
    }
    let mut services = Vec::with_capacity(by_service.len());
    for (name, beats) in by_service {
        let age = |h: &Heartbeat| (now - h.timestamp).to_std().unwrap_or_default();
        let live: Vec<&&Heartbeat> = beats.iter().filter(|h| age(h) <= stale_after).collect();
        let latest = beats
            .iter()
            .max_by_key(|h| h.timestamp)
            .expect("a service has at least one heartbeat");
        let record_count = records.get(name).copied().unwrap_or(0);
        let error_count = errors.get(name).copied().unwrap_or(0).min(record_count);
        let error_rate = if record_count == 0 {
            0.0
        } else {
            error_count as f64 / record_count as f64
        };
        let status = if live.is_empty() {
            "unhealthy"
        } else if live.len() < beats.len() || error_rate >= DEGRADED_ERROR_RATE {
            "degraded"
        } else {
            "healthy"
        };
        let uptime = live
            .iter()
            .map(|h| h.uptime_s.saturating_add(age(h).as_secs()))
            .max()
            .unwrap_or(0);
        let hosts: BTreeSet<String> = beats.iter().map(|h| h.host.clone()).collect();
        services.push(ServiceHealth {
            name: name.to_string(),
            status,
            uptime,
            version: latest.version.clone(),
            error_rate: (error_rate * 10_000.0).round() / 10_000.0,
            record_count,
            hosts: hosts.into_iter().collect(),
            live_agents: live.len(),
            agents: beats.len(),
            last_heartbeat: format_time(latest.timestamp),
        });
    }
    let overall = if services.is_empty() {
        "unknown"
    } else if services.iter().all(|s| s.status == "healthy") {
        "healthy"
    } else if services.iter().all(|s| s.status == "unhealthy") {
        "unhealthy"
    } else {
        "degraded"
    };
    json!({ "services": services, "overall_status": overall })
}

/// `health/database` of the CRM database (`store` is the error when it could not even be opened).
pub async fn database_health(store: Result<&CrmStore, &CrmStoreError>, configured_pool_size: u32) -> Value {
    let store = match store {
        Ok(store) => store,
        Err(error) => {
            tracing::warn!(%error, "crm database cannot be opened");
            return json!({
                "status": "unhealthy",
                "connection_pool_size": configured_pool_size,
                "active_connections": 0,
                "response_time_ms": null,
                "error": "CRM 数据库无法连接",
            });
        }
    };
    let pool = store.pool();
    let open = pool.size();
    let idle = u32::try_from(pool.num_idle()).unwrap_or(u32::MAX);
    let active = open.saturating_sub(idle);
    let started = Instant::now();
    let ping = tokio::time::timeout(
        PROBE_TIMEOUT,
        store.timed(sqlx::query_scalar::<_, i64>("SELECT 1").fetch_one(pool)),
    )
    .await;
    let elapsed = started.elapsed();
    let (status, response_time_ms, error) = match ping {
        Ok(Ok(_)) if elapsed < SLOW_PING => ("healthy", Some(round2(elapsed.as_secs_f64() * 1000.0)), None),
        Ok(Ok(_)) => ("degraded", Some(round2(elapsed.as_secs_f64() * 1000.0)), None),
        Ok(Err(error)) => {
            tracing::warn!(%error, "crm database ping failed");
            ("unhealthy", None, Some("CRM 数据库无法连接"))
        }
        Err(_) => {
            tracing::warn!(timeout_s = PROBE_TIMEOUT.as_secs(), "crm database ping timed out");
            ("unhealthy", None, Some("CRM 数据库响应超时"))
        }
    };
    let mut body = json!({
        "status": status,
        "connection_pool_size": store.max_connections(),
        "active_connections": active,
        "response_time_ms": response_time_ms,
        "backend": store.backend().name(),
        "open_connections": open,
        "idle_connections": idle,
    });
    if let Some(error) = error {
        body["error"] = json!(error);
    }
    body
}

/// Connection, query and slow query counts of the CRM database server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DatabaseCounts {
    /// Connections.
    pub connection_count: i64,
    /// Queries (see the module docs for each backend's meaning).
    pub query_count: i64,
    /// Slow queries.
    pub slow_query_count: i64,
    /// Where the counts come from: `pg_stat_statements`, `pg_stat_database`, `mysql_global_status`
    /// or `owl_counters`.
    pub source: &'static str,
}

impl CrmStore {
    /// The server's own counts (see the module docs).
    pub async fn database_counts(&self) -> Result<DatabaseCounts, CrmStoreError> {
        match self.backend() {
            Backend::Sqlite => {
                let (queries, slow) = self.query_counts();
                Ok(DatabaseCounts {
                    connection_count: i64::from(self.pool().size()),
                    query_count: i64::try_from(queries).unwrap_or(i64::MAX),
                    slow_query_count: i64::try_from(slow).unwrap_or(i64::MAX),
                    source: "owl_counters",
                })
            }
            Backend::Postgres => self.postgres_counts().await,
            Backend::MySql => self.mysql_counts().await,
        }
    }

    async fn postgres_counts(&self) -> Result<DatabaseCounts, CrmStoreError> {
        let pool = self.pool();
        let connection_count: i64 = self
            .timed(
                sqlx::query_scalar(
                    "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database()",
                )
                .fetch_one(pool),
            )
            .await?;
        let has_statements: i64 = self
            .timed(
                sqlx::query_scalar("SELECT COUNT(*) FROM pg_extension WHERE extname = 'pg_stat_statements'")
                    .fetch_one(pool),
            )
            .await?;
        if has_statements > 0 {
            // The view errors when the library is not in shared_preload_libraries: fall back then.
            let statements = sqlx::query_as::<_, (i64, i64)>(
                "SELECT CAST(COALESCE(SUM(s.calls), 0) AS BIGINT), \
                 CAST(COALESCE(SUM(CASE WHEN s.mean_exec_time >= 1000 THEN s.calls ELSE 0 END), 0) AS BIGINT) \
                 FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = current_database()",
            )
            .fetch_one(pool);
            match self.timed(statements).await {
                Ok((query_count, slow_query_count)) => {
                    return Ok(DatabaseCounts {
                        connection_count,
                        query_count,
                        slow_query_count,
                        source: "pg_stat_statements",
                    });
                }
                Err(error) => {
                    tracing::debug!(%error, "pg_stat_statements unreadable; using pg_stat_database")
                }
            }
        }
        let query_count: i64 = self
            .timed(
                sqlx::query_scalar(
                    "SELECT CAST(COALESCE(SUM(xact_commit + xact_rollback), 0) AS BIGINT) FROM pg_stat_database \
                     WHERE datname = current_database()",
                )
                .fetch_one(pool),
            )
            .await?;
        let slow_query_count: i64 = self
            .timed(
                sqlx::query_scalar(
                    "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND state = 'active' \
                     AND query_start < now() - interval '1 second'",
                )
                .fetch_one(pool),
            )
            .await?;
        Ok(DatabaseCounts {
            connection_count,
            query_count,
            slow_query_count,
            source: "pg_stat_database",
        })
    }

    async fn mysql_counts(&self) -> Result<DatabaseCounts, CrmStoreError> {
        let rows: Vec<(String, String)> = self
            .timed(
                sqlx::query_as(
                    "SHOW GLOBAL STATUS WHERE Variable_name IN ('Threads_connected', 'Questions', 'Slow_queries')",
                )
                .fetch_all(self.pool()),
            )
            .await?;
        let value = |name: &str| -> Result<i64, CrmStoreError> {
            let text = rows
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
                .ok_or_else(|| {
                    CrmStoreError::Sqlx(sqlx::Error::Protocol(format!("SHOW GLOBAL STATUS has no {name}")))
                })?;
            text.trim().parse().map_err(|_| {
                CrmStoreError::Sqlx(sqlx::Error::Protocol(format!("{name} is not a number: {text:?}")))
            })
        };
        Ok(DatabaseCounts {
            connection_count: value("Threads_connected")?,
            query_count: value("Questions")?,
            slow_query_count: value("Slow_queries")?,
            source: "mysql_global_status",
        })
    }
}

/// CPU, memory and disk of a host, as `metrics/system` answers them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SystemFigures {
    /// CPU usage over all cores, 0 to 100.
    pub cpu_percent: f64,
    /// Memory in use, 0 to 100.
    pub memory_percent: f64,
    /// Usage of the fullest disk, 0 to 100.
    pub disk_percent: f64,
    /// When the sample was taken (UTC).
    pub timestamp: String,
    /// The host.
    pub host: String,
    /// `agent` (shipped by an agent) or `local` (sampled by the query API).
    pub source: &'static str,
}

impl SystemFigures {
    /// From an agent's sample.
    pub fn from_sample(sample: &owl_model::MetricSample) -> SystemFigures {
        SystemFigures {
            cpu_percent: round2(sample.cpu_percent),
            memory_percent: round2(sample.memory_percent),
            disk_percent: round2(sample.max_disk_percent()),
            timestamp: format_time(sample.timestamp),
            host: sample.host.clone(),
            source: "agent",
        }
    }
}

/// The name of the query API's own host: `agent.host` when set (the local agent reports under it),
/// else the system host name.
pub fn own_host(config: &owl_config::Config) -> String {
    if !config.agent.host.trim().is_empty() {
        return config.agent.host.trim().to_string();
    }
    owl_host::host_name()
}

static LOCAL: Mutex<Option<owl_host::Sampler>> = Mutex::new(None);

/// Samples this host (blocking: the first call waits sysinfo's minimum CPU interval, 200 ms, to
/// measure CPU usage; later calls report usage since the previous one).
pub fn sample_local_host(host: &str, now: DateTime<Utc>) -> Result<SystemFigures, sysinfo::Error> {
    let mut guard = LOCAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if guard.is_none() {
        *guard = Some(owl_host::Sampler::new()?);
    }
    let sample = guard.as_mut().expect("initialised above").sample(host, None);
    Ok(SystemFigures {
        cpu_percent: sample.cpu_percent,
        memory_percent: sample.memory_percent,
        disk_percent: sample.max_disk_percent(),
        timestamp: format_time(now),
        host: host.to_string(),
        source: "local",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat(agent: &str, host: &str, at: DateTime<Utc>, uptime_s: u64, services: &[&str]) -> Heartbeat {
        Heartbeat {
            agent_id: agent.into(),
            host: host.into(),
            timestamp: at,
            version: format!("1.0.{}", uptime_s % 10),
            uptime_s,
            services: services.iter().map(|s| s.to_string()).collect(),
            region: None,
            counters: BTreeMap::new(),
        }
    }

    #[test]
    fn service_status_follows_heartbeats_and_error_rates() {
        let now = owl_model::parse_timestamp("2025-01-01T12:00:00Z").unwrap();
        let seconds = |s: i64| now - chrono::Duration::seconds(s);
        let heartbeats = [
            beat(
                "a1",
                "node-1",
                seconds(10),
                3600,
                &["foundation-service", "order-workflow-service"],
            ),
            beat("a2", "node-2", seconds(400), 86_400, &["order-workflow-service"]),
            beat("a3", "node-3", seconds(200), 100, &["legacy-service"]),
            beat("a4", "node-4", seconds(5), 61, &["noisy-service"]),
        ];
        let records: BTreeMap<String, u64> = [("foundation-service", 100), ("noisy-service", 20)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let errors: BTreeMap<String, u64> = [("foundation-service", 4), ("noisy-service", 1)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let health = services_health(&heartbeats, &records, &errors, now, Duration::from_secs(30));
        let services = health["services"].as_array().unwrap();
        let find = |name: &str| services.iter().find(|s| s["name"] == name).unwrap().clone();

        let foundation = find("foundation-service");
        assert_eq!(
            foundation["status"], "healthy",
            "4 % errors is below the threshold"
        );
        assert_eq!(foundation["uptime"], 3610, "uptime at the heartbeat plus its age");
        assert_eq!(foundation["error_rate"], 0.04);
        assert_eq!(foundation["version"], "1.0.0");

        let orders = find("order-workflow-service");
        assert_eq!(
            orders["status"], "degraded",
            "one of its two agents is silent for 400 s > 3 × 30 s"
        );
        assert_eq!(orders["live_agents"], 1);
        assert_eq!(orders["uptime"], 3610, "only live agents count");
        assert_eq!(orders["hosts"], json!(["node-1", "node-2"]));

        assert_eq!(find("legacy-service")["status"], "unhealthy");
        assert_eq!(find("legacy-service")["uptime"], 0);
        assert_eq!(find("noisy-service")["status"], "degraded", "5 % errors");
        assert_eq!(health["overall_status"], "degraded");

        let none = services_health(
            &[],
            &BTreeMap::new(),
            &BTreeMap::new(),
            now,
            Duration::from_secs(30),
        );
        assert_eq!(none, json!({ "services": [], "overall_status": "unknown" }));
        let all_down = services_health(
            &heartbeats[2..3],
            &BTreeMap::new(),
            &BTreeMap::new(),
            now,
            Duration::from_secs(30),
        );
        assert_eq!(all_down["overall_status"], "unhealthy");
    }

    #[test]
    fn local_sampling_reports_percentages() {
        let figures = sample_local_host("self", Utc::now()).expect("sysinfo works on linux");
        for value in [figures.cpu_percent, figures.memory_percent, figures.disk_percent] {
            assert!((0.0..=100.0).contains(&value), "{figures:?}");
        }
        assert!(figures.memory_percent > 0.0, "{figures:?}");
        assert_eq!(figures.source, "local");
        assert_eq!(figures.timestamp.len(), 19, "YYYY-MM-DDTHH:MM:SS");
    }
}
