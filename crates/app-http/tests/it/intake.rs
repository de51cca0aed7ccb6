//! The webhook endpoints, end to end over HTTP, on every database backend.

use crate::helpers::{TestApp, TestDb, fixture, settings, sign};
use serde_json::Value;

async fn json(resp: reqwest::Response) -> Value {
    resp.json().await.expect("a JSON body")
}

#[tokio::test]
async fn a_signed_order_is_stored_with_its_job_and_answered_201() {
    for (backend, db) in TestDb::all().await {
        let app = TestApp::spawn(&settings(&db.url, &[("worker.embedded", "false")])).await;
        let body = fixture("order_minimal.json");
        let resp = app
            .post_signed("/api/deliveries/", &body, Some("d-1"))
            .await;
        assert_eq!(resp.status(), 201, "{backend}");
        let answer = json(resp).await;
        assert_eq!(answer["status"], "queued", "{backend}");
        let id = answer["webhook_id"].as_i64().expect("webhook id");

        let stored = app.running.inbox.clone();
        let webhook =
            domain::ports::WebhookInbox::get(stored.as_ref(), domain::model::WebhookId(id))
                .await
                .expect("inbox answers")
                .expect("webhook stored");
        assert_eq!(
            &webhook.data.body[..],
            body.as_bytes(),
            "{backend}: body kept byte for byte"
        );
        assert_eq!(webhook.data.subject_id, Some(33), "{backend}");
        assert_eq!(
            webhook.data.delivery_id.as_deref(),
            Some("d-1"),
            "{backend}"
        );
        assert!(
            webhook
                .data
                .headers
                .iter()
                .any(|(k, v)| k == "x-wc-webhook-source" && v == "https://lazona.example/"),
            "{backend}: headers kept"
        );
        assert_eq!(
            app.count("SELECT COUNT(*) FROM jobs WHERE kind = 'process_webhook'")
                .await,
            1,
            "{backend}"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn both_paths_work_with_and_without_the_trailing_slash() {
    let db = TestDb::sqlite();
    let app = TestApp::spawn(&settings(&db.url, &[("worker.embedded", "false")])).await;
    let order = fixture("order_minimal.json");
    let customer = fixture("customer.json");
    for (path, body, status) in [
        ("/api/deliveries/", &order, 201),
        ("/api/deliveries", &order, 201),
        ("/api/customers/", &customer, 200),
        ("/api/customers", &customer, 200),
    ] {
        let resp = app.post_signed(path, body, None).await;
        assert_eq!(resp.status(), status, "{path}");
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM jobs").await, 4);
    app.stop().await;
}

#[tokio::test]
async fn missing_or_wrong_signatures_are_refused_and_nothing_is_stored() {
    let db = TestDb::sqlite();
    let app = TestApp::spawn(&settings(&db.url, &[])).await;
    let body = fixture("order_minimal.json");

    let resp = app
        .client
        .post(app.url("/api/deliveries/"))
        .body(body.clone())
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), 401);
    assert_eq!(json(resp).await["error"]["code"], "missing_signature");

    let resp = app
        .client
        .post(app.url("/api/deliveries/"))
        .header("x-wc-webhook-signature", sign(b"another body"))
        .body(body.clone())
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), 401);
    assert_eq!(json(resp).await["error"]["code"], "invalid_signature");

    // A body re-serialised (spacing changed) no longer matches: the raw bytes are what is signed.
    let reserialised =
        serde_json::to_string(&serde_json::from_str::<Value>(&body).expect("json")).expect("json");
    let resp = app
        .client
        .post(app.url("/api/deliveries/"))
        .header("x-wc-webhook-signature", sign(body.as_bytes()))
        .body(reserialised)
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), 401);

    assert_eq!(app.count("SELECT COUNT(*) FROM webhooks").await, 0);
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("sent")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("lazona_signature_failures_total 3"),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_originals_signature_test_vector_is_accepted() {
    let db = TestDb::sqlite();
    let mut s = settings(
        &db.url,
        &[("webhook.secret", "testcase"), ("worker.embedded", "false")],
    );
    s.webhook.max_body_bytes = 1024;
    let app = TestApp::spawn(&s).await;
    // `{"test": 1 }` has no `id`: it is authentic, so it is kept as rejected and answered 400
    // (not 401), which shows the signature passed.
    let resp = app
        .client
        .post(app.url("/api/deliveries/"))
        .header(
            "x-wc-webhook-signature",
            "UyKdg7msIA67rxmmf7JcLMUkzMKGLvfptk2NaSuyRQM=",
        )
        .body(r#"{"test": 1 }"#)
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), 400);
    assert_eq!(json(resp).await["error"]["field"], "id");
    app.stop().await;
}

