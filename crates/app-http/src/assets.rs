//! The files the two HTML pages load, compiled into the binary, and the headers those pages are
//! served with.
//!
//! `/docs` is Swagger UI from a pinned copy of the npm package `swagger-ui-dist`
//! (`assets/swagger-ui/`, its README says how to update it); `/` is the dashboard. Both pages load
//! only files of this server, under `/assets/`, and are sent with a Content-Security-Policy that
//! allows nothing else (no other host, no inline script or style), since admins paste their
//! tokens into them.

use crate::AppState;
use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The policy of the HTML pages: this server's files only; `data:` images for the icons in
/// Swagger UI's style sheet; no plugins, no `<base>`, no framing.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Files whose path names their version: cached for a year.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// This project's own files, which change with the binary: asked again each time.
const REVALIDATE: &str = "no-cache";

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// A file served under `/assets/`.
pub(crate) struct Asset {
    /// Its path.
    pub(crate) path: &'static str,
    /// Its `Content-Type`.
    content_type: &'static str,
    /// Its `Cache-Control`.
    cache: &'static str,
    /// Its bytes.
    pub(crate) body: &'static [u8],
}

/// Every file under `/assets/`. Swagger UI's paths name its version (`swagger-ui-dist@5.36.0`, in
/// `assets/swagger-ui/`), so that a new one is never taken from a cache.
pub(crate) static ASSETS: [Asset; 5] = [
    Asset {
        path: "/assets/swagger-ui-5.36.0/swagger-ui-bundle.js",
        content_type: JS,
        cache: IMMUTABLE,
        body: include_bytes!("../assets/swagger-ui/swagger-ui-bundle.js"),
    },
    Asset {
        path: "/assets/swagger-ui-5.36.0/swagger-ui.css",
        content_type: CSS,
        cache: IMMUTABLE,
        body: include_bytes!("../assets/swagger-ui/swagger-ui.css"),
    },
    Asset {
        path: "/assets/docs.js",
        content_type: JS,
        cache: REVALIDATE,
        body: include_bytes!("api/docs.js"),
    },
    Asset {
        path: "/assets/dashboard.js",
        content_type: JS,
        cache: REVALIDATE,
        body: include_bytes!("dashboard.js"),
    },
    Asset {
        path: "/assets/dashboard.css",
        content_type: CSS,
        cache: REVALIDATE,
        body: include_bytes!("dashboard.css"),
    },
];

/// A route for each of [`ASSETS`].
pub(crate) fn routes() -> Router<AppState> {
    ASSETS.iter().fold(Router::new(), |router, asset| {
        router.route(asset.path, get(move || async move { serve(asset) }))
    })
}

fn serve(asset: &'static Asset) -> Response {
    (
        [
            (header::CONTENT_TYPE, asset.content_type),
            (header::CACHE_CONTROL, asset.cache),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        asset.body,
    )
        .into_response()
}

/// An HTML page with the security headers: the policy, no MIME sniffing, no referrer sent to
/// anyone, no framing; `cache` as its `Cache-Control`.
pub(crate) fn page(html: &'static str, cache: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, cache),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        html,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    /// The version in `assets/swagger-ui/`.
    const SWAGGER_UI_VERSION: &str = "5.36.0";
    const SUMS: &str = include_str!("../assets/swagger-ui/SHA256SUMS");
    const README: &str = include_str!("../assets/swagger-ui/README.md");

    #[test]
    fn the_embedded_swagger_ui_is_the_recorded_release() {
        let swagger: Vec<&Asset> = ASSETS
            .iter()
            .filter(|a| a.path.starts_with("/assets/swagger-ui-"))
            .collect();
        assert_eq!(swagger.len(), 2);
        let mut checked = 0;
        for line in SUMS.lines() {
            let (sum, file) = line.split_once("  ").expect("`<sha256>  <file>`");
            let asset = swagger
                .iter()
                .find(|a| a.path.ends_with(&format!("/{file}")))
                .unwrap_or_else(|| panic!("{file} is not embedded"));
            let actual = format!("{:x}", Sha256::digest(asset.body));
            assert_eq!(actual, sum, "{file} differs from the recorded release");
            assert!(README.contains(sum), "the README records {file}'s SHA-256");
            checked += 1;
        }
        assert_eq!(checked, swagger.len(), "SHA256SUMS covers every file");
        for asset in swagger {
            assert!(
                asset
                    .path
                    .starts_with(&format!("/assets/swagger-ui-{SWAGGER_UI_VERSION}/")),
                "{} names the version",
                asset.path
            );
        }
        assert!(README.contains(&format!("swagger-ui-dist@{SWAGGER_UI_VERSION}")));
    }
}
