//! The alerts store's contract on memory, SQLite and (with `TEST_DATABASE_URL`) Postgres: one
//! open alert per (kind, subject), counted on repeat; resolved once; due per channel until told.

use crate::helpers::open;
use adapters::db::SqlAlertStore;
use adapters::memory::MemoryAlertStore;
use adapters::testing::TestDb;
use chrono::{TimeDelta, Utc};
use domain::model::{AlertChannel, AlertFilter, AlertKind, AlertState, NewAlert, Raised};
use domain::ports::AlertStore;

fn alert(kind: AlertKind, subject: &str) -> NewAlert {
    NewAlert {
        kind,
        subject: subject.to_owned(),
        summary: format!("{kind} {subject}"),
        detail: "what happened".into(),
    }
}

async fn contract_holds(name: &str, store: &dyn AlertStore) {
    let start = Utc::now() - TimeDelta::seconds(1);
    let first = store
        .raise(&alert(AlertKind::JobDead, "job:1"))
        .await
        .expect("raise");
    let Raised::Opened(opened) = first else {
        panic!("{name}: the first raise opens, got {first:?}")
    };
    assert_eq!(
        (opened.count, opened.state),
        (1, AlertState::Open),
        "{name}"
    );
    assert!(opened.mail_due && opened.hook_due, "{name}: due everywhere");

    let mut repeat = alert(AlertKind::JobDead, "job:1");
    repeat.detail = "again".into();
    let again = store.raise(&repeat).await.expect("raise");
    let Raised::Repeated(counted) = again else {
        panic!("{name}: a repeat counts, got {again:?}")
    };
    assert_eq!((counted.id, counted.count), (opened.id, 2), "{name}");
    assert_eq!(counted.detail, "again", "{name}: the latest detail");

    // Another subject, another kind: other alerts.
    let other = store
        .raise(&alert(AlertKind::JobDead, "job:2"))
        .await
        .expect("raise");
    let stuck = store
        .raise(&alert(AlertKind::BookingStuck, "shipment:1"))
        .await
        .expect("raise");
    assert!(matches!(other, Raised::Opened(_)), "{name}");
    assert!(matches!(stuck, Raised::Opened(_)), "{name}");
    assert_eq!(store.opened_since(start).await.expect("count"), 3, "{name}");
    assert_eq!(
        store.open_counts().await.expect("counts"),
        vec![(AlertKind::JobDead, 2), (AlertKind::BookingStuck, 1)],
        "{name}"
    );
    let mut subjects = store
        .open_subjects(AlertKind::JobDead)
        .await
        .expect("subjects");
    subjects.sort();
    assert_eq!(subjects, ["job:1", "job:2"], "{name}");

    // Due per channel until told.
    let (counts, max) = store.due_counts(AlertChannel::Mail).await.expect("due");
    assert_eq!(max, Some(stuck.alert().id), "{name}");
    assert_eq!(counts.iter().map(|(_, n)| n).sum::<u64>(), 3, "{name}");
    store
        .delivered(AlertChannel::Mail, opened.id, opened.id)
        .await
        .expect("told");
    let due: Vec<i64> = store
        .due(AlertChannel::Mail, 10)
        .await
        .expect("due")
        .iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(due, [other.alert().id, stuck.alert().id], "{name}");
    assert_eq!(
        store.due(AlertChannel::Hook, 10).await.expect("due").len(),
        3,
        "{name}: the other channel still has all three"
    );
    store
        .delivered(AlertChannel::Mail, 0, i64::MAX)
        .await
        .expect("told");
    assert_eq!(
        store.due_counts(AlertChannel::Mail).await.expect("due"),
        (vec![], None),
        "{name}"
    );

    // Resolved once; the next raise opens a new alert.
    let resolved = store
        .resolve(AlertKind::JobDead, "job:1", "auto")
        .await
        .expect("resolve")
        .expect("it was open");
    assert_eq!(resolved.state, AlertState::Resolved, "{name}");
    assert_eq!(resolved.resolved_by.as_deref(), Some("auto"), "{name}");
    assert!(
        store
            .resolve(AlertKind::JobDead, "job:1", "auto")
            .await
            .expect("resolve")
            .is_none(),
        "{name}: nothing left open"
    );
    let reopened = store
        .raise(&alert(AlertKind::JobDead, "job:1"))
        .await
        .expect("raise");
    assert!(
        matches!(&reopened, Raised::Opened(a) if a.id != opened.id && a.count == 1),
        "{name}: {reopened:?}"
    );
    let by_hand = store
        .resolve_id(other.alert().id, "ana")
        .await
        .expect("resolve")
        .expect("known");
    assert_eq!(by_hand.resolved_by.as_deref(), Some("ana"), "{name}");
    assert!(
        store
            .resolve_id(9999, "ana")
            .await
            .expect("resolve")
            .is_none()
    );

    let open = store
        .list(&AlertFilter {
            state: Some(AlertState::Open),
            ..AlertFilter::default()
        })
        .await
        .expect("list");
    let open_ids: Vec<i64> = open.iter().map(|a| a.id).collect();
    assert_eq!(
        open_ids,
        [reopened.alert().id, stuck.alert().id],
        "{name}: newest first"
    );
    let dead = store
        .list(&AlertFilter {
            kind: Some(AlertKind::JobDead),
            limit: 2,
            ..AlertFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(dead.len(), 2, "{name}: the limit holds");
    assert_eq!(
        store.get(opened.id).await.expect("get").map(|a| a.count),
        Some(2),
        "{name}"
    );
}

#[tokio::test]
async fn alerts_are_opened_once_counted_told_and_resolved_on_every_backend() {
    contract_holds("memory", &MemoryAlertStore::new()).await;
    for (name, db) in TestDb::all().await {
        let (database, ..) = open(&db).await;
        contract_holds(name, &SqlAlertStore::new(database)).await;
    }
}

#[tokio::test]
async fn raisers_racing_on_one_subject_open_one_alert() {
    for (name, db) in TestDb::all().await {
        let (database, ..) = open(&db).await;
        let store = std::sync::Arc::new(SqlAlertStore::new(database));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .raise(&alert(AlertKind::TrackingError, "shipment:9"))
                    .await
            }));
        }
        let mut opened = 0;
        for t in tasks {
            if matches!(t.await.expect("task").expect("raise"), Raised::Opened(_)) {
                opened += 1;
            }
        }
        assert_eq!(opened, 1, "{name}");
        let all = store.list(&AlertFilter::default()).await.expect("list");
        assert_eq!(all.len(), 1, "{name}");
        assert_eq!(all[0].count, 8, "{name}");
    }
}
