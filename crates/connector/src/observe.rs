//! What the worker tells the world about its work: events for the live stream and Prometheus
//! metrics, both recorded by decorators around the ports, so that neither the use cases nor the
//! [`Worker`] loop change.
//!
//! - [`EventRecorder`] appends events to an [`EventLog`] in batches from a task of its own:
//!   recording never waits and never fails a job (when the log is slow or down, events are
//!   dropped and counted in `lazona_events_dropped_total`).
//! - [`Worker::observed`] wraps the worker's queue and handler: `job_started`, `job_succeeded`,
//!   `job_retried` and `job_dead` events, `lazona_job_duration_seconds{kind,result}` and
//!   `lazona_jobs_total{kind,outcome}`; it also schedules the events' pruning
//!   ([`JobKind::PruneEvents`], hourly).
//! - [`shipment_jobs`] and [`customer_jobs`] wrap the carrier, the shop,
//!   the CRM and the mailer (`lazona_external_call_duration_seconds{service,call}`,
//!   `lazona_external_call_errors_total{service,call,error}`) and the shipment store, whose
//!   writes are the shipments' events: a booking recorded is `shipment_booked` (or `refused`,
//!   or `picked_up`), a shipment marked mailed is `label_mailed` (or `booking_error_mailed`), a
//!   tracking poll that changed something is `tracking_changed`; a WordPress user's roles
//!   changed is `member_upgraded` (the customer job changes roles for nothing else).

use crate::worker::{JobHandler, Periodic, Worker};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::error::{
    Classified, CrmError, JobError, MailError, QueueError, ShippingError, ShopError, StoreError,
    UnshippableParcel,
};
use domain::model::shipment::VendorProfile;
use domain::model::{
    BookingOutcome, BookingRecorded, Claim, DeadJob, EventKind, Job, JobId, JobKind, NewEvent,
    NewJob, Order, Parcel, ParcelBooking, PastBooking, ShipmentFilter, ShipmentMethod,
    ShipmentRecord, ShipmentStatus, TrackingReport,
};
use domain::ports::{
    Crm, Email, EventLog, JobQueue, Mailer, QueueStats, ShipmentStore, ShippingProvider, Shop,
    ShopUser,
};
use domain::service::customers::CustomerJobs;
use domain::service::shipment_jobs::ShipmentJobs;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Events waiting to be written, at most; past that they are dropped (and counted).
const RECORDER_CAPACITY: usize = 8192;
/// Most events per append.
const RECORDER_BATCH: usize = 512;
/// The longest message kept in an event.
const MESSAGE_MAX: usize = 300;

enum Msg {
    Event(NewEvent),
    Flush(oneshot::Sender<()>),
}

/// Appends events to an [`EventLog`] in batches, best-effort, from a task of its own. Cheap to
/// clone; the task ends when the last clone is dropped, after writing what it was given.
#[derive(Clone)]
pub struct EventRecorder {
    tx: mpsc::Sender<Msg>,
}

impl std::fmt::Debug for EventRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventRecorder").finish_non_exhaustive()
    }
}

impl EventRecorder {
    /// Starts the writing task on the current tokio runtime.
    pub fn start(log: Arc<dyn EventLog>) -> Self {
        let (tx, rx) = mpsc::channel(RECORDER_CAPACITY);
        tokio::spawn(write_events(log, rx));
        EventRecorder { tx }
    }

    /// Records `event`; returns at once. Dropped (and counted) when too many are waiting.
    pub fn record(&self, mut event: NewEvent) {
        if event.message.len() > MESSAGE_MAX {
            let mut end = MESSAGE_MAX;
            while !event.message.is_char_boundary(end) {
                end -= 1;
            }
            event.message.truncate(end);
            event.message.push('…');
        }
        if self.tx.try_send(Msg::Event(event)).is_err() {
            metrics::counter!("lazona_events_dropped_total").increment(1);
        }
    }

