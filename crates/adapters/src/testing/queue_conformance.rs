//! The `JobQueue` conformance suite: the port's contract, checked against any backend.
//!
//! A backend's test calls [`run_all`] with a factory that makes a fresh, empty
//! queue storage and returns several handles onto it (as several worker processes would have),
//! plus a guard that keeps the storage alive.

use chrono::Utc;
use domain::error::QueueError;
use domain::model::{JobId, JobKind, NewJob};
use domain::ports::JobQueue;
use std::any::Any;
use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Handles onto one fresh queue storage, and what keeps that storage alive.
pub type Fresh = (Vec<Arc<dyn JobQueue>>, Box<dyn Any + Send>);

const LONG: Duration = Duration::from_secs(60);
const NO_WAIT: Duration = Duration::ZERO;

fn noop(tag: u64) -> NewJob {
    NewJob {
        kind: JobKind::Noop { tag },
        run_at: None,
    }
}

fn tag(kind: &JobKind) -> u64 {
    match kind {
        JobKind::Noop { tag } => *tag,
        other => panic!("unexpected job {other:?}"),
    }
}

/// Runs every check, each on a fresh storage from `make` (which must give at least two
/// handles). Panics, naming the backend and the check, on the first broken promise.
pub async fn run_all<F, Fut>(backend: &str, make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Fresh>,
{
    every_enqueued_job_is_delivered(backend, make().await).await;
    a_job_whose_lease_ends_is_delivered_again(backend, make().await).await;
    an_acknowledged_job_never_comes_back(backend, make().await).await;
    retries_come_back_not_before_their_time(backend, make().await).await;
    dead_jobs_come_back_only_when_requeued(backend, make().await).await;
    a_lost_lease_cannot_record_an_outcome(backend, make().await).await;
    extended_leases_keep_jobs_from_other_workers(backend, make().await).await;
    concurrent_workers_never_hold_the_same_job(backend, make().await).await;
    one_worker_wins_each_periodic_tick(backend, make().await).await;
}

async fn drain_ids(q: &dyn JobQueue) -> Vec<u64> {
    let mut seen = Vec::new();
    loop {
        let jobs = q
            .reserve(16, LONG, Duration::from_millis(100))
            .await
            .expect("reserve");
        if jobs.is_empty() {
            return seen;
        }
        seen.extend(jobs.iter().map(|j| tag(&j.kind)));
        q.complete(&jobs).await.expect("complete");
    }
}

async fn every_enqueued_job_is_delivered(backend: &str, (qs, _guard): Fresh) {
    for n in 0..100 {
        qs[0].enqueue(noop(n)).await.expect("enqueue");
    }
    let stats = qs[0].stats().await.expect("stats");
    assert_eq!(stats.pending, 100, "{backend}: stats count waiting jobs");
    let mut seen = drain_ids(qs[1].as_ref()).await;
    seen.sort_unstable();
    assert_eq!(
        seen,
        (0..100).collect::<Vec<_>>(),
        "{backend}: every job delivered once"
    );
    assert_eq!(
        qs[0].stats().await.expect("stats").pending,
        0,
        "{backend}: drained"
    );
}

async fn a_job_whose_lease_ends_is_delivered_again(backend: &str, (qs, _guard): Fresh) {
    qs[0].enqueue(noop(1)).await.expect("enqueue");
    let first = qs[0]
        .reserve(1, Duration::from_millis(300), NO_WAIT)
        .await
        .expect("reserve");
    assert_eq!(first.len(), 1, "{backend}");
    assert_eq!(first[0].attempt, 1, "{backend}");
    let held = qs[1].reserve(1, LONG, NO_WAIT).await.expect("reserve");
    assert!(
        held.is_empty(),
        "{backend}: not delivered again while its lease runs"
    );
    tokio::time::sleep(Duration::from_millis(450)).await;
    let again = qs[1]
        .reserve(1, LONG, Duration::from_millis(500))
        .await
        .expect("reserve");
    assert_eq!(again.len(), 1, "{backend}: delivered again after the lease");
    assert_eq!(again[0].id, first[0].id, "{backend}");
    assert_eq!(again[0].attempt, 2, "{backend}: the attempt counts");
}

async fn an_acknowledged_job_never_comes_back(backend: &str, (qs, _guard): Fresh) {
    qs[0].enqueue(noop(1)).await.expect("enqueue");
    let jobs = qs[0]
        .reserve(1, Duration::from_millis(200), NO_WAIT)
        .await
        .expect("reserve");
    qs[0].complete(&jobs).await.expect("complete");
    tokio::time::sleep(Duration::from_millis(350)).await;
    let after = qs[1]
        .reserve(10, LONG, Duration::from_millis(200))
        .await
        .expect("reserve");
    assert!(
        after.is_empty(),
        "{backend}: a completed job never comes back"
    );
}

async fn retries_come_back_not_before_their_time(backend: &str, (qs, _guard): Fresh) {
    qs[0].enqueue(noop(7)).await.expect("enqueue");
    let jobs = qs[0].reserve(1, LONG, NO_WAIT).await.expect("reserve");
    let at = Utc::now() + chrono::Duration::milliseconds(600);
    qs[0]
        .retry(&jobs[0], at, "carrier 503")
        .await
        .expect("retry");
    let early = qs[1].reserve(1, LONG, NO_WAIT).await.expect("reserve");
    assert!(early.is_empty(), "{backend}: not before its time");
    tokio::time::sleep(Duration::from_millis(750)).await;
    let due = qs[1]
        .reserve(1, LONG, Duration::from_millis(500))
        .await
        .expect("reserve");
    assert_eq!(due.len(), 1, "{backend}: back when due");
    assert_eq!(due[0].id, jobs[0].id, "{backend}");
    assert_eq!(due[0].attempt, 2, "{backend}");
    assert!(Utc::now() >= at, "{backend}");
}

async fn dead_jobs_come_back_only_when_requeued(backend: &str, (qs, _guard): Fresh) {
    qs[0].enqueue(noop(3)).await.expect("enqueue");
    let jobs = qs[0]
        .reserve(1, Duration::from_millis(200), NO_WAIT)
        .await
        .expect("reserve");
    qs[0]
        .dead_letter(&jobs[0], "koiki said 102")
        .await
        .expect("dead");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        qs[1]
            .reserve(5, LONG, NO_WAIT)
            .await
            .expect("reserve")
            .is_empty(),
        "{backend}: dead stays dead"
    );
    let dead = qs[1].dead_jobs(10).await.expect("dead jobs");
    assert_eq!(dead.len(), 1, "{backend}");
    assert_eq!(dead[0].id, jobs[0].id, "{backend}");
    assert_eq!(dead[0].error, "koiki said 102", "{backend}");
    assert_eq!(tag(&dead[0].kind), 3, "{backend}");
    assert_eq!(qs[0].stats().await.expect("stats").dead, 1, "{backend}");
    assert!(
        matches!(
            qs[1].requeue_dead(JobId(i64::MAX)).await,
            Err(QueueError::NotFound(_))
        ),
        "{backend}: requeueing an unknown job"
    );
    qs[1].requeue_dead(jobs[0].id).await.expect("requeue");
    let back = qs[0]
        .reserve(1, LONG, Duration::from_millis(500))
        .await
        .expect("reserve");
    assert_eq!(back.len(), 1, "{backend}: requeued");
    assert_eq!(back[0].id, jobs[0].id, "{backend}");
    assert!(
        qs[0].dead_jobs(10).await.expect("dead").is_empty(),
        "{backend}"
    );
}

