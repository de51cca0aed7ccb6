//! The shipment jobs: an order webhook fulfilled, labels and errors mailed, tracking polled.
//!
//! Each job is idempotent and does one thing, so that a failure is retried on its own: a mail
//! that fails is sent again without booking again; one shipment whose tracking fails does not
//! stop the others.

use super::alerts::Alerts;
use super::fulfilment::{ToMail, failed_outcome, fulfil_order, outcome_of};
use super::mails::{booking_error_mail, label_mail, tracking_changed_mail};
use super::process::settle;
use super::shipping::{
    ShippingMethods, VendorGroup, build_parcel, pair_results, plan, tracking_status,
};
use super::shop_sync::{ShopSync, StatusDecision};
use crate::error::{JobError, MailError, ShopError, StoreError, Transience, error_chain};
use crate::model::alert::subject;
use crate::model::mail::{label_message_id, on_sent};
use crate::model::payload;
use crate::model::{
    AlertKind, BOOKING_LEASE, BookingRecorded, HeldBooking, JobKind, MailEventStatus, MailState,
    MailUpdate, NewAlert, NewJob, NewMailEvent, Order, Parcel, ShipmentMethod, ShipmentRecord,
    ShipmentStatus, TrackingReport, Webhook, WebhookStatus,
};
use crate::ports::{
    Email, JobQueue, MailEventStore, Mailer, ShipmentStore, ShippingProvider, Shop, WebhookInbox,
};
use std::sync::Arc;

/// The shipment use cases and what they need: the ports (each an `Arc<dyn Port>`, shared) and the
/// shop's settings. The composition root (`connector::ConnectorBuilder`) builds it once; every
/// shipment job, fulfilment included, runs through it. Cheap to clone.
#[derive(Clone)]
pub struct ShipmentJobs {
    /// The webhook inbox.
    pub inbox: Arc<dyn WebhookInbox>,
    /// Where shipments are kept.
    pub store: Arc<dyn ShipmentStore>,
    /// The carrier.
    pub carrier: Arc<dyn ShippingProvider>,
    /// The shop.
    pub shop: Arc<dyn Shop>,
    /// Outgoing mail.
    pub mailer: Arc<dyn Mailer>,
    /// Where follow-up jobs (mails, tracking) are enqueued.
    pub queue: Arc<dyn JobQueue>,
    /// Which shipping methods mean the carrier and local pickup.
    pub methods: ShippingMethods,
    /// The shop's base URL (for the order links in mails).
    pub shop_host: String,
    /// The admins, who get booking errors and tracking changes.
    pub admins: Vec<String>,
    /// Which order statuses are booked, and what is written back to the shop.
    pub shop_sync: ShopSync,
    /// Alerts to the operators (refused bookings, tracking errors, withdrawn orders).
    pub alerts: Alerts,
    /// The mail events, where a label mailed again is recorded.
    pub mail_events: Arc<dyn MailEventStore>,
    /// The domain of the label mails' `Message-ID`s (`mail.from`'s,
    /// [`crate::model::mail::message_id_domain`]).
    pub mail_domain: String,
}

/// The label's attachment name: its barcode, or the shipment's id when it has none.
fn label_filename(s: &ShipmentRecord) -> String {
    if s.delivery_id.is_empty() {
        format!("{}.pdf", s.id)
    } else {
        format!("{}.pdf", s.delivery_id)
    }
}

fn store_gone(id: i64) -> JobError {
    JobError::Permanent {
        reason: format!("shipment {id} not found"),
    }
}

fn mail_error(e: &MailError) -> JobError {
    JobError::from_error(e)
}

fn shop_error(e: &ShopError) -> JobError {
    JobError::from_error(e)
}

impl ShipmentJobs {
    pub(crate) async fn enqueue(&self, kind: JobKind) -> Result<(), JobError> {
        self.queue
            .enqueue(NewJob { kind, run_at: None })
            .await
            .map(|_| ())
            .map_err(|e| JobError::Transient {
                reason: error_chain(&e),
                retry_after: None,
            })
    }

    pub(crate) async fn shipment(&self, id: i64) -> Result<ShipmentRecord, JobError> {
        self.store.get(id).await?.ok_or_else(|| store_gone(id))
    }

    /// Fulfils the order of a stored order webhook (as the caller read it), mails each new label
    /// to its vendor and each refusal to the admins, and records the webhook as processed. A
    /// mail that cannot be sent now becomes a job of its own (retried without booking again). A
    /// repeat finds the shipments and books nothing; labels not mailed yet are mailed then.
    ///
    /// # Errors
    /// [`JobError::Permanent`] for a body that is not an order or an order that cannot be split;
    /// [`JobError::Transient`] when a port cannot be reached.
    #[tracing::instrument(skip_all, fields(webhook_id = %webhook.id, order_id = webhook.data.subject_id))]
    pub async fn process_order(&self, webhook: &Webhook) -> Result<(), JobError> {
        let webhook_id = webhook.id;
        if webhook.data.status != WebhookStatus::Queued {
            return Ok(());
        }
        let result = self.fulfil_and_mail(webhook).await;
        settle(self.inbox.as_ref(), webhook_id, result.map(Some)).await
    }

