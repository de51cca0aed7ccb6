//! The SQL job queue: reserve, complete, retry, dead-letter, leases.

use crate::helpers::open;
use adapters::testing::TestDb;
use chrono::Utc;
use domain::error::QueueError;
use domain::model::{JobKind, NewJob, WebhookId};
use domain::ports::JobQueue;
use std::collections::HashSet;
use std::time::Duration;

fn job(n: i64) -> NewJob {
    NewJob {
        kind: JobKind::ProcessWebhook {
            webhook_id: WebhookId(n),
        },
        run_at: None,
    }
}

#[tokio::test]
async fn every_job_is_delivered_and_a_completed_job_never_returns() {
    for (backend, db) in TestDb::all().await {
        let (_db, _, queue, _) = open(&db).await;
        for n in 0..25 {
            queue.enqueue(job(n)).await.expect("enqueue");
        }
        let mut seen = HashSet::new();
        loop {
            let jobs = queue
                .reserve(10, Duration::from_secs(60))
                .await
                .expect("reserve");
            if jobs.is_empty() {
                break;
            }
            for j in &jobs {
                assert!(seen.insert(j.id), "{backend}: {} delivered twice", j.id);
                assert_eq!(j.attempt, 1, "{backend}");
            }
            queue
                .complete(&jobs.iter().map(|j| j.id).collect::<Vec<_>>())
                .await
                .expect("complete");
        }
        assert_eq!(seen.len(), 25, "{backend}");
        assert_eq!(queue.stats().await.expect("stats").pending, 0, "{backend}");
    }
}

#[tokio::test]
async fn a_job_whose_lease_ends_is_delivered_again() {
    for (backend, db) in TestDb::all().await {
        let (_db, _, queue, _) = open(&db).await;
        let id = queue.enqueue(job(1)).await.expect("enqueue");
        let first = queue
            .reserve(1, Duration::from_millis(200))
            .await
            .expect("reserve");
        assert_eq!(first[0].id, id, "{backend}");
        assert!(
            queue
                .reserve(1, Duration::from_secs(60))
                .await
                .expect("reserve")
                .is_empty(),
            "{backend}: held"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        let again = queue
            .reserve(1, Duration::from_secs(60))
            .await
            .expect("reserve");
        assert_eq!(again[0].id, id, "{backend}");
        assert_eq!(again[0].attempt, 2, "{backend}");
    }
}

#[tokio::test]
async fn retries_wait_for_their_time_and_dead_jobs_stay_dead() {
    for (backend, db) in TestDb::all().await {
        let (_db, _, queue, _) = open(&db).await;
        let a = queue.enqueue(job(1)).await.expect("enqueue");
        let b = queue.enqueue(job(2)).await.expect("enqueue");
        let jobs = queue
            .reserve(2, Duration::from_secs(60))
            .await
            .expect("reserve");
        assert_eq!(jobs.len(), 2, "{backend}");
        queue
            .retry(
                a,
                Utc::now() + chrono::Duration::milliseconds(300),
                "koiki 503",
            )
            .await
            .expect("retry");
        queue.dead_letter(b, "koiki said 102").await.expect("dead");
        assert!(
            queue
                .reserve(5, Duration::from_secs(60))
                .await
                .expect("reserve")
                .is_empty(),
            "{backend}: not due yet"
        );
        tokio::time::sleep(Duration::from_millis(400)).await;
        let due = queue
            .reserve(5, Duration::from_secs(60))
            .await
            .expect("reserve");
        assert_eq!(
            due.iter().map(|j| j.id).collect::<Vec<_>>(),
            [a],
            "{backend}: the dead job never comes back"
        );
        let stats = queue.stats().await.expect("stats");
        assert_eq!((stats.pending, stats.dead), (1, 1), "{backend}");
        assert!(
            matches!(
                queue.retry(b, Utc::now(), "x").await,
                Err(QueueError::NotFound(_))
            ),
            "{backend}"
        );
    }
}

#[tokio::test]
async fn concurrent_reservers_never_share_a_job() {
    for (backend, db) in TestDb::all().await {
        let (_db, _, queue, _) = open(&db).await;
        for n in 0..200 {
            queue.enqueue(job(n)).await.expect("enqueue");
        }
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..4 {
            let queue = queue.clone();
            set.spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let jobs = queue
                        .reserve(7, Duration::from_secs(60))
                        .await
                        .expect("reserve");
                    if jobs.is_empty() {
                        return mine;
                    }
                    mine.extend(jobs.iter().map(|j| j.id));
                }
            });
        }
        let all: Vec<_> = set.join_all().await.into_iter().flatten().collect();
        let distinct: HashSet<_> = all.iter().collect();
        assert_eq!(all.len(), 200, "{backend}");
        assert_eq!(distinct.len(), 200, "{backend}: no job reserved twice");
    }
}
