//! M0009: what closing the loop with the shop keeps.
//! - `webhooks.subject_modified`: an order webhook's `date_modified_gmt` (milliseconds), so the
//!   reconciliation can tell whether the inbox holds an order as the shop lists it, with
//!   `idx_webhooks_subject` (already on `subject_id`) to look it up.
//! - `shipments.order_withdrawn`: the order's status when it arrived cancelled, refunded or
//!   failed after the shipment was booked (the admins were told once).
//! - `shipments.noted_barcode`: the barcode whose tracking note was written on the order.
//! - `connector_state`: small named values (the reconciliation's cursor, the webhook states
//!   reported), shared by every process.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// The columns and the table above.
pub(super) struct M0009ShopLoop;

impl MigrationName for M0009ShopLoop {
    fn name(&self) -> &str {
        "m0009_shop_loop"
    }
}

#[derive(DeriveIden)]
enum Webhooks {
    Table,
    SubjectModified,
}

#[derive(DeriveIden)]
enum Shipments {
    Table,
    OrderWithdrawn,
    NotedBarcode,
}

#[derive(DeriveIden)]
enum ConnectorState {
    Table,
    Key,
    Value,
    UpdatedAt,
}

// The trait is declared with an elided lifetime; naming it here would not match.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for M0009ShopLoop {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if !manager.has_column("webhooks", "subject_modified").await? {
            manager
                .alter_table(
                    Table::alter()
                        .table(Webhooks::Table)
                        .add_column(big_integer_null(Webhooks::SubjectModified))
                        .to_owned(),
                )
                .await?;
        }
        for (column, iden) in [
            ("order_withdrawn", Shipments::OrderWithdrawn),
            ("noted_barcode", Shipments::NotedBarcode),
        ] {
            if !manager.has_column("shipments", column).await? {
                manager
                    .alter_table(
                        Table::alter()
                            .table(Shipments::Table)
                            .add_column(string_null(iden))
                            .to_owned(),
                    )
                    .await?;
            }
        }
        manager
            .create_table(
                Table::create()
                    .table(ConnectorState::Table)
                    .if_not_exists()
                    .col(string(ConnectorState::Key).primary_key())
                    .col(text(ConnectorState::Value))
                    .col(big_integer(ConnectorState::UpdatedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ConnectorState::Table).to_owned())
            .await?;
        for iden in [Shipments::OrderWithdrawn, Shipments::NotedBarcode] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Shipments::Table)
                        .drop_column(iden)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Webhooks::Table)
                    .drop_column(Webhooks::SubjectModified)
                    .to_owned(),
            )
            .await
    }
}
