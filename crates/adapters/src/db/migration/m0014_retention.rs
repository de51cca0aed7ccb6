//! M0014: retention and erasure of personal data (`domain::model::retention`). A webhook whose
//! body and headers were cleared keeps its row with `pruned_at` (milliseconds) and `pruned_why`
//! (`retention` or `erasure`); a shipment whose label and carrier request were cleared gets
//! `label_pruned_at` and `label_pruned_why`. Partial indexes let a prune batch find the expired
//! rows still kept without scanning the tables: webhooks by `received_at`, delivered shipments by
//! `updated_at`, the others by `created_at`, dead jobs by `updated_at`.

use sea_orm_migration::prelude::*;

/// The columns and indexes above.
pub(super) struct M0014Retention;

impl MigrationName for M0014Retention {
    fn name(&self) -> &str {
        "m0014_retention"
    }
}

const COLUMNS: [(&str, &str, &str); 4] = [
    ("webhooks", "pruned_at", "BIGINT NULL"),
    ("webhooks", "pruned_why", "TEXT NULL"),
    ("shipments", "label_pruned_at", "BIGINT NULL"),
    ("shipments", "label_pruned_why", "TEXT NULL"),
];

const INDEXES: [&str; 4] = [
    "CREATE INDEX IF NOT EXISTS webhooks_unpruned_received ON webhooks (received_at) \
     WHERE pruned_at IS NULL",
    "CREATE INDEX IF NOT EXISTS shipments_unpruned_delivered ON shipments (updated_at) \
     WHERE label_pruned_at IS NULL AND status = 'DELIVERED'",
    "CREATE INDEX IF NOT EXISTS shipments_unpruned_booked ON shipments (created_at) \
     WHERE label_pruned_at IS NULL AND status <> 'DELIVERED'",
    "CREATE INDEX IF NOT EXISTS jobs_dead_updated ON jobs (updated_at) WHERE status = 'dead'",
];

// The trait is declared with an elided lifetime; naming it here would not match.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for M0014Retention {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let conn = manager.get_connection();
        for (table, column, ty) in COLUMNS {
            if !manager.has_column(table, column).await? {
                conn.execute_unprepared(&format!("ALTER TABLE {table} ADD COLUMN {column} {ty}"))
                    .await?;
            }
        }
        for index in INDEXES {
            conn.execute_unprepared(index).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let conn = manager.get_connection();
        for index in [
            "webhooks_unpruned_received",
            "shipments_unpruned_delivered",
            "shipments_unpruned_booked",
            "jobs_dead_updated",
        ] {
            conn.execute_unprepared(&format!("DROP INDEX IF EXISTS {index}"))
                .await?;
        }
        for (table, column, _) in COLUMNS {
            if manager.has_column(table, column).await? {
                conn.execute_unprepared(&format!("ALTER TABLE {table} DROP COLUMN {column}"))
                    .await?;
            }
        }
        Ok(())
    }
}
