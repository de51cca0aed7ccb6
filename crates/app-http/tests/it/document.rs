//! The OpenAPI document says what the server does: a stored webhook's body is any JSON value
//! (an array, a string), the page size is 1 to 500, a cursor is what the listing writes, and every
//! operation that takes a parameter documents its 400.

use crate::helpers::{TestApp, TestDb, settings, sign};
use adapters::db::SqlTokenStore;
use domain::model::Principal;
use domain::ports::TokenStore;
use serde_json::Value;

async fn get(app: &TestApp, path: &str, token: &str) -> Value {
    let resp = app
        .client
        .get(app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), 200, "{path}");
    resp.json().await.expect("JSON")
}

/// The parameter `name` of the operation at `path` (a GET).
fn parameter<'a>(document: &'a Value, path: &str, name: &str) -> &'a Value {
    document["paths"][path]["get"]["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("{path} documents {name}"))
}

#[tokio::test]
async fn the_document_describes_what_the_server_does() {
    let db = TestDb::sqlite();
    let app = TestApp::spawn(&settings(&db.url, &[("worker.embedded", "false")])).await;
    let (_, admin) = SqlTokenStore::new(app.running.db.clone())
        .create("document", Principal::Admin)
        .await
        .expect("token");
    let admin = admin.expose().to_owned();
    let document = get(&app, "/api/v1/openapi.json", &admin).await;

    // Bodies that are not objects are stored (as rejected) and shown as they are.
    let mut ids = Vec::new();
    for (n, body) in ["[1, 2]", "\"text\"", "not JSON"].into_iter().enumerate() {
        let resp = app
            .client
            .post(app.url("/api/deliveries/"))
            .header("x-wc-webhook-signature", sign(body.as_bytes()))
            .header("x-wc-webhook-delivery-id", format!("document-{n}"))
            .body(body)
            .send()
            .await
            .expect("sent");
        assert_eq!(resp.status(), 400, "{body}");
        let answer: Value = resp.json().await.expect("JSON");
        ids.push(answer["error"]["webhook_id"].as_i64().expect("stored"));
    }
    let bodies: Vec<Value> = {
        let mut bodies = Vec::new();
        for id in &ids {
            let detail = get(&app, &format!("/api/v1/webhooks/{id}"), &admin).await;
            bodies.push(detail["body"].clone());
        }
        bodies
    };
    assert!(bodies[0].is_array() && bodies[1].is_string() && bodies[2].is_string());
    let body = &document["components"]["schemas"]["WebhookDetail"]["properties"]["body"];
    assert!(
        body.get("type").is_none() && body.get("$ref").is_none(),
        "the body is documented as any JSON value: {body}"
    );

    // Page sizes and cursors, as the listings check and write them.
    let listings = [
        ("/api/v1/webhooks", "webhooks"),
        ("/api/v1/shipments", "shipments"),
        ("/api/v1/dead", "dead"),
    ];
    for (path, tag) in listings {
        let limit = &parameter(&document, path, "limit")["schema"];
        assert_eq!(
            (&limit["minimum"], &limit["maximum"], &limit["default"]),
            (&1.into(), &500.into(), &50.into()),
            "{path}: {limit}"
        );
        let cursor = &parameter(&document, path, "cursor")["schema"];
        assert_eq!(
            cursor["pattern"],
            format!("^{tag}-[0-9]{{1,18}}$"),
            "{path}: {cursor}"
        );
    }
    let page = get(&app, "/api/v1/webhooks?limit=1", &admin).await;
    let next = page["next_cursor"].as_str().expect("a next page");
    let digits = next.strip_prefix("webhooks-").expect("the documented form");
    assert!(digits.bytes().all(|b| b.is_ascii_digit()), "{next}");
    // `cursor` and `before` are both bounds (OpenAPI cannot say "not both").
    let both = get(
        &app,
        &format!("/api/v1/webhooks?cursor={next}&before={}", ids[0] + 1),
        &admin,
    )
    .await;
    assert_eq!(both["items"][0]["id"], ids[0]);

    // Every operation with a parameter documents the 400 it answers when one does not parse.
    for (path, item) in document["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("operations") {
            let takes_parameters = operation["parameters"]
                .as_array()
                .is_some_and(|p| p.iter().any(|p| p["in"] == "path" || p["in"] == "query"));
            if takes_parameters {
                assert!(
                    operation["responses"].get("400").is_some(),
                    "{method} {path} documents its 400"
                );
            }
        }
    }
    app.stop().await;
}
