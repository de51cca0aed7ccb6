//! The ports: what the use cases need from the outside world. Adapters implement them; tests use
//! the mockall doubles (`feature = "mocks"`) or the in-memory adapters.
//!
//! Every method's `# Errors` section says which variant an implementation must return when.

use crate::error::{
    CrmError, EventError, HookError, InboxError, MailError, QueueError, ShippingError, ShopError,
    StoreError, TokenError, UnshippableParcel,
};
use crate::model::shipment::VendorProfile;
use crate::model::{
    Alert, AlertChannel, AlertFilter, AlertKind, ApiToken, AuditEntry, AuditFilter, BookingOutcome,
    BookingRecorded, Claim, DeadJob, Event, EventId, Job, JobId, KindCounts, MailEvent,
    MailEventFilter, MailEventStatus, MailUpdate, NewAlert, NewAuditEntry, NewEvent, NewJob,
    NewMailEvent, NewWebhook, Order, OrderNote, OrderPage, OrderUpdate, Parcel, ParcelBooking,
    PastBooking, Principal, PruneReason, Raised, Recorded, RecordedMailEvent, ShipmentFilter,
    ShipmentMethod, ShipmentRecord, ShipmentStatus, ShopWebhook, TokenSecret, TrackingReport,
    Webhook, WebhookEvent, WebhookFilter, WebhookId, WebhookStatus, WebhookSummary,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::time::Duration;

/// The durable inbox of webhooks.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait WebhookInbox: Send + Sync {
    /// Stores a webhook and, when its status is `Queued`, enqueues its `ProcessWebhook` job **in
    /// the same transaction**. Returns only once both are durable. A webhook whose delivery id is
    /// already stored is not written again and gets [`crate::model::RecordOutcome::Duplicate`]
    /// with the first one's id.
    ///
    /// # Errors
    /// [`InboxError::Unavailable`] when the database cannot be reached in time: nothing was
    /// stored. [`InboxError::ShuttingDown`] after shutdown began.
    async fn record(&self, webhook: NewWebhook) -> Result<Recorded, InboxError>;

    /// One stored webhook, body included.
    ///
    /// # Errors
    /// [`InboxError::Unavailable`] when the database cannot be reached.
    async fn get(&self, id: WebhookId) -> Result<Option<Webhook>, InboxError>;

    /// Stored webhooks matching the filter, newest first, without bodies.
    ///
    /// # Errors
    /// [`InboxError::Unavailable`] when the database cannot be reached.
    async fn list(&self, filter: &WebhookFilter) -> Result<Vec<WebhookSummary>, InboxError>;

    /// Moves a webhook from status `from` to `to`, recording `error`, and appends the move to the
    /// webhook's history, atomically. Returns `false`, changing nothing, when the webhook is not
    /// in `from` (another worker got there first): handlers use this compare-and-set to make their
    /// effect happen once.
    ///
    /// # Errors
    /// [`InboxError::Unavailable`] when the database cannot be reached.
    async fn transition(
        &self,
        id: WebhookId,
        from: WebhookStatus,
        to: WebhookStatus,
        error: Option<String>,
    ) -> Result<bool, InboxError>;

    /// The webhook's processing history, oldest first.
    ///
    /// # Errors
    /// [`InboxError::Unavailable`] when the database cannot be reached.
    async fn history(&self, id: WebhookId) -> Result<Vec<WebhookEvent>, InboxError>;

    /// How many webhooks are stored.
    ///
    /// # Errors
    /// [`InboxError::Unavailable`] when the database cannot be reached.
    async fn count(&self) -> Result<u64, InboxError>;

    /// For each of `order_ids` the inbox holds an order webhook of: the latest
    /// [`NewWebhook::subject_modified`] among them (`None` when none of them carries one). An
    /// order absent from the map was never received. The reconciliation asks this once per page
    /// of the shop's listing.
    ///
    /// # Errors
    /// [`InboxError::Unavailable`] when the database cannot be reached.
    async fn order_versions(
        &self,
        order_ids: &[i64],
    ) -> Result<HashMap<i64, Option<DateTime<Utc>>>, InboxError>;

    /// Checks that the storage answers (for `/readyz`).
    ///
    /// # Errors
    /// [`InboxError::Unavailable`] when it does not.
    async fn ping(&self) -> Result<(), InboxError>;

    /// Clears the body and headers of up to `limit` webhooks received before `before` whose
    /// body is still kept, in one short transaction, recording when and why
    /// ([`PruneReason::Retention`]); the rows, statuses and histories stay. Returns how many:
    /// fewer than `limit` when no more are due.
    ///
    /// # Errors
    /// [`InboxError::Unavailable`] when the database cannot be reached.
    async fn prune_bodies(&self, before: DateTime<Utc>, limit: usize) -> Result<u64, InboxError>;

    /// Up to `limit` webhooks with an id above `after`, oldest first, bodies included, whose
    /// kept body contains `needle` (without regard to ASCII case where the storage can): an
    /// erasure's candidates, which it confirms by reading each body.
    ///
    /// # Errors
    /// [`InboxError::Unavailable`] when the database cannot be reached.
    async fn mentioning(
        &self,
        needle: &str,
        after: WebhookId,
        limit: usize,
    ) -> Result<Vec<Webhook>, InboxError>;

    /// Clears the body and headers of the webhooks `ids` whose body is still kept, recording
    /// when and `why`; returns how many it cleared.
    ///
    /// # Errors
    /// [`InboxError::Unavailable`] when the database cannot be reached.
    async fn clear_bodies(&self, ids: &[WebhookId], why: PruneReason) -> Result<u64, InboxError>;
}

