//! The webhook endpoints.

use crate::{ApiError, AppState, Metrics};
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use domain::model::{RecordOutcome, Resource, WebhookStatus};
use domain::service::intake::{AuthFailure, Intake, intake};
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

    let decision = intake(
        resource,
        &headers,
        body,
        state.secret.as_deref(),
        chrono::Utc::now(),
    );
    let (webhook, rejection) = match decision {
        Intake::Ping { webhook_id } => {
            Metrics::inc(&m.pings);
            tracing::info!(%resource, wc_webhook_id = webhook_id, "WooCommerce webhook ping");
            return Ok((StatusCode::OK, axum::Json(json!({ "status": "pong" }))).into_response());
        }
        Intake::Unauthenticated(failure) => {
            Metrics::inc(&m.signature_failures);
            tracing::warn!(%resource, ?failure, "webhook refused: bad signature");
            return Err(match failure {
                AuthFailure::MissingSignature => ApiError::MissingSignature,
                AuthFailure::InvalidSignature => ApiError::InvalidSignature,
            });
        }
        Intake::Unconfigured => {
            Metrics::inc(&m.unavailable);
            tracing::error!(%resource, "signed webhook refused: no webhook secret configured");
            return Err(ApiError::Unconfigured);
        }
        Intake::Accept(webhook) => (webhook, None),
        Intake::Reject(webhook, rejection) => (webhook, Some(rejection)),
    };

    let status = webhook.status;
    let delivery_id = webhook.delivery_id.clone();
    let recorded = match tokio::time::timeout(state.commit_timeout, state.inbox.record(webhook))
        .await
    {
        Ok(Ok(recorded)) => recorded,
        Ok(Err(e)) => {
            Metrics::inc(&m.unavailable);
            tracing::error!(%resource, error = %domain::error::error_chain(&e), "webhook not stored");
            return Err(ApiError::Unavailable(e.to_string()));
        }
        Err(_) => {
            Metrics::inc(&m.unavailable);
            tracing::error!(%resource, "webhook not committed in time");
            return Err(ApiError::Unavailable(
                "the database did not commit in time".into(),
            ));
        }
    };
    let duplicate = recorded.outcome == RecordOutcome::Duplicate;

    if let Some(rejection) = rejection {
        Metrics::inc(&m.rejected[slot]);
        tracing::warn!(%resource, webhook_id = %recorded.id, field = ?rejection.field, message = %rejection.message, "webhook rejected and kept");
        return Err(ApiError::Invalid {
            field: rejection.field,
            message: rejection.message,
            webhook_id: recorded.id.0,
        });
    }
    if duplicate {
        Metrics::inc(&m.duplicates[slot]);
        tracing::info!(%resource, webhook_id = %recorded.id, ?delivery_id, "duplicate delivery: nothing new stored");
    } else {
        Metrics::inc(&m.accepted[slot]);
        tracing::info!(%resource, webhook_id = %recorded.id, ?delivery_id, %status, "webhook stored");
    }
    // As the original: 201 for orders, 200 for customers.
    let code = match resource {
        Resource::Order => StatusCode::CREATED,
        Resource::Customer => StatusCode::OK,
    };
    let shown = if duplicate {
        "duplicate"
    } else {
        status.as_str()
    };
    debug_assert!(status != WebhookStatus::Rejected);
    Ok((
        code,
        axum::Json(json!({ "webhook_id": recorded.id.0, "status": shown })),
    )
        .into_response())
}
