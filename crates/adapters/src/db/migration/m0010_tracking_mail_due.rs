//! M0010: `shipments.tracking_unmailed_since` (milliseconds), set in the same write as a tracking
//! change and cleared once its mail to the admins is sent, so that a mail that fails is sent by
//! the retry instead of being lost (an outbox mark on the row).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// The column above.
pub(super) struct M0010TrackingMailDue;

impl MigrationName for M0010TrackingMailDue {
    fn name(&self) -> &str {
        "m0010_tracking_mail_due"
    }
}

#[derive(DeriveIden)]
enum Shipments {
    Table,
    TrackingUnmailedSince,
}

// The trait is declared with an elided lifetime; naming it here would not match.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for M0010TrackingMailDue {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager
            .has_column("shipments", "tracking_unmailed_since")
            .await?
        {
            return Ok(());
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Shipments::Table)
                    .add_column(big_integer_null(Shipments::TrackingUnmailedSince))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Shipments::Table)
                    .drop_column(Shipments::TrackingUnmailedSince)
                    .to_owned(),
            )
            .await
    }
}
