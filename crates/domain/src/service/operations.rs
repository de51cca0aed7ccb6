//! The operators' actions, shared by the command line (`lazona shipments retry`, `replay`,
//! `dead requeue`, `alerts resolve`, `tokens create`, ...) and the operations API: each checks
//! that the action is safe as things stand, then enqueues the job that carries it out (the
//! worker does the work, idempotently).
//!
//! A refusal ([`OperationError::Refused`]) says why in words for any interface; the caller adds
//! how to insist (`--force`, `?force=true`).
//!
//! Who did what: every action is taken by an [`Operator`] (its [`Actor`], the audit log and the
//! event log), and recorded in the audit log with its subject, whether it was forced, and what
//! came of it (the job enqueued), **after** it was taken, and before it is answered as done: an
//! action refused or failed did nothing, and the audit log says only what was done. If the log
//! cannot record it, the caller gets [`OperationError::NotRecorded`], which says that the action
//! was taken (so that nobody takes it twice) and what it was.

use crate::error::{BoxError, InboxError, QueueError, StoreError, TokenError};
use crate::model::audit::subject;
use crate::model::payload;
use crate::model::{
    Actor, Alert, AlertState, ApiToken, AuditAction, BOOKING_LEASE, EventKind, HeldBooking, JobId,
    JobKind, NewAuditEntry, NewEvent, NewJob, Principal, Pruned, Resource, ShipmentMethod,
    ShipmentRecord, ShipmentStatus, TokenSecret, WebhookId, WebhookStatus,
};
use crate::ports::{
    AlertStore, AuditLog, EventLog, JobQueue, ShipmentStore, TokenStore, WebhookInbox,
};
use chrono::{DateTime, Utc};
use std::fmt;

/// Why an action is refused as things stand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Booking again would make a second parcel: the shipment is booked (or being booked).
    NeedsForce {
        /// Its status.
        status: ShipmentStatus,
        /// Its barcode, empty when none.
        barcode: String,
    },
    /// A local pickup has nothing to book.
    LocalPickup,
    /// A shipment without a barcode has nothing to track.
    NoBarcode,
    /// The webhook is queued already: a worker will process it.
    AlreadyQueued,
    /// The webhook's status changed while the action was being taken.
    StatusChanged {
        /// The status it had when it was read.
        was: WebhookStatus,
    },
    /// A booking of the shipment is in flight (another retry, or its first booking), forced or
    /// not: at most one booking in flight per shipment.
    BookingInFlight {
        /// When it started.
        since: DateTime<Utc>,
    },
    /// The shipment changed while the action was being taken (another operator's retry took it
    /// first).
    ShipmentChanged,
    /// A webhook rejected when it arrived whose body processing still cannot read: replaying
    /// it could only fail.
    Unprocessable {
        /// Why its body cannot be processed.
        reason: String,
    },
    /// The shipment has no label to mail.
    NoLabel,
    /// The address to mail to is not one.
    BadAddress {
        /// The address given.
        address: String,
    },
    /// The webhook's body was cleared (its retention ran out, or the customer's data was
    /// erased): there is nothing to process again.
    BodyPruned {
        /// When and why, in words ([`crate::model::Pruned::explain_body`]).
        explanation: String,
    },
    /// The shipment's label was cleared: there is nothing to mail.
    LabelPruned {
        /// When and why, in words ([`crate::model::Pruned::explain_label`]).
        explanation: String,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NeedsForce { status, barcode } => {
                write!(f, "the shipment is {status}")?;
                if !barcode.is_empty() {
                    write!(f, " (barcode {barcode})")?;
                }
                f.write_str(
                    ": the carrier already has a booking for it, and booking again makes a \
                     second parcel",
                )
            }
            Refusal::LocalPickup => f.write_str("the shipment is a local pickup: nothing to book"),
            Refusal::NoBarcode => {
                f.write_str("the shipment has no barcode: there is nothing to track")
            }
            Refusal::AlreadyQueued => {
                f.write_str("the webhook is already queued: a worker will process it")
            }
            Refusal::StatusChanged { was } => {
                write!(f, "the webhook's status changed meanwhile (it was {was})")
            }
            Refusal::BookingInFlight { since } => write!(
                f,
                "a booking of the shipment is in flight since {}: wait for it; if the worker \
                 that makes it died, the shipment can be booked again from {} (check the \
                 carrier first)",
                since.format("%Y-%m-%d %H:%M:%S UTC"),
                (*since + BOOKING_LEASE).format("%Y-%m-%d %H:%M:%S UTC")
            ),
            Refusal::ShipmentChanged => f.write_str(
                "the shipment changed meanwhile (another retry took it first): look at it again",
            ),
            Refusal::Unprocessable { reason } => write!(
                f,
                "the webhook was rejected when it arrived and its body still cannot be \
                 processed ({reason}): replaying it would fail"
            ),
            Refusal::NoLabel => f.write_str("the shipment has no label: there is nothing to mail"),
            Refusal::BadAddress { address } => {
                write!(f, "{address:?} is not an e-mail address")
            }
            Refusal::BodyPruned { explanation } => {
                write!(f, "{explanation}: there is nothing to replay")
            }
            Refusal::LabelPruned { explanation } => {
                write!(f, "{explanation}: there is nothing to mail")
            }
        }
    }
}

