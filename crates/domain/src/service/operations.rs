//! The operators' actions, shared by the command line (`lazona shipments retry`, `replay`,
//! `dead requeue`) and the operations API: each checks that the action is safe as things stand,
//! then enqueues the job that carries it out (the worker does the work, idempotently).
//!
//! A refusal ([`OperationError::Refused`]) says why in words for any interface; the caller adds
//! how to insist (`--force`, `?force=true`).

use crate::error::{BoxError, InboxError, QueueError, StoreError};
use crate::model::{
    JobId, JobKind, NewJob, Resource, ShipmentMethod, ShipmentRecord, ShipmentStatus, WebhookId,
    WebhookStatus,
};
use crate::ports::{JobQueue, ShipmentStore, WebhookInbox};
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
    /// Refused as things stand.
    #[error("{0}")]
    Refused(Refusal),
    /// The storage or the queue failed; nothing (or, for a replay, nothing lasting) was done.
    #[error("{0}")]
    Unavailable(#[source] BoxError),
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
/// (`ERROR_FROM_BODY`) unless `force`, which books a second parcel; never a local pickup.
///
/// # Errors
/// [`OperationError::NoShipment`], [`OperationError::Refused`] ([`Refusal::LocalPickup`],
/// [`Refusal::NeedsForce`]), or [`OperationError::Unavailable`].
pub async fn retry_shipment(
    store: &dyn ShipmentStore,
    queue: &dyn JobQueue,
    shipment_id: i64,
    force: bool,
) -> Result<Enqueued, OperationError> {
    let s = store
        .get(shipment_id)
        .await?
        .ok_or(OperationError::NoShipment(shipment_id))?;
    if s.method == ShipmentMethod::LocalPickup {
        return Err(OperationError::Refused(Refusal::LocalPickup));
    }
    if !force && s.status != ShipmentStatus::ErrorFromBody {
        return Err(OperationError::Refused(Refusal::NeedsForce {
            status: s.status,
            barcode: s.delivery_id.clone(),
        }));
    }
    let kind = JobKind::RetryShipment { shipment_id, force };
    let job_id = enqueue(queue, kind.clone()).await?;
    Ok(Enqueued {
        job_id,
        kind,
        shipment: s,
    })
}

/// Asks the carrier for a shipment's tracking now; only a shipment with a barcode.
///
/// # Errors
/// [`OperationError::NoShipment`], [`OperationError::Refused`] ([`Refusal::NoBarcode`]), or
/// [`OperationError::Unavailable`].
pub async fn track_shipment(
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
pub async fn replay_webhook(
    inbox: &dyn WebhookInbox,
    queue: &dyn JobQueue,
    store: &dyn ShipmentStore,
    webhook: &ReplayTarget,
    force: bool,
) -> Result<Replayed, OperationError> {
    if webhook.status == WebhookStatus::Queued {
        return Err(OperationError::Refused(Refusal::AlreadyQueued));
    }
    let moved = inbox
        .transition(
            webhook.id,
            webhook.status,
            WebhookStatus::Queued,
            Some("replayed by an operator".into()),
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
    if force
        && webhook.resource == Resource::Order
        && let Some(order_id) = webhook.subject_id
    {
        for s in store.of_order(order_id).await? {
            if s.method == ShipmentMethod::Koiki && s.status != ShipmentStatus::Booking {
                let kind = JobKind::RetryShipment {
                    shipment_id: s.id,
                    force: true,
                };
                retry_jobs.push(enqueue(queue, kind).await?);
            }
        }
    }
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
}

/// Replays the stored webhook `id` ([`replay_webhook`] after reading it).
///
/// # Errors
/// [`OperationError::NoWebhook`], and as for [`replay_webhook`].
pub async fn replay_webhook_by_id(
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
    };
    replay_webhook(inbox, queue, store, &target, force).await
}

/// Puts a dead job back in the queue, due now, with its attempts reset.
///
/// # Errors
/// [`OperationError::NoDeadJob`] or [`OperationError::Unavailable`].
pub async fn requeue_dead(queue: &dyn JobQueue, id: JobId) -> Result<(), OperationError> {
    Ok(queue.requeue_dead(id).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryShipmentStore;
    use crate::model::{BookingOutcome, Claim};
    use crate::ports::MockJobQueue;

    async fn booked(store: &MemoryShipmentStore, status: ShipmentStatus, barcode: &str) -> i64 {
        let Ok(Claim::Claimed(s)) = store.claim(1, 6, ShipmentMethod::Koiki).await else {
            panic!("claimed")
        };
        store
            .record_booking(
                s.id,
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
    async fn a_booked_shipment_is_booked_again_only_with_force() {
        let store = MemoryShipmentStore::new();
        let id = booked(&store, ShipmentStatus::LabelSent, "BAR1").await;
        let refused = retry_shipment(&store, &MockJobQueue::new(), id, false).await;
        let Err(OperationError::Refused(refusal)) = refused else {
            panic!("refused: {refused:?}")
        };
        assert!(refusal.to_string().contains("barcode BAR1"), "{refusal}");
        let queue = queue_expecting(JobKind::RetryShipment {
            shipment_id: id,
            force: true,
        });
        let done = retry_shipment(&store, &queue, id, true).await.expect("ok");
        assert_eq!(done.job_id, JobId(41));
        assert!(matches!(
            retry_shipment(&store, &queue, 999, true).await,
            Err(OperationError::NoShipment(999))
        ));
    }

    #[tokio::test]
    async fn tracking_needs_a_barcode() {
        let store = MemoryShipmentStore::new();
        let id = booked(&store, ShipmentStatus::ErrorFromBody, "").await;
        assert!(matches!(
            track_shipment(&store, &MockJobQueue::new(), id).await,
            Err(OperationError::Refused(Refusal::NoBarcode))
        ));
    }
}
