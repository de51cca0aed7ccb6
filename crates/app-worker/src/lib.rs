//! The connector as a library, and its worker.
//!
//! # Embedding the connector
//!
//! [`Connector`] is the whole connector inside your own tokio application, without the
//! binaries: build it from the configuration, replacing any adapter with your own (a carrier,
//! the shop, the mailer, the CRM, the shipment store); [`Connector::ingest`] a webhook from its
//! headers and body bytes (the same signature check, deduplication and storage as
//! `lazona-http`); and run the worker with [`Connector::run_worker`] or
//! [`Connector::spawn_worker`] (or [`Connector::drain`] in tests). Here a carrier of your own
//! books a signed order, in memory:
//!
//! ```
//! use app_worker::adapters::config::Settings;
//! use app_worker::domain::error::ShippingError;
//! use app_worker::domain::memory::{MemoryMailer, MemoryShop};
//! use app_worker::domain::model::shipment::VendorProfile;
//! use app_worker::domain::model::{
//!     Parcel, ParcelBooking, Resource, ShipmentStatus, TrackingReport,
//! };
//! use app_worker::domain::ports::ShippingProvider;
//! use app_worker::domain::service::signature::WebhookSecret;
//! use app_worker::{Connector, IngestOutcome};
//! use std::sync::Arc;
//!
//! /// Your carrier: books every parcel.
//! struct MyCarrier;
//!
//! #[async_trait::async_trait]
//! impl ShippingProvider for MyCarrier {
//!     async fn book(&self, parcels: &[Parcel]) -> Result<Vec<ParcelBooking>, ShippingError> {
//!         let booked = |n: usize| ParcelBooking::Booked {
//!             barcode: format!("MY-{n}"),
//!             reference: String::new(),
//!             message: "ok".into(),
//!             label_pdf: b"%PDF-1.4".to_vec(),
//!         };
//!         Ok((0..parcels.len()).map(booked).collect())
//!     }
//!     async fn track(&self, _barcode: &str) -> Result<TrackingReport, ShippingError> {
//!         Err(ShippingError::Rejected { reason: "no tracking yet".into() })
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> anyhow::Result<()> {
//! let settings = Settings::from_toml(
//!     r#"
//!     webhook.secret = "s3cret"
//!     database.url = "sqlite::memory:"
//!     "#,
//! )?;
//! let vendor = VendorProfile { id: 6, email: "vendor@example.com".into(), ..Default::default() };
//! let mailer = Arc::new(MemoryMailer::new());
//! let connector = Connector::builder(settings)
//!     .carrier(Arc::new(MyCarrier))
//!     .shop(Arc::new(MemoryShop::new().with_vendor(vendor)))
//!     .mailer(mailer.clone())
//!     .build()
//!     .await?;
//!
//! let order = br#"{"id": 33, "order_key": "wc_order_33",
//!     "shipping_lines": [{"id": 1, "method_id": "flat_rate",
//!                         "meta_data": [{"key": "vendor_id", "value": "6"}]}],
//!     "line_items": [{"id": 1, "quantity": 1, "name": "Juice",
//!                     "meta_data": [{"key": "_vendor_id", "value": "6"}]}]}"#;
//! let headers = [
//!     ("X-WC-Webhook-Signature", WebhookSecret::new("s3cret").sign(order)),
//!     ("X-WC-Webhook-Topic", "order.created".into()),
//!     ("X-WC-Webhook-Delivery-ID", "delivery-1".into()),
//! ];
//! let outcome = connector.ingest(Resource::Order, headers, &order[..]).await?;
//! assert!(matches!(outcome, IngestOutcome::Stored { .. }));
//!
//! connector.drain().await?; // a long-running app: connector.spawn_worker(shutdown)
//! let shipments = connector.shipments().of_order(33).await?;
//! assert_eq!(shipments[0].status, ShipmentStatus::LabelSent);
//! assert_eq!(mailer.sent()[0].to, ["vendor@example.com"]);
//! # Ok(())
//! # }
//! ```
//!
//! `examples/embed.rs` does the same with a worker running in the background.
//!
//! # The worker
//!
//! [`Worker`] reserves jobs from a [`JobQueue`], runs them through a [`JobHandler`], and
//! acknowledges, retries (with backoff and jitter) or dead-letters each one.
//!
//! `lazona-worker` runs it as its own process; `lazona-http` runs it in-process on the embedded
//! default. Embedders call [`Worker::run`] in their own runtime, with their own handler if they
//! like.
//!
//! Jobs run concurrently up to `concurrency`; leases of running jobs are extended in the
//! background, so a slow job is not handed to another worker while this one is alive;
//! acknowledgements are batched. On shutdown the worker stops reserving, waits for the jobs in
//! flight up to a timeout, and leaves the rest to their leases.

mod connector;
mod ingest;
mod observe;
mod prometheus;

/// The adapters: the configuration ([`adapters::config::Settings`]), SQL storage, the clients.
pub use adapters;
pub use connector::{Connector, ConnectorBuilder};
/// The domain: models, ports (to implement your own adapters) and use cases.
pub use domain;
pub use ingest::{IngestError, IngestOutcome, ingest};
pub use observe::{EventRecorder, PRUNE_EVERY};
pub use prometheus::{prometheus, render as render_metrics, sample_queue, serve_metrics};

use async_trait::async_trait;
use chrono::Utc;
use domain::error::{JobError, QueueError};
use domain::model::{Job, JobId, JobKind, NewJob, Resource, WebhookStatus};
use domain::ports::{
    Crm, EventLog, JobQueue, Mailer, ShipmentStore, ShippingProvider, Shop, WebhookInbox,
};
use domain::service::customers::CustomerJobs;
use domain::service::process::process_webhook;
use domain::service::shipment_jobs::ShipmentJobs;
use domain::service::shipping::ShippingMethods;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

/// Runs one job. Implementations are idempotent: a job may run more than once.
#[async_trait]
pub trait JobHandler: Send + Sync {
    /// Does the job's work.
    ///
    /// # Errors
    /// [`JobError::Transient`] to be retried later, [`JobError::Permanent`] to be dead-lettered.
    async fn handle(&self, job: &Job) -> Result<(), JobError>;

    /// Called once a job has been dead-lettered (its retries exhausted, or a permanent failure),
    /// so that what the job stood for can be marked as failed for good. Best-effort: errors are
    /// logged, not returned.
    async fn dead_lettered(&self, _job: &Job, _reason: &str) {}
}

/// What the shipment jobs need: the ports beyond the inbox, and the shop's settings.
#[derive(Clone)]
pub struct ShippingRuntime {
    /// Where shipments are kept.
    pub store: Arc<dyn ShipmentStore>,
    /// The carrier.
    pub carrier: Arc<dyn ShippingProvider>,
    /// The shop.
    pub shop: Arc<dyn Shop>,
    /// Outgoing mail.
    pub mailer: Arc<dyn Mailer>,
    /// Where follow-up jobs are enqueued.
    pub queue: Arc<dyn JobQueue>,
    /// Which shipping methods mean Koiki and local pickup.
    pub methods: ShippingMethods,
    /// The shop's base URL.
    pub shop_host: String,
    /// The admins' e-mails.
    pub admins: Vec<String>,
}

impl ShippingRuntime {
    /// The runtime the configuration describes, or `None` when Koiki or the shop is not
    /// configured (`koiki.host`, `shop.host`).
    ///
    /// # Errors
    /// When a client cannot be built (a bad TLS set-up, a mail server setting).
    pub fn from_settings(
        settings: &adapters::config::Settings,
        db: &adapters::db::Database,
        queue: Arc<dyn JobQueue>,
    ) -> anyhow::Result<Option<Self>> {
        if settings.koiki.host.is_empty() || settings.shop.host.is_empty() {
            return Ok(None);
        }
        let timeout = settings.shipping.http_timeout_secs;
        Ok(Some(ShippingRuntime {
            store: Arc::new(adapters::db::SqlShipmentStore::new(db.clone())),
            carrier: Arc::new(adapters::koiki::KoikiClient::new(&settings.koiki, timeout)?),
            shop: Arc::new(adapters::wordpress::WordPressShop::new(
                &settings.shop,
                timeout,
            )?),
            mailer: Arc::new(adapters::mail::SmtpMailer::new(&settings.mail, timeout)?),
            queue,
            methods: ShippingMethods {
                koiki: settings.shipping.koiki_methods.clone(),
                local_pickup: settings.shipping.local_pickup_methods.clone(),
            },
            shop_host: settings.shop.host.trim_end_matches('/').to_owned(),
            admins: settings.mail.admin_recipients.clone(),
        }))
    }

    /// The periodic tracking poll, for [`Worker::with_periodic`].
    pub fn tracking_schedule(settings: &adapters::config::Settings) -> Periodic {
        Periodic {
            name: "track_shipments".into(),
            every: settings.shipping.tracking_every_secs,
            kind: JobKind::TrackShipments,
        }
    }
}

/// What the customer job needs: the CRM, the shop, and who is a member and what they become.
#[derive(Clone)]
pub struct CustomerRuntime {
    /// The cooperative's CRM.
    pub crm: Arc<dyn Crm>,
    /// The shop (WordPress users).
    pub shop: Arc<dyn Shop>,
    /// The CRM relationship roles that make a member.
    pub membership_roles: Vec<String>,
    /// The WordPress role members get.
    pub partner_role: String,
}

impl CustomerRuntime {
    /// The settings customer processing needs that are not set, with their legacy names.
    pub fn missing_settings(settings: &adapters::config::Settings) -> Vec<&'static str> {
        let mut missing = Vec::new();
        if settings.crm.rest_url.trim().is_empty() {
            missing.push("crm.rest_url (SUGARCRM_REST_URL)");
        }
        if settings.shop.host.trim().is_empty() {
            missing.push("shop.host (WCFMMP_HOST)");
        }
        if settings.shop.partner_role.trim().is_empty() {
            missing.push("shop.partner_role (WP_PARTNER_ROLE)");
        }
        if settings
            .crm
            .membership_roles
            .iter()
            .all(|r| r.trim().is_empty())
        {
            missing.push("crm.membership_roles (SUGARCRM_MEMBERSHIP_ROLES)");
        }
        missing
    }

    /// The runtime the configuration describes, or `None` when one of
    /// [`CustomerRuntime::missing_settings`] is not set: without a partner role a member's user
    /// would lose their roles, and without membership roles nobody is a member.
    ///
    /// # Errors
    /// When a client cannot be built (a bad TLS set-up).
    pub fn from_settings(settings: &adapters::config::Settings) -> anyhow::Result<Option<Self>> {
        if !Self::missing_settings(settings).is_empty() {
            return Ok(None);
        }
        let timeout = settings.shipping.http_timeout_secs;
        Ok(Some(CustomerRuntime {
            crm: Arc::new(adapters::sugarcrm::SugarCrmClient::new(
                &settings.crm,
                timeout,
            )?),
            shop: Arc::new(adapters::wordpress::WordPressShop::new(
                &settings.shop,
                timeout,
            )?),
            membership_roles: settings.crm.membership_roles.clone(),
            partner_role: settings.shop.partner_role.trim().to_owned(),
        }))
    }
}