/// Why an action was not taken.
#[derive(Debug, thiserror::Error)]
pub enum OperationError {
    /// No shipment with this id.
    #[error("no shipment {0}")]
    NoShipment(i64),
    /// No webhook with this id.
    #[error("no webhook {0}")]
    NoWebhook(WebhookId),
    /// No dead job with this id.
    #[error("no dead job {0}")]
    NoDeadJob(JobId),
    /// No alert with this id.
    #[error("no alert {0}")]
    NoAlert(i64),
    /// No API token with this id.
    #[error("no token {0}")]
    NoToken(i64),
    /// Refused as things stand.
    #[error("{0}")]
    Refused(Refusal),
    /// The storage or the queue failed; nothing (or, for a replay, nothing lasting) was done.
    #[error("{0}")]
    Unavailable(#[source] BoxError),
    /// The action **was taken**, but the audit log could not record it: do not take it again;
    /// the log misses it (the event log and the logs may still show it).
    #[error(
        "{done}, but the audit log could not record it (do not take the action again): {source}"
    )]
    NotRecorded {
        /// What was done (`token ops (#3): retry shipment:7: job 41 enqueued`).
        done: String,
        /// Why it was not recorded.
        #[source]
        source: StoreError,
    },
}

impl From<TokenError> for OperationError {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::NotFound(id) => OperationError::NoToken(id),
            other => OperationError::Unavailable(Box::new(other)),
        }
    }
}

/// Who takes an action, and where it is recorded: the audit log (a record) and the event log
/// (the live stream).
#[derive(Clone, Copy)]
pub struct Operator<'a> {
    /// Who.
    pub actor: &'a Actor,
    /// Where the action is recorded.
    pub audit: &'a dyn AuditLog,
    /// Where the live stream sees it.
    pub events: &'a dyn EventLog,
}

impl fmt::Debug for Operator<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Operator")
            .field("actor", self.actor)
            .finish_non_exhaustive()
    }
}

impl Operator<'_> {
    /// An entry of `action` on `subject` by this operator, now.
    fn entry(&self, action: AuditAction, subject: String) -> NewAuditEntry {
        NewAuditEntry::now(self.actor.clone(), action, subject)
    }

    /// Records `entries` of an action just taken in the audit log, then appends one
    /// [`EventKind::OperatorAction`] event each (about what `about` says) to the event log.
    ///
    /// Recorded **after** the action was taken, never before: an action refused (a retry that
    /// needs `--force`, another operator's retry first) or failed (the queue down) did nothing,
    /// and the audit log says only what was done. The cost is a window where an action is taken
    /// and not yet recorded: if the audit log cannot record it, the caller gets
    /// [`OperationError::NotRecorded`], which says that the action **was** taken (so nobody
    /// takes it twice) and what it was; the event is appended anyway (it may still show it),
    /// and the webhook's history, written with the action itself, names the actor regardless.
    /// The event log is an observation: an event that cannot be appended is only logged.
    async fn record(
        &self,
        entries: Vec<NewAuditEntry>,
        about: impl Fn(&NewAuditEntry, NewEvent) -> NewEvent,
    ) -> Result<(), OperationError> {
        let mut failed = None;
        let mut events = Vec::with_capacity(entries.len());
        for e in entries {
            let line = describe(&e);
            if failed.is_none()
                && let Err(source) = self.audit.record(&e).await
            {
                tracing::error!(action = %e.action, subject = %e.subject, error = %source, "an operator's action could not be recorded in the audit log");
                failed = Some(OperationError::NotRecorded {
                    done: line.clone(),
                    source,
                });
            }
            events.push(about(&e, NewEvent::now(EventKind::OperatorAction, line)));
        }
        if let Err(e) = self.events.append(&events).await {
            tracing::warn!(error = %e, "an operator's action could not be appended to the event log");
        }
        failed.map_or(Ok(()), Err)
    }
}

/// An entry in words: `token ops (#3): retry shipment:7 (forced): job 41 enqueued`.
#[must_use]
pub fn describe(e: &NewAuditEntry) -> String {
    format!(
        "{}: {} {}{}{}",
        e.actor,
        e.action,
        e.subject,
        if e.forced { " (forced)" } else { "" },
        e.detail
            .as_deref()
            .map_or(String::new(), |d| format!(": {d}"))
    )
}

/// The event of an action on a shipment: about it and its order, not its vendor (a vendor's
/// stream does not show the operators' actions).
fn on_shipment(
    s: &ShipmentRecord,
    job: Option<JobId>,
) -> impl Fn(&NewAuditEntry, NewEvent) -> NewEvent {
    let (id, order) = (s.id, s.order_id);
    move |_, mut ev| {
        ev.shipment_id = Some(id);
        ev.order_id = Some(order);
        ev.job_id = job.map(|j| j.0);
        ev
    }
}

impl From<StoreError> for OperationError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(id) => OperationError::NoShipment(id),
            other => OperationError::Unavailable(Box::new(other)),
        }
    }
}

