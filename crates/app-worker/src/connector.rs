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
use crate::{
    ConnectorHandler, CustomerRuntime, EventRecorder, Outcome, ShippingRuntime, Worker,
    WorkerOptions,
};
use adapters::config::Settings;
use adapters::db::{Database, SqlInbox, SqlShipmentStore};
use adapters::queue::Queue;
use anyhow::Context as _;
use bytes::Bytes;
use domain::error::QueueError;
use domain::model::Resource;
use domain::ports::{
    Crm, EventLog, JobQueue, Mailer, ShipmentStore, ShippingProvider, Shop, WebhookInbox,
};
use domain::service::shipping::ShippingMethods;
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
    /// [`domain::memory::MemoryShipmentStore`]).
    pub fn shipment_store(mut self, store: Arc<dyn ShipmentStore>) -> Self {
        self.shipments = Some(store);
        self
    }

    /// Connects the database (`database.url`), runs the migrations (unless
    /// `database.migrate_on_start` is off), opens the job queue (`queue.backend`) and wires the
    /// worker's handler with the adapters given or configured. Must be called inside a tokio
    /// runtime: the inbox's writers are spawned on it.
    ///
    /// # Errors
    /// When the database cannot be reached or migrated, the queue cannot be opened, or a
    /// configured client cannot be built (a bad mail setting, a TLS set-up).
    pub async fn build(self) -> anyhow::Result<Connector> {
        let settings = self.settings;
        let db = Database::connect(&settings.database)
            .await
            .context("cannot open the database")?;
        if settings.database.migrate_on_start {
            db.migrate().await.context("cannot migrate the database")?;
        }
        let inbox = Arc::new(SqlInbox::start(db.clone(), &settings.inbox));
        let queue = Queue::open(&settings, &db, Some(inbox.jobs_ready()))
            .await
            .context("cannot open the job queue")?;
        let secret = settings
            .webhook
            .secret
            .as_ref()
            .map(|s| Arc::new(WebhookSecret::new(s.expose_secret())));
        if secret.is_none() {
            tracing::warn!("no webhook secret configured: signed webhooks will be refused");
        }

        let timeout = settings.shipping.http_timeout_secs;
        let shop: Option<Arc<dyn Shop>> = match self.shop {
            Some(shop) => Some(shop),
            None if !settings.shop.host.trim().is_empty() => Some(Arc::new(
                adapters::wordpress::WordPressShop::new(&settings.shop, timeout)?,
            )),
            None => None,
        };
        let carrier: Option<Arc<dyn ShippingProvider>> = match self.carrier {
            Some(carrier) => Some(carrier),
            None if !settings.koiki.host.trim().is_empty() => Some(Arc::new(
                adapters::koiki::KoikiClient::new(&settings.koiki, timeout)?,
            )),
            None => None,
        };
        let crm: Option<Arc<dyn Crm>> = match self.crm {
            Some(crm) => Some(crm),
            None if !settings.crm.rest_url.trim().is_empty() => Some(Arc::new(
                adapters::sugarcrm::SugarCrmClient::new(&settings.crm, timeout)?,
            )),
            None => None,
        };
        let shipments: Arc<dyn ShipmentStore> = self
            .shipments
            .unwrap_or_else(|| Arc::new(SqlShipmentStore::new(db.clone())));

        let mut handler = ConnectorHandler::new(inbox.clone());
        // Events and metrics as the binaries record them: the live stream and /metrics see an
        // embedded connector's work too.
        let log: Arc<dyn EventLog> = Arc::new(adapters::db::SqlEventLog::new(db.clone()));
        let events = EventRecorder::start(log.clone());
        let fulfils_orders = match (&carrier, &shop) {
            (Some(carrier), Some(shop)) => {
                let mailer: Arc<dyn Mailer> = match self.mailer {
                    Some(mailer) => mailer,
                    None => Arc::new(adapters::mail::SmtpMailer::new(&settings.mail, timeout)?),
                };
                handler = handler.with_shipping(
                    ShippingRuntime {
                        store: shipments.clone(),
                        carrier: carrier.clone(),
                        shop: shop.clone(),
                        mailer,
                        queue: queue.port.clone(),
                        methods: ShippingMethods {
                            koiki: settings.shipping.koiki_methods.clone(),
                            local_pickup: settings.shipping.local_pickup_methods.clone(),
                        },
                        shop_host: settings.shop.host.trim_end_matches('/').to_owned(),
                        admins: settings.mail.admin_recipients.clone(),
                    }
                    .observed(Some(events.clone())),
                );
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
        let missing: Vec<&str> = CustomerRuntime::missing_settings(&settings)
            .into_iter()
            .filter(|m| !(m.starts_with("crm.rest_url") && crm.is_some()))
            .filter(|m| !(m.starts_with("shop.host") && shop.is_some()))
            .collect();
        let handles_customers = match (&crm, &shop) {
            (Some(crm), Some(shop)) if missing.is_empty() => {
                handler = handler.with_customers(
                    CustomerRuntime {
                        crm: crm.clone(),
                        shop: shop.clone(),
                        membership_roles: settings.crm.membership_roles.clone(),
                        partner_role: settings.shop.partner_role.trim().to_owned(),
                    }
                    .observed(Some(events.clone())),
                );
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
            queue.port.clone(),
            Arc::new(handler),
            WorkerOptions::from_config(&settings.worker),
        )
        .observed(Some(events), Some((log, settings.events.retention())));
        if fulfils_orders {
            worker = worker.with_periodic(ShippingRuntime::tracking_schedule(&settings));
        }
        Ok(Connector {
            settings: Arc::new(settings),
            db,
            inbox,
            queue,
            shipments,
            secret,
            worker,
            fulfils_orders,
            handles_customers,
        })
    }
}

/// The connector, embedded: its database, inbox, job queue and worker. Cheap to clone; clones
/// share everything.
#[derive(Clone)]
pub struct Connector {
    settings: Arc<Settings>,
    db: Database,
    inbox: Arc<SqlInbox>,
    queue: Queue,
    shipments: Arc<dyn ShipmentStore>,
    secret: Option<Arc<WebhookSecret>>,
    worker: Worker,
    fulfils_orders: bool,
    handles_customers: bool,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("database", &self.db.backend())
            .field("queue", &self.queue.backend())
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
    pub async fn run_worker(&self, shutdown: CancellationToken) -> Outcome {
        self.queue.spawn_background(shutdown.clone());
        self.worker.run(shutdown).await
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
    /// The queue's error when it cannot be reached.
    pub async fn drain(&self) -> Result<Outcome, QueueError> {
        self.worker.drain().await
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

    /// The job queue: [`JobQueue::stats`], the dead letters.
    pub fn queue(&self) -> Arc<dyn JobQueue> {
        self.queue.port.clone()
    }

    /// The worker, to run it your own way.
    pub fn worker(&self) -> &Worker {
        &self.worker
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
