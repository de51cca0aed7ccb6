//! The inbox: atomic write of webhook and job, deduplication, reads.

use crate::helpers::{open, webhook};
use adapters::testing::TestDb;
use domain::model::{RecordOutcome, WebhookFilter, WebhookStatus};
use domain::ports::{JobQueue, WebhookInbox};
use std::time::Duration;

#[tokio::test]
async fn a_recorded_webhook_reads_back_exactly_with_one_job() {
    for (backend, db) in TestDb::all().await {
        let (_db, inbox, queue, _) = open(&db).await;
        let sent = webhook(Some("d-1"), WebhookStatus::Queued);
        let rec = inbox.record(sent.clone()).await.expect("recorded");
        assert_eq!(rec.outcome, RecordOutcome::Stored, "{backend}");
        let got = inbox.get(rec.id).await.expect("get").expect("found");
        assert_eq!(
            got.data, sent,
            "{backend}: every field and the body byte for byte"
        );
        let jobs = queue
            .reserve(10, Duration::from_secs(60), Duration::ZERO)
            .await
            .expect("reserve");
        assert_eq!(jobs.len(), 1, "{backend}");
        assert_eq!(
            jobs[0].kind,
            domain::model::JobKind::ProcessWebhook { webhook_id: rec.id },
            "{backend}"
        );
    }
}

#[tokio::test]
async fn deliveries_are_deduplicated_within_and_across_batches() {
    for (backend, db) in TestDb::all().await {
        let (_db, inbox, queue, _) = open(&db).await;
        let first = inbox
            .record(webhook(Some("dup"), WebhookStatus::Queued))
            .await
            .expect("first");
        // Many at once, so that several share a batch.
        let mut set = tokio::task::JoinSet::new();
        for i in 0..50 {
            let inbox = inbox.clone();
            let id = if i % 2 == 0 {
                "dup".to_owned()
            } else {
                format!("d-{}", i / 4)
            };
            set.spawn(async move {
                (
                    id.clone(),
                    inbox
                        .record(webhook(Some(&id), WebhookStatus::Queued))
                        .await,
                )
            });
        }
        let results = set.join_all().await;
        for (id, r) in &results {
            let r = r.as_ref().expect("recorded");
            if id == "dup" {
                assert_eq!(r.outcome, RecordOutcome::Duplicate, "{backend}");
                assert_eq!(r.id, first.id, "{backend}");
            }
        }
        let distinct: std::collections::HashSet<_> =
            results.iter().map(|(id, _)| id.clone()).collect();
        assert_eq!(
            inbox.count().await.expect("count"),
            distinct.len() as u64,
            "{backend}"
        );
        let stats = queue.stats().await.expect("stats");
        assert_eq!(
            stats.pending,
            distinct.len() as u64,
            "{backend}: one job per stored webhook"
        );
    }
}

#[tokio::test]
async fn webhooks_without_a_delivery_id_are_all_kept() {
    for (backend, db) in TestDb::all().await {
        let (_db, inbox, _, _) = open(&db).await;
        for _ in 0..3 {
            let r = inbox
                .record(webhook(None, WebhookStatus::Queued))
                .await
                .expect("recorded");
            assert_eq!(r.outcome, RecordOutcome::Stored, "{backend}");
        }
        assert_eq!(inbox.count().await.expect("count"), 3, "{backend}");
    }
}

#[tokio::test]
async fn rejected_and_ignored_webhooks_are_kept_without_a_job() {
    for (backend, db) in TestDb::all().await {
        let (_db, inbox, queue, _) = open(&db).await;
        inbox
            .record(webhook(Some("r"), WebhookStatus::Rejected))
            .await
            .expect("recorded");
        inbox
            .record(webhook(Some("i"), WebhookStatus::Ignored))
            .await
            .expect("recorded");
        assert_eq!(queue.stats().await.expect("stats").pending, 0, "{backend}");
        let rejected = inbox
            .list(&WebhookFilter {
                status: Some(WebhookStatus::Rejected),
                ..Default::default()
            })
            .await
            .expect("list");
        assert_eq!(rejected.len(), 1, "{backend}");
        assert_eq!(
            rejected[0].error.as_deref(),
            Some("id: this field is required"),
            "{backend}"
        );
    }
}

