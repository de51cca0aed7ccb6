//! The ports decorated: third-party calls measured, the shipment store's writes and the shop's
//! role changes recorded as events.

use super::EventRecorder;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::error::{
    Classified, CrmError, MailError, ShippingError, ShopError, StoreError, UnshippableParcel,
};
use domain::model::shipment::VendorProfile;
use domain::model::{
    BookingOutcome, BookingRecorded, Claim, EventKind, MailUpdate, NewEvent, Order, OrderNote,
    OrderPage, OrderUpdate, Parcel, ParcelBooking, PastBooking, ShipmentFilter, ShipmentMethod,
    ShipmentRecord, ShipmentStatus, ShopWebhook, TrackingReport,
};
use domain::ports::{Crm, Email, Mailer, ShipmentStore, ShippingProvider, Shop, ShopUser};
use domain::service::customers::CustomerJobs;
use domain::service::shipment_jobs::ShipmentJobs;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

/// How a port error is labelled in `lazona_external_call_errors_total`.
/// Runs a third-party call, timing it and counting its errors by class.
pub(super) async fn external<T, E: Classified>(
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

pub(super) struct ObservedCarrier(Arc<dyn ShippingProvider>);

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

pub(super) struct ObservedCrm(Arc<dyn Crm>);

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

pub(super) struct ObservedMailer(Arc<dyn Mailer>);

#[async_trait]
impl Mailer for ObservedMailer {
    async fn send(&self, email: &Email) -> Result<(), MailError> {
        external("smtp", "send", self.0.send(email)).await
    }
}

pub(super) struct ObservedShop {
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

    async fn orders_modified_after(
        &self,
        after: DateTime<Utc>,
        page: u32,
        per_page: u32,
    ) -> Result<OrderPage, ShopError> {
        external(
            "shop",
            "orders_modified_after",
            self.inner.orders_modified_after(after, page, per_page),
        )
        .await
    }

    async fn webhooks(&self) -> Result<Vec<ShopWebhook>, ShopError> {
        external("shop", "webhooks", self.inner.webhooks()).await
    }

    async fn set_webhook_status(&self, id: i64, status: &str) -> Result<ShopWebhook, ShopError> {
        external(
            "shop",
            "set_webhook_status",
            self.inner.set_webhook_status(id, status),
        )
        .await
    }

    async fn order_notes(&self, order_id: i64) -> Result<Vec<OrderNote>, ShopError> {
        external("shop", "order_notes", self.inner.order_notes(order_id)).await
    }

    async fn add_order_note(
        &self,
        order_id: i64,
        note: &str,
        customer_note: bool,
    ) -> Result<OrderNote, ShopError> {
        external(
            "shop",
            "add_order_note",
            self.inner.add_order_note(order_id, note, customer_note),
        )
        .await
    }

    async fn update_order(&self, order_id: i64, update: &OrderUpdate) -> Result<(), ShopError> {
        external(
            "shop",
            "update_order",
            self.inner.update_order(order_id, update),
        )
        .await
    }
}

/// The shipment store, whose writes are recorded as the shipments' events.
pub(super) struct ObservedStore {
    pub(super) inner: Arc<dyn ShipmentStore>,
    pub(super) events: EventRecorder,
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

    async fn mark_withdrawn(
        &self,
        order_id: i64,
        status: &str,
    ) -> Result<Vec<ShipmentRecord>, StoreError> {
        self.inner.mark_withdrawn(order_id, status).await
    }

    async fn mark_noted(&self, id: i64, barcode: &str) -> Result<ShipmentRecord, StoreError> {
        self.inner.mark_noted(id, barcode).await
    }

    async fn mark_tracking_mailed(
        &self,
        id: i64,
        since: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.inner.mark_tracking_mailed(id, since).await
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

    async fn update_mail(
        &self,
        id: i64,
        update: &MailUpdate,
    ) -> Result<Option<ShipmentRecord>, StoreError> {
        let s = self.inner.update_mail(id, update).await?;
        if let Some(s) = &s
            && update.mailed
        {
            let again = if update.seen_message_id.is_some() {
                " again"
            } else {
                ""
            };
            self.record(
                EventKind::LabelMailed,
                s,
                format!(
                    "order {}: label mailed{again} to vendor {}",
                    s.order_id, s.vendor_id
                ),
            );
        }
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

    async fn prune_labels(
        &self,
        delivered_before: Option<DateTime<Utc>>,
        booked_before: Option<DateTime<Utc>>,
        limit: usize,
    ) -> Result<u64, StoreError> {
        self.inner
            .prune_labels(delivered_before, booked_before, limit)
            .await
    }

    async fn clear_labels(
        &self,
        ids: &[i64],
        why: domain::model::PruneReason,
    ) -> Result<u64, StoreError> {
        self.inner.clear_labels(ids, why).await
    }
}
