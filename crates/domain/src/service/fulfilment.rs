//! Fulfilling an order: local-pickup vendors are recorded as delivered, the carrier's vendors are
//! booked in one call (one parcel each) and each answer is recorded on the shipment of the vendor
//! it was requested for, before anything is mailed.
//!
//! Idempotency: every shipment is first *claimed* in the store, unique per (order, vendor), before
//! the shop or the carrier is asked anything. A repeated delivery, an `order.updated`, a replay or
//! a second worker finds the claim and books nothing. Claims are released when the shop or the
//! carrier could not be reached, so the job's retry can book them. The carrier (Koiki) may take no
//! idempotency key, so a booking that may have happened is never sent again on its own: one sent without an answer
//! ([`crate::error::ShippingError::Indeterminate`]) is recorded as an error for the admins, and a
//! worker that dies between the claim and the record leaves the shipment in `BOOKING` for an
//! operator.

use super::shipment_jobs::ShipmentJobs;
use super::shipping::{build_parcel, pair_results, plan};
use super::shop_sync::needs_note;
use crate::error::{JobError, ShopError, Transience, error_chain};
use crate::model::{
    BookingOutcome, BookingRecorded, Claim, Order, ParcelBooking, ShipmentMethod, ShipmentRecord,
    ShipmentStatus,
};
use crate::ports::ShipmentStore;

/// What fulfilling an order did, by shipment id (vendor id for `ignored`).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct FulfilmentReport {
    /// Booked now: their labels are to be mailed to the vendors.
    pub booked: Vec<i64>,
    /// Refused now (by the carrier, or for bad vendor data): the admins are to be told.
    pub failed: Vec<i64>,
    /// Local pickups recorded as delivered now.
    pub picked_up: Vec<i64>,
    /// Shipments that existed already: nothing was done for them.
    pub existing: Vec<i64>,
    /// Vendors whose shipping method the connector does not handle.
    pub ignored: Vec<i64>,
    /// The shipments whose mail (label or refusal) is still to be sent: those booked or refused
    /// now, with what their mail needs, and those found not mailed yet (a repeat after a crash
    /// between the booking and the mail).
    pub to_mail: Vec<ToMail>,
    /// The carrier's shipments holding a booking whose tracking note is not written on the order
    /// yet: those booked now, and those found so.
    pub to_note: Vec<ShipmentRecord>,
}

/// A shipment whose mail is still to be sent.
#[derive(Debug, Clone, PartialEq)]
pub struct ToMail {
    /// The shipment as recorded.
    pub shipment: ShipmentRecord,
    /// Its label, when it was booked now.
    pub label_pdf: Option<Vec<u8>>,
    /// Its vendor's address, when the vendor's profile was read now.
    pub vendor_email: Option<String>,
}

impl ToMail {
    fn found(shipment: ShipmentRecord) -> Option<Self> {
        let pending = shipment.mailed_at.is_none()
            && matches!(
                shipment.status,
                ShipmentStatus::LabelSent | ShipmentStatus::ErrorFromBody
            );
        pending.then_some(ToMail {
            shipment,
            label_pdf: None,
            vendor_email: None,
        })
    }
}

pub(crate) fn failed_outcome(request: String, message: String) -> BookingOutcome {
    BookingOutcome {
        status: ShipmentStatus::ErrorFromBody,
        delivery_id: String::new(),
        request,
        message,
        label_pdf: None,
    }
}

/// What the carrier's answer for one parcel comes to: a label, or a refusal. `request` is what
/// the carrier was sent for it ([`crate::ports::ShippingProvider::request_for`]).
pub(crate) fn outcome_of(request: &str, result: ParcelBooking) -> BookingOutcome {
    match result {
        ParcelBooking::Booked {
            barcode,
            message,
            label_pdf,
            ..
        } => BookingOutcome {
            status: ShipmentStatus::LabelSent,
            delivery_id: barcode,
            request: request.to_owned(),
            message,
            label_pdf: Some(label_pdf),
        },
        ParcelBooking::Refused { reason } => BookingOutcome {
            status: ShipmentStatus::ErrorFromBody,
            delivery_id: String::new(),
            request: request.to_owned(),
            message: reason,
            label_pdf: None,
        },
    }
}

