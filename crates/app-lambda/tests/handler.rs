//! The Lambda handler, invoked directly with API Gateway HTTP API (payload v2) events as JSON, on
//! a SQLite database in a temporary directory: what it stores and answers, as `lazona-http`.

use app_lambda::{Connector, Settings, handle};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use domain::model::{WebhookFilter, WebhookId, WebhookStatus};
use domain::service::signature::WebhookSecret;
use lambda_http::Body;
use serde_json::{Value, json};
use std::path::Path;

const SECRET: &str = "lambda-test-secret";

/// A connector on a fresh SQLite database in `dir`, with the test secret and `extra` settings.
async fn connector_in(dir: &Path, extra: &str) -> Connector {
    let url = format!("sqlite://{}?mode=rwc", dir.join("lazona.db").display());
    let settings = Settings::from_toml(&format!(
        "database.url = \"{url}\"\nwebhook.secret = \"{SECRET}\"\n{extra}"
    ))
    .expect("settings");
    Connector::builder(settings).build().await.expect("builds")
}

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

fn sign(body: &[u8]) -> String {
    WebhookSecret::new(SECRET).sign(body)
}

/// The headers WooCommerce sends with an `order.created` delivery, lowercased as API Gateway
/// hands them over.
fn woocommerce_headers(resource: &str, signature: &str, delivery_id: &str) -> Value {
    json!({
        "content-type": "application/json",
        "user-agent": "WooCommerce/8.9.3 Hookshot (WordPress/6.5.5)",
        "x-wc-webhook-source": "https://lazona.example/",
        "x-wc-webhook-topic": format!("{resource}.created"),
        "x-wc-webhook-resource": resource,
        "x-wc-webhook-event": "created",
        "x-wc-webhook-signature": signature,
        "x-wc-webhook-id": "7",
        "x-wc-webhook-delivery-id": delivery_id,
        "host": "abc123.execute-api.eu-west-1.amazonaws.com",
        "x-forwarded-for": "203.0.113.7",
        "x-forwarded-proto": "https",
    })
}

/// An API Gateway HTTP API (payload format 2.0) event, as the Lambda receives it.
fn event(
    method: &str,
    raw_path: &str,
    stage: &str,
    headers: Value,
    body: &str,
    b64: bool,
) -> Value {
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": raw_path,
        "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": "abc123.execute-api.eu-west-1.amazonaws.com",
            "domainPrefix": "abc123",
            "http": {
                "method": method,
                "path": raw_path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.7",
                "userAgent": "WooCommerce/8.9.3 Hookshot (WordPress/6.5.5)"
            },
            "requestId": "JKJaXmPLvHcESHA=",
            "routeKey": "$default",
            "stage": stage,
            "time": "10/Mar/2025:12:00:00 +0000",
            "timeEpoch": 1741608000000u64
        },
        "body": body,
        "isBase64Encoded": b64
    })
}

/// Invokes the handler with `event`; the status, the headers and the JSON body.
async fn invoke(
    connector: &Connector,
    event: &Value,
) -> (u16, lambda_http::http::HeaderMap, Value) {
    let request =
        lambda_http::request::from_str(&event.to_string()).expect("an API Gateway v2 event");
    let Ok(response) = handle(connector, request).await;
    let (parts, body) = response.into_parts();
    assert_eq!(
        parts.headers["content-type"], "application/json",
        "every answer is JSON"
    );
    let body = match body {
        Body::Text(text) => serde_json::from_str(&text).expect("a JSON body"),
        other => panic!("a text body, got {other:?}"),
    };
    (parts.status.as_u16(), parts.headers, body)
}

/// A signed order delivery to `path`.
fn signed_order(path: &str, delivery_id: &str) -> Value {
    let body = fixture("order_minimal.json");
    let headers = woocommerce_headers("order", &sign(&body), delivery_id);
    event(
        "POST",
        path,
        "$default",
        headers,
        std::str::from_utf8(&body).expect("utf-8"),
        false,
    )
}

async fn stored(connector: &Connector, status: Option<WebhookStatus>) -> usize {
    let filter = WebhookFilter {
        status,
        limit: 100,
        ..Default::default()
    };
    connector
        .inbox()
        .list(&filter)
        .await
        .expect("inbox lists")
        .len()
}

