//! M0008: booking attempts and past bookings. `shipments.booking_attempt` says which booking of
//! a shipment the row is for (0 for the claim's; one more each time an operator's retry takes
//! it), so that a retry books only while its shipment still holds its attempt and two retries
//! at once book once. `shipment_bookings` keeps every booking the carrier made that its
//! shipment no longer (or never) held, with its barcode and label: a forced retry's superseded
//! booking, or a booking that came back after another had taken the shipment.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// The `booking_attempt` column and the `shipment_bookings` table.
pub(super) struct M0008BookingAttempts;

impl MigrationName for M0008BookingAttempts {
    fn name(&self) -> &str {
        "m0008_booking_attempts"
    }
}

#[derive(DeriveIden)]
enum Shipments {
    Table,
    BookingAttempt,
}

#[derive(DeriveIden)]
enum ShipmentBookings {
    Table,
    Id,
    ShipmentId,
    DeliveryId,
    Status,
    Message,
    Request,
    LabelPdf,
    KeptAt,
    Reason,
}

// The trait is declared with an elided lifetime; naming it here would not match.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for M0008BookingAttempts {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if !manager.has_column("shipments", "booking_attempt").await? {
            manager
                .alter_table(
                    Table::alter()
                        .table(Shipments::Table)
                        .add_column(big_integer(Shipments::BookingAttempt).default(0))
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(ShipmentBookings::Table)
                    .if_not_exists()
                    .col(big_pk_auto(ShipmentBookings::Id))
                    .col(big_integer(ShipmentBookings::ShipmentId))
                    .col(string(ShipmentBookings::DeliveryId).default(""))
                    .col(string(ShipmentBookings::Status))
                    .col(text(ShipmentBookings::Message).default(""))
                    .col(text(ShipmentBookings::Request).default(""))
                    .col(blob_null(ShipmentBookings::LabelPdf))
                    .col(big_integer(ShipmentBookings::KeptAt))
                    .col(string(ShipmentBookings::Reason))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_shipment_bookings_shipment")
                    .table(ShipmentBookings::Table)
                    .if_not_exists()
                    .col(ShipmentBookings::ShipmentId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ShipmentBookings::Table).to_owned())
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Shipments::Table)
                    .drop_column(Shipments::BookingAttempt)
                    .to_owned(),
            )
            .await
    }
}
