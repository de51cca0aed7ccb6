//! The shipment jobs: an order webhook fulfilled, labels and errors mailed, tracking polled.
//!
//! Each job is idempotent and does one thing, so that a failure is retried on its own: a mail
//! that fails is sent again without booking again; one shipment whose tracking fails does not
//! stop the others.

use super::fulfilment::{FulfilmentDeps, fulfil_order};
use super::mails::{booking_error_mail, label_mail, tracking_changed_mail};
use super::shipping::{ShippingMethods, tracking_status};
use crate::error::{JobError, MailError, ShopError, StoreError, Transience, error_chain};
use crate::model::{
    JobKind, NewJob, Order, ShipmentRecord, ShipmentStatus, Webhook, WebhookStatus,
};
use crate::ports::{JobQueue, Mailer, ShipmentStore, ShippingProvider, Shop, WebhookInbox};

/// The ports and settings the shipment jobs use.
pub struct ShipmentJobs<'a> {
    /// The webhook inbox.
    pub inbox: &'a dyn WebhookInbox,
    /// Where shipments are kept.
    pub store: &'a dyn ShipmentStore,
    /// The carrier.
    pub carrier: &'a dyn ShippingProvider,
    /// The shop.
    pub shop: &'a dyn Shop,
    /// Outgoing mail.
    pub mailer: &'a dyn Mailer,
    /// Where follow-up jobs (mails, tracking) are enqueued.
    pub queue: &'a dyn JobQueue,
    /// Which shipping methods mean Koiki and local pickup.
    pub methods: &'a ShippingMethods,
    /// The shop's base URL (for the order links in mails).
    pub shop_host: &'a str,
    /// The admins, who get booking errors and tracking changes.
    pub admins: &'a [String],
}

fn store_gone(id: i64) -> JobError {
    JobError::Permanent {
        reason: format!("shipment {id} not found"),
    }
}

fn mail_error(e: &MailError) -> JobError {
    let transience = match e {
        MailError::Rejected { .. } => Transience::Permanent,
        MailError::Unavailable { .. } => Transience::Transient { retry_after: None },
    };
    JobError::from_port(e, transience)
}

fn shop_error(e: &ShopError) -> JobError {
    let transience = match e {
        ShopError::Unavailable { retry_after, .. } => Transience::Transient {
            retry_after: *retry_after,
        },
        ShopError::InvalidResponse { .. } => Transience::Transient { retry_after: None },
        ShopError::NotFound { .. } | ShopError::Rejected { .. } => Transience::Permanent,
    };
    JobError::from_port(e, transience)
}

