//! The [`ShipmentStore`] contract: one shipment per (order, vendor), claimed exactly once; a
//! booking attempt held by one caller at a time ([`ShipmentStore::reserve_booking`],
//! [`ShipmentStore::start_booking`], [`ShipmentStore::end_booking`]); every booking recorded
//! either on its shipment ([`BookingRecorded::Current`]) or among its past bookings
//! ([`BookingRecorded::Aside`]), so that no barcode the carrier returned is lost; tracking,
//! mail marks, compare-and-set moves and listings.

use super::{Checks, check, run_checks};
use chrono::{TimeDelta, Utc};
use domain::error::StoreError;
use domain::model::{
    BOOKING_LEASE, BookingOutcome, BookingRecorded, Claim, MailState, MailUpdate,
    PastBookingReason, ShipmentFilter, ShipmentMethod, ShipmentRecord, ShipmentStatus,
};
use domain::ports::ShipmentStore;
use std::any::Any;
use std::future::Future;
use std::sync::Arc;

/// A fresh, empty store and what keeps its storage alive.
pub type Fresh = (Arc<dyn ShipmentStore>, Box<dyn Any + Send>);

const CHECKS: Checks<Fresh> = &[
    check!(Fresh, a_claim_creates_one_shipment_per_order_and_vendor),
    check!(Fresh, racing_claims_give_exactly_one_shipment),
    check!(Fresh, release_frees_only_a_claim_not_booked),
    check!(Fresh, a_first_booking_goes_on_the_shipment_then_is_tracked),
    check!(Fresh, a_refused_booking_keeps_no_label_and_is_not_tracked),
    check!(
        Fresh,
        a_booking_on_the_same_attempt_keeps_the_one_it_replaces
    ),
    check!(
        Fresh,
        a_retry_supersedes_the_booking_and_clears_the_mail_mark
    ),
    check!(Fresh, booking_attempts_hold),
    check!(Fresh, a_tracking_change_is_due_for_its_mail_until_marked),
    check!(Fresh, status_changes_are_compare_and_set),
    check!(
        Fresh,
        the_label_mail_is_compare_and_set_and_found_by_its_message_id
    ),
    check!(Fresh, listings_filter_and_page_newest_first),
    check!(Fresh, unknown_ids_are_absent_or_not_found),
];

/// The names of the checks, in the order they run.
pub fn checks() -> Vec<&'static str> {
    super::names(CHECKS)
}

