//! [`Connector`]: the whole connector as a library, for Rust applications that embed it instead
//! of running `lazona-http` and `lazona-worker`.
//!
//! [`Connector::builder`] takes the [`Settings`]; the adapters the configuration describes
//! (Koiki, the WordPress shop, SMTP, SugarCRM, the SQL shipment store) can each be replaced by
//! one of your own. [`ConnectorBuilder::build`] connects the database, runs the migrations and
//! opens the job queue. Then [`Connector::ingest`] stores webhooks exactly as the server does,
//! and [`Connector::run_worker`] (or [`Connector::spawn_worker`], or [`Connector::drain`])
//! processes them in your own tokio runtime.

use crate::ingest::{IngestError, IngestOutcome, ingest};
use crate::observe::{self, EventRecorder};
use crate::worker::{ConnectorHandler, Outcome, Periodic, Worker, WorkerOptions};
use adapters::config::Settings;
use adapters::db::{
    Database, SqlAlertStore, SqlAuditLog, SqlEventLog, SqlInbox, SqlJobQueue, SqlMailEventStore,
    SqlShipmentStore, SqlStateStore, SqlTokenStore,
};
use adapters::queue::Queue;
use bytes::Bytes;
use domain::error::QueueError;
use domain::model::JobKind;
use domain::model::Resource;
use domain::model::{Actor, AlertKind, ErasureReport};
use domain::ports::{
    AuditLog, Crm, EventLog, JobQueue, MailEventStore, Mailer, ShipmentStore, ShippingProvider,
    Shop, TokenStore, WebhookInbox,
};
use domain::service::alerts::{AlertCheck, AlertDelivery, AlertSettings, Alerts};
use domain::service::customers::CustomerJobs;
use domain::service::mail_events::MailTracking;
use domain::service::operations::Operator;
use domain::service::reconcile::{ReconcileSettings, Reconciler};
use domain::service::retention::{Erasure, Retention};
use domain::service::shipment_jobs::ShipmentJobs;
use domain::service::shipping::ShippingMethods;
use domain::service::shop_sync::{BookStatuses, ShopSync};
use domain::service::signature::WebhookSecret;
use secrecy::ExposeSecret as _;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long [`Connector::ingest`] waits for its webhook to be committed, as `lazona-http`.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds a [`Connector`]: the configuration, and the adapters you bring yourself.
///
/// Every adapter not given is built from the configuration, as the binaries do. Orders are
/// fulfilled when there is a carrier (given, or `koiki.host`) and a shop (given, or `shop.host`);
/// customers who are members get their partner role when there is a CRM (given, or
/// `crm.rest_url`), a shop, `shop.partner_role` and `crm.membership_roles`. Otherwise those
/// webhooks are validated and recorded only.
#[must_use = "a builder does nothing until `build` is awaited"]
pub struct ConnectorBuilder {
    settings: Settings,
    carrier: Option<Arc<dyn ShippingProvider>>,
    shop: Option<Arc<dyn Shop>>,
    mailer: Option<Arc<dyn Mailer>>,
    crm: Option<Arc<dyn Crm>>,
    shipments: Option<Arc<dyn ShipmentStore>>,
    db: Option<Database>,
    with_worker: bool,
}

impl std::fmt::Debug for ConnectorBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectorBuilder")
            .field("settings", &self.settings)
            .field("carrier", &self.carrier.is_some())
            .field("shop", &self.shop.is_some())
            .field("mailer", &self.mailer.is_some())
            .field("crm", &self.crm.is_some())
            .field("shipments", &self.shipments.is_some())
            .field("database", &self.db.is_some())
            .field("with_worker", &self.with_worker)
            .finish()
    }
}

impl ConnectorBuilder {
    /// Books and tracks shipments with `carrier` instead of Koiki (`koiki.*` is then unused).
    pub fn carrier(mut self, carrier: Arc<dyn ShippingProvider>) -> Self {
        self.carrier = Some(carrier);
        self
    }

