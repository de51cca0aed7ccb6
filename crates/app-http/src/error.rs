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
    /// The body did not arrive in time (408; the connection is closed).
    #[error("the body did not arrive within {secs} s of the request's headers")]
    BodyTimeout {
        /// The time allowed (`server.body_read_timeout_secs`).
        secs: u64,
    },
    /// A signed webhook with bad data: stored as rejected (400).
    #[error("{message}")]
    Invalid {
        /// The field at fault.
        field: Option<String>,
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
    /// A route that does not take this method (405; axum adds the `Allow` header).
    #[error("this endpoint does not take this method (see the Allow header)")]
    MethodNotAllowed,
    /// No valid `Authorization: Bearer` token on an operations API request (401).
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// A vendor's token on an admin-only endpoint (403).
    #[error("this endpoint needs an admin token")]
    Forbidden,
    /// A query or path parameter that does not parse (400).
    #[error("{message}")]
    BadParameter {
        /// The parameter at fault.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// No such resource, or none this token may see (404).
    #[error("{0}")]
    Missing(String),
    /// An action refused as things stand (409).
    #[error("{0}")]
    Refused(String),
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::MissingSignature
            | ApiError::InvalidSignature
            | ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::BadParameter { .. } => StatusCode::BAD_REQUEST,
            ApiError::Missing(_) => StatusCode::NOT_FOUND,
            ApiError::Refused(_) => StatusCode::CONFLICT,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::BadBody(_) | ApiError::Invalid { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unconfigured | ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::MissingSignature => "missing_signature",
            ApiError::InvalidSignature => "invalid_signature",
            ApiError::TooLarge { .. } => "body_too_large",
            ApiError::BadBody(_) => "unreadable_body",
            ApiError::BodyTimeout { .. } => "body_timeout",
            ApiError::Invalid { .. } => "invalid_payload",
            ApiError::Unconfigured => "not_configured",
            ApiError::Unavailable(_) => "storage_unavailable",
            ApiError::NotFound | ApiError::Missing(_) => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Unauthenticated(_) => "unauthorized",
            ApiError::Forbidden => "forbidden",
            ApiError::BadParameter { .. } => "invalid_parameter",
            ApiError::Refused(_) => "refused",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let bearer = matches!(self, ApiError::Unauthenticated(_));
        let mut error = json!({ "code": self.code(), "message": self.to_string() });
        if let ApiError::BadParameter { field, .. } = &self {
            error["field"] = json!(field);
        }
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
                HeaderValue::from_static(if bearer {
                    "Bearer realm=\"lazona\""
                } else {
                    "X-WC-Webhook-Signature"
                }),
            );
        }
        response
    }
}