impl From<QueueError> for OperationError {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::NotFound(id) => OperationError::NoDeadJob(id),
            other => OperationError::Unavailable(Box::new(other)),
        }
    }
}

impl From<InboxError> for OperationError {
    fn from(e: InboxError) -> Self {
        OperationError::Unavailable(Box::new(e))
    }
}

/// A shipment action's job, enqueued.
#[derive(Debug, Clone, PartialEq)]
pub struct Enqueued {
    /// The job that carries it out.
    pub job_id: JobId,
    /// What it does.
    pub kind: JobKind,
    /// The shipment as it was when the job was enqueued.
    pub shipment: ShipmentRecord,
}

async fn enqueue(queue: &dyn JobQueue, kind: JobKind) -> Result<JobId, QueueError> {
    queue.enqueue(NewJob { kind, run_at: None }).await
}

/// Books a shipment again (the worker re-fetches the order): only a refused booking
/// (`ERROR_FROM_BODY`) unless `force`, which books a second parcel; never a local pickup, and
/// never while a booking of the shipment is in flight ([`crate::model::BOOKING_LEASE`]).
///
/// The shipment is taken for the job before it is enqueued
/// ([`ShipmentStore::reserve_booking`], a compare-and-set on what was read): of two requests at
/// once (two operators, a double click), forced or not, one is enqueued and the other refused,
/// and the job books only while the shipment still holds its attempt.
///
/// # Errors
/// [`OperationError::NoShipment`], [`OperationError::Refused`] ([`Refusal::LocalPickup`],
/// [`Refusal::NeedsForce`], [`Refusal::BookingInFlight`], [`Refusal::ShipmentChanged`]), or
/// [`OperationError::Unavailable`].
#[tracing::instrument(skip_all, fields(shipment_id, force))]
pub async fn retry_shipment(
    op: &Operator<'_>,
    store: &dyn ShipmentStore,
    queue: &dyn JobQueue,
    shipment_id: i64,
    force: bool,
) -> Result<Enqueued, OperationError> {
    let s = store
        .get(shipment_id)
        .await?
        .ok_or(OperationError::NoShipment(shipment_id))?;
    let done = retry_record(store, queue, s, force).await?;
    let entry = op
        .entry(AuditAction::Retry, subject::shipment(shipment_id))
        .forced(force)
        .detail(enqueued(done.job_id, &done.kind));
    op.record(vec![entry], on_shipment(&done.shipment, Some(done.job_id)))
        .await?;
    Ok(done)
}

/// The detail of an action that enqueued a job: `job 41 (retry_shipment) enqueued`.
fn enqueued(job: JobId, kind: &JobKind) -> String {
    format!("job {job} ({}) enqueued", kind.name())
}

async fn retry_record(
    store: &dyn ShipmentStore,
    queue: &dyn JobQueue,
    s: ShipmentRecord,
    force: bool,
) -> Result<Enqueued, OperationError> {
    if s.method == ShipmentMethod::LocalPickup {
        return Err(OperationError::Refused(Refusal::LocalPickup));
    }
    let stale_before = Utc::now() - BOOKING_LEASE;
    if s.status == ShipmentStatus::Booking && s.updated_at >= stale_before {
        return Err(OperationError::Refused(Refusal::BookingInFlight {
            since: s.updated_at,
        }));
    }
    if !force && s.status != ShipmentStatus::ErrorFromBody {
        return Err(OperationError::Refused(Refusal::NeedsForce {
            status: s.status,
            barcode: s.delivery_id.clone(),
        }));
    }
    let Some(taken) = store
        .reserve_booking(s.id, s.status, s.booking_attempt, stale_before)
        .await?
    else {
        return Err(OperationError::Refused(Refusal::ShipmentChanged));
    };
    let held = HeldBooking {
        attempt: taken.booking_attempt,
        previous: s.status,
    };
    let kind = JobKind::RetryShipment {
        shipment_id: s.id,
        force,
        held: Some(held),
    };
    match enqueue(queue, kind.clone()).await {
        Ok(job_id) => Ok(Enqueued {
            job_id,
            kind,
            shipment: s,
        }),
        Err(e) => {
            // Nothing will book it: give the shipment back as it was.
            let _ = store.end_booking(s.id, held.attempt, held.previous).await;
            Err(e.into())
        }
    }
}

/// Asks the carrier for a shipment's tracking now; only a shipment with a barcode.
///
/// # Errors
/// [`OperationError::NoShipment`], [`OperationError::Refused`] ([`Refusal::NoBarcode`]), or
/// [`OperationError::Unavailable`].
#[tracing::instrument(skip_all, fields(shipment_id))]
pub async fn track_shipment(
    op: &Operator<'_>,
    store: &dyn ShipmentStore,
    queue: &dyn JobQueue,
    shipment_id: i64,
) -> Result<Enqueued, OperationError> {
    let s = store
        .get(shipment_id)
        .await?
        .ok_or(OperationError::NoShipment(shipment_id))?;
    if s.delivery_id.is_empty() {
        return Err(OperationError::Refused(Refusal::NoBarcode));
    }
    let kind = JobKind::TrackShipment { shipment_id };
    let job_id = enqueue(queue, kind.clone()).await?;
    let entry = op
        .entry(AuditAction::Track, subject::shipment(shipment_id))
        .detail(enqueued(job_id, &kind));
    op.record(vec![entry], on_shipment(&s, Some(job_id)))
        .await?;
    Ok(Enqueued {
        job_id,
        kind,
        shipment: s,
    })
}

