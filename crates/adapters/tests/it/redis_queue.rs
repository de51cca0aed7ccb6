//! The Redis job queue against a real Redis (`TEST_REDIS_URL`, required in CI) and real SQL
//! outboxes: the relay, leases, outcomes, concurrent consumers, stats, outages, and the port's
//! conformance suite. Each test uses keys under a prefix of its own and deletes them at the end.

use crate::helpers::{open, webhook};
use adapters::db::{Database, SqlInbox};
use adapters::redis_queue::{RECONCILE_GRACE, RedisJobQueue};
use adapters::testing::queue_conformance::{Fresh, run_all};
use adapters::testing::{TestDb, ThrowawayRedis, unique};
use chrono::Utc;
use domain::error::QueueError;
use domain::model::{JobKind, NewJob, WebhookId, WebhookStatus};
use domain::ports::{JobQueue, WebhookInbox};
use redis::AsyncCommands as _;
use sea_orm::{ConnectionTrait as _, DbBackend, Statement, Value};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const LONG: Duration = Duration::from_secs(60);
const NO_WAIT: Duration = Duration::ZERO;

/// `TEST_REDIS_URL`, or `None` with a note outside CI.
fn redis_url() -> Option<String> {
    match std::env::var("TEST_REDIS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => {
            panic!("TEST_REDIS_URL must be set in CI: Redis tests are required there")
        }
        _ => {
            eprintln!("note: TEST_REDIS_URL not set, Redis queue tests skipped");
            None
        }
    }
}

/// Deletes every key under a prefix when dropped, so a failing test cleans up too.
struct Cleanup {
    url: String,
    prefix: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open(self.url.as_str()) else {
            return;
        };
        let Ok(mut con) = client.get_connection() else {
            return;
        };
        let pattern = format!("{}:*", self.prefix);
        let mut cursor = 0u64;
        loop {
            let Ok((next, keys)): redis::RedisResult<(u64, Vec<String>)> = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query(&mut con)
            else {
                return;
            };
            if !keys.is_empty() {
                let _: redis::RedisResult<()> = redis::cmd("DEL").arg(&keys).query(&mut con);
            }
            if next == 0 {
                return;
            }
            cursor = next;
        }
    }
}

/// A SQL database with its inbox, and a Redis queue on it under a fresh prefix.
struct Setup {
    url: String,
    prefix: String,
    database: Database,
    inbox: SqlInbox,
    queue: RedisJobQueue,
    _cleanup: Cleanup,
    _db: TestDb,
}

impl Setup {
    async fn new(url: &str, db: TestDb) -> Self {
        let (database, inbox, _, _) = open(&db).await;
        let prefix = format!("lazona_test_{}", unique());
        let cleanup = Cleanup {
            url: url.to_owned(),
            prefix: prefix.clone(),
        };
        let queue = RedisJobQueue::connect(url, &prefix, database.clone())
            .await
            .expect("connect to Redis");
        Setup {
            url: url.to_owned(),
            prefix,
            database,
            inbox,
            queue,
            _cleanup: cleanup,
            _db: db,
        }
    }

    /// Another worker process on the same queue: its own consumer and connections.
    async fn another(&self) -> RedisJobQueue {
        RedisJobQueue::connect(&self.url, &self.prefix, self.database.clone())
            .await
            .expect("connect to Redis")
    }

    async fn redis(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url.as_str())
            .expect("url")
            .get_multiplexed_async_connection()
            .await
            .expect("connect")
    }

    async fn xlen(&self, key: &str) -> u64 {
        self.redis()
            .await
            .xlen(format!("{}:{key}", self.prefix))
            .await
            .expect("XLEN")
    }

    /// Rows in the SQL `jobs` table (the outbox: every job not done yet).
    async fn outbox(&self) -> i64 {
        self.count("SELECT COUNT(*) FROM jobs").await
    }

    /// Rows in the outbox with this status (`ready`, `relayed`, `dead`).
    async fn rows(&self, status: &str) -> i64 {
        self.count(&format!(
            "SELECT COUNT(*) FROM jobs WHERE status = '{status}'"
        ))
        .await
    }

    async fn count(&self, sql: &str) -> i64 {
        let stmt = Statement::from_string(self.database.backend(), sql);
        let row = self
            .database
            .conn()
            .query_one_raw(stmt)
            .await
            .expect("count")
            .expect("row");
        row.try_get_by_index(0).expect("count")
    }
}

fn job(n: i64) -> NewJob {
    NewJob {
        kind: JobKind::ProcessWebhook {
            webhook_id: WebhookId(n),
        },
        run_at: None,
    }
}

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

