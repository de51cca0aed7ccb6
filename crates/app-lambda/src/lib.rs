//! The webhook endpoints as an AWS Lambda function (`lazona-lambda`): a second thin front, beside
//! `lazona-http`, over the same intake use case, [`Connector::ingest`].
//!
//! [`handle`] answers one API Gateway HTTP API (payload v2) request: `POST /api/deliveries/`
//! (orders) and `POST /api/customers/` (customers), with or without the trailing slash, are
//! checked, stored and answered exactly as `lazona-http` answers them (the same status codes,
//! JSON bodies and `Retry-After`/`WWW-Authenticate`/`Allow` headers); any other path is a JSON
//! 404, another method on those paths a JSON 405. The function never runs the worker: the
//! stored webhooks' jobs are processed by `lazona-worker` processes on the same database.
//!
//! The answers are `connector`'s [`Answer`], the same `lazona-http` gives. With `SENTRY_DSN`,
//! errors are reported to Sentry as the other binaries report them (`adapters::telemetry`), and
//! each invocation waits for its reports to leave before answering: the function is frozen
//! between invocations.
//! `lazona-http`'s Prometheus counters are not kept: a function has no `/metrics` to scrape.

pub use connector::adapters::config::Settings;
use connector::adapters::telemetry;
pub use connector::answer::Answer;
use connector::domain::model::Resource;
pub use connector::{Connector, IngestError, IngestOutcome};

use lambda_http::http::{HeaderValue, Method, header};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt as _, Response};
use std::convert::Infallible;
use std::sync::OnceLock;
use std::time::Duration;

/// The logs and the error reports, set up once per cold start and kept for the process's life.
static TELEMETRY: OnceLock<telemetry::TelemetryGuard> = OnceLock::new();

/// How long an invocation waits for its error reports to leave.
const REPORTS_FLUSH: Duration = Duration::from_secs(2);

/// The connector the configuration describes, as the other binaries build it: [`Settings::load`]
/// from `config/default.toml`'s defaults, the legacy variables (`WC_WEBHOOK_SECRET`,
/// `DATABASE_URL`, ...) and `LAZONA_*`; logs set up as `log.format` says, errors reported to
/// Sentry when `sentry.dsn` (`SENTRY_DSN`) is set. Its worker is not
/// started: nothing here runs it. Called once per cold start, before `lambda_http::run`.
///
/// # Errors
/// When the configuration is invalid or the database cannot be reached or migrated.
pub async fn connector_from_env() -> Result<Connector, lambda_http::Error> {
    let settings = Settings::load(None)?;
    TELEMETRY.get_or_init(|| telemetry::init(&settings.log.format, &settings.sentry));
    let connector = Connector::builder(settings)
        .without_worker()
        .build()
        .await
        .map_err(|e| format!("{e:#}"))?;
    tracing::info!(
        ?connector,
        "lazona-lambda ready: webhooks are stored, not processed here"
    );
    Ok(connector)
}

/// Answers one webhook request as `lazona-http` does; never fails (every failure is an answer).
///
/// `lambda_http::run(service_fn(|request| handle(&connector, request)))` serves it; tests call it
/// with a request built from an event's JSON (`lambda_http::request::from_str`).
///
/// # Errors
/// None: the error type is [`Infallible`], as `lambda_http::run` wants one.
pub async fn handle(connector: &Connector, request: Request) -> Result<Response<Body>, Infallible> {
    let answer = answer(connector, request).await;
    if let Some(telemetry) = TELEMETRY.get() {
        telemetry.flush(REPORTS_FLUSH);
    }
    Ok(response(&answer))
}

/// The Lambda response for `answer`: its JSON body, `Content-Type: application/json`.
fn response(answer: &Answer) -> Response<Body> {
    let (status, body, extra) = answer.parts();
    let mut response = Response::new(Body::Text(body.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some((name, value)) = extra {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

async fn answer(connector: &Connector, request: Request) -> Answer {
    let Some(resource) = route(&path_of(&request)) else {
        return Answer::NotFound;
    };
    if request.method() != Method::POST {
        return Answer::MethodNotAllowed;
    }
    let (parts, body) = request.into_parts();
    // API Gateway hands base64-encoded bodies (isBase64Encoded) over decoded, as `Binary`: the
    // signature is checked over the bytes WooCommerce sent.
    let body: Vec<u8> = match body {
        Body::Text(text) => text.into_bytes(),
        Body::Binary(bytes) => bytes,
        other => other.to_vec(),
    };
    let limit = connector.settings().webhook.max_body_bytes;
    if body.len() > limit {
        tracing::warn!(%resource, "webhook body over the size limit");
        connector::count_too_large();
        return Answer::TooLarge { limit };
    }
    let topic = parts
        .headers
        .get("x-wc-webhook-topic")
        .and_then(|v| v.to_str().ok());
    let headers = parts.headers.iter().map(|(name, value)| {
        (
            name.as_str(),
            String::from_utf8_lossy(value.as_bytes()).into_owned(),
        )
    });
    // Counted as lazona-http counts (in the `metrics` facade, for a recorder the function has).
    let ingested = connector.ingest(resource, headers, body).await;
    connector::count(resource, topic, &ingested);
    match ingested {
        Ok(outcome) => Answer::Ingested(resource, outcome),
        Err(e) => Answer::Refused(e),
    }
}

/// The endpoint a path names: `lazona-http`'s webhook routes.
fn route(path: &str) -> Option<Resource> {
    match path {
        "/api/deliveries/" | "/api/deliveries" => Some(Resource::Order),
        "/api/customers/" | "/api/customers" => Some(Resource::Customer),
        _ => None,
    }
}

/// The request's path as the client sent it to the API's stage: `lambda_http` puts a named
/// stage in front of the path (`/prod/api/deliveries/`) unless
/// `AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH` is set; the `$default` stage has none.
fn path_of(request: &Request) -> String {
    let path = request.uri().path();
    if std::env::var_os("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH").is_some() {
        return path.to_owned();
    }
    let stage = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => context.stage.as_deref(),
        _ => None,
    };
    match stage {
        Some(stage) if stage != "$default" => path
            .strip_prefix('/')
            .and_then(|p| p.strip_prefix(stage))
            .filter(|rest| rest.is_empty() || rest.starts_with('/'))
            .map_or_else(|| path.to_owned(), |rest| rest.to_owned()),
        _ => path.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_webhook_paths_are_routed_with_and_without_the_slash() {
        assert_eq!(route("/api/deliveries/"), Some(Resource::Order));
        assert_eq!(route("/api/deliveries"), Some(Resource::Order));
        assert_eq!(route("/api/customers/"), Some(Resource::Customer));
        assert_eq!(route("/api/customers"), Some(Resource::Customer));
        for other in ["/", "/api/deliveries//", "/api/v1/webhooks", "/healthz", ""] {
            assert_eq!(route(other), None, "{other}");
        }
    }
}
