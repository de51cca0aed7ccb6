//! The shipment store: one shipment per (order, vendor), even when workers race.

use crate::helpers::open;
use adapters::db::SqlShipmentStore;
use adapters::testing::TestDb;
use domain::model::{BookingOutcome, Claim, ShipmentMethod, ShipmentStatus};
use domain::ports::ShipmentStore;

#[tokio::test]
async fn racing_claims_on_one_vendor_give_exactly_one_booking() {
    for (backend, db) in TestDb::all().await {
        let (database, _, _, _) = open(&db).await;
        let store = SqlShipmentStore::new(database);
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
        let ids: std::collections::HashSet<i64> = claims
            .iter()
            .map(|c| match c {
                Claim::Claimed(s) | Claim::Exists(s) => s.id,
            })
            .collect();
        assert_eq!(ids.len(), 1, "{backend}: one shipment row");
        assert_eq!(
            store.of_order(33).await.expect("of order").len(),
            1,
            "{backend}"
        );
    }
}

/// Writes waiting together are committed together (claims in one `INSERT`, mail marks in one
/// `UPDATE`): each caller still gets its own row, a pair claimed twice in one batch is claimed
/// once, and an unknown id is not found.
#[tokio::test]
async fn many_jobs_writing_at_once_each_get_their_own_row() {
    for (backend, db) in TestDb::all().await {
        let (database, _, _, _) = open(&db).await;
        let store = SqlShipmentStore::new(database);
        let mut set = tokio::task::JoinSet::new();
        for order in 0..40_i64 {
            for _ in 0..2 {
                let store = store.clone();
                set.spawn(async move {
                    let claim = store
                        .claim(1000 + order, order % 3, ShipmentMethod::Koiki)
                        .await
                        .expect("claim");
                    (order, claim)
                });
            }
        }
        let claims = set.join_all().await;
        let mut won = std::collections::HashMap::new();
        for (order, claim) in &claims {
            let s = match claim {
                Claim::Claimed(s) => {
                    assert!(
                        won.insert(*order, s.id).is_none(),
                        "{backend}: {order} won twice"
                    );
                    s
                }
                Claim::Exists(s) => s,
            };
            assert_eq!(
                (s.order_id, s.vendor_id, s.status),
                (1000 + order, order % 3, ShipmentStatus::Booking),
                "{backend}"
            );
        }
        assert_eq!(won.len(), 40, "{backend}: one claim won per order");

        // Bookings at once (one UPDATE from a list of values): each row gets its own outcome.
        let mut set = tokio::task::JoinSet::new();
        for (order, id) in won.clone() {
            let store = store.clone();
            set.spawn(async move {
                let outcome = BookingOutcome {
                    status: if order % 5 == 0 {
                        ShipmentStatus::ErrorFromBody
                    } else {
                        ShipmentStatus::LabelSent
                    },
                    delivery_id: format!("CODE{order}"),
                    request: format!("{{\"order\": {order}}}"),
                    message: format!("answer {order}"),
                    label_pdf: (order % 5 != 0).then(|| format!("%PDF {order}").into_bytes()),
                };
                let s = store
                    .record_booking(id, 0, &outcome)
                    .await
                    .expect("recorded")
                    .current()
                    .expect("on the shipment");
                assert_eq!(
                    (
                        s.id,
                        s.delivery_id.as_str(),
                        s.message.as_str(),
                        s.has_label
                    ),
                    (
                        id,
                        outcome.delivery_id.as_str(),
                        outcome.message.as_str(),
                        order % 5 != 0
                    )
                );
                assert_eq!(store.label(id).await.expect("label"), outcome.label_pdf);
            });
        }
        set.join_all().await;

        let mut set = tokio::task::JoinSet::new();
        for (order, id) in won.clone() {
            let store = store.clone();
            set.spawn(async move {
                let s = store.mark_mailed(id).await.expect("mailed");
                assert_eq!((s.id, s.order_id), (id, 1000 + order));
                assert!(s.mailed_at.is_some());
            });
        }
        let store2 = store.clone();
        set.spawn(async move {
            assert!(matches!(
                store2.mark_mailed(999_999).await,
                Err(domain::error::StoreError::NotFound(999_999))
            ));
        });
        set.join_all().await;
        for id in won.values() {
            let s = store.get(*id).await.expect("get").expect("row");
            assert!(s.mailed_at.is_some(), "{backend}: {id} mailed");
        }
    }
}

