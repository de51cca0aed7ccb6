//! The webhook endpoints. The request id set by the `trace` layer is among the headers, so it is
//! stored with the webhook.

use crate::{ApiError, AppState};
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use connector::IngestOutcome;
use connector::answer::Answer;
use domain::model::Resource;

pub(crate) async fn order(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    receive(state, Resource::Order, headers, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

pub(crate) async fn customer(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    receive(state, Resource::Customer, headers, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn receive(
    state: AppState,
    resource: Resource,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            connector::count_too_large();
            tracing::warn!(%resource, "webhook body over the size limit");
            let limit = state.max_body_bytes;
            return Ok(respond(&Answer::TooLarge { limit }));
        }
        Err(rejection) => return Err(ApiError::BadBody(rejection.body_text())),
    };
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();

    // The same path as an embedded connector's `Connector::ingest` (which also logs).
    let ingested = connector::ingest(
        state.inbox.as_ref(),
        state.secret.as_deref(),
        resource,
        &headers,
        body,
        state.commit_timeout,
    )
    .await;
    let topic = headers
        .iter()
        .find(|(k, _)| k == "x-wc-webhook-topic")
        .map(|(_, v)| v.as_str());
    connector::count(resource, topic, &ingested);
    if let Some(id) = ingested.as_ref().ok().and_then(IngestOutcome::webhook_id) {
        // The request's span (`trace`): its answer is logged with the stored webhook.
        tracing::Span::current().record("webhook_id", id.0);
    }
    // Answered as every front answers (`connector::answer`).
    let answer = match ingested {
        Ok(outcome) => Answer::Ingested(resource, outcome),
        Err(e) => Answer::Refused(e),
    };
    Ok(respond(&answer))
}

/// The axum response for `answer`.
pub(crate) fn respond(answer: &Answer) -> Response {
    let (status, body, extra) = answer.parts();
    let mut response = (status, axum::Json(body)).into_response();
    if let Some((name, value)) = extra {
        response
            .headers_mut()
            .insert(name, HeaderValue::from_static(value));
    }
    response
}