    /// Reads vendors, orders and WordPress users from `shop` instead of the WordPress site
    /// (`shop.host` is still the base of the order links in mails).
    pub fn shop(mut self, shop: Arc<dyn Shop>) -> Self {
        self.shop = Some(shop);
        self
    }

    /// Sends labels and error mails with `mailer` instead of SMTP (`mail.*` is then unused but
    /// for `mail.admin_recipients`).
    pub fn mailer(mut self, mailer: Arc<dyn Mailer>) -> Self {
        self.mailer = Some(mailer);
        self
    }

    /// Asks `crm` who is a member instead of SugarCRM.
    pub fn crm(mut self, crm: Arc<dyn Crm>) -> Self {
        self.crm = Some(crm);
        self
    }

    /// Keeps shipments in `store` instead of the connector's database (for example
    /// [`adapters::memory::MemoryShipmentStore`]).
    pub fn shipment_store(mut self, store: Arc<dyn ShipmentStore>) -> Self {
        self.shipments = Some(store);
        self
    }

    /// Uses `db`, already connected, instead of connecting `database.url`; its migrations are
    /// then the caller's business (the CLI checks or runs them as each command needs).
    pub fn database(mut self, db: Database) -> Self {
        self.db = Some(db);
        self
    }

    /// Builds no worker: the connector stores webhooks and enqueues jobs for workers that run
    /// elsewhere (`lazona-http` with `worker.embedded` off, the CLI, a Lambda). Its queue is then
    /// the jobs table, the outbox every backend reads (Redis's relay picks new rows up), so no
    /// Redis connection is opened.
    pub fn without_worker(mut self) -> Self {
        self.with_worker = false;
        self
    }

    /// Connects the database (`database.url`, unless [`ConnectorBuilder::database`] gave one),
    /// runs the migrations (unless `database.migrate_on_start` is off), opens the job queue
    /// (`queue.backend`) and wires the worker's handler with the adapters given or configured.
    /// Must be called inside a tokio runtime: the inbox's writers are spawned on it.
    ///
    /// # Errors
    /// When the database cannot be reached or migrated, the queue cannot be opened, or a
    /// configured client cannot be built (a bad mail setting, a TLS set-up).
    pub async fn build(self) -> anyhow::Result<Connector> {
        let settings = &self.settings;
        let db = match self.db.clone() {
            Some(db) => db,
            None => {
                let db = Database::connect(&settings.database)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot open the database: {e}"))?;
                if settings.database.migrate_on_start {
                    db.migrate()
                        .await
                        .map_err(|e| anyhow::anyhow!("cannot migrate the database: {e}"))?;
                }
                db
            }
        };
        let secret = settings
            .webhook
            .secret
            .as_ref()
            .map(|s| Arc::new(WebhookSecret::new(s.expose_secret())));
        if secret.is_none() {
            tracing::warn!(
                "no webhook secret configured (WC_WEBHOOK_SECRET or LAZONA_WEBHOOK__SECRET): \
                 signed webhooks will be refused until one is set"
            );
        }
        let inbox = Arc::new(SqlInbox::start(db.clone(), &settings.inbox));
        let queue = if self.with_worker {
            let queue = Queue::open(settings, &db, Some(inbox.jobs_ready()))
                .await
                .map_err(|e| anyhow::anyhow!("cannot open the job queue: {e}"))?;
            tracing::info!(backend = queue.backend(), "job queue open");
            Some(queue)
        } else {
            None
        };
        let log: Arc<dyn EventLog> = Arc::new(SqlEventLog::new(db.clone()));
        let shipments: Arc<dyn ShipmentStore> = match &self.shipments {
            Some(store) => store.clone(),
            None => Arc::new(SqlShipmentStore::new(db.clone())),
        };
        let enqueue: Arc<dyn JobQueue> = match &queue {
            Some(queue) => queue.port.clone(),
            None => Arc::new(SqlJobQueue::new(db.clone())),
        };
        let alerts = Alerts::new(
            Arc::new(SqlAlertStore::new(db.clone())),
            alert_settings(settings),
        )
        .with_queue(enqueue.clone());
        let mail_events: Arc<dyn MailEventStore> = Arc::new(SqlMailEventStore::new(db.clone()));
        let shop = self.shop_client()?;
        let reconciler = match &shop {
            Some(shop) => Some(Reconciler {
                inbox: inbox.clone(),
                shop: shop.clone(),
                state: Arc::new(SqlStateStore::new(db.clone())),
                alerts: alerts.clone(),
                settings: reconcile_settings(settings, self.crm.is_some()),
            }),
            None => None,
        };
        let (worker, fulfils_orders, handles_customers) = match &queue {
            Some(queue) => {
                let wired = self.wire_worker(
                    inbox.clone(),
                    queue.port.clone(),
                    &shipments,
                    &mail_events,
                    &log,
                    (shop, reconciler.clone()),
                    self.alert_delivery(&db, &alerts)?,
                )?;
                (Some(wired.0), wired.1, wired.2)
            }
            None => (None, false, false),
        };
        Ok(Connector {
            settings: Arc::new(self.settings),
            tokens: Arc::new(SqlTokenStore::new(db.clone())),
            audit: Arc::new(SqlAuditLog::new(db.clone())),
            db,
            inbox,
            queue,
            enqueue,
            shipments,
            events: log,
            secret,
            worker,
            fulfils_orders,
            handles_customers,
            reconciler,
            alerts,
            mail_events,
        })
    }

