//! Intake counters, exposed in Prometheus text format at `/metrics`.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of what the webhook endpoints did, by resource where it matters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Webhooks stored and queued or ignored, [orders, customers].
    pub accepted: [AtomicU64; 2],
    /// Repeated delivery ids, [orders, customers].
    pub duplicates: [AtomicU64; 2],
    /// Stored as rejected (400), [orders, customers].
    pub rejected: [AtomicU64; 2],
    /// Missing or wrong signatures.
    pub signature_failures: AtomicU64,
    /// WooCommerce creation pings.
    pub pings: AtomicU64,
    /// Answered 503 because storage was down or no secret is set.
    pub unavailable: AtomicU64,
    /// Bodies over the limit.
    pub too_large: AtomicU64,
}

impl Metrics {
    /// Adds one to a counter.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP lazona_webhooks_total Webhooks received, by resource and result."
        );
        let _ = writeln!(out, "# TYPE lazona_webhooks_total counter");
        for (i, resource) in ["order", "customer"].iter().enumerate() {
            for (result, counter) in [
                ("accepted", &self.accepted[i]),
                ("duplicate", &self.duplicates[i]),
                ("rejected", &self.rejected[i]),
            ] {
                let _ = writeln!(
                    out,
                    "lazona_webhooks_total{{resource=\"{resource}\",result=\"{result}\"}} {}",
                    get(counter)
                );
            }
        }
        for (name, help, counter) in [
            (
                "lazona_signature_failures_total",
                "Requests with a missing or wrong signature.",
                &self.signature_failures,
            ),
            (
                "lazona_pings_total",
                "WooCommerce webhook creation pings.",
                &self.pings,
            ),
            (
                "lazona_unavailable_total",
                "Requests answered 503.",
                &self.unavailable,
            ),
            (
                "lazona_body_too_large_total",
                "Requests answered 413.",
                &self.too_large,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                get(counter)
            );
        }
        out
    }
}

/// `/metrics`: the intake counters above, then the process's `metrics` facade (the embedded
/// worker's jobs and third-party calls, webhooks by topic) with the queue gauges sampled now.
pub(crate) async fn render(State(state): State<crate::AppState>) -> impl IntoResponse {
    if let Some((queue, backend)) = &state.queue_stats {
        connector::sample_queue(queue.as_ref(), backend).await;
    }
    let mut page = state.metrics.render();
    page.push_str(&connector::render_metrics());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], page)
}

/// Counts a webhook request in `lazona_webhooks_received_total{topic,result}` (`result`:
/// `queued`, `ignored`, `duplicate`, `rejected`, `ping`, `missing_signature`,
/// `invalid_signature`, `unconfigured`, `unavailable`). The topic is WooCommerce's
/// `X-WC-Webhook-Topic` (`order.created`, ...) of signed requests only (`unauthenticated`
/// otherwise), and `other` when it does not look like one, so that no sender can make up label
/// values.
pub(crate) fn webhook_received(
    topic: Option<&str>,
    ingested: &Result<connector::IngestOutcome, connector::IngestError>,
) {
    use connector::{IngestError as E, IngestOutcome as O};
    let (signed, result) = match ingested {
        Ok(O::Ping { .. }) => (false, "ping"),
        Ok(O::Stored { status, .. }) => (true, status.as_str()),
        Ok(O::Duplicate { .. }) => (true, "duplicate"),
        Ok(O::Rejected { .. }) => (true, "rejected"),
        Err(E::MissingSignature) => (false, "missing_signature"),
        Err(E::InvalidSignature) => (false, "invalid_signature"),
        Err(E::Unconfigured) => (false, "unconfigured"),
        Err(E::Unavailable(_) | E::CommitTimeout) => (true, "unavailable"),
    };
    let topic = match topic {
        _ if !signed => "unauthenticated",
        Some(t) if looks_like_a_topic(t) => t,
        _ => "other",
    };
    metrics::counter!("lazona_webhooks_received_total", "topic" => topic.to_owned(), "result" => result)
        .increment(1);
}

/// `resource.event`, lowercase letters and underscores, short.
fn looks_like_a_topic(t: &str) -> bool {
    t.len() <= 40
        && t.split_once('.').is_some_and(|(a, b)| {
            !a.is_empty()
                && !b.is_empty()
                && t.bytes()
                    .all(|c| c.is_ascii_lowercase() || c == b'.' || c == b'_')
        })
}
