//! The dashboard at `/`: one page, compiled into the binary (no separate build), that signs in
//! with an API token and shows recent shipments and webhooks, the live event feed, and the retry
//! and refresh actions for an admin. Everything it shows comes from `/api/v1`, with the token's
//! rights.

use axum::http::header;
use axum::response::IntoResponse;

const PAGE: &str = include_str!("dashboard.html");

/// `GET /`: the dashboard page.
pub(crate) async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // The page holds a token in session storage: no framing by other sites, no caching.
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        PAGE,
    )
}