    /// The shop given, or the WordPress site of `shop.host`; `None` without either.
    fn shop_client(&self) -> anyhow::Result<Option<Arc<dyn Shop>>> {
        Ok(match &self.shop {
            Some(shop) => Some(shop.clone()),
            None if !self.settings.shop.host.trim().is_empty() => {
                Some(Arc::new(adapters::wordpress::WordPressShop::new(
                    &self.settings.shop,
                    self.settings.shipping.http_timeout_secs,
                )?))
            }
            None => None,
        })
    }

    /// The mailer given, or SMTP as `mail.*` says.
    fn mailer_client(&self) -> anyhow::Result<Arc<dyn Mailer>> {
        Ok(match &self.mailer {
            Some(mailer) => mailer.clone(),
            None => Arc::new(adapters::mail::SmtpMailer::new(
                &self.settings.mail,
                self.settings.shipping.http_timeout_secs,
            )?),
        })
    }

    /// The alerts' delivery: mail to the admins (through the mailer given or SMTP; a connector
    /// without mail set up fails its sends, not its build) and the outbound webhook if set.
    fn alert_delivery(&self, db: &Database, alerts: &Alerts) -> anyhow::Result<AlertDelivery> {
        let mailer = self
            .mailer_client()
            .unwrap_or_else(|e| Arc::new(NoMail(e.to_string())) as Arc<dyn Mailer>);
        let hook: Option<Arc<dyn domain::ports::AlertHook>> =
            match self.settings.alerts.webhook_url.trim() {
                "" => None,
                url => Some(Arc::new(adapters::alert_hook::SignedWebhook::new(
                    adapters::http::http_client(self.settings.shipping.http_timeout_secs)?,
                    url,
                    self.settings.alerts.webhook_secret.as_ref(),
                ))),
            };
        Ok(AlertDelivery {
            alerts: alerts.clone(),
            mailer: mailer.clone(),
            admins: self.settings.mail.admin_recipients.clone(),
            hook,
            state: Arc::new(SqlStateStore::new(db.clone())),
        })
    }

