//! What the shop loop keeps, on every backend: the named values (compare-and-set) and the
//! inbox's order versions, on memory, SQLite and (with `TEST_DATABASE_URL`) Postgres.

use crate::helpers::{open, webhook};
use adapters::db::SqlStateStore;
use adapters::memory::MemoryStateStore;
use adapters::testing::TestDb;
use chrono::{DateTime, Utc};
use domain::model::{Resource, WebhookStatus};
use domain::ports::{StateStore, WebhookInbox};

async fn compare_and_set_holds(name: &str, state: &dyn StateStore) {
    assert_eq!(state.get("k").await.expect("get"), None, "{name}");
    assert!(
        state.compare_and_set("k", None, "1").await.expect("cas"),
        "{name}"
    );
    assert!(
        !state.compare_and_set("k", None, "2").await.expect("cas"),
        "{name}: set already"
    );
    assert!(
        !state
            .compare_and_set("k", Some("0"), "2")
            .await
            .expect("cas"),
        "{name}: not 0"
    );
    assert!(
        state
            .compare_and_set("k", Some("1"), "2")
            .await
            .expect("cas"),
        "{name}"
    );
    assert_eq!(
        state.get("k").await.expect("get").as_deref(),
        Some("2"),
        "{name}"
    );
    assert_eq!(state.get("other").await.expect("get"), None, "{name}");
}

#[tokio::test]
async fn named_values_are_compared_and_set_on_every_backend() {
    compare_and_set_holds("memory", &MemoryStateStore::new()).await;
    for (name, db) in TestDb::all().await {
        let (database, ..) = open(&db).await;
        compare_and_set_holds(name, &SqlStateStore::new(database)).await;
    }
}

fn at(text: &str) -> DateTime<Utc> {
    text.parse().expect("a time")
}

#[tokio::test]
async fn the_inbox_says_the_latest_modification_it_holds_of_each_order() {
    for (name, db) in TestDb::all().await {
        let (_, inbox, _, _) = open(&db).await;
        let stored = [
            (1, Some("2026-12-07T08:00:00Z"), Resource::Order),
            (1, Some("2026-12-07T09:00:00Z"), Resource::Order),
            (2, None, Resource::Order),
            // A customer with the same id is not an order.
            (3, Some("2026-12-07T10:00:00Z"), Resource::Customer),
        ];
        for (i, (id, modified, resource)) in stored.into_iter().enumerate() {
            let mut w = webhook(Some(&format!("v-{i}")), WebhookStatus::Ignored);
            w.resource = resource;
            w.subject_id = Some(id);
            w.subject_modified = modified.map(at);
            inbox.record(w).await.expect("stored");
        }
        let versions = inbox.order_versions(&[1, 2, 3, 4]).await.expect("read");
        assert_eq!(versions.len(), 2, "{name}: {versions:?}");
        assert_eq!(versions[&1], Some(at("2026-12-07T09:00:00Z")), "{name}");
        assert_eq!(versions[&2], None, "{name}");
        // The modification is kept with the webhook.
        let got = inbox
            .get(domain::model::WebhookId(2))
            .await
            .expect("read")
            .expect("there");
        assert_eq!(
            got.data.subject_modified,
            Some(at("2026-12-07T09:00:00Z")),
            "{name}"
        );
    }
}