impl ShipmentJobs<'_> {
    async fn enqueue(&self, kind: JobKind) -> Result<(), JobError> {
        self.queue
            .enqueue(NewJob { kind, run_at: None })
            .await
            .map(|_| ())
            .map_err(|e| JobError::Transient {
                reason: error_chain(&e),
                retry_after: None,
            })
    }

    async fn shipment(&self, id: i64) -> Result<ShipmentRecord, JobError> {
        self.store.get(id).await?.ok_or_else(|| store_gone(id))
    }

    /// Fulfils the order of a stored order webhook (as the caller read it), enqueues the mails its shipments need, and
    /// records the webhook as processed. A repeat finds the shipments and books nothing; labels
    /// not mailed yet are mailed then.
    ///
    /// # Errors
    /// [`JobError::Permanent`] for a body that is not an order or an order that cannot be split;
    /// [`JobError::Transient`] when a port cannot be reached.
    pub async fn process_order(&self, webhook: &Webhook) -> Result<(), JobError> {
        let webhook_id = webhook.id;
        if webhook.data.status != WebhookStatus::Queued {
            return Ok(());
        }
        let order: Order = match serde_json::from_slice(&webhook.data.body) {
            Ok(order) => order,
            Err(e) => {
                let reason = format!("the order body does not parse: {e}");
                self.inbox
                    .transition(
                        webhook_id,
                        WebhookStatus::Queued,
                        WebhookStatus::Failed,
                        Some(reason.clone()),
                    )
                    .await?;
                return Err(JobError::Permanent { reason });
            }
        };
        let deps = FulfilmentDeps {
            store: self.store,
            carrier: self.carrier,
            shop: self.shop,
            methods: self.methods,
        };
        let report = match fulfil_order(&deps, &order).await {
            Ok(report) => report,
            Err(e @ JobError::Permanent { .. }) => {
                self.inbox
                    .transition(
                        webhook_id,
                        WebhookStatus::Queued,
                        WebhookStatus::Failed,
                        Some(e.to_string()),
                    )
                    .await?;
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        for id in &report.booked {
            self.enqueue(JobKind::SendLabelMail { shipment_id: *id })
                .await?;
        }
        for id in &report.failed {
            self.enqueue(JobKind::SendBookingErrorMail { shipment_id: *id })
                .await?;
        }
        // A repeat after a crash between the booking and the mails: mail what was not mailed.
        for id in &report.existing {
            let s = self.shipment(*id).await?;
            if s.mailed_at.is_none() {
                match s.status {
                    ShipmentStatus::LabelSent => {
                        self.enqueue(JobKind::SendLabelMail { shipment_id: s.id })
                            .await?
                    }
                    ShipmentStatus::ErrorFromBody => {
                        self.enqueue(JobKind::SendBookingErrorMail { shipment_id: s.id })
                            .await?;
                    }
                    _ => {}
                }
            }
        }
        let summary = format!(
            "booked {}, refused {}, picked up {}, already there {}, other methods {}",
            report.booked.len(),
            report.failed.len(),
            report.picked_up.len(),
            report.existing.len(),
            report.ignored.len()
        );
        tracing::info!(order_id = order.id, %summary, "order fulfilled");
        self.inbox
            .transition(
                webhook_id,
                WebhookStatus::Queued,
                WebhookStatus::Processed,
                Some(summary),
            )
            .await?;
        Ok(())
    }

    /// Mails a shipment's label to its vendor, unless it was mailed already.
    ///
    /// # Errors
    /// [`JobError::Transient`] when the mail server or the shop cannot be reached;
    /// [`JobError::Permanent`] when the server refuses the message or the shipment has no label.
    pub async fn send_label_mail(&self, shipment_id: i64) -> Result<(), JobError> {
        let s = self.shipment(shipment_id).await?;
        if s.mailed_at.is_some() {
            return Ok(());
        }
        let Some(pdf) = self.store.label(shipment_id).await? else {
            return Err(JobError::Permanent {
                reason: format!("shipment {shipment_id} has no label"),
            });
        };
        let vendor = self
            .shop
            .vendor(s.vendor_id)
            .await
            .map_err(|e| shop_error(&e))?;
        tracing::info!(
            vendor_id = s.vendor_id,
            "Sending Koiki pdf to vendor with id {}",
            s.vendor_id
        );
        let filename = format!(
            "{}.pdf",
            if s.delivery_id.is_empty() {
                s.id.to_string()
            } else {
                s.delivery_id.clone()
            }
        );
        let email = label_mail(self.shop_host, s.order_id, &vendor.email, pdf, &filename);
        self.mailer.send(&email).await.map_err(|e| mail_error(&e))?;
        self.store.mark_mailed(shipment_id).await?;
        Ok(())
    }

    /// Mails a refused booking to the admins, unless it was mailed already.
    ///
    /// # Errors
    /// As for [`ShipmentJobs::send_label_mail`].
    pub async fn send_booking_error_mail(&self, shipment_id: i64) -> Result<(), JobError> {
        let s = self.shipment(shipment_id).await?;
        if s.mailed_at.is_some() || self.admins.is_empty() {
            return Ok(());
        }
        tracing::info!(
            order_id = s.order_id,
            "Sending Koiki error to admins for order {}",
            s.order_id
        );
        let email = booking_error_mail(
            self.shop_host,
            s.order_id,
            self.admins,
            Some(&s.message),
            &s.request,
        );
        self.mailer.send(&email).await.map_err(|e| mail_error(&e))?;
        self.store.mark_mailed(shipment_id).await?;
        Ok(())
    }

    /// Enqueues one tracking job per shipment not delivered yet.
    ///
    /// # Errors
    /// [`JobError::Transient`] when the store or the queue cannot be reached.
    pub async fn track_all(&self) -> Result<(), JobError> {
        for s in self.store.to_track().await? {
            tracing::info!("Updating shipment status for delivery id {}", s.delivery_id);
            self.enqueue(JobKind::TrackShipment { shipment_id: s.id })
                .await?;
        }
        Ok(())
    }

    /// Polls one shipment's tracking, records it, and mails the admins when its status or message
    /// changed.
    ///
    /// # Errors
    /// [`JobError::Transient`] when the carrier or the mail server cannot be reached.
    pub async fn track_one(&self, shipment_id: i64) -> Result<(), JobError> {
        let s = self.shipment(shipment_id).await?;
        if s.delivery_id.is_empty() || s.status == ShipmentStatus::Delivered {
            return Ok(());
        }
        let report = self
            .carrier
            .track(&s.delivery_id)
            .await
            .map_err(|e| JobError::from_port(&e, e.transience()))?;
        let (status, message) = tracking_status(&report);
        let (notes, date) = match &report {
            crate::model::shipment::TrackingReport::Event { notes, date, .. } => {
                (notes.clone(), date.clone())
            }
            crate::model::shipment::TrackingReport::Error { .. } => (String::new(), None),
        };
        let updated = self
            .store
            .record_tracking(shipment_id, status, &message, &notes, date.clone())
            .await
            .map_err(|e| match e {
                StoreError::NotFound(id) => store_gone(id),
                e => e.into(),
            })?;
        if (updated.status != s.status || updated.message != s.message) && !self.admins.is_empty() {
            let email = tracking_changed_mail(
                self.admins,
                &s.delivery_id,
                updated.status.as_str(),
                date.as_deref(),
                &updated.message,
                &updated.notes,
            );
            self.mailer.send(&email).await.map_err(|e| mail_error(&e))?;
        }
        Ok(())
    }
}