    /// The worker: the job handler with shipping when there is a carrier and a shop, customers
    /// when there is a CRM, a shop and their settings, the periodic jobs, events and metrics.
    /// Returns it with whether orders are fulfilled and customers handled.
    #[allow(
        clippy::too_many_arguments,
        reason = "the stores build() made, each passed once"
    )]
    fn wire_worker(
        &self,
        inbox: Arc<SqlInbox>,
        queue: Arc<dyn JobQueue>,
        shipments: &Arc<dyn ShipmentStore>,
        mail_events: &Arc<dyn MailEventStore>,
        log: &Arc<dyn EventLog>,
        (shop, reconciler): (Option<Arc<dyn Shop>>, Option<Reconciler>),
        delivery: AlertDelivery,
    ) -> anyhow::Result<(Worker, bool, bool)> {
        let settings = &self.settings;
        let timeout = settings.shipping.http_timeout_secs;
        let carrier: Option<Arc<dyn ShippingProvider>> = match &self.carrier {
            Some(carrier) => Some(carrier.clone()),
            None if !settings.koiki.host.trim().is_empty() => Some(Arc::new(
                adapters::koiki::KoikiClient::new(&settings.koiki, timeout)?,
            )),
            None => None,
        };
        let crm: Option<Arc<dyn Crm>> = match &self.crm {
            Some(crm) => Some(crm.clone()),
            None if !settings.crm.rest_url.trim().is_empty() => Some(Arc::new(
                adapters::sugarcrm::SugarCrmClient::new(&settings.crm, timeout)?,
            )),
            None => None,
        };

        let alerts = &delivery.alerts;
        let check = AlertCheck {
            alerts: alerts.clone(),
            shipments: Some(shipments.clone()),
            inbox: inbox.clone(),
            queue: queue.clone(),
        };
        let retention = Retention {
            inbox: inbox.clone(),
            shipments: shipments.clone(),
            queue: queue.clone(),
            alerts: alerts.store().clone(),
            settings: settings.retention.settings(),
        };
        let mut handler = ConnectorHandler::new(inbox.clone())
            .with_alerts(delivery.clone(), check)
            .with_retention(retention, log.clone());
        // Events and metrics as the binaries record them: the live stream and /metrics see an
        // embedded connector's work too.
        let events = EventRecorder::start(log.clone());
        let fulfils_orders = match (&carrier, &shop) {
            (Some(carrier), Some(shop)) => {
                let mailer = self.mailer_client()?;
                let jobs = ShipmentJobs {
                    inbox: inbox.clone(),
                    store: shipments.clone(),
                    carrier: carrier.clone(),
                    shop: shop.clone(),
                    mailer,
                    queue: queue.clone(),
                    methods: ShippingMethods {
                        koiki: settings.shipping.koiki_methods.clone(),
                        local_pickup: settings.shipping.local_pickup_methods.clone(),
                    },
                    shop_host: settings.shop.host.trim_end_matches('/').to_owned(),
                    admins: settings.mail.admin_recipients.clone(),
                    shop_sync: shop_sync(settings),
                    alerts: alerts.clone(),
                    mail_events: mail_events.clone(),
                    mail_domain: domain::model::mail::message_id_domain(&settings.mail.from),
                };
                let jobs = observe::shipment_jobs(jobs, Some(events.clone()));
                if let Some(mut reconciler) = reconciler.clone() {
                    // The same measured shop as the shipments' calls.
                    reconciler.shop = jobs.shop.clone();
                    handler = handler.with_reconciler(reconciler);
                }
                handler = handler.with_shipping(jobs);
                true
            }
            _ => {
                tracing::warn!(
                    "no carrier (koiki.host) or no shop (shop.host): orders are recorded, not shipped"
                );
                false
            }
        };
        // The settings customers need, but for those a given adapter stands in for.
        let missing: Vec<&str> = missing_customer_settings(settings)
            .into_iter()
            .filter(|m| !(m.starts_with("crm.rest_url") && crm.is_some()))
            .filter(|m| !(m.starts_with("shop.host") && shop.is_some()))
            .collect();
        let handles_customers = match (&crm, &shop) {
            (Some(crm), Some(shop)) if missing.is_empty() => {
                let jobs = CustomerJobs {
                    inbox: inbox.clone(),
                    crm: crm.clone(),
                    shop: shop.clone(),
                    membership_roles: settings.crm.membership_roles.clone(),
                    partner_role: settings.shop.partner_role.trim().to_owned(),
                };
                handler =
                    handler.with_customers(observe::customer_jobs(jobs, Some(events.clone())));
                true
            }
            _ => {
                tracing::warn!(
                    missing = %missing.join(", "),
                    "customer webhooks are validated and recorded, no partner role is given"
                );
                false
            }
        };

        let mut worker = Worker::new(
            queue,
            Arc::new(handler),
            WorkerOptions::from_config(&settings.worker),
        )
        .observed(
            Some(events),
            Some((log.clone(), settings.events.retention())),
        );
        worker = worker.with_periodic(Periodic {
            name: "check_alerts".into(),
            every: settings
                .alerts
                .check_interval_secs
                .max(Duration::from_secs(1)),
            kind: JobKind::CheckAlerts,
        });
        if !settings.retention.settings().keeps_everything() {
            worker = worker.with_periodic(Periodic {
                name: "prune".into(),
                every: settings.retention.interval_secs.max(Duration::from_secs(1)),
                kind: JobKind::Prune,
            });
        }
        if fulfils_orders {
            worker = worker.with_periodic(tracking_schedule(settings));
            if settings.reconcile.enabled.unwrap_or(true) {
                worker = worker.with_periodic(reconcile_schedule(settings));
            }
        } else if settings.reconcile.enabled == Some(true) {
            tracing::warn!("reconcile.enabled is on, but orders are not fulfilled: no pass runs");
        }
        Ok((worker, fulfils_orders, handles_customers))
    }
}

