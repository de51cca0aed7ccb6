//! The job handler: [`JobHandler`], the trait a worker runs jobs through, and
//! [`ConnectorHandler`], which routes each of the connector's jobs to its use case.

use async_trait::async_trait;
use domain::error::JobError;
use domain::model::alert::subject;
use domain::model::{AlertKind, EventKind, NewAlert, NewEvent};
use domain::model::{Job, JobKind, Resource};
use domain::ports::{EventLog, WebhookInbox};
use domain::service::alerts::{AlertCheck, AlertDelivery};
use domain::service::customers::CustomerJobs;
use domain::service::process::{process_webhook, settle};
use domain::service::reconcile::Reconciler;
use domain::service::retention::Retention;
use domain::service::shipment_jobs::ShipmentJobs;
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

/// The connector's jobs: webhooks processed through the inbox (orders fulfilled when shipping is
/// configured, members given their partner role when customers are), shipment mails, tracking,
/// no-ops.
pub struct ConnectorHandler {
    inbox: Arc<dyn WebhookInbox>,
    shipping: Option<ShipmentJobs>,
    customers: Option<CustomerJobs>,
    reconciler: Option<Reconciler>,
    alerts: Option<(AlertDelivery, AlertCheck)>,
    retention: Option<(Retention, Arc<dyn EventLog>)>,
}

impl ConnectorHandler {
    /// Handles webhook jobs with `inbox`; orders are only validated and recorded until
    /// [`ConnectorHandler::with_shipping`] is given.
    pub fn new(inbox: Arc<dyn WebhookInbox>) -> Self {
        ConnectorHandler {
            inbox,
            shipping: None,
            customers: None,
            reconciler: None,
            alerts: None,
            retention: None,
        }
    }

    /// Clears the personal data past its retention ([`JobKind::Prune`]), recording what it
    /// cleared as a `data_pruned` event in `log`.
    pub fn with_retention(mut self, retention: Retention, log: Arc<dyn EventLog>) -> Self {
        self.retention = Some((retention, log));
        self
    }

    /// Raises an alert for each job dead-lettered, and runs the alerts' delivery and check
    /// ([`JobKind::DeliverAlerts`], [`JobKind::CheckAlerts`]).
    pub fn with_alerts(mut self, delivery: AlertDelivery, check: AlertCheck) -> Self {
        self.alerts = Some((delivery, check));
        self
    }

    /// Gives members their partner role with `customers`; without it customer webhooks are only
    /// validated and recorded.
    pub fn with_customers(mut self, customers: CustomerJobs) -> Self {
        self.customers = Some(customers);
        self
    }

    /// Fulfils orders, mails and tracks shipments with `shipping`.
    pub fn with_shipping(mut self, shipping: ShipmentJobs) -> Self {
        self.shipping = Some(shipping);
        self
    }

    /// Reconciles with the shop with `reconciler` ([`JobKind::Reconcile`]).
    pub fn with_reconciler(mut self, reconciler: Reconciler) -> Self {
        self.reconciler = Some(reconciler);
        self
    }