/// The connector's worker as the configuration describes it: the connector's handler, with
/// shipping (and its periodic tracking poll) when Koiki and the shop are configured, and
/// customers upgraded to partners when the CRM and the shop are.
///
/// # Errors
/// When a shipping or CRM client cannot be built.
pub fn connector_worker(
    settings: &adapters::config::Settings,
    db: &adapters::db::Database,
    inbox: Arc<dyn WebhookInbox>,
    queue: Arc<dyn JobQueue>,
) -> anyhow::Result<Worker> {
    let mut handler = ConnectorHandler::new(inbox);
    let log: Arc<dyn EventLog> = Arc::new(adapters::db::SqlEventLog::new(db.clone()));
    let events = EventRecorder::start(log.clone());
    let shipping = ShippingRuntime::from_settings(settings, db, queue.clone())?;
    let fulfils = shipping.is_some();
    match shipping {
        Some(rt) => handler = handler.with_shipping(rt.observed(Some(events.clone()))),
        None => tracing::warn!("koiki.host or shop.host not set: orders are recorded, not shipped"),
    }
    match CustomerRuntime::from_settings(settings)? {
        Some(rt) => handler = handler.with_customers(rt.observed(Some(events.clone()))),
        None => tracing::warn!(
            missing = %CustomerRuntime::missing_settings(settings).join(", "),
            "customer webhooks are validated and recorded, no partner role is given: settings missing"
        ),
    }
    let mut worker = Worker::new(
        queue,
        Arc::new(handler),
        WorkerOptions::from_config(&settings.worker),
    )
    .observed(Some(events), Some((log, settings.events.retention())));
    if fulfils {
        worker = worker.with_periodic(ShippingRuntime::tracking_schedule(settings));
    }
    Ok(worker)
}