/// Records the booking of a shipment this job claimed (booking attempt 0). `None` when it was
/// kept aside: an operator's retry took the shipment after the lease ran out, and its booking
/// is the shipment's now (this one is kept among the past bookings, with its label; nothing
/// more is done with it here).
async fn record_claimed(
    store: &dyn ShipmentStore,
    id: i64,
    outcome: &BookingOutcome,
) -> Result<Option<ShipmentRecord>, JobError> {
    match store.record_booking(id, 0, outcome).await? {
        BookingRecorded::Current(recorded) => Ok(Some(recorded)),
        BookingRecorded::Aside(_) => {
            tracing::error!(
                shipment_id = id,
                barcode = %outcome.delivery_id,
                "shipment {id}: its first booking came back after a retry had taken the \
                 shipment; it is kept among the shipment's past bookings"
            );
            Ok(None)
        }
    }
}

/// Fulfils `order` (see the module documentation).
///
/// # Errors
/// [`JobError::Permanent`] when the order cannot be split by vendor; [`JobError::Transient`] when
/// the store, the shop or the carrier cannot be reached (the job is retried; nothing is booked
/// twice).
#[tracing::instrument(skip_all, fields(order_id = order.id))]
pub async fn fulfil_order(
    deps: &ShipmentJobs,
    order: &Order,
) -> Result<FulfilmentReport, JobError> {
    let plan = plan(order, &deps.methods).map_err(|e| JobError::Permanent {
        reason: format!("order {}: {e}", order.id),
    })?;
    let mut report = FulfilmentReport {
        ignored: plan.ignored.iter().map(|g| g.vendor_id).collect(),
        ..FulfilmentReport::default()
    };

    for group in &plan.local_pickup {
        match deps
            .store
            .claim(order.id, group.vendor_id, ShipmentMethod::LocalPickup)
            .await?
        {
            Claim::Claimed(s) => {
                let delivered = BookingOutcome {
                    status: ShipmentStatus::Delivered,
                    delivery_id: String::new(),
                    request: String::new(),
                    message: String::new(),
                    label_pdf: None,
                };
                if record_claimed(deps.store.as_ref(), s.id, &delivered)
                    .await?
                    .is_some()
                {
                    report.picked_up.push(s.id);
                }
            }
            Claim::Exists(s) => report.existing.push(s.id),
        }
    }
    if plan.koiki.is_empty() {
        return Ok(report);
    }

    // Each vendor's shipment is claimed before anyone is asked anything: a vendor that has one
    // already is left alone.
    let mut groups = Vec::new();
    let mut parcels = Vec::new();
    let mut requests = Vec::new();
    let mut claims = Vec::new();
    let mut emails = Vec::new();
    for group in &plan.koiki {
        let s = match deps
            .store
            .claim(order.id, group.vendor_id, ShipmentMethod::Koiki)
            .await?
        {
            Claim::Claimed(s) => s,
            Claim::Exists(s) => {
                report.existing.push(s.id);
                if needs_note(&s) {
                    report.to_note.push(s.clone());
                }
                report.to_mail.extend(ToMail::found(s));
                continue;
            }
        };
        let problem = match deps.shop.vendor(group.vendor_id).await {
            Ok(profile) => {
                let parcel = build_parcel(order, group, &profile);
                match deps.carrier.request_for(&parcel) {
                    Ok(request) => {
                        claims.push(s.id);
                        groups.push(group.clone());
                        parcels.push(parcel);
                        requests.push(request);
                        emails.push(profile.email);
                        continue;
                    }
                    Err(e) => e.to_string(),
                }
            }
            Err(e @ (ShopError::Unavailable { .. } | ShopError::InvalidResponse { .. })) => {
                // Nothing was booked: the claims made here are released for the retry.
                for id in claims.iter().chain([&s.id]) {
                    deps.store.release(*id).await?;
                }
                return Err(JobError::Transient {
                    reason: format!("vendor {}: {}", group.vendor_id, error_chain(&e)),
                    retry_after: match e {
                        ShopError::Unavailable { retry_after, .. } => retry_after,
                        _ => None,
                    },
                });
            }
            Err(e) => format!("vendor {}: {}", group.vendor_id, error_chain(&e)),
        };
        // Bad vendor data (or data the carrier cannot take): an error shipment for this vendor,
        // the others are booked.
        let outcome = failed_outcome(String::new(), problem);
        if let Some(recorded) = record_claimed(deps.store.as_ref(), s.id, &outcome).await? {
            report.failed.push(s.id);
            report.to_mail.extend(ToMail::found(recorded));
        }
    }
    if claims.is_empty() {
        return Ok(report);
    }

    let results = match deps.carrier.book(&parcels).await {
        Ok(results) => results,
        Err(e) => {
            if let Transience::Transient { retry_after } = e.transience() {
                for id in &claims {
                    deps.store.release(*id).await?;
                }
                return Err(JobError::Transient {
                    reason: format!("order {}: {}", order.id, error_chain(&e)),
                    retry_after,
                });
            }
            let message = error_chain(&e);
            for (id, request) in claims.iter().zip(&requests) {
                let outcome = failed_outcome(request.clone(), message.clone());
                if let Some(recorded) = record_claimed(deps.store.as_ref(), *id, &outcome).await? {
                    report.failed.push(*id);
                    report.to_mail.extend(ToMail::found(recorded));
                }
            }
            return Ok(report);
        }
    };
    match pair_results(&groups, &parcels, results) {
        Ok(paired) => {
            let answers = paired.into_iter().zip(&requests).zip(&claims).zip(emails);
            for ((((_, _, result), request), id), email) in answers {
                let outcome = outcome_of(request, result);
                let label_pdf = outcome.label_pdf.clone();
                let Some(recorded) = record_claimed(deps.store.as_ref(), *id, &outcome).await?
                else {
                    continue;
                };
                if recorded.status == ShipmentStatus::LabelSent {
                    report.booked.push(*id);
                    report.to_note.push(recorded.clone());
                } else {
                    report.failed.push(*id);
                }
                report
                    .to_mail
                    .extend(ToMail::found(recorded).map(|m| ToMail {
                        label_pdf,
                        vendor_email: Some(email),
                        ..m
                    }));
            }
        }
        Err(e) => {
            let message = format!("the carrier's answer does not match the request: {e}");
            for (id, request) in claims.iter().zip(&requests) {
                let outcome = failed_outcome(request.clone(), message.clone());
                if let Some(recorded) = record_claimed(deps.store.as_ref(), *id, &outcome).await? {
                    report.failed.push(*id);
                    report.to_mail.extend(ToMail::found(recorded));
                }
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ShippingError;
    use crate::model::ParcelBooking;
    use crate::model::ShipmentRecord;
    use crate::model::shipment::VendorProfile;
    use crate::ports::{
        MockJobQueue, MockMailer, MockShippingProvider, MockShop, MockWebhookInbox,
    };
    use crate::service::shipping::ShippingMethods;
    use std::sync::Arc;

    type MemoryStore = crate::memory::MemoryShipmentStore;

    trait ByVendor {
        fn by_vendor(&self, vendor_id: i64) -> ShipmentRecord;
    }

    impl ByVendor for MemoryStore {
        fn by_vendor(&self, vendor_id: i64) -> ShipmentRecord {
            self.all()
                .into_iter()
                .find(|r| r.vendor_id == vendor_id)
                .expect("shipment")
        }
    }

    /// Line items for vendors [A=5, A=5, B=6] (A with zone shipping, B flat rate) and a pickup
    /// vendor 7, with the shipping lines listed in another order than the line items.
    fn order() -> Order {
        let item = |id: i64, vendor: &str, store: &str| {
            serde_json::json!({"id": id, "name": "x", "quantity": 1, "meta_data": [
                {"id": 1, "key": "_vendor_id", "value": vendor, "display_key": "Store", "display_value": store}]})
        };
        let line = |id: i64, method: &str, vendor: &str| {
            serde_json::json!({"id": id, "method_title": method, "method_id": method, "meta_data": [
                {"id": 2, "key": "vendor_id", "value": vendor, "display_key": "Store", "display_value": "s"}]})
        };
        serde_json::from_value(serde_json::json!({
            "id": 33, "order_key": "wc_order_xxx", "customer_note": "",
            "shipping": {"first_name": "John", "last_name": "Lennon", "address_1": "Beatles Street 66", "address_2": "",
                          "postcode": "08032", "city": "Barcelona", "state": "B", "country": "ES"},
            "billing": {"phone": "+34666554433", "email": "lennon@example.com"},
            "line_items": [item(1, "5", "A granel"), item(2, "5", "A granel"), item(3, "6", "Quèviure"), item(4, "7", "Botiga")],
            "shipping_lines": [line(10, "local_pickup", "7"), line(11, "flat_rate", "6"), line(12, "wcfmmp_product_shipping_by_zone", "5")]
        }))
        .expect("order")
    }

    /// The shipment jobs over `store`, `carrier` and `shop` with `methods`; the other ports are
    /// mocks that panic when called (fulfilment does not use them).
    fn jobs(
        store: &Arc<MemoryStore>,
        carrier: Arc<MockShippingProvider>,
        shop: MockShop,
        methods: ShippingMethods,
    ) -> ShipmentJobs {
        ShipmentJobs {
            inbox: Arc::new(MockWebhookInbox::new()),
            store: store.clone(),
            carrier,
            shop: Arc::new(shop),
            mailer: Arc::new(MockMailer::new()),
            queue: Arc::new(MockJobQueue::new()),
            methods,
            shop_host: String::new(),
            admins: Vec::new(),
            shop_sync: crate::service::shop_sync::ShopSync::default(),
            alerts: crate::service::alerts::Alerts::memory(),
            mail_events: Arc::new(crate::memory::MemoryMailEventStore::new()),
            mail_domain: "lazona.test".into(),
        }
    }

    /// Fulfils [`order`] with [`shop`] and the default methods; `carrier` is lent to the jobs
    /// and handed back, so that a test can set more expectations on it afterwards.
    async fn fulfil(
        store: &Arc<MemoryStore>,
        carrier: &mut MockShippingProvider,
    ) -> Result<FulfilmentReport, JobError> {
        let lent = Arc::new(std::mem::take(carrier));
        let jobs = jobs(store, lent.clone(), shop(), ShippingMethods::default());
        let report = fulfil_order(&jobs, &order()).await;
        drop(jobs);
        *carrier = Arc::into_inner(lent).expect("the carrier is handed back");
        report
    }

    fn shop() -> MockShop {
        let mut shop = MockShop::new();
        shop.expect_vendor().returning(|id| {
            Ok(VendorProfile {
                id,
                phone: "93333333".into(),
                street: format!("Street of {id}"),
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

    /// A carrier whose request for a parcel is the parcel as JSON; `book` is for each test to
    /// expect.
    fn carrier() -> MockShippingProvider {
        let mut carrier = MockShippingProvider::new();
        carrier
            .expect_request_for()
            .returning(|parcel| Ok(serde_json::to_string_pretty(parcel).expect("JSON")));
        carrier
    }

    fn booked(barcode: &str) -> ParcelBooking {
        ParcelBooking::Booked {
            message: "OK".into(),
            barcode: barcode.into(),
            reference: "123".into(),
            label_pdf: format!("%PDF {barcode}").into_bytes(),
        }
    }

    #[tokio::test]
    async fn each_label_goes_to_the_vendor_it_was_requested_for_and_pickups_are_delivered() {
        let store = Arc::new(MemoryStore::default());
        let mut carrier = carrier();
        carrier.expect_book().times(1).returning(|req| {
            // One parcel per vendor; answer with a barcode naming the sender.
            Ok(req
                .iter()
                .map(|p| booked(&format!("code-{}", p.sender.name)))
                .collect())
        });
        let report = fulfil(&store, &mut carrier).await.expect("fulfilled");
        assert_eq!(report.booked.len(), 2);
        assert_eq!(report.picked_up.len(), 1);
        let a = store.by_vendor(5);
        let b = store.by_vendor(6);
        assert_eq!(a.delivery_id, "code-A granel");
        assert_eq!(b.delivery_id, "code-Quèviure");
        assert!(a.request.contains("Street of 5") && b.request.contains("Street of 6"));
        assert_eq!(a.status, ShipmentStatus::LabelSent);
        assert_eq!(
            store.label(a.id).await.expect("label"),
            Some(b"%PDF code-A granel".to_vec())
        );
        assert_eq!(store.by_vendor(7).status, ShipmentStatus::Delivered);
    }

    #[tokio::test]
    async fn a_repeated_delivery_books_nothing_twice() {
        let store = Arc::new(MemoryStore::default());
        let mut carrier = carrier();
        carrier
            .expect_book()
            .times(1)
            .returning(|req| Ok(req.iter().map(|_| booked("c")).collect()));
        fulfil(&store, &mut carrier).await.expect("first");
        let again = fulfil(&store, &mut carrier).await.expect("second");
        assert!(again.booked.is_empty() && again.picked_up.is_empty());
        assert_eq!(
            again.existing.len(),
            3,
            "every vendor's shipment is found before any call"
        );
    }

    #[tokio::test]
    async fn an_unreachable_carrier_releases_the_claims_for_the_retry() {
        let store = Arc::new(MemoryStore::default());
        let mut carrier = carrier();
        let mut calls = 0;
        carrier.expect_book().times(2).returning(move |req| {
            calls += 1;
            if calls == 1 {
                Err(ShippingError::Unavailable {
                    reason: "503".into(),
                    retry_after: None,
                })
            } else {
                Ok(req.iter().map(|_| booked("c")).collect())
            }
        });
        let first = fulfil(&store, &mut carrier).await;
        assert!(
            matches!(first, Err(JobError::Transient { .. })),
            "{first:?}"
        );
        assert!(
            store
                .of_order(33)
                .await
                .expect("rows")
                .iter()
                .all(|s| s.method == ShipmentMethod::LocalPickup)
        );
        let retry = fulfil(&store, &mut carrier).await.expect("retry");
        assert_eq!(retry.booked.len(), 2);
    }

    #[tokio::test]
    async fn a_booking_that_may_have_happened_is_not_booked_again() {
        let store = Arc::new(MemoryStore::default());
        let mut carrier = carrier();
        carrier.expect_book().times(1).returning(|_| {
            Err(ShippingError::Indeterminate {
                reason: "timed out: operation timed out".into(),
            })
        });
        let report = fulfil(&store, &mut carrier).await.expect("recorded");
        assert_eq!(report.failed.len(), 2, "{report:?}");
        for vendor in [5, 6] {
            let s = store.by_vendor(vendor);
            assert_eq!(s.status, ShipmentStatus::ErrorFromBody);
            assert!(s.message.contains("may have booked"), "{}", s.message);
            assert!(!s.request.is_empty(), "the request sent is kept");
        }
        // The admins are told (the error mail); a repeat finds the shipments and books nothing.
        assert_eq!(report.to_mail.len(), 2);
        let again = fulfil(&store, &mut carrier).await.expect("repeat");
        assert!(again.booked.is_empty() && again.failed.is_empty());
    }

    #[tokio::test]
    async fn a_refused_parcel_is_recorded_as_an_error_with_the_carriers_message() {
        let store = Arc::new(MemoryStore::default());
        let mut carrier = carrier();
        carrier.expect_book().returning(|req| {
            Ok(req
                .iter()
                .map(|p| {
                    if p.sender.name == "Quèviure" {
                        ParcelBooking::Refused {
                            reason: "Missing field X".into(),
                        }
                    } else {
                        booked("ok")
                    }
                })
                .collect())
        });
        let report = fulfil(&store, &mut carrier).await.expect("fulfilled");
        assert_eq!((report.booked.len(), report.failed.len()), (1, 1));
        let b = store.by_vendor(6);
        assert_eq!(b.status, ShipmentStatus::ErrorFromBody);
        assert_eq!(b.message, "Missing field X");
        assert_eq!(b.delivery_id, "");
        assert!(!b.has_label);
    }

    #[tokio::test]
    async fn an_order_of_local_pickups_only_never_calls_the_carrier() {
        let store = Arc::new(MemoryStore::default());
        let carrier = MockShippingProvider::new(); // any call would panic
        let shop = MockShop::new();
        let methods = ShippingMethods {
            koiki: Vec::new(),
            local_pickup: vec!["local_pickup".into()],
        };
        let jobs = jobs(&store, Arc::new(carrier), shop, methods);
        let report = fulfil_order(&jobs, &order()).await.expect("fulfilled");
        assert_eq!(report.picked_up.len(), 1);
        assert_eq!(report.ignored, vec![5, 6]);
    }
}
