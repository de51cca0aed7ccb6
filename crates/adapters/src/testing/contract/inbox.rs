//! The [`WebhookInbox`] contract: a webhook is stored once per delivery (its
//! [`NewWebhook::dedupe_key`]: delivery id, endpoint, topic and body), with its `ProcessWebhook`
//! job when queued; it reads back as sent; status moves are compare-and-set and leave a history;
//! listings are newest first, filtered and paged by id.
//!
//! The factory gives the inbox and the queue its `record` enqueues into (only this suite's jobs
//! are in it).

use super::{Checks, check, run_checks};
use bytes::Bytes;
use chrono::{DateTime, TimeDelta, Utc};
use domain::model::{
    JobKind, NewWebhook, RecordOutcome, Resource, WebhookFilter, WebhookId, WebhookStatus,
};
use domain::ports::{JobQueue, WebhookInbox};
use std::any::Any;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// A fresh, empty inbox; the queue its jobs go to; what keeps their storage alive.
pub type Fresh = (
    Arc<dyn WebhookInbox>,
    Arc<dyn JobQueue>,
    Box<dyn Any + Send>,
);

const CHECKS: Checks<Fresh> = &[
    check!(Fresh, a_recorded_webhook_reads_back_exactly_with_one_job),
    check!(Fresh, a_redelivery_is_a_duplicate_of_the_first),
    check!(
        Fresh,
        the_same_delivery_id_with_another_body_topic_or_endpoint_is_new
    ),
    check!(Fresh, webhooks_without_a_delivery_id_are_all_kept),
    check!(Fresh, concurrent_redeliveries_store_one_webhook),
    check!(Fresh, rejected_and_ignored_webhooks_are_kept_without_a_job),
    check!(Fresh, unknown_ids_are_absent),
    check!(Fresh, transitions_are_compare_and_set_with_a_history),
    check!(Fresh, racing_transitions_move_a_webhook_once),
    check!(Fresh, listings_are_newest_first_and_paged_by_id),
    check!(Fresh, listing_filters_narrow),
];

/// The names of the checks, in the order they run.
pub fn checks() -> Vec<&'static str> {
    super::names(CHECKS)
}

/// Runs every check, each on a fresh inbox from `make`.
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

/// A time with whole milliseconds (what every backend keeps), `offset_ms` after a fixed instant.
fn at(offset_ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(1_700_000_000_000 + offset_ms).expect("time")
}

fn webhook(delivery_id: Option<&str>, body: &str) -> NewWebhook {
    NewWebhook {
        resource: Resource::Order,
        topic: Some("order.created".into()),
        event: Some("created".into()),
        delivery_id: delivery_id.map(str::to_owned),
        wc_webhook_id: Some(3),
        source: Some("https://lazona.example/".into()),
        subject_id: Some(33),
        subject_modified: None,
        headers: vec![
            ("x-wc-webhook-topic".into(), "order.created".into()),
            ("content-type".into(), "application/json".into()),
        ],
        body: Bytes::from(body.to_owned()),
        received_at: at(123),
        status: WebhookStatus::Queued,
        error: None,
    }
}

/// Everything due in `queue` now, completed.
async fn take_jobs(queue: &dyn JobQueue) -> Vec<JobKind> {
    let mut kinds = Vec::new();
    loop {
        let jobs = queue
            .reserve(100, Duration::from_secs(60), Duration::ZERO)
            .await
            .expect("reserve");
        if jobs.is_empty() {
            return kinds;
        }
        kinds.extend(jobs.iter().map(|j| j.kind.clone()));
        queue.complete(&jobs).await.expect("complete");
    }
}

