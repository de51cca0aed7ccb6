//! End to end, on SQLite and on Postgres: the connector and the shop in both directions, through
//! `lazona-http` with its in-process worker, fake Koiki and WooCommerce servers (wiremock, every
//! request asserted) and a real SMTP sink.
//! - an order `pending` books nothing; the same order `processing` in an `order.updated` books
//!   once, and its tracking note and shipments meta are written on the order;
//! - an order that never arrived as a webhook, listed by the shop, is booked after a pass, and
//!   later passes book nothing;
//! - an order cancelled after its booking mails the admins once;
//! - a disabled webhook mails the admins once, and its alert closes when it is active again;
//! - the tracking note is written once even when its job is retried.

use crate::alerts::{hook_receiver, hook_settings, the_post_of, with};
use crate::helpers::{SECRET, TestApp, TestDb, fixture};
use crate::shipping::{mount_vendor_6, shipping_settings_with};
use adapters::config::Settings;
use adapters::smtp_sink::SmtpSink;
use domain::service::signature::WebhookSecret;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wiremock::matchers::{basic_auth, body_json, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn json_fixture(name: &str) -> Value {
    serde_json::from_str(&fixture(name)).expect("fixture is JSON")
}

/// The minimal order (33, vendor 6, Koiki) in `status`, modified at `modified`.
fn order(status: &str, modified: &str) -> Value {
    let mut order = json_fixture("order_minimal.json");
    order["status"] = json!(status);
    order["date_modified_gmt"] = json!(modified);
    order
}

/// Koiki (one booking expected, barcode `yyy`) and the shop's vendor 6 on one server.
async fn fake_koiki_and_shop(bookings: u64) -> MockServer {
    let shop = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/rekis/api/altaEnvios"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json_fixture("koiki_alta_envios_ok.json")),
        )
        .expect(bookings)
        .named("Koiki bookings")
        .mount(&shop)
        .await;
    mount_vendor_6(&shop).await;
    shop
}

