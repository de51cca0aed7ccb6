//! M0012: label mails followed to the inbox. `shipments` gains `mail_message_id` (the
//! connector's `Message-ID` of the latest label mail, indexed: events are matched by it),
//! `mail_state` and `mail_state_at` (milliseconds); `mail_events` keeps what the mail relay
//! reported (and the connector's own records of labels mailed again), one row per event,
//! deduplicated per (provider, dedupe_key) by a partial unique index.

use sea_orm_migration::prelude::*;

/// The columns and the table above.
pub(super) struct M0012MailEvents;

impl MigrationName for M0012MailEvents {
    fn name(&self) -> &str {
        "m0012_mail_events"
    }
}

// The trait is declared with an elided lifetime; naming it here would not match.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for M0012MailEvents {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let conn = manager.get_connection();
        for (column, ty) in [
            ("mail_message_id", "TEXT NULL"),
            ("mail_state", "TEXT NULL"),
            ("mail_state_at", "BIGINT NULL"),
        ] {
            if !manager.has_column("shipments", column).await? {
                conn.execute_unprepared(&format!("ALTER TABLE shipments ADD COLUMN {column} {ty}"))
                    .await?;
            }
        }
        let id = match manager.get_database_backend() {
            sea_orm::DbBackend::Postgres => "BIGSERIAL PRIMARY KEY",
            _ => "INTEGER PRIMARY KEY AUTOINCREMENT",
        };
        conn.execute_unprepared(&format!(
            "CREATE TABLE IF NOT EXISTS mail_events (\
               id {id}, \
               shipment_id BIGINT NULL, \
               provider TEXT NOT NULL, \
               event TEXT NOT NULL, \
               state TEXT NULL, \
               email TEXT NULL, \
               message_id TEXT NULL, \
               provider_id TEXT NULL, \
               detail TEXT NULL, \
               occurred_at BIGINT NULL, \
               dedupe_key TEXT NULL, \
               raw TEXT NOT NULL, \
               status TEXT NOT NULL, \
               error TEXT NULL, \
               received_at BIGINT NOT NULL)"
        ))
        .await?;
        for index in [
            "CREATE INDEX IF NOT EXISTS shipments_mail_message_id ON shipments (mail_message_id) \
             WHERE mail_message_id IS NOT NULL",
            "CREATE UNIQUE INDEX IF NOT EXISTS mail_events_dedupe ON mail_events \
             (provider, dedupe_key) WHERE dedupe_key IS NOT NULL",
            "CREATE INDEX IF NOT EXISTS mail_events_shipment ON mail_events (shipment_id, id)",
            "CREATE INDEX IF NOT EXISTS mail_events_status ON mail_events (status, id)",
        ] {
            conn.execute_unprepared(index).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let conn = manager.get_connection();
        conn.execute_unprepared("DROP TABLE IF EXISTS mail_events")
            .await?;
        conn.execute_unprepared("DROP INDEX IF EXISTS shipments_mail_message_id")
            .await?;
        for column in ["mail_message_id", "mail_state", "mail_state_at"] {
            if manager.has_column("shipments", column).await? {
                conn.execute_unprepared(&format!("ALTER TABLE shipments DROP COLUMN {column}"))
                    .await?;
            }
        }
        Ok(())
    }
}