#[tokio::test]
async fn a_webhook_recorded_in_the_inbox_is_relayed_and_reserved_once() {
    let Some(url) = redis_url() else { return };
    for (backend, db) in TestDb::all().await {
        let s = Setup::new(&url, db).await;
        let recorded = s
            .inbox
            .record(webhook(Some("relay-1"), WebhookStatus::Queued))
            .await
            .expect("record");
        assert_eq!(s.outbox().await, 1, "{backend}: the job is in the outbox");
        assert_eq!(
            s.queue.stats().await.expect("stats").pending,
            1,
            "{backend}"
        );

        let jobs = s
            .queue
            .reserve(10, LONG, Duration::from_secs(2))
            .await
            .expect("reserve");
        assert_eq!(jobs.len(), 1, "{backend}");
        assert_eq!(
            jobs[0].kind,
            JobKind::ProcessWebhook {
                webhook_id: recorded.id
            },
            "{backend}"
        );
        assert_eq!(jobs[0].attempt, 1, "{backend}");
        assert_eq!(s.rows("ready").await, 0, "{backend}");
        assert_eq!(
            s.rows("relayed").await,
            1,
            "{backend}: relayed rows stay in SQL until done"
        );
        assert_eq!(s.xlen("jobs").await, 1, "{backend}");

        let other = s.another().await;
        assert!(
            other
                .reserve(10, LONG, Duration::from_millis(300))
                .await
                .expect("reserve")
                .is_empty(),
            "{backend}: reserved once"
        );
        let stats = s.queue.stats().await.expect("stats");
        assert_eq!((stats.pending, stats.running), (1, 1), "{backend}");
        s.queue.complete(&jobs).await.expect("complete");
        let stats = s.queue.stats().await.expect("stats");
        assert_eq!((stats.pending, stats.running), (0, 0), "{backend}");
        assert_eq!(
            s.xlen("jobs").await,
            0,
            "{backend}: completed entries are deleted"
        );
        assert_eq!(s.outbox().await, 0, "{backend}: and so are their rows");
    }
}

/// Sets a relayed row back to `ready` with this `created_at`, as a relay transaction rolled back
/// after its push would (or, with another `created_at`, a database reset reusing the id).
async fn unrelay(s: &Setup, id: i64, created_at: i64) {
    let backend = s.database.backend();
    let sql = match backend {
        DbBackend::Postgres => "UPDATE jobs SET status = 'ready', created_at = $1 WHERE id = $2",
        _ => "UPDATE jobs SET status = 'ready', created_at = ?1 WHERE id = ?2",
    };
    let values: Vec<Value> = vec![created_at.into(), id.into()];
    s.database
        .conn()
        .execute_raw(Statement::from_sql_and_values(backend, sql, values))
        .await
        .expect("update");
}

/// Inserts a ready row with this payload; returns its id.
async fn insert_row(s: &Setup, payload: &str) -> i64 {
    let backend = s.database.backend();
    let sql = match backend {
        DbBackend::Postgres => {
            "INSERT INTO jobs (kind, payload, status, attempts, due_at, created_at, updated_at) \
             VALUES ('noop', $1, 'ready', 0, $2, $2, $2) RETURNING id"
        }
        _ => {
            "INSERT INTO jobs (kind, payload, status, attempts, due_at, created_at, updated_at) \
             VALUES ('noop', ?1, 'ready', 0, ?2, ?2, ?2) RETURNING id"
        }
    };
    let now = Utc::now().timestamp_millis();
    let values: Vec<Value> = vec![payload.into(), now.into()];
    let row = s
        .database
        .conn()
        .query_one_raw(Statement::from_sql_and_values(backend, sql, values))
        .await
        .expect("insert")
        .expect("row");
    row.try_get_by_index(0).expect("id")
}

#[tokio::test]
async fn a_row_relayed_twice_is_added_once_and_future_rows_wait_in_sql() {
    let Some(url) = redis_url() else { return };
    for (backend, db) in TestDb::all().await {
        let s = Setup::new(&url, db).await;
        let id = s.queue.enqueue(job(7)).await.expect("enqueue");
        let row = s
            .database
            .conn()
            .query_one_raw(Statement::from_string(
                s.database.backend(),
                "SELECT created_at FROM jobs",
            ))
            .await
            .expect("select")
            .expect("row");
        let created_at: i64 = row.try_get_by_index(0).expect("created_at");

        assert_eq!(s.queue.relay_once(10).await.expect("relay"), 1, "{backend}");
        assert_eq!(s.xlen("jobs").await, 1, "{backend}");
        assert_eq!(s.queue.relay_once(10).await.expect("relay"), 0, "{backend}");

        // The same row again (a crash between the push and the commit): not added twice.
        unrelay(&s, id.0, created_at).await;
        assert_eq!(s.queue.relay_once(10).await.expect("relay"), 1, "{backend}");
        assert_eq!(s.xlen("jobs").await, 1, "{backend}: added once");
        assert_eq!(s.rows("ready").await, 0, "{backend}");
        assert_eq!(s.rows("relayed").await, 1, "{backend}");

        // The same id for another job (a database restored or reset): a new job.
        unrelay(&s, id.0, created_at + 1).await;
        assert_eq!(s.queue.relay_once(10).await.expect("relay"), 1, "{backend}");
        assert_eq!(
            s.xlen("jobs").await,
            2,
            "{backend}: a reused id is a new job"
        );

        // Not yet due: stays in SQL, and counts as pending.
        let later = Utc::now() + chrono::Duration::hours(1);
        s.queue
            .enqueue(NewJob {
                kind: JobKind::Noop { tag: 1 },
                run_at: Some(later),
            })
            .await
            .expect("enqueue");
        assert_eq!(s.queue.relay_once(10).await.expect("relay"), 0, "{backend}");
        assert_eq!(s.rows("ready").await, 1, "{backend}");
        assert_eq!(
            s.queue.stats().await.expect("stats").pending,
            2,
            "{backend}: one row per job, relayed or not"
        );

        // Batches are bounded.
        for n in 0..5 {
            s.queue.enqueue(noop(n)).await.expect("enqueue");
        }
        assert_eq!(s.queue.relay_once(3).await.expect("relay"), 3, "{backend}");
        assert_eq!(s.queue.relay_once(3).await.expect("relay"), 2, "{backend}");
        assert_eq!(s.xlen("jobs").await, 7, "{backend}");
    }
}