/// The connector's jobs: webhooks processed through the inbox (orders fulfilled when shipping is
/// configured, members given their partner role when customers are), shipment mails, tracking,
/// no-ops.
pub struct ConnectorHandler {
    inbox: Arc<dyn WebhookInbox>,
    shipping: Option<ShippingRuntime>,
    customers: Option<CustomerRuntime>,
}

impl ConnectorHandler {
    /// Handles webhook jobs with `inbox`; orders are only validated and recorded until
    /// [`ConnectorHandler::with_shipping`] is given.
    pub fn new(inbox: Arc<dyn WebhookInbox>) -> Self {
        ConnectorHandler {
            inbox,
            shipping: None,
            customers: None,
        }
    }

    /// Gives members their partner role with `customers`; without it customer webhooks are only
    /// validated and recorded.
    pub fn with_customers(mut self, customers: CustomerRuntime) -> Self {
        self.customers = Some(customers);
        self
    }

    fn customer_jobs<'a>(&'a self, rt: &'a CustomerRuntime) -> CustomerJobs<'a> {
        CustomerJobs {
            inbox: self.inbox.as_ref(),
            crm: rt.crm.as_ref(),
            shop: rt.shop.as_ref(),
            membership_roles: &rt.membership_roles,
            partner_role: &rt.partner_role,
        }
    }