async fn a_recorded_webhook_reads_back_exactly_with_one_job(
    backend: String,
    (inbox, queue, _guard): Fresh,
) {
    inbox.ping().await.expect("ping");
    assert_eq!(inbox.count().await.expect("count"), 0, "{backend}: empty");
    let sent = webhook(Some("d-1"), r#"{"id": 33, "note": "\u00e8 \\/", "x": "é"}"#);
    let rec = inbox.record(sent.clone()).await.expect("record");
    assert_eq!(rec.outcome, RecordOutcome::Stored, "{backend}");
    let got = inbox.get(rec.id).await.expect("get").expect("stored");
    assert_eq!(got.id, rec.id, "{backend}");
    assert_eq!(
        got.data, sent,
        "{backend}: every field, the body byte for byte"
    );
    assert_eq!(
        (got.last_error, got.processed_at),
        (None, None),
        "{backend}"
    );
    assert_eq!(inbox.count().await.expect("count"), 1, "{backend}");
    assert!(
        inbox.history(rec.id).await.expect("history").is_empty(),
        "{backend}: no move yet"
    );
    assert_eq!(
        take_jobs(queue.as_ref()).await,
        vec![JobKind::ProcessWebhook { webhook_id: rec.id }],
        "{backend}: its job, once"
    );
}

async fn a_redelivery_is_a_duplicate_of_the_first(backend: String, (inbox, queue, _guard): Fresh) {
    let first = webhook(Some("d-1"), r#"{"id": 33}"#);
    let stored = inbox.record(first.clone()).await.expect("record");
    // WooCommerce sends it again later: the same delivery and bytes, other headers and time.
    let mut again = first.clone();
    again.received_at = at(60_000);
    again.headers.push(("x-retry".into(), "1".into()));
    let dup = inbox.record(again).await.expect("record again");
    assert_eq!(dup.outcome, RecordOutcome::Duplicate, "{backend}");
    assert_eq!(dup.id, stored.id, "{backend}: the first one's id");
    assert_eq!(inbox.count().await.expect("count"), 1, "{backend}");
    assert_eq!(
        inbox
            .get(stored.id)
            .await
            .expect("get")
            .expect("stored")
            .data,
        first,
        "{backend}: the first copy is kept as it was"
    );
    assert_eq!(
        take_jobs(queue.as_ref()).await.len(),
        1,
        "{backend}: no job for the duplicate"
    );
}

async fn the_same_delivery_id_with_another_body_topic_or_endpoint_is_new(
    backend: String,
    (inbox, queue, _guard): Fresh,
) {
    let base = webhook(Some("d-1"), r#"{"id": 33}"#);
    let other_body = webhook(Some("d-1"), r#"{"id": 34}"#);
    let mut other_topic = base.clone();
    other_topic.topic = Some("order.updated".into());
    let mut other_endpoint = base.clone();
    other_endpoint.resource = Resource::Customer;
    let mut ids = Vec::new();
    for w in [base, other_body, other_topic, other_endpoint] {
        let r = inbox.record(w).await.expect("record");
        assert_eq!(r.outcome, RecordOutcome::Stored, "{backend}");
        ids.push(r.id);
    }
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 4, "{backend}: four webhooks");
    assert_eq!(inbox.count().await.expect("count"), 4, "{backend}");
    assert_eq!(take_jobs(queue.as_ref()).await.len(), 4, "{backend}");
}

async fn webhooks_without_a_delivery_id_are_all_kept(
    backend: String,
    (inbox, _queue, _guard): Fresh,
) {
    let mut ids = Vec::new();
    for _ in 0..3 {
        let r = inbox
            .record(webhook(None, r#"{"id": 33}"#))
            .await
            .expect("record");
        assert_eq!(r.outcome, RecordOutcome::Stored, "{backend}");
        ids.push(r.id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 3, "{backend}");
    assert_eq!(inbox.count().await.expect("count"), 3, "{backend}");
}

async fn concurrent_redeliveries_store_one_webhook(backend: String, (inbox, queue, _guard): Fresh) {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let inbox = inbox.clone();
        set.spawn(async move {
            inbox
                .record(webhook(Some("d-race"), r#"{"id": 33}"#))
                .await
                .expect("record")
        });
    }
    let results = set.join_all().await;
    let stored = results
        .iter()
        .filter(|r| r.outcome == RecordOutcome::Stored)
        .count();
    assert_eq!(stored, 1, "{backend}: one copy stored");
    assert!(
        results.iter().all(|r| r.id == results[0].id),
        "{backend}: every copy answers the stored id"
    );
    assert_eq!(inbox.count().await.expect("count"), 1, "{backend}");
    assert_eq!(take_jobs(queue.as_ref()).await.len(), 1, "{backend}");
}

async fn rejected_and_ignored_webhooks_are_kept_without_a_job(
    backend: String,
    (inbox, queue, _guard): Fresh,
) {
    let mut rejected = webhook(Some("r"), "not json");
    rejected.status = WebhookStatus::Rejected;
    rejected.error = Some("id: this field is required".into());
    let mut ignored = webhook(Some("i"), r#"{"id": 33}"#);
    ignored.status = WebhookStatus::Ignored;
    ignored.error = Some("topic order.deleted is not handled".into());
    for w in [rejected, ignored] {
        let r = inbox.record(w.clone()).await.expect("record");
        assert_eq!(r.outcome, RecordOutcome::Stored, "{backend}");
        let got = inbox.get(r.id).await.expect("get").expect("stored");
        assert_eq!(got.data, w, "{backend}: with its status and reason");
    }
    assert!(
        take_jobs(queue.as_ref()).await.is_empty(),
        "{backend}: no job"
    );
    let listed = inbox
        .list(&WebhookFilter {
            status: Some(WebhookStatus::Rejected),
            ..WebhookFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(listed.len(), 1, "{backend}");
    assert_eq!(
        listed[0].error.as_deref(),
        Some("id: this field is required"),
        "{backend}: the reason is listed"
    );
}

async fn unknown_ids_are_absent(backend: String, (inbox, _queue, _guard): Fresh) {
    let r = inbox
        .record(webhook(Some("d-1"), "{}"))
        .await
        .expect("record");
    let unknown = WebhookId(r.id.0 + 1000);
    assert!(
        inbox.get(unknown).await.expect("get").is_none(),
        "{backend}"
    );
    assert!(
        inbox.history(unknown).await.expect("history").is_empty(),
        "{backend}"
    );
    assert!(
        !inbox
            .transition(
                unknown,
                WebhookStatus::Queued,
                WebhookStatus::Processed,
                None
            )
            .await
            .expect("transition"),
        "{backend}: nothing to move"
    );
}

async fn transitions_are_compare_and_set_with_a_history(
    backend: String,
    (inbox, _queue, _guard): Fresh,
) {
    let ok = inbox
        .record(webhook(Some("ok"), "{}"))
        .await
        .expect("record")
        .id;
    let bad = inbox
        .record(webhook(Some("bad"), "{}"))
        .await
        .expect("record")
        .id;
    let before = Utc::now() - TimeDelta::seconds(1);
    assert!(
        inbox
            .transition(ok, WebhookStatus::Queued, WebhookStatus::Processed, None)
            .await
            .expect("transition"),
        "{backend}"
    );
    assert!(
        !inbox
            .transition(ok, WebhookStatus::Queued, WebhookStatus::Failed, None)
            .await
            .expect("transition"),
        "{backend}: not in `from` any more: refused"
    );
    let got = inbox.get(ok).await.expect("get").expect("stored");
    assert!(got.processed_at.is_some(), "{backend}: processing ended");
    assert_eq!(got.last_error, None, "{backend}");
    let history = inbox.history(ok).await.expect("history");
    assert_eq!(
        history.len(),
        1,
        "{backend}: a refused move leaves no trace"
    );
    assert_eq!(
        (history[0].status, history[0].detail.as_deref()),
        (WebhookStatus::Processed, None),
        "{backend}"
    );
    assert!(history[0].at >= before, "{backend}: when it moved");

    assert!(
        inbox
            .transition(
                bad,
                WebhookStatus::Queued,
                WebhookStatus::Failed,
                Some("koiki said 102".into())
            )
            .await
            .expect("transition"),
        "{backend}"
    );
    assert!(
        inbox
            .transition(
                bad,
                WebhookStatus::Failed,
                WebhookStatus::Queued,
                Some("replayed".into())
            )
            .await
            .expect("transition"),
        "{backend}: moved back by an operator"
    );
    let history = inbox.history(bad).await.expect("history");
    assert_eq!(
        history
            .iter()
            .map(|e| (e.status, e.detail.as_deref()))
            .collect::<Vec<_>>(),
        [
            (WebhookStatus::Failed, Some("koiki said 102")),
            (WebhookStatus::Queued, Some("replayed"))
        ],
        "{backend}: oldest first"
    );
    assert!(history[0].at <= history[1].at, "{backend}");
    let got = inbox.get(bad).await.expect("get").expect("stored");
    assert_eq!(
        got.last_error.as_deref(),
        Some("replayed"),
        "{backend}: the last error recorded"
    );
    let listed = inbox
        .list(&WebhookFilter::default())
        .await
        .expect("list")
        .into_iter()
        .map(|w| (w.id, w.status))
        .collect::<Vec<_>>();
    assert_eq!(
        listed,
        [(bad, WebhookStatus::Queued), (ok, WebhookStatus::Processed)],
        "{backend}: listed in their new status"
    );
}

async fn racing_transitions_move_a_webhook_once(backend: String, (inbox, _queue, _guard): Fresh) {
    let id = inbox
        .record(webhook(Some("race"), "{}"))
        .await
        .expect("record")
        .id;
    let mut set = tokio::task::JoinSet::new();
    for n in 0..8 {
        let inbox = inbox.clone();
        set.spawn(async move {
            inbox
                .transition(
                    id,
                    WebhookStatus::Queued,
                    WebhookStatus::Processed,
                    Some(format!("worker {n}")),
                )
                .await
                .expect("transition")
        });
    }
    let moved = set.join_all().await.into_iter().filter(|m| *m).count();
    assert_eq!(moved, 1, "{backend}: one worker moves it");
    assert_eq!(
        inbox.history(id).await.expect("history").len(),
        1,
        "{backend}: one move in the history"
    );
}

async fn listings_are_newest_first_and_paged_by_id(
    backend: String,
    (inbox, _queue, _guard): Fresh,
) {
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            inbox
                .record(webhook(Some(&format!("l-{i}")), "{}"))
                .await
                .expect("record")
                .id,
        );
    }
    let all = inbox.list(&WebhookFilter::default()).await.expect("list");
    assert_eq!(
        all.iter().map(|w| w.id).collect::<Vec<_>>(),
        ids.iter().rev().copied().collect::<Vec<_>>(),
        "{backend}: newest first"
    );
    let sent = webhook(Some("l-4"), "{}");
    let top = &all[0];
    assert_eq!(
        (
            top.resource,
            top.topic.as_deref(),
            top.delivery_id.as_deref(),
            top.subject_id,
            top.status,
            top.received_at,
            top.error.as_deref()
        ),
        (
            sent.resource,
            sent.topic.as_deref(),
            Some("l-4"),
            sent.subject_id,
            WebhookStatus::Queued,
            sent.received_at,
            None
        ),
        "{backend}: a summary shows what was stored"
    );
    let page = |before_id, limit| WebhookFilter {
        before_id,
        limit,
        ..WebhookFilter::default()
    };
    let first = inbox.list(&page(None, 2)).await.expect("list");
    assert_eq!(
        first.iter().map(|w| w.id).collect::<Vec<_>>(),
        [ids[4], ids[3]],
        "{backend}: at most the limit"
    );
    let second = inbox.list(&page(Some(ids[3]), 2)).await.expect("list");
    assert_eq!(
        second.iter().map(|w| w.id).collect::<Vec<_>>(),
        [ids[2], ids[1]],
        "{backend}: below the cursor"
    );
    let last = inbox.list(&page(Some(ids[1]), 2)).await.expect("list");
    assert_eq!(
        last.iter().map(|w| w.id).collect::<Vec<_>>(),
        [ids[0]],
        "{backend}"
    );
    assert!(
        inbox
            .list(&page(Some(ids[0]), 2))
            .await
            .expect("list")
            .is_empty(),
        "{backend}: past the oldest"
    );
}

async fn listing_filters_narrow(backend: String, (inbox, _queue, _guard): Fresh) {
    let a = webhook(Some("a"), r#"{"id": 1}"#);
    let mut b = webhook(Some("b"), r#"{"id": 2}"#);
    b.topic = Some("order.updated".into());
    b.subject_id = Some(44);
    b.received_at = at(10_000);
    let mut c = webhook(Some("c"), r#"{"id": 3}"#);
    c.resource = Resource::Customer;
    c.topic = Some("customer.created".into());
    c.subject_id = Some(55);
    c.received_at = at(20_000);
    let mut ids = Vec::new();
    for w in [a, b, c] {
        ids.push(inbox.record(w).await.expect("record").id);
    }
    assert!(
        inbox
            .transition(
                ids[1],
                WebhookStatus::Queued,
                WebhookStatus::Processed,
                None
            )
            .await
            .expect("transition"),
        "{backend}"
    );
    let cases = [
        (
            "resource",
            WebhookFilter {
                resource: Some(Resource::Customer),
                ..WebhookFilter::default()
            },
            vec![ids[2]],
        ),
        (
            "topic",
            WebhookFilter {
                topic: Some("order.updated".into()),
                ..WebhookFilter::default()
            },
            vec![ids[1]],
        ),
        (
            "status",
            WebhookFilter {
                status: Some(WebhookStatus::Queued),
                ..WebhookFilter::default()
            },
            vec![ids[2], ids[0]],
        ),
        (
            "subject",
            WebhookFilter {
                subject_id: Some(55),
                ..WebhookFilter::default()
            },
            vec![ids[2]],
        ),
        (
            "delivery id",
            WebhookFilter {
                delivery_id: Some("a".into()),
                ..WebhookFilter::default()
            },
            vec![ids[0]],
        ),
        (
            "since (inclusive)",
            WebhookFilter {
                since: Some(at(10_000)),
                ..WebhookFilter::default()
            },
            vec![ids[2], ids[1]],
        ),
        (
            "until (exclusive)",
            WebhookFilter {
                until: Some(at(10_000)),
                ..WebhookFilter::default()
            },
            vec![ids[0]],
        ),
        (
            "together",
            WebhookFilter {
                resource: Some(Resource::Order),
                status: Some(WebhookStatus::Queued),
                ..WebhookFilter::default()
            },
            vec![ids[0]],
        ),
        (
            "nothing matches",
            WebhookFilter {
                delivery_id: Some("zzz".into()),
                ..WebhookFilter::default()
            },
            vec![],
        ),
    ];
    for (what, filter, expected) in cases {
        let got = inbox.list(&filter).await.expect("list");
        assert_eq!(
            got.iter().map(|w| w.id).collect::<Vec<_>>(),
            expected,
            "{backend}: filter by {what}"
        );
    }
}