/// The connector, embedded: its database, inbox, job queue and worker. Cheap to clone; clones
/// share everything.
#[derive(Clone)]
pub struct Connector {
    settings: Arc<Settings>,
    db: Database,
    inbox: Arc<SqlInbox>,
    /// The configured queue, opened for this process's worker.
    queue: Option<Queue>,
    /// Where jobs are enqueued and dead letters read: the configured queue, or the jobs table.
    enqueue: Arc<dyn JobQueue>,
    shipments: Arc<dyn ShipmentStore>,
    events: Arc<dyn EventLog>,
    tokens: Arc<dyn TokenStore>,
    audit: Arc<dyn AuditLog>,
    secret: Option<Arc<WebhookSecret>>,
    worker: Option<Worker>,
    fulfils_orders: bool,
    handles_customers: bool,
    reconciler: Option<Reconciler>,
    alerts: Alerts,
    mail_events: Arc<dyn MailEventStore>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("database", &self.db.backend())
            .field("queue", &self.queue.as_ref().map(Queue::backend))
            .field("fulfils_orders", &self.fulfils_orders)
            .field("handles_customers", &self.handles_customers)
            .finish_non_exhaustive()
    }
}

impl Connector {
    /// A builder from `settings` (for example [`Settings::load`], which reads the environment
    /// as the binaries do, or [`Settings::from_toml`], which does not).
    pub fn builder(settings: Settings) -> ConnectorBuilder {
        ConnectorBuilder {
            settings,
            carrier: None,
            shop: None,
            mailer: None,
            crm: None,
            shipments: None,
            db: None,
            with_worker: true,
        }
    }