    /// Fulfils orders, mails and tracks shipments with `shipping`.
    pub fn with_shipping(mut self, shipping: ShippingRuntime) -> Self {
        self.shipping = Some(shipping);
        self
    }

    fn jobs<'a>(&'a self, rt: &'a ShippingRuntime) -> ShipmentJobs<'a> {
        ShipmentJobs {
            inbox: self.inbox.as_ref(),
            store: rt.store.as_ref(),
            carrier: rt.carrier.as_ref(),
            shop: rt.shop.as_ref(),
            mailer: rt.mailer.as_ref(),
            queue: rt.queue.as_ref(),
            methods: &rt.methods,
            shop_host: &rt.shop_host,
            admins: &rt.admins,
        }
    }

    fn shipping(&self) -> Result<&ShippingRuntime, JobError> {
        self.shipping.as_ref().ok_or_else(|| JobError::Transient {
            reason: "shipping is not configured (KOIKI_HOST, WCFMMP_HOST)".into(),
            retry_after: None,
        })
    }
}

#[async_trait]
impl JobHandler for ConnectorHandler {
    /// A webhook whose processing was given up is `failed`, with the reason, rather than left
    /// `queued` for ever: operators find it with `lazona webhooks list --status failed` and can
    /// replay it.
    async fn dead_lettered(&self, job: &Job, reason: &str) {
        if let JobKind::ProcessWebhook { webhook_id } = &job.kind {
            let detail = format!("given up after {} attempt(s): {reason}", job.attempt);
            if let Err(e) = self
                .inbox
                .transition(
                    *webhook_id,
                    WebhookStatus::Queued,
                    WebhookStatus::Failed,
                    Some(detail),
                )
                .await
            {
                tracing::warn!(%webhook_id, error = %e, "webhook not marked failed");
            }
        }
    }

