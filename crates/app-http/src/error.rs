//! The API's errors and their stable JSON shape:
//! `{"error": {"code": "...", "message": "...", "field": "..."}}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body could not be read (400).
    #[error("the body could not be read: {0}")]
    BadBody(String),
    /// The body did not arrive in time (408; the connection is closed).
    #[error("the body did not arrive within {secs} s of the request's headers")]
    BodyTimeout {
        /// The time allowed (`server.body_read_timeout_secs`).
        secs: u64,
    },
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
    /// An action taken that the audit log could not record (500): it stands, do not take it
    /// again.
    #[error("{0}")]
    NotRecorded(String),
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::BadParameter { .. } => StatusCode::BAD_REQUEST,
            ApiError::Missing(_) => StatusCode::NOT_FOUND,
            ApiError::Refused(_) => StatusCode::CONFLICT,
            ApiError::NotRecorded(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::BadBody(_) => StatusCode::BAD_REQUEST,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadBody(_) => "unreadable_body",
            ApiError::BodyTimeout { .. } => "body_timeout",
            ApiError::Unavailable(_) => "storage_unavailable",
            ApiError::NotFound | ApiError::Missing(_) => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Unauthenticated(_) => "unauthorized",
            ApiError::Forbidden => "forbidden",
            ApiError::BadParameter { .. } => "invalid_parameter",
            ApiError::Refused(_) => "refused",
            ApiError::NotRecorded(_) => "not_recorded",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut error = json!({ "code": self.code(), "message": self.to_string() });
        if let ApiError::BadParameter { field, .. } = &self {
            error["field"] = json!(field);
        }
        let mut response = (status, axum::Json(json!({ "error": error }))).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        if status == StatusCode::UNAUTHORIZED {
            // Only the operations API's tokens: the webhooks' signatures are answered through
            // `connector::answer`.
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"lazona\""),
            );
        }
        response
    }
}
