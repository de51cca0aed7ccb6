//! `lazona webhooks list` and `show`: the error column holds why a webhook failed or was
//! rejected, never a processed order's summary; `--json` keeps the last note as `error`.

use crate::support::{database, run, stdout_json};
use adapters::db::SqlInbox;
use adapters::testing::TestDb;
use bytes::Bytes;
use chrono::Utc;
use domain::model::{NewWebhook, Resource, WebhookStatus};
use domain::ports::WebhookInbox;

pub(crate) fn webhook(delivery: &str, subject: i64) -> NewWebhook {
    NewWebhook {
        resource: Resource::Order,
        topic: Some("order.created".into()),
        event: Some("created".into()),
        delivery_id: Some(delivery.into()),
        wc_webhook_id: Some(3),
        source: None,
        subject_id: Some(subject),
        subject_modified: None,
        headers: Vec::new(),
        body: Bytes::from(format!(r#"{{"id":{subject}}}"#)),
        received_at: Utc::now(),
        status: WebhookStatus::Queued,
        error: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_error_column_shows_failures_only() {
    let db = TestDb::sqlite();
    let database = database(&db.url).await;
    let inbox = SqlInbox::start(database, &adapters::testing::settings_for(&db.url).inbox);
    const SUMMARY: &str = "booked 1, refused 0, picked up 0, already there 0, other methods 0";
    const FAILURE: &str = "the order body does not parse";
    let processed = inbox.record(webhook("d-1", 1)).await.expect("record").id;
    let failed = inbox.record(webhook("d-2", 2)).await.expect("record").id;
    for (id, to, note) in [
        (processed, WebhookStatus::Processed, SUMMARY),
        (failed, WebhookStatus::Failed, FAILURE),
    ] {
        let moved = inbox
            .transition(id, WebhookStatus::Queued, to, Some(note.into()))
            .await
            .expect("transition");
        assert!(moved);
    }

    let out = run(&db.url, &["webhooks", "list"]).await;
    assert!(out.status.success());
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(table.lines().next().is_some_and(|h| h.ends_with("error")));
    let row = |id: i64| {
        table
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{id} ")))
            .unwrap_or_else(|| panic!("no row {id}: {table}"))
            .to_owned()
    };
    assert!(row(failed.0).ends_with(FAILURE), "{table}");
    assert!(!row(processed.0).contains("booked"), "{table}");

    let show = run(&db.url, &["webhooks", "show", &processed.0.to_string()]).await;
    let text = String::from_utf8_lossy(&show.stdout).into_owned();
    assert!(text.contains(&format!("note      {SUMMARY}")), "{text}");
    assert!(!text.contains("error     "), "{text}");
    let show = run(&db.url, &["webhooks", "show", &failed.0.to_string()]).await;
    let text = String::from_utf8_lossy(&show.stdout).into_owned();
    assert!(text.contains(&format!("error     {FAILURE}")), "{text}");

    // JSON is unchanged: `error` is the last note, whatever the status.
    let rows = stdout_json(&run(&db.url, &["webhooks", "list", "--json"]).await);
    let note = |id: i64| {
        rows.as_array()
            .and_then(|rows| rows.iter().find(|r| r["id"] == id))
            .map(|r| r["error"].clone())
    };
    assert_eq!(note(processed.0), Some(SUMMARY.into()), "{rows}");
    assert_eq!(note(failed.0), Some(FAILURE.into()), "{rows}");
}