/// Whether `address` looks like one mailbox (`local@domain`, no spaces, no list): what
/// `lazona labels resend --to` takes.
#[must_use]
pub fn is_plausible_address(address: &str) -> bool {
    let a = address.trim();
    match a.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !a.contains(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | '<' | '>'))
                && !domain.contains('@')
        }
        None => false,
    }
}

/// Mails a shipment's label again, to `to` or to its vendor's address (the worker reads it from
/// the shop); only a shipment with a label.
///
/// # Errors
/// [`OperationError::NoShipment`], [`OperationError::Refused`] ([`Refusal::NoLabel`],
/// [`Refusal::BadAddress`]), or [`OperationError::Unavailable`].
#[tracing::instrument(skip_all, fields(shipment_id))]
pub async fn resend_label(
    op: &Operator<'_>,
    store: &dyn ShipmentStore,
    queue: &dyn JobQueue,
    shipment_id: i64,
    to: Option<&str>,
) -> Result<Enqueued, OperationError> {
    let s = store
        .get(shipment_id)
        .await?
        .ok_or(OperationError::NoShipment(shipment_id))?;
    if let Some(address) = to
        && !is_plausible_address(address)
    {
        return Err(OperationError::Refused(Refusal::BadAddress {
            address: address.to_owned(),
        }));
    }
    if let Some(pruned) = &s.label_pruned
        && !s.has_label
    {
        return Err(OperationError::Refused(Refusal::LabelPruned {
            explanation: pruned.explain_label(),
        }));
    }
    if !s.has_label {
        return Err(OperationError::Refused(Refusal::NoLabel));
    }
    let kind = JobKind::ResendLabel {
        shipment_id,
        to: to.map(|t| t.trim().to_owned()),
    };
    let job_id = enqueue(queue, kind.clone()).await?;
    // The address given is personal data: the log says only whether one was.
    let whom = if to.is_some() {
        "to the address given"
    } else {
        "to the vendor's address"
    };
    let entry = op
        .entry(AuditAction::Resend, subject::shipment(shipment_id))
        .detail(format!("{}, {whom}", enqueued(job_id, &kind)));
    op.record(vec![entry], on_shipment(&s, Some(job_id)))
        .await?;
    Ok(Enqueued {
        job_id,
        kind,
        shipment: s,
    })
}

/// What a replay enqueued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replayed {
    /// The webhook's new `ProcessWebhook` job.
    pub job_id: JobId,
    /// With `force`, the `RetryShipment` jobs of the order's booked shipments.
    pub retry_jobs: Vec<JobId>,
}

