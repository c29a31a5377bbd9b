//! Owl's schema, embedded in the binary, and the runner every schema goes through.
//!
//! The steps live in `migrations/sqlite`, `migrations/postgres` and `migrations/mysql` (the same
//! numbered steps with the same meaning) and are compiled in with `sqlx::migrate!`, so a fresh machine needs no source tree.
//! Each role of the `owl` binary applies them once when it starts, before any store opens; `owl
//! admin migrate` applies them without starting a server.

use std::time::Duration;

use sqlx::migrate::{MigrateError, Migrator};

use crate::{Backend, Db, SqlError};

static SQLITE: Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES: Migrator = sqlx::migrate!("../migrations/postgres");
static MYSQL: Migrator = sqlx::migrate!("../migrations/mysql");

/// How often a migration is retried when another process migrates the same SQLite file at the same
/// moment: SQLite has no migration lock (PostgreSQL and MySQL take one), so the loser's `CREATE
/// TABLE` fails and a retry finds the step applied.
const ATTEMPTS: u32 = 5;

/// Connects to Owl's own database and brings its schema up to date: what each role of the binary
/// does first, before its stores open over the returned pool.
pub async fn open(url: &str, max_connections: u32) -> Result<Db, SqlError> {
    let db = Db::connect(url, max_connections).await?;
    if let Err(error) = migrate(&db).await {
        db.close().await;
        return Err(error);
    }
    Ok(db)
}

/// Brings Owl's own schema up to date (idempotent).
pub async fn migrate(db: &Db) -> Result<(), SqlError> {
    let migrator = match db.backend() {
        Backend::Sqlite => &SQLITE,
        Backend::Postgres => &POSTGRES,
        Backend::MySql => &MYSQL,
    };
    Ok(run_migrator(db, migrator).await?)
}

/// Applies `migrator`'s steps, retrying a race with another process.
pub async fn run_migrator(db: &Db, migrator: &Migrator) -> Result<(), MigrateError> {
    let mut attempt = 1;
    loop {
        match migrator.run(db.pool()).await {
            Ok(()) => return Ok(()),
            Err(error) if attempt < ATTEMPTS => {
                tracing::debug!(%error, attempt, "migration raced another process; retrying");
                tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
                attempt += 1;
            }
            Err(error) => return Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(dir: &std::path::Path) -> String {
        format!("sqlite://{}?mode=rwc", dir.join("owl.db").display())
    }

    #[tokio::test]
    async fn processes_racing_to_migrate_one_file_all_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let url = url(dir.path());
        let (a, b) = tokio::join!(Db::connect(&url, 2), Db::connect(&url, 2));
        let (a, b) = (a.unwrap(), b.unwrap());
        let (ra, rb) = tokio::join!(migrate(&a), migrate(&b));
        ra.unwrap();
        rb.unwrap();
        let tables: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN ('users', 'alerts', 'log_config')",
        )
        .fetch_one(a.pool())
        .await
        .unwrap();
        assert_eq!(tables, 3);
        // A second run has nothing to do.
        migrate(&a).await.unwrap();
    }

    #[tokio::test]
    async fn owls_schema_applies_on_mariadb_twice() {
        if crate::testing::services_skipped() {
            return;
        }
        let temp = crate::testing::TempDatabase::mysql("owl_migrate").await;
        let db = Db::connect(&temp.url(), 2).await.unwrap();
        migrate(&db).await.unwrap();
        migrate(&db).await.unwrap();
        let roles: i64 = db
            .sql("SELECT COUNT(*) FROM roles")
            .query_scalar()
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_eq!(roles, 3);
        db.close().await;
    }
}