async fn a_lost_lease_cannot_record_an_outcome(backend: &str, (qs, _guard): Fresh) {
    qs[0].enqueue(noop(5)).await.expect("enqueue");
    let mine = qs[0]
        .reserve(1, Duration::from_millis(200), NO_WAIT)
        .await
        .expect("reserve");
    tokio::time::sleep(Duration::from_millis(350)).await;
    let theirs = qs[1]
        .reserve(1, LONG, Duration::from_millis(500))
        .await
        .expect("reserve");
    assert_eq!(theirs.len(), 1, "{backend}");
    assert!(
        matches!(
            qs[0].retry(&mine[0], Utc::now(), "late").await,
            Err(QueueError::LeaseLost(_))
        ),
        "{backend}: retry with a lost lease"
    );
    assert!(
        matches!(
            qs[0].dead_letter(&mine[0], "late").await,
            Err(QueueError::LeaseLost(_))
        ),
        "{backend}: dead-letter with a lost lease"
    );
    qs[0]
        .complete(&mine)
        .await
        .expect("a stale completion is skipped");
    qs[1].complete(&theirs).await.expect("complete");
    assert_eq!(qs[0].stats().await.expect("stats").pending, 0, "{backend}");
}

async fn extended_leases_keep_jobs_from_other_workers(backend: &str, (qs, _guard): Fresh) {
    qs[0].enqueue(noop(9)).await.expect("enqueue");
    let lease = Duration::from_millis(300);
    let mine = qs[0].reserve(1, lease, NO_WAIT).await.expect("reserve");
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        qs[0].extend(&mine, lease).await.expect("extend");
    }
    let theirs = qs[1].reserve(1, LONG, NO_WAIT).await.expect("reserve");
    assert!(
        theirs.is_empty(),
        "{backend}: an extended lease holds the job"
    );
    qs[0].complete(&mine).await.expect("complete");
}