    async fn handle(&self, job: &Job) -> Result<(), JobError> {
        match &job.kind {
            JobKind::ProcessWebhook { webhook_id } => {
                tracing::Span::current().record("webhook_id", webhook_id.0);
                if (self.shipping.is_some() || self.customers.is_some())
                    && let Some(webhook) = self.inbox.get(*webhook_id).await?
                {
                    // The webhook read here is the one processed: no second read.
                    match (webhook.data.resource, &self.shipping, &self.customers) {
                        (Resource::Order, Some(rt), _) => {
                            return self.jobs(rt).process_order(&webhook).await;
                        }
                        (Resource::Customer, _, Some(rt)) => {
                            return self.customer_jobs(rt).process_customer(&webhook).await;
                        }
                        _ => {}
                    }
                }
                process_webhook(self.inbox.as_ref(), *webhook_id).await
            }
            JobKind::SendLabelMail { shipment_id } => {
                self.jobs(self.shipping()?)
                    .send_label_mail(*shipment_id)
                    .await
            }
            JobKind::SendBookingErrorMail { shipment_id } => {
                self.jobs(self.shipping()?)
                    .send_booking_error_mail(*shipment_id)
                    .await
            }
            JobKind::TrackShipments => self.jobs(self.shipping()?).track_all().await,
            JobKind::TrackShipment { shipment_id } => {
                self.jobs(self.shipping()?).track_one(*shipment_id).await
            }
            JobKind::RetryShipment {
                shipment_id,
                force,
                held,
            } => {
                self.jobs(self.shipping()?)
                    .retry_shipment(*shipment_id, *force, *held)
                    .await
            }
            // Pruned by the observed worker's handler (`Worker::observed`); nothing to do here.
            JobKind::PruneEvents | JobKind::Noop { .. } => Ok(()),
        }
    }
}

/// When failed jobs are tried again.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// The wait before each retry: the first entry after the first failure, and so on. A job
    /// that fails once more than there are entries is dead-lettered.
    pub schedule: Vec<Duration>,
    /// Each wait is randomly stretched or shrunk by up to this fraction (0.2: ±20 %), so jobs
    /// that failed together do not all come back together.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    /// 5 s, 30 s, 2 min, 10 min, 30 min, 1 h, 2 h, 4 h, 8 h, 8 h: about a day in all, ±20 %.
    fn default() -> Self {
        RetryPolicy {
            schedule: [5, 30, 120, 600, 1800, 3600, 7200, 14_400, 28_800, 28_800]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
            jitter: 0.2,
        }
    }
}

impl RetryPolicy {
    /// The wait before the next attempt of a job whose attempt number `attempt` (1-based) just
    /// failed, or `None` to give up. A peer's `Retry-After` is honoured when longer.
    pub fn delay(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        seed: u64,
    ) -> Option<Duration> {
        let index = usize::try_from(attempt.saturating_sub(1)).ok()?;
        let base = *self.schedule.get(index)?;
        let unit = (splitmix(seed) >> 11) as f64 / (1u64 << 53) as f64; // [0, 1)
        let factor = 1.0 + self.jitter.clamp(0.0, 1.0) * (2.0 * unit - 1.0);
        let jittered = base.mul_f64(factor.max(0.0));
        Some(retry_after.map_or(jittered, |hint| hint.max(jittered)))
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Jobs run at the same time.
    pub concurrency: usize,
    /// Most jobs reserved in one call.
    pub batch: usize,
    /// How long a reserved job is held; extended every third of it while the job runs.
    pub lease: Duration,
    /// How long an idle worker waits for a job before looking again (woken earlier by new jobs
    /// where the queue can).
    pub poll_interval: Duration,
    /// How long shutdown waits for jobs in flight.
    pub shutdown_timeout: Duration,
    /// When failed jobs are tried again.
    pub retry: RetryPolicy,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            concurrency: 64,
            batch: 64,
            lease: Duration::from_secs(300),
            poll_interval: Duration::from_secs(1),
            shutdown_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
        }
    }
}