    /// Waits until the events recorded before this call are written (or dropped): for tests and
    /// for draining.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Msg::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

async fn write_events(log: Arc<dyn EventLog>, mut rx: mpsc::Receiver<Msg>) {
    let mut batch = Vec::with_capacity(RECORDER_BATCH);
    let mut flushes = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(msg) = next {
            match msg {
                Msg::Event(e) => batch.push(e),
                Msg::Flush(done) => flushes.push(done),
            }
            next = if batch.len() < RECORDER_BATCH {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        if !batch.is_empty() {
            match log.append(&batch).await {
                Ok(()) => {
                    metrics::counter!("lazona_events_written_total").increment(batch.len() as u64);
                }
                Err(e) => {
                    metrics::counter!("lazona_events_dropped_total").increment(batch.len() as u64);
                    tracing::warn!(error = %domain::error::error_chain(&e), events = batch.len(), "events not written");
                }
            }
            batch.clear();
        }
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
    }
}

/// How often the events older than the retention are pruned.
pub const PRUNE_EVERY: Duration = Duration::from_secs(3600);

impl Worker {
    /// This worker with its jobs observed: events through `events` (when given), metrics
    /// always, and the hourly pruning of events older than `retention` from `log` (when given).
    #[must_use]
    pub fn observed(
        mut self,
        events: Option<EventRecorder>,
        log: Option<(Arc<dyn EventLog>, Duration)>,
    ) -> Self {
        let prunes = log.is_some();
        self.queue = Arc::new(ObservedQueue {
            inner: self.queue,
            events: events.clone(),
        });
        self.handler = Arc::new(ObservedHandler {
            inner: self.handler,
            events,
            log,
        });
        if prunes {
            self = self.with_periodic(Periodic {
                name: "prune_events".into(),
                every: PRUNE_EVERY,
                kind: JobKind::PruneEvents,
            });
        }
        self
    }
}

fn job_event(kind: EventKind, job: &Job, message: String) -> NewEvent {
    let mut e = NewEvent::now(kind, message).job(job.id.0);
    match &job.kind {
        JobKind::ProcessWebhook { webhook_id } => e.webhook_id = Some(webhook_id.0),
        JobKind::SendLabelMail { shipment_id }
        | JobKind::SendBookingErrorMail { shipment_id }
        | JobKind::TrackShipment { shipment_id }
        | JobKind::RetryShipment { shipment_id, .. } => e.shipment_id = Some(*shipment_id),
        _ => {}
    }
    e
}

/// The handler, timed, with `job_started` events and the events' pruning.
struct ObservedHandler {
    inner: Arc<dyn JobHandler>,
    events: Option<EventRecorder>,
    log: Option<(Arc<dyn EventLog>, Duration)>,
}

#[async_trait]
impl JobHandler for ObservedHandler {
    async fn dead_lettered(&self, job: &Job, reason: &str) {
        self.inner.dead_lettered(job, reason).await;
    }

    async fn handle(&self, job: &Job) -> Result<(), JobError> {
        let kind = job.kind.name();
        let started = Instant::now();
        let result = match (&job.kind, &self.log) {
            (JobKind::PruneEvents, Some((log, retention))) => {
                let before =
                    Utc::now() - chrono::Duration::from_std(*retention).unwrap_or_default();
                match log.prune(before).await {
                    Ok(n) => {
                        tracing::info!(pruned = n, %before, "events pruned");
                        Ok(())
                    }
                    Err(e) => Err(JobError::Transient {
                        reason: domain::error::error_chain(&e),
                        retry_after: None,
                    }),
                }
            }
            _ => {
                if let Some(events) = &self.events {
                    events.record(job_event(
                        EventKind::JobStarted,
                        job,
                        format!("{kind} started (attempt {})", job.attempt),
                    ));
                }
                self.inner.handle(job).await
            }
        };
        let result_label = match &result {
            Ok(()) => "ok",
            Err(JobError::Transient { .. }) => "transient",
            Err(JobError::Permanent { .. }) => "permanent",
        };
        metrics::histogram!("lazona_job_duration_seconds", "kind" => kind, "result" => result_label)
            .record(started.elapsed().as_secs_f64());
        result
    }
}

/// The queue, with the jobs' outcomes counted and recorded as events.
struct ObservedQueue {
    inner: Arc<dyn JobQueue>,
    events: Option<EventRecorder>,
}

impl ObservedQueue {
    fn outcome(&self, job: &Job, outcome: &'static str, kind: EventKind, message: String) {
        metrics::counter!("lazona_jobs_total", "kind" => job.kind.name(), "outcome" => outcome)
            .increment(1);
        if let Some(events) = &self.events {
            events.record(job_event(kind, job, message));
        }
    }
}

#[async_trait]
impl JobQueue for ObservedQueue {
    async fn enqueue(&self, job: NewJob) -> Result<JobId, QueueError> {
        self.inner.enqueue(job).await
    }

    async fn enqueue_periodic(
        &self,
        name: &str,
        every: Duration,
        job: NewJob,
    ) -> Result<bool, QueueError> {
        self.inner.enqueue_periodic(name, every, job).await
    }

    async fn reserve(
        &self,
        max: usize,
        lease: Duration,
        wait: Duration,
    ) -> Result<Vec<Job>, QueueError> {
        self.inner.reserve(max, lease, wait).await
    }

    async fn extend(&self, jobs: &[Job], lease: Duration) -> Result<(), QueueError> {
        self.inner.extend(jobs, lease).await
    }

    async fn complete(&self, jobs: &[Job]) -> Result<(), QueueError> {
        self.inner.complete(jobs).await?;
        for job in jobs {
            self.outcome(
                job,
                "succeeded",
                EventKind::JobSucceeded,
                format!("{} done", job.kind.name()),
            );
        }
        Ok(())
    }

    async fn retry(&self, job: &Job, at: DateTime<Utc>, error: &str) -> Result<(), QueueError> {
        self.inner.retry(job, at, error).await?;
        self.outcome(
            job,
            "retried",
            EventKind::JobRetried,
            format!(
                "{} failed (attempt {}), retried at {}: {error}",
                job.kind.name(),
                job.attempt,
                at.format("%Y-%m-%d %H:%M:%S UTC")
            ),
        );
        Ok(())
    }

    async fn dead_letter(&self, job: &Job, error: &str) -> Result<(), QueueError> {
        self.inner.dead_letter(job, error).await?;
        self.outcome(
            job,
            "dead",
            EventKind::JobDead,
            format!(
                "{} dead-lettered (attempt {}): {error}",
                job.kind.name(),
                job.attempt
            ),
        );
        Ok(())
    }

    async fn dead_jobs(&self, limit: usize) -> Result<Vec<DeadJob>, QueueError> {
        self.inner.dead_jobs(limit).await
    }

    async fn requeue_dead(&self, id: JobId) -> Result<(), QueueError> {
        self.inner.requeue_dead(id).await
    }

    async fn stats(&self) -> Result<QueueStats, QueueError> {
        self.inner.stats().await
    }
}

/// How a port error is labelled in `lazona_external_call_errors_total`.
/// Runs a third-party call, timing it and counting its errors by class.
async fn external<T, E: Classified>(
    service: &'static str,
    call: &'static str,
    f: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let started = Instant::now();
    let result = f.await;
    metrics::histogram!("lazona_external_call_duration_seconds", "service" => service, "call" => call)
        .record(started.elapsed().as_secs_f64());
    if let Err(e) = &result {
        metrics::counter!("lazona_external_call_errors_total", "service" => service, "call" => call, "error" => e.kind())
            .increment(1);
    }
    result
}

/// `jobs` with their third-party calls measured and their shipments' changes recorded as events
/// through `events` (when given).
#[must_use]
pub fn shipment_jobs(mut jobs: ShipmentJobs, events: Option<EventRecorder>) -> ShipmentJobs {
    jobs.carrier = Arc::new(ObservedCarrier(jobs.carrier));
    jobs.shop = Arc::new(ObservedShop {
        inner: jobs.shop,
        events: events.clone(),
    });
    jobs.mailer = Arc::new(ObservedMailer(jobs.mailer));
    if let Some(events) = events {
        jobs.store = Arc::new(ObservedStore {
            inner: jobs.store,
            events,
        });
    }
    jobs
}

/// `jobs` with their CRM calls measured and members' upgrades recorded as events through
/// `events` (when given).
#[must_use]
pub fn customer_jobs(mut jobs: CustomerJobs, events: Option<EventRecorder>) -> CustomerJobs {
    jobs.crm = Arc::new(ObservedCrm(jobs.crm));
    jobs.shop = Arc::new(ObservedShop {
        inner: jobs.shop,
        events,
    });
    jobs
}

struct ObservedCarrier(Arc<dyn ShippingProvider>);

#[async_trait]
impl ShippingProvider for ObservedCarrier {
    fn request_for(&self, parcel: &Parcel) -> Result<String, UnshippableParcel> {
        self.0.request_for(parcel)
    }

    async fn book(&self, parcels: &[Parcel]) -> Result<Vec<ParcelBooking>, ShippingError> {
        external("koiki", "book", self.0.book(parcels)).await
    }

    async fn track(&self, barcode: &str) -> Result<TrackingReport, ShippingError> {
        external("koiki", "track", self.0.track(barcode)).await
    }
}

struct ObservedCrm(Arc<dyn Crm>);

#[async_trait]
impl Crm for ObservedCrm {
    async fn membership_roles(&self, email: &str) -> Result<Vec<String>, CrmError> {
        external(
            "sugarcrm",
            "membership_roles",
            self.0.membership_roles(email),
        )
        .await
    }
}

struct ObservedMailer(Arc<dyn Mailer>);

#[async_trait]
impl Mailer for ObservedMailer {
    async fn send(&self, email: &Email) -> Result<(), MailError> {
        external("smtp", "send", self.0.send(email)).await
    }
}

struct ObservedShop {
    inner: Arc<dyn Shop>,
    events: Option<EventRecorder>,
}

#[async_trait]
impl Shop for ObservedShop {
    async fn vendor(&self, vendor_id: i64) -> Result<VendorProfile, ShopError> {
        external("shop", "vendor", self.inner.vendor(vendor_id)).await
    }

    async fn order(&self, order_id: i64) -> Result<Order, ShopError> {
        external("shop", "order", self.inner.order(order_id)).await
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<ShopUser>, ShopError> {
        external("shop", "user_by_email", self.inner.user_by_email(email)).await
    }

    async fn set_user_roles(&self, user_id: i64, roles: &[String]) -> Result<ShopUser, ShopError> {
        let user = external(
            "shop",
            "set_user_roles",
            self.inner.set_user_roles(user_id, roles),
        )
        .await?;
        if let Some(events) = &self.events {
            events.record(NewEvent::now(
                EventKind::MemberUpgraded,
                format!(
                    "WordPress user {user_id} is a member: roles now {}",
                    roles.join(",")
                ),
            ));
        }
        Ok(user)
    }
}

/// The shipment store, whose writes are recorded as the shipments' events.
struct ObservedStore {
    inner: Arc<dyn ShipmentStore>,
    events: EventRecorder,
}

impl ObservedStore {
    fn record(&self, kind: EventKind, s: &ShipmentRecord, message: String) {
        self.events
            .record(NewEvent::now(kind, message).shipment(s.id, s.order_id, s.vendor_id));
    }
}

#[async_trait]
impl ShipmentStore for ObservedStore {
    async fn claim(
        &self,
        order_id: i64,
        vendor_id: i64,
        method: ShipmentMethod,
    ) -> Result<Claim, StoreError> {
        self.inner.claim(order_id, vendor_id, method).await
    }

    async fn release(&self, id: i64) -> Result<(), StoreError> {
        self.inner.release(id).await
    }

    async fn record_booking(
        &self,
        id: i64,
        attempt: i64,
        outcome: &BookingOutcome,
    ) -> Result<BookingRecorded, StoreError> {
        let recorded = self.inner.record_booking(id, attempt, outcome).await?;
        let s = match &recorded {
            BookingRecorded::Current(s) => s,
            BookingRecorded::Aside(s) => {
                self.record(
                    EventKind::BookingKeptAside,
                    s,
                    format!(
                        "order {} vendor {}: a booking came back after another had started \
                         (barcode {:?}): a second parcel, kept among the shipment's past \
                         bookings",
                        s.order_id, s.vendor_id, outcome.delivery_id
                    ),
                );
                return Ok(recorded);
            }
        };
        match s.status {
            ShipmentStatus::Delivered if s.method == ShipmentMethod::LocalPickup => self.record(
                EventKind::ShipmentPickedUp,
                s,
                format!("order {} vendor {}: local pickup", s.order_id, s.vendor_id),
            ),
            ShipmentStatus::ErrorFromBody => self.record(
                EventKind::ShipmentRefused,
                s,
                format!(
                    "order {} vendor {}: booking refused: {}",
                    s.order_id, s.vendor_id, s.message
                ),
            ),
            _ => self.record(
                EventKind::ShipmentBooked,
                s,
                format!(
                    "order {} vendor {}: booked, barcode {}",
                    s.order_id, s.vendor_id, s.delivery_id
                ),
            ),
        }
        Ok(recorded)
    }

    async fn reserve_booking(
        &self,
        id: i64,
        from: ShipmentStatus,
        attempt: i64,
        stale_before: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<ShipmentRecord>, StoreError> {
        self.inner
            .reserve_booking(id, from, attempt, stale_before)
            .await
    }

    async fn start_booking(
        &self,
        id: i64,
        attempt: i64,
        from: ShipmentStatus,
    ) -> Result<bool, StoreError> {
        self.inner.start_booking(id, attempt, from).await
    }

    async fn end_booking(
        &self,
        id: i64,
        attempt: i64,
        to: ShipmentStatus,
    ) -> Result<bool, StoreError> {
        self.inner.end_booking(id, attempt, to).await
    }

    async fn past_bookings(&self, id: i64) -> Result<Vec<PastBooking>, StoreError> {
        self.inner.past_bookings(id).await
    }

    async fn past_label(&self, id: i64, past_id: i64) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.past_label(id, past_id).await
    }

    async fn record_tracking(
        &self,
        id: i64,
        status: ShipmentStatus,
        message: &str,
        notes: &str,
        event_date: Option<String>,
    ) -> Result<ShipmentRecord, StoreError> {
        let before = self.inner.get(id).await.ok().flatten();
        let s = self
            .inner
            .record_tracking(id, status, message, notes, event_date)
            .await?;
        let changed = before.is_none_or(|b| b.status != s.status || b.message != s.message);
        if changed {
            self.record(
                EventKind::TrackingChanged,
                &s,
                format!("{} {}: {}", s.delivery_id, s.status, s.message),
            );
        }
        Ok(s)
    }

    async fn mark_mailed(&self, id: i64) -> Result<ShipmentRecord, StoreError> {
        let s = self.inner.mark_mailed(id).await?;
        let (kind, message) = if s.status == ShipmentStatus::ErrorFromBody {
            (
                EventKind::BookingErrorMailed,
                format!(
                    "order {}: the refused booking mailed to the admins",
                    s.order_id
                ),
            )
        } else {
            (
                EventKind::LabelMailed,
                format!(
                    "order {}: label mailed to vendor {}",
                    s.order_id, s.vendor_id
                ),
            )
        };
        self.record(kind, &s, message);
        Ok(s)
    }

    async fn get(&self, id: i64) -> Result<Option<ShipmentRecord>, StoreError> {
        self.inner.get(id).await
    }

    async fn label(&self, id: i64) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.label(id).await
    }

    async fn of_order(&self, order_id: i64) -> Result<Vec<ShipmentRecord>, StoreError> {
        self.inner.of_order(order_id).await
    }

    async fn transition(
        &self,
        id: i64,
        from: ShipmentStatus,
        to: ShipmentStatus,
    ) -> Result<bool, StoreError> {
        self.inner.transition(id, from, to).await
    }

    async fn list(&self, filter: &ShipmentFilter) -> Result<Vec<ShipmentRecord>, StoreError> {
        self.inner.list(filter).await
    }

    async fn to_track(&self) -> Result<Vec<ShipmentRecord>, StoreError> {
        self.inner.to_track().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use adapters::memory::MemoryShipmentStore;
    use domain::error::EventError;
    use domain::model::{Event, EventId};
    use std::sync::Mutex;

    /// A log in memory.
    #[derive(Default)]
    struct Log {
        events: Mutex<Vec<NewEvent>>,
        appends: Mutex<usize>,
    }

    impl Log {
        fn kinds(&self) -> Vec<EventKind> {
            self.events
                .lock()
                .expect("lock")
                .iter()
                .map(|e| e.kind)
                .collect()
        }
    }

    #[async_trait]
    impl EventLog for Log {
        async fn append(&self, events: &[NewEvent]) -> Result<(), EventError> {
            *self.appends.lock().expect("lock") += 1;
            self.events.lock().expect("lock").extend_from_slice(events);
            Ok(())
        }
        async fn read(
            &self,
            _: EventId,
            _: Option<i64>,
            _: usize,
        ) -> Result<Vec<Event>, EventError> {
            Ok(Vec::new())
        }
        async fn last_id(&self) -> Result<EventId, EventError> {
            Ok(EventId(0))
        }
        async fn prune(&self, _: DateTime<Utc>) -> Result<u64, EventError> {
            Ok(0)
        }
        async fn wait(&self, _: Duration) {}
    }

    /// A log that is down.
    struct Down;

    #[async_trait]
    impl EventLog for Down {
        async fn append(&self, _: &[NewEvent]) -> Result<(), EventError> {
            Err(EventError::Unavailable("down".into()))
        }
        async fn read(
            &self,
            _: EventId,
            _: Option<i64>,
            _: usize,
        ) -> Result<Vec<Event>, EventError> {
            Err(EventError::Unavailable("down".into()))
        }
        async fn last_id(&self) -> Result<EventId, EventError> {
            Err(EventError::Unavailable("down".into()))
        }
        async fn prune(&self, _: DateTime<Utc>) -> Result<u64, EventError> {
            Err(EventError::Unavailable("down".into()))
        }
        async fn wait(&self, _: Duration) {}
    }

    #[tokio::test]
    async fn events_are_written_in_batches_and_a_log_that_is_down_fails_nothing() {
        let log = Arc::new(Log::default());
        let recorder = EventRecorder::start(log.clone());
        for n in 0..1000 {
            recorder.record(NewEvent::now(EventKind::JobStarted, format!("job {n}")));
        }
        recorder.flush().await;
        assert_eq!(log.events.lock().expect("lock").len(), 1000);
        let appends = *log.appends.lock().expect("lock");
        assert!(appends <= 10, "batched: {appends} appends");

        let down = EventRecorder::start(Arc::new(Down));
        down.record(NewEvent::now(EventKind::JobDead, "x".repeat(10_000)));
        down.flush().await; // returns: the event is dropped, nothing fails
    }

    #[tokio::test]
    async fn shipment_writes_become_events_with_their_vendor() {
        let log = Arc::new(Log::default());
        let events = EventRecorder::start(log.clone());
        let store = ObservedStore {
            inner: Arc::new(MemoryShipmentStore::new()),
            events: events.clone(),
        };
        let Claim::Claimed(s) = store
            .claim(33, 6, ShipmentMethod::Koiki)
            .await
            .expect("claim")
        else {
            panic!("new")
        };
        let booked = BookingOutcome {
            status: ShipmentStatus::LabelSent,
            delivery_id: "B1".into(),
            request: String::new(),
            message: "OK".into(),
            label_pdf: Some(b"%PDF".to_vec()),
        };
        store
            .record_booking(s.id, 0, &booked)
            .await
            .expect("booked");
        store.mark_mailed(s.id).await.expect("mailed");
        store
            .record_tracking(s.id, ShipmentStatus::InProcess, "on its way", "", None)
            .await
            .expect("tracked");
        // The same poll again: nothing changed, no event.
        store
            .record_tracking(s.id, ShipmentStatus::InProcess, "on its way", "", None)
            .await
            .expect("tracked");
        let Claim::Claimed(r) = store
            .claim(33, 7, ShipmentMethod::Koiki)
            .await
            .expect("claim")
        else {
            panic!("new")
        };
        let refused = BookingOutcome {
            status: ShipmentStatus::ErrorFromBody,
            delivery_id: String::new(),
            request: String::new(),
            message: "bad zip".into(),
            label_pdf: None,
        };
        store
            .record_booking(r.id, 0, &refused)
            .await
            .expect("refused");
        events.flush().await;

        assert_eq!(
            log.kinds(),
            [
                EventKind::ShipmentBooked,
                EventKind::LabelMailed,
                EventKind::TrackingChanged,
                EventKind::ShipmentRefused,
            ]
        );
        let written = log.events.lock().expect("lock").clone();
        assert_eq!(
            written.iter().map(|e| e.vendor_id).collect::<Vec<_>>(),
            [Some(6), Some(6), Some(6), Some(7)]
        );
        assert!(written.iter().all(|e| e.order_id == Some(33)));
        assert!(written[3].message.contains("bad zip"), "{:?}", written[3]);
    }

    struct Fails;

    #[async_trait]
    impl JobHandler for Fails {
        async fn handle(&self, job: &Job) -> Result<(), JobError> {
            match job.kind {
                JobKind::Noop { tag: 1 } => Ok(()),
                JobKind::Noop { tag: 2 } => Err(JobError::Transient {
                    reason: "later".into(),
                    retry_after: None,
                }),
                _ => Err(JobError::Permanent {
                    reason: "never".into(),
                }),
            }
        }
    }

    #[tokio::test]
    async fn an_observed_worker_records_each_jobs_start_and_outcome() {
        let db_settings =
            adapters::config::Settings::from_toml("database.url = \"sqlite::memory:\"")
                .expect("settings");
        let db = adapters::db::Database::connect(&db_settings.database)
            .await
            .expect("db");
        db.migrate().await.expect("migrate");
        let queue: Arc<dyn JobQueue> = Arc::new(adapters::db::SqlJobQueue::new(db.clone()));
        for tag in [1, 2, 3] {
            queue
                .enqueue(NewJob {
                    kind: JobKind::Noop { tag },
                    run_at: None,
                })
                .await
                .expect("enqueue");
        }
        let log = Arc::new(Log::default());
        let events = EventRecorder::start(log.clone());
        let options = crate::worker::WorkerOptions {
            retry: crate::worker::RetryPolicy {
                schedule: vec![Duration::from_secs(60)],
                jitter: 0.0,
            },
            ..crate::worker::WorkerOptions::default()
        };
        let worker =
            Worker::new(queue, Arc::new(Fails), options).observed(Some(events.clone()), None);
        let outcome = worker.drain().await.expect("drained");
        assert_eq!(
            (outcome.completed, outcome.retried, outcome.dead),
            (1, 1, 1)
        );
        events.flush().await;
        let mut kinds = log.kinds();
        kinds.sort_by_key(|k| k.as_str());
        assert_eq!(
            kinds,
            [
                EventKind::JobDead,
                EventKind::JobRetried,
                EventKind::JobStarted,
                EventKind::JobStarted,
                EventKind::JobStarted,
                EventKind::JobSucceeded,
            ]
        );
        assert!(
            log.events
                .lock()
                .expect("lock")
                .iter()
                .all(|e| e.job_id.is_some())
        );
    }
}