async fn concurrent_workers_never_hold_the_same_job(backend: &str, (qs, _guard): Fresh) {
    for n in 0..200 {
        qs[0].enqueue(noop(n)).await.expect("enqueue");
    }
    let held: Arc<std::sync::Mutex<HashSet<u64>>> = Arc::default();
    let mut set = tokio::task::JoinSet::new();
    for q in qs.clone() {
        let held = held.clone();
        set.spawn(async move {
            let mut mine = Vec::new();
            loop {
                let jobs = q
                    .reserve(7, LONG, Duration::from_millis(100))
                    .await
                    .expect("reserve");
                if jobs.is_empty() {
                    return mine;
                }
                for j in &jobs {
                    let t = tag(&j.kind);
                    assert!(
                        held.lock().expect("lock").insert(t),
                        "job {t} held twice at once"
                    );
                    mine.push(t);
                }
                tokio::task::yield_now().await;
                for j in &jobs {
                    held.lock().expect("lock").remove(&tag(&j.kind));
                }
                q.complete(&jobs).await.expect("complete");
            }
        });
    }
    let mut all: Vec<u64> = set.join_all().await.into_iter().flatten().collect();
    all.sort_unstable();
    assert_eq!(
        all,
        (0..200).collect::<Vec<_>>(),
        "{backend}: each job delivered exactly once"
    );
}

async fn one_worker_wins_each_periodic_tick(backend: &str, (qs, _guard): Fresh) {
    let every = Duration::from_millis(500);
    let mut set = tokio::task::JoinSet::new();
    for q in qs.clone() {
        set.spawn(async move {
            q.enqueue_periodic("track", every, noop(42))
                .await
                .expect("tick")
        });
    }
    let wins = set.join_all().await.into_iter().filter(|won| *won).count();
    assert_eq!(wins, 1, "{backend}: one winner for the first tick");
    assert!(
        !qs[0]
            .enqueue_periodic("track", every, noop(42))
            .await
            .expect("tick"),
        "{backend}: not due yet"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        qs[1]
            .enqueue_periodic("track", every, noop(42))
            .await
            .expect("tick"),
        "{backend}: next tick"
    );
    let jobs = drain_ids(qs[0].as_ref()).await;
    assert_eq!(jobs, vec![42, 42], "{backend}: one job per tick");
}
