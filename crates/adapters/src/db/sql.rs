//! A statement with bound values built piece by piece ([`SqlBuilder`]), for the raw SQL the
//! stores write: `$n` placeholders on Postgres, `?` on SQLite.

use sea_orm::{DbBackend, Statement, Value};

/// Builds a statement with bound values: `$n` placeholders on Postgres, `?` on SQLite.
pub(crate) struct SqlBuilder {
    backend: DbBackend,
    pub(crate) sql: String,
    values: Vec<Value>,
}

impl SqlBuilder {
    pub(crate) fn new(backend: DbBackend, sql: String) -> Self {
        SqlBuilder {
            backend,
            sql,
            values: Vec::new(),
        }
    }

    /// Appends `(p1, p2, ...)` bound to `values`, preceded by `, ` unless it is the first row.
    pub(crate) fn row(&mut self, index: usize, values: impl IntoIterator<Item = Value>) {
        if index > 0 {
            self.sql.push_str(", ");
        }
        self.sql.push('(');
        for (i, v) in values.into_iter().enumerate() {
            if i > 0 {
                self.sql.push_str(", ");
            }
            self.param(v);
        }
        self.sql.push(')');
    }

    /// Appends one placeholder bound to `value`.
    pub(crate) fn param(&mut self, value: Value) {
        self.values.push(value);
        match self.backend {
            DbBackend::Postgres => {
                self.sql.push('$');
                self.sql.push_str(&self.values.len().to_string());
            }
            _ => self.sql.push('?'),
        }
    }

    pub(crate) fn build(self) -> Statement {
        Statement::from_sql_and_values(self.backend, self.sql, self.values)
    }
}
