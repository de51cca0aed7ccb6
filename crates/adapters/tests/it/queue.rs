//! The SQL job queue against the port's conformance suite, on SQLite and Postgres.

use crate::helpers::open;
use adapters::testing::TestDb;
use adapters::testing::queue_conformance::{Fresh, run_all};
use domain::ports::JobQueue;
use std::sync::Arc;

async fn fresh(db: TestDb) -> Fresh {
    let (_database, _inbox, queue, _) = open(&db).await;
    let handles: Vec<Arc<dyn JobQueue>> = (0..4)
        .map(|_| Arc::new(queue.clone()) as Arc<dyn JobQueue>)
        .collect();
    (handles, Box::new(db))
}

#[tokio::test]
async fn sqlite_queue_meets_the_contract() {
    run_all("sqlite", || fresh(TestDb::sqlite())).await;
}

#[tokio::test]
async fn postgres_queue_meets_the_contract() {
    if adapters::testing::postgres_admin_url().is_none() {
        return;
    }
    run_all("postgres", || async {
        fresh(TestDb::postgres().await.expect("postgres")).await
    })
    .await;
}
