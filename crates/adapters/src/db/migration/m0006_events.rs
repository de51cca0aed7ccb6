//! M0006: the event log behind `/api/v1/events` (what the connector did: webhooks received, jobs,
//! shipments, mails, members). Rows are appended by every process and read by id; a vendor's
//! stream reads by `vendor_id`; the hourly prune deletes by `at` (Unix milliseconds).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveIden)]
enum Events {
    Table,
    Id,
    At,
    Kind,
    WebhookId,
    JobId,
    ShipmentId,
    OrderId,
    VendorId,
    Message,
}

/// The `events` table.
pub(super) struct M0006Events;

impl MigrationName for M0006Events {
    fn name(&self) -> &str {
        "m0006_events"
    }
}

// The trait is declared with an elided lifetime; naming it here would not match.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for M0006Events {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Events::Table)
                    .if_not_exists()
                    .col(big_pk_auto(Events::Id))
                    .col(big_integer(Events::At))
                    .col(string(Events::Kind))
                    .col(big_integer_null(Events::WebhookId))
                    .col(big_integer_null(Events::JobId))
                    .col(big_integer_null(Events::ShipmentId))
                    .col(big_integer_null(Events::OrderId))
                    .col(big_integer_null(Events::VendorId))
                    .col(text(Events::Message))
                    .to_owned(),
            )
            .await?;
        for (name, cols) in [
            ("idx_events_vendor", vec![Events::VendorId, Events::Id]),
            ("idx_events_at", vec![Events::At]),
        ] {
            let mut index = Index::create();
            index.name(name).table(Events::Table).if_not_exists();
            for col in cols {
                index.col(col);
            }
            manager.create_index(index.to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Events::Table).to_owned())
            .await
    }
}
