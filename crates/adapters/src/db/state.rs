//! Small named values on SQL (`connector_state`): the reconciliation's cursor and the webhook
//! states it reported, shared by every process on the database.

use super::sql::SqlBuilder;
use super::{Database, boxed, millis};
use async_trait::async_trait;
use chrono::Utc;
use domain::error::StoreError;
use domain::ports::StateStore;
use sea_orm::{ConnectionTrait as _, DbErr};

/// The named values on the connector's SQL database.
#[derive(Debug, Clone)]
pub struct SqlStateStore {
    db: Database,
}

impl SqlStateStore {
    /// A store on `db`.
    pub fn new(db: Database) -> Self {
        SqlStateStore { db }
    }
}

fn unavailable(e: DbErr) -> StoreError {
    StoreError::Unavailable(boxed(e))
}

#[async_trait]
impl StateStore for SqlStateStore {
    async fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        let mut b = SqlBuilder::new(
            self.db.backend(),
            "SELECT value FROM connector_state WHERE key = ".into(),
        );
        b.param(key.to_owned().into());
        let row = self
            .db
            .conn()
            .query_one_raw(b.build())
            .await
            .map_err(unavailable)?;
        row.map(|r| r.try_get_by_index::<String>(0))
            .transpose()
            .map_err(|e| StoreError::Unexpected(boxed(e)))
    }

    async fn compare_and_set(
        &self,
        key: &str,
        expected: Option<&str>,
        value: &str,
    ) -> Result<bool, StoreError> {
        let now = millis(Utc::now());
        let backend = self.db.backend();
        let b = match expected {
            None => {
                let mut b = SqlBuilder::new(
                    backend,
                    "INSERT INTO connector_state (key, value, updated_at) VALUES ".into(),
                );
                b.row(
                    0,
                    [key.to_owned().into(), value.to_owned().into(), now.into()],
                );
                b.sql.push_str(" ON CONFLICT (key) DO NOTHING");
                b
            }
            Some(expected) => {
                let mut b = SqlBuilder::new(backend, "UPDATE connector_state SET value = ".into());
                b.param(value.to_owned().into());
                b.sql.push_str(", updated_at = ");
                b.param(now.into());
                b.sql.push_str(" WHERE key = ");
                b.param(key.to_owned().into());
                b.sql.push_str(" AND value = ");
                b.param(expected.to_owned().into());
                b
            }
        };
        let done = self
            .db
            .conn()
            .execute_raw(b.build())
            .await
            .map_err(unavailable)?;
        Ok(done.rows_affected() == 1)
    }
}
