//! What a webhook request is answered, said once for every front over [`crate::ingest()`]:
//! `lazona-http`'s endpoints and `lazona-lambda` turn an [`Answer`] into their framework's
//! response, so they cannot drift apart.

use crate::{IngestError, IngestOutcome};
use axum::http::{StatusCode, header};
use domain::model::Resource;
use serde_json::{Value, json};

/// What a webhook request is answered, by every front (`lazona-http`, `lazona-lambda`): the
/// status, the JSON body (the operations API's error shape for failures) and the one header some
/// answers carry.
#[derive(Debug)]
pub enum Answer {
    /// Stored, a duplicate, kept as rejected, or a ping.
    Ingested(Resource, IngestOutcome),
    /// Refused: nothing was stored.
    Refused(IngestError),
    /// The body is over `webhook.max_body_bytes` (413).
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// No such endpoint (404).
    NotFound,
    /// A webhook path with a method other than POST (405).
    MethodNotAllowed,
}

impl Answer {
    /// The HTTP status, the JSON body and the extra headers.
    pub fn parts(
        &self,
    ) -> (
        StatusCode,
        Value,
        Option<(header::HeaderName, &'static str)>,
    ) {
        let error = |status: StatusCode, code: &str, message: String| {
            (
                status,
                json!({ "error": { "code": code, "message": message } }),
            )
        };
        let (status, body) = match self {
            Answer::Ingested(_, IngestOutcome::Ping { .. }) => {
                (StatusCode::OK, json!({ "status": "pong" }))
            }
            Answer::Ingested(
                _,
                IngestOutcome::Rejected {
                    webhook_id,
                    field,
                    message,
                },
            ) => (
                StatusCode::BAD_REQUEST,
                json!({ "error": {
                    "code": "invalid_payload",
                    "message": message,
                    "field": field,
                    "webhook_id": webhook_id.0,
                } }),
            ),
            Answer::Ingested(resource, IngestOutcome::Duplicate { webhook_id }) => (
                created_or_ok(*resource),
                json!({ "webhook_id": webhook_id.0, "status": "duplicate" }),
            ),
            Answer::Ingested(resource, IngestOutcome::Stored { webhook_id, status }) => (
                created_or_ok(*resource),
                json!({ "webhook_id": webhook_id.0, "status": status.as_str() }),
            ),
            Answer::Refused(IngestError::MissingSignature) => error(
                StatusCode::UNAUTHORIZED,
                "missing_signature",
                "the X-WC-Webhook-Signature header is missing".into(),
            ),
            Answer::Refused(IngestError::InvalidSignature) => error(
                StatusCode::UNAUTHORIZED,
                "invalid_signature",
                "the X-WC-Webhook-Signature header does not match the body".into(),
            ),
            Answer::Refused(IngestError::Unconfigured) => error(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_configured",
                "no webhook secret is configured on this connector (WC_WEBHOOK_SECRET)".into(),
            ),
            Answer::Refused(IngestError::Unavailable(e)) => error(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                format!("storage unavailable, nothing was stored: {e}"),
            ),
            Answer::Refused(IngestError::CommitTimeout) => error(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                "storage unavailable, nothing was stored: the database did not commit in time"
                    .into(),
            ),
            Answer::TooLarge { limit } => error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the body is larger than {limit} bytes"),
            ),
            Answer::NotFound => error(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such endpoint".into(),
            ),
            Answer::MethodNotAllowed => error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not take this method (see the Allow header)".into(),
            ),
        };
        let extra = match status {
            StatusCode::SERVICE_UNAVAILABLE => Some((header::RETRY_AFTER, "5")),
            StatusCode::UNAUTHORIZED => Some((header::WWW_AUTHENTICATE, "X-WC-Webhook-Signature")),
            StatusCode::METHOD_NOT_ALLOWED => Some((header::ALLOW, "POST")),
            _ => None,
        };
        (status, body, extra)
    }
}

/// As the original: 201 for orders, 200 for customers.
fn created_or_ok(resource: Resource) -> StatusCode {
    match resource {
        Resource::Order => StatusCode::CREATED,
        Resource::Customer => StatusCode::OK,
    }
}