#[tokio::test]
async fn the_woocommerce_creation_ping_gets_exactly_200() {
    let db = TestDb::sqlite();
    let app = TestApp::spawn(&settings(&db.url, &[])).await;
    for path in ["/api/deliveries/", "/api/customers/"] {
        let resp = app
            .client
            .post(app.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("webhook_id=17")
            .send()
            .await
            .expect("sent");
        assert_eq!(resp.status(), 200, "{path}");
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM webhooks").await, 0);
    app.stop().await;
}

#[tokio::test]
async fn a_repeated_delivery_id_is_acknowledged_once_and_queued_once() {
    for (backend, db) in TestDb::all().await {
        let app = TestApp::spawn(&settings(&db.url, &[("worker.embedded", "false")])).await;
        let body = fixture("order_minimal.json");
        let first = json(
            app.post_signed("/api/deliveries/", &body, Some("same"))
                .await,
        )
        .await;
        // Concurrent repeats land in the same or different batches: all are duplicates.
        let repeats = futures_join(&app, &body, 8).await;
        for (status, answer) in repeats {
            assert_eq!(status, 201, "{backend}");
            assert_eq!(answer["status"], "duplicate", "{backend}");
            assert_eq!(answer["webhook_id"], first["webhook_id"], "{backend}");
        }
        assert_eq!(
            app.count("SELECT COUNT(*) FROM webhooks").await,
            1,
            "{backend}"
        );
        assert_eq!(app.count("SELECT COUNT(*) FROM jobs").await, 1, "{backend}");
        app.stop().await;
    }
}

/// WooCommerce's delivery id has a resolution of one second (`wp_hash($webhook_id .
/// strtotime('now'))`): two orders delivered by one webhook within a second share it, and both
/// must be stored and processed. Only the same id with the same bytes is a duplicate.
#[tokio::test]
async fn two_orders_sharing_a_delivery_id_are_both_stored_and_queued() {
    for (backend, db) in TestDb::all().await {
        let app = TestApp::spawn(&settings(&db.url, &[("worker.embedded", "false")])).await;
        let mut ids = Vec::new();
        for body in [
            r#"{"id":5001,"line_items":[]}"#,
            r#"{"id":5002,"line_items":[]}"#,
        ] {
            let resp = app
                .post_signed("/api/deliveries/", body, Some("same"))
                .await;
            assert_eq!(resp.status(), 201, "{backend}");
            let answer = json(resp).await;
            assert_eq!(answer["status"], "queued", "{backend}: {body}");
            ids.push(answer["webhook_id"].as_i64().expect("id"));
        }
        assert_ne!(ids[0], ids[1], "{backend}");
        assert_eq!(
            app.count("SELECT COUNT(*) FROM webhooks WHERE subject_id IN (5001, 5002)")
                .await,
            2,
            "{backend}: order 5002 is stored"
        );
        assert_eq!(app.count("SELECT COUNT(*) FROM jobs").await, 2, "{backend}");
        // The first again, byte for byte: that one is a redelivery.
        let again = app
            .post_signed(
                "/api/deliveries/",
                r#"{"id":5001,"line_items":[]}"#,
                Some("same"),
            )
            .await;
        let answer = json(again).await;
        assert_eq!(answer["status"], "duplicate", "{backend}");
        assert_eq!(answer["webhook_id"], ids[0], "{backend}");
        assert_eq!(app.count("SELECT COUNT(*) FROM jobs").await, 2, "{backend}");
        app.stop().await;
    }
}

/// Intake and processing parse with one function: what is acknowledged is processed (a
/// numeric string id is an id), and what processing could not parse is refused at the door with
/// the documented 400 and kept as rejected, instead of acknowledged and then dead-lettered.
#[tokio::test]
async fn what_is_acknowledged_is_processed_and_what_is_not_is_refused_at_the_door() {
    for (backend, db) in TestDb::all().await {
        let app = TestApp::spawn(&settings(&db.url, &[("worker.embedded", "true")])).await;
        let resp = app
            .post_signed(
                "/api/deliveries/",
                r#"{"id":"5003","line_items":[]}"#,
                Some("a"),
            )
            .await;
        assert_eq!(resp.status(), 201, "{backend}");
        let id = json(resp).await["webhook_id"].as_i64().expect("id");
        let processed = format!(
            "SELECT COUNT(*) FROM webhooks WHERE id = {id} AND status = 'processed' \
             AND subject_id = 5003"
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while app.count(&processed).await == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "{backend}: not processed"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(
            app.count("SELECT COUNT(*) FROM jobs WHERE status = 'dead'")
                .await,
            0,
            "{backend}"
        );

        let mut invalid_utf8 = br#"{"id":5004,"shipping":{"city":""#.to_vec();
        invalid_utf8.extend_from_slice(&[0xff, 0xfe]);
        invalid_utf8.extend_from_slice(br#""}}"#);
        let wrong_type = br#"{"id":5005,"line_items":[{"quantity":"two"}]}"#.to_vec();
        for (body, subject, field) in [
            (invalid_utf8, 5004, None),
            (wrong_type, 5005, Some("line_items[0].quantity")),
        ] {
            let resp = app
                .client
                .post(app.url("/api/deliveries/"))
                .header("x-wc-webhook-signature", sign(&body))
                .header("x-wc-webhook-topic", "order.created")
                .body(body)
                .send()
                .await
                .expect("sent");
            assert_eq!(resp.status(), 400, "{backend} {subject}");
            let answer = json(resp).await;
            assert_eq!(answer["error"]["code"], "invalid_payload", "{backend}");
            assert_eq!(
                answer["error"]["field"].as_str(),
                field,
                "{backend} {subject}"
            );
            assert_eq!(
                app.count(&format!(
                    "SELECT COUNT(*) FROM webhooks WHERE status = 'rejected' \
                     AND subject_id = {subject}"
                ))
                .await,
                1,
                "{backend} {subject}: kept as rejected"
            );
        }
        app.stop().await;
    }
}

async fn futures_join(app: &TestApp, body: &str, n: usize) -> Vec<(u16, Value)> {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let client = app.client.clone();
        let url = app.url("/api/deliveries/");
        let body = body.to_owned();
        set.spawn(async move {
            let resp = client
                .post(url)
                .header("x-wc-webhook-signature", sign(body.as_bytes()))
                .header("x-wc-webhook-delivery-id", "same")
                .body(body)
                .send()
                .await
                .expect("sent");
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.expect("json"))
        });
    }
    set.join_all().await
}

#[tokio::test]
async fn an_oversized_body_gets_413_with_a_json_error() {
    let db = TestDb::sqlite();
    let mut s = settings(&db.url, &[]);
    s.webhook.max_body_bytes = 2048;
    let app = TestApp::spawn(&s).await;
    let body = format!(r#"{{"id": 1, "pad": "{}"}}"#, "x".repeat(4096));
    let resp = app.post_signed("/api/deliveries/", &body, None).await;
    assert_eq!(resp.status(), 413);
    assert_eq!(json(resp).await["error"]["code"], "body_too_large");
    app.stop().await;
}

#[tokio::test]
async fn bad_payloads_get_400_with_the_field_and_are_kept_as_rejected() {
    for (backend, db) in TestDb::all().await {
        let app = TestApp::spawn(&settings(&db.url, &[("worker.embedded", "false")])).await;
        for (path, body, field) in [
            ("/api/deliveries/", "this is not json", Value::Null),
            (
                "/api/deliveries/",
                r#"{"order_key": "wc_order_x"}"#,
                Value::from("id"),
            ),
            ("/api/deliveries/", r#"{"id": "thirty"}"#, Value::from("id")),
            (
                "/api/customers/",
                r#"{"id": 1, "username": "x"}"#,
                Value::from("email"),
            ),
        ] {
            let resp = app.post_signed(path, body, None).await;
            assert_eq!(resp.status(), 400, "{backend} {body}");
            let answer = json(resp).await;
            assert_eq!(
                answer["error"]["code"], "invalid_payload",
                "{backend} {body}"
            );
            assert_eq!(answer["error"]["field"], field, "{backend} {body}");
            assert!(
                answer["error"]["webhook_id"].as_i64().is_some(),
                "{backend} {body}"
            );
        }
        let rejected = domain::ports::WebhookInbox::list(
            app.running.inbox.as_ref(),
            &domain::model::WebhookFilter {
                status: Some(domain::model::WebhookStatus::Rejected),
                ..Default::default()
            },
        )
        .await
        .expect("list");
        assert_eq!(rejected.len(), 4, "{backend}");
        assert!(rejected.iter().all(|w| w.error.is_some()), "{backend}");
        assert_eq!(
            app.count("SELECT COUNT(*) FROM jobs").await,
            0,
            "{backend}: no job for a rejection"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn orders_the_original_refused_over_field_lengths_are_accepted() {
    let db = TestDb::sqlite();
    let app = TestApp::spawn(&settings(&db.url, &[("worker.embedded", "false")])).await;
    let resp = app
        .post_signed("/api/deliveries/", &fixture("order_hard.json"), None)
        .await;
    assert_eq!(resp.status(), 201);
    app.stop().await;
}

#[tokio::test]
async fn other_topics_are_acknowledged_kept_and_not_queued() {
    let db = TestDb::sqlite();
    let app = TestApp::spawn(&settings(&db.url, &[("worker.embedded", "false")])).await;
    let body = r#"{"id": 5}"#;
    let resp = app
        .client
        .post(app.url("/api/deliveries/"))
        .header("x-wc-webhook-signature", sign(body.as_bytes()))
        .header("x-wc-webhook-topic", "product.updated")
        .body(body)
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), 201);
    assert_eq!(json(resp).await["status"], "ignored");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM webhooks WHERE status = 'ignored'")
            .await,
        1
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM jobs").await, 0);
    app.stop().await;
}

#[tokio::test]
async fn health_and_readiness_answer() {
    let db = TestDb::sqlite();
    let app = TestApp::spawn(&settings(&db.url, &[])).await;
    let health = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("sent");
    assert_eq!(health.status(), 200);
    let ready = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("sent");
    assert_eq!(ready.status(), 200);
    let missing = app.client.get(app.url("/nope")).send().await.expect("sent");
    assert_eq!(missing.status(), 404);
    assert_eq!(json(missing).await["error"]["code"], "not_found");
    app.stop().await;
}

#[tokio::test]
async fn without_a_secret_signed_webhooks_get_503_and_nothing_is_stored() {
    let db = TestDb::sqlite();
    let mut s = settings(&db.url, &[]);
    s.webhook.secret = None;
    let app = TestApp::spawn(&s).await;
    let resp = app
        .post_signed("/api/deliveries/", &fixture("order_minimal.json"), None)
        .await;
    assert_eq!(resp.status(), 503);
    assert_eq!(json(resp).await["error"]["code"], "not_configured");
    assert_eq!(app.count("SELECT COUNT(*) FROM webhooks").await, 0);
    app.stop().await;
}

#[tokio::test]
async fn the_embedded_worker_processes_what_arrives() {
    for (backend, db) in TestDb::all().await {
        let app = TestApp::spawn(&settings(&db.url, &[("worker.embedded", "true")])).await;
        let resp = app
            .post_signed(
                "/api/deliveries/",
                &fixture("order_minimal.json"),
                Some("w-1"),
            )
            .await;
        assert_eq!(resp.status(), 201, "{backend}");
        let mut processed = 0;
        for _ in 0..100 {
            processed = app
                .count("SELECT COUNT(*) FROM webhooks WHERE status = 'processed'")
                .await;
            if processed == 1 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(
            processed, 1,
            "{backend}: processed by the in-process worker"
        );
        // Acknowledgements are batched after the job's work: the row goes a moment later.
        let mut jobs = 1;
        for _ in 0..100 {
            jobs = app.count("SELECT COUNT(*) FROM jobs").await;
            if jobs == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(jobs, 0, "{backend}: job acknowledged");
        app.stop().await;
    }
}

#[tokio::test]
async fn the_inbox_survives_a_restart() {
    for (backend, db) in TestDb::all().await {
        let s = settings(&db.url, &[("worker.embedded", "false")]);
        let app = TestApp::spawn(&s).await;
        for i in 0..20 {
            let resp = app
                .post_signed(
                    "/api/deliveries/",
                    &fixture("order_minimal.json"),
                    Some(&format!("r-{i}")),
                )
                .await;
            assert_eq!(resp.status(), 201, "{backend}");
        }
        let old = app.stop().await;
        old.close().await.expect("close");

        let app = TestApp::spawn(&s).await;
        assert_eq!(
            app.count("SELECT COUNT(*) FROM webhooks").await,
            20,
            "{backend}"
        );
        assert_eq!(
            app.count("SELECT COUNT(*) FROM jobs").await,
            20,
            "{backend}"
        );
        // Deduplication remembers deliveries from before the restart.
        let resp = app
            .post_signed(
                "/api/deliveries/",
                &fixture("order_minimal.json"),
                Some("r-3"),
            )
            .await;
        assert_eq!(json(resp).await["status"], "duplicate", "{backend}");
        app.stop().await;
    }
}
