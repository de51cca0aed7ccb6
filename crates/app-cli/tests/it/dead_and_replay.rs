//! `lazona replay` and `lazona dead`: the real binary, a real database, an in-process worker and
//! fake Koiki and shop servers. Replaying an order books nothing twice unless `--force`.

use crate::support::{database, run, start_worker, stdout_json};
use adapters::db::{SqlInbox, SqlShipmentStore};
use adapters::queue::Queue;
use adapters::smtp_sink::SmtpSink;
use adapters::testing::TestDb;
use base64::Engine as _;
use bytes::Bytes;
use chrono::Utc;
use domain::model::{JobKind, NewJob, NewWebhook, Resource, WebhookId, WebhookStatus};
use domain::ports::{ShipmentStore, WebhookInbox};
use domain::service::signature::WebhookSecret;
use std::time::Duration;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const ORDER: &str = include_str!("../../../../tests/fixtures/order_minimal.json");
const WCFM_6: &str = include_str!("../../../../tests/fixtures/wcfm_settings_6.json");
const WP_USER_6: &str = include_str!("../../../../tests/fixtures/wp_user_6.json");

async fn fake_shop() -> MockServer {
    let fake = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/rekis/api/altaEnvios"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "respuesta": "101", "mensaje": "OK",
            "envios": [{"numPedido": "33", "codBarras": "BAR", "respuesta": "101", "mensaje": "OK",
                        "etiqueta": base64::engine::general_purpose::STANDARD.encode(b"%PDF-1.4")}]
        })))
        .mount(&fake)
        .await;
    for (p, body) in [
        ("/wp-json/wc/v3/orders/33", ORDER),
        ("/wp-json/wcfmmp/v1/settings/id/6", WCFM_6),
        ("/wp-json/wp/v2/users/6", WP_USER_6),
    ] {
        Mock::given(method("GET"))
            .and(path(p))
            .respond_with(ResponseTemplate::new(200).set_body_string(body))
            .mount(&fake)
            .await;
    }
    fake
}

async fn bookings(fake: &MockServer) -> usize {
    fake.received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path() == "/rekis/api/altaEnvios")
        .count()
}

pub(crate) fn order_webhook() -> NewWebhook {
    NewWebhook {
        resource: Resource::Order,
        topic: Some("order.created".into()),
        event: Some("created".into()),
        delivery_id: Some("d-1".into()),
        wc_webhook_id: Some(3),
        source: Some("https://shop.example/".into()),
        subject_id: Some(33),
        subject_modified: None,
        headers: vec![
            ("x-wc-webhook-topic".into(), "order.created".into()),
            ("x-wc-webhook-delivery-id".into(), "d-1".into()),
            (
                "x-wc-webhook-signature".into(),
                "the-shops-signature".into(),
            ),
            ("content-type".into(), "application/json".into()),
        ],
        body: Bytes::from_static(ORDER.as_bytes()),
        received_at: Utc::now(),
        status: WebhookStatus::Queued,
        error: None,
    }
}

