//! The mail events store's contract on memory, SQLite and (with `TEST_DATABASE_URL`) Postgres:
//! an event stored once per (provider, dedupe key), its redelivery answered with the stored
//! one's id and status; settled with its shipment; listed newest first, by shipment and status.

use crate::helpers::open;
use adapters::db::SqlMailEventStore;
use adapters::memory::MemoryMailEventStore;
use adapters::testing::TestDb;
use domain::model::{MailEventFilter, MailEventStatus, MailState, NewMailEvent, RecordedMailEvent};
use domain::ports::MailEventStore;

fn bounce(key: Option<&str>) -> NewMailEvent {
    let mut e = NewMailEvent::new(
        "mandrill",
        "hard_bounce",
        r#"{"event":"hard_bounce","msg":{"email":"v@example.coop"}}"#.into(),
    );
    e.state = Some(MailState::Bounced);
    e.email = Some("v@example.coop".into());
    e.message_id = Some("<lazona.shipment.7.1@x>".into());
    e.shipment_id = Some(7);
    e.provider_id = Some("abc123".into());
    e.detail = Some("bad_mailbox: smtp;550".into());
    e.occurred_at = chrono::DateTime::from_timestamp(1_700_000_000, 123_000_000);
    e.dedupe_key = key.map(str::to_owned);
    e
}

async fn contract_holds(name: &str, store: &dyn MailEventStore) {
    let first = store
        .record(&bounce(Some("abc123:hard_bounce:1")))
        .await
        .expect("record");
    let RecordedMailEvent::Inserted(id) = first else {
        panic!("{name}: stored, got {first:?}")
    };
    assert_eq!(
        store
            .record(&bounce(Some("abc123:hard_bounce:1")))
            .await
            .expect("record"),
        RecordedMailEvent::Duplicate {
            id,
            status: MailEventStatus::Received
        },
        "{name}: a redelivery"
    );
    let mut other_provider = bounce(Some("abc123:hard_bounce:1"));
    other_provider.provider = "other".into();
    assert!(
        matches!(
            store.record(&other_provider).await.expect("record"),
            RecordedMailEvent::Inserted(_)
        ),
        "{name}: keys are per provider"
    );
    // No key: never a duplicate.
    let a = store.record(&bounce(None)).await.expect("record");
    let b = store.record(&bounce(None)).await.expect("record");
    assert_ne!(a, b, "{name}");

    store
        .settle(id, MailEventStatus::Applied, Some(7), None)
        .await
        .expect("settle");
    assert_eq!(
        store
            .record(&bounce(Some("abc123:hard_bounce:1")))
            .await
            .expect("record"),
        RecordedMailEvent::Duplicate {
            id,
            status: MailEventStatus::Applied
        },
        "{name}"
    );
    let got = store.get(id).await.expect("get").expect("stored");
    let want = bounce(Some("abc123:hard_bounce:1"));
    assert_eq!(got.data.status, MailEventStatus::Applied, "{name}");
    assert_eq!(got.data.state, Some(MailState::Bounced), "{name}");
    assert_eq!(got.data.raw, want.raw, "{name}");
    assert_eq!(got.data.detail, want.detail, "{name}");
    assert_eq!(got.data.provider_id.as_deref(), Some("abc123"), "{name}");
    assert_eq!(
        got.data.occurred_at.map(|t| t.timestamp_millis()),
        want.occurred_at.map(|t| t.timestamp_millis()),
        "{name}"
    );

    let RecordedMailEvent::Inserted(unmatched) = a else {
        panic!("{name}")
    };
    store
        .settle(
            unmatched,
            MailEventStatus::Unmatched,
            None,
            Some("no shipment 7".into()),
        )
        .await
        .expect("settle");
    let mut malformed = NewMailEvent::new("mandrill", "malformed", "not json".into());
    malformed.status = MailEventStatus::Malformed;
    malformed.error = Some("expected value at line 1".into());
    let RecordedMailEvent::Inserted(bad) = store.record(&malformed).await.expect("record") else {
        panic!("{name}")
    };

    let of_shipment = store
        .list(&MailEventFilter {
            shipment_id: Some(7),
            ..MailEventFilter::default()
        })
        .await
        .expect("list");
    assert!(
        of_shipment.iter().all(|e| e.data.shipment_id == Some(7)),
        "{name}"
    );
    assert!(
        !of_shipment.iter().any(|e| e.id == unmatched),
        "{name}: the unmatched one has no shipment now"
    );
    let malformed = store
        .list(&MailEventFilter {
            status: Some(MailEventStatus::Malformed),
            ..MailEventFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(malformed.len(), 1, "{name}");
    assert_eq!(malformed[0].id, bad, "{name}");
    assert_eq!(malformed[0].data.raw, "not json", "{name}");
    let all = store.list(&MailEventFilter::default()).await.expect("list");
    let ids: Vec<i64> = all.iter().map(|e| e.id).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable_by(|x, y| y.cmp(x));
    assert_eq!(ids, sorted, "{name}: newest first");
    assert_eq!(ids.len(), 5, "{name}");
    let page = store
        .list(&MailEventFilter {
            before_id: Some(ids[1]),
            limit: 2,
            ..MailEventFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(
        page.iter().map(|e| e.id).collect::<Vec<_>>(),
        ids[2..4],
        "{name}"
    );
    assert!(store.get(9999).await.expect("get").is_none(), "{name}");
}

#[tokio::test]
async fn mail_events_are_stored_once_settled_and_listed_on_every_backend() {
    contract_holds("memory", &MemoryMailEventStore::new()).await;
    for (name, db) in TestDb::all().await {
        let (database, ..) = open(&db).await;
        contract_holds(name, &SqlMailEventStore::new(database)).await;
    }
}
