//! The SQL event log: appended, read after a cursor (all, or one vendor's), pruned; the inbox's
//! `webhook_received` events written with the webhooks, on every backend.

use adapters::db::{Database, SqlEventLog, SqlInbox};
use adapters::testing::TestDb;
use domain::model::{EventId, EventKind, NewEvent, NewWebhook, Resource, WebhookStatus};
use domain::ports::{EventLog, WebhookInbox};

async fn database(url: &str) -> Database {
    let settings = adapters::testing::settings_for(url);
    let db = Database::connect(&settings.database).await.expect("db");
    db.migrate().await.expect("migrate");
    db
}

#[tokio::test]
async fn events_are_read_after_a_cursor_by_vendor_and_pruned_by_age() {
    for (backend, test_db) in TestDb::all().await {
        let db = database(&test_db.url).await;
        let log = SqlEventLog::new(db.clone());
        assert_eq!(log.last_id().await.expect("last"), EventId(0), "{backend}");

        let mut old = NewEvent::now(EventKind::JobDead, "old").job(1);
        old.at = chrono::Utc::now() - chrono::Duration::days(8);
        log.append(&[
            old,
            NewEvent::now(EventKind::ShipmentBooked, "six").shipment(1, 33, 6),
            NewEvent::now(EventKind::ShipmentBooked, "seven").shipment(2, 33, 7),
            NewEvent::now(EventKind::LabelMailed, "six mailed").shipment(1, 33, 6),
        ])
        .await
        .expect("append");

        let all = log.read(EventId(0), None, 100).await.expect("read");
        assert_eq!(all.len(), 4, "{backend}");
        assert!(
            all.windows(2).all(|w| w[0].id < w[1].id),
            "{backend}: id order"
        );
        assert_eq!(all[1].data.vendor_id, Some(6));
        assert_eq!(all[1].data.order_id, Some(33));
        assert_eq!(all[1].data.kind, EventKind::ShipmentBooked);
        assert_eq!(log.last_id().await.expect("last"), all[3].id, "{backend}");

        let after_first = log.read(all[0].id, None, 2).await.expect("read");
        assert_eq!(
            after_first.iter().map(|e| e.id).collect::<Vec<_>>(),
            [all[1].id, all[2].id],
            "{backend}: after the cursor, at most the limit"
        );
        let six = log.read(EventId(0), Some(6), 100).await.expect("read");
        assert_eq!(
            six.iter()
                .map(|e| e.data.message.as_str())
                .collect::<Vec<_>>(),
            ["six", "six mailed"],
            "{backend}"
        );

        let pruned = log
            .prune(chrono::Utc::now() - chrono::Duration::days(7))
            .await
            .expect("prune");
        assert_eq!(pruned, 1, "{backend}");
        assert_eq!(
            log.read(EventId(0), None, 100).await.expect("read").len(),
            3
        );
    }
}

fn webhook(delivery: &str, topic: &str, status: WebhookStatus) -> NewWebhook {
    NewWebhook {
        resource: Resource::Order,
        topic: Some(topic.into()),
        event: Some("created".into()),
        delivery_id: Some(delivery.into()),
        wc_webhook_id: None,
        source: None,
        subject_id: Some(33),
        subject_modified: None,
        headers: Vec::new(),
        body: bytes::Bytes::from_static(b"{\"id\":33}"),
        received_at: chrono::Utc::now(),
        status,
        error: None,
    }
}

#[tokio::test]
async fn the_inbox_writes_one_webhook_received_event_per_stored_webhook() {
    for (backend, test_db) in TestDb::all().await {
        let db = database(&test_db.url).await;
        let cfg = adapters::testing::settings_for(&test_db.url).inbox;
        let inbox = SqlInbox::start(db.clone(), &cfg);
        let log = SqlEventLog::new(db.clone());
        let (a, b, again) = tokio::join!(
            inbox.record(webhook("d-1", "order.created", WebhookStatus::Queued)),
            inbox.record(webhook("d-2", "order.deleted", WebhookStatus::Ignored)),
            inbox.record(webhook("d-1", "order.created", WebhookStatus::Queued)),
        );
        let (a, b, again) = (a.expect("a"), b.expect("b"), again.expect("again"));
        assert_eq!(again.id, a.id, "{backend}: a duplicate");

        let events = log.read(EventId(0), None, 100).await.expect("read");
        assert_eq!(
            events.len(),
            2,
            "{backend}: none for the duplicate: {events:?}"
        );
        let of = |id: i64| {
            events
                .iter()
                .find(|e| e.data.webhook_id == Some(id))
                .unwrap_or_else(|| panic!("{backend}: no event for webhook {id}"))
        };
        let first = of(a.id.0);
        assert_eq!(first.data.kind, EventKind::WebhookReceived);
        assert_eq!(first.data.message, "order.created queued", "{backend}");
        assert_eq!(first.data.order_id, Some(33));
        assert_eq!(first.data.vendor_id, None);
        assert_eq!(
            of(b.id.0).data.message,
            "order.deleted ignored",
            "{backend}"
        );
    }
}
