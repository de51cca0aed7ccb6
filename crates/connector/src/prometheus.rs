//! The Prometheus side of the metrics: the process's recorder (the `metrics` facade's, so the
//! worker, the server and any adapter record without knowing who exports), the queue gauges
//! sampled at scrape time, and `lazona-worker`'s own `/metrics`, `/healthz` and `/readyz`
//! listener (`worker.metrics_listen`).

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use domain::ports::{JobQueue, WebhookInbox};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Histogram buckets, in seconds: from a fast SQL statement to a slow carrier.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process's Prometheus recorder, installed on first use as the `metrics` facade's global
/// recorder; `None` when another recorder was installed first (an embedder's own).
pub fn prometheus() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets(BUCKETS)
                .expect("the buckets are not empty");
            match builder.install_recorder() {
                Ok(handle) => {
                    describe();
                    Some(handle)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "no Prometheus recorder: another one is installed");
                    None
                }
            }
        })
        .as_ref()
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_histogram!(
        "lazona_job_duration_seconds",
        Unit::Seconds,
        "How long jobs ran, by kind and result (ok, transient, permanent)."
    );
    describe_counter!(
        "lazona_jobs_total",
        "Jobs finished, by kind and outcome (succeeded, retried, dead)."
    );
    describe_histogram!(
        "lazona_external_call_duration_seconds",
        Unit::Seconds,
        "Third-party calls (koiki, shop, sugarcrm, smtp), by service and call."
    );
    describe_counter!(
        "lazona_external_call_errors_total",
        "Failed third-party calls, by service, call and error class."
    );
    describe_gauge!(
        "lazona_queue_jobs",
        "Jobs in the queue, by backend and state (pending, running, dead)."
    );
    describe_gauge!(
        "lazona_queue_oldest_job_age_seconds",
        Unit::Seconds,
        "How long the oldest due job has waited, by backend."
    );
    describe_counter!(
        "lazona_events_written_total",
        "Events appended to the event log by this process's workers."
    );
    describe_counter!(
        "lazona_events_dropped_total",
        "Events not written: the log was down or too far behind."
    );
    describe_counter!(
        "lazona_webhooks_received_total",
        "Webhook requests, by topic and result."
    );
    describe_counter!(
        "lazona_webhooks_total",
        "Webhooks received, by resource and result."
    );
    describe_counter!(
        "lazona_signature_failures_total",
        "Requests with a missing or wrong signature."
    );
    describe_counter!("lazona_pings_total", "WooCommerce webhook creation pings.");
    describe_counter!("lazona_unavailable_total", "Requests answered 503.");
    describe_counter!("lazona_body_too_large_total", "Requests answered 413.");
    // The intake's series exist from the start, at 0, as dashboards and alerts expect.
    for resource in ["order", "customer"] {
        for result in ["accepted", "duplicate", "rejected"] {
            let _ = metrics::counter!("lazona_webhooks_total", "resource" => resource, "result" => result);
        }
    }
    for name in [
        "lazona_signature_failures_total",
        "lazona_pings_total",
        "lazona_unavailable_total",
        "lazona_body_too_large_total",
    ] {
        let _ = metrics::counter!(name);
    }
}

/// Sets the queue gauges from `queue.stats()`, labelled `backend` (`sql` or `redis`). A queue
/// that cannot be reached leaves them as they were.
pub async fn sample_queue(queue: &dyn JobQueue, backend: &'static str) {
    let stats = match tokio::time::timeout(Duration::from_secs(5), queue.stats()).await {
        Ok(Ok(stats)) => stats,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "queue stats unavailable");
            return;
        }
        Err(_) => {
            tracing::warn!("queue stats timed out");
            return;
        }
    };
    for (state, n) in [
        ("pending", stats.pending),
        ("running", stats.running),
        ("dead", stats.dead),
    ] {
        metrics::gauge!("lazona_queue_jobs", "backend" => backend, "state" => state).set(n as f64);
    }
    let age = stats
        .oldest_due
        .map(|due| (chrono::Utc::now() - due).num_milliseconds().max(0) as f64 / 1000.0)
        .unwrap_or(0.0);
    metrics::gauge!("lazona_queue_oldest_job_age_seconds", "backend" => backend).set(age);
}

/// The metrics in Prometheus text format (empty without a recorder).
pub fn render() -> String {
    match prometheus() {
        Some(handle) => {
            handle.run_upkeep();
            handle.render()
        }
        None => String::new(),
    }
}

#[derive(Clone)]
struct Probe {
    queue: Arc<dyn JobQueue>,
    backend: &'static str,
    inbox: Arc<dyn WebhookInbox>,
}

/// Serves `/metrics` (with the queue gauges sampled at each scrape), `/healthz` and `/readyz`
/// (the database answers) on `addr` until `shutdown`: `lazona-worker`'s listener.
///
/// # Errors
/// When `addr` cannot be bound.
pub async fn serve_metrics(
    addr: SocketAddr,
    queue: Arc<dyn JobQueue>,
    backend: &'static str,
    inbox: Arc<dyn WebhookInbox>,
    shutdown: CancellationToken,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    prometheus();
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} for metrics: {e}"))?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(metrics_page))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(Probe {
            queue,
            backend,
            inbox,
        });
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
        {
            tracing::error!(error = %e, "metrics listener failed");
        }
    });
    tracing::info!(addr = %bound, "worker metrics on /metrics");
    Ok((bound, task))
}

async fn metrics_page(State(p): State<Probe>) -> impl IntoResponse {
    sample_queue(p.queue.as_ref(), p.backend).await;
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        render(),
    )
}

async fn readyz(State(p): State<Probe>) -> impl IntoResponse {
    match tokio::time::timeout(Duration::from_secs(5), p.inbox.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready"),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "database unavailable"),
    }
}