#[tokio::test]
async fn a_signed_order_is_stored_and_answered_201() {
    let dir = tempfile::tempdir().expect("tempdir");
    let connector = connector_in(dir.path(), "").await;
    let (status, _, answer) = invoke(&connector, &signed_order("/api/deliveries/", "d-1")).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["status"], "queued");
    let id = answer["webhook_id"].as_i64().expect("a webhook id");

    let webhook = connector
        .inbox()
        .get(WebhookId(id))
        .await
        .expect("inbox answers")
        .expect("stored");
    assert_eq!(
        &webhook.data.body[..],
        &fixture("order_minimal.json")[..],
        "byte for byte"
    );
    assert_eq!(webhook.data.subject_id, Some(33));
    assert_eq!(webhook.data.delivery_id.as_deref(), Some("d-1"));
    assert_eq!(webhook.data.topic.as_deref(), Some("order.created"));
    assert_eq!(webhook.data.status, WebhookStatus::Queued);
    assert!(
        webhook
            .data
            .headers
            .iter()
            .any(|(k, v)| k == "x-wc-webhook-source" && v == "https://lazona.example/"),
        "headers kept: {:?}",
        webhook.data.headers
    );
}

#[tokio::test]
async fn the_same_delivery_again_is_a_duplicate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let connector = connector_in(dir.path(), "").await;
    let delivery = signed_order("/api/deliveries/", "0f3e4a1b2c3d4e5f60718293a4b5c6d7");
    let (status, _, first) = invoke(&connector, &delivery).await;
    assert_eq!(status, 201, "{first}");
    let (status, _, again) = invoke(&connector, &delivery).await;
    assert_eq!(status, 201, "{again}");
    assert_eq!(again["status"], "duplicate");
    assert_eq!(again["webhook_id"], first["webhook_id"]);
    assert_eq!(stored(&connector, None).await, 1, "nothing new stored");
}

#[tokio::test]
async fn a_bad_or_missing_signature_is_401_and_nothing_is_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let connector = connector_in(dir.path(), "").await;
    let body = fixture("order_minimal.json");
    let text = std::str::from_utf8(&body).expect("utf-8");

    let wrong = woocommerce_headers("order", &sign(b"another body"), "d-1");
    let (status, headers, answer) = invoke(
        &connector,
        &event("POST", "/api/deliveries/", "$default", wrong, text, false),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(answer["error"]["code"], "invalid_signature");
    assert_eq!(headers["www-authenticate"], "X-WC-Webhook-Signature");

    let mut unsigned = woocommerce_headers("order", "", "d-2");
    unsigned
        .as_object_mut()
        .expect("object")
        .remove("x-wc-webhook-signature");
    let (status, _, answer) = invoke(
        &connector,
        &event(
            "POST",
            "/api/deliveries/",
            "$default",
            unsigned,
            text,
            false,
        ),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(answer["error"]["code"], "missing_signature");

    assert_eq!(stored(&connector, None).await, 0);
}

#[tokio::test]
async fn a_signed_malformed_body_is_400_and_kept_as_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let connector = connector_in(dir.path(), "").await;
    let body = r#"{"order_key": "wc_order_x"}"#;
    let headers = woocommerce_headers("order", &sign(body.as_bytes()), "d-bad");
    let (status, _, answer) = invoke(
        &connector,
        &event("POST", "/api/deliveries/", "$default", headers, body, false),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["code"], "invalid_payload");
    assert_eq!(answer["error"]["field"], "id");
    let id = answer["error"]["webhook_id"]
        .as_i64()
        .expect("a webhook id");

    let webhook = connector
        .inbox()
        .get(WebhookId(id))
        .await
        .expect("inbox answers")
        .expect("kept");
    assert_eq!(webhook.data.status, WebhookStatus::Rejected);
    assert_eq!(&webhook.data.body[..], body.as_bytes());
    assert_eq!(stored(&connector, Some(WebhookStatus::Rejected)).await, 1);
}

