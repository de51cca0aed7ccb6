//! `lazona-http`: the webhook server. With no configuration it stores webhooks in `lazona.db`
//! (SQLite) in the working directory and processes them in-process.

use adapters::config::Settings;
use clap::Parser;
use std::path::PathBuf;
use tokio_util::sync::CancellationToken;

/// La Zona connector: receives WooCommerce webhooks, stores them durably, processes them.
#[derive(Debug, Parser)]
#[command(name = "lazona-http", version)]
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
    // Kept to the end of `main`: dropped, it sends the error reports still queued.
    let _telemetry = adapters::telemetry::init(&settings.log.format, &settings.sentry);
    // Every client connection is a file: the usual soft limit (1,024) is far below the hard one.
    match connector::serve::raise_open_file_limit() {
        Ok(limit) => tracing::debug!(limit, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.listen))?;
    let shutdown = CancellationToken::new();
    tokio::spawn(connector::shutdown_on_signal(shutdown.clone()));
    let running = app_http::start(&settings, listener, shutdown).await?;
    tracing::info!(
        addr = %running.addr,
        embedded_worker = settings.embedded_worker(),
        "lazona-http ready: POST webhooks to /api/deliveries/ and /api/customers/"
    );
    running.task.await??;
    Ok(())
}
