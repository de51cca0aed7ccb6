//! `lazona-worker`: runs the worker against the configured database.

use adapters::config::Settings;
use adapters::db::{Database, SqlInbox, SqlJobQueue};
use app_worker::{Worker, WorkerOptions};
use std::sync::Arc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = std::env::args().skip_while(|a| a != "--config").nth(1).map(std::path::PathBuf::from);
    let settings = Settings::load(config.as_deref())?;
    adapters::telemetry::init(&settings.log.format);
    let db = Database::connect(&settings.database).await?;
    if settings.database.migrate_on_start {
        db.migrate().await?;
    }
    let inbox = Arc::new(SqlInbox::start(db.clone(), &settings.inbox));
    let queue = Arc::new(SqlJobQueue::new(db));
    let worker = Worker::new(queue, inbox, WorkerOptions::from_config(&settings.worker));
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn(app_worker::shutdown_on_signal(shutdown.clone()));
    worker.run(shutdown).await;
    Ok(())
}
