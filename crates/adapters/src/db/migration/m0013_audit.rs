//! M0013: the `audit` table, who did what (`domain::model::audit`). Times are milliseconds; the
//! actor is kept as its kind, name and token id so that it can be filtered on.

use sea_orm_migration::prelude::*;

/// The table above.
pub(super) struct M0013Audit;

impl MigrationName for M0013Audit {
    fn name(&self) -> &str {
        "m0013_audit"
    }
}

// The trait is declared with an elided lifetime; naming it here would not match.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for M0013Audit {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let id = match manager.get_database_backend() {
            sea_orm::DbBackend::Postgres => "BIGSERIAL PRIMARY KEY",
            _ => "INTEGER PRIMARY KEY AUTOINCREMENT",
        };
        let conn = manager.get_connection();
        conn.execute_unprepared(&format!(
            "CREATE TABLE IF NOT EXISTS audit (\
               id {id}, \
               at BIGINT NOT NULL, \
               actor_via TEXT NOT NULL, \
               actor_name TEXT NOT NULL, \
               actor_token_id BIGINT NULL, \
               action TEXT NOT NULL, \
               subject TEXT NOT NULL, \
               forced BIGINT NOT NULL, \
               detail TEXT NULL)"
        ))
        .await?;
        for index in [
            "CREATE INDEX IF NOT EXISTS audit_subject ON audit (subject, id)",
            "CREATE INDEX IF NOT EXISTS audit_actor ON audit (actor_name, id)",
            "CREATE INDEX IF NOT EXISTS audit_at ON audit (at)",
        ] {
            conn.execute_unprepared(index).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP TABLE IF EXISTS audit")
            .await?;
        Ok(())
    }
}
