//! Throw-away databases for tests against the real servers (feature `testing`).

use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::Connection;

/// Whether the tests that need PostgreSQL, MariaDB or Redis are skipped
/// (`OWL_TEST_SKIP_SERVICES=1`, for machines without them).
pub fn services_skipped() -> bool {
    std::env::var("OWL_TEST_SKIP_SERVICES").is_ok_and(|v| v == "1")
}

/// A PostgreSQL database of its own, created on the server `OWL_TEST_POSTGRES_URL` names
/// (`postgres://postgres@127.0.0.1:5432/test` by default) and dropped with the guard.
pub struct TempPostgres {
    admin_url: String,
    name: String,
}

impl TempPostgres {
    /// Creates the database; panics, naming the server, when it cannot.
    pub async fn create(prefix: &str) -> TempPostgres {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let admin_url = std::env::var("OWL_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string());
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            "{prefix}_{}_{}_{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut connection = sqlx::PgConnection::connect(&admin_url).await.unwrap_or_else(|e| {
            panic!("PostgreSQL at {admin_url} is required (OWL_TEST_SKIP_SERVICES=1 to skip): {e}")
        });
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut connection)
            .await
            .expect("create the test database");
        let _ = connection.close().await;
        TempPostgres { admin_url, name }
    }

    /// Its URL.
    pub fn url(&self) -> String {
        let base = self
            .admin_url
            .rsplit_once('/')
            .map_or(self.admin_url.as_str(), |(base, _)| base);
        format!("{base}/{}", self.name)
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Dropped inside a runtime, which cannot block: a thread of its own does the dropping.
        let dropping = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            runtime.block_on(async {
                if let Ok(mut connection) = sqlx::PgConnection::connect(&admin_url).await {
                    let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ = sqlx::query(sqlx::AssertSqlSafe(drop))
                        .execute(&mut connection)
                        .await;
                }
            });
        });
        let _ = dropping.join();
    }
}
