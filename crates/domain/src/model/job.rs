//! Background jobs: what the worker runs.

use super::shipment::ShipmentStatus;
use super::webhook::WebhookId;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A queue's identifier of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub i64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What a job does. Serialised as JSON in the queue, tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobKind {
    /// Process a stored webhook (an order or a customer).
    ProcessWebhook {
        /// The inbox id of the webhook.
        webhook_id: WebhookId,
    },
    /// Mails a booked shipment's label to its vendor (once: a mailed shipment is skipped).
    SendLabelMail {
        /// The shipment.
        shipment_id: i64,
    },
    /// Mails a shipment's label again (an operator's `lazona labels resend`), to `to` or, without
    /// it, to the vendor's address as the shop has it now; records the mail on the shipment (its
    /// mail state back to `sent`) and among its mail events.
    ResendLabel {
        /// The shipment.
        shipment_id: i64,
        /// Where to, instead of the vendor's address.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<String>,
    },
    /// Mails a refused booking's error to the admins (once).
    SendBookingErrorMail {
        /// The shipment.
        shipment_id: i64,
    },
    /// Enqueues a `TrackShipment` for every shipment not delivered yet (the periodic poll).
    TrackShipments,
    /// Polls the carrier's tracking for one shipment; mails the admins when it changed.
    TrackShipment {
        /// The shipment.
        shipment_id: i64,
    },
    /// The operator's "retry shipment": fetches the order again from the shop and books the
    /// shipment's vendor again. Without `force` only a refused booking (`ERROR_FROM_BODY`) is
    /// booked again; with it, a shipment that has a label gets a second one.
    RetryShipment {
        /// The shipment.
        shipment_id: i64,
        /// Book even though a booking was made already.
        #[serde(default)]
        force: bool,
        /// The booking attempt the operator's request took
        /// ([`crate::ports::ShipmentStore::reserve_booking`]) and the status the shipment had
        /// before; the job books only while the shipment still holds that attempt. `None` (a
        /// replay's retries, jobs from before attempts existed): the job takes one itself.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        held: Option<HeldBooking>,
    },
    /// Asks the shop for the orders modified since the last pass and takes in, as webhooks,
    /// those the inbox never received; checks the shop's webhook configurations (the periodic
    /// reconciliation, `reconcile.interval_secs`).
    Reconcile,
    /// Writes a booked shipment's tracking note (store, barcode, tracking link) on its order in
    /// the shop, seen by the customer; once per barcode.
    NoteShipment {
        /// The shipment.
        shipment_id: i64,
    },
    /// Sets the order's `_lazona_shipments` meta in the shop to its shipments as they are.
    SyncOrderMeta {
        /// The order.
        order_id: i64,
    },
    /// Sets the order `completed` in the shop when every carrier shipment of it is delivered
    /// (`shop.complete_on_delivery`).
    CompleteOrder {
        /// The order.
        order_id: i64,
    },
    /// Tells the alerts that are due (mail to the admins, the outbound webhook), one by one or
    /// as a digest ([`crate::service::alerts::AlertDelivery`]); nudged by new alerts.
    DeliverAlerts,
    /// The periodic alerts check: raises what only time shows (a booking stuck, a silent shop),
    /// resolves alerts whose condition ended, then delivers
    /// ([`crate::service::alerts::AlertCheck`]).
    CheckAlerts,
    /// Deletes the events older than the retention (`events.retention_days`): the hourly
    /// schedule of workers that record events.
    PruneEvents,
    /// Clears the personal data past its retention (`[retention]`): webhook bodies, labels,
    /// dead jobs ([`crate::service::retention::Retention::prune_once`]).
    Prune,
    /// Does nothing: measures the queue and checks that workers are alive. `tag` lets a caller
    /// tell its no-ops apart.
    Noop {
        /// Any number.
        tag: u64,
    },
}

/// A booking attempt held for a [`JobKind::RetryShipment`] job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldBooking {
    /// The shipment's booking attempt the job may book with.
    pub attempt: i64,
    /// The status the shipment goes back to when nothing is booked (the carrier cannot be
    /// reached, the order cannot be booked any more).
    pub previous: ShipmentStatus,
}

impl JobKind {
    /// A short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            JobKind::ProcessWebhook { .. } => "process_webhook",
            JobKind::SendLabelMail { .. } => "send_label_mail",
            JobKind::ResendLabel { .. } => "resend_label",
            JobKind::SendBookingErrorMail { .. } => "send_booking_error_mail",
            JobKind::TrackShipments => "track_shipments",
            JobKind::TrackShipment { .. } => "track_shipment",
            JobKind::RetryShipment { .. } => "retry_shipment",
            JobKind::Reconcile => "reconcile",
            JobKind::NoteShipment { .. } => "note_shipment",
            JobKind::SyncOrderMeta { .. } => "sync_order_meta",
            JobKind::CompleteOrder { .. } => "complete_order",
            JobKind::DeliverAlerts => "deliver_alerts",
            JobKind::CheckAlerts => "check_alerts",
            JobKind::PruneEvents => "prune_events",
            JobKind::Prune => "prune",
            JobKind::Noop { .. } => "noop",
        }
    }
}

/// A job to enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    /// What to do.
    pub kind: JobKind,
    /// Not before this time (`None`: now).
    pub run_at: Option<DateTime<Utc>>,
}

/// A job reserved by a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Its id.
    pub id: JobId,
    /// What to do.
    pub kind: JobKind,
    /// How many times it has been reserved, this time included.
    pub attempt: u32,
    /// This reservation's token: completing, retrying or dead-lettering with a lease that has
    /// since been given to another worker fails with `QueueError::LeaseLost`.
    pub lease: Lease,
}

/// An opaque reservation token, meaningful to the queue that issued it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Lease(pub String);

/// A dead-lettered job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadJob {
    /// Its id.
    pub id: JobId,
    /// What it was to do.
    pub kind: JobKind,
    /// Attempts made.
    pub attempts: u32,
    /// Why it was given up.
    pub error: String,
    /// When it was given up.
    pub failed_at: DateTime<Utc>,
}