#[tokio::test]
async fn a_base64_encoded_body_is_verified_over_the_decoded_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let connector = connector_in(dir.path(), "").await;
    let body = fixture("order_minimal.json");
    let encoded = STANDARD.encode(&body);

    // Signed over the bytes WooCommerce sent: accepted, and stored decoded.
    let headers = woocommerce_headers("order", &sign(&body), "d-b64");
    let (status, _, answer) = invoke(
        &connector,
        &event(
            "POST",
            "/api/deliveries/",
            "$default",
            headers,
            &encoded,
            true,
        ),
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    let id = answer["webhook_id"].as_i64().expect("a webhook id");
    let webhook = connector
        .inbox()
        .get(WebhookId(id))
        .await
        .expect("inbox answers")
        .expect("stored");
    assert_eq!(
        &webhook.data.body[..],
        &body[..],
        "the decoded bytes are kept"
    );
    assert_eq!(webhook.data.subject_id, Some(33));

    // Signed over the base64 text API Gateway carried instead: refused.
    let headers = woocommerce_headers("order", &sign(encoded.as_bytes()), "d-b64-2");
    let (status, _, answer) = invoke(
        &connector,
        &event(
            "POST",
            "/api/deliveries/",
            "$default",
            headers,
            &encoded,
            true,
        ),
    )
    .await;
    assert_eq!(status, 401, "{answer}");
    assert_eq!(stored(&connector, None).await, 1);
}

#[tokio::test]
async fn both_paths_answer_with_and_without_the_slash_and_behind_a_named_stage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let connector = connector_in(dir.path(), "").await;
    let customer = fixture("customer.json");
    let customer_text = std::str::from_utf8(&customer).expect("utf-8");
    let cases = [
        ("/api/deliveries", "$default", true, 201),
        ("/prod/api/deliveries/", "prod", true, 201),
        ("/api/customers/", "$default", false, 200),
        ("/api/customers", "$default", false, 200),
        ("/prod/api/customers", "prod", false, 200),
    ];
    for (n, (path, stage, order, want)) in cases.into_iter().enumerate() {
        let delivery = format!("d-{n}");
        let event = if order {
            let mut e = signed_order(path, &delivery);
            e["requestContext"]["stage"] = json!(stage);
            e
        } else {
            let headers = woocommerce_headers("customer", &sign(&customer), &delivery);
            event("POST", path, stage, headers, customer_text, false)
        };
        let (status, _, answer) = invoke(&connector, &event).await;
        assert_eq!(status, want, "{path}: {answer}");
        assert_eq!(answer["status"], "queued", "{path}");
    }
    assert_eq!(stored(&connector, None).await, cases.len());
}

#[tokio::test]
async fn other_paths_are_404_and_other_methods_405_as_the_server_answers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let connector = connector_in(dir.path(), "").await;
    for path in [
        "/",
        "/api/v1/webhooks",
        "/healthz",
        "/api/deliveries//",
        "/prod/api/deliveries/",
    ] {
        let mut e = signed_order(path, "d-1");
        e["requestContext"]["stage"] = json!("$default");
        let (status, _, answer) = invoke(&connector, &e).await;
        assert_eq!(status, 404, "{path}");
        assert_eq!(
            answer,
            json!({ "error": { "code": "not_found", "message": "no such endpoint" } })
        );
    }
    for method in ["GET", "PUT", "DELETE", "OPTIONS"] {
        let e = event(method, "/api/customers/", "$default", json!({}), "", false);
        let (status, headers, answer) = invoke(&connector, &e).await;
        assert_eq!(status, 405, "{method}");
        assert_eq!(headers["allow"], "POST");
        assert_eq!(answer["error"]["code"], "method_not_allowed");
    }
    assert_eq!(stored(&connector, None).await, 0);
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_and_no_secret_is_503() {
    let dir = tempfile::tempdir().expect("tempdir");
    let connector = connector_in(dir.path(), "webhook.max_body_bytes = 64").await;
    let (status, _, answer) = invoke(&connector, &signed_order("/api/deliveries/", "d-1")).await;
    assert_eq!(status, 413, "{answer}");
    assert_eq!(answer["error"]["code"], "body_too_large");
    assert_eq!(
        answer["error"]["message"],
        "the body is larger than 64 bytes"
    );
    assert_eq!(stored(&connector, None).await, 0);

    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("lazona.db").display()
    );
    let settings = Settings::from_toml(&format!("database.url = \"{url}\"")).expect("settings");
    let unconfigured = Connector::builder(settings).build().await.expect("builds");
    let (status, headers, answer) =
        invoke(&unconfigured, &signed_order("/api/deliveries/", "d-1")).await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["error"]["code"], "not_configured");
    assert_eq!(headers["retry-after"], "5");
}
