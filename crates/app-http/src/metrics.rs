//! `/metrics`: the process's `metrics` facade in Prometheus text format (the intake counted by
//! [`connector::count`], the embedded worker's jobs and third-party calls), with the queue gauges
//! sampled now.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

/// `/metrics`.
pub(crate) async fn render(State(state): State<crate::AppState>) -> impl IntoResponse {
    if let Some((queue, backend)) = &state.queue_stats {
        connector::sample_queue(queue.as_ref(), backend).await;
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        connector::render_metrics(),
    )
}
