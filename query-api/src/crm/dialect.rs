//! The three SQL dialects the CRM store speaks, and a statement builder that renders each one's
//! placeholders.
//!
//! # Why a builder of our own
//!
//! The CRM database is read through sqlx's `Any` driver, so one set of statements serves SQLite,
//! PostgreSQL and MySQL/MariaDB. Placeholders differ: PostgreSQL wants `$1`, MySQL `?` (SQLite reads
//! both). sqlx's `QueryBuilder<Any>` cannot help: `AnyArguments` does not know which database it
//! will be sent to and always renders `?`, which PostgreSQL rejects. [`CrmSql`] knows the backend
//! and writes the right placeholder; every value a client sends goes through [`CrmSql::bind`], never
//! into the text.
//!
//! The few expressions that are not portable live here, next to their reason:
//!
//! - integer division: `a / b` on SQLite and PostgreSQL integers, `a DIV b` on MySQL (where `/`
//!   yields a DECIMAL the `Any` driver cannot decode);
//! - sums of money: `SUM` of a NUMERIC/DECIMAL column is NUMERIC/DECIMAL, which the `Any` driver
//!   cannot decode either, so sums are converted to a double on each backend its own way.

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::{Any, Arguments, Encode, Type};

use super::CrmStoreError;

/// Milliseconds in a UTC day.
pub(crate) const DAY_MS: i64 = 86_400_000;

/// Which database the CRM URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrmBackend {
    /// `sqlite:`.
    Sqlite,
    /// `postgres://` or `postgresql://`.
    Postgres,
    /// `mysql://` or `mariadb://` (MySQL 5.7+, MariaDB 10.3+).
    MySql,
}

impl CrmBackend {
    /// The backend of a URL.
    pub fn of_url(url: &str) -> Result<CrmBackend, CrmStoreError> {
        if url.starts_with("sqlite:") {
            Ok(CrmBackend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(CrmBackend::Postgres)
        } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            Ok(CrmBackend::MySql)
        } else {
            Err(CrmStoreError::UnsupportedUrl {
                scheme: url.split(':').next().unwrap_or_default().to_string(),
            })
        }
    }

    /// `sqlite`, `postgres` or `mysql`.
    pub fn name(self) -> &'static str {
        match self {
            CrmBackend::Sqlite => "sqlite",
            CrmBackend::Postgres => "postgres",
            CrmBackend::MySql => "mysql",
        }
    }

    /// The UTC day number (days since 1970-01-01) of an epoch-milliseconds expression. Times before
    /// 1970 are outside what the CRM schema holds.
    pub(crate) fn epoch_day(self, millis_expr: &str) -> String {
        match self {
            CrmBackend::MySql => format!("(({millis_expr}) DIV {DAY_MS})"),
            CrmBackend::Sqlite | CrmBackend::Postgres => format!("(({millis_expr}) / {DAY_MS})"),
        }
    }

    /// `SUM(expr)` as a double, 0 over no rows.
    pub(crate) fn sum_f64(self, expr: &str) -> String {
        match self {
            CrmBackend::Sqlite => format!("CAST(COALESCE(SUM({expr}), 0) AS REAL)"),
            CrmBackend::Postgres => format!("CAST(COALESCE(SUM({expr}), 0) AS DOUBLE PRECISION)"),
            // `CAST(... AS DOUBLE)` needs MySQL 8.0.17 or MariaDB 10.4.3; adding a float literal
            // turns a DECIMAL into a DOUBLE on every version.
            CrmBackend::MySql => format!("(COALESCE(SUM({expr}), 0) + 0e0)"),
        }
    }
}

/// A statement built at run time, with the placeholders of its backend and its arguments.
pub(crate) struct CrmSql {
    backend: CrmBackend,
    text: String,
    args: AnyArguments,
    count: usize,
}

impl CrmSql {
    pub(crate) fn new(backend: CrmBackend, text: &str) -> CrmSql {
        CrmSql {
            backend,
            text: text.to_string(),
            args: AnyArguments::default(),
            count: 0,
        }
    }

    /// Appends SQL text (never a client's value: those go through [`CrmSql::bind`]).
    pub(crate) fn push(&mut self, text: &str) -> &mut CrmSql {
        self.text.push_str(text);
        self
    }