    /// Ingests one webhook request as `lazona-http`'s endpoint for `resource` does: the
    /// signature checked with `webhook.secret`, then the webhook stored with its job in one
    /// transaction (deduplicated by `X-WC-Webhook-Delivery-ID`; a malformed body kept as
    /// rejected). Header names are matched without regard to case; `body` is the exact bytes
    /// received. Returns once the webhook is durable.
    ///
    /// # Errors
    /// [`IngestError`] when the request is refused (no or bad signature, no secret configured)
    /// or the database did not store it; nothing was stored then.
    pub async fn ingest<K, V>(
        &self,
        resource: Resource,
        headers: impl IntoIterator<Item = (K, V)>,
        body: impl Into<Bytes>,
    ) -> Result<IngestOutcome, IngestError>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let headers: Vec<(String, String)> = headers
            .into_iter()
            .map(|(k, v)| (k.as_ref().to_ascii_lowercase(), v.as_ref().to_owned()))
            .collect();
        ingest(
            self.inbox.as_ref(),
            self.secret.as_deref(),
            resource,
            &headers,
            body.into(),
            COMMIT_TIMEOUT,
        )
        .await
    }

    /// Runs the worker until `shutdown` is cancelled, then lets the jobs in flight finish (see
    /// [`Worker::run`]); starts what the queue needs beside it (the Redis relay) until then.
    /// Built [`ConnectorBuilder::without_worker`], it runs nothing and returns at once.
    pub async fn run_worker(&self, shutdown: CancellationToken) -> Outcome {
        let (Some(queue), Some(worker)) = (&self.queue, &self.worker) else {
            tracing::warn!("this connector was built without a worker: no job is run here");
            return Outcome::default();
        };
        queue.spawn_background(shutdown.clone());
        worker.run(shutdown).await
    }

    /// [`Connector::run_worker`] on a task of its own; the handle gives what it did once it
    /// stopped.
    pub fn spawn_worker(&self, shutdown: CancellationToken) -> tokio::task::JoinHandle<Outcome> {
        let this = self.clone();
        tokio::spawn(async move { this.run_worker(shutdown).await })
    }

    /// Runs the jobs due now, and those they enqueue, until none is due (see [`Worker::drain`]);
    /// for tests, scripts and the SQL queue (a Redis queue needs [`Connector::run_worker`]).
    ///
    /// # Errors
    /// The queue's error when it cannot be reached; [`QueueError::Unexpected`] when the
    /// connector was built without a worker.
    pub async fn drain(&self) -> Result<Outcome, QueueError> {
        match &self.worker {
            Some(worker) => worker.drain().await,
            None => Err(QueueError::Unexpected(
                "this connector was built without a worker".into(),
            )),
        }
    }

    /// Whether orders are fulfilled (a carrier and a shop are wired), or only recorded.
    pub fn fulfils_orders(&self) -> bool {
        self.fulfils_orders
    }

    /// Whether members get their partner role (a CRM, a shop and the roles are configured), or
    /// customer webhooks are only recorded.
    pub fn handles_customers(&self) -> bool {
        self.handles_customers
    }

    /// The stored webhooks: [`WebhookInbox::get`], `list`, `history`.
    pub fn inbox(&self) -> Arc<dyn WebhookInbox> {
        self.inbox.clone()
    }

    /// The shipments: [`ShipmentStore::of_order`], `list`, `label`.
    pub fn shipments(&self) -> Arc<dyn ShipmentStore> {
        self.shipments.clone()
    }

    /// The job queue: where jobs are enqueued, [`JobQueue::stats`], the dead letters. Built
    /// without a worker, the jobs table every backend reads.
    pub fn queue(&self) -> Arc<dyn JobQueue> {
        self.enqueue.clone()
    }

    /// The queue whose depth `/metrics` shows, with its backend's name (`sql`, `redis`): the
    /// worker's; without a worker, the jobs table when it is the queue (a Redis queue's depth is
    /// shown by its workers).
    pub fn queue_stats(&self) -> Option<(Arc<dyn JobQueue>, &'static str)> {
        match &self.queue {
            Some(queue) => Some((queue.port.clone(), queue.backend())),
            None if self.settings.queue.backend == "sql" => Some((self.enqueue.clone(), "sql")),
            None => None,
        }
    }

    /// The event log (`/api/v1/events`, `lazona`'s history).
    pub fn events(&self) -> Arc<dyn EventLog> {
        self.events.clone()
    }

    /// The operations API's tokens.
    pub fn tokens(&self) -> Arc<dyn TokenStore> {
        self.tokens.clone()
    }

    /// The audit log: who did what (`lazona audit`, `/api/v1/audit`, the operators' actions).
    pub fn audit(&self) -> Arc<dyn AuditLog> {
        self.audit.clone()
    }

    /// `actor` taking the operators' actions ([`domain::service::operations`]), recorded in
    /// this connector's audit and event logs.
    pub fn operator<'a>(&'a self, actor: &'a Actor) -> Operator<'a> {
        Operator {
            actor,
            audit: self.audit.as_ref(),
            events: self.events.as_ref(),
        }
    }

    /// The inbox as its SQL adapter (its writers' wake-up, its database).
    pub fn sql_inbox(&self) -> Arc<SqlInbox> {
        self.inbox.clone()
    }

    /// The webhook secret, `None` when none is configured.
    pub fn secret(&self) -> Option<Arc<WebhookSecret>> {
        self.secret.clone()
    }

    /// The worker, to run it your own way; `None` when built
    /// [`ConnectorBuilder::without_worker`].
    pub fn worker(&self) -> Option<&Worker> {
        self.worker.as_ref()
    }

    /// Serves the worker's `/metrics`, `/healthz` and `/readyz` on `addr` until `shutdown`;
    /// returns the bound address and the listener's task.
    ///
    /// # Errors
    /// When `addr` cannot be bound.
    pub async fn serve_metrics(
        &self,
        addr: std::net::SocketAddr,
        shutdown: CancellationToken,
    ) -> anyhow::Result<(std::net::SocketAddr, tokio::task::JoinHandle<()>)> {
        let (queue, backend) = self
            .queue_stats()
            .unwrap_or_else(|| (self.enqueue.clone(), "sql"));
        crate::prometheus::serve_metrics(addr, queue, backend, self.inbox.clone(), shutdown).await
    }

    /// The reconciliation with the shop (`lazona reconcile`, `lazona config check`); `None`
    /// without a shop.
    pub fn reconciler(&self) -> Option<&Reconciler> {
        self.reconciler.as_ref()
    }

    /// The alerts: raise, resolve, and their store (`lazona alerts`, `/api/v1/alerts`).
    pub fn alerts(&self) -> &Alerts {
        &self.alerts
    }

    /// The mail relay's reports on the label mails, and the labels mailed again.
    pub fn mail_events(&self) -> Arc<dyn MailEventStore> {
        self.mail_events.clone()
    }

    /// The label mails followed to the inbox: the relay's events received, matched with their
    /// shipments and applied (`/api/mail-events/mandrill`).
    pub fn mail_tracking(&self) -> MailTracking {
        MailTracking {
            events: self.mail_events.clone(),
            shipments: self.shipments.clone(),
            alerts: self.alerts.clone(),
        }
    }

    /// The retention pass over this connector's stores (`retention.*`): what the periodic
    /// `prune` job runs, and what `cargo xtask bench retention` measures.
    pub fn retention(&self) -> Retention {
        Retention {
            inbox: self.inbox.clone(),
            shipments: self.shipments.clone(),
            queue: self.enqueue.clone(),
            alerts: self.alerts.store().clone(),
            settings: self.settings.retention.settings(),
        }
    }

    /// Erases one customer's personal data (`lazona purge`, `POST /api/v1/purge`): clears it
    /// ([`Erasure::purge`], recorded in the audit log by `actor`), then, unless `dry_run`, has
    /// the database let go of the cleared bytes ([`Database::reclaim`]).
    ///
    /// # Errors
    /// The erasure's, or the database's when it cannot reclaim the space (the data is cleared
    /// then; purging again reclaims).
    pub async fn purge(
        &self,
        email: &str,
        dry_run: bool,
        actor: Actor,
    ) -> anyhow::Result<ErasureReport> {
        let erasure = Erasure {
            inbox: self.inbox.clone(),
            shipments: self.shipments.clone(),
            alerts: self.alerts.store().clone(),
            audit: self.audit.clone(),
        };
        let report = erasure.purge(email, dry_run, actor).await?;
        if !dry_run {
            self.db
                .reclaim(&["webhooks", "shipments", "shipment_bookings", "alerts"])
                .await
                .map_err(|e| anyhow::anyhow!("the data is cleared, but its space not: {e}"))?;
        }
        Ok(report)
    }

    /// The database.
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// The configuration it was built from.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }
}

