//! M0011: the `alerts` table. One open alert per (kind, subject) (a partial unique index, on
//! SQLite and Postgres alike); `mail_due` and `hook_due` (0 or 1) make each row the outbox of its
//! delivery. Times are milliseconds.

use sea_orm_migration::prelude::*;

/// The table above.
pub(super) struct M0011Alerts;

impl MigrationName for M0011Alerts {
    fn name(&self) -> &str {
        "m0011_alerts"
    }
}

// The trait is declared with an elided lifetime; naming it here would not match.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for M0011Alerts {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let id = match manager.get_database_backend() {
            sea_orm::DbBackend::Postgres => "BIGSERIAL PRIMARY KEY",
            _ => "INTEGER PRIMARY KEY AUTOINCREMENT",
        };
        let conn = manager.get_connection();
        conn.execute_unprepared(&format!(
            "CREATE TABLE IF NOT EXISTS alerts (\
               id {id}, \
               kind TEXT NOT NULL, \
               subject TEXT NOT NULL, \
               summary TEXT NOT NULL, \
               detail TEXT NOT NULL, \
               state TEXT NOT NULL, \
               count BIGINT NOT NULL, \
               first_seen BIGINT NOT NULL, \
               last_seen BIGINT NOT NULL, \
               resolved_at BIGINT NULL, \
               resolved_by TEXT NULL, \
               mail_due BIGINT NOT NULL, \
               hook_due BIGINT NOT NULL)"
        ))
        .await?;
        for index in [
            "CREATE UNIQUE INDEX IF NOT EXISTS alerts_open_subject ON alerts (kind, subject) \
             WHERE state = 'open'",
            "CREATE INDEX IF NOT EXISTS alerts_first_seen ON alerts (first_seen)",
            "CREATE INDEX IF NOT EXISTS alerts_last_seen ON alerts (last_seen)",
            "CREATE INDEX IF NOT EXISTS alerts_mail_due ON alerts (id) WHERE mail_due = 1",
            "CREATE INDEX IF NOT EXISTS alerts_hook_due ON alerts (id) WHERE hook_due = 1",
        ] {
            conn.execute_unprepared(index).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP TABLE IF EXISTS alerts")
            .await?;
        Ok(())
    }
}