/// Queue depth and age, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueStats {
    /// Jobs waiting (due now or later) or reserved.
    pub pending: u64,
    /// Jobs reserved by a worker right now.
    pub running: u64,
    /// Jobs dead-lettered.
    pub dead: u64,
    /// When the oldest job still waiting became due.
    pub oldest_due: Option<DateTime<Utc>>,
}

/// A queue of background jobs.
///
/// The contract every backend meets (`adapters::testing::queue_conformance` checks it):
/// - delivery is at least once: every enqueued job is reserved until it is completed or
///   dead-lettered; handlers are idempotent;
/// - a reserved job is not reserved again before its lease ends (so two workers never run it at
///   the same time while its holder extends the lease);
/// - a job whose lease ends without an outcome is reserved again, its `attempt` increased;
/// - a completed job never comes back; a retried job comes back not before its time;
/// - a dead job comes back only through [`JobQueue::requeue_dead`];
/// - the order of delivery is not promised.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Enqueues a job on its own (jobs for webhooks are enqueued by [`WebhookInbox::record`]).
    ///
    /// # Errors
    /// [`QueueError::Unavailable`] when the backend cannot be reached.
    async fn enqueue(&self, job: NewJob) -> Result<JobId, QueueError>;

    /// Enqueues `job` for the periodic schedule `name` if its tick is due, and moves the schedule
    /// `every` ahead. Across any number of workers one call per tick wins; it returns whether this
    /// call did.
    ///
    /// # Errors
    /// [`QueueError::Unavailable`] when the backend cannot be reached.
    async fn enqueue_periodic(
        &self,
        name: &str,
        every: Duration,
        job: NewJob,
    ) -> Result<bool, QueueError>;

    /// Reserves up to `max` due jobs for `lease`. When none is due, waits up to `wait` for one
    /// (woken by new jobs where the backend can) and returns what is due then, maybe nothing.
    ///
    /// # Errors
    /// [`QueueError::Unavailable`] when the backend cannot be reached.
    async fn reserve(
        &self,
        max: usize,
        lease: Duration,
        wait: Duration,
    ) -> Result<Vec<Job>, QueueError>;

    /// Extends the leases of jobs still running to `lease` from now. Jobs whose lease was lost
    /// are skipped.
    ///
    /// # Errors
    /// [`QueueError::Unavailable`] when the backend cannot be reached.
    async fn extend(&self, jobs: &[Job], lease: Duration) -> Result<(), QueueError>;

    /// Acknowledges jobs that are done: they never come back. A job whose lease was lost is
    /// skipped (its new holder will run it again: handlers are idempotent).
    ///
    /// # Errors
    /// [`QueueError::Unavailable`] when the backend cannot be reached.
    async fn complete(&self, jobs: &[Job]) -> Result<(), QueueError>;

    /// Puts a job back, due at `at`, recording the error.
    ///
    /// # Errors
    /// [`QueueError::LeaseLost`] when the job is no longer held by this reservation.
    async fn retry(&self, job: &Job, at: DateTime<Utc>, error: &str) -> Result<(), QueueError>;

    /// Moves a job to the dead letters with its reason.
    ///
    /// # Errors
    /// [`QueueError::LeaseLost`] when the job is no longer held by this reservation.
    async fn dead_letter(&self, job: &Job, error: &str) -> Result<(), QueueError>;

    /// Dead jobs, most recent first.
    ///
    /// # Errors
    /// [`QueueError::Unavailable`] when the backend cannot be reached.
    async fn dead_jobs(&self, limit: usize) -> Result<Vec<DeadJob>, QueueError>;

    /// Puts a dead job back in the queue, due now, with its attempts reset.
    ///
    /// # Errors
    /// [`QueueError::NotFound`] when there is no dead job with this id.
    async fn requeue_dead(&self, id: JobId) -> Result<(), QueueError>;

    /// Depth and age.
    ///
    /// # Errors
    /// [`QueueError::Unavailable`] when the backend cannot be reached.
    async fn stats(&self) -> Result<QueueStats, QueueError>;

    /// Whether the queue still holds the job `id` (waiting, running or dead): `false` once it
    /// completed. The alerts check asks it of dead-lettered jobs an operator requeued. The
    /// default says it always does (a backend that cannot tell never resolves such alerts).
    ///
    /// # Errors
    /// [`QueueError::Unavailable`] when the backend cannot be reached.
    async fn holds(&self, id: JobId) -> Result<bool, QueueError> {
        let _ = id;
        Ok(true)
    }

    /// Deletes up to `limit` dead jobs given up before `before`, in one short transaction;
    /// returns how many (fewer than `limit` when no more are due).
    ///
    /// # Errors
    /// [`QueueError::Unavailable`] when the backend cannot be reached.
    async fn prune_dead(&self, before: DateTime<Utc>, limit: usize) -> Result<u64, QueueError>;
}