/// Runs every check, each on a fresh store from `make`.
///
/// # Panics
/// On the first broken promise, naming the backend and the check.
pub async fn run_all<F, Fut>(backend: &str, make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Fresh>,
{
    run_checks(backend, make, CHECKS, &[]).await;
}

/// Runs every check but those in `known_divergent` (names from [`checks`]).
///
/// # Panics
/// On the first broken promise, or for a name that is not a check.
pub async fn run_except<F, Fut>(backend: &str, make: F, known_divergent: &[&str])
where
    F: Fn() -> Fut,
    Fut: Future<Output = Fresh>,
{
    run_checks(backend, make, CHECKS, known_divergent).await;
}

fn booked(barcode: &str, label: &[u8]) -> BookingOutcome {
    BookingOutcome {
        status: ShipmentStatus::LabelSent,
        delivery_id: barcode.into(),
        request: format!(r#"{{"numPedido":"{barcode}"}}"#),
        message: format!("OK {barcode}"),
        label_pdf: Some(label.to_vec()),
    }
}

fn refused() -> BookingOutcome {
    BookingOutcome {
        status: ShipmentStatus::ErrorFromBody,
        delivery_id: String::new(),
        request: "{}".into(),
        message: "código postal incorrecto".into(),
        label_pdf: None,
    }
}

async fn claimed(store: &dyn ShipmentStore, order_id: i64, vendor_id: i64) -> ShipmentRecord {
    match store
        .claim(order_id, vendor_id, ShipmentMethod::Koiki)
        .await
        .expect("claim")
    {
        Claim::Claimed(s) => s,
        Claim::Exists(s) => panic!("({order_id}, {vendor_id}) claimed before: {s:?}"),
    }
}

async fn a_claim_creates_one_shipment_per_order_and_vendor(
    backend: String,
    (store, _guard): Fresh,
) {
    let s = claimed(store.as_ref(), 33, 6).await;
    assert_eq!(
        (
            s.order_id,
            s.vendor_id,
            s.method,
            s.status,
            s.booking_attempt
        ),
        (33, 6, ShipmentMethod::Koiki, ShipmentStatus::Booking, 0),
        "{backend}"
    );
    assert!(
        s.delivery_id.is_empty() && !s.has_label && s.mailed_at.is_none(),
        "{backend}: nothing booked yet: {s:?}"
    );
    assert_eq!(
        store.get(s.id).await.expect("get").as_ref(),
        Some(&s),
        "{backend}: reads back as claimed"
    );
    match store
        .claim(33, 6, ShipmentMethod::LocalPickup)
        .await
        .expect("claim")
    {
        Claim::Exists(e) => assert_eq!(e, s, "{backend}: the existing one, unchanged"),
        Claim::Claimed(c) => panic!("{backend}: claimed twice: {c:?}"),
    }
    let other_vendor = claimed(store.as_ref(), 33, 7).await;
    let other_order = claimed(store.as_ref(), 34, 6).await;
    assert!(
        s.id != other_vendor.id && s.id != other_order.id && other_vendor.id != other_order.id,
        "{backend}"
    );
    let of_33 = store.of_order(33).await.expect("of order");
    assert_eq!(
        of_33.iter().map(|s| s.id).collect::<Vec<_>>(),
        [s.id, other_vendor.id],
        "{backend}: the order's shipments, oldest first"
    );
}

async fn racing_claims_give_exactly_one_shipment(backend: String, (store, _guard): Fresh) {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let store = store.clone();
        set.spawn(async move {
            store
                .claim(33, 6, ShipmentMethod::Koiki)
                .await
                .expect("claim")
        });
    }
    let claims = set.join_all().await;
    let won = claims
        .iter()
        .filter(|c| matches!(c, Claim::Claimed(_)))
        .count();
    assert_eq!(won, 1, "{backend}: one claim wins");
    let mut ids: Vec<i64> = claims
        .iter()
        .map(|c| match c {
            Claim::Claimed(s) | Claim::Exists(s) => s.id,
        })
        .collect();
    ids.dedup();
    assert_eq!(ids.len(), 1, "{backend}: every claimant sees one shipment");
    assert_eq!(
        store.of_order(33).await.expect("of order").len(),
        1,
        "{backend}"
    );
}

async fn release_frees_only_a_claim_not_booked(backend: String, (store, _guard): Fresh) {
    let s = claimed(store.as_ref(), 33, 6).await;
    store.release(s.id).await.expect("release");
    assert!(
        store.get(s.id).await.expect("get").is_none(),
        "{backend}: released"
    );
    let again = claimed(store.as_ref(), 33, 6).await;

    // Booked: stays.
    store
        .record_booking(again.id, 0, &booked("B1", b"%PDF-1"))
        .await
        .expect("record");
    store.release(again.id).await.expect("release");
    assert!(
        store.get(again.id).await.expect("get").is_some(),
        "{backend}: a booked shipment stays"
    );

    // Taken again by a retry (attempt 1, `BOOKING`): stays.
    let stale = Utc::now() - BOOKING_LEASE;
    store
        .reserve_booking(again.id, ShipmentStatus::LabelSent, 0, stale)
        .await
        .expect("reserve")
        .expect("taken");
    store.release(again.id).await.expect("release");
    let kept = store.get(again.id).await.expect("get").expect("kept");
    assert_eq!(
        (kept.status, kept.booking_attempt),
        (ShipmentStatus::Booking, 1),
        "{backend}: a retry's shipment stays"
    );
    store
        .release(i64::MAX)
        .await
        .expect("an unknown id is fine");
}

async fn a_first_booking_goes_on_the_shipment_then_is_tracked(
    backend: String,
    (store, _guard): Fresh,
) {
    let s = claimed(store.as_ref(), 33, 6).await;
    assert!(
        store.to_track().await.expect("to track").is_empty(),
        "{backend}: no barcode, nothing to poll"
    );
    let outcome = booked("B1", b"%PDF-1.4 label");
    let recorded = store
        .record_booking(s.id, 0, &outcome)
        .await
        .expect("record");
    let BookingRecorded::Current(b) = recorded else {
        panic!("{backend}: on the shipment: {recorded:?}")
    };
    assert_eq!(
        (
            b.id,
            b.status,
            b.delivery_id.as_str(),
            b.request.as_str(),
            b.message.as_str(),
            b.has_label,
            b.booking_attempt
        ),
        (
            s.id,
            ShipmentStatus::LabelSent,
            "B1",
            outcome.request.as_str(),
            "OK B1",
            true,
            0
        ),
        "{backend}"
    );
    assert_eq!(b.mailed_at, None, "{backend}");
    assert_eq!(
        store.get(s.id).await.expect("get").as_ref(),
        Some(&b),
        "{backend}: reads back as recorded"
    );
    assert_eq!(
        store.label(s.id).await.expect("label").as_deref(),
        Some(&b"%PDF-1.4 label"[..]),
        "{backend}"
    );
    assert!(
        store.past_bookings(s.id).await.expect("past").is_empty(),
        "{backend}: nothing replaced"
    );

    let mailed = store.mark_mailed(s.id).await.expect("mailed");
    assert!(mailed.mailed_at.is_some(), "{backend}");
    assert_eq!(
        (mailed.status, mailed.delivery_id.as_str()),
        (ShipmentStatus::LabelSent, "B1"),
        "{backend}"
    );
    assert_eq!(
        store
            .to_track()
            .await
            .expect("to track")
            .iter()
            .map(|t| t.id)
            .collect::<Vec<_>>(),
        [s.id],
        "{backend}: polled"
    );

    let moving = store
        .record_tracking(
            s.id,
            ShipmentStatus::InProcess,
            "En reparto",
            "portal 2",
            Some("2021-07-25T08:00:00+0000".into()),
        )
        .await
        .expect("tracking");
    assert_eq!(
        (
            moving.status,
            moving.message.as_str(),
            moving.notes.as_str(),
            moving.tracking_status_created_at.as_deref()
        ),
        (
            ShipmentStatus::InProcess,
            "En reparto",
            "portal 2",
            Some("2021-07-25T08:00:00+0000")
        ),
        "{backend}"
    );
    assert!(moving.tracking_updated_at.is_some(), "{backend}");
    assert_eq!(
        store.to_track().await.expect("to track").len(),
        1,
        "{backend}: still polled"
    );
    let delivered = store
        .record_tracking(s.id, ShipmentStatus::Delivered, "Entregado", "", None)
        .await
        .expect("tracking");
    assert_eq!(delivered.status, ShipmentStatus::Delivered, "{backend}");
    assert_eq!(delivered.tracking_status_created_at, None, "{backend}");
    assert!(
        delivered.mailed_at.is_some() && delivered.delivery_id == "B1",
        "{backend}: tracking keeps the booking and the mail mark"
    );
    assert!(
        store.to_track().await.expect("to track").is_empty(),
        "{backend}: a delivered shipment is not polled"
    );
    assert_eq!(
        store.get(s.id).await.expect("get").as_ref(),
        Some(&delivered),
        "{backend}"
    );
}

async fn a_refused_booking_keeps_no_label_and_is_not_tracked(
    backend: String,
    (store, _guard): Fresh,
) {
    let s = claimed(store.as_ref(), 33, 6).await;
    let r = store
        .record_booking(s.id, 0, &refused())
        .await
        .expect("record")
        .current()
        .expect("on the shipment");
    assert_eq!(
        (r.status, r.delivery_id.as_str(), r.has_label),
        (ShipmentStatus::ErrorFromBody, "", false),
        "{backend}"
    );
    assert_eq!(
        r.message, "código postal incorrecto",
        "{backend}: the message as sent"
    );
    assert_eq!(store.label(s.id).await.expect("label"), None, "{backend}");
    assert!(
        store.to_track().await.expect("to track").is_empty(),
        "{backend}"
    );
    // The operator retries: the refusal had no barcode, so nothing is kept aside.
    let held = store
        .reserve_booking(s.id, ShipmentStatus::ErrorFromBody, 0, Utc::now())
        .await
        .expect("reserve")
        .expect("taken");
    assert_eq!(held.booking_attempt, 1, "{backend}");
    store
        .record_booking(s.id, 1, &booked("B1", b"%PDF-1"))
        .await
        .expect("record")
        .current()
        .expect("on the shipment");
    assert!(
        store.past_bookings(s.id).await.expect("past").is_empty(),
        "{backend}: a refusal has no barcode to keep"
    );
}

async fn a_booking_on_the_same_attempt_keeps_the_one_it_replaces(
    backend: String,
    (store, _guard): Fresh,
) {
    let s = claimed(store.as_ref(), 33, 6).await;
    store
        .record_booking(s.id, 0, &booked("B1", b"%PDF-1"))
        .await
        .expect("record")
        .current()
        .expect("on the shipment");
    // The holder of attempt 0 records again (it resumed and booked again): the shipment takes
    // the new booking, and the barcode it held is kept.
    let b2 = store
        .record_booking(s.id, 0, &booked("B2", b"%PDF-2"))
        .await
        .expect("record")
        .current()
        .expect("on the shipment");
    assert_eq!(b2.delivery_id, "B2", "{backend}");
    let past = store.past_bookings(s.id).await.expect("past");
    assert_eq!(
        past.iter()
            .map(|p| (p.delivery_id.as_str(), p.reason, p.has_label))
            .collect::<Vec<_>>(),
        [("B1", PastBookingReason::Superseded, true)],
        "{backend}: no barcode lost"
    );
    assert_eq!(
        store
            .past_label(s.id, past[0].id)
            .await
            .expect("label")
            .as_deref(),
        Some(&b"%PDF-1"[..]),
        "{backend}"
    );
}

async fn a_retry_supersedes_the_booking_and_clears_the_mail_mark(
    backend: String,
    (store, _guard): Fresh,
) {
    let s = claimed(store.as_ref(), 33, 6).await;
    store
        .record_booking(s.id, 0, &booked("B1", b"%PDF-1"))
        .await
        .expect("record");
    store.mark_mailed(s.id).await.expect("mailed");
    let stale = Utc::now() - BOOKING_LEASE;
    let held = store
        .reserve_booking(s.id, ShipmentStatus::LabelSent, 0, stale)
        .await
        .expect("reserve")
        .expect("taken");
    assert_eq!(
        (held.status, held.booking_attempt, held.delivery_id.as_str()),
        (ShipmentStatus::Booking, 1, "B1"),
        "{backend}: taken, its booking still on it"
    );
    assert!(
        store
            .start_booking(s.id, 1, ShipmentStatus::LabelSent)
            .await
            .expect("start"),
        "{backend}: the holder starts"
    );
    let b2 = store
        .record_booking(s.id, 1, &booked("B2", b"%PDF-2"))
        .await
        .expect("record")
        .current()
        .expect("on the shipment");
    assert_eq!(
        (b2.status, b2.delivery_id.as_str(), b2.booking_attempt),
        (ShipmentStatus::LabelSent, "B2", 1),
        "{backend}"
    );
    assert_eq!(
        b2.mailed_at, None,
        "{backend}: the new label is to be mailed"
    );
    assert_eq!(
        store.label(s.id).await.expect("label").as_deref(),
        Some(&b"%PDF-2"[..]),
        "{backend}"
    );
    let past = store.past_bookings(s.id).await.expect("past");
    // Not checked: the past booking's `status`. Every store keeps the shipment's status when the
    // retry's booking is recorded, which is `BOOKING` (the retry took it), not what the superseded
    // booking came to (`LABEL_SENT`), which `reserve_booking` overwrote.
    assert_eq!(
        past.iter()
            .map(|p| (
                p.shipment_id,
                p.delivery_id.as_str(),
                p.message.as_str(),
                p.reason,
                p.has_label
            ))
            .collect::<Vec<_>>(),
        [(s.id, "B1", "OK B1", PastBookingReason::Superseded, true)],
        "{backend}"
    );
    assert_eq!(
        store
            .past_label(s.id, past[0].id)
            .await
            .expect("label")
            .as_deref(),
        Some(&b"%PDF-1"[..]),
        "{backend}"
    );
    let other = claimed(store.as_ref(), 34, 6).await;
    assert_eq!(
        store.past_label(other.id, past[0].id).await.expect("label"),
        None,
        "{backend}: another shipment's past booking"
    );
}

/// At most one booking in flight per shipment, and no barcode the carrier returned dropped.
async fn booking_attempts_hold(backend: String, (store, _guard): Fresh) {
    let s = claimed(store.as_ref(), 77, 6).await;
    assert_eq!(s.booking_attempt, 0, "{backend}");
    let first = store
        .record_booking(s.id, 0, &booked("B1", b"%PDF-1"))
        .await
        .expect("record");
    assert!(matches!(first, BookingRecorded::Current(_)), "{backend}");

    // Two retries at once, from what both saw: one takes the shipment.
    let stale = Utc::now() - BOOKING_LEASE;
    let (a, b) = tokio::join!(
        store.reserve_booking(s.id, ShipmentStatus::LabelSent, 0, stale),
        store.reserve_booking(s.id, ShipmentStatus::LabelSent, 0, stale)
    );
    let taken: Vec<_> = [a.expect("a"), b.expect("b")]
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(taken.len(), 1, "{backend}: one retry takes it");
    let held = &taken[0];
    assert_eq!(
        (held.status, held.booking_attempt),
        (ShipmentStatus::Booking, 1),
        "{backend}"
    );
    // While it is in flight, nobody else takes it, whatever they saw.
    assert!(
        store
            .reserve_booking(s.id, ShipmentStatus::Booking, 1, stale)
            .await
            .expect("reserve")
            .is_none(),
        "{backend}: in flight"
    );
    // A tracking poll meanwhile leaves it alone, and it is not polled.
    let polled = store
        .record_tracking(s.id, ShipmentStatus::InProcess, "moving", "", None)
        .await
        .expect("tracking");
    assert_eq!(polled.status, ShipmentStatus::Booking, "{backend}");
    assert!(
        store
            .to_track()
            .await
            .expect("to track")
            .iter()
            .all(|t| t.id != s.id),
        "{backend}"
    );
    // Put off (the carrier could not be reached) and resumed by the same holder.
    assert!(
        store
            .end_booking(s.id, 1, ShipmentStatus::LabelSent)
            .await
            .expect("end"),
        "{backend}"
    );
    assert_eq!(
        store.get(s.id).await.expect("get").map(|r| r.status),
        Some(ShipmentStatus::LabelSent),
        "{backend}: back in its status, keeping the attempt"
    );
    assert!(
        !store
            .start_booking(s.id, 0, ShipmentStatus::LabelSent)
            .await
            .expect("start"),
        "{backend}: an older attempt cannot"
    );
    assert!(
        store
            .start_booking(s.id, 1, ShipmentStatus::LabelSent)
            .await
            .expect("start"),
        "{backend}"
    );
    // Its lease runs out (its worker died, say): another retry takes the shipment.
    let later = store
        .reserve_booking(
            s.id,
            ShipmentStatus::Booking,
            1,
            Utc::now() + TimeDelta::seconds(1),
        )
        .await
        .expect("reserve")
        .expect("taken after the lease");
    assert_eq!(later.booking_attempt, 2, "{backend}");
    assert!(
        !store
            .end_booking(s.id, 1, ShipmentStatus::LabelSent)
            .await
            .expect("end"),
        "{backend}: the first holder no longer holds it"
    );
    let current = store
        .record_booking(s.id, 2, &booked("B2", b"%PDF-2"))
        .await
        .expect("record")
        .current()
        .expect("on the shipment");
    assert_eq!(current.delivery_id, "B2", "{backend}");
    // The first holder's booking comes back after all: kept aside, not dropped.
    let late = store
        .record_booking(s.id, 1, &booked("B3", b"%PDF-3"))
        .await
        .expect("record");
    let BookingRecorded::Aside(now) = late else {
        panic!("{backend}: kept aside: {late:?}")
    };
    assert_eq!(now.delivery_id, "B2", "{backend}: the shipment keeps B2");
    assert_eq!(
        store.label(s.id).await.expect("label").as_deref(),
        Some(&b"%PDF-2"[..]),
        "{backend}"
    );
    let past = store.past_bookings(s.id).await.expect("past");
    assert_eq!(
        past.iter()
            .map(|p| (p.delivery_id.as_str(), p.reason, p.has_label))
            .collect::<Vec<_>>(),
        [
            ("B1", PastBookingReason::Superseded, true),
            ("B3", PastBookingReason::Late, true)
        ],
        "{backend}: oldest first"
    );
    for (p, pdf) in past.iter().zip([&b"%PDF-1"[..], &b"%PDF-3"[..]]) {
        assert_eq!(
            store
                .past_label(s.id, p.id)
                .await
                .expect("label")
                .as_deref(),
            Some(pdf),
            "{backend}"
        );
    }
}

async fn a_tracking_change_is_due_for_its_mail_until_marked(
    backend: String,
    (store, _guard): Fresh,
) {
    let s = claimed(store.as_ref(), 33, 6).await;
    let booked = store
        .record_booking(s.id, 0, &booked("B1", b"%PDF"))
        .await
        .expect("booked")
        .shipment()
        .clone();
    assert_eq!(
        booked.tracking_unmailed_since, None,
        "{backend}: a booking is no change"
    );
    let moving = store
        .record_tracking(s.id, ShipmentStatus::InProcess, "En reparto", "", None)
        .await
        .expect("tracking");
    let since = moving
        .tracking_unmailed_since
        .unwrap_or_else(|| panic!("{backend}: the change is due for its mail"));
    // The same poll again (a retry): still due, since the same change.
    let again = store
        .record_tracking(s.id, ShipmentStatus::InProcess, "En reparto", "", None)
        .await
        .expect("tracking");
    assert_eq!(again.tracking_unmailed_since, Some(since), "{backend}");
    // Another change before the mail went: still due, from the first.
    let newer = store
        .record_tracking(s.id, ShipmentStatus::InProcess, "Al centre", "", None)
        .await
        .expect("tracking");
    assert_eq!(newer.tracking_unmailed_since, Some(since), "{backend}");
    assert!(
        !store
            .mark_tracking_mailed(s.id, since + chrono::Duration::milliseconds(1))
            .await
            .expect("mark"),
        "{backend}: another mark is not cleared"
    );
    assert!(
        store.mark_tracking_mailed(s.id, since).await.expect("mark"),
        "{backend}"
    );
    let mailed = store.get(s.id).await.expect("get").expect("row");
    assert_eq!(mailed.tracking_unmailed_since, None, "{backend}");
    // A poll that changes nothing leaves nothing due.
    let same = store
        .record_tracking(s.id, ShipmentStatus::InProcess, "Al centre", "", None)
        .await
        .expect("tracking");
    assert_eq!(same.tracking_unmailed_since, None, "{backend}");
}

async fn status_changes_are_compare_and_set(backend: String, (store, _guard): Fresh) {
    let s = claimed(store.as_ref(), 33, 6).await;
    assert!(
        store
            .transition(s.id, ShipmentStatus::Booking, ShipmentStatus::ErrorFromBody)
            .await
            .expect("cas"),
        "{backend}"
    );
    assert!(
        !store
            .transition(s.id, ShipmentStatus::Booking, ShipmentStatus::LabelSent)
            .await
            .expect("cas"),
        "{backend}: the second compare-and-set finds another status"
    );
    assert_eq!(
        store.get(s.id).await.expect("get").map(|r| r.status),
        Some(ShipmentStatus::ErrorFromBody),
        "{backend}"
    );
    let now = Utc::now();
    assert!(
        store
            .reserve_booking(s.id, ShipmentStatus::LabelSent, 0, now)
            .await
            .expect("reserve")
            .is_none(),
        "{backend}: not in the status seen"
    );
    assert!(
        store
            .reserve_booking(s.id, ShipmentStatus::ErrorFromBody, 1, now)
            .await
            .expect("reserve")
            .is_none(),
        "{backend}: not at the attempt seen"
    );
    assert!(
        !store
            .end_booking(s.id, 0, ShipmentStatus::LabelSent)
            .await
            .expect("end"),
        "{backend}: not BOOKING"
    );
    assert!(
        !store
            .start_booking(s.id, 0, ShipmentStatus::LabelSent)
            .await
            .expect("start"),
        "{backend}: neither BOOKING nor in `from`"
    );
    assert!(
        store
            .start_booking(s.id, 0, ShipmentStatus::ErrorFromBody)
            .await
            .expect("start"),
        "{backend}: in `from`, with the attempt"
    );
    // A claim being booked right now is not taken, whatever the caller saw.
    let fresh = claimed(store.as_ref(), 34, 6).await;
    assert!(
        store
            .reserve_booking(
                fresh.id,
                ShipmentStatus::Booking,
                0,
                Utc::now() - BOOKING_LEASE
            )
            .await
            .expect("reserve")
            .is_none(),
        "{backend}: BOOKING since after `stale_before`"
    );
}

async fn the_label_mail_is_compare_and_set_and_found_by_its_message_id(
    backend: String,
    (store, _guard): Fresh,
) {
    let s = claimed(store.as_ref(), 33, 6).await;
    let other = claimed(store.as_ref(), 34, 6).await;
    assert_eq!(
        (&s.mail_message_id, s.mail_state, s.mail_state_at),
        (&None, None, None),
        "{backend}: no label mail yet"
    );
    let at = Utc::now() - TimeDelta::seconds(5);
    let sent = MailUpdate {
        seen_message_id: None,
        seen_state: None,
        message_id: Some("<lazona.shipment.1.1@x>".into()),
        state: Some(MailState::Sent),
        at: Some(at),
        mailed: true,
    };
    let mailed = store
        .update_mail(s.id, &sent)
        .await
        .expect("update")
        .expect("as seen");
    assert_eq!(
        (mailed.mail_message_id.as_deref(), mailed.mail_state),
        (Some("<lazona.shipment.1.1@x>"), Some(MailState::Sent)),
        "{backend}"
    );
    assert_eq!(
        mailed.mail_state_at.map(|t| t.timestamp_millis()),
        Some(at.timestamp_millis()),
        "{backend}"
    );
    assert!(mailed.mailed_at.is_some(), "{backend}: mailed");
    // Seen as it no longer is: nothing changes.
    assert_eq!(
        store.update_mail(s.id, &sent).await.expect("update"),
        None,
        "{backend}: not as seen"
    );
    let bounced = MailUpdate {
        seen_message_id: mailed.mail_message_id.clone(),
        seen_state: Some(MailState::Sent),
        message_id: mailed.mail_message_id.clone(),
        state: Some(MailState::Bounced),
        at: None,
        mailed: false,
    };
    let now = store
        .update_mail(s.id, &bounced)
        .await
        .expect("update")
        .expect("as seen");
    assert_eq!(now.mail_state, Some(MailState::Bounced), "{backend}");
    assert_eq!(
        now.mailed_at, mailed.mailed_at,
        "{backend}: not mailed again"
    );
    let found = store
        .list(&ShipmentFilter {
            mail_message_id: Some("<lazona.shipment.1.1@x>".into()),
            ..ShipmentFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(
        found.iter().map(|r| r.id).collect::<Vec<_>>(),
        [s.id],
        "{backend}: found by its Message-ID, not {}",
        other.id
    );
    assert!(
        matches!(
            store.update_mail(9999, &bounced).await,
            Err(StoreError::NotFound(9999))
        ),
        "{backend}"
    );
}

async fn listings_filter_and_page_newest_first(backend: String, (store, _guard): Fresh) {
    let mut ids = Vec::new();
    for (order, vendor) in [(1, 5), (1, 6), (2, 5), (3, 7)] {
        ids.push(claimed(store.as_ref(), order, vendor).await.id);
    }
    assert!(
        store
            .transition(
                ids[0],
                ShipmentStatus::Booking,
                ShipmentStatus::ErrorFromBody
            )
            .await
            .expect("cas"),
        "{backend}"
    );
    store
        .record_booking(ids[2], 0, &booked("B-2", b"%PDF"))
        .await
        .expect("record");
    let list = |filter: ShipmentFilter| {
        let store = store.clone();
        async move {
            store
                .list(&filter)
                .await
                .expect("list")
                .into_iter()
                .map(|s| s.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        list(ShipmentFilter::default()).await,
        ids.iter().rev().copied().collect::<Vec<_>>(),
        "{backend}: newest first"
    );
    let cases = [
        (
            "order",
            ShipmentFilter {
                order_id: Some(1),
                ..ShipmentFilter::default()
            },
            vec![ids[1], ids[0]],
        ),
        (
            "vendor",
            ShipmentFilter {
                vendor_id: Some(5),
                ..ShipmentFilter::default()
            },
            vec![ids[2], ids[0]],
        ),
        (
            "status",
            ShipmentFilter {
                status: Some(ShipmentStatus::ErrorFromBody),
                ..ShipmentFilter::default()
            },
            vec![ids[0]],
        ),
        (
            "barcode",
            ShipmentFilter {
                delivery_id: Some("B-2".into()),
                ..ShipmentFilter::default()
            },
            vec![ids[2]],
        ),
        (
            "together",
            ShipmentFilter {
                order_id: Some(1),
                vendor_id: Some(6),
                status: Some(ShipmentStatus::Booking),
                ..ShipmentFilter::default()
            },
            vec![ids[1]],
        ),
        (
            "a page",
            ShipmentFilter {
                before_id: Some(ids[3]),
                limit: 2,
                ..ShipmentFilter::default()
            },
            vec![ids[2], ids[1]],
        ),
        (
            "the last page",
            ShipmentFilter {
                before_id: Some(ids[1]),
                limit: 2,
                ..ShipmentFilter::default()
            },
            vec![ids[0]],
        ),
        (
            "nothing",
            ShipmentFilter {
                vendor_id: Some(99),
                ..ShipmentFilter::default()
            },
            vec![],
        ),
    ];
    for (what, filter, expected) in cases {
        assert_eq!(list(filter).await, expected, "{backend}: by {what}");
    }
}

async fn unknown_ids_are_absent_or_not_found(backend: String, (store, _guard): Fresh) {
    let s = claimed(store.as_ref(), 33, 6).await;
    let unknown = s.id + 1000;
    assert!(
        store.get(unknown).await.expect("get").is_none(),
        "{backend}"
    );
    assert_eq!(
        store.label(unknown).await.expect("label"),
        None,
        "{backend}"
    );
    assert_eq!(
        store.label(s.id).await.expect("label"),
        None,
        "{backend}: not booked"
    );
    assert!(
        store.past_bookings(unknown).await.expect("past").is_empty(),
        "{backend}"
    );
    assert_eq!(
        store.past_label(unknown, 1).await.expect("past label"),
        None,
        "{backend}"
    );
    assert!(
        store.of_order(34).await.expect("of order").is_empty(),
        "{backend}"
    );
    assert!(
        matches!(
            store.record_booking(unknown, 0, &booked("B1", b"%PDF")).await,
            Err(StoreError::NotFound(id)) if id == unknown
        ),
        "{backend}: record_booking"
    );
    assert!(
        matches!(
            store.mark_mailed(unknown).await,
            Err(StoreError::NotFound(id)) if id == unknown
        ),
        "{backend}: mark_mailed"
    );
    assert!(
        matches!(
            store
                .record_tracking(unknown, ShipmentStatus::Delivered, "", "", None)
                .await,
            Err(StoreError::NotFound(id)) if id == unknown
        ),
        "{backend}: record_tracking"
    );
    assert!(
        !store
            .transition(unknown, ShipmentStatus::Booking, ShipmentStatus::Delivered)
            .await
            .expect("cas"),
        "{backend}"
    );
    assert!(
        store
            .reserve_booking(unknown, ShipmentStatus::Booking, 0, Utc::now())
            .await
            .expect("reserve")
            .is_none(),
        "{backend}"
    );
    assert!(
        !store
            .start_booking(unknown, 0, ShipmentStatus::Booking)
            .await
            .expect("start"),
        "{backend}"
    );
    assert!(
        !store
            .end_booking(unknown, 0, ShipmentStatus::LabelSent)
            .await
            .expect("end"),
        "{backend}"
    );
    assert!(
        store.past_bookings(unknown).await.expect("past").is_empty(),
        "{backend}: a late booking of no shipment is not kept"
    );
}