impl WorkerOptions {
    /// The options in the configuration's `[worker]` table.
    pub fn from_config(cfg: &adapters::config::WorkerConfig) -> Self {
        WorkerOptions {
            concurrency: cfg.concurrency.max(1),
            batch: cfg.batch.max(1),
            lease: cfg.lease_secs,
            poll_interval: cfg.poll_interval_ms,
            shutdown_timeout: cfg.shutdown_timeout_secs,
            retry: RetryPolicy {
                schedule: cfg
                    .retry_schedule_secs
                    .iter()
                    .map(|s| Duration::from_secs(*s))
                    .collect(),
                jitter: cfg.retry_jitter,
            },
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Jobs completed.
    pub completed: usize,
    /// Jobs put back for a later attempt.
    pub retried: usize,
    /// Jobs dead-lettered.
    pub dead: usize,
    /// Jobs whose lease was lost before their outcome was recorded.
    pub lost: usize,
}

impl Outcome {
    /// Jobs handled.
    pub fn total(&self) -> usize {
        self.completed + self.retried + self.dead + self.lost
    }

    fn add(&mut self, other: Outcome) {
        self.completed += other.completed;
        self.retried += other.retried;
        self.dead += other.dead;
        self.lost += other.lost;
    }
}

/// A job run on a schedule (for example the shipments' tracking poll).
#[derive(Debug, Clone)]
pub struct Periodic {
    /// The schedule's name: one tick per name across all workers.
    pub name: String,
    /// How often.
    pub every: Duration,
    /// The job enqueued each tick.
    pub kind: JobKind,
}

/// A worker: the queue it serves and the handler that runs its jobs.
#[derive(Clone)]
pub struct Worker {
    queue: Arc<dyn JobQueue>,
    handler: Arc<dyn JobHandler>,
    options: WorkerOptions,
    periodic: Vec<Periodic>,
}

impl Worker {
    /// A worker over `queue`, running jobs with `handler`.
    pub fn new(
        queue: Arc<dyn JobQueue>,
        handler: Arc<dyn JobHandler>,
        options: WorkerOptions,
    ) -> Self {
        Worker {
            queue,
            handler,
            options,
            periodic: Vec::new(),
        }
    }

    /// Also enqueues `periodic`'s job every `periodic.every` (one tick across all workers).
    pub fn with_periodic(mut self, periodic: Periodic) -> Self {
        self.periodic.push(periodic);
        self
    }

    /// Runs until `shutdown` is cancelled, then waits for the jobs in flight (at most
    /// `shutdown_timeout`); jobs not finished by then are left to their lease and run again
    /// elsewhere.
    pub async fn run(&self, shutdown: CancellationToken) -> Outcome {
        let opts = &self.options;
        tracing::info!(concurrency = opts.concurrency, "worker started");
        let permits = Arc::new(Semaphore::new(opts.concurrency));
        let running: Arc<Mutex<HashMap<JobId, Job>>> = Arc::default();
        let totals: Arc<Mutex<Outcome>> = Arc::default();
        let (done_tx, done_rx) = mpsc::unbounded_channel::<Job>();
        let completer = tokio::spawn(complete_in_batches(
            self.queue.clone(),
            done_rx,
            totals.clone(),
        ));
        let heartbeat_stop = CancellationToken::new();
        let heartbeat = tokio::spawn(heartbeat(
            self.queue.clone(),
            running.clone(),
            opts.lease,
            heartbeat_stop.clone(),
        ));
        let mut backoff = Duration::from_millis(100);
        let mut next_tick = Instant::now();

        // `slots` bounds the jobs held (reserved, running or waiting to run) to four times the
        // concurrency, so that a reservation can take a whole batch while earlier jobs still run:
        // short jobs would otherwise be reserved one at a time, a round trip each.
        let held_max = opts.concurrency.saturating_mul(4).max(opts.batch);
        let slots = Arc::new(Semaphore::new(held_max));
        while !shutdown.is_cancelled() {
            if Instant::now() >= next_tick {
                self.tick_periodic().await;
                next_tick = Instant::now() + Duration::from_secs(1);
            }
            let first = tokio::select! {
                p = slots.clone().acquire_owned() => p.expect("semaphore never closed"),
                () = shutdown.cancelled() => break,
            };
            let want = (slots.available_permits() + 1).min(opts.batch);
            let wait = opts.poll_interval.min(Duration::from_secs(1));
            let reserved = tokio::select! {
                r = self.queue.reserve(want, opts.lease, wait) => r,
                () = shutdown.cancelled() => break,
            };
            let jobs = match reserved {
                Ok(jobs) => {
                    backoff = Duration::from_millis(100);
                    jobs
                }
                Err(e) => {
                    tracing::error!(error = %e, retry_in = ?backoff, "job queue unavailable");
                    drop(first);
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = shutdown.cancelled() => break,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    continue;
                }
            };
            let mut first = Some(first);
            {
                let mut held = running.lock().await;
                for job in &jobs {
                    held.insert(job.id, job.clone());
                }
            }
            for job in jobs {
                let slot = match first.take() {
                    Some(p) => p,
                    None => slots
                        .clone()
                        .acquire_owned()
                        .await
                        .expect("semaphore never closed"),
                };
                let this = self.clone();
                let permits = permits.clone();
                let running = running.clone();
                let done_tx = done_tx.clone();
                let totals = totals.clone();
                tokio::spawn(async move {
                    let permit = permits
                        .acquire_owned()
                        .await
                        .expect("semaphore never closed");
                    let result = this.run_job(&job).await;
                    drop(permit);
                    running.lock().await.remove(&job.id);
                    match result {
                        Ok(()) => {
                            let _ = done_tx.send(job);
                        }
                        Err(e) => {
                            let outcome = this.settle_failure(&job, e).await;
                            totals.lock().await.add(outcome);
                        }
                    }
                    drop(slot);
                });
            }
        }

        // Shutdown: no more reservations; let the jobs in flight finish.
        let all = u32::try_from(held_max).unwrap_or(u32::MAX);
        match tokio::time::timeout(opts.shutdown_timeout, slots.acquire_many(all)).await {
            Ok(_) => tracing::info!("jobs in flight finished"),
            Err(_) => {
                let left = running.lock().await.len();
                tracing::warn!(
                    left,
                    "shutdown timeout: jobs in flight are left to their leases"
                );
            }
        }
        heartbeat_stop.cancel();
        let _ = heartbeat.await;
        drop(done_tx);
        let _ = completer.await;
        let totals = *totals.lock().await;
        tracing::info!(?totals, "worker stopped");
        totals
    }

    /// Reserves and runs due jobs until none is due; returns what it did. Tests and the CLI use
    /// it to drive the queue without sleeping.
    ///
    /// # Errors
    /// The queue's error when it cannot be reached.
    pub async fn drain(&self) -> Result<Outcome, QueueError> {
        let mut total = Outcome::default();
        loop {
            self.tick_periodic().await;
            let jobs = self
                .queue
                .reserve(self.options.batch, self.options.lease, Duration::ZERO)
                .await?;
            if jobs.is_empty() {
                return Ok(total);
            }
            let mut set = tokio::task::JoinSet::new();
            for job in jobs {
                let this = self.clone();
                set.spawn(async move {
                    let result = this.run_job(&job).await;
                    (job, result)
                });
            }
            let mut done = Vec::new();
            while let Some(joined) = set.join_next().await {
                let Ok((job, result)) = joined else {
                    continue;
                };
                match result {
                    Ok(()) => done.push(job),
                    Err(e) => total.add(self.settle_failure(&job, e).await),
                }
            }
            total.completed += done.len();
            self.queue.complete(&done).await?;
        }
    }

    async fn tick_periodic(&self) {
        for p in &self.periodic {
            let job = NewJob {
                kind: p.kind.clone(),
                run_at: None,
            };
            match self.queue.enqueue_periodic(&p.name, p.every, job).await {
                Ok(true) => tracing::info!(schedule = %p.name, "periodic job enqueued"),
                Ok(false) => {}
                Err(e) => tracing::warn!(schedule = %p.name, error = %e, "periodic tick failed"),
            }
        }
    }

    async fn run_job(&self, job: &Job) -> Result<(), JobError> {
        let span = tracing::info_span!(
            "job",
            job_id = %job.id,
            kind = job.kind.name(),
            attempt = job.attempt,
            webhook_id = tracing::field::Empty
        );
        let handler = self.handler.clone();
        let job_for_task = job.clone();
        // A panicking handler fails its job (transiently) instead of the worker.
        let task =
            tokio::spawn(async move { handler.handle(&job_for_task).await }.instrument(span));
        match task.await {
            Ok(result) => result,
            Err(e) => Err(JobError::Transient {
                reason: format!("handler panicked: {e}"),
                retry_after: None,
            }),
        }
    }

    /// Retries or dead-letters a failed job.
    async fn settle_failure(&self, job: &Job, error: JobError) -> Outcome {
        let mut outcome = Outcome::default();
        let (reason, delay) = match error {
            JobError::Permanent { reason } => (reason, None),
            JobError::Transient {
                reason,
                retry_after,
            } => {
                let seed = (job.id.0 as u64) ^ u64::from(job.attempt).rotate_left(32) ^ nanos();
                (
                    reason,
                    self.options.retry.delay(job.attempt, retry_after, seed),
                )
            }
        };
        let result = match delay {
            Some(delay) => {
                let at = Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
                tracing::warn!(job_id = %job.id, kind = job.kind.name(), attempt = job.attempt, %reason, retry_in = ?delay, "job failed; will retry");
                outcome.retried = 1;
                self.queue.retry(job, at, &reason).await
            }
            None => {
                tracing::error!(job_id = %job.id, kind = job.kind.name(), attempt = job.attempt, %reason, "job dead-lettered");
                outcome.dead = 1;
                let recorded = self.queue.dead_letter(job, &reason).await;
                if recorded.is_ok() {
                    self.handler.dead_lettered(job, &reason).await;
                }
                recorded
            }
        };
        match result {
            Ok(()) => outcome,
            Err(QueueError::LeaseLost(_)) => {
                tracing::warn!(job_id = %job.id, "lease lost before the outcome was recorded");
                Outcome {
                    lost: 1,
                    ..Outcome::default()
                }
            }
            Err(e) => {
                // The job stays reserved and comes back after its lease.
                tracing::error!(job_id = %job.id, error = %e, "outcome not recorded");
                Outcome {
                    lost: 1,
                    ..Outcome::default()
                }
            }
        }
    }
}

fn nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or_default()
}

/// Acknowledges completed jobs in batches: whatever is waiting when the previous batch is done.
async fn complete_in_batches(
    queue: Arc<dyn JobQueue>,
    mut done: mpsc::UnboundedReceiver<Job>,
    totals: Arc<Mutex<Outcome>>,
) {
    let mut batch = Vec::with_capacity(256);
    while let Some(job) = done.recv().await {
        batch.push(job);
        while batch.len() < 256 {
            match done.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let mut delay = Duration::from_millis(50);
        loop {
            match queue.complete(&batch).await {
                Ok(()) => break,
                Err(e) => {
                    // Not acknowledged: keep trying while the leases last; past them the jobs
                    // run again, which idempotent handlers allow.
                    tracing::error!(error = %e, jobs = batch.len(), "acknowledgement failed");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                    if delay >= Duration::from_secs(5) {
                        break;
                    }
                }
            }
        }
        totals.lock().await.completed += batch.len();
        batch.clear();
    }
}

/// Extends the leases of running jobs every third of the lease.
async fn heartbeat(
    queue: Arc<dyn JobQueue>,
    running: Arc<Mutex<HashMap<JobId, Job>>>,
    lease: Duration,
    stop: CancellationToken,
) {
    let every = (lease / 3).max(Duration::from_millis(50));
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = stop.cancelled() => return,
        }
        let jobs: Vec<Job> = running.lock().await.values().cloned().collect();
        if jobs.is_empty() {
            continue;
        }
        if let Err(e) = queue.extend(&jobs, lease).await {
            tracing::warn!(error = %e, "lease extension failed");
        }
    }
}