/// The shipments: one per (order, vendor), unique in storage.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait ShipmentStore: Send + Sync {
    /// Creates the shipment of `(order_id, vendor_id)` in status `BOOKING` unless one exists.
    /// Two callers racing on the same pair: exactly one gets [`Claim::Claimed`].
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database cannot be reached.
    async fn claim(
        &self,
        order_id: i64,
        vendor_id: i64,
        method: ShipmentMethod,
    ) -> Result<Claim, StoreError>;

    /// Deletes a shipment still in `BOOKING` from its claim (booking attempt 0: its booking was
    /// not attempted, or failed in a way that made no shipment), so that a retry can claim it
    /// again. Anything else is left alone.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database cannot be reached.
    async fn release(&self, id: i64) -> Result<(), StoreError>;

    /// Records what a booking made with booking attempt `attempt` came to (status, barcode,
    /// request, message, label), saved before any e-mail is sent. While the shipment holds
    /// `attempt`, the booking goes on it ([`BookingRecorded::Current`]) and a barcode it held
    /// before is kept among its past bookings; otherwise (a later attempt took the shipment)
    /// the booking is kept among its past bookings ([`BookingRecorded::Aside`]). Either way no
    /// barcode the carrier returned is lost.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] for an unknown id.
    async fn record_booking(
        &self,
        id: i64,
        attempt: i64,
        outcome: &BookingOutcome,
    ) -> Result<BookingRecorded, StoreError>;

    /// Takes a shipment to book it again (an operator's retry): compare-and-set from status
    /// `from` and booking attempt `attempt` (what the caller saw) to `BOOKING` with the next
    /// attempt, refused for a shipment `BOOKING` since `stale_before` or later (a booking may be
    /// in flight). Of two callers racing, one gets the shipment as it now is; `None` for the
    /// other and whenever the shipment is not as seen.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database cannot be reached.
    async fn reserve_booking(
        &self,
        id: i64,
        from: ShipmentStatus,
        attempt: i64,
        stale_before: DateTime<Utc>,
    ) -> Result<Option<ShipmentRecord>, StoreError>;

    /// The holder of booking attempt `attempt` starts (or resumes) booking: a shipment with that
    /// attempt, `BOOKING` or back in `from` (its booking put off), is set `BOOKING` now (which
    /// renews the lease). `false` when the shipment no longer holds the attempt: book nothing.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database cannot be reached.
    async fn start_booking(
        &self,
        id: i64,
        attempt: i64,
        from: ShipmentStatus,
    ) -> Result<bool, StoreError>;

    /// The holder of booking attempt `attempt` booked nothing: a shipment `BOOKING` with that
    /// attempt goes back to status `to` (keeping the attempt, so that the holder may resume).
    /// `false` when it was not so.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database cannot be reached.
    async fn end_booking(
        &self,
        id: i64,
        attempt: i64,
        to: ShipmentStatus,
    ) -> Result<bool, StoreError>;

    /// The bookings the carrier made for a shipment that it no longer (or never) held, oldest
    /// first.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database cannot be reached.
    async fn past_bookings(&self, id: i64) -> Result<Vec<PastBooking>, StoreError>;

    /// The label PDF of one of a shipment's past bookings, if kept.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database cannot be reached.
    async fn past_label(&self, id: i64, past_id: i64) -> Result<Option<Vec<u8>>, StoreError>;

    /// Records a tracking poll: the new status and message, the notes and the event's date. A
    /// shipment `BOOKING` (a retry in flight) is left as it is and returned so. When the status
    /// or the message changes, the same write sets `tracking_unmailed_since` (unless already
    /// set): the change's mail to the admins is then due until
    /// [`ShipmentStore::mark_tracking_mailed`].
    ///
    /// # Errors
    /// [`StoreError::NotFound`] for an unknown id.
    async fn record_tracking(
        &self,
        id: i64,
        status: ShipmentStatus,
        message: &str,
        notes: &str,
        event_date: Option<String>,
    ) -> Result<ShipmentRecord, StoreError>;

    /// The tracking change's mail was sent: clears `tracking_unmailed_since` if it still is
    /// `since` (a later change stays due). Returns whether it did.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database cannot be reached.
    async fn mark_tracking_mailed(&self, id: i64, since: DateTime<Utc>)
    -> Result<bool, StoreError>;

    /// Marks the shipment's mail (its label to the vendor, or its refusal to the admins) as sent;
    /// returns the shipment as recorded.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] for an unknown id.
    async fn mark_mailed(&self, id: i64) -> Result<ShipmentRecord, StoreError>;

    /// Sets the shipment's label mail (`mail_message_id`, `mail_state`, `mail_state_at`, and
    /// `mailed_at` when `update.mailed`) if it still is as the caller saw it
    /// (`update.seen_message_id` and `update.seen_state`): a compare-and-set, so that a relay's
    /// report and the record of a sending racing on one shipment do not undo each other. Returns
    /// the shipment as it now is, `None` when it was not as seen (read it again and decide again).
    ///
    /// # Errors
    /// [`StoreError::NotFound`] for an unknown id.
    async fn update_mail(
        &self,
        id: i64,
        update: &MailUpdate,
    ) -> Result<Option<ShipmentRecord>, StoreError>;

    /// One shipment.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database cannot be reached.
    async fn get(&self, id: i64) -> Result<Option<ShipmentRecord>, StoreError>;

    /// The label PDF of a shipment, if stored.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database cannot be reached.
    async fn label(&self, id: i64) -> Result<Option<Vec<u8>>, StoreError>;

    /// The shipments of an order.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database cannot be reached.
    async fn of_order(&self, order_id: i64) -> Result<Vec<ShipmentRecord>, StoreError>;

    /// Sets a shipment's status to `to` if it is `from` (compare-and-set); `false` when it was
    /// not (another worker or operator changed it meanwhile).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database cannot be reached.
    async fn transition(
        &self,
        id: i64,
        from: ShipmentStatus,
        to: ShipmentStatus,
    ) -> Result<bool, StoreError>;

    /// Shipments matching `filter`, newest first.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database cannot be reached.
    async fn list(&self, filter: &ShipmentFilter) -> Result<Vec<ShipmentRecord>, StoreError>;

    /// Records that the shipments of `order_id` with a booking (a barcode) were seen withdrawn
    /// in the shop (the order arrived `cancelled`, `refunded` or `failed`): sets their
    /// `order_withdrawn` to `status` where it is not set yet, and returns those it set now.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database cannot be reached.
    async fn mark_withdrawn(
        &self,
        order_id: i64,
        status: &str,
    ) -> Result<Vec<ShipmentRecord>, StoreError>;

    /// Records that the tracking note of `barcode` was written on the shipment's order in the
    /// shop; returns the shipment as recorded.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] for an unknown id.
    async fn mark_noted(&self, id: i64, barcode: &str) -> Result<ShipmentRecord, StoreError>;

    /// Shipments to poll: with a barcode, not delivered, and not `BOOKING`.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database cannot be reached.
    async fn to_track(&self) -> Result<Vec<ShipmentRecord>, StoreError>;

    /// Clears, in one short transaction, the label PDF (its past bookings' too) and the carrier
    /// request of up to `limit` shipments not cleared yet that were delivered (last changed)
    /// before `delivered_before`, or never delivered and created before `booked_before`
    /// (`None`: none of that kind), recording when ([`PruneReason::Retention`]). A shipment
    /// `BOOKING` is left alone. The barcode, statuses and messages stay. Returns how many.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database cannot be reached.
    async fn prune_labels(
        &self,
        delivered_before: Option<DateTime<Utc>>,
        booked_before: Option<DateTime<Utc>>,
        limit: usize,
    ) -> Result<u64, StoreError>;

    /// Clears the label PDF (its past bookings' too) and the carrier request of the shipments
    /// `ids`, recording when and `why`; returns how many had anything left to clear.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database cannot be reached.
    async fn clear_labels(&self, ids: &[i64], why: PruneReason) -> Result<u64, StoreError>;
}