#[tokio::test]
async fn listing_filters_and_pages_newest_first() {
    for (backend, db) in TestDb::all().await {
        let (_db, inbox, _, _) = open(&db).await;
        let mut ids = Vec::new();
        for i in 0..5 {
            ids.push(
                inbox
                    .record(webhook(Some(&format!("l-{i}")), WebhookStatus::Queued))
                    .await
                    .expect("r")
                    .id,
            );
        }
        inbox
            .transition(
                ids[1],
                WebhookStatus::Queued,
                WebhookStatus::Processed,
                None,
            )
            .await
            .expect("status");
        let page = inbox
            .list(&WebhookFilter {
                limit: 2,
                ..Default::default()
            })
            .await
            .expect("list");
        assert_eq!(
            page.iter().map(|w| w.id).collect::<Vec<_>>(),
            [ids[4], ids[3]],
            "{backend}"
        );
        let next = inbox
            .list(&WebhookFilter {
                limit: 2,
                before_id: Some(ids[3]),
                ..Default::default()
            })
            .await
            .expect("list");
        assert_eq!(
            next.iter().map(|w| w.id).collect::<Vec<_>>(),
            [ids[2], ids[1]],
            "{backend}"
        );
        let processed = inbox
            .list(&WebhookFilter {
                status: Some(WebhookStatus::Processed),
                ..Default::default()
            })
            .await
            .expect("list");
        assert_eq!(processed.len(), 1, "{backend}");
        let by_delivery = inbox
            .list(&WebhookFilter {
                delivery_id: Some("l-2".into()),
                ..Default::default()
            })
            .await
            .expect("list");
        assert_eq!(by_delivery[0].id, ids[2], "{backend}");
        let got = inbox.get(ids[1]).await.expect("get").expect("found");
        assert!(got.processed_at.is_some(), "{backend}");
        let history = inbox.history(ids[1]).await.expect("history");
        assert_eq!(history.len(), 1, "{backend}");
        assert_eq!(history[0].status, WebhookStatus::Processed, "{backend}");
        let again = inbox
            .transition(
                ids[1],
                WebhookStatus::Queued,
                WebhookStatus::Processed,
                None,
            )
            .await
            .expect("transition");
        assert!(!again, "{backend}: compare-and-set refuses a second move");
        assert_eq!(
            inbox.history(ids[1]).await.expect("history").len(),
            1,
            "{backend}"
        );
    }
}

#[tokio::test]
async fn sqlite_runs_in_wal_mode_with_full_sync() {
    use sea_orm::{ConnectionTrait, Statement};
    let db = TestDb::sqlite();
    let (database, _, _, _) = open(&db).await;
    for (pragma, expected) in [("journal_mode", "wal"), ("synchronous", "2")] {
        let row = database
            .conn()
            .query_one_raw(Statement::from_string(
                database.backend(),
                format!("PRAGMA {pragma}"),
            ))
            .await
            .expect("pragma")
            .expect("row");
        let value = row
            .try_get_by_index::<String>(0)
            .or_else(|_| row.try_get_by_index::<i64>(0).map(|v| v.to_string()))
            .expect("value");
        assert_eq!(value, expected, "PRAGMA {pragma}");
    }
}

#[tokio::test]
async fn servers_and_workers_starting_together_migrate_once() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let settings = adapters::testing::settings_for(&db.url);
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let cfg = settings.database.clone();
        set.spawn(async move {
            let database = adapters::db::Database::connect(&cfg)
                .await
                .expect("connect");
            database.migrate().await
        });
    }
    for result in set.join_all().await {
        result.expect("every process's migration succeeds");
    }
}
