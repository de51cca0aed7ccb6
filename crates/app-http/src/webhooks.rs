//! The webhook endpoints. The request id set by the `trace` layer is among the headers, so it is
//! stored with the webhook.

use crate::{ApiError, AppState, Metrics};
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use connector::{IngestError, IngestOutcome};
use domain::model::Resource;
use serde_json::json;

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
    let m = &state.metrics;
    let slot = match resource {
        Resource::Order => 0,
        Resource::Customer => 1,
    };
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Metrics::inc(&m.too_large);
            tracing::warn!(%resource, "webhook body over the size limit");
            ApiError::TooLarge {
                limit: state.max_body_bytes,
            }
        } else {
            ApiError::BadBody(rejection.body_text())
        }
    })?;
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
    crate::metrics::webhook_received(topic, &ingested);
    if let Some(id) = ingested.as_ref().ok().and_then(IngestOutcome::webhook_id) {
        // The request's span (`trace`): its answer is logged with the stored webhook.
        tracing::Span::current().record("webhook_id", id.0);
    }
    let (webhook_id, shown) = match ingested {
        Ok(IngestOutcome::Ping { .. }) => {
            Metrics::inc(&m.pings);
            return Ok((StatusCode::OK, axum::Json(json!({ "status": "pong" }))).into_response());
        }
        Ok(IngestOutcome::Rejected {
            webhook_id,
            field,
            message,
        }) => {
            Metrics::inc(&m.rejected[slot]);
            return Err(ApiError::Invalid {
                field,
                message,
                webhook_id: webhook_id.0,
            });
        }
        Ok(IngestOutcome::Duplicate { webhook_id }) => {
            Metrics::inc(&m.duplicates[slot]);
            (webhook_id, "duplicate")
        }
        Ok(IngestOutcome::Stored { webhook_id, status }) => {
            Metrics::inc(&m.accepted[slot]);
            (webhook_id, status.as_str())
        }
        Err(e) => {
            return Err(match e {
                IngestError::MissingSignature => {
                    Metrics::inc(&m.signature_failures);
                    ApiError::MissingSignature
                }
                IngestError::InvalidSignature => {
                    Metrics::inc(&m.signature_failures);
                    ApiError::InvalidSignature
                }
                IngestError::Unconfigured => {
                    Metrics::inc(&m.unavailable);
                    ApiError::Unconfigured
                }
                IngestError::Unavailable(e) => {
                    Metrics::inc(&m.unavailable);
                    ApiError::Unavailable(e.to_string())
                }
                IngestError::CommitTimeout => {
                    Metrics::inc(&m.unavailable);
                    ApiError::Unavailable("the database did not commit in time".into())
                }
            });
        }
    };
    // As the original: 201 for orders, 200 for customers.
    let code = match resource {
        Resource::Order => StatusCode::CREATED,
        Resource::Customer => StatusCode::OK,
    };
    Ok((
        code,
        axum::Json(json!({ "webhook_id": webhook_id.0, "status": shown })),
    )
        .into_response())
}