/// Small named values the connector keeps between runs and shares between processes: the
/// reconciliation's cursor, the last state reported of each shop webhook. (No mock: tests use
/// `adapters::memory::MemoryStateStore`.)
#[async_trait]
pub trait StateStore: Send + Sync {
    /// The value of `key`, if set.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database cannot be reached.
    async fn get(&self, key: &str) -> Result<Option<String>, StoreError>;

    /// Sets `key` to `value` if it holds `expected` now (`None`: if it is not set); returns
    /// whether it did. Of two callers racing from the same value, one wins.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database cannot be reached.
    async fn compare_and_set(
        &self,
        key: &str,
        expected: Option<&str>,
        value: &str,
    ) -> Result<bool, StoreError>;
}

/// The alerts ([`crate::model::alert`]), kept in the database: the outbox of their delivery too
/// (each alert carries whether each channel still has to tell it).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait AlertStore: Send + Sync {
    /// Raises an alert: opens one for its (kind, subject), due on every channel, unless one is
    /// open; then that one is counted once more (its `last_seen` and `detail` updated) and
    /// nothing becomes due again. Of two callers racing on the same (kind, subject), one opens.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database cannot be reached.
    async fn raise(&self, alert: &NewAlert) -> Result<Raised, StoreError> {
        self.raise_times(alert, 1).await
    }

    /// [`AlertStore::raise`], counting `times` raises at once (a storm's folded repeats).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database cannot be reached.
    async fn raise_times(&self, alert: &NewAlert, times: u64) -> Result<Raised, StoreError>;

    /// Resolves the open alert of (kind, subject), if any, recording `by`; returns it.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database cannot be reached.
    async fn resolve(
        &self,
        kind: AlertKind,
        subject: &str,
        by: &str,
    ) -> Result<Option<Alert>, StoreError>;

    /// Resolves the alert `id` if it is open, recording `by`; returns it as it now is (`None` for
    /// an unknown id).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database cannot be reached.
    async fn resolve_id(&self, id: i64, by: &str) -> Result<Option<Alert>, StoreError>;

    /// One alert.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database cannot be reached.
    async fn get(&self, id: i64) -> Result<Option<Alert>, StoreError>;

    /// Alerts matching `filter`, newest first (by `last_seen`).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database cannot be reached.
    async fn list(&self, filter: &AlertFilter) -> Result<Vec<Alert>, StoreError>;

    /// How many alerts are open, per kind (kinds with none left out).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database cannot be reached.
    async fn open_counts(&self) -> Result<Vec<(AlertKind, u64)>, StoreError>;

    /// The subjects of the open alerts of `kind` (for the checks that resolve them).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database cannot be reached.
    async fn open_subjects(&self, kind: AlertKind) -> Result<Vec<String>, StoreError>;

    /// Up to `limit` alerts `channel` still has to tell, oldest first.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database cannot be reached.
    async fn due(&self, channel: AlertChannel, limit: usize) -> Result<Vec<Alert>, StoreError>;

    /// How many alerts `channel` still has to tell, per kind, and the highest such id.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database cannot be reached.
    #[allow(
        clippy::type_complexity,
        reason = "counts per kind and an id, said once"
    )]
    async fn due_counts(
        &self,
        channel: AlertChannel,
    ) -> Result<(KindCounts, Option<i64>), StoreError>;

    /// How many alerts were opened at `since` or later.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database cannot be reached.
    async fn opened_since(&self, since: DateTime<Utc>) -> Result<u64, StoreError>;

    /// `channel` told the alerts with ids `from..=to` that it still had to: they are no longer
    /// due on it.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database cannot be reached.
    async fn delivered(&self, channel: AlertChannel, from: i64, to: i64) -> Result<(), StoreError>;

    /// Replaces the detail of every alert about one of `subjects` with `note` (an erasure: a
    /// refused booking's alert quotes the carrier request, the receiver's address included);
    /// returns how many it changed.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database cannot be reached.
    async fn erase_details(&self, subjects: &[String], note: &str) -> Result<u64, StoreError>;

    /// Replaces with `note` the detail of at most `limit` alerts last seen before `before`
    /// (the retention: a detail may quote personal data); returns how many it changed.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database cannot be reached.
    async fn prune_details(
        &self,
        before: DateTime<Utc>,
        note: &str,
        limit: usize,
    ) -> Result<u64, StoreError>;
}

