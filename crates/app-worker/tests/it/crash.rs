//! `kill -9` of a `lazona-worker` in the middle of jobs under load, then a new worker: every job
//! completes, and its side effect (the webhook's move to `processed`, recorded in its history)
//! happens exactly once.

use adapters::db::{Database, SqlInbox};
use adapters::testing::{TestDb, count};
use bytes::Bytes;
use domain::model::{NewWebhook, Resource, WebhookStatus};
use domain::ports::WebhookInbox;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const JOBS: i64 = 3000;

fn worker(db_url: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_lazona-worker"))
        .env("DATABASE_URL", db_url)
        .env("LAZONA_WORKER__LEASE_SECS", "1")
        .env("LAZONA_WORKER__POLL_INTERVAL_MS", "100")
        .env("RUST_LOG", "error")
        .env_remove("LAZONA_CONFIG")
        .stdout(Stdio::null())
        .spawn()
        .expect("lazona-worker starts")
}

async fn wait_until(db: &Database, sql: &str, at_least: i64, timeout: Duration) -> i64 {
    let deadline = Instant::now() + timeout;
    loop {
        let n = count(db, sql).await;
        if n >= at_least || Instant::now() > deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn crash_and_recover(backend: &str, db: TestDb) {
    let settings = adapters::testing::settings_for(&db.url);
    let database = Database::connect(&settings.database)
        .await
        .expect("connect");
    database.migrate().await.expect("migrate");
    let inbox = SqlInbox::start(database.clone(), &settings.inbox);
    let mut set = tokio::task::JoinSet::new();
    for i in 0..JOBS {
        let inbox = inbox.clone();
        set.spawn(async move {
            inbox
                .record(NewWebhook {
                    resource: Resource::Order,
                    topic: Some("order.created".into()),
                    event: Some("created".into()),
                    delivery_id: Some(format!("crash-{i}")),
                    wc_webhook_id: None,
                    source: None,
                    subject_id: Some(i),
                    subject_modified: None,
                    headers: Vec::new(),
                    body: Bytes::from(format!(r#"{{"id": {i}}}"#)),
                    received_at: chrono::Utc::now(),
                    status: WebhookStatus::Queued,
                    error: None,
                })
                .await
                .expect("recorded")
        });
    }
    set.join_all().await;
    assert_eq!(
        count(&database, "SELECT COUNT(*) FROM jobs").await,
        JOBS,
        "{backend}"
    );

    let processed = "SELECT COUNT(*) FROM webhooks WHERE status = 'processed'";
    let mut first = worker(&db.url);
    let done = wait_until(&database, processed, JOBS / 4, Duration::from_secs(60)).await;
    first.kill().expect("kill -9");
    first.wait().expect("reaped");
    let at_kill = count(&database, processed).await;
    assert!(
        done >= JOBS / 4 && at_kill < JOBS,
        "{backend}: killed in the middle ({at_kill} of {JOBS} done)"
    );

    let mut second = worker(&db.url);
    let all = wait_until(&database, processed, JOBS, Duration::from_secs(90)).await;
    let jobs_left = {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = count(&database, "SELECT COUNT(*) FROM jobs").await;
            if left == 0 || Instant::now() > deadline {
                break left;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    second.kill().expect("stop");
    second.wait().expect("reaped");

    assert_eq!(all, JOBS, "{backend}: every job completed");
    assert_eq!(jobs_left, 0, "{backend}: every job acknowledged");
    let effects = count(
        &database,
        "SELECT COUNT(*) FROM webhook_events WHERE status = 'processed'",
    )
    .await;
    let distinct = count(
        &database,
        "SELECT COUNT(DISTINCT webhook_id) FROM webhook_events WHERE status = 'processed'",
    )
    .await;
    assert_eq!(
        (effects, distinct),
        (JOBS, JOBS),
        "{backend}: each side effect exactly once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_jobs_loses_nothing_and_repeats_no_effect() {
    for (backend, db) in TestDb::all().await {
        crash_and_recover(backend, db).await;
    }
}