/// A mailer for a connector whose mail is not set up: every send fails with why.
struct NoMail(String);

#[async_trait::async_trait]
impl Mailer for NoMail {
    async fn send(&self, _: &domain::ports::Email) -> Result<(), domain::error::MailError> {
        Err(domain::error::MailError::Rejected {
            reason: format!("mail is not set up: {}", self.0),
        })
    }
}

/// The periodic reconciliation with the shop; its first tick is due at once.
fn reconcile_schedule(settings: &Settings) -> Periodic {
    Periodic {
        name: "reconcile".into(),
        every: settings.reconcile.interval_secs.max(Duration::from_secs(1)),
        kind: JobKind::Reconcile,
    }
}

/// How the shipment jobs treat the shop: the statuses booked, what is written back.
fn shop_sync(settings: &Settings) -> ShopSync {
    ShopSync {
        book_statuses: BookStatuses::new(&settings.shipping.book_statuses),
        write_back: settings.shop.write_back,
        tracking_url: settings.koiki.tracking_url.clone(),
        complete_on_delivery: settings.shop.complete_on_delivery,
    }
}

/// How a reconciliation pass runs; customer topics are watched when a CRM is wired.
fn reconcile_settings(settings: &Settings, crm_given: bool) -> ReconcileSettings {
    let secs = |d: Duration| {
        chrono::Duration::seconds(i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 1000))
    };
    let mut topics = vec!["order.created".to_owned(), "order.updated".to_owned()];
    if crm_given || !settings.crm.rest_url.trim().is_empty() {
        topics.extend(["customer.created".to_owned(), "customer.updated".to_owned()]);
    }
    ReconcileSettings {
        overlap: secs(settings.reconcile.overlap_secs),
        initial_lookback: secs(settings.reconcile.initial_lookback_secs),
        per_page: 100,
        reactivate_webhooks: settings.reconcile.reactivate_webhooks,
        topics,
    }
}