#[tokio::test]
async fn run_relay_moves_jobs_until_cancelled() {
    let Some(url) = redis_url() else { return };
    let s = Setup::new(&url, TestDb::sqlite()).await;
    for n in 0..300 {
        s.queue.enqueue(noop(n)).await.expect("enqueue");
    }
    let shutdown = CancellationToken::new();
    let relay = tokio::spawn({
        let queue = s.queue.clone();
        let shutdown = shutdown.clone();
        async move { queue.run_relay(shutdown).await }
    });
    let until = Instant::now() + Duration::from_secs(10);
    while s.rows("ready").await > 0 {
        assert!(Instant::now() < until, "the relay empties the outbox");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(s.xlen("jobs").await, 300);

    let enqueued = Instant::now();
    s.queue.enqueue(noop(300)).await.expect("enqueue");
    let other = s.another().await;
    let jobs = other
        .reserve(1, LONG, Duration::from_secs(2))
        .await
        .expect("reserve");
    assert_eq!(jobs.len(), 1);
    eprintln!(
        "with run_relay: first job {:?} after enqueue",
        enqueued.elapsed()
    );

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(2), relay)
        .await
        .expect("the relay stops when cancelled")
        .expect("relay task");
}

#[tokio::test]
async fn a_waiting_reserve_wakes_for_a_new_job() {
    let Some(url) = redis_url() else { return };
    let s = Setup::new(&url, TestDb::sqlite()).await;
    let worker = s.another().await;
    // No relay task: the waiting reservation relays between its blocking slices.
    let waiting = tokio::spawn(async move {
        let started = Instant::now();
        let jobs = worker
            .reserve(1, LONG, Duration::from_secs(5))
            .await
            .expect("reserve");
        (jobs, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let enqueued = Instant::now();
    s.queue.enqueue(noop(1)).await.expect("enqueue");
    let (jobs, _) = waiting.await.expect("task");
    let latency = enqueued.elapsed();
    assert_eq!(jobs.len(), 1);
    assert!(latency < Duration::from_secs(1), "woken in {latency:?}");
    eprintln!("outbox to a waiting worker without a relay task: {latency:?}");

    // A job pushed to the stream by anyone wakes a waiting reservation at once.
    let worker = s.another().await;
    let waiting = tokio::spawn(async move {
        worker
            .reserve(1, LONG, Duration::from_secs(5))
            .await
            .expect("reserve")
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pushed = Instant::now();
    s.queue.enqueue(noop(2)).await.expect("enqueue");
    s.queue.relay_once(10).await.expect("relay");
    let jobs = waiting.await.expect("task");
    assert_eq!(jobs.len(), 1);
    eprintln!("stream to a waiting worker: {:?}", pushed.elapsed());
}

#[tokio::test]
async fn a_job_whose_lease_ends_comes_back_with_its_attempt_counted() {
    let Some(url) = redis_url() else { return };
    let s = Setup::new(&url, TestDb::sqlite()).await;
    let id = s.queue.enqueue(job(1)).await.expect("enqueue");
    let first = s
        .queue
        .reserve(1, Duration::from_millis(300), NO_WAIT)
        .await
        .expect("reserve");
    assert_eq!((first[0].id, first[0].attempt), (id, 1));
    assert!(
        s.queue
            .reserve(1, LONG, NO_WAIT)
            .await
            .expect("reserve")
            .is_empty(),
        "held while its lease runs"
    );
    // The same consumer takes it over once the lease has ended (XCLAIM of an ended lease).
    let again = s
        .queue
        .reserve(1, LONG, Duration::from_secs(2))
        .await
        .expect("reserve");
    assert_eq!((again[0].id, again[0].attempt), (id, 2));
    assert_ne!(
        again[0].lease, first[0].lease,
        "a new reservation, a new token"
    );

    // The first reservation can no longer record an outcome, even on the same consumer.
    assert!(matches!(
        s.queue.retry(&first[0], Utc::now(), "late").await,
        Err(QueueError::LeaseLost(_))
    ));
    s.queue
        .complete(&first)
        .await
        .expect("a stale completion is skipped");
    assert_eq!(s.queue.stats().await.expect("stats").running, 1);
    s.queue.complete(&again).await.expect("complete");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        s.another()
            .await
            .reserve(5, LONG, Duration::from_millis(300))
            .await
            .expect("reserve")
            .is_empty(),
        "a completed job never comes back"
    );
    let stats = s.queue.stats().await.expect("stats");
    assert_eq!((stats.pending, stats.running, stats.dead), (0, 0, 0));
}

#[tokio::test]
async fn retries_wait_for_their_time_and_dead_jobs_for_a_requeue() {
    let Some(url) = redis_url() else { return };
    let s = Setup::new(&url, TestDb::sqlite()).await;
    let id = s.queue.enqueue(job(1)).await.expect("enqueue");
    let jobs = s.queue.reserve(1, LONG, NO_WAIT).await.expect("reserve");
    let at = Utc::now() + chrono::Duration::milliseconds(500);
    s.queue
        .retry(&jobs[0], at, "carrier 503")
        .await
        .expect("retry");
    assert!(
        s.queue
            .retry(&jobs[0], at, "twice")
            .await
            .is_err_and(|e| matches!(e, QueueError::LeaseLost(_))),
        "an outcome is recorded once"
    );
    assert_eq!(s.queue.stats().await.expect("stats").pending, 1);
    assert!(
        s.queue
            .reserve(1, LONG, NO_WAIT)
            .await
            .expect("reserve")
            .is_empty(),
        "not before its time"
    );
    // A waiting reservation wakes when the retry becomes due.
    let back = s
        .queue
        .reserve(1, LONG, Duration::from_secs(3))
        .await
        .expect("reserve");
    let late = Utc::now() - at;
    assert!(Utc::now() >= at);
    assert!(late < chrono::Duration::milliseconds(300), "{late:?} late");
    assert_eq!((back[0].id, back[0].attempt), (id, 2));

    s.queue
        .dead_letter(&back[0], "koiki said 102")
        .await
        .expect("dead");
    let dead = s.queue.dead_jobs(10).await.expect("dead jobs");
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].id, dead[0].attempts), (id, 2));
    assert_eq!(dead[0].error, "koiki said 102");
    assert_eq!(dead[0].kind, job(1).kind);
    assert!((Utc::now() - dead[0].failed_at) < chrono::Duration::seconds(5));
    let stats = s.queue.stats().await.expect("stats");
    assert_eq!((stats.pending, stats.running, stats.dead), (0, 0, 1));
    assert!(
        s.queue
            .reserve(1, LONG, Duration::from_millis(300))
            .await
            .expect("reserve")
            .is_empty(),
        "dead stays dead"
    );

    s.queue.requeue_dead(id).await.expect("requeue");
    assert!(matches!(
        s.queue.requeue_dead(id).await,
        Err(QueueError::NotFound(_))
    ));
    let again = s.queue.reserve(1, LONG, NO_WAIT).await.expect("reserve");
    assert_eq!((again[0].id, again[0].attempt), (id, 1), "attempts reset");
    assert!(s.queue.dead_jobs(10).await.expect("dead").is_empty());
    assert_eq!(s.queue.stats().await.expect("stats").dead, 0);
}

#[tokio::test]
async fn an_extended_lease_keeps_other_consumers_off_until_it_ends() {
    let Some(url) = redis_url() else { return };
    let s = Setup::new(&url, TestDb::sqlite()).await;
    let other = s.another().await;
    s.queue.enqueue(job(1)).await.expect("enqueue");
    let lease = Duration::from_millis(300);
    let mine = s.queue.reserve(1, lease, NO_WAIT).await.expect("reserve");
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        s.queue.extend(&mine, lease).await.expect("extend");
        assert!(
            other
                .reserve(1, LONG, NO_WAIT)
                .await
                .expect("reserve")
                .is_empty(),
            "an extended lease holds the job"
        );
    }
    // Not extended any more: the other consumer takes it over when the lease ends.
    let started = Instant::now();
    let theirs = other
        .reserve(1, LONG, Duration::from_secs(2))
        .await
        .expect("reserve");
    assert_eq!((theirs[0].id, theirs[0].attempt), (mine[0].id, 2));
    assert!(started.elapsed() < Duration::from_millis(600));

    for outcome in [
        s.queue.retry(&mine[0], Utc::now(), "late").await,
        s.queue.dead_letter(&mine[0], "late").await,
    ] {
        assert!(
            matches!(outcome, Err(QueueError::LeaseLost(_))),
            "{outcome:?}"
        );
    }
    s.queue
        .extend(&mine, LONG)
        .await
        .expect("a lost lease is not extended");
    s.queue
        .complete(&mine)
        .await
        .expect("a stale completion is skipped");
    assert_eq!(
        s.queue.stats().await.expect("stats").running,
        1,
        "still theirs"
    );
    other.complete(&theirs).await.expect("complete");
    assert_eq!(s.queue.stats().await.expect("stats").pending, 0);
}