async fn wait_until<F: Fn() -> Fut, Fut: Future<Output = bool>>(what: &str, check: F) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn processed_count(inbox: &SqlInbox, id: WebhookId) -> usize {
    inbox
        .history(id)
        .await
        .expect("history")
        .iter()
        .filter(|e| e.status == WebhookStatus::Processed)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_an_order_books_nothing_twice_unless_forced() {
    for (_, db) in TestDb::all().await {
        replay_scenario(&db).await;
    }
}

async fn replay_scenario(db: &TestDb) {
    let sink = SmtpSink::start(None).await;
    let fake = fake_shop().await;
    let database = database(&db.url).await;
    let settings = adapters::testing::settings_for(&db.url);
    let inbox = SqlInbox::start(database.clone(), &settings.inbox);
    let store = SqlShipmentStore::new(database.clone());
    let (shutdown, running) = start_worker(&db.url, &database, &fake.uri(), sink.port()).await;

    let id = inbox.record(order_webhook()).await.expect("record").id;
    wait_until("first processing", || async {
        processed_count(&inbox, id).await == 1
    })
    .await;
    sink.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(bookings(&fake).await, 1);

    // Dry run: nothing changes.
    let plan = stdout_json(
        &run(
            &db.url,
            &["replay", "--subject", "33", "--dry-run", "--json"],
        )
        .await,
    );
    assert_eq!(plan["dry_run"], true);
    assert_eq!(plan["replayed"], serde_json::json!([id.0]));
    // No terminal to confirm on and no --yes: refused, nothing done.
    let before = inbox.history(id).await.expect("history").len();
    let out = run(&db.url, &["replay", &id.0.to_string()]).await;
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(inbox.history(id).await.expect("history").len(), before);

    let done = stdout_json(&run(&db.url, &["replay", &id.0.to_string(), "--yes", "--json"]).await);
    assert_eq!(done["replayed"], serde_json::json!([id.0]));
    wait_until("the replay processed", || async {
        processed_count(&inbox, id).await == 2
    })
    .await;
    let history = inbox.history(id).await.expect("history");
    assert!(
        history.iter().any(|e| e
            .detail
            .as_deref()
            .is_some_and(|d| d.starts_with("replayed by cli "))),
        "{history:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(bookings(&fake).await, 1, "the replay booked nothing");
    assert_eq!(sink.messages().len(), 1, "and mailed nothing");

    let done = stdout_json(
        &run(
            &db.url,
            &[
                "replay",
                "--topic",
                "order.created",
                "--force",
                "--yes",
                "--json",
            ],
        )
        .await,
    );
    assert_eq!(done["replayed"], serde_json::json!([id.0]));
    wait_until("the forced booking", || async {
        bookings(&fake).await == 2
    })
    .await;
    sink.wait_for(2, Duration::from_secs(20)).await;
    assert_eq!(
        store.of_order(33).await.expect("rows").len(),
        1,
        "still one shipment row"
    );

    shutdown.cancel();
    let _ = running.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_to_another_connector_resends_the_stored_request_signed_with_its_secret() {
    let db = TestDb::sqlite();
    let database = database(&db.url).await;
    let settings = adapters::testing::settings_for(&db.url);
    let inbox = SqlInbox::start(database.clone(), &settings.inbox);
    let mut webhook = order_webhook();
    webhook.status = WebhookStatus::Processed;
    let id = inbox.record(webhook).await.expect("record").id;

    let staging = MockServer::start().await;
    let signature = WebhookSecret::new("staging-secret").sign(ORDER.as_bytes());
    Mock::given(method("POST"))
        .and(path("/api/deliveries/"))
        .and(header("x-wc-webhook-signature", signature.as_str()))
        .and(header("x-wc-webhook-topic", "order.created"))
        .and(header("x-wc-webhook-delivery-id", "d-1"))
        .respond_with(ResponseTemplate::new(201))
        .expect(1)
        .mount(&staging)
        .await;
    let out = run(
        &db.url,
        &[
            "replay",
            &id.0.to_string(),
            "--to",
            &staging.uri(),
            "--secret",
            "staging-secret",
            "--yes",
        ],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("replayed 1, skipped 0, failed 0"));
    let received = staging.received_requests().await.expect("requests");
    assert_eq!(received[0].body, ORDER.as_bytes(), "the body byte for byte");
    staging.verify().await;
    assert_eq!(
        inbox.get(id).await.expect("get").expect("row").data.status,
        WebhookStatus::Processed,
        "re-sending changes nothing here"
    );

    let out = run(&db.url, &["replay", "--yes"]).await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "no ids and no filter is an error"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_jobs_are_listed_shown_and_requeued() {
    for (backend, db) in TestDb::all().await {
        let database = database(&db.url).await;
        let settings = adapters::testing::settings_for(&db.url);
        let queue = Queue::open(&settings, &database, None)
            .await
            .expect("queue");
        let kind = JobKind::RetryShipment {
            shipment_id: 999,
            force: false,
            held: None,
        };
        queue
            .port
            .enqueue(NewJob {
                kind: kind.clone(),
                run_at: None,
            })
            .await
            .expect("enqueue");
        let jobs = queue
            .port
            .reserve(1, Duration::from_secs(30), Duration::ZERO)
            .await
            .expect("reserve");
        queue
            .port
            .dead_letter(&jobs[0], "shipment 999 not found")
            .await
            .expect("dead");
        let id = jobs[0].id.0.to_string();

        let list = stdout_json(&run(&db.url, &["dead", "list", "--json"]).await);
        assert_eq!(list[0]["id"].as_i64(), Some(jobs[0].id.0), "{backend}");
        assert_eq!(list[0]["error"], "shipment 999 not found", "{backend}");
        let text = run(&db.url, &["dead", "show", &id]).await;
        assert!(
            String::from_utf8_lossy(&text.stdout).contains("retry_shipment"),
            "{backend}"
        );
        assert_eq!(
            run(&db.url, &["dead", "show", "424242"])
                .await
                .status
                .code(),
            Some(3)
        );

        let out = stdout_json(&run(&db.url, &["dead", "requeue", &id, "--json"]).await);
        assert_eq!(out["requeued"][0].as_i64(), Some(jobs[0].id.0), "{backend}");
        let again = queue
            .port
            .reserve(1, Duration::from_secs(30), Duration::ZERO)
            .await
            .expect("reserve");
        assert_eq!(again.len(), 1, "{backend}: back in the queue");
        assert_eq!(again[0].kind, kind, "{backend}");
        assert_eq!(
            run(&db.url, &["dead", "requeue", "424242"])
                .await
                .status
                .code(),
            Some(3),
            "{backend}"
        );
    }
}
