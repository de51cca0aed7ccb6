//! The API's errors and their stable JSON shape:
//! `{"error": {"code": "...", "message": "...", "field": "..."}}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No `X-WC-Webhook-Signature` header (401).
    #[error("the X-WC-Webhook-Signature header is missing")]
    MissingSignature,
    /// A signature that does not match the body (401).
    #[error("the X-WC-Webhook-Signature header does not match the body")]
    InvalidSignature,
    /// The body is over the limit (413).
    #[error("the body is larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// The body could not be read (400).
    #[error("the body could not be read: {0}")]
    BadBody(String),
    /// A signed webhook with bad data: stored as rejected (400).
    #[error("{message}")]
    Invalid {
        /// The field at fault.
        field: Option<&'static str>,
        /// What is wrong.
        message: String,
        /// The inbox id of the stored rejection.
        webhook_id: i64,
    },
    /// No webhook secret is configured (503).
    #[error("no webhook secret is configured on this connector (WC_WEBHOOK_SECRET)")]
    Unconfigured,
    /// The database is down or slow: nothing was stored (503).
    #[error("storage unavailable, nothing was stored: {0}")]
    Unavailable(String),
    /// No such route (404).
    #[error("no such endpoint")]
    NotFound,
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::MissingSignature | ApiError::InvalidSignature => StatusCode::UNAUTHORIZED,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BadBody(_) | ApiError::Invalid { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unconfigured | ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::NotFound => StatusCode::NOT_FOUND,
        }
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::MissingSignature => "missing_signature",
            ApiError::InvalidSignature => "invalid_signature",
            ApiError::TooLarge { .. } => "body_too_large",
            ApiError::BadBody(_) => "unreadable_body",
            ApiError::Invalid { .. } => "invalid_payload",
            ApiError::Unconfigured => "not_configured",
            ApiError::Unavailable(_) => "storage_unavailable",
            ApiError::NotFound => "not_found",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut error = json!({ "code": self.code(), "message": self.to_string() });
        if let ApiError::Invalid {
            field, webhook_id, ..
        } = &self
        {
            error["field"] = json!(field);
            error["webhook_id"] = json!(webhook_id);
        }
        let mut response = (status, axum::Json(json!({ "error": error }))).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("X-WC-Webhook-Signature"),
            );
        }
        response
    }
}
