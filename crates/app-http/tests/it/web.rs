//! The two HTML pages, `/docs` (Swagger UI) and `/` (the dashboard): everything they load comes
//! from this server, under a Content-Security-Policy that allows nothing else.

use crate::helpers::{TestApp, TestDb, settings};
use reqwest::header::HeaderMap;

/// The `src` and `href` values of `page`.
fn references(page: &str) -> Vec<String> {
    let mut found = Vec::new();
    for attribute in ["src=\"", "href=\""] {
        for (at, _) in page.match_indices(attribute) {
            let rest = &page[at + attribute.len()..];
            let end = rest.find('"').expect("a closed attribute");
            found.push(rest[..end].to_owned());
        }
    }
    found
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .expect("ascii")
}

/// Checks the page at `path` and what it loads; returns the paths it loads.
async fn check_page(app: &TestApp, path: &str) -> Vec<String> {
    let resp = app.client.get(app.url(path)).send().await.expect("sent");
    assert_eq!(resp.status(), 200, "{path}");
    let headers = resp.headers().clone();
    assert!(header(&headers, "content-type").starts_with("text/html"));
    let csp = header(&headers, "content-security-policy");
    for directive in [
        "default-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{path}: {directive} in {csp}");
    }
    for loose in ["unsafe-inline", "unsafe-eval", "http:", "https:", "*"] {
        assert!(!csp.contains(loose), "{path}: {loose} in {csp}");
    }
    assert_eq!(header(&headers, "x-content-type-options"), "nosniff");
    assert_eq!(header(&headers, "referrer-policy"), "no-referrer");
    assert_eq!(header(&headers, "x-frame-options"), "DENY");

    let page = resp.text().await.expect("page");
    assert!(
        !page.contains("http:") && !page.contains("https:") && !page.contains("//"),
        "{path} names no other host"
    );
    // No inline script or style: the policy would block them.
    assert!(!page.contains("<style"), "{path}: inline style sheet");
    assert!(!page.contains(" style="), "{path}: inline style attribute");
    assert_eq!(
        page.matches("<script").count(),
        page.matches("<script src=\"/").count(),
        "{path}: every script is a file of this server"
    );

    let loaded = references(&page);
    assert!(!loaded.is_empty(), "{path}");
    for reference in &loaded {
        assert!(
            reference.starts_with('/') && !reference.starts_with("//"),
            "{path}: {reference} is a path on this server"
        );
        let resp = app
            .client
            .get(app.url(reference))
            .send()
            .await
            .expect("sent");
        assert_eq!(resp.status(), 200, "{path} loads {reference}");
        let headers = resp.headers().clone();
        if !reference.starts_with("/api/") {
            let want = if reference.ends_with(".js") {
                "text/javascript; charset=utf-8"
            } else if reference.ends_with(".css") {
                "text/css; charset=utf-8"
            } else {
                panic!("{path}: unexpected {reference}")
            };
            assert_eq!(header(&headers, "content-type"), want, "{reference}");
            assert_eq!(header(&headers, "x-content-type-options"), "nosniff");
            assert!(headers.contains_key("cache-control"), "{reference}");
        }
    }
    loaded
}

#[tokio::test]
async fn the_docs_and_the_dashboard_load_only_this_servers_files_under_a_strict_policy() {
    let db = TestDb::sqlite();
    let app = TestApp::spawn(&settings(&db.url, &[("worker.embedded", "false")])).await;

    let docs = check_page(&app, "/docs").await;
    for file in ["swagger-ui-bundle.js", "swagger-ui.css"] {
        let asset = docs
            .iter()
            .find(|r| r.ends_with(file))
            .unwrap_or_else(|| panic!("/docs loads {file}"));
        let resp = app.client.get(app.url(asset)).send().await.expect("sent");
        // Versioned paths: cached for a year.
        assert_eq!(
            header(resp.headers(), "cache-control"),
            "public, max-age=31536000, immutable",
            "{asset}"
        );
        assert!(resp.bytes().await.expect("body").len() > 100_000, "{asset}");
    }
    // The script that starts Swagger UI points it at the document, and at nothing else.
    let init = docs
        .iter()
        .find(|r| r.ends_with(".js") && !r.contains("swagger-ui"))
        .expect("/docs has a script of its own");
    let script = app
        .client
        .get(app.url(init))
        .send()
        .await
        .expect("sent")
        .text()
        .await
        .expect("script");
    assert!(script.contains("/api/v1/openapi.json"), "{script}");
    assert!(script.contains("validatorUrl: null"), "no validator badge");
    assert!(!script.contains("http"), "{script}");

    check_page(&app, "/").await;
    app.stop().await;
}