/// The outbound webhook of alerts (`alerts.webhook_url`): a JSON document with a `text` field
/// (shown as is by Slack, Mattermost or Rocket.Chat incoming webhooks) plus the structured
/// fields, signed as Standard Webhooks does.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait AlertHook: Send + Sync {
    /// Posts `message`, identified by `id` (the same id for a repeat of the same delivery, so
    /// that the receiver can drop it).
    ///
    /// # Errors
    /// [`HookError::Unavailable`] when the receiver cannot be reached or answers 5xx, 408 or 429
    /// (to be retried), [`HookError::Rejected`] for another refusal.
    async fn post(&self, id: &str, message: &serde_json::Value) -> Result<(), HookError>;
}

/// The operations API's tokens. Only a hash of each secret is stored; the secret is shown once,
/// when the token is created.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait TokenStore: Send + Sync {
    /// Creates a token for `principal`, with a new secret drawn from the operating system's
    /// random generator; stores its hash and returns the secret, which cannot be had again.
    ///
    /// # Errors
    /// [`TokenError::Unavailable`] when the database cannot be reached.
    async fn create(
        &self,
        name: &str,
        principal: Principal,
    ) -> Result<(ApiToken, TokenSecret), TokenError>;

    /// Every token, revoked ones included, oldest first.
    ///
    /// # Errors
    /// [`TokenError::Unavailable`] when the database cannot be reached.
    async fn list(&self) -> Result<Vec<ApiToken>, TokenError>;

    /// Revokes a token: from now on it is refused. Revoking a revoked token changes nothing.
    ///
    /// # Errors
    /// [`TokenError::NotFound`] for an unknown id.
    async fn revoke(&self, id: i64) -> Result<ApiToken, TokenError>;

    /// The token the presented secret is (its id and name: who acts, for the audit log):
    /// `None` when it is unknown or revoked. Records the use (at most once a minute per token).
    ///
    /// # Errors
    /// [`TokenError::Unavailable`] when the database cannot be reached.
    async fn identify(&self, presented: &str) -> Result<Option<ApiToken>, TokenError>;

    /// Whom the presented secret acts for ([`TokenStore::identify`]'s principal): `None` when it
    /// is unknown or revoked. Records the use.
    ///
    /// # Errors
    /// [`TokenError::Unavailable`] when the database cannot be reached.
    async fn authenticate(&self, presented: &str) -> Result<Option<Principal>, TokenError> {
        Ok(self.identify(presented).await?.map(|t| t.principal))
    }
}