/// The order's notes (none yet), and the note and meta writes, each expected `writes` times.
async fn expect_write_back(shop: &MockServer, writes: u64) {
    Mock::given(method("GET"))
        .and(path("/wp-json/wc/v3/orders/33/notes"))
        .and(basic_auth("connector", "secret"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .mount(shop)
        .await;
    Mock::given(method("POST"))
        .and(path("/wp-json/wc/v3/orders/33/notes"))
        .and(basic_auth("connector", "secret"))
        .and(body_json(json!({
            "note": "El teu paquet de la botiga 6 s'envia amb Koiki. Codi de seguiment: yyy. \
                     Segueix-lo a: https://track.example/yyy",
            "customer_note": true
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "id": 501, "note": "…", "customer_note": true
        })))
        .expect(writes)
        .named("tracking note")
        .mount(shop)
        .await;
    Mock::given(method("PUT"))
        .and(path("/wp-json/wc/v3/orders/33"))
        .and(basic_auth("connector", "secret"))
        .and(body_json(json!({
            "meta_data": [{"key": "_lazona_shipments", "value": [
                {"vendor_id": 6, "barcode": "yyy", "status": "LABEL_SENT"}
            ]}]
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": 33})))
        .expect(writes)
        .named("shipments meta")
        .mount(shop)
        .await;
}

/// A server with its worker in-process, booking through `shop`, mailing through `sink`, with a
/// tracking link, and `extra` settings.
fn loop_settings(
    db_url: &str,
    shop: &MockServer,
    sink: &SmtpSink,
    extra: &[(&str, &str)],
) -> Settings {
    let mut all = vec![
        ("koiki.tracking_url", "https://track.example/{barcode}"),
        ("reconcile.enabled", "auto"),
        ("shop.write_back", "true"),
    ];
    all.extend_from_slice(extra);
    shipping_settings_with(db_url, shop, sink, &all)
}

async fn post_order(app: &TestApp, order: &Value, topic: &str, delivery: &str) -> u16 {
    let body = order.to_string();
    app.client
        .post(app.url("/api/deliveries/"))
        .header("content-type", "application/json")
        .header(
            "x-wc-webhook-signature",
            WebhookSecret::new(SECRET).sign(body.as_bytes()),
        )
        .header("x-wc-webhook-topic", topic)
        .header("x-wc-webhook-delivery-id", delivery)
        .body(body)
        .send()
        .await
        .expect("posted")
        .status()
        .as_u16()
}

async fn databases() -> Vec<(&'static str, TestDb)> {
    TestDb::all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_order_books_nothing_and_is_booked_once_when_it_arrives_processing() {
    for (name, db) in databases().await {
        let sink = SmtpSink::start(None).await;
        let shop = fake_koiki_and_shop(1).await;
        expect_write_back(&shop, 1).await;
        let settings = loop_settings(&db.url, &shop, &sink, &[("reconcile.enabled", "false")]);
        let app = TestApp::spawn(&settings).await;

        let pending = order("pending", "2026-12-07T08:00:00");
        assert_eq!(
            post_order(&app, &pending, "order.created", "d-1").await,
            201
        );
        assert_eq!(
            app.wait_count(
                "SELECT COUNT(*) FROM webhooks WHERE status = 'processed' \
                 AND error = 'order 33 is pending: not booked'",
                1
            )
            .await,
            1,
            "{name}: the pending order is processed with its reason"
        );
        assert_eq!(
            app.count("SELECT COUNT(*) FROM shipments").await,
            0,
            "{name}"
        );

        let paid = order("processing", "2026-12-07T08:05:00");
        assert_eq!(post_order(&app, &paid, "order.updated", "d-2").await, 201);
        let mails = sink.wait_for(1, Duration::from_secs(20)).await;
        assert_eq!(mails.len(), 1, "{name}: the label mail");
        assert_eq!(
            app.wait_count(
                "SELECT COUNT(*) FROM shipments WHERE noted_barcode = 'yyy'",
                1
            )
            .await,
            1,
            "{name}: the tracking note is recorded"
        );
        // The same paid order again (a third delivery): nothing more.
        assert_eq!(post_order(&app, &paid, "order.updated", "d-3").await, 201);
        app.wait_count(
            "SELECT COUNT(*) FROM webhooks WHERE status = 'processed'",
            3,
        )
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            app.count("SELECT COUNT(*) FROM shipments").await,
            1,
            "{name}"
        );
        app.stop().await;
        shop.verify().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_cancelled_after_its_booking_mails_the_admins_once() {
    for (name, db) in databases().await {
        let sink = SmtpSink::start(None).await;
        let shop = fake_koiki_and_shop(1).await;
        let hook = hook_receiver().await;
        let hooked = hook_settings(&hook);
        let settings = loop_settings(
            &db.url,
            &shop,
            &sink,
            &with(
                &hooked,
                &[("reconcile.enabled", "false"), ("shop.write_back", "false")],
            ),
        );
        let app = TestApp::spawn(&settings).await;
        let paid = order("processing", "2026-12-07T08:00:00");
        assert_eq!(post_order(&app, &paid, "order.created", "c-1").await, 201);
        assert_eq!(
            sink.wait_for(1, Duration::from_secs(20)).await.len(),
            1,
            "{name}"
        );

        let cancelled = order("cancelled", "2026-12-07T09:00:00");
        assert_eq!(
            post_order(&app, &cancelled, "order.updated", "c-2").await,
            201
        );
        let mails = sink.wait_for(2, Duration::from_secs(20)).await;
        assert_eq!(mails.len(), 2, "{name}: the admins are told");
        assert_eq!(mails[1].to, vec!["admin@example.coop".to_owned()]);
        assert_eq!(
            mails[1].header("subject").as_deref(),
            Some("Comanda 33 cancelled: cal cancel·lar enviaments Koiki")
        );
        assert!(
            mails[1].text().contains("yyy"),
            "{name}: the barcode is named"
        );
        let post = the_post_of(&hook, "order_withdrawn", name).await;
        assert_eq!(post["alert"]["subject"], "order:33", "{name}: {post}");
        assert_eq!(
            app.wait_count(
                "SELECT COUNT(*) FROM shipments WHERE order_withdrawn = 'cancelled'",
                1
            )
            .await,
            1,
            "{name}"
        );
        // Refunded after: no second mail, no booking.
        let refunded = order("refunded", "2026-12-07T10:00:00");
        assert_eq!(
            post_order(&app, &refunded, "order.updated", "c-3").await,
            201
        );
        app.wait_count(
            "SELECT COUNT(*) FROM webhooks WHERE status = 'processed'",
            3,
        )
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(sink.messages().len(), 2, "{name}: told once");
        app.stop().await;
        shop.verify().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_never_delivered_is_booked_after_a_pass_and_the_next_passes_book_nothing() {
    for (name, db) in databases().await {
        let sink = SmtpSink::start(None).await;
        let shop = fake_koiki_and_shop(1).await;
        Mock::given(method("GET"))
            .and(path("/wp-json/wc/v3/orders"))
            .and(basic_auth("connector", "secret"))
            .and(query_param("dates_are_gmt", "true"))
            .and(query_param("orderby", "modified"))
            .and(query_param("order", "asc"))
            .and(query_param("per_page", "100"))
            .and(query_param("page", "1"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!([order("processing", "2030-01-01T00:00:00")])),
            )
            .mount(&shop)
            .await;
        Mock::given(method("GET"))
            .and(path("/wp-json/wc/v3/webhooks"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!([
                {"id": 1, "name": "c", "status": "active", "topic": "order.created",
                 "delivery_url": "https://c.example/api/deliveries/"},
                {"id": 2, "name": "u", "status": "active", "topic": "order.updated",
                 "delivery_url": "https://c.example/api/deliveries/"}
            ])))
            .mount(&shop)
            .await;
        let settings = loop_settings(
            &db.url,
            &shop,
            &sink,
            &[
                ("reconcile.interval_secs", "1"),
                ("shop.write_back", "false"),
            ],
        );
        let app = TestApp::spawn(&settings).await;
        assert_eq!(
            sink.wait_for(1, Duration::from_secs(20)).await.len(),
            1,
            "{name}: booked"
        );
        assert_eq!(
            app.count(
                "SELECT COUNT(*) FROM webhooks WHERE source = 'reconcile' AND subject_id = 33"
            )
            .await,
            1,
            "{name}: stored as a webhook from the reconciliation"
        );
        // More passes run (one a second): the order is held, nothing more is stored or booked.
        tokio::time::sleep(Duration::from_millis(3_000)).await;
        let passes = shop
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .filter(|r| r.url.path() == "/wp-json/wc/v3/orders")
            .count();
        assert!(passes >= 2, "{name}: {passes} passes");
        assert_eq!(
            app.count("SELECT COUNT(*) FROM webhooks").await,
            1,
            "{name}"
        );
        assert_eq!(
            app.count("SELECT COUNT(*) FROM shipments").await,
            1,
            "{name}"
        );
        assert_eq!(
            app.count("SELECT COUNT(*) FROM connector_state WHERE key = 'reconcile.cursor' AND value = '2030-01-01T00:00:00.000Z'")
                .await,
            1,
            "{name}: the cursor is the latest modification listed"
        );
        assert_eq!(sink.messages().len(), 1, "{name}");
        app.stop().await;
        shop.verify().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_webhook_is_told_once_and_its_alert_closes_when_it_is_active_again() {
    for (name, db) in databases().await {
        let sink = SmtpSink::start(None).await;
        let shop = fake_koiki_and_shop(0).await;
        Mock::given(method("GET"))
            .and(path("/wp-json/wc/v3/orders"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
            .mount(&shop)
            .await;
        let webhooks = |updated: &str| {
            json!([
                {"id": 1, "name": "Comandes", "status": "active", "topic": "order.created",
                 "delivery_url": "https://c.example/api/deliveries/"},
                {"id": 2, "name": "Comandes actualitzades", "status": updated,
                 "topic": "order.updated", "delivery_url": "https://c.example/api/deliveries/"}
            ])
        };
        // Disabled until the admins are told, active again after (an operator re-enabled it in
        // WooCommerce).
        let reenabled = Arc::new(AtomicBool::new(false));
        let seen = reenabled.clone();
        Mock::given(method("GET"))
            .and(path("/wp-json/wc/v3/webhooks"))
            .and(query_param("per_page", "100"))
            .respond_with(move |_: &wiremock::Request| {
                let status = if seen.load(Ordering::SeqCst) {
                    "active"
                } else {
                    "disabled"
                };
                ResponseTemplate::new(200).set_body_json(webhooks(status))
            })
            .mount(&shop)
            .await;
        let hook = hook_receiver().await;
        let hooked = hook_settings(&hook);
        let settings = loop_settings(
            &db.url,
            &shop,
            &sink,
            &with(&hooked, &[("reconcile.interval_secs", "1")]),
        );
        let app = TestApp::spawn(&settings).await;
        let mails = sink.wait_for(1, Duration::from_secs(20)).await;
        assert_eq!(mails.len(), 1, "{name}");
        assert_eq!(
            mails[0].header("subject").as_deref(),
            Some("Webhook de WooCommerce «order.updated»: disabled")
        );
        assert!(mails[0].text().contains("Comandes actualitzades"), "{name}");
        let post = the_post_of(&hook, "shop_webhook", name).await;
        assert_eq!(
            post["alert"]["subject"], "shop-webhook:order.updated",
            "{name}: {post}"
        );
        reenabled.store(true, Ordering::SeqCst);
        assert_eq!(
            app.wait_count(
                "SELECT COUNT(*) FROM alerts WHERE kind = 'shop_webhook' \
                 AND state = 'resolved' AND resolved_by = 'auto'",
                1
            )
            .await,
            1,
            "{name}: closed once the webhook is active again"
        );
        assert_eq!(sink.messages().len(), 1, "{name}: told once");
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tracking_note_is_written_once_even_when_its_job_is_retried() {
    let db = TestDb::sqlite();
    let sink = SmtpSink::start(None).await;
    let shop = fake_koiki_and_shop(1).await;
    // The first note refused for now (503): the job is retried and writes it then, once.
    Mock::given(method("POST"))
        .and(path("/wp-json/wc/v3/orders/33/notes"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&shop)
        .await;
    expect_write_back(&shop, 1).await;
    let settings = loop_settings(&db.url, &shop, &sink, &[("reconcile.enabled", "false")]);
    let app = TestApp::spawn(&settings).await;
    let paid = order("processing", "2026-12-07T08:00:00");
    assert_eq!(post_order(&app, &paid, "order.created", "n-1").await, 201);
    assert_eq!(
        app.wait_count(
            "SELECT COUNT(*) FROM shipments WHERE noted_barcode = 'yyy'",
            1
        )
        .await,
        1
    );
    let posts = shop
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.method.as_str() == "POST" && r.url.path() == "/wp-json/wc/v3/orders/33/notes")
        .count();
    assert_eq!(posts, 2, "one refused, one written");
    app.stop().await;
    shop.verify().await;
}
