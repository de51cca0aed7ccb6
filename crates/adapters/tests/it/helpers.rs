//! Connecting to a throwaway database.

use adapters::config::Settings;
use adapters::db::{Database, SqlInbox, SqlJobQueue};
use adapters::testing::TestDb;
use bytes::Bytes;
use domain::model::{NewWebhook, Resource, WebhookStatus};

pub(crate) async fn open(db: &TestDb) -> (Database, SqlInbox, SqlJobQueue, Settings) {
    let settings = adapters::testing::settings_for(&db.url);
    let database = Database::connect(&settings.database)
        .await
        .expect("connect");
    database.migrate().await.expect("migrate");
    let inbox = SqlInbox::start(database.clone(), &settings.inbox);
    let queue = SqlJobQueue::new(database.clone());
    (database, inbox, queue, settings)
}

pub(crate) fn webhook(delivery_id: Option<&str>, status: WebhookStatus) -> NewWebhook {
    NewWebhook {
        resource: Resource::Order,
        topic: Some("order.created".into()),
        event: Some("created".into()),
        delivery_id: delivery_id.map(str::to_owned),
        wc_webhook_id: Some(3),
        source: Some("https://lazona.example/".into()),
        subject_id: Some(33),
        subject_modified: None,
        headers: vec![("x-wc-webhook-topic".into(), "order.created".into())],
        body: Bytes::from_static(br#"{"id": 33, "note": "\u00e8 \\/"}"#),
        received_at: chrono::DateTime::from_timestamp_millis(1_700_000_000_123).expect("time"),
        status,
        error: (status == WebhookStatus::Rejected).then(|| "id: this field is required".into()),
    }
}
