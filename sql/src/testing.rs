//! Throw-away databases for tests against the real servers (feature `testing`).

use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::Connection;

use crate::Backend;

/// Whether the tests that need PostgreSQL, MariaDB or Redis are skipped
/// (`OWL_TEST_SKIP_SERVICES=1`, for machines without them).
pub fn services_skipped() -> bool {
    std::env::var("OWL_TEST_SKIP_SERVICES").is_ok_and(|v| v == "1")
}

/// A database of its own on a real server, dropped with the guard: PostgreSQL at
/// `OWL_TEST_POSTGRES_URL` (`postgres://postgres@127.0.0.1:5432/test` by default) or MySQL/MariaDB
/// at `OWL_TEST_MYSQL_URL` (`mysql://root@127.0.0.1:3306/test`).
pub struct TempDatabase {
    backend: Backend,
    admin_url: String,
    name: String,
}

/// The PostgreSQL kind, by the name the stores' tests use.
pub type TempPostgres = TempDatabase;

impl TempDatabase {
    /// A PostgreSQL database; panics, naming the server, when it cannot be made.
    pub async fn create(prefix: &str) -> TempDatabase {
        TempDatabase::on(Backend::Postgres, prefix).await
    }

    /// A MySQL/MariaDB database; panics, naming the server, when it cannot be made.
    pub async fn mysql(prefix: &str) -> TempDatabase {
        TempDatabase::on(Backend::MySql, prefix).await
    }

    async fn on(backend: Backend, prefix: &str) -> TempDatabase {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let (variable, default) = match backend {
            Backend::MySql => ("OWL_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test"),
            _ => ("OWL_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test"),
        };
        let admin_url = std::env::var(variable).unwrap_or_else(|_| default.to_string());
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            "{prefix}_{}_{}_{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut connection = admin(&admin_url).await.unwrap_or_else(|e| {
            panic!(
                "{} at {admin_url} is required (OWL_TEST_SKIP_SERVICES=1 to skip): {e}",
                backend.name()
            )
        });
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut connection)
            .await
            .expect("create the test database");
        let _ = connection.close().await;
        TempDatabase {
            backend,
            admin_url,
            name,
        }
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

/// A connection to the server's administrative database, whichever backend it is.
async fn admin(url: &str) -> Result<sqlx::AnyConnection, sqlx::Error> {
    sqlx::any::install_default_drivers();
    sqlx::AnyConnection::connect(url).await
}

impl Drop for TempDatabase {
    fn drop(&mut self) {
        let (backend, admin_url, name) = (self.backend, self.admin_url.clone(), self.name.clone());
        // Dropped inside a runtime, which cannot block: a thread of its own does the dropping.
        let dropping = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            runtime.block_on(async {
                if let Ok(mut connection) = admin(&admin_url).await {
                    // PostgreSQL refuses to drop a database with sessions left unless forced.
                    let force = if backend == Backend::Postgres {
                        " WITH (FORCE)"
                    } else {
                        ""
                    };
                    let drop = format!("DROP DATABASE IF EXISTS {name}{force}");
                    let _ = sqlx::query(sqlx::AssertSqlSafe(drop))
                        .execute(&mut connection)
                        .await;
                }
            });
        });
        let _ = dropping.join();
    }
}