/// A carrier that books parcels and tracks them: Koiki (`adapters::koiki`), or one of an
/// embedder's own.
///
/// The use cases first ask [`ShippingProvider::request_for`] each parcel of an order (what the
/// carrier will be sent, kept on the parcel's shipment; or why it cannot take the parcel), then
/// book those it can take in one [`ShippingProvider::book`].
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait ShippingProvider: Send + Sync {
    /// The request this carrier sends to book `parcel`, as text: it is kept on the parcel's
    /// shipment for the operators (without credentials). No I/O. The default is the parcel
    /// itself, as pretty JSON.
    ///
    /// # Errors
    /// [`UnshippableParcel`] when the carrier cannot take the parcel as it is (its data does not
    /// fit the carrier's API): the parcel is not booked, and its shipment records the refusal.
    fn request_for(&self, parcel: &Parcel) -> Result<String, UnshippableParcel> {
        Ok(serde_json::to_string_pretty(parcel).unwrap_or_default())
    }

    /// Books each parcel, in one call. The answers are in request order: the i-th answers the
    /// i-th parcel.
    ///
    /// # Errors
    /// [`ShippingError::Unavailable`] when the booking certainly did not happen (the carrier
    /// could not be reached, 429, 503), so it can be sent again;
    /// [`ShippingError::Indeterminate`] when it was sent and may have happened (no answer in
    /// time, a connection broken after sending, another 5xx); [`ShippingError::Rejected`] for
    /// other 4xx; [`ShippingError::InvalidResponse`] for a body that does not follow the API.
    async fn book(&self, parcels: &[Parcel]) -> Result<Vec<ParcelBooking>, ShippingError>;

    /// The latest tracking state of a parcel, by its barcode.
    ///
    /// # Errors
    /// [`ShippingError::Unavailable`] for timeouts, connection errors, 5xx and 429 (a tracking
    /// call changes nothing, so it is always safe to repeat); otherwise as for
    /// [`ShippingProvider::book`].
    async fn track(&self, barcode: &str) -> Result<TrackingReport, ShippingError>;
}