    /// Fulfils the webhook's order and sends (or enqueues) the mails of what was recorded; the
    /// summary the webhook is settled with.
    async fn fulfil_and_mail(&self, webhook: &Webhook) -> Result<String, JobError> {
        let order: Order = payload::order(&webhook.data.body).map_err(|e| JobError::Permanent {
            reason: format!("the order body does not parse: {e}"),
        })?;
        match self.shop_sync.book_statuses.decide(&order.status) {
            StatusDecision::Book => {}
            StatusDecision::Wait => {
                let summary = format!("order {} is {}: not booked", order.id, order.status.trim());
                tracing::info!(order_id = order.id, %summary, "order not booked");
                return Ok(summary);
            }
            StatusDecision::Withdrawn => return self.withdrawn(&order).await,
        }
        let report = fulfil_order(self, &order).await?;
        for mail in report.to_mail {
            self.mail_now_or_later(mail).await?;
        }
        if !report.to_note.is_empty() {
            self.enqueue_write_backs(order.id, !report.booked.is_empty(), &report.to_note)
                .await?;
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
        Ok(summary)
    }

    /// Sends the mail of a shipment just recorded (its label to the vendor, or its refusal to the
    /// admins) and marks it mailed; when that cannot be done now, or the shipment was found not
    /// mailed (a repeat), enqueues the job that does it on its own.
    async fn mail_now_or_later(&self, mail: ToMail) -> Result<(), JobError> {
        let s = &mail.shipment;
        let (email, job) = match s.status {
            ShipmentStatus::LabelSent => {
                let job = JobKind::SendLabelMail { shipment_id: s.id };
                match (mail.vendor_email, mail.label_pdf) {
                    (Some(to), Some(pdf)) => {
                        tracing::info!(
                            vendor_id = s.vendor_id,
                            "Sending Koiki pdf to vendor with id {}",
                            s.vendor_id
                        );
                        (self.label_email(s, &to, pdf), job)
                    }
                    _ => return self.enqueue(job).await,
                }
            }
            ShipmentStatus::ErrorFromBody => return self.raise_refused(s).await,
            _ => return Ok(()),
        };
        match self.mailer.send(&email).await {
            Ok(()) => {
                self.label_mailed(s, email.message_id.as_deref().unwrap_or_default())
                    .await?;
                Ok(())
            }
            Err(e) => {
                tracing::warn!(
                    shipment_id = s.id,
                    error = %error_chain(&e),
                    "mail not sent now; a job will send it"
                );
                self.enqueue(job).await
            }
        }
    }

    /// A booking the carrier refused: raises its alert (the original's error mail, told to the
    /// admins by the alerts' delivery, retried until sent), then marks the shipment told.
    async fn raise_refused(&self, s: &ShipmentRecord) -> Result<(), JobError> {
        let email = self.booking_error_email(s);
        self.alerts
            .raise(NewAlert {
                kind: AlertKind::BookingRefused,
                subject: subject::shipment(s.id),
                summary: email.subject,
                detail: email.body,
            })
            .await?;
        self.store.mark_mailed(s.id).await?;
        Ok(())
    }

    fn booking_error_email(&self, s: &ShipmentRecord) -> Email {
        tracing::info!(
            order_id = s.order_id,
            "Sending Koiki error to admins for order {}",
            s.order_id
        );
        booking_error_mail(
            &self.shop_host,
            s.order_id,
            &self.admins,
            Some(&s.message),
            &s.request,
        )
    }

    /// Mails a shipment's label to its vendor, unless it was mailed already.
    ///
    /// # Errors
    /// [`JobError::Transient`] when the mail server or the shop cannot be reached;
    /// [`JobError::Permanent`] when the server refuses the message or the shipment has no label.
    #[tracing::instrument(skip_all, fields(shipment_id))]
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
        let email = self.label_email(&s, &vendor.email, pdf);
        self.mailer.send(&email).await.map_err(|e| mail_error(&e))?;
        self.label_mailed(&s, email.message_id.as_deref().unwrap_or_default())
            .await?;
        Ok(())
    }

    /// Mails a shipment's label again (an operator's `lazona labels resend`), to `to` or to the
    /// vendor's address as the shop has it now, whether or not it was mailed before; records it
    /// on the shipment (its mail state `sent` again, the new `Message-ID`) and among its mail
    /// events (`lazona`/`resent`). A retry after the mail was sent but before it was recorded
    /// sends it once more.
    ///
    /// # Errors
    /// [`JobError::Permanent`] for a shipment without a label or a vendor without an address, or
    /// a mail the server refuses; [`JobError::Transient`] when the mail server, the shop or the
    /// store cannot be reached.
    #[tracing::instrument(skip_all, fields(shipment_id))]
    pub async fn resend_label(&self, shipment_id: i64, to: Option<&str>) -> Result<(), JobError> {
        let s = self.shipment(shipment_id).await?;
        let Some(pdf) = self.store.label(shipment_id).await? else {
            return Err(JobError::Permanent {
                reason: format!("shipment {shipment_id} has no label"),
            });
        };
        let to = match to.map(str::trim).filter(|t| !t.is_empty()) {
            Some(to) => to.to_owned(),
            None => {
                self.shop
                    .vendor(s.vendor_id)
                    .await
                    .map_err(|e| shop_error(&e))?
                    .email
            }
        };
        if to.trim().is_empty() {
            return Err(JobError::Permanent {
                reason: format!(
                    "shipment {shipment_id}: vendor {} has no e-mail address in the shop (give \
                     one with --to)",
                    s.vendor_id
                ),
            });
        }
        tracing::info!(
            vendor_id = s.vendor_id,
            "mailing the label of shipment {shipment_id} again"
        );
        let email = self.label_email(&s, &to, pdf);
        self.mailer.send(&email).await.map_err(|e| mail_error(&e))?;
        let message_id = email.message_id.clone().unwrap_or_default();
        self.label_mailed(&s, &message_id).await?;
        let mut event = NewMailEvent::new(
            "lazona",
            "resent",
            serde_json::json!({ "to": to, "message_id": message_id }).to_string(),
        );
        event.state = Some(MailState::Sent);
        event.email = Some(to);
        event.message_id = Some(message_id);
        event.shipment_id = Some(shipment_id);
        event.occurred_at = Some(chrono::Utc::now());
        event.status = MailEventStatus::Applied;
        self.mail_events.record(&event).await?;
        Ok(())
    }

    /// The label mail of `s` to `to`, with a new `Message-ID` of the connector's own.
    fn label_email(&self, s: &ShipmentRecord, to: &str, pdf: Vec<u8>) -> Email {
        let message_id = label_message_id(
            s.id,
            chrono::Utc::now().timestamp_millis(),
            &self.mail_domain,
        );
        label_mail(
            &self.shop_host,
            s.order_id,
            to,
            pdf,
            &label_filename(s),
            s.id,
            &message_id,
        )
    }

    /// Records that the label mail `message_id` of `s` (as the caller read it) was handed to the
    /// relay: `mailed_at`, and the mail state `sent` with its `Message-ID` unless the relay
    /// reported on that mail first ([`on_sent`]); a compare-and-set, read again when the
    /// shipment's mail changed meanwhile.
    async fn label_mailed(
        &self,
        s: &ShipmentRecord,
        message_id: &str,
    ) -> Result<ShipmentRecord, JobError> {
        let mut s = s.clone();
        for _ in 0..5 {
            let (new_id, state, at) =
                match on_sent(s.mail_message_id.as_deref(), s.mail_state, message_id) {
                    Some((m, state)) => (Some(m), Some(state), Some(chrono::Utc::now())),
                    None => (s.mail_message_id.clone(), s.mail_state, s.mail_state_at),
                };
            let update = MailUpdate {
                seen_message_id: s.mail_message_id.clone(),
                seen_state: s.mail_state,
                message_id: new_id,
                state,
                at,
                mailed: true,
            };
            if let Some(recorded) = self.store.update_mail(s.id, &update).await? {
                return Ok(recorded);
            }
            s = self.shipment(s.id).await?;
        }
        Err(JobError::Transient {
            reason: format!("shipment {}: its label mail kept changing", s.id),
            retry_after: None,
        })
    }