/// Cancels `token` on ctrl-c or SIGTERM.
pub async fn shutdown_on_signal(token: CancellationToken) {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutdown signal received");
    token.cancel();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_schedule_lasts_about_a_day_then_gives_up() {
        let policy = RetryPolicy::default();
        let total: Duration = policy.schedule.iter().sum();
        assert!(
            total > Duration::from_secs(20 * 3600) && total < Duration::from_secs(28 * 3600),
            "{total:?}"
        );
        assert_eq!(
            policy.delay(11, None, 1),
            None,
            "dead-lettered after the schedule"
        );
    }

    #[test]
    fn delays_follow_the_schedule_within_the_jitter() {
        let policy = RetryPolicy::default();
        for seed in 0..200 {
            let d = policy.delay(1, None, seed).expect("retry");
            assert!(
                d >= Duration::from_secs(4) && d <= Duration::from_secs(6),
                "{d:?}"
            );
            let d = policy.delay(4, None, seed).expect("retry");
            assert!(
                d >= Duration::from_secs(480) && d <= Duration::from_secs(720),
                "{d:?}"
            );
        }
        let spread: std::collections::HashSet<_> = (0..50)
            .map(|s| policy.delay(3, None, s).expect("retry").as_millis())
            .collect();
        assert!(spread.len() > 40, "jitter spreads retries");
    }

    #[test]
    fn retry_after_is_honoured_when_longer() {
        let policy = RetryPolicy {
            schedule: vec![Duration::from_secs(5)],
            jitter: 0.0,
        };
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(90)), 0),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(1)), 0),
            Some(Duration::from_secs(5))
        );
    }
}
