//! The OpenAPI 3.1 document of the operations API, generated from the handlers' `#[utoipa::path]`
//! attributes and served at `/api/v1/openapi.json`; `/docs` is a Swagger UI page over it.
//!
//! `/docs` loads Swagger UI from this server: a pinned copy of `swagger-ui-dist` compiled into
//! the binary (`src/assets.rs`), so the page works offline and runs no other host's code
//! (`utoipa-swagger-ui` was not used: it downloads its assets from GitHub at build time).

use crate::AppState;
use axum::Json;
use axum::extract::State;
use axum::response::Response;
use std::sync::OnceLock;
use utoipa::Modify;
use utoipa::openapi::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};

/// The document's static part: title, version, tags and the bearer scheme every operation
/// requires (but the document itself). The paths come from the router ([`super::routes`]).
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "La Zona connector operations API",
        description = "Stored webhooks, shipments and labels, dead jobs, and the operators' \
                       actions. Send `Authorization: Bearer <token>` (`lazona tokens create`): an \
                       admin token sees and operates everything, a vendor's token sees only that \
                       vendor's shipments and labels. Errors are \
                       `{\"error\": {\"code\", \"message\", \"field\"}}`."
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "webhooks", description = "The webhook inbox (admin)"),
        (name = "shipments", description = "Shipments and labels (admin: all; vendor: their own)"),
        (name = "dead jobs", description = "Jobs the workers gave up on (admin)"),
        (name = "alerts", description = "What needs a person (admin)"),
        (name = "audit", description = "Who did what: the operators' actions (admin)"),
        (name = "personal data", description = "A customer's erasure (admin)"),
        (name = "events", description = "The live stream of what happens (admin: all; vendor: their own)"),
        (name = "meta", description = "This document"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The document, built once.
pub(crate) fn spec() -> &'static OpenApi {
    static DOC: OnceLock<OpenApi> = OnceLock::new();
    DOC.get_or_init(|| super::routes().split_for_parts().1)
}

/// This OpenAPI document (no token needed).
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    operation_id = "openapi_document",
    tag = "meta",
    security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object))
)]
pub(super) async fn document(State(_): State<AppState>) -> Json<&'static OpenApi> {
    Json(spec())
}

const DOCS_PAGE: &str = include_str!("docs.html");

/// `/docs`: Swagger UI over the document.
pub(crate) async fn docs() -> Response {
    crate::assets::page(DOCS_PAGE, "no-cache")
}