/// The cooperative's CRM.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait Crm: Send + Sync {
    /// The relationship roles (`^member^`, ...) of the person with this e-mail: those of their
    /// Account and of their Contact together, each once; empty when the CRM does not know them.
    /// Whether they make a member is the domain's decision
    /// ([`crate::service::customers::is_member`]).
    ///
    /// # Errors
    /// [`CrmError::Authentication`] for bad credentials, [`CrmError::Unavailable`] when the CRM
    /// cannot be reached, [`CrmError::InvalidResponse`] when it answers outside its API.
    async fn membership_roles(&self, email: &str) -> Result<Vec<String>, CrmError>;
}

/// A user account of the shop (a customer, a member, a vendor), with the roles that decide what
/// the shop lets them do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShopUser {
    /// The user id (a vendor's id is its user's).
    pub id: i64,
    /// The e-mail.
    pub email: String,
    /// The roles (`customer`, `partner`, ...).
    pub roles: Vec<String>,
}

/// The shop: its vendors, its user accounts and its orders.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait Shop: Send + Sync {
    /// A vendor's sender data (its store settings and its user's e-mail).
    ///
    /// # Errors
    /// [`ShopError::NotFound`] for an unknown vendor, [`ShopError::Unavailable`] when the shop
    /// cannot be reached.
    async fn vendor(&self, vendor_id: i64) -> Result<VendorProfile, ShopError>;

    /// An order, fetched again from the shop (for retries).
    ///
    /// # Errors
    /// As for [`Shop::vendor`].
    async fn order(&self, order_id: i64) -> Result<Order, ShopError>;

    /// The shop's user with this e-mail, if any.
    ///
    /// # Errors
    /// [`ShopError::Unavailable`] when the shop cannot be reached.
    async fn user_by_email(&self, email: &str) -> Result<Option<ShopUser>, ShopError>;

    /// Replaces a shop user's roles.
    ///
    /// # Errors
    /// As for [`Shop::vendor`].
    async fn set_user_roles(&self, user_id: i64, roles: &[String]) -> Result<ShopUser, ShopError>;

    /// Page `page` (from 1) of the orders modified after `after`, oldest modification first,
    /// `per_page` at most (`GET wc/v3/orders?modified_after=...&dates_are_gmt=true&orderby=
    /// modified&order=asc`). The default says the shop does not list orders.
    ///
    /// # Errors
    /// [`ShopError::Unavailable`] when the shop cannot be reached; [`ShopError::Rejected`] when
    /// it refuses (bad credentials) or cannot list orders.
    async fn orders_modified_after(
        &self,
        after: DateTime<Utc>,
        page: u32,
        per_page: u32,
    ) -> Result<OrderPage, ShopError> {
        let _ = (after, page, per_page);
        Err(unsupported("listing orders"))
    }

    /// The shop's webhook configurations (`GET wc/v3/webhooks`). The default says the shop has
    /// none to show.
    ///
    /// # Errors
    /// As for [`Shop::orders_modified_after`].
    async fn webhooks(&self) -> Result<Vec<ShopWebhook>, ShopError> {
        Err(unsupported("listing webhooks"))
    }

    /// Sets a webhook configuration's status (`active`) and returns it as it now is.
    ///
    /// # Errors
    /// As for [`Shop::vendor`].
    async fn set_webhook_status(&self, id: i64, status: &str) -> Result<ShopWebhook, ShopError> {
        let _ = (id, status);
        Err(unsupported("changing webhooks"))
    }

    /// The notes of an order.
    ///
    /// # Errors
    /// As for [`Shop::vendor`].
    async fn order_notes(&self, order_id: i64) -> Result<Vec<OrderNote>, ShopError> {
        let _ = order_id;
        Err(unsupported("reading order notes"))
    }

    /// Adds a note to an order, seen by the customer when `customer_note`; returns it.
    ///
    /// # Errors
    /// As for [`Shop::vendor`].
    async fn add_order_note(
        &self,
        order_id: i64,
        note: &str,
        customer_note: bool,
    ) -> Result<OrderNote, ShopError> {
        let _ = (order_id, note, customer_note);
        Err(unsupported("writing order notes"))
    }

    /// Changes an order (its status, meta entries).
    ///
    /// # Errors
    /// As for [`Shop::vendor`].
    async fn update_order(&self, order_id: i64, update: &OrderUpdate) -> Result<(), ShopError> {
        let _ = (order_id, update);
        Err(unsupported("updating orders"))
    }
}