/// Processes a stored webhook again through the normal job path: back to `queued` (recorded in
/// its history) with a new job, so nothing already booked is booked again. With `force`, an
/// order's Koiki shipments that exist are booked again too (a second parcel each). A failed
/// enqueue puts the webhook back where it was.
///
/// `status` is the status the caller saw (the move is a compare-and-set from it).
///
/// # Errors
/// [`OperationError::Refused`] ([`Refusal::AlreadyQueued`], [`Refusal::StatusChanged`]) or
/// [`OperationError::Unavailable`].
#[tracing::instrument(skip_all, fields(webhook_id = %webhook.id, subject_id = webhook.subject_id, force))]
pub async fn replay_webhook(
    op: &Operator<'_>,
    inbox: &dyn WebhookInbox,
    queue: &dyn JobQueue,
    store: &dyn ShipmentStore,
    webhook: &ReplayTarget,
    force: bool,
) -> Result<Replayed, OperationError> {
    if let Some(pruned) = &webhook.pruned {
        return Err(OperationError::Refused(Refusal::BodyPruned {
            explanation: pruned.explain_body(webhook.received_at),
        }));
    }
    if webhook.status == WebhookStatus::Queued {
        return Err(OperationError::Refused(Refusal::AlreadyQueued));
    }
    // A webhook rejected at the door is replayed only when its body reads now (a connector
    // upgraded since may read what an older one refused); otherwise its job could only fail.
    if webhook.status == WebhookStatus::Rejected {
        let stored = inbox
            .get(webhook.id)
            .await?
            .ok_or(OperationError::NoWebhook(webhook.id))?;
        if let Err(e) = payload::parse(stored.data.resource, &stored.data.body) {
            return Err(OperationError::Refused(Refusal::Unprocessable {
                reason: e.to_string(),
            }));
        }
    }
    let moved = inbox
        .transition(
            webhook.id,
            webhook.status,
            WebhookStatus::Queued,
            Some(format!(
                "replayed by {}{}",
                op.actor,
                if force { " (forced)" } else { "" }
            )),
        )
        .await?;
    if !moved {
        return Err(OperationError::Refused(Refusal::StatusChanged {
            was: webhook.status,
        }));
    }
    let job_id = match enqueue(
        queue,
        JobKind::ProcessWebhook {
            webhook_id: webhook.id,
        },
    )
    .await
    {
        Ok(id) => id,
        Err(e) => {
            let _ = inbox
                .transition(
                    webhook.id,
                    WebhookStatus::Queued,
                    webhook.status,
                    Some(format!("replay not enqueued: {e}")),
                )
                .await;
            return Err(e.into());
        }
    };
    let mut retry_jobs = Vec::new();
    let mut entries = vec![
        op.entry(AuditAction::Replay, subject::webhook(webhook.id.0))
            .forced(force)
            .detail(format!("job {job_id} (process_webhook) enqueued")),
    ];
    if force
        && webhook.resource == Resource::Order
        && let Some(order_id) = webhook.subject_id
    {
        for s in store.of_order(order_id).await? {
            if s.method == ShipmentMethod::Koiki && s.status != ShipmentStatus::Booking {
                let id = s.id;
                match retry_record(store, queue, s, true).await {
                    Ok(done) => {
                        retry_jobs.push(done.job_id);
                        entries.push(
                            op.entry(AuditAction::Retry, subject::shipment(id))
                                .forced(true)
                                .detail(format!(
                                    "{}, by the forced replay of webhook {}",
                                    enqueued(done.job_id, &done.kind),
                                    webhook.id
                                )),
                        );
                    }
                    // Taken by another retry meanwhile: that one books it.
                    Err(OperationError::Refused(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    let (webhook_id, order_id) = (webhook.id.0, webhook.subject_id);
    let resource = webhook.resource;
    op.record(entries, |e, mut ev| {
        ev.webhook_id = Some(webhook_id);
        if resource == Resource::Order {
            ev.order_id = order_id;
        }
        ev.shipment_id = e
            .subject
            .strip_prefix("shipment:")
            .and_then(|id| id.parse().ok());
        ev
    })
    .await?;
    Ok(Replayed { job_id, retry_jobs })
}

/// What [`replay_webhook`] needs to know of a stored webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayTarget {
    /// Its id.
    pub id: WebhookId,
    /// Its endpoint.
    pub resource: Resource,
    /// Its status when read.
    pub status: WebhookStatus,
    /// The order or customer id in its body.
    pub subject_id: Option<i64>,
    /// When it was received.
    pub received_at: DateTime<Utc>,
    /// When and why its body was cleared, if it was.
    pub pruned: Option<Pruned>,
}

/// Replays the stored webhook `id` ([`replay_webhook`] after reading it).
///
/// # Errors
/// [`OperationError::NoWebhook`], and as for [`replay_webhook`].
#[tracing::instrument(skip_all, fields(webhook_id = %id, force))]
pub async fn replay_webhook_by_id(
    op: &Operator<'_>,
    inbox: &dyn WebhookInbox,
    queue: &dyn JobQueue,
    store: &dyn ShipmentStore,
    id: WebhookId,
    force: bool,
) -> Result<Replayed, OperationError> {
    let w = inbox.get(id).await?.ok_or(OperationError::NoWebhook(id))?;
    let target = ReplayTarget {
        id,
        resource: w.data.resource,
        status: w.data.status,
        subject_id: w.data.subject_id,
        received_at: w.data.received_at,
        pruned: w.pruned,
    };
    replay_webhook(op, inbox, queue, store, &target, force).await
}

/// Puts a dead job back in the queue, due now, with its attempts reset.
///
/// # Errors
/// [`OperationError::NoDeadJob`] or [`OperationError::Unavailable`].
#[tracing::instrument(skip_all, fields(job_id = %id))]
pub async fn requeue_dead(
    op: &Operator<'_>,
    queue: &dyn JobQueue,
    id: JobId,
) -> Result<(), OperationError> {
    queue.requeue_dead(id).await?;
    let entry = op
        .entry(AuditAction::Requeue, subject::job(id.0))
        .detail("queued again, due now, attempts reset");
    op.record(vec![entry], |_, ev| ev.job(id.0)).await
}

/// Resolves an open alert by hand, as `op`'s actor (its `resolved_by`: `token ops (#3)`,
/// `cli maria@caixa`). Resolving a resolved alert changes nothing, and records nothing.
///
/// # Errors
/// [`OperationError::NoAlert`] or [`OperationError::Unavailable`].
#[tracing::instrument(skip_all, fields(alert_id = id))]
pub async fn resolve_alert(
    op: &Operator<'_>,
    alerts: &dyn AlertStore,
    id: i64,
) -> Result<Alert, OperationError> {
    let open = alerts.get(id).await?.ok_or(OperationError::NoAlert(id))?;
    if open.state != AlertState::Open {
        return Ok(open);
    }
    let alert = alerts
        .resolve_id(id, &op.actor.to_string())
        .await?
        .ok_or(OperationError::NoAlert(id))?;
    let entry = op
        .entry(AuditAction::ResolveAlert, subject::alert(id))
        .detail(format!("{} on {}", alert.kind, alert.subject));
    op.record(vec![entry], |_, ev| ev).await?;
    Ok(alert)
}

/// Creates an API token for `principal`, named `name`; returns it with its secret (shown once).
///
/// # Errors
/// [`OperationError::Unavailable`], or [`OperationError::NotRecorded`] (the token exists).
#[tracing::instrument(skip_all)]
pub async fn create_token(
    op: &Operator<'_>,
    tokens: &dyn TokenStore,
    name: &str,
    principal: Principal,
) -> Result<(ApiToken, TokenSecret), OperationError> {
    let (token, secret) = tokens.create(name, principal).await?;
    let entry = op
        .entry(AuditAction::TokenCreate, subject::token(token.id))
        .detail(format!("{principal} token {:?}", token.name));
    op.record(vec![entry], |_, ev| ev).await?;
    Ok((token, secret))
}

/// Revokes an API token. Revoking a revoked token changes nothing, and records nothing.
///
/// # Errors
/// [`OperationError::NoToken`] or [`OperationError::Unavailable`].
#[tracing::instrument(skip_all, fields(token_id = id))]
pub async fn revoke_token(
    op: &Operator<'_>,
    tokens: &dyn TokenStore,
    id: i64,
) -> Result<ApiToken, OperationError> {
    let before = tokens
        .list()
        .await?
        .into_iter()
        .find(|t| t.id == id)
        .ok_or(OperationError::NoToken(id))?;
    if before.revoked_at.is_some() {
        return Ok(before);
    }
    let token = tokens.revoke(id).await?;
    let entry = op
        .entry(AuditAction::TokenRevoke, subject::token(id))
        .detail(format!("{} token {:?}", token.principal, token.name));
    op.record(vec![entry], |_, ev| ev).await?;
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{MemoryAuditLog, MemoryShipmentStore};
    use crate::model::{AuditFilter, BookingOutcome, Claim};
    use crate::ports::{MockEventLog, MockJobQueue};

    /// An operator whose events go nowhere, recording in `audit`.
    struct Ops {
        actor: Actor,
        audit: MemoryAuditLog,
        events: MockEventLog,
    }

    impl Ops {
        fn new() -> Self {
            let mut events = MockEventLog::new();
            events.expect_append().returning(|_| Ok(()));
            Ops {
                actor: Actor::token(3, "ops"),
                audit: MemoryAuditLog::new(),
                events,
            }
        }

        fn op(&self) -> Operator<'_> {
            Operator {
                actor: &self.actor,
                audit: &self.audit,
                events: &self.events,
            }
        }
    }

    async fn booked(store: &MemoryShipmentStore, status: ShipmentStatus, barcode: &str) -> i64 {
        let Ok(Claim::Claimed(s)) = store.claim(1, 6, ShipmentMethod::Koiki).await else {
            panic!("claimed")
        };
        store
            .record_booking(
                s.id,
                0,
                &BookingOutcome {
                    status,
                    delivery_id: barcode.into(),
                    request: String::new(),
                    message: String::new(),
                    label_pdf: None,
                },
            )
            .await
            .expect("recorded");
        s.id
    }

    fn queue_expecting(kind: JobKind) -> MockJobQueue {
        let mut queue = MockJobQueue::new();
        queue
            .expect_enqueue()
            .withf(move |job| job.kind == kind)
            .times(1)
            .returning(|_| Ok(JobId(41)));
        queue
    }

    #[tokio::test]
    async fn a_label_is_mailed_again_only_when_there_is_one_and_to_an_address() {
        let ops = Ops::new();
        let store = MemoryShipmentStore::new();
        let id = booked(&store, ShipmentStatus::ErrorFromBody, "").await;
        let refused = resend_label(&ops.op(), &store, &MockJobQueue::new(), id, None).await;
        assert!(
            matches!(refused, Err(OperationError::Refused(Refusal::NoLabel))),
            "{refused:?}"
        );
        let refused = resend_label(
            &ops.op(),
            &store,
            &MockJobQueue::new(),
            id,
            Some("a, b@x.org"),
        )
        .await;
        assert!(
            matches!(
                refused,
                Err(OperationError::Refused(Refusal::BadAddress { .. }))
            ),
            "{refused:?}"
        );
        assert!(matches!(
            resend_label(&ops.op(), &store, &MockJobQueue::new(), 99, None).await,
            Err(OperationError::NoShipment(99))
        ));
        for good in ["v@example.coop", " v.x+y@mail.example.org "] {
            assert!(is_plausible_address(good), "{good}");
        }
        for bad in [
            "",
            "v",
            "v@",
            "@x.org",
            "v@x",
            "v@x.org w@y.org",
            "<v@x.org>",
            "v@@x.org",
        ] {
            assert!(!is_plausible_address(bad), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_booked_shipment_is_booked_again_only_with_force() {
        let ops = Ops::new();
        let store = MemoryShipmentStore::new();
        let id = booked(&store, ShipmentStatus::LabelSent, "BAR1").await;
        let refused = retry_shipment(&ops.op(), &store, &MockJobQueue::new(), id, false).await;
        let Err(OperationError::Refused(refusal)) = refused else {
            panic!("refused: {refused:?}")
        };
        assert!(refusal.to_string().contains("barcode BAR1"), "{refusal}");
        let queue = queue_expecting(JobKind::RetryShipment {
            shipment_id: id,
            force: true,
            held: Some(HeldBooking {
                attempt: 1,
                previous: ShipmentStatus::LabelSent,
            }),
        });
        let done = retry_shipment(&ops.op(), &store, &queue, id, true)
            .await
            .expect("ok");
        assert_eq!(done.job_id, JobId(41));
        let taken = store.get(id).await.expect("get").expect("kept");
        assert_eq!(taken.status, ShipmentStatus::Booking);
        assert_eq!(taken.booking_attempt, 1);
        let recorded = ops.audit.all();
        assert_eq!(recorded.len(), 1, "only the action taken: {recorded:?}");
        let e = &recorded[0].data;
        assert_eq!(
            (e.action, e.subject.as_str(), e.forced, &e.actor),
            (
                AuditAction::Retry,
                "shipment:1",
                true,
                &Actor::token(3, "ops")
            )
        );
        assert_eq!(
            describe(e),
            "token ops (#3): retry shipment:1 (forced): job 41 (retry_shipment) enqueued"
        );
        assert!(matches!(
            retry_shipment(&ops.op(), &store, &queue, 999, true).await,
            Err(OperationError::NoShipment(999))
        ));
    }

    /// Two operators (or a double click) retrying one shipment at once, forced: one job is
    /// enqueued, the other request refused; a retry while a booking is in flight is refused
    /// even forced, until its lease has run out.
    #[tokio::test]
    async fn two_forced_retries_at_once_enqueue_one_booking() {
        let ops = Ops::new();
        let store = MemoryShipmentStore::new();
        let id = booked(&store, ShipmentStatus::LabelSent, "BAR1").await;
        let mut queue = MockJobQueue::new();
        queue.expect_enqueue().times(1).returning(|_| Ok(JobId(7)));
        let op = ops.op();
        let (a, b) = tokio::join!(
            retry_shipment(&op, &store, &queue, id, true),
            retry_shipment(&op, &store, &queue, id, true)
        );
        let outcomes = [a, b];
        assert_eq!(
            outcomes.iter().filter(|o| o.is_ok()).count(),
            1,
            "{outcomes:?}"
        );
        assert!(
            outcomes.iter().any(|o| matches!(
                o,
                Err(OperationError::Refused(
                    Refusal::ShipmentChanged | Refusal::BookingInFlight { .. }
                ))
            )),
            "{outcomes:?}"
        );
        // Later, while that booking is in flight: still refused, forced or not.
        let again = retry_shipment(&ops.op(), &store, &MockJobQueue::new(), id, true).await;
        let Err(OperationError::Refused(refusal @ Refusal::BookingInFlight { .. })) = again else {
            panic!("in flight: {again:?}")
        };
        assert!(refusal.to_string().contains("in flight"), "{refusal}");
    }

    #[tokio::test]
    async fn a_failed_enqueue_gives_the_shipment_back() {
        let ops = Ops::new();
        let store = MemoryShipmentStore::new();
        let id = booked(&store, ShipmentStatus::ErrorFromBody, "").await;
        let mut queue = MockJobQueue::new();
        queue
            .expect_enqueue()
            .returning(|_| Err(crate::error::QueueError::Unavailable("down".into())));
        assert!(matches!(
            retry_shipment(&ops.op(), &store, &queue, id, false).await,
            Err(OperationError::Unavailable(_))
        ));
        let s = store.get(id).await.expect("get").expect("kept");
        assert_eq!(s.status, ShipmentStatus::ErrorFromBody);
    }

    /// A webhook rejected at the door is replayed only when its body reads now.
    #[tokio::test]
    async fn a_rejected_webhook_is_replayed_only_when_its_body_now_reads() {
        let ops = Ops::new();
        use crate::model::{NewWebhook, Webhook};
        use crate::ports::MockWebhookInbox;
        fn stored(body: &'static str) -> Webhook {
            Webhook {
                id: WebhookId(9),
                data: NewWebhook {
                    resource: Resource::Order,
                    topic: Some("order.created".into()),
                    event: None,
                    delivery_id: None,
                    wc_webhook_id: None,
                    source: None,
                    subject_id: None,
                    subject_modified: None,
                    headers: Vec::new(),
                    body: bytes::Bytes::from_static(body.as_bytes()),
                    received_at: Utc::now(),
                    status: WebhookStatus::Rejected,
                    error: None,
                },
                last_error: None,
                processed_at: None,
                pruned: None,
            }
        }
        let target = ReplayTarget {
            id: WebhookId(9),
            resource: Resource::Order,
            status: WebhookStatus::Rejected,
            subject_id: None,
            received_at: Utc::now(),
            pruned: None,
        };
        let store = MemoryShipmentStore::new();
        let mut inbox = MockWebhookInbox::new();
        inbox
            .expect_get()
            .returning(|_| Ok(Some(stored(r#"{"id":"abc"}"#))));
        let refused = replay_webhook(
            &ops.op(),
            &inbox,
            &MockJobQueue::new(),
            &store,
            &target,
            false,
        )
        .await;
        let Err(OperationError::Refused(refusal @ Refusal::Unprocessable { .. })) = refused else {
            panic!("refused: {refused:?}")
        };
        assert!(refusal.to_string().contains("id"), "{refusal}");

        let mut inbox = MockWebhookInbox::new();
        inbox
            .expect_get()
            .returning(|_| Ok(Some(stored(r#"{"id":"12"}"#))));
        inbox
            .expect_transition()
            .times(1)
            .returning(|_, _, _, _| Ok(true));
        let queue = queue_expecting(JobKind::ProcessWebhook {
            webhook_id: WebhookId(9),
        });
        let replayed = replay_webhook(&ops.op(), &inbox, &queue, &store, &target, false)
            .await
            .expect("replayed");
        assert_eq!(replayed.job_id, JobId(41));
    }

    /// A webhook whose body was pruned has nothing to replay, and says when and why.
    #[tokio::test]
    async fn a_pruned_webhook_is_not_replayed_and_says_why() {
        use crate::model::{PruneReason, Pruned};
        use crate::ports::MockWebhookInbox;
        let received_at: DateTime<Utc> = "2026-01-01T10:00:00Z".parse().expect("date");
        let target = ReplayTarget {
            id: WebhookId(9),
            resource: Resource::Order,
            status: WebhookStatus::Processed,
            subject_id: Some(5),
            received_at,
            pruned: Some(Pruned {
                at: received_at + chrono::TimeDelta::days(91),
                why: PruneReason::Retention,
            }),
        };
        // Neither the inbox nor the queue is touched (the mocks expect nothing), nor is anything
        // recorded.
        let ops = Ops::new();
        let refused = replay_webhook(
            &ops.op(),
            &MockWebhookInbox::new(),
            &MockJobQueue::new(),
            &MemoryShipmentStore::new(),
            &target,
            true,
        )
        .await;
        let Err(OperationError::Refused(refusal)) = refused else {
            panic!("refused: {refused:?}")
        };
        assert_eq!(
            refusal.to_string(),
            "its body was pruned on 2026-04-02 after 91 days (retention.webhook_body_days): \
             there is nothing to replay"
        );
    }

    #[tokio::test]
    async fn tracking_needs_a_barcode() {
        let ops = Ops::new();
        let store = MemoryShipmentStore::new();
        let id = booked(&store, ShipmentStatus::ErrorFromBody, "").await;
        assert!(matches!(
            track_shipment(&ops.op(), &store, &MockJobQueue::new(), id).await,
            Err(OperationError::Refused(Refusal::NoBarcode))
        ));
    }

    /// The audit log down: the action stands (its job is enqueued, the shipment taken), and the
    /// caller is told it was taken and not recorded; the live stream still sees it.
    #[tokio::test]
    async fn an_action_the_audit_log_cannot_record_is_reported_taken() {
        use crate::ports::MockAuditLog;
        let store = MemoryShipmentStore::new();
        let id = booked(&store, ShipmentStatus::ErrorFromBody, "").await;
        let mut audit = MockAuditLog::new();
        audit
            .expect_record()
            .returning(|_| Err(StoreError::Unavailable("down".into())));
        let mut events = MockEventLog::new();
        events
            .expect_append()
            .withf(|evs| {
                evs.len() == 1
                    && evs[0].kind == EventKind::OperatorAction
                    && evs[0]
                        .message
                        .starts_with("cli maria@caixa: retry shipment:1")
                    && evs[0].vendor_id.is_none()
            })
            .times(1)
            .returning(|_| Ok(()));
        let actor = Actor::cli("maria@caixa");
        let op = Operator {
            actor: &actor,
            audit: &audit,
            events: &events,
        };
        let queue = queue_expecting(JobKind::RetryShipment {
            shipment_id: id,
            force: false,
            held: Some(HeldBooking {
                attempt: 1,
                previous: ShipmentStatus::ErrorFromBody,
            }),
        });
        let failed = retry_shipment(&op, &store, &queue, id, false).await;
        let Err(e @ OperationError::NotRecorded { .. }) = failed else {
            panic!("not recorded: {failed:?}")
        };
        assert!(
            e.to_string()
                .starts_with("cli maria@caixa: retry shipment:1: job 41 (retry_shipment) enqueued, but the audit log could not record it"),
            "{e}"
        );
        let s = store.get(id).await.expect("get").expect("kept");
        assert_eq!(s.status, ShipmentStatus::Booking, "the action stands");
    }

    #[tokio::test]
    async fn a_refused_action_records_nothing() {
        let ops = Ops::new();
        let store = MemoryShipmentStore::new();
        let id = booked(&store, ShipmentStatus::LabelSent, "BAR1").await;
        let _ = retry_shipment(&ops.op(), &store, &MockJobQueue::new(), id, false).await;
        let _ = track_shipment(&ops.op(), &store, &MockJobQueue::new(), 77).await;
        assert!(
            ops.audit
                .list(&AuditFilter::default())
                .await
                .expect("list")
                .is_empty()
        );
    }
}
