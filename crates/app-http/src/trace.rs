//! Traceable requests: every request gets an id and a span.
//!
//! The id is the client's `X-Request-Id` when that is a sane one (1 to 128 bytes of visible
//! ASCII: [`domain::model::is_request_id`]), a new UUID otherwise; it is set on the request
//! before the handlers see it, so a webhook stores it among its headers and its job's span
//! carries it ([`domain::model::NewWebhook::request_id`]), and it is echoed in the response's
//! `X-Request-Id`.
//!
//! The span (`request`) has the method, the matched route (never the raw URI, whose query could
//! hold anything), the request id, and once answered the status and the latency; the webhook
//! endpoints add the stored webhook's id. No header but the id, and never a body, is logged.

use axum::Router;
use axum::body::Body;
use axum::extract::MatchedPath;
use axum::http::{HeaderName, Method, Request, Response};
use domain::model::{REQUEST_ID_HEADER, is_request_id};
use std::time::Duration;
use tower::ServiceBuilder;
use tower::util::MapRequestLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{OnResponse, TraceLayer};
use tracing::Span;
use tracing::field::Empty;

/// `x-request-id`.
const REQUEST_ID: HeaderName = HeaderName::from_static(REQUEST_ID_HEADER);

/// `router` with request ids and a span for every request.
pub(crate) fn layer<S>(router: Router<S>) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    router.layer(
        ServiceBuilder::new()
            .layer(MapRequestLayer::new(drop_insane_request_id))
            .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
            .layer(PropagateRequestIdLayer::new(REQUEST_ID))
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(make_span)
                    .on_response(Finished)
                    // A failure is logged with its status by `Finished` already.
                    .on_failure(()),
            ),
    )
}

/// Removes the client's `X-Request-Id` unless it is a single sane one, so that a new one is made.
fn drop_insane_request_id(mut req: Request<Body>) -> Request<Body> {
    let mut values = req.headers().get_all(&REQUEST_ID).iter();
    let sane = match (values.next(), values.next()) {
        (Some(v), None) => is_request_id(v.as_bytes()),
        (None, _) => true,
        (Some(_), Some(_)) => false,
    };
    if !sane {
        req.headers_mut().remove(&REQUEST_ID);
    }
    req
}

/// The target of the reads' spans (`GET`, `HEAD`): their answers are logged at `debug` when they
/// succeed, and `RUST_LOG` can quieten them apart (`app_http::trace::read=warn`).
const READ_TARGET: &str = "app_http::trace::read";

fn make_span(req: &Request<Body>) -> Span {
    let method = req.method();
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("(unmatched)", MatchedPath::as_str);
    let request_id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if method == Method::GET || method == Method::HEAD {
        tracing::info_span!(
            target: READ_TARGET,
            "request",
            %method,
            path,
            request_id,
            status = Empty,
            latency_ms = Empty,
        )
    } else {
        tracing::info_span!(
            "request",
            %method,
            path,
            request_id,
            status = Empty,
            latency_ms = Empty,
            webhook_id = Empty,
        )
    }
}

/// Records the status and the latency on the request's span and logs the answer: at `warn` for
/// server errors, at `info` for writes and client errors, at `debug` for reads that succeeded
/// (probes, metrics scrapes and the dashboard's polling would drown the rest).
#[derive(Clone, Copy)]
struct Finished;

impl<B> OnResponse<B> for Finished {
    fn on_response(self, res: &Response<B>, latency: Duration, span: &Span) {
        let status = res.status();
        let latency_ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
        span.record("status", status.as_u16());
        span.record("latency_ms", latency_ms);
        let read = span.metadata().is_none_or(|m| m.target() == READ_TARGET);
        if status.is_server_error() {
            tracing::warn!("request answered");
        } else if status.is_client_error() || !read {
            tracing::info!("request answered");
        } else {
            tracing::debug!("request answered");
        }
    }
}