#[tokio::test]
async fn concurrent_consumers_never_get_the_same_job() {
    let Some(url) = redis_url() else { return };
    let s = Setup::new(&url, TestDb::sqlite()).await;
    for n in 0..200 {
        s.queue.enqueue(noop(n)).await.expect("enqueue");
    }
    let seen: Arc<Mutex<HashSet<u64>>> = Arc::default();
    let mut set = tokio::task::JoinSet::new();
    let started = Instant::now();
    for _ in 0..4 {
        let q = s.another().await;
        let seen = seen.clone();
        set.spawn(async move {
            let mut mine = 0usize;
            loop {
                let jobs = q
                    .reserve(10, LONG, Duration::from_millis(200))
                    .await
                    .expect("reserve");
                if jobs.is_empty() {
                    return mine;
                }
                for j in &jobs {
                    let t = tag(&j.kind);
                    assert!(
                        seen.lock().expect("lock").insert(t),
                        "job {t} delivered twice"
                    );
                    assert_eq!(j.attempt, 1);
                }
                mine += jobs.len();
                q.complete(&jobs).await.expect("complete");
            }
        });
    }
    let counts = set.join_all().await;
    let elapsed = started.elapsed();
    assert_eq!(counts.iter().sum::<usize>(), 200, "{counts:?}");
    assert_eq!(seen.lock().expect("lock").len(), 200);
    eprintln!("4 consumers, 200 jobs: {counts:?} in {elapsed:?} (incl. the final 200 ms wait)");
    let stats = s.queue.stats().await.expect("stats");
    assert_eq!((stats.pending, stats.running), (0, 0));
}