#[tokio::test]
async fn a_booking_is_recorded_with_its_label_then_tracked() {
    for (backend, db) in TestDb::all().await {
        let (database, _, _, _) = open(&db).await;
        let store = SqlShipmentStore::new(database);
        let Claim::Claimed(claimed) = store
            .claim(33, 6, ShipmentMethod::Koiki)
            .await
            .expect("claim")
        else {
            panic!("{backend}: first claim wins");
        };
        assert_eq!(claimed.status, ShipmentStatus::Booking, "{backend}");
        let outcome = BookingOutcome {
            status: ShipmentStatus::LabelSent,
            delivery_id: "yyy".into(),
            request: r#"{"numPedido":"xxx"}"#.into(),
            message: "OK".into(),
            label_pdf: Some(b"%PDF-1.4 label".to_vec()),
        };
        let booked = store
            .record_booking(claimed.id, 0, &outcome)
            .await
            .expect("record")
            .current()
            .expect("on the shipment");
        assert_eq!(booked.status, ShipmentStatus::LabelSent, "{backend}");
        assert_eq!(booked.delivery_id, "yyy", "{backend}");
        assert!(booked.has_label, "{backend}");
        assert!(booked.mailed_at.is_none(), "{backend}");
        assert_eq!(
            store.label(claimed.id).await.expect("label").as_deref(),
            Some(&b"%PDF-1.4 label"[..]),
            "{backend}"
        );
        store.mark_mailed(claimed.id).await.expect("mailed");
        assert_eq!(
            store.to_track().await.expect("to track").len(),
            1,
            "{backend}"
        );
        let tracked = store
            .record_tracking(
                claimed.id,
                ShipmentStatus::Delivered,
                "Envío entregado",
                "",
                Some("2021-07-26T09:49:37+0000".into()),
            )
            .await
            .expect("tracking");
        assert_eq!(tracked.status, ShipmentStatus::Delivered, "{backend}");
        assert!(
            tracked.tracking_updated_at.is_some() && tracked.mailed_at.is_some(),
            "{backend}"
        );
        assert!(
            store.to_track().await.expect("to track").is_empty(),
            "{backend}: delivered is not tracked"
        );
        let again = store
            .claim(33, 6, ShipmentMethod::Koiki)
            .await
            .expect("claim");
        assert!(
            matches!(again, Claim::Exists(s) if s.status == ShipmentStatus::Delivered),
            "{backend}"
        );
        assert!(
            matches!(
                store.mark_mailed(999).await,
                Err(domain::error::StoreError::NotFound(999))
            ),
            "{backend}"
        );
    }
}

#[tokio::test]
async fn status_changes_are_compare_and_set_and_listing_filters_newest_first() {
    use domain::model::ShipmentFilter;
    for (backend, db) in TestDb::all().await {
        let (database, _, _, _) = open(&db).await;
        let store = SqlShipmentStore::new(database);
        let mut ids = Vec::new();
        for (order, vendor) in [(1, 5), (1, 6), (2, 5)] {
            match store
                .claim(order, vendor, ShipmentMethod::Koiki)
                .await
                .expect("claim")
            {
                Claim::Claimed(s) => ids.push(s.id),
                Claim::Exists(_) => panic!("{backend}: new"),
            }
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
        assert!(
            !store
                .transition(ids[0], ShipmentStatus::Booking, ShipmentStatus::LabelSent)
                .await
                .expect("cas"),
            "{backend}: the second compare-and-set finds another status"
        );
        let all = store.list(&ShipmentFilter::default()).await.expect("list");
        assert_eq!(
            all.iter().map(|s| s.id).collect::<Vec<_>>(),
            ids.iter().rev().copied().collect::<Vec<_>>(),
            "{backend}: newest first"
        );
        let vendor5 = store
            .list(&ShipmentFilter {
                vendor_id: Some(5),
                ..Default::default()
            })
            .await
            .expect("list");
        assert_eq!(vendor5.len(), 2, "{backend}");
        let failed = store
            .list(&ShipmentFilter {
                status: Some(ShipmentStatus::ErrorFromBody),
                ..Default::default()
            })
            .await
            .expect("list");
        assert_eq!(
            failed.iter().map(|s| s.id).collect::<Vec<_>>(),
            vec![ids[0]]
        );
        let page = store
            .list(&ShipmentFilter {
                before_id: Some(ids[2]),
                limit: 1,
                ..Default::default()
            })
            .await
            .expect("list");
        assert_eq!(page.iter().map(|s| s.id).collect::<Vec<_>>(), vec![ids[1]]);
    }
}
