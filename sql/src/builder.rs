//! A statement built at run time with the placeholders of its backend.
//!
//! sqlx's `QueryBuilder<Any>` cannot serve here: `AnyArguments` does not know which database it
//! will be sent to and always renders `?`, which PostgreSQL rejects. [`Sql`] knows the backend and
//! writes its placeholder; every value a client sends goes through [`Sql::bind`], never into the
//! text.

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::{Any, Arguments, Encode, Type};

use crate::Backend;

/// A statement and its arguments.
pub struct Sql {
    backend: Backend,
    text: String,
    args: AnyArguments,
    count: usize,
}

impl Sql {
    /// A statement for `backend`, starting with `text`.
    pub fn new(backend: Backend, text: &str) -> Sql {
        Sql {
            backend,
            text: text.to_string(),
            args: AnyArguments::default(),
            count: 0,
        }
    }

    /// Appends SQL text (never a client's value: those go through [`Sql::bind`]).
    pub fn push(&mut self, text: &str) -> &mut Sql {
        self.text.push_str(text);
        self
    }

    /// Appends a placeholder bound to `value`.
    pub fn bind<T>(&mut self, value: T) -> &mut Sql
    where
        T: for<'q> Encode<'q, Any> + Type<Any>,
    {
        self.count += 1;
        match self.backend {
            Backend::MySql => self.text.push('?'),
            Backend::Sqlite | Backend::Postgres => {
                self.text.push('$');
                self.text.push_str(&self.count.to_string());
            }
        }
        // Encoding into the Any buffer copies the value; it cannot fail for the integers, floats
        // and text bound here.
        self.args
            .add(value)
            .expect("Any arguments accept integers, floats and text");
        self
    }

    /// Appends `(p1, p2, ...)` for the values. An empty list renders `(NULL)`, which matches no
    /// row (`x IN (NULL)` is never true), so callers need no special case.
    pub fn bind_list<T>(&mut self, values: impl IntoIterator<Item = T>) -> &mut Sql
    where
        T: for<'q> Encode<'q, Any> + Type<Any>,
    {
        self.text.push('(');
        let mut any = false;
        for value in values {
            if any {
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
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Runs this `INSERT` and returns the new row's `id`: `RETURNING id` where the backend has it
    /// (the `Any` driver reports no last insert id for SQLite), the driver's last insert id on
    /// MySQL and MariaDB.
    pub async fn insert_returning_id<'e, E>(mut self, executor: E) -> Result<i64, sqlx::Error>
    where
        E: sqlx::Executor<'e, Database = Any>,
    {
        if self.backend != Backend::MySql {
            self.push(" RETURNING id");
            return self.query_scalar::<i64>().fetch_one(executor).await;
        }
        let done = self.query().execute(executor).await?;
        done.last_insert_id()
            .ok_or_else(|| sqlx::Error::Protocol("the database reported no last insert id".into()))
    }

    /// The statement, to execute or fetch rows.
    pub fn query(self) -> sqlx::query::Query<'static, Any, AnyArguments> {
        sqlx::query_with(sqlx::AssertSqlSafe(self.text), self.args)
    }

    /// The statement, fetching rows as `O`.
    pub fn query_as<O>(self) -> sqlx::query::QueryAs<'static, Any, O, AnyArguments>
    where
        O: for<'r> sqlx::FromRow<'r, AnyRow>,
    {
        sqlx::query_as_with(sqlx::AssertSqlSafe(self.text), self.args)
    }

    /// The statement, fetching one column as `O`.
    pub fn query_scalar<O>(self) -> sqlx::query::QueryScalar<'static, Any, O, AnyArguments>
    where
        (O,): for<'r> sqlx::FromRow<'r, AnyRow>,
    {
        sqlx::query_scalar_with(sqlx::AssertSqlSafe(self.text), self.args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(backend: Backend) -> String {
        let mut sql = Sql::new(backend, "SELECT 1 FROM t WHERE a = ");
        sql.bind(1_i64)
            .push(" AND b IN ")
            .bind_list(["x".to_string(), "y".to_string()]);
        sql.text().to_string()
    }

    #[test]
    fn placeholders_follow_the_backend() {
        assert_eq!(
            render(Backend::Postgres),
            "SELECT 1 FROM t WHERE a = $1 AND b IN ($2, $3)"
        );
        assert_eq!(
            render(Backend::Sqlite),
            "SELECT 1 FROM t WHERE a = $1 AND b IN ($2, $3)"
        );
        assert_eq!(
            render(Backend::MySql),
            "SELECT 1 FROM t WHERE a = ? AND b IN (?, ?)"
        );
    }

    #[test]
    fn empty_lists_match_nothing() {
        for backend in [Backend::Sqlite, Backend::Postgres, Backend::MySql] {
            let mut sql = Sql::new(backend, "x IN ");
            sql.bind_list(Vec::<String>::new());
            assert_eq!(sql.text(), "x IN (NULL)");
        }
    }
}
