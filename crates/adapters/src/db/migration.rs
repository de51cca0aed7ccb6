//! Schema migrations, shared by SQLite and Postgres (`lazona migrate` runs them; the binaries
//! run them at start-up unless `database.migrate_on_start = false`).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

mod m0005_tokens;
mod m0006_events;
mod m0007_jobs_due_index;
mod m0008_booking_attempts;
mod m0009_shop_loop;
mod m0010_tracking_mail_due;
mod m0011_alerts;
mod m0012_mail_events;
mod m0013_audit;
mod m0014_retention;

/// The connector's migrations, in order.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(M0001InboxAndJobs),
            Box::new(M0002LeasesAndSchedules),
            Box::new(M0003WebhookEvents),
            Box::new(M0004Shipments),
            Box::new(m0005_tokens::M0005Tokens),
            Box::new(m0006_events::M0006Events),
            Box::new(m0007_jobs_due_index::M0007JobsDueIndex),
            Box::new(m0008_booking_attempts::M0008BookingAttempts),
            Box::new(m0009_shop_loop::M0009ShopLoop),
            Box::new(m0010_tracking_mail_due::M0010TrackingMailDue),
            Box::new(m0011_alerts::M0011Alerts),
            Box::new(m0012_mail_events::M0012MailEvents),
            Box::new(m0013_audit::M0013Audit),
            Box::new(m0014_retention::M0014Retention),
        ]
    }
}

#[derive(DeriveIden)]
enum Webhooks {
    Table,
    Id,
    DedupeKey,
    Resource,
    Topic,
    Event,
    DeliveryId,
    WcWebhookId,
    Source,
    SubjectId,
    Headers,
    Body,
    ReceivedAt,
    Status,
    Error,
    ProcessedAt,
}

#[derive(DeriveIden)]
enum WebhookEvents {
    Table,
    Id,
    WebhookId,
    At,
    Status,
    Detail,
}

#[derive(DeriveIden)]
enum Schedules {
    Table,
    Name,
    NextRunAt,
}

#[derive(DeriveIden)]
enum Jobs {
    LeaseToken,
    Table,
    Id,
    Kind,
    Payload,
    Status,
    Attempts,
    DueAt,
    LastError,
    CreatedAt,
    UpdatedAt,
}

struct M0001InboxAndJobs;

impl MigrationName for M0001InboxAndJobs {
    fn name(&self) -> &str {
        "m0001_inbox_and_jobs"
    }
}

// The trait is declared with an elided lifetime; naming it here would not match.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for M0001InboxAndJobs {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Webhooks::Table)
                    .if_not_exists()
                    .col(big_pk_auto(Webhooks::Id))
                    .col(string(Webhooks::DedupeKey).unique_key())
                    .col(string(Webhooks::Resource))
                    .col(string_null(Webhooks::Topic))
                    .col(string_null(Webhooks::Event))
                    .col(string_null(Webhooks::DeliveryId))
                    .col(big_integer_null(Webhooks::WcWebhookId))
                    .col(string_null(Webhooks::Source))
                    .col(big_integer_null(Webhooks::SubjectId))
                    .col(text(Webhooks::Headers))
                    .col(blob(Webhooks::Body))
                    .col(big_integer(Webhooks::ReceivedAt))
                    .col(string(Webhooks::Status))
                    .col(text_null(Webhooks::Error))
                    .col(big_integer_null(Webhooks::ProcessedAt))
                    .to_owned(),
            )
            .await?;
        for (name, cols) in [
            ("idx_webhooks_received_at", vec![Webhooks::ReceivedAt]),
            ("idx_webhooks_status", vec![Webhooks::Status, Webhooks::Id]),
            ("idx_webhooks_subject", vec![Webhooks::SubjectId]),
        ] {
            let mut index = Index::create();
            index.name(name).table(Webhooks::Table).if_not_exists();
            for col in cols {
                index.col(col);
            }
            manager.create_index(index.to_owned()).await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(Jobs::Table)
                    .if_not_exists()
                    .col(big_pk_auto(Jobs::Id))
                    .col(string(Jobs::Kind))
                    .col(text(Jobs::Payload))
                    .col(string(Jobs::Status))
                    .col(integer(Jobs::Attempts).default(0))
                    .col(big_integer(Jobs::DueAt))
                    .col(text_null(Jobs::LastError))
                    .col(big_integer(Jobs::CreatedAt))
                    .col(big_integer(Jobs::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_jobs_status_due")
                    .table(Jobs::Table)
                    .if_not_exists()
                    .col(Jobs::Status)
                    .col(Jobs::DueAt)
                    .to_owned(),
            )
            .await?;
        if manager.get_database_backend() == sea_orm::DbBackend::Postgres {
            // pglz, Postgres's default TOAST compression, costs about half of the CPU of an
            // insert of a 4.5 KB order; lz4 is several times cheaper. Servers built without lz4
            // keep pglz.
            manager
                .get_connection()
                .execute_unprepared(
                    "DO $$ BEGIN \
                       ALTER TABLE webhooks ALTER COLUMN body SET COMPRESSION lz4; \
                     EXCEPTION WHEN feature_not_supported OR invalid_parameter_value THEN NULL; \
                     END $$;",
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Jobs::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Webhooks::Table).to_owned())
            .await
    }
}