fn unsupported(what: &str) -> ShopError {
    ShopError::Rejected {
        reason: format!("this shop adapter does not support {what}"),
    }
}

/// A file attached to an e-mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// File name shown to the recipient.
    pub filename: String,
    /// MIME type.
    pub content_type: String,
    /// The bytes.
    pub content: Vec<u8>,
}

/// A plain-text e-mail.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Email {
    /// Recipients.
    pub to: Vec<String>,
    /// Subject.
    pub subject: String,
    /// Plain-text body.
    pub body: String,
    /// Attachments.
    pub attachments: Vec<Attachment>,
    /// Extra headers, as (name, value): e.g. `X-MC-Metadata` for Mandrill's relay.
    pub headers: Vec<(String, String)>,
    /// The `Message-ID` to send it with (`<...@...>`); `None`: the mailer makes one up.
    pub message_id: Option<String>,
}

/// Sends e-mail.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait Mailer: Send + Sync {
    /// Sends one message.
    ///
    /// # Errors
    /// [`MailError::Rejected`] when the server refuses it for good, [`MailError::Unavailable`]
    /// when it cannot be reached or defers it.
    async fn send(&self, email: &Email) -> Result<(), MailError>;
}

/// The mail events: what the mail relay reported about the label mails (delivered, bounced, ...,
/// [`crate::model::mail`]), and the connector's own records of labels mailed again. Kept for the
/// operators (a shipment's mail history) and for inspection (a malformed delivery).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait MailEventStore: Send + Sync {
    /// Stores `event` as it is, unless one with its provider and `dedupe_key` is stored already
    /// (a redelivery): then that one's id and status.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database cannot be reached.
    async fn record(&self, event: &NewMailEvent) -> Result<RecordedMailEvent, StoreError>;

    /// Records what became of the stored event `id`: its status, the shipment it was matched
    /// with, and why (for an unmatched one).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database cannot be reached.
    async fn settle(
        &self,
        id: i64,
        status: MailEventStatus,
        shipment_id: Option<i64>,
        error: Option<String>,
    ) -> Result<(), StoreError>;

    /// One event.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database cannot be reached.
    async fn get(&self, id: i64) -> Result<Option<MailEvent>, StoreError>;

    /// Events matching `filter`, newest first.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database cannot be reached.
    async fn list(&self, filter: &MailEventFilter) -> Result<Vec<MailEvent>, StoreError>;
}

/// The event log: what the connector did, for the live stream (`/api/v1/events`). Every server
/// and worker process appends to one log; readers follow it by id. Writing is best-effort: the
/// connector's work never depends on an event being written.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait EventLog: Send + Sync {
    /// Appends `events`, in order.
    ///
    /// # Errors
    /// [`EventError::Unavailable`] when the log cannot be reached: none, or only some, of the
    /// events were written.
    async fn append(&self, events: &[NewEvent]) -> Result<(), EventError>;

    /// Up to `limit` events with an id above `after`, in id order; only those with this
    /// `vendor_id` when one is given.
    ///
    /// # Errors
    /// [`EventError::Unavailable`] when the log cannot be reached.
    async fn read(
        &self,
        after: EventId,
        vendor_id: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Event>, EventError>;

    /// The id of the latest event (`EventId(0)` when there is none): where a stream that starts
    /// "now" begins.
    ///
    /// # Errors
    /// [`EventError::Unavailable`] when the log cannot be reached.
    async fn last_id(&self) -> Result<EventId, EventError>;

    /// Deletes the events that happened before `before`; returns how many.
    ///
    /// # Errors
    /// [`EventError::Unavailable`] when the log cannot be reached.
    async fn prune(&self, before: DateTime<Utc>) -> Result<u64, EventError>;

    /// Waits until events may have been appended (in this process, where the log can tell), or
    /// `timeout` at most: readers call it between reads instead of sleeping.
    async fn wait(&self, timeout: Duration);
}

/// The audit log: who did what ([`crate::model::audit`]). A record, not an observation: an
/// operator action is recorded before it is reported done, and the log is not pruned with the
/// events.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Records `entry`; returns its id.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the log cannot be reached: nothing was recorded.
    async fn record(&self, entry: &NewAuditEntry) -> Result<i64, StoreError>;

    /// The recorded actions `filter` selects, newest first.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the log cannot be reached.
    async fn list(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError>;
}
