//! The connector and the shop, in both directions: which order statuses are booked, what an order
//! withdrawn after its booking comes to, and what is written back to the order (a tracking note
//! the customer sees, the shipments in the order's meta, `completed` once delivered).
//!
//! Each write-back is a job of its own ([`crate::model::JobKind::NoteShipment`],
//! [`crate::model::JobKind::SyncOrderMeta`], [`crate::model::JobKind::CompleteOrder`]), enqueued
//! after the booking is recorded: a shop that refuses or cannot be reached never undoes or delays
//! a booking, and a retried job never writes twice (the note is recorded per barcode, and looked
//! for in the order's notes before it is written; the meta and the status are set, not added).

use super::mails::order_url;
use super::shipment_jobs::ShipmentJobs;
use crate::error::{Classified as _, JobError, ShopError, error_chain};
use crate::model::alert::subject;
use crate::model::{
    AlertKind, NewAlert, Order, OrderUpdate, ShipmentMethod, ShipmentRecord, ShipmentStatus,
};
use crate::ports::Email;
use serde_json::json;

/// The order statuses in which the connector books nothing, and after a booking tells the
/// admins to cancel it by hand.
pub const WITHDRAWN_STATUSES: [&str; 3] = ["cancelled", "refunded", "failed"];

/// The key of the order meta entry that lists the order's shipments.
pub const SHIPMENTS_META_KEY: &str = "_lazona_shipments";

/// Which order statuses are booked (`shipping.book_statuses`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookStatuses(Vec<String>);

impl Default for BookStatuses {
    /// `processing` and `completed`: the statuses WooCommerce gives a paid order.
    fn default() -> Self {
        BookStatuses(vec!["processing".into(), "completed".into()])
    }
}

/// What an order's status says to do with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusDecision {
    /// Book it.
    Book,
    /// Not yet (`pending`, `on-hold`, ...): stored and processed, nothing booked; a later
    /// delivery of the order in a bookable status books it.
    Wait,
    /// Cancelled, refunded or failed: nothing booked; the admins are told once about any
    /// booking made before.
    Withdrawn,
}

impl BookStatuses {
    /// The statuses listed (trimmed, lowercase); `any` books every order, as the original did.
    pub fn new<I: IntoIterator<Item = S>, S: AsRef<str>>(statuses: I) -> Self {
        BookStatuses(
            statuses
                .into_iter()
                .map(|s| s.as_ref().trim().to_ascii_lowercase())
                .filter(|s| !s.is_empty())
                .collect(),
        )
    }

    /// Every order is booked, whatever its status.
    pub fn any() -> Self {
        BookStatuses(vec!["any".into()])
    }

    /// The statuses, as configured.
    pub fn statuses(&self) -> &[String] {
        &self.0
    }

    /// What to do with an order in `status`. An order without a status is booked: WooCommerce
    /// always sends one, and the original's test payloads, which have none, were booked.
    pub fn decide(&self, status: &str) -> StatusDecision {
        let status = status.trim();
        if status.is_empty() || self.0.iter().any(|s| s == "any" || s == status) {
            StatusDecision::Book
        } else if WITHDRAWN_STATUSES.contains(&status) {
            StatusDecision::Withdrawn
        } else {
            StatusDecision::Wait
        }
    }
}

/// What the connector writes back to the shop (`shop.*` settings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShopSync {
    /// The order statuses booked.
    pub book_statuses: BookStatuses,
    /// Write the tracking note and the shipments meta on the order (`shop.write_back`).
    pub write_back: bool,
    /// The carrier's tracking link for a barcode: `{barcode}` is replaced
    /// (`koiki.tracking_url`); empty: the note gives the barcode only.
    pub tracking_url: String,
    /// Set the order `completed` once every carrier shipment is delivered
    /// (`shop.complete_on_delivery`).
    pub complete_on_delivery: bool,
}

impl Default for ShopSync {
    /// Books `processing` and `completed` orders; writes nothing back.
    fn default() -> Self {
        ShopSync {
            book_statuses: BookStatuses::default(),
            write_back: false,
            tracking_url: String::new(),
            complete_on_delivery: false,
        }
    }
}

impl ShopSync {
    /// The tracking link of `barcode`, if one is configured.
    pub fn tracking_link(&self, barcode: &str) -> Option<String> {
        (!self.tracking_url.trim().is_empty())
            .then(|| self.tracking_url.trim().replace("{barcode}", barcode))
    }
}

