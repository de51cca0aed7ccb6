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

pub(crate) async fn render(State(state): State<crate::AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