#[tokio::test]
async fn stats_count_the_outbox_the_stream_the_retries_and_the_dead() {
    let Some(url) = redis_url() else { return };
    let s = Setup::new(&url, TestDb::sqlite()).await;
    let before = Utc::now();
    for n in 0..4 {
        s.queue.enqueue(noop(n)).await.expect("enqueue");
    }
    s.queue
        .enqueue(NewJob {
            kind: JobKind::Noop { tag: 9 },
            run_at: Some(Utc::now() + chrono::Duration::hours(1)),
        })
        .await
        .expect("enqueue");
    let stats = s.queue.stats().await.expect("stats");
    assert_eq!((stats.pending, stats.running, stats.dead), (5, 0, 0));
    let oldest = stats.oldest_due.expect("oldest due");
    assert!(oldest >= before - chrono::Duration::seconds(1) && oldest <= Utc::now());

    let jobs = s.queue.reserve(3, LONG, NO_WAIT).await.expect("reserve");
    assert_eq!(jobs.len(), 3);
    let stats = s.queue.stats().await.expect("stats");
    assert_eq!((stats.pending, stats.running, stats.dead), (5, 3, 0));
    assert!(
        stats.oldest_due.is_some(),
        "one job still waits in the stream"
    );

    let later = Utc::now() + chrono::Duration::minutes(5);
    s.queue
        .retry(&jobs[0], later, "later")
        .await
        .expect("retry");
    s.queue.dead_letter(&jobs[1], "never").await.expect("dead");
    let stats = s.queue.stats().await.expect("stats");
    assert_eq!((stats.pending, stats.running, stats.dead), (4, 1, 1));
    s.queue.complete(&jobs[2..]).await.expect("complete");
    let stats = s.queue.stats().await.expect("stats");
    assert_eq!((stats.pending, stats.running, stats.dead), (3, 0, 1));
}

