//! The dashboard at `/`: one page, compiled into the binary (no separate build), that signs in
//! with an API token and shows recent shipments and webhooks, the live event feed, and the retry
//! and refresh actions for an admin. Everything it shows comes from `/api/v1`, with the token's
//! rights.
//!
//! Its script and style sheet are files of their own (`dashboard.js`, `dashboard.css`, served
//! under `/assets/`), so that the page's Content-Security-Policy allows no inline code.

use axum::response::Response;

const PAGE: &str = include_str!("dashboard.html");

/// `GET /`: the dashboard page. It holds a token in session storage: not cached, not framed.
pub(crate) async fn page() -> Response {
    crate::assets::page(PAGE, "no-store")
}
