//! `lazona-worker`: runs the worker as its own process against the configured database.

use clap::Parser;
use connector::{Connector, adapters::config::Settings};
use std::path::PathBuf;

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
    let settings = Settings::load(Args::parse().config.as_deref())?;
    // Kept to the end of `main`: dropped, it sends the error reports still queued.
    let _telemetry = connector::adapters::telemetry::init(&settings.log.format, &settings.sentry);
    let metrics_listen = settings.worker.metrics_listen;
    let connector = Connector::builder(settings).build().await?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn(connector::shutdown_on_signal(shutdown.clone()));
    let metrics = match metrics_listen {
        Some(addr) => Some(connector.serve_metrics(addr, shutdown.clone()).await?.1),
        None => None,
    };
    connector.run_worker(shutdown).await;
    if let Some(metrics) = metrics {
        let _ = metrics.await;
    }
    Ok(())
}