/// The note written on the order for a booked shipment, seen by the customer (in Catalan, as the
/// shop). It names the barcode, which is how a retry finds it already written.
#[must_use]
pub fn tracking_note(
    store_name: &str,
    vendor_id: i64,
    barcode: &str,
    link: Option<&str>,
) -> String {
    let store = if store_name.trim().is_empty() {
        format!("la botiga {vendor_id}")
    } else {
        store_name.trim().to_owned()
    };
    let mut note =
        format!("El teu paquet de {store} s'envia amb Koiki. Codi de seguiment: {barcode}.");
    if let Some(link) = link {
        note.push_str(&format!(" Segueix-lo a: {link}"));
    }
    note
}

/// The mail to the admins about an order withdrawn after shipments of it were booked.
#[must_use]
pub fn withdrawn_order_mail(
    shop_host: &str,
    order_id: i64,
    status: &str,
    admins: &[String],
    shipments: &[ShipmentRecord],
) -> Email {
    let mut body = format!(
        "\nHola, la comanda {} ha passat a l'estat «{status}» després de reservar-ne enviaments \
         amb Koiki.\n\nCal cancel·lar a mà a Koiki aquests enviaments (el connector no ho fa):\n\n",
        order_url(shop_host, order_id)
    );
    for s in shipments {
        body.push_str(&format!(
            "- Enviament {} (venedor {}): codi de barres {}, estat {}\n",
            s.id, s.vendor_id, s.delivery_id, s.status
        ));
    }
    body.push('\n');
    Email {
        to: admins.to_vec(),
        subject: format!("Comanda {order_id} {status}: cal cancel·lar enviaments Koiki"),
        body,
        attachments: Vec::new(),
        ..Email::default()
    }
}

fn write_back_error(order_id: i64, what: &str, e: &ShopError) -> JobError {
    let reason = match e {
        ShopError::Rejected { .. } | ShopError::NotFound { .. } => format!(
            "order {order_id}: the shop refused {what} (check that the shop user may edit \
             orders): {}",
            error_chain(e)
        ),
        _ => format!("order {order_id}: {what}: {}", error_chain(e)),
    };
    JobError::classified(e.transience(), reason)
}

impl ShipmentJobs {
    /// An order webhook whose order is cancelled, refunded or failed: books nothing; when
    /// shipments of it were booked and not reported yet, raises the alert that tells the admins
    /// which bookings to cancel by hand (once per order: a repeat only counts on it, and the
    /// shipments are marked after it). The summary the
    /// webhook is settled with.
    pub(crate) async fn withdrawn(&self, order: &Order) -> Result<String, JobError> {
        let status = order.status.trim();
        let unreported: Vec<ShipmentRecord> = self
            .store
            .of_order(order.id)
            .await?
            .into_iter()
            .filter(|s| !s.delivery_id.is_empty() && s.order_withdrawn.is_none())
            .collect();
        if unreported.is_empty() {
            return Ok(format!("order {} is {status}: not booked", order.id));
        }
        tracing::warn!(
            order_id = order.id,
            %status,
            shipments = unreported.len(),
            "order {} is {status} after it was booked: the admins are told to cancel it with Koiki",
            order.id
        );
        // The alert first: raising it again after a crash before the mark only counts on it.
        let email =
            withdrawn_order_mail(&self.shop_host, order.id, status, &self.admins, &unreported);
        self.alerts
            .raise(NewAlert {
                kind: AlertKind::OrderWithdrawn,
                subject: subject::order(order.id),
                summary: email.subject,
                detail: email.body,
            })
            .await?;
        let marked = self.store.mark_withdrawn(order.id, status).await?;
        Ok(format!(
            "order {} is {status} after {} shipment(s) were booked: not booked again, the admins \
             were told to cancel the booking(s) with Koiki by hand",
            order.id,
            marked.len().max(unreported.len())
        ))
    }

    /// Enqueues the write-backs of shipments that hold a booking whose note is not written yet
    /// (booked now, or found so by a repeat), and the order's meta when any was booked now.
    pub(crate) async fn enqueue_write_backs(
        &self,
        order_id: i64,
        booked_now: bool,
        shipments: &[ShipmentRecord],
    ) -> Result<(), JobError> {
        if !self.shop_sync.write_back {
            return Ok(());
        }
        for s in shipments {
            if needs_note(s) {
                self.enqueue(crate::model::JobKind::NoteShipment { shipment_id: s.id })
                    .await?;
            }
        }
        if booked_now {
            self.enqueue(crate::model::JobKind::SyncOrderMeta { order_id })
                .await?;
        }
        Ok(())
    }