    fn shipping(&self) -> Result<&ShipmentJobs, JobError> {
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
        if let Some((delivery, _)) = &self.alerts {
            let alert = dead_job_alert(job, reason);
            if let Err(e) = delivery.alerts.raise(alert).await {
                tracing::warn!(job_id = %job.id, error = %e, "dead job's alert not raised");
            }
        }
        if let JobKind::ProcessWebhook { webhook_id } = &job.kind {
            let given_up = JobError::Permanent {
                reason: format!("given up after {} attempt(s): {reason}", job.attempt),
            };
            match settle(self.inbox.as_ref(), *webhook_id, Err(given_up)).await {
                Err(JobError::Permanent { .. }) => {}
                Err(e) => tracing::warn!(%webhook_id, error = %e, "webhook not marked failed"),
                Ok(()) => {}
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
                        (Resource::Order, Some(jobs), _) => {
                            return jobs.process_order(&webhook).await;
                        }
                        (Resource::Customer, _, Some(jobs)) => {
                            return jobs.process_customer(&webhook).await;
                        }
                        _ => {}
                    }
                }
                process_webhook(self.inbox.as_ref(), *webhook_id).await
            }
            JobKind::SendLabelMail { shipment_id } => {
                self.shipping()?.send_label_mail(*shipment_id).await
            }
            JobKind::ResendLabel { shipment_id, to } => {
                self.shipping()?
                    .resend_label(*shipment_id, to.as_deref())
                    .await
            }
            JobKind::SendBookingErrorMail { shipment_id } => {
                self.shipping()?.send_booking_error_mail(*shipment_id).await
            }
            JobKind::TrackShipments => self.shipping()?.track_all().await,
            JobKind::TrackShipment { shipment_id } => {
                self.shipping()?.track_one(*shipment_id).await
            }
            JobKind::RetryShipment {
                shipment_id,
                force,
                held,
            } => {
                self.shipping()?
                    .retry_shipment(*shipment_id, *force, *held)
                    .await
            }
            JobKind::NoteShipment { shipment_id } => {
                self.shipping()?.note_shipment(*shipment_id).await
            }
            JobKind::SyncOrderMeta { order_id } => {
                self.shipping()?.sync_order_meta(*order_id).await
            }
            JobKind::CompleteOrder { order_id } => self.shipping()?.complete_order(*order_id).await,
            JobKind::Reconcile => match &self.reconciler {
                Some(r) => r.run().await.map(|_| ()),
                None => Ok(()),
            },
            JobKind::DeliverAlerts => match &self.alerts {
                Some((delivery, _)) => delivery.deliver().await.map(|_| ()),
                None => Ok(()),
            },
            JobKind::CheckAlerts => match &self.alerts {
                Some((delivery, check)) => {
                    check.run().await?;
                    delivery.deliver().await.map(|_| ())
                }
                None => Ok(()),
            },
            JobKind::Prune => match &self.retention {
                Some((retention, log)) => prune(retention, log.as_ref()).await,
                None => Ok(()),
            },
            // Pruned by the observed worker's handler (`Worker::observed`); nothing to do here.
            JobKind::PruneEvents | JobKind::Noop { .. } => Ok(()),
        }
    }
}

/// How long one retention job prunes before it hands the rest to a follow-up job: a graceful
/// shutdown waits for it.
const PRUNE_PASS: std::time::Duration = std::time::Duration::from_secs(10);

/// One retention pass, its counts logged and recorded as an event (best-effort).
async fn prune(retention: &Retention, log: &dyn EventLog) -> Result<(), JobError> {
    let report = retention
        .prune_for(chrono::Utc::now(), PRUNE_PASS)
        .await
        .map_err(|e| JobError::Transient {
            reason: domain::error::error_chain(&e),
            retry_after: None,
        })?;
    tracing::info!(
        webhook_bodies = report.webhook_bodies,
        labels = report.labels,
        dead_jobs = report.dead_jobs,
        "retention pass done"
    );
    if let Err(e) = log
        .append(&[NewEvent::now(EventKind::DataPruned, report.to_string())])
        .await
    {
        tracing::warn!(error = %e, "the retention pass's event was not recorded");
    }
    Ok(())
}

/// The alert of a dead-lettered job: what it was for, why it was given up, what to do.
fn dead_job_alert(job: &Job, reason: &str) -> NewAlert {
    let what = match &job.kind {
        JobKind::ProcessWebhook { webhook_id } => format!(
            "processar el webhook {webhook_id} (`lazona webhooks show {webhook_id}`; es torna a \
             processar amb `lazona webhooks replay {webhook_id}`)"
        ),
        JobKind::SendLabelMail { shipment_id } => format!(
            "enviar l'etiqueta de l'enviament {shipment_id} a la venedora (`lazona shipments \
             show {shipment_id}`)"
        ),
        JobKind::TrackShipment { shipment_id } => {
            format!("consultar el seguiment de l'enviament {shipment_id}")
        }
        JobKind::RetryShipment { shipment_id, .. } => {
            format!("tornar a reservar l'enviament {shipment_id}")
        }
        other => format!("la tasca {}", other.name()),
    };
    NewAlert {
        kind: AlertKind::JobDead,
        subject: subject::job(job.id.0),
        summary: format!("Tasca abandonada: {}", job.kind.name()),
        detail: format!(
            "El connector ha abandonat la tasca {id} ({kind}) després de {attempts} intent(s). \
             La tasca havia de {what}.\n\nMotiu:\n{reason}\n\nQuan la causa estigui \
             resolta: `lazona dead requeue {id}` (l'alerta es tanca sola quan la tasca acaba \
             bé). `lazona dead list` mostra totes les tasques abandonades.",
            id = job.id,
            kind = job.kind.name(),
            attempts = job.attempt,
        ),
    }
}