    /// Raises a refused booking's alert, unless it was told already.
    ///
    /// # Errors
    /// [`JobError::Transient`] when the store cannot be reached.
    #[tracing::instrument(skip_all, fields(shipment_id))]
    pub async fn send_booking_error_mail(&self, shipment_id: i64) -> Result<(), JobError> {
        let s = self.shipment(shipment_id).await?;
        if s.mailed_at.is_some() || s.status != ShipmentStatus::ErrorFromBody {
            return Ok(());
        }
        self.raise_refused(&s).await
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
    #[tracing::instrument(skip_all, fields(shipment_id))]
    pub async fn track_one(&self, shipment_id: i64) -> Result<(), JobError> {
        let s = self.shipment(shipment_id).await?;
        // A shipment `BOOKING` is being booked again: its tracking is the new booking's, later.
        if s.delivery_id.is_empty() || s.status == ShipmentStatus::Booking {
            return Ok(());
        }
        // Delivered: not polled any more, but the mail of the change that delivered it may still
        // be due (it failed, and this is the retry).
        if s.status == ShipmentStatus::Delivered {
            return self.mail_tracking_change(&s).await;
        }
        let report = self
            .carrier
            .track(&s.delivery_id)
            .await
            .map_err(|e| JobError::from_port(&e, e.transience()))?;
        let (status, message) = tracking_status(&report);
        let (notes, date) = match &report {
            TrackingReport::Event { notes, date, .. } => (notes.clone(), date.clone()),
            TrackingReport::Error { .. } => (String::new(), None),
        };
        let updated = self
            .store
            .record_tracking(shipment_id, status, &message, &notes, date.clone())
            .await
            .map_err(|e| match e {
                StoreError::NotFound(id) => store_gone(id),
                e => e.into(),
            })?;
        if updated.status == ShipmentStatus::Booking {
            return Ok(());
        }
        if updated.status != s.status {
            self.enqueue_tracking_write_backs(&updated).await?;
        }
        self.tracking_alert(&s, &updated).await?;
        self.mail_tracking_change(&updated).await
    }

    /// Raises the tracking error's alert when the carrier's tracking starts answering an error
    /// for the shipment, and resolves it when it answers again.
    async fn tracking_alert(
        &self,
        before: &ShipmentRecord,
        after: &ShipmentRecord,
    ) -> Result<(), JobError> {
        let was = before.status == ShipmentStatus::ErrorFromTracking;
        let is = after.status == ShipmentStatus::ErrorFromTracking;
        if is && !was {
            self.alerts
                .raise(NewAlert {
                    kind: AlertKind::TrackingError,
                    subject: subject::shipment(after.id),
                    summary: format!(
                        "Error de seguiment Koiki de l'enviament {} (comanda {})",
                        after.delivery_id, after.order_id
                    ),
                    detail: format!(
                        "El seguiment de Koiki de l'enviament {barcode} (enviament {id}, comanda                          {order}, venedora {vendor}) respon un error:\n\n{message}\n\nEl                          connector hi torna a preguntar a cada passada; l'alerta es tanca sola \
                         quan el seguiment respon bé. Si persisteix, consulteu-ho amb Koiki.",
                        barcode = after.delivery_id,
                        id = after.id,
                        order = after.order_id,
                        vendor = after.vendor_id,
                        message = after.message,
                    ),
                })
                .await?;
        } else if was && !is {
            self.alerts
                .resolve(AlertKind::TrackingError, &subject::shipment(after.id))
                .await?;
        }
        Ok(())
    }

    /// Mails the admins the shipment's tracking as it now is when a change of it waits for its
    /// mail (`tracking_unmailed_since`, set with the change itself), then clears that mark. A
    /// mail that fails leaves the mark, so the job's retry (or the next poll) sends it: a change
    /// is never left untold.
    async fn mail_tracking_change(&self, s: &ShipmentRecord) -> Result<(), JobError> {
        let Some(since) = s.tracking_unmailed_since else {
            return Ok(());
        };
        if !self.admins.is_empty() {
            let email = tracking_changed_mail(
                &self.admins,
                &s.delivery_id,
                s.status.as_str(),
                s.tracking_status_created_at.as_deref(),
                &s.message,
                &s.notes,
            );
            self.mailer.send(&email).await.map_err(|e| mail_error(&e))?;
        }
        self.store.mark_tracking_mailed(s.id, since).await?;
        Ok(())
    }

    /// The operator's "retry shipment" (the original's admin button): fetches the order again
    /// from WooCommerce and books the shipment's vendor again, then mails the new label (or the
    /// refusal) like a first booking.
    ///
    /// The job books with the booking attempt `held` that the operator's request took
    /// ([`crate::service::operations::retry_shipment`]), or, without one (a replay's retries,
    /// jobs from before attempts), takes one itself on the same terms: without `force` only a
    /// refused booking (`ERROR_FROM_BODY`) is booked again (any other status means the carrier
    /// may already hold a shipment, and a second booking is a second parcel to pay for), and
    /// never while another booking of the shipment is in flight. It books only while the
    /// shipment still holds the attempt (a later retry that took it makes this job a no-op),
    /// and whatever the carrier returns is recorded, beside the shipment if it was taken
    /// meanwhile ([`BookingRecorded::Aside`]). When the carrier cannot be reached the shipment
    /// goes back to its previous status, keeping the attempt, and the job is retried.
    ///
    /// # Errors
    /// [`JobError::Permanent`] for a local pickup, a shipment with a booking and no `force`, an
    /// order that no longer has Koiki shipping for the vendor, or bad vendor data;
    /// [`JobError::Transient`] when the shop or the carrier cannot be reached.
    #[tracing::instrument(skip_all, fields(shipment_id, force))]
    pub async fn retry_shipment(
        &self,
        shipment_id: i64,
        force: bool,
        held: Option<HeldBooking>,
    ) -> Result<(), JobError> {
        let s = self.shipment(shipment_id).await?;
        if s.method == ShipmentMethod::LocalPickup {
            return Err(JobError::Permanent {
                reason: format!(
                    "shipment {shipment_id} is a local pickup: there is nothing to book"
                ),
            });
        }
        let held = match held {
            Some(held) => held,
            None => match self.take_booking(&s, force).await? {
                Some(held) => held,
                None => return Ok(()),
            },
        };
        let permanent = |reason: String| JobError::Permanent {
            reason: format!("shipment {shipment_id}: {reason}"),
        };
        let planned = self.plan_rebooking(&s, force).await;
        let (group, parcel, request) = match planned {
            Ok(planned) => planned,
            Err(e) => {
                // Nothing booked: the shipment goes back as it was.
                self.store
                    .end_booking(shipment_id, held.attempt, held.previous)
                    .await?;
                return Err(e);
            }
        };
        if !self
            .store
            .start_booking(shipment_id, held.attempt, held.previous)
            .await?
        {
            tracing::warn!(
                shipment_id,
                attempt = held.attempt,
                "shipment {shipment_id}: another retry took it meanwhile; this one books nothing"
            );
            return Ok(());
        }
        if !s.delivery_id.is_empty() {
            tracing::warn!(
                shipment_id,
                previous_barcode = %s.delivery_id,
                "booking shipment {shipment_id} again (forced): it had barcode {}",
                s.delivery_id
            );
        }
        let parcels = [parcel];
        let outcome = match self.carrier.book(&parcels).await {
            Ok(results) => match pair_results(std::slice::from_ref(&group), &parcels, results) {
                Ok(mut paired) if paired.len() == 1 => {
                    let (_, _, result) = paired.remove(0);
                    outcome_of(&request, result)
                }
                Ok(_) => failed_outcome(
                    request.clone(),
                    "the carrier's answer does not match the request".into(),
                ),
                Err(e) => failed_outcome(
                    request.clone(),
                    format!("the carrier's answer does not match the request: {e}"),
                ),
            },
            Err(e) => match e.transience() {
                Transience::Transient { retry_after } => {
                    self.store
                        .end_booking(shipment_id, held.attempt, held.previous)
                        .await?;
                    return Err(JobError::Transient {
                        reason: format!("shipment {shipment_id}: {}", error_chain(&e)),
                        retry_after,
                    });
                }
                Transience::Permanent => failed_outcome(request.clone(), error_chain(&e)),
            },
        };
        let recorded = match self
            .store
            .record_booking(shipment_id, held.attempt, &outcome)
            .await?
        {
            BookingRecorded::Current(recorded) => recorded,
            BookingRecorded::Aside(_) => {
                return Err(permanent(format!(
                    "its booking (barcode {:?}) came back after another retry had taken the \
                     shipment: it is kept among the shipment's past bookings, with its label",
                    outcome.delivery_id
                )));
            }
        };
        tracing::info!(
            shipment_id,
            order_id = s.order_id,
            vendor_id = s.vendor_id,
            status = %recorded.status,
            "shipment booked again"
        );
        if recorded.status == ShipmentStatus::LabelSent {
            self.alerts
                .resolve(AlertKind::BookingRefused, &subject::shipment(shipment_id))
                .await?;
            self.enqueue(JobKind::SendLabelMail { shipment_id }).await?;
            self.enqueue_write_backs(recorded.order_id, true, std::slice::from_ref(&recorded))
                .await
        } else {
            self.enqueue(JobKind::SendBookingErrorMail { shipment_id })
                .await
        }
    }

    /// Takes the shipment for a retry job that holds no booking attempt, on the terms of
    /// [`crate::service::operations::retry_shipment`]; `None` when another booking of it is in
    /// flight or took it meanwhile (that one books).
    async fn take_booking(
        &self,
        s: &ShipmentRecord,
        force: bool,
    ) -> Result<Option<HeldBooking>, JobError> {
        let stale_before = chrono::Utc::now() - BOOKING_LEASE;
        if s.status == ShipmentStatus::Booking && s.updated_at >= stale_before {
            tracing::warn!(
                shipment_id = s.id,
                "shipment {}: a booking is in flight; this retry books nothing",
                s.id
            );
            return Ok(None);
        }
        if !force && s.status != ShipmentStatus::ErrorFromBody {
            return Err(JobError::Permanent {
                reason: format!(
                    "shipment {} is {}{}: a booking was made already; retry with force to book \
                     a second one",
                    s.id,
                    s.status,
                    if s.delivery_id.is_empty() {
                        String::new()
                    } else {
                        format!(" with barcode {}", s.delivery_id)
                    }
                ),
            });
        }
        let taken = self
            .store
            .reserve_booking(s.id, s.status, s.booking_attempt, stale_before)
            .await?;
        if taken.is_none() {
            tracing::warn!(
                shipment_id = s.id,
                "shipment {}: another retry took it meanwhile; this one books nothing",
                s.id
            );
        }
        Ok(taken.map(|t| HeldBooking {
            attempt: t.booking_attempt,
            previous: s.status,
        }))
    }

    /// The order fetched again, the vendor's part of it to book, and what the carrier is to be
    /// sent for it.
    #[tracing::instrument(skip_all, fields(shipment_id = s.id, order_id = s.order_id, vendor_id = s.vendor_id))]
    async fn plan_rebooking(
        &self,
        s: &ShipmentRecord,
        force: bool,
    ) -> Result<(VendorGroup, Parcel, String), JobError> {
        let shipment_id = s.id;
        let permanent = |reason: String| JobError::Permanent {
            reason: format!("shipment {shipment_id}: {reason}"),
        };
        let order = self
            .shop
            .order(s.order_id)
            .await
            .map_err(|e| shop_error(&e))?;
        // The order as the shop has it now: one not (or no longer) in a bookable status is
        // booked again only when forced.
        if !force && self.shop_sync.book_statuses.decide(&order.status) != StatusDecision::Book {
            return Err(permanent(format!(
                "order {} is {}: not booked (retry with force to book it anyway)",
                s.order_id,
                order.status.trim()
            )));
        }
        let plan = plan(&order, &self.methods).map_err(|e| permanent(e.to_string()))?;
        let Some(group) = plan.koiki.into_iter().find(|g| g.vendor_id == s.vendor_id) else {
            return Err(permanent(format!(
                "order {} has no Koiki shipping for vendor {} any more",
                s.order_id, s.vendor_id
            )));
        };
        let profile = self
            .shop
            .vendor(s.vendor_id)
            .await
            .map_err(|e| shop_error(&e))?;
        let parcel = build_parcel(&order, &group, &profile);
        let request = self
            .carrier
            .request_for(&parcel)
            .map_err(|e| permanent(e.to_string()))?;
        Ok((group, parcel, request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ShippingError;
    use crate::memory::MemoryShipmentStore;
    use crate::model::ParcelBooking;
    use crate::model::shipment::VendorProfile;
    use crate::model::{BookingOutcome, JobId};
    use crate::ports::{
        MockJobQueue, MockMailer, MockShippingProvider, MockShop, MockWebhookInbox,
    };
    use std::sync::{Arc, Mutex};

    const ORDER: &str = include_str!("../../../../tests/fixtures/order_minimal.json");

    fn shop() -> MockShop {
        let mut shop = MockShop::new();
        shop.expect_order()
            .returning(|_| Ok(serde_json::from_str(ORDER).expect("order")));
        shop.expect_vendor().returning(|id| {
            Ok(VendorProfile {
                id,
                phone: "93333333".into(),
                street: "Carrer 1".into(),
                zip: "08041".into(),
                city: "Barcelona".into(),
                state: "B".into(),
                country: "ES".into(),
                email: format!("vendor{id}@example.coop"),
                store_name: String::new(),
            })
        });
        shop
    }

    /// A carrier whose request for a parcel is the parcel as JSON; any booking or tracking
    /// panics unless a test expects it.
    fn no_booking() -> MockShippingProvider {
        let mut carrier = MockShippingProvider::new();
        carrier
            .expect_request_for()
            .returning(|parcel| Ok(serde_json::to_string_pretty(parcel).expect("JSON")));
        carrier
    }

    fn carrier(barcode: &'static str) -> MockShippingProvider {
        let mut carrier = no_booking();
        carrier.expect_book().returning(move |req| {
            assert_eq!(req.len(), 1, "one parcel: the retried vendor's");
            Ok(vec![ParcelBooking::Booked {
                message: "OK".into(),
                barcode: barcode.into(),
                reference: String::new(),
                label_pdf: b"%PDF-new".to_vec(),
            }])
        });
        carrier
    }

    /// A queue that records what is enqueued.
    fn queue(log: Arc<Mutex<Vec<JobKind>>>) -> MockJobQueue {
        let mut q = MockJobQueue::new();
        q.expect_enqueue().returning(move |job| {
            log.lock().expect("lock").push(job.kind);
            Ok(JobId(1))
        });
        q
    }

    async fn shipment(store: &MemoryShipmentStore, status: ShipmentStatus, barcode: &str) -> i64 {
        let Claim::Claimed(s) = store
            .claim(33, 6, ShipmentMethod::Koiki)
            .await
            .expect("claim")
        else {
            panic!("new")
        };
        store
            .record_booking(
                s.id,
                0,
                &BookingOutcome {
                    status,
                    delivery_id: barcode.into(),
                    request: String::new(),
                    message: "first".into(),
                    label_pdf: (!barcode.is_empty()).then(|| b"%PDF-old".to_vec()),
                },
            )
            .await
            .expect("record");
        s.id
    }

    struct Fixture {
        store: Arc<MemoryShipmentStore>,
        shop: Arc<MockShop>,
        carrier: Arc<MockShippingProvider>,
        queue: Arc<MockJobQueue>,
        log: Arc<Mutex<Vec<JobKind>>>,
        inbox: Arc<MockWebhookInbox>,
        mailer: Arc<MockMailer>,
        methods: ShippingMethods,
    }

    impl Fixture {
        fn new(carrier: MockShippingProvider) -> Self {
            let log = Arc::new(Mutex::new(Vec::new()));
            Fixture {
                store: Arc::new(MemoryShipmentStore::new()),
                shop: Arc::new(shop()),
                carrier: Arc::new(carrier),
                queue: Arc::new(queue(log.clone())),
                log,
                inbox: Arc::new(MockWebhookInbox::new()),
                mailer: Arc::new(MockMailer::new()),
                methods: ShippingMethods::default(),
            }
        }
        fn jobs(&self) -> ShipmentJobs {
            ShipmentJobs {
                inbox: self.inbox.clone(),
                store: self.store.clone(),
                carrier: self.carrier.clone(),
                shop: self.shop.clone(),
                mailer: self.mailer.clone(),
                queue: self.queue.clone(),
                methods: self.methods.clone(),
                shop_host: "https://shop.example".into(),
                admins: Vec::new(),
                shop_sync: crate::service::shop_sync::ShopSync::default(),
                alerts: crate::service::alerts::Alerts::memory(),
                mail_events: Arc::new(crate::memory::MemoryMailEventStore::new()),
                mail_domain: "lazona.test".into(),
            }
        }
        /// The inbox, to set expectations on before the jobs run.
        fn inbox(&mut self) -> &mut MockWebhookInbox {
            Arc::get_mut(&mut self.inbox).expect("the inbox is not shared yet")
        }
        /// The mailer, to set expectations on before the jobs run.
        fn mailer(&mut self) -> &mut MockMailer {
            Arc::get_mut(&mut self.mailer).expect("the mailer is not shared yet")
        }
    }

    use crate::model::Claim;

    #[tokio::test]
    async fn a_refused_booking_is_booked_again_and_its_label_mailed() {
        let f = Fixture::new(carrier("NEW1"));
        let id = shipment(&f.store, ShipmentStatus::ErrorFromBody, "").await;
        f.jobs()
            .retry_shipment(id, false, None)
            .await
            .expect("retried");
        let s = f.store.get(id).await.expect("get").expect("row");
        assert_eq!(s.status, ShipmentStatus::LabelSent);
        assert_eq!(s.delivery_id, "NEW1");
        assert_eq!(
            f.store.label(id).await.expect("label").as_deref(),
            Some(&b"%PDF-new"[..])
        );
        assert_eq!(
            *f.log.lock().expect("lock"),
            vec![JobKind::SendLabelMail { shipment_id: id }]
        );
    }

    #[tokio::test]
    async fn a_tracking_change_whose_mail_fails_is_mailed_by_the_retry_once() {
        let mut carrier = no_booking();
        carrier.expect_track().returning(|_| {
            Ok(TrackingReport::Event {
                state: crate::model::TrackingState::InTransit,
                description: "En reparto".into(),
                date: Some("2026-12-07T08:00:00+0000".into()),
                notes: String::new(),
            })
        });
        let mut f = Fixture::new(carrier);
        let mut mailer = MockMailer::new();
        let mut seq = mockall::Sequence::new();
        mailer
            .expect_send()
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_| {
                Err(MailError::Unavailable {
                    reason: "421 try later".into(),
                })
            });
        mailer
            .expect_send()
            .times(1)
            .in_sequence(&mut seq)
            .withf(|m| m.body.contains("En reparto") && m.to == ["admin@example.coop"])
            .returning(|_| Ok(()));
        f.mailer = Arc::new(mailer);
        let id = shipment(&f.store, ShipmentStatus::LabelSent, "B1").await;
        let mut jobs = f.jobs();
        jobs.admins = vec!["admin@example.coop".into()];

        let err = jobs.track_one(id).await.expect_err("the mail failed");
        assert!(matches!(err, JobError::Transient { .. }), "{err:?}");
        let s = f.store.get(id).await.expect("get").expect("row");
        assert_eq!(
            s.status,
            ShipmentStatus::InProcess,
            "the change is recorded"
        );
        assert!(s.tracking_unmailed_since.is_some(), "its mail is due");

        // The job's retry: the carrier says the same, no change now, and the mail still goes.
        jobs.track_one(id).await.expect("mailed");
        let s = f.store.get(id).await.expect("get").expect("row");
        assert_eq!(s.tracking_unmailed_since, None);
        // Once: a third poll with nothing new sends nothing (the mock allows two sends).
        jobs.track_one(id).await.expect("nothing new");
    }

    #[tokio::test]
    async fn a_refused_booking_of_an_order_since_cancelled_is_booked_again_only_when_forced() {
        let mut f = Fixture::new(no_booking()); // any booking panics
        let mut shop = MockShop::new();
        shop.expect_order().returning(|_| {
            let mut order: serde_json::Value = serde_json::from_str(ORDER).expect("order");
            order["status"] = "cancelled".into();
            Ok(serde_json::from_value(order).expect("order"))
        });
        f.shop = Arc::new(shop);
        let id = shipment(&f.store, ShipmentStatus::ErrorFromBody, "").await;
        let err = f
            .jobs()
            .retry_shipment(id, false, None)
            .await
            .expect_err("refused");
        assert!(
            matches!(&err, JobError::Permanent { reason } if reason.contains("order 33 is cancelled: not booked")),
            "{err:?}"
        );
        let s = f.store.get(id).await.expect("get").expect("row");
        assert_eq!(s.status, ShipmentStatus::ErrorFromBody, "left as it was");
    }

    #[tokio::test]
    async fn a_shipment_with_a_label_needs_force() {
        let f = Fixture::new(no_booking()); // any booking panics
        let id = shipment(&f.store, ShipmentStatus::LabelSent, "OLD1").await;
        let err = f
            .jobs()
            .retry_shipment(id, false, None)
            .await
            .expect_err("refused");
        assert!(
            matches!(&err, JobError::Permanent { reason } if reason.contains("force") && reason.contains("OLD1")),
            "{err:?}"
        );
        let s = f.store.get(id).await.expect("get").expect("row");
        assert_eq!(
            (s.status, s.delivery_id.as_str()),
            (ShipmentStatus::LabelSent, "OLD1")
        );

        let f = Fixture::new(carrier("NEW2"));
        let id = shipment(&f.store, ShipmentStatus::InProcess, "OLD1").await;
        f.jobs()
            .retry_shipment(id, true, None)
            .await
            .expect("forced");
        let s = f.store.get(id).await.expect("get").expect("row");
        assert_eq!(
            (s.status, s.delivery_id.as_str()),
            (ShipmentStatus::LabelSent, "NEW2")
        );
        assert!(s.mailed_at.is_none(), "the new label is to be mailed");
    }

    #[tokio::test]
    async fn a_carrier_that_cannot_be_reached_leaves_the_shipment_as_it_was() {
        let mut carrier = no_booking();
        carrier.expect_book().returning(|_| {
            Err(ShippingError::Unavailable {
                reason: "timeout".into(),
                retry_after: None,
            })
        });
        let f = Fixture::new(carrier);
        let id = shipment(&f.store, ShipmentStatus::ErrorFromBody, "").await;
        let err = f
            .jobs()
            .retry_shipment(id, false, None)
            .await
            .expect_err("retry");
        assert!(matches!(err, JobError::Transient { .. }), "{err:?}");
        let s = f.store.get(id).await.expect("get").expect("row");
        assert_eq!(s.status, ShipmentStatus::ErrorFromBody);
        assert_eq!(s.message, "first");
        assert!(f.log.lock().expect("lock").is_empty());
    }

    #[tokio::test]
    async fn a_local_pickup_or_a_vendor_no_longer_shipped_by_koiki_is_refused() {
        let f = Fixture::new(no_booking());
        let Claim::Claimed(s) = f
            .store
            .claim(33, 7, ShipmentMethod::LocalPickup)
            .await
            .expect("claim")
        else {
            panic!("new")
        };
        let err = f
            .jobs()
            .retry_shipment(s.id, true, None)
            .await
            .expect_err("no");
        assert!(matches!(err, JobError::Permanent { .. }), "{err:?}");

        let Claim::Claimed(s) = f
            .store
            .claim(33, 9, ShipmentMethod::Koiki)
            .await
            .expect("claim")
        else {
            panic!("new")
        };
        f.store
            .transition(s.id, ShipmentStatus::Booking, ShipmentStatus::ErrorFromBody)
            .await
            .expect("transition");
        let err = f
            .jobs()
            .retry_shipment(s.id, false, None)
            .await
            .expect_err("no");
        assert!(
            matches!(&err, JobError::Permanent { reason } if reason.contains("no Koiki shipping for vendor 9")),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn a_forced_retry_keeps_the_barcode_it_replaces_with_its_label() {
        let f = Fixture::new(carrier("NEW2"));
        let id = shipment(&f.store, ShipmentStatus::LabelSent, "OLD1").await;
        f.jobs()
            .retry_shipment(id, true, None)
            .await
            .expect("forced");
        let s = f.store.get(id).await.expect("get").expect("row");
        assert_eq!((s.delivery_id.as_str(), s.booking_attempt), ("NEW2", 1));
        let past = f.store.past_bookings(id).await.expect("past");
        assert_eq!(past.len(), 1, "{past:?}");
        assert_eq!(past[0].delivery_id, "OLD1");
        assert_eq!(past[0].reason, crate::model::PastBookingReason::Superseded);
        assert_eq!(
            f.store.past_label(id, past[0].id).await.expect("label"),
            Some(b"%PDF-old".to_vec())
        );
    }

    /// A job whose attempt was taken by a later retry books nothing: at most one booking in
    /// flight per shipment.
    #[tokio::test]
    async fn a_job_whose_attempt_was_taken_books_nothing() {
        let f = Fixture::new(no_booking()); // any booking panics
        let id = shipment(&f.store, ShipmentStatus::LabelSent, "OLD1").await;
        let first = f
            .store
            .reserve_booking(
                id,
                ShipmentStatus::LabelSent,
                0,
                chrono::Utc::now() - BOOKING_LEASE,
            )
            .await
            .expect("reserve")
            .expect("taken");
        // The first job's worker died; after the lease a second retry takes the shipment.
        assert!(
            f.store
                .end_booking(id, first.booking_attempt, ShipmentStatus::LabelSent)
                .await
                .expect("end")
        );
        let second = f
            .store
            .reserve_booking(
                id,
                ShipmentStatus::LabelSent,
                first.booking_attempt,
                chrono::Utc::now(),
            )
            .await
            .expect("reserve")
            .expect("taken");
        assert_eq!(second.booking_attempt, 2);
        let stale = HeldBooking {
            attempt: first.booking_attempt,
            previous: ShipmentStatus::LabelSent,
        };
        f.jobs()
            .retry_shipment(id, true, Some(stale))
            .await
            .expect("a no-op");
        assert!(f.log.lock().expect("lock").is_empty());
    }

    /// A booking that comes back after another retry took the shipment is kept beside it, with
    /// its barcode and label: never dropped.
    #[tokio::test]
    async fn a_booking_that_comes_back_late_is_kept_aside_with_its_label() {
        let f = Fixture::new(carrier("LATE1"));
        let id = shipment(&f.store, ShipmentStatus::ErrorFromBody, "").await;
        let held = f
            .store
            .reserve_booking(id, ShipmentStatus::ErrorFromBody, 0, chrono::Utc::now())
            .await
            .expect("reserve")
            .expect("taken");
        assert!(
            f.store
                .start_booking(id, held.booking_attempt, ShipmentStatus::ErrorFromBody)
                .await
                .expect("start")
        );
        // Meanwhile (the lease ran out) another retry took the shipment and booked it.
        let later = f
            .store
            .reserve_booking(
                id,
                ShipmentStatus::Booking,
                held.booking_attempt,
                chrono::Utc::now() + chrono::TimeDelta::seconds(1),
            )
            .await
            .expect("reserve")
            .expect("taken");
        let other = BookingOutcome {
            status: ShipmentStatus::LabelSent,
            delivery_id: "OTHER".into(),
            request: String::new(),
            message: String::new(),
            label_pdf: Some(b"%PDF-other".to_vec()),
        };
        f.store
            .record_booking(id, later.booking_attempt, &other)
            .await
            .expect("recorded");
        let late = BookingOutcome {
            delivery_id: "LATE1".into(),
            label_pdf: Some(b"%PDF-late".to_vec()),
            ..other.clone()
        };
        let BookingRecorded::Aside(current) = f
            .store
            .record_booking(id, held.booking_attempt, &late)
            .await
            .expect("recorded")
        else {
            panic!("kept aside")
        };
        assert_eq!(current.delivery_id, "OTHER");
        let past = f.store.past_bookings(id).await.expect("past");
        assert_eq!(past.len(), 1, "{past:?}");
        assert_eq!(
            (past[0].delivery_id.as_str(), past[0].reason),
            ("LATE1", crate::model::PastBookingReason::Late)
        );
        assert_eq!(
            f.store.past_label(id, past[0].id).await.expect("label"),
            Some(b"%PDF-late".to_vec())
        );
    }

    #[tokio::test]
    async fn a_held_retry_put_off_by_the_carrier_resumes_with_its_attempt() {
        let mut carrier = no_booking();
        let mut calls = 0;
        carrier.expect_book().returning(move |_| {
            calls += 1;
            if calls == 1 {
                Err(ShippingError::Unavailable {
                    reason: "timeout".into(),
                    retry_after: None,
                })
            } else {
                Ok(vec![ParcelBooking::Booked {
                    message: "OK".into(),
                    barcode: "NEW3".into(),
                    reference: String::new(),
                    label_pdf: b"%PDF-new".to_vec(),
                }])
            }
        });
        let f = Fixture::new(carrier);
        let id = shipment(&f.store, ShipmentStatus::ErrorFromBody, "").await;
        let taken = f
            .store
            .reserve_booking(id, ShipmentStatus::ErrorFromBody, 0, chrono::Utc::now())
            .await
            .expect("reserve")
            .expect("taken");
        let held = HeldBooking {
            attempt: taken.booking_attempt,
            previous: ShipmentStatus::ErrorFromBody,
        };
        let err = f
            .jobs()
            .retry_shipment(id, false, Some(held))
            .await
            .expect_err("put off");
        assert!(matches!(err, JobError::Transient { .. }), "{err:?}");
        let s = f.store.get(id).await.expect("get").expect("row");
        assert_eq!(s.status, ShipmentStatus::ErrorFromBody, "given back");
        f.jobs()
            .retry_shipment(id, false, Some(held))
            .await
            .expect("the job's retry books");
        let s = f.store.get(id).await.expect("get").expect("row");
        assert_eq!(
            (s.status, s.delivery_id.as_str()),
            (ShipmentStatus::LabelSent, "NEW3")
        );
    }

    fn order_webhook() -> Webhook {
        use crate::model::{NewWebhook, Resource, WebhookId};
        Webhook {
            id: WebhookId(1),
            data: NewWebhook {
                resource: Resource::Order,
                topic: Some("order.created".into()),
                event: None,
                delivery_id: None,
                wc_webhook_id: None,
                source: None,
                subject_id: Some(33),
                subject_modified: None,
                headers: Vec::new(),
                body: bytes::Bytes::from_static(ORDER.as_bytes()),
                received_at: chrono::Utc::now(),
                status: WebhookStatus::Queued,
                error: None,
            },
            last_error: None,
            processed_at: None,
            pruned: None,
        }
    }

    fn processed(inbox: &mut MockWebhookInbox, times: usize) {
        inbox
            .expect_transition()
            .withf(|_, from, to, _| {
                (*from, *to) == (WebhookStatus::Queued, WebhookStatus::Processed)
            })
            .times(times)
            .returning(|_, _, _, _| Ok(true));
    }

    #[tokio::test]
    async fn an_order_is_booked_and_its_label_mailed_in_the_same_job_once() {
        let mut once = no_booking();
        once.expect_book().times(1).returning(|_| {
            Ok(vec![ParcelBooking::Booked {
                message: "OK".into(),
                barcode: "NEW1".into(),
                reference: String::new(),
                label_pdf: b"%PDF-new".to_vec(),
            }])
        });
        let mut f = Fixture::new(once);
        processed(f.inbox(), 2);
        let sent = Arc::new(Mutex::new(Vec::new()));
        let log = sent.clone();
        f.mailer().expect_send().returning(move |e| {
            log.lock().expect("lock").push(e.clone());
            Ok(())
        });
        f.jobs()
            .process_order(&order_webhook())
            .await
            .expect("processed");
        // The same delivery again: nothing booked, nothing mailed.
        f.jobs()
            .process_order(&order_webhook())
            .await
            .expect("repeat");

        let all = f.store.all();
        assert_eq!(all.len(), 1);
        assert_eq!(
            (all[0].status, all[0].delivery_id.as_str()),
            (ShipmentStatus::LabelSent, "NEW1")
        );
        assert!(all[0].mailed_at.is_some(), "marked mailed");
        let sent = sent.lock().expect("lock");
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].to, vec!["vendor6@example.coop".to_owned()]);
        assert_eq!(sent[0].attachments[0].filename, "NEW1.pdf");
        assert_eq!(sent[0].attachments[0].content, b"%PDF-new");
        assert!(f.log.lock().expect("lock").is_empty(), "no mail job");
        // The mail's own Message-ID, recorded on the shipment, and its shipment in the
        // relay's metadata.
        let message_id = sent[0].message_id.clone().expect("a Message-ID");
        assert_eq!(
            crate::model::mail::parse_label_message_id(&message_id).map(|(s, _)| s),
            Some(all[0].id)
        );
        assert!(message_id.ends_with("@lazona.test>"), "{message_id}");
        assert_eq!(all[0].mail_message_id.as_deref(), Some(message_id.as_str()));
        assert_eq!(all[0].mail_state, Some(MailState::Sent));
        let metadata = &sent[0].headers[0];
        assert_eq!(metadata.0, "X-MC-Metadata");
        let metadata: serde_json::Value = serde_json::from_str(&metadata.1).expect("JSON");
        assert_eq!(metadata["shipment_id"], all[0].id);
    }

    #[tokio::test]
    async fn a_label_mailed_again_goes_to_the_address_given_and_resets_the_mail_state() {
        let mut f = Fixture::new(no_booking());
        let id = shipment(&f.store, ShipmentStatus::LabelSent, "B1").await;
        let sent = Arc::new(Mutex::new(Vec::new()));
        let log = sent.clone();
        f.mailer().expect_send().times(2).returning(move |e| {
            log.lock().expect("lock").push(e.clone());
            Ok(())
        });
        let events = Arc::new(crate::memory::MemoryMailEventStore::new());
        let mut jobs = f.jobs();
        jobs.mail_events = events.clone();
        jobs.send_label_mail(id).await.expect("mailed");
        let first = f.store.get(id).await.expect("get").expect("there");
        // The relay reports a bounce.
        f.store
            .update_mail(
                id,
                &MailUpdate {
                    seen_message_id: first.mail_message_id.clone(),
                    seen_state: first.mail_state,
                    message_id: first.mail_message_id.clone(),
                    state: Some(MailState::Bounced),
                    at: None,
                    mailed: false,
                },
            )
            .await
            .expect("update")
            .expect("as seen");
        // Mailed again, at least a millisecond later.
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        jobs.resend_label(id, Some("fixed@example.coop"))
            .await
            .expect("mailed again");
        let sent = sent.lock().expect("lock").clone();
        assert_eq!(sent[0].to, vec!["vendor6@example.coop".to_owned()]);
        assert_eq!(sent[1].to, vec!["fixed@example.coop".to_owned()]);
        assert_eq!(sent[1].attachments[0].content, b"%PDF-old");
        assert_ne!(sent[0].message_id, sent[1].message_id);
        let now = f.store.get(id).await.expect("get").expect("there");
        assert_eq!(now.mail_state, Some(MailState::Sent), "sent again");
        assert_eq!(now.mail_message_id, sent[1].message_id);
        let recorded = events.all();
        assert_eq!(recorded.len(), 1);
        assert_eq!(
            (
                recorded[0].data.provider.as_str(),
                recorded[0].data.event.as_str(),
                recorded[0].data.email.as_deref(),
                recorded[0].data.shipment_id
            ),
            ("lazona", "resent", Some("fixed@example.coop"), Some(id))
        );
    }

    #[tokio::test]
    async fn a_label_mail_that_cannot_be_sent_now_becomes_a_job_and_the_booking_stands() {
        let mut f = Fixture::new(carrier("NEW1"));
        processed(f.inbox(), 1);
        f.mailer().expect_send().times(1).returning(|_| {
            Err(MailError::Unavailable {
                reason: "connection refused".into(),
            })
        });
        f.jobs()
            .process_order(&order_webhook())
            .await
            .expect("processed");
        let all = f.store.all();
        assert_eq!(all[0].status, ShipmentStatus::LabelSent);
        assert!(all[0].mailed_at.is_none(), "not mailed");
        assert_eq!(
            *f.log.lock().expect("lock"),
            vec![JobKind::SendLabelMail {
                shipment_id: all[0].id
            }]
        );
    }

    #[tokio::test]
    async fn a_shop_that_cannot_be_reached_leaves_no_claim_behind() {
        let mut f = Fixture::new(no_booking()); // any booking panics
        let mut shop = MockShop::new();
        shop.expect_vendor().returning(|_| {
            Err(ShopError::Unavailable {
                reason: "timeout".into(),
                retry_after: None,
            })
        });
        f.shop = Arc::new(shop);
        let err = f
            .jobs()
            .process_order(&order_webhook())
            .await
            .expect_err("retry");
        assert!(matches!(err, JobError::Transient { .. }), "{err:?}");
        assert!(f.store.all().is_empty(), "the claim is released");
    }
}