    /// Writes a booked shipment's tracking note on its order, seen by the customer, unless it
    /// was written for its barcode already (recorded on the shipment, or found among the
    /// order's notes after a crash between the write and the record).
    ///
    /// # Errors
    /// [`JobError::Permanent`] when the shop refuses (401, 403, 404), with the reason;
    /// [`JobError::Transient`] when it cannot be reached.
    #[tracing::instrument(skip_all, fields(shipment_id))]
    pub async fn note_shipment(&self, shipment_id: i64) -> Result<(), JobError> {
        let s = self.shipment(shipment_id).await?;
        if !needs_note(&s) {
            return Ok(());
        }
        let barcode = s.delivery_id.clone();
        let notes = self
            .shop
            .order_notes(s.order_id)
            .await
            .map_err(|e| write_back_error(s.order_id, "reading its notes", &e))?;
        if !notes.iter().any(|n| n.note.contains(&barcode)) {
            let store_name = match self.shop.vendor(s.vendor_id).await {
                Ok(profile) => profile.store_name,
                Err(e @ ShopError::Unavailable { .. }) => {
                    return Err(write_back_error(s.order_id, "reading the vendor", &e));
                }
                // A vendor gone from the shop still shipped: the note names its id.
                Err(_) => String::new(),
            };
            let link = self.shop_sync.tracking_link(&barcode);
            let note = tracking_note(&store_name, s.vendor_id, &barcode, link.as_deref());
            self.shop
                .add_order_note(s.order_id, &note, true)
                .await
                .map_err(|e| write_back_error(s.order_id, "the tracking note", &e))?;
            tracing::info!(
                order_id = s.order_id,
                shipment_id,
                "tracking note written on order {}",
                s.order_id
            );
        }
        self.store.mark_noted(shipment_id, &barcode).await?;
        Ok(())
    }

    /// Sets the order's `_lazona_shipments` meta to its carrier shipments as they are now
    /// (vendor, barcode, status): idempotent, the latest state wins.
    ///
    /// # Errors
    /// As for [`ShipmentJobs::note_shipment`].
    #[tracing::instrument(skip_all, fields(order_id))]
    pub async fn sync_order_meta(&self, order_id: i64) -> Result<(), JobError> {
        let shipments = self.store.of_order(order_id).await?;
        let listed: Vec<serde_json::Value> = shipments
            .iter()
            .filter(|s| s.method == ShipmentMethod::Koiki && !s.delivery_id.is_empty())
            .map(|s| {
                json!({
                    "vendor_id": s.vendor_id,
                    "barcode": s.delivery_id,
                    "status": s.status.as_str(),
                })
            })
            .collect();
        if listed.is_empty() {
            return Ok(());
        }
        let update = OrderUpdate {
            status: None,
            meta_data: vec![(
                SHIPMENTS_META_KEY.to_owned(),
                serde_json::Value::Array(listed),
            )],
        };
        self.shop
            .update_order(order_id, &update)
            .await
            .map_err(|e| write_back_error(order_id, "the shipments meta", &e))
    }

    /// Sets the order `completed` when every carrier shipment of it is delivered and
    /// `shop.complete_on_delivery` is on; otherwise does nothing.
    ///
    /// # Errors
    /// As for [`ShipmentJobs::note_shipment`].
    #[tracing::instrument(skip_all, fields(order_id))]
    pub async fn complete_order(&self, order_id: i64) -> Result<(), JobError> {
        if !self.shop_sync.complete_on_delivery {
            return Ok(());
        }
        let shipments = self.store.of_order(order_id).await?;
        if !all_delivered(&shipments) {
            return Ok(());
        }
        let update = OrderUpdate {
            status: Some("completed".into()),
            meta_data: Vec::new(),
        };
        self.shop
            .update_order(order_id, &update)
            .await
            .map_err(|e| write_back_error(order_id, "completing the order", &e))?;
        tracing::info!(
            order_id,
            "order {order_id} delivered: set completed in the shop"
        );
        Ok(())
    }

    /// After a tracking change of `s`: the order's meta again, and its completion when `s` was
    /// delivered.
    pub(crate) async fn enqueue_tracking_write_backs(
        &self,
        s: &ShipmentRecord,
    ) -> Result<(), JobError> {
        if !self.shop_sync.write_back {
            return Ok(());
        }
        self.enqueue(crate::model::JobKind::SyncOrderMeta {
            order_id: s.order_id,
        })
        .await?;
        if self.shop_sync.complete_on_delivery && s.status == ShipmentStatus::Delivered {
            self.enqueue(crate::model::JobKind::CompleteOrder {
                order_id: s.order_id,
            })
            .await?;
        }
        Ok(())
    }
}