#[tokio::test]
async fn corrupt_entries_are_dead_lettered_or_dropped() {
    let Some(url) = redis_url() else { return };
    let s = Setup::new(&url, TestDb::sqlite()).await;
    // A row whose payload does not decode: dead-lettered, its row the dead letter.
    let corrupt = insert_row(&s, "not json").await;
    assert!(
        s.queue
            .reserve(10, LONG, NO_WAIT)
            .await
            .expect("reserve")
            .is_empty()
    );
    // Entries with no row (written by hand): without an id dropped, with one dead-lettered,
    // which drops them too (there is no row to keep the dead letter).
    let stream = format!("{}:jobs", s.prefix);
    let mut con = s.redis().await;
    let _: String = con
        .xadd(&stream, "*", &[("id", "999999"), ("payload", "not json")])
        .await
        .expect("XADD");
    let _: String = con
        .xadd(&stream, "*", &[("payload", r#"{"kind":"noop","tag":1}"#)])
        .await
        .expect("XADD");
    assert!(
        s.queue
            .reserve(10, LONG, NO_WAIT)
            .await
            .expect("reserve")
            .is_empty()
    );
    assert_eq!(s.xlen("jobs").await, 0, "all left the stream");
    let stats = s.queue.stats().await.expect("stats");
    assert_eq!((stats.pending, stats.running, stats.dead), (0, 0, 1));
    assert!(matches!(
        s.queue.dead_jobs(10).await,
        Err(QueueError::Corrupt { id, .. }) if id.0 == corrupt
    ));
}

#[tokio::test]
async fn gone_consumers_are_forgotten_and_orphans_given_back() {
    let Some(url) = redis_url() else { return };
    let s = Setup::new(&url, TestDb::sqlite()).await;
    let gone = s.another().await;
    s.queue.enqueue(noop(1)).await.expect("enqueue");
    s.queue.enqueue(noop(2)).await.expect("enqueue");
    let theirs = gone.reserve(1, LONG, NO_WAIT).await.expect("reserve");
    gone.complete(&theirs).await.expect("complete");
    let mine = s.queue.reserve(1, LONG, NO_WAIT).await.expect("reserve");
    assert_eq!(mine.len(), 1);

    let stream = format!("{}:jobs", s.prefix);
    let consumers = |v: redis::Value| -> Vec<String> {
        let redis::Value::Array(rows) = v else {
            return Vec::new();
        };
        rows.into_iter()
            .filter_map(|row| {
                let map: std::collections::HashMap<String, redis::Value> =
                    redis::from_redis_value(row).ok()?;
                redis::from_redis_value(map.get("name")?.clone()).ok()
            })
            .collect()
    };
    let mut con = s.redis().await;
    let before: redis::Value = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(&stream)
        .arg("workers")
        .query_async(&mut con)
        .await
        .expect("XINFO");
    assert_eq!(consumers(before).len(), 2);
    assert_eq!(
        s.queue
            .prune_consumers(Duration::ZERO)
            .await
            .expect("prune"),
        1,
        "only the idle consumer with nothing pending"
    );
    let after: redis::Value = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(&stream)
        .arg("workers")
        .query_async(&mut con)
        .await
        .expect("XINFO");
    assert_eq!(consumers(after), vec![s.queue.consumer().to_owned()]);

    // A reserved entry whose lease record was lost is given back.
    let entry = mine[0].lease.0.split_once('/').expect("token").0.to_owned();
    let _: i64 = con
        .zrem(format!("{}:leases", s.prefix), &entry)
        .await
        .expect("ZREM");
    assert_eq!(
        s.queue
            .recover_orphans(Duration::ZERO)
            .await
            .expect("recover"),
        1
    );
    let back = gone.reserve(1, LONG, NO_WAIT).await.expect("reserve");
    assert_eq!((back[0].id, back[0].attempt), (mine[0].id, 2));
}

/// A `redis-server` of the test's own, on a free port.
struct OwnRedis {
    child: std::process::Child,
    port: u16,
}

impl OwnRedis {
    fn start(port: u16) -> Option<Self> {
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()?;
        let until = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < until, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(OwnRedis { child, port })
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test]
async fn a_redis_outage_delays_jobs_but_loses_none() {
    if redis_url().is_none() {
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let Some(mut server) = OwnRedis::start(port) else {
        eprintln!("note: no redis-server on PATH, outage test skipped");
        return;
    };
    let url = format!("redis://127.0.0.1:{}", server.port);
    let s = Setup::new(&url, TestDb::sqlite()).await;
    s.queue.enqueue(noop(1)).await.expect("enqueue");
    let jobs = s.queue.reserve(1, LONG, NO_WAIT).await.expect("reserve");
    s.queue.complete(&jobs).await.expect("complete");

    server.stop();
    s.queue
        .enqueue(noop(2))
        .await
        .expect("enqueue writes SQL only: works during the outage");
    let started = Instant::now();
    assert!(matches!(
        s.queue.reserve(1, LONG, Duration::from_millis(200)).await,
        Err(QueueError::Unavailable(_))
    ));
    eprintln!(
        "reserve during the outage failed in {:?}",
        started.elapsed()
    );
    assert!(matches!(
        s.queue.relay_once(10).await,
        Err(QueueError::Unavailable(_))
    ));
    assert_eq!(s.outbox().await, 1, "the row stays in the outbox");

    // Back, empty (no persistence): the group is made again and the job relayed.
    let _server = OwnRedis::start(port).expect("restart");
    let until = Instant::now() + Duration::from_secs(15);
    let back = loop {
        match s.queue.reserve(1, LONG, NO_WAIT).await {
            Ok(jobs) if !jobs.is_empty() => break jobs,
            Ok(_) => {}
            Err(QueueError::Unavailable(_)) => {}
            Err(e) => panic!("{e:?}"),
        }
        assert!(
            Instant::now() < until,
            "the queue works again after Redis restarts"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(tag(&back[0].kind), 2);
    assert_eq!(s.rows("relayed").await, 1);
    s.queue.complete(&back).await.expect("complete");
    assert_eq!(s.outbox().await, 0);
}

/// Retries `op` while Redis is unavailable (reconnecting after a restart), for up to 15 s.
async fn until_available<T, F, Fut>(mut op: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, QueueError>>,
{
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        match op().await {
            Ok(v) => return v,
            Err(QueueError::Unavailable(e)) if Instant::now() < until => {
                eprintln!("note: waiting for Redis: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{e:?}"),
        }
    }
}

#[tokio::test]
async fn a_redis_restart_loses_no_dead_letter_retry_or_reserved_job() {
    if redis_url().is_none() {
        return;
    }
    let redis = ThrowawayRedis::start();
    let s = Setup::new(&redis.url(), TestDb::sqlite()).await;
    for n in 0..4 {
        s.queue.enqueue(noop(n)).await.expect("enqueue");
    }
    let mut jobs = s.queue.reserve(4, LONG, NO_WAIT).await.expect("reserve");
    jobs.sort_by_key(|j| tag(&j.kind));
    assert_eq!(jobs.len(), 4);
    s.queue
        .dead_letter(&jobs[0], "dead before the restart")
        .await
        .expect("dead");
    let at = Utc::now() + chrono::Duration::seconds(4);
    s.queue.retry(&jobs[1], at, "later").await.expect("retry");
    // jobs[2] stays reserved; jobs[3] is done.
    s.queue.complete(&jobs[3..]).await.expect("complete");
    assert_eq!(s.rows("relayed").await, 2);
    tokio::time::sleep(RECONCILE_GRACE + Duration::from_millis(100)).await;

    redis.kill();
    redis.start_again();

    // Dead letters are rows: still there, and counted.
    let dead = s.queue.dead_jobs(10).await.expect("dead jobs");
    assert_eq!(dead.len(), 1);
    assert_eq!((tag(&dead[0].kind), dead[0].attempts), (0, 1));
    assert_eq!(dead[0].error, "dead before the restart");
    let stats = until_available(|| s.queue.stats()).await;
    assert_eq!((stats.pending, stats.running, stats.dead), (2, 0, 1));

    // The reserved job and the retry lost their markers: back to `ready`.
    assert_eq!(until_available(|| s.queue.reconcile_once(100)).await, 2);
    assert_eq!(s.rows("ready").await, 2);
    assert_eq!(until_available(|| s.queue.reconcile_once(100)).await, 0);

    // The reserved job comes back at once (the retry is not due yet); its old holder's
    // outcomes are lost, but its completion still deletes the row.
    let back = s
        .queue
        .reserve(4, LONG, Duration::from_secs(2))
        .await
        .expect("reserve");
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].id, jobs[2].id);
    assert!(matches!(
        s.queue.retry(&jobs[2], Utc::now(), "stale").await,
        Err(QueueError::LeaseLost(_))
    ));
    s.queue
        .complete(&jobs[2..3])
        .await
        .expect("a stale completion is skipped in Redis");
    assert_eq!(
        s.rows("relayed").await,
        0,
        "the row is gone: the handler ran"
    );
    s.queue.complete(&back).await.expect("complete");

    // The retry comes back at its time, its attempt counted.
    let retried = s
        .queue
        .reserve(4, LONG, Duration::from_secs(6))
        .await
        .expect("reserve");
    assert!(Utc::now() >= at, "not before its time");
    assert_eq!(retried.len(), 1);
    assert_eq!((retried[0].id, retried[0].attempt), (jobs[1].id, 2));
    s.queue.complete(&retried).await.expect("complete");

    // The dead letter can be requeued although Redis never saw it die.
    s.queue.requeue_dead(jobs[0].id).await.expect("requeue");
    let requeued = s
        .queue
        .reserve(4, LONG, Duration::from_secs(2))
        .await
        .expect("reserve");
    assert_eq!(requeued.len(), 1);
    assert_eq!((requeued[0].id, requeued[0].attempt), (jobs[0].id, 1));
    s.queue.complete(&requeued).await.expect("complete");

    assert!(
        s.queue
            .reserve(4, LONG, Duration::from_millis(300))
            .await
            .expect("reserve")
            .is_empty(),
        "the completed job never came back"
    );
    let stats = s.queue.stats().await.expect("stats");
    assert_eq!((stats.pending, stats.running, stats.dead), (0, 0, 0));
    assert_eq!(s.outbox().await, 0);
}

/// The webhook id of a `ProcessWebhook` job.
fn webhook_of(kind: &JobKind) -> i64 {
    match kind {
        JobKind::ProcessWebhook { webhook_id } => webhook_id.0,
        other => panic!("unexpected job {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_restarted_during_load_loses_no_job() {
    if redis_url().is_none() {
        return;
    }
    let redis = ThrowawayRedis::start();
    for (backend, db) in TestDb::all().await {
        let s = Setup::new(&redis.url(), db).await;
        restart_under_load(backend, &s, &redis).await;
    }
}

/// 2000 webhooks recorded while 3 consumers run them; Redis is killed (everything it held is
/// lost) after 500 completions and started again, empty, a second later.
async fn restart_under_load(backend: &str, s: &Setup, redis: &ThrowawayRedis) {
    const WEBHOOKS: usize = 2000;
    const PRODUCERS: usize = 4;
    let started = Instant::now();
    let stop = CancellationToken::new();
    let completions: Arc<Mutex<Vec<i64>>> = Arc::default();
    let mut consumers = tokio::task::JoinSet::new();
    for _ in 0..3 {
        let q = s.another().await;
        let completions = completions.clone();
        let stop = stop.clone();
        consumers.spawn(async move {
            let mut errors = 0usize;
            while !stop.is_cancelled() {
                let jobs = match q
                    .reserve(10, Duration::from_secs(2), Duration::from_millis(200))
                    .await
                {
                    Ok(jobs) => jobs,
                    Err(_) => {
                        errors += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if jobs.is_empty() {
                    continue;
                }
                // The handlers' work (so that jobs queue up in Redis), their side effects, then
                // the acknowledgement.
                tokio::time::sleep(Duration::from_millis(20)).await;
                completions
                    .lock()
                    .expect("lock")
                    .extend(jobs.iter().map(|j| webhook_of(&j.kind)));
                if q.complete(&jobs).await.is_err() {
                    errors += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            errors
        });
    }
    let mut producers = tokio::task::JoinSet::new();
    for p in 0..PRODUCERS {
        let inbox = s.inbox.clone();
        producers.spawn(async move {
            let mut ids = Vec::new();
            for n in (p..WEBHOOKS).step_by(PRODUCERS) {
                let delivery = format!("restart-{n}");
                let recorded = inbox
                    .record(webhook(Some(&delivery), WebhookStatus::Queued))
                    .await
                    .expect("record (SQL only: works during the outage)");
                ids.push(recorded.id.0);
            }
            ids
        });
    }

    let until = Instant::now() + Duration::from_secs(60);
    while completions.lock().expect("lock").len() < 500 {
        assert!(Instant::now() < until, "{backend}: 500 jobs done in time");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let in_flight = s.rows("relayed").await;
    let done_before = completions.lock().expect("lock").len();
    redis.kill();
    let killed = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    redis.start_again();

    let expected: HashSet<i64> = producers.join_all().await.into_iter().flatten().collect();
    assert_eq!(expected.len(), WEBHOOKS, "{backend}");
    loop {
        let seen: HashSet<i64> = completions.lock().expect("lock").iter().copied().collect();
        if expected.is_subset(&seen) && s.outbox().await == 0 {
            break;
        }
        if Instant::now() >= until {
            let missing = expected.difference(&seen).count();
            let rows = s.outbox().await;
            stop.cancel();
            panic!("{backend}: {missing} jobs never completed, {rows} rows left in the outbox");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let recovered = killed.elapsed();
    stop.cancel();
    let errors: usize = consumers.join_all().await.into_iter().sum();
    let all = completions.lock().expect("lock").clone();
    let unique: HashSet<i64> = all.iter().copied().collect();
    let duplicates = all.len() - unique.len();
    eprintln!(
        "{backend}: Redis killed after {done_before} completions with {in_flight} jobs in \
         flight; all {WEBHOOKS} done {recovered:?} after the kill ({:?} in all), {duplicates} \
         duplicates, {errors} consumer errors",
        started.elapsed()
    );
    assert_eq!(unique, expected, "{backend}: no job lost, none invented");
    assert!(
        i64::try_from(duplicates).expect("count") <= in_flight && duplicates < 300,
        "{backend}: {duplicates} duplicates for {in_flight} jobs in flight"
    );
    // This handle was idle since the restart: its connection comes back on first use.
    let stats = until_available(|| s.queue.stats()).await;
    assert_eq!(
        (stats.pending, stats.running, stats.dead),
        (0, 0, 0),
        "{backend}"
    );
}

async fn fresh(url: String, db: TestDb) -> Fresh {
    let s = Setup::new(&url, db).await;
    let mut handles: Vec<Arc<dyn JobQueue>> = vec![Arc::new(s.queue.clone())];
    for _ in 0..3 {
        handles.push(Arc::new(s.another().await));
    }
    (handles, Box::new(s))
}

#[tokio::test]
async fn redis_queue_meets_the_contract_on_sqlite() {
    let Some(url) = redis_url() else { return };
    run_all("redis+sqlite", || fresh(url.clone(), TestDb::sqlite())).await;
}

#[tokio::test]
async fn redis_queue_meets_the_contract_on_postgres() {
    let Some(url) = redis_url() else { return };
    if adapters::testing::postgres_admin_url().is_none() {
        return;
    }
    run_all("redis+postgres", || async {
        fresh(url.clone(), TestDb::postgres().await.expect("postgres")).await
    })
    .await;
}
