//! Every error of every route has the JSON shape `{"error": {"code", "message", ...}}`: a method
//! a route does not have (405, with `Allow`), a query or path parameter that does not parse
//! (400, naming it), an unknown path (404).

use crate::helpers::{TestApp, TestDb, settings};
use adapters::db::SqlTokenStore;
use domain::model::Principal;
use domain::ports::TokenStore;
use reqwest::Method;
use serde_json::Value;

/// Status, `Allow` header and JSON body; fails when the body is not the error shape.
async fn error(app: &TestApp, method: Method, path: &str, token: &str) -> (u16, String, Value) {
    let resp = app
        .client
        .request(method.clone(), app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .expect("sent");
    let status = resp.status().as_u16();
    let allow = resp
        .headers()
        .get("allow")
        .map(|v| v.to_str().expect("ascii").to_owned())
        .unwrap_or_default();
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().expect("ascii").to_owned());
    let text = resp.text().await.expect("body");
    let context = format!("{method} {path}: {status} {content_type:?} {text:?}");
    assert_eq!(
        content_type.as_deref(),
        Some("application/json"),
        "{context}"
    );
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{context}"));
    let error = &body["error"];
    assert!(
        error["code"].is_string() && error["message"].is_string(),
        "{context}"
    );
    (status, allow, body)
}

#[tokio::test]
async fn every_error_of_every_route_is_the_json_error_shape() {
    let db = TestDb::sqlite();
    let app = TestApp::spawn(&settings(&db.url, &[("worker.embedded", "false")])).await;
    let (_, admin) = SqlTokenStore::new(app.running.db.clone())
        .create("errors", Principal::Admin)
        .await
        .expect("token");
    let admin = admin.expose().to_owned();

    // Each route with the methods it has.
    let routes: &[(&str, &[&str])] = &[
        ("/", &["GET", "HEAD"]),
        ("/docs", &["GET", "HEAD"]),
        ("/healthz", &["GET", "HEAD"]),
        ("/readyz", &["GET", "HEAD"]),
        ("/metrics", &["GET", "HEAD"]),
        ("/api/deliveries/", &["POST"]),
        ("/api/deliveries", &["POST"]),
        ("/api/customers/", &["POST"]),
        ("/api/customers", &["POST"]),
        ("/api/v1/webhooks", &["GET", "HEAD"]),
        ("/api/v1/webhooks/1", &["GET", "HEAD"]),
        ("/api/v1/webhooks/1/replay", &["POST"]),
        ("/api/v1/shipments", &["GET", "HEAD"]),
        ("/api/v1/shipments/1", &["GET", "HEAD"]),
        ("/api/v1/shipments/1/label", &["GET", "HEAD"]),
        ("/api/v1/shipments/1/retry", &["POST"]),
        ("/api/v1/shipments/1/track", &["POST"]),
        ("/api/v1/dead", &["GET", "HEAD"]),
        ("/api/v1/dead/1/requeue", &["POST"]),
        ("/api/v1/events", &["GET", "HEAD"]),
        ("/api/v1/openapi.json", &["GET", "HEAD"]),
    ];
    for (path, methods) in routes {
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] {
            if methods.contains(&method) {
                continue;
            }
            let method = Method::from_bytes(method.as_bytes()).expect("method");
            let (status, allow, body) = error(&app, method.clone(), path, &admin).await;
            assert_eq!(status, 405, "{method} {path}: {body}");
            assert_eq!(
                body["error"]["code"], "method_not_allowed",
                "{method} {path}"
            );
            let mut allowed: Vec<&str> = allow.split(',').map(str::trim).collect();
            allowed.sort_unstable();
            let mut want = methods.to_vec();
            want.sort_unstable();
            assert_eq!(allowed, want, "{method} {path}: Allow");
        }
    }

    // Parameters that do not parse, named in `field`.
    let bad: &[(Method, &str, &str)] = &[
        (Method::GET, "/api/v1/events?after=abc", "after"),
        (Method::GET, "/api/v1/events?after=1.5", "after"),
        (Method::GET, "/api/v1/webhooks/%ff", "id"),
        (Method::POST, "/api/v1/webhooks/%ff/replay", "id"),
        (Method::GET, "/api/v1/shipments/%ff", "id"),
        (Method::GET, "/api/v1/shipments/%FF%FE/label", "id"),
        (Method::POST, "/api/v1/shipments/%ff/retry", "id"),
        (Method::POST, "/api/v1/shipments/%ff/track", "id"),
        (Method::POST, "/api/v1/dead/%ff/requeue", "id"),
        (Method::GET, "/api/v1/shipments/x", "id"),
    ];
    for (method, path, field) in bad {
        let (status, _, body) = error(&app, method.clone(), path, &admin).await;
        assert_eq!(status, 400, "{method} {path}: {body}");
        assert_eq!(body["error"]["code"], "invalid_parameter", "{path}");
        assert_eq!(body["error"]["field"], *field, "{path}");
    }

    // An unknown path, with or without a token.
    let (status, _, body) = error(&app, Method::GET, "/api/v1/nothing", &admin).await;
    assert_eq!((status, &body["error"]["code"]), (404, &"not_found".into()));
    app.stop().await;
}
