//! The job handler: [`JobHandler`], the trait a worker runs jobs through, and
//! [`ConnectorHandler`], which routes each of the connector's jobs to its use case.

use super::Periodic;
use async_trait::async_trait;
use domain::error::JobError;
use domain::model::{Job, JobKind, Resource, WebhookStatus};
use domain::ports::{Crm, JobQueue, Mailer, ShipmentStore, ShippingProvider, Shop, WebhookInbox};
use domain::service::customers::CustomerJobs;
use domain::service::process::process_webhook;
use domain::service::shipment_jobs::ShipmentJobs;
use domain::service::shipping::ShippingMethods;
use std::sync::Arc;

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
                    if let Some(request_id) = webhook.data.request_id() {
                        // From here on the job's lines can be matched with the request's.
                        tracing::Span::current().record("request_id", request_id);
                    }
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