    /// Appends a placeholder bound to `value`.
    pub(crate) fn bind<T>(&mut self, value: T) -> &mut CrmSql
    where
        T: for<'q> Encode<'q, Any> + Type<Any>,
    {
        self.count += 1;
        match self.backend {
            CrmBackend::MySql => self.text.push('?'),
            CrmBackend::Sqlite | CrmBackend::Postgres => {
                self.text.push('$');
                self.text.push_str(&self.count.to_string());
            }
        }
        // Encoding into the Any buffer copies the value; it cannot fail for the integers, floats and
        // text bound here.
        self.args
            .add(value)
            .expect("Any arguments accept integers, floats and text");
        self
    }

    /// Appends `(p1, p2, ...)` for the values; an empty list renders `(NULL)`, which matches no row
    /// (`x IN (NULL)` is never true), so callers need no special case.
    pub(crate) fn bind_list<T>(&mut self, values: impl IntoIterator<Item = T>) -> &mut CrmSql
    where
        T: for<'q> Encode<'q, Any> + Type<Any>,
    {
        self.text.push('(');
        let mut any = false;
        for (i, value) in values.into_iter().enumerate() {
            if i > 0 {
                self.text.push_str(", ");
            }
            self.bind(value);
            any = true;
        }
        if !any {
            self.text.push_str("NULL");
        }
        self.text.push(')');
        self
    }

    /// The statement text.
    #[cfg(test)]
    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    pub(crate) fn query(self) -> sqlx::query::Query<'static, Any, AnyArguments> {
        sqlx::query_with(sqlx::AssertSqlSafe(self.text), self.args)
    }

    pub(crate) fn query_as<O>(self) -> sqlx::query::QueryAs<'static, Any, O, AnyArguments>
    where
        O: for<'r> sqlx::FromRow<'r, AnyRow>,
    {
        sqlx::query_as_with(sqlx::AssertSqlSafe(self.text), self.args)
    }

    pub(crate) fn query_scalar<O>(self) -> sqlx::query::QueryScalar<'static, Any, O, AnyArguments>
    where
        (O,): for<'r> sqlx::FromRow<'r, AnyRow>,
    {
        sqlx::query_scalar_with(sqlx::AssertSqlSafe(self.text), self.args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_follow_the_backend() {
        let render = |backend| {
            let mut sql = CrmSql::new(backend, "SELECT 1 FROM t WHERE a = ");
            sql.bind(1_i64)
                .push(" AND b IN ")
                .bind_list(["x".to_string(), "y".to_string()]);
            sql.text().to_string()
        };
        assert_eq!(
            render(CrmBackend::Postgres),
            "SELECT 1 FROM t WHERE a = $1 AND b IN ($2, $3)"
        );
        assert_eq!(
            render(CrmBackend::Sqlite),
            "SELECT 1 FROM t WHERE a = $1 AND b IN ($2, $3)"
        );
        assert_eq!(
            render(CrmBackend::MySql),
            "SELECT 1 FROM t WHERE a = ? AND b IN (?, ?)"
        );
    }

    #[test]
    fn empty_lists_match_nothing() {
        let mut sql = CrmSql::new(CrmBackend::MySql, "x IN ");
        sql.bind_list(Vec::<String>::new());
        assert_eq!(sql.text(), "x IN (NULL)");
    }

    #[test]
    fn backends_by_url() {
        assert_eq!(CrmBackend::of_url("sqlite://x.db").unwrap(), CrmBackend::Sqlite);
        assert_eq!(
            CrmBackend::of_url("postgresql://h/db").unwrap(),
            CrmBackend::Postgres
        );
        assert_eq!(
            CrmBackend::of_url("mariadb://root@h/db").unwrap(),
            CrmBackend::MySql
        );
        assert_eq!(
            CrmBackend::of_url("mysql://root@h/db").unwrap(),
            CrmBackend::MySql
        );
        assert!(CrmBackend::of_url("oracle://h").is_err());
        assert_eq!(
            CrmBackend::MySql.epoch_day("created_at"),
            "((created_at) DIV 86400000)"
        );
    }
}