/// How alerts are raised and told (`[alerts]`); unknown kinds in `alerts.off` are warned about.
fn alert_settings(settings: &Settings) -> AlertSettings {
    let a = &settings.alerts;
    let off = a
        .off
        .iter()
        .filter(|k| !k.trim().is_empty())
        .filter_map(|k| match k.parse::<AlertKind>() {
            Ok(kind) => Some(kind),
            Err(e) => {
                tracing::warn!("alerts.off: {e}");
                None
            }
        })
        .collect();
    AlertSettings {
        off,
        booking_stuck: a.booking_stuck_secs,
        silence: Duration::try_from_secs_f64(a.silence_hours * 3600.0).unwrap_or(Duration::ZERO),
        digest_threshold: a.digest_threshold,
        digest_window: a.digest_window_secs,
        list_url: Some(a.list_url.trim().to_owned()).filter(|u| !u.is_empty()),
    }
}

/// The periodic tracking poll.
fn tracking_schedule(settings: &Settings) -> Periodic {
    Periodic {
        name: "track_shipments".into(),
        every: settings.shipping.tracking_every_secs,
        kind: JobKind::TrackShipments,
    }
}

/// The settings customer processing needs that are not set, with their legacy names: without a
/// partner role a member's user would lose their roles, and without membership roles nobody is a
/// member.
fn missing_customer_settings(settings: &Settings) -> Vec<&'static str> {
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
