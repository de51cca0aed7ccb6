//! `lazona-worker`: runs the worker as its own process against the configured database.

use adapters::config::Settings;
use adapters::db::{Database, SqlInbox};
use adapters::queue::Queue;
use clap::Parser;
use std::path::PathBuf;
use std::sync::Arc;

/// La Zona connector's worker: processes the stored webhooks' jobs.
#[derive(Debug, Parser)]
#[command(name = "lazona-worker", version)]
struct Args {
    /// A TOML configuration file (see config/default.toml for every key).
    #[arg(long, env = "LAZONA_CONFIG")]
    config: Option<PathBuf>,
}

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let settings = Settings::load(args.config.as_deref())?;
    adapters::telemetry::init(&settings.log.format);
    let db = Database::connect(&settings.database).await?;
    if settings.database.migrate_on_start {
        db.migrate().await?;
    }
    let inbox = Arc::new(SqlInbox::start(db.clone(), &settings.inbox));
    let queue = Queue::open(&settings, &db, None).await?;
    tracing::info!(backend = queue.backend(), "job queue open");
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn(app_worker::shutdown_on_signal(shutdown.clone()));
    queue.spawn_background(shutdown.clone());
    let metrics = match settings.worker.metrics_listen {
        Some(addr) => Some(
            app_worker::serve_metrics(
                addr,
                queue.port.clone(),
                queue.backend(),
                inbox.clone(),
                shutdown.clone(),
            )
            .await?
            .1,
        ),
        None => None,
    };
    let worker = app_worker::connector_worker(&settings, &db, inbox, queue.port.clone())?;
    worker.run(shutdown).await;
    if let Some(metrics) = metrics {
        let _ = metrics.await;
    }
    Ok(())
}