/// Reservation tokens on jobs (so a worker whose lease ran out cannot record an outcome for a job
/// another worker now holds) and the periodic schedules' table (one row per schedule; the worker
/// that moves `next_run_at` forward wins the tick).
struct M0002LeasesAndSchedules;

impl MigrationName for M0002LeasesAndSchedules {
    fn name(&self) -> &str {
        "m0002_leases_and_schedules"
    }
}

// The trait is declared with an elided lifetime; naming it here would not match.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for M0002LeasesAndSchedules {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Jobs::Table)
                    .add_column(string_null(Jobs::LeaseToken))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Schedules::Table)
                    .if_not_exists()
                    .col(string(Schedules::Name).primary_key())
                    .col(big_integer(Schedules::NextRunAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Schedules::Table).to_owned())
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Jobs::Table)
                    .drop_column(Jobs::LeaseToken)
                    .to_owned(),
            )
            .await
    }
}

/// Each webhook's processing history: one row per status change, written in the same transaction
/// as the change.
struct M0003WebhookEvents;

impl MigrationName for M0003WebhookEvents {
    fn name(&self) -> &str {
        "m0003_webhook_events"
    }
}

// The trait is declared with an elided lifetime; naming it here would not match.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for M0003WebhookEvents {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(WebhookEvents::Table)
                    .if_not_exists()
                    .col(big_pk_auto(WebhookEvents::Id))
                    .col(big_integer(WebhookEvents::WebhookId))
                    .col(big_integer(WebhookEvents::At))
                    .col(string(WebhookEvents::Status))
                    .col(text_null(WebhookEvents::Detail))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_webhook_events_webhook")
                    .table(WebhookEvents::Table)
                    .if_not_exists()
                    .col(WebhookEvents::WebhookId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(WebhookEvents::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Shipments {
    Table,
    Id,
    OrderId,
    VendorId,
    Method,
    Status,
    DeliveryId,
    Request,
    Message,
    Notes,
    LabelPdf,
    TrackingStatusCreatedAt,
    TrackingUpdatedAt,
    MailedAt,
    CreatedAt,
    UpdatedAt,
}

/// Shipments: one per (order, vendor), unique, with the request sent, the carrier's answer and
/// the label PDF kept in the database (the original wrote it to the web dyno's disk).
struct M0004Shipments;

impl MigrationName for M0004Shipments {
    fn name(&self) -> &str {
        "m0004_shipments"
    }
}

// The trait is declared with an elided lifetime; naming it here would not match.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for M0004Shipments {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Shipments::Table)
                    .if_not_exists()
                    .col(big_pk_auto(Shipments::Id))
                    .col(big_integer(Shipments::OrderId))
                    .col(big_integer(Shipments::VendorId))
                    .col(string(Shipments::Method))
                    .col(string(Shipments::Status))
                    .col(string(Shipments::DeliveryId).default(""))
                    .col(text(Shipments::Request).default(""))
                    .col(text(Shipments::Message).default(""))
                    .col(text(Shipments::Notes).default(""))
                    .col(blob_null(Shipments::LabelPdf))
                    .col(string_null(Shipments::TrackingStatusCreatedAt))
                    .col(big_integer_null(Shipments::TrackingUpdatedAt))
                    .col(big_integer_null(Shipments::MailedAt))
                    .col(big_integer(Shipments::CreatedAt))
                    .col(big_integer(Shipments::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_shipments_order_vendor")
                    .table(Shipments::Table)
                    .if_not_exists()
                    .col(Shipments::OrderId)
                    .col(Shipments::VendorId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_shipments_status")
                    .table(Shipments::Table)
                    .if_not_exists()
                    .col(Shipments::Status)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Shipments::Table).to_owned())
            .await
    }
}