/// A shipment with a booking whose note is not written for its barcode.
pub(crate) fn needs_note(s: &ShipmentRecord) -> bool {
    s.method == ShipmentMethod::Koiki
        && !s.delivery_id.is_empty()
        && s.order_withdrawn.is_none()
        && s.noted_barcode.as_deref() != Some(s.delivery_id.as_str())
}

/// Whether the order has carrier shipments and all of them are delivered.
fn all_delivered(shipments: &[ShipmentRecord]) -> bool {
    let mut koiki = shipments
        .iter()
        .filter(|s| s.method == ShipmentMethod::Koiki)
        .peekable();
    koiki.peek().is_some() && koiki.all(|s| s.status == ShipmentStatus::Delivered)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{MemoryMailer, MemoryShipmentStore, MemoryShop};
    use crate::model::{BookingOutcome, Claim, OrderNote};
    use crate::ports::{
        MockJobQueue, MockShippingProvider, MockWebhookInbox, ShipmentStore as _, Shop as _,
    };
    use crate::service::shipping::ShippingMethods;
    use std::sync::Arc;

    /// Shipment jobs over memory adapters, with a shipment of order 33 (vendor 6) booked with
    /// barcode `B33`; the carrier, inbox and queue must not be used.
    async fn booked() -> (
        ShipmentJobs,
        Arc<MemoryShipmentStore>,
        Arc<MemoryShop>,
        Arc<MemoryMailer>,
        i64,
    ) {
        let store = Arc::new(MemoryShipmentStore::new());
        let Claim::Claimed(s) = store
            .claim(33, 6, ShipmentMethod::Koiki)
            .await
            .expect("claim")
        else {
            panic!("new shipment");
        };
        store
            .record_booking(
                s.id,
                0,
                &BookingOutcome {
                    status: ShipmentStatus::LabelSent,
                    delivery_id: "B33".into(),
                    request: String::new(),
                    message: String::new(),
                    label_pdf: Some(b"%PDF".to_vec()),
                },
            )
            .await
            .expect("booked");
        let shop = Arc::new(MemoryShop::new());
        let mailer = Arc::new(MemoryMailer::new());
        let jobs = ShipmentJobs {
            inbox: Arc::new(MockWebhookInbox::new()),
            store: store.clone(),
            carrier: Arc::new(MockShippingProvider::new()),
            shop: shop.clone(),
            mailer: mailer.clone(),
            queue: Arc::new(MockJobQueue::new()),
            methods: ShippingMethods::default(),
            shop_host: "https://shop.example".into(),
            admins: vec!["admin@example.coop".into()],
            shop_sync: ShopSync {
                write_back: true,
                ..ShopSync::default()
            },
            alerts: crate::service::alerts::Alerts::memory(),
            mail_events: Arc::new(crate::memory::MemoryMailEventStore::new()),
            mail_domain: "lazona.test".into(),
        };
        (jobs, store, shop, mailer, s.id)
    }

    fn order(status: &str) -> Order {
        serde_json::from_value(serde_json::json!({"id": 33, "status": status})).expect("order")
    }

    #[tokio::test]
    async fn a_withdrawn_order_tells_the_admins_once_and_records_it() {
        let (jobs, store, _, mailer, id) = booked().await;
        let summary = jobs.withdrawn(&order("cancelled")).await.expect("handled");
        assert!(summary.contains("not booked again"), "{summary}");
        let alerts = jobs
            .alerts
            .store()
            .list(&crate::model::AlertFilter::default())
            .await
            .expect("alerts");
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert_eq!(alerts[0].kind, AlertKind::OrderWithdrawn);
        assert_eq!(alerts[0].subject, "order:33");
        assert!(
            alerts[0].detail.contains("codi de barres B33"),
            "{}",
            alerts[0].detail
        );
        assert!(mailer.sent().is_empty(), "the alert's delivery mails it");
        assert_eq!(
            store
                .get(id)
                .await
                .expect("read")
                .expect("there")
                .order_withdrawn
                .as_deref(),
            Some("cancelled")
        );
        // Refunded later: nothing more to say.
        let summary = jobs.withdrawn(&order("refunded")).await.expect("handled");
        assert_eq!(summary, "order 33 is refunded: not booked");
        let alerts = jobs
            .alerts
            .store()
            .list(&crate::model::AlertFilter::default())
            .await
            .expect("alerts");
        assert_eq!((alerts.len(), alerts[0].count), (1, 1));
    }

    #[tokio::test]
    async fn the_note_is_written_once_and_not_again_after_a_crash_before_it_was_recorded() {
        let (jobs, _, shop, _, id) = booked().await;
        jobs.note_shipment(id).await.expect("noted");
        jobs.note_shipment(id).await.expect("a repeat");
        let notes: Vec<OrderNote> = shop.notes(33);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].customer_note);
        assert!(notes[0].note.contains("B33"));

        // A note written but not recorded (the worker died in between): found, not written again.
        let (jobs, store2, shop2, _, id2) = booked().await;
        shop2
            .add_order_note(33, "El teu paquet ... Codi de seguiment: B33.", true)
            .await
            .expect("note");
        jobs.note_shipment(id2).await.expect("noted");
        assert_eq!(shop2.notes(33).len(), 1);
        assert_eq!(
            store2
                .get(id2)
                .await
                .expect("read")
                .expect("there")
                .noted_barcode
                .as_deref(),
            Some("B33")
        );
    }

    #[tokio::test]
    async fn the_meta_lists_the_shipments_and_completion_waits_for_every_delivery() {
        let (mut jobs, store, shop, _, id) = booked().await;
        jobs.sync_order_meta(33).await.expect("meta");
        let updates = shop.updates();
        assert_eq!(updates.len(), 1);
        assert_eq!(updates[0].1.status, None);
        assert_eq!(
            updates[0].1.meta_data,
            [(
                SHIPMENTS_META_KEY.to_owned(),
                serde_json::json!([{"vendor_id": 6, "barcode": "B33", "status": "LABEL_SENT"}])
            )]
        );
        jobs.shop_sync.complete_on_delivery = true;
        jobs.complete_order(33).await.expect("not yet");
        assert_eq!(shop.updates().len(), 1, "not delivered yet: not completed");
        store
            .record_tracking(id, ShipmentStatus::Delivered, "", "", None)
            .await
            .expect("tracked");
        jobs.complete_order(33).await.expect("completed");
        assert_eq!(shop.updates()[1].1.status.as_deref(), Some("completed"));
    }

    #[test]
    fn the_default_books_paid_orders_only() {
        let p = BookStatuses::default();
        assert_eq!(p.decide("processing"), StatusDecision::Book);
        assert_eq!(p.decide("completed"), StatusDecision::Book);
        assert_eq!(p.decide("pending"), StatusDecision::Wait);
        assert_eq!(p.decide("on-hold"), StatusDecision::Wait);
        assert_eq!(p.decide("cancelled"), StatusDecision::Withdrawn);
        assert_eq!(p.decide("refunded"), StatusDecision::Withdrawn);
        assert_eq!(p.decide("failed"), StatusDecision::Withdrawn);
        // No status at all (the original's test payloads): booked, as before.
        assert_eq!(p.decide(""), StatusDecision::Book);
    }

    #[test]
    fn any_books_every_status_as_the_original_did() {
        let p = BookStatuses::new(["any"]);
        for status in ["pending", "on-hold", "cancelled", "processing"] {
            assert_eq!(p.decide(status), StatusDecision::Book, "{status}");
        }
        assert_eq!(BookStatuses::any(), p);
    }

    #[test]
    fn configured_statuses_are_trimmed_and_lowercased() {
        let p = BookStatuses::new([" Processing", "on-hold ", ""]);
        assert_eq!(p.statuses(), ["processing", "on-hold"]);
        assert_eq!(p.decide("on-hold"), StatusDecision::Book);
        assert_eq!(p.decide("completed"), StatusDecision::Wait);
    }

    #[test]
    fn the_note_names_the_store_the_barcode_and_the_link() {
        let sync = ShopSync {
            tracking_url: "https://track.example/{barcode}".into(),
            ..ShopSync::default()
        };
        let link = sync.tracking_link("B123");
        assert_eq!(
            tracking_note("Forn Sant Pere", 6, "B123", link.as_deref()),
            "El teu paquet de Forn Sant Pere s'envia amb Koiki. Codi de seguiment: B123. \
             Segueix-lo a: https://track.example/B123"
        );
        assert_eq!(
            tracking_note(" ", 6, "B123", None),
            "El teu paquet de la botiga 6 s'envia amb Koiki. Codi de seguiment: B123."
        );
    }
}
