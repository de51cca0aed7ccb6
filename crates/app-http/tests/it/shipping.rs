//! End to end: a signed order webhook into `lazona-http` with its in-process worker, fake Koiki
//! and WordPress servers over HTTP, and a real SMTP sink: the shipment row, the stored label and
//! the vendor's e-mail; a repeated order books nothing more.

use crate::helpers::{TestApp, TestDb, fixture, settings};
use adapters::config::Settings;
use adapters::smtp_sink::SmtpSink;
use std::time::Duration;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn json(name: &str) -> serde_json::Value {
    serde_json::from_str(&fixture(name)).expect("fixture is JSON")
}

/// A fake Koiki and shop on one server: vendor 6's WCFM settings and WordPress user, and exactly
/// one booking expected.
pub(crate) async fn fake_koiki_and_shop() -> MockServer {
    let shop = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/rekis/api/altaEnvios"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json("koiki_alta_envios_ok.json")))
        .expect(1)
        .mount(&shop)
        .await;
    mount_vendor_6(&shop).await;
    shop
}

/// Vendor 6's WCFM settings and WordPress user, on `shop`.
pub(crate) async fn mount_vendor_6(shop: &MockServer) {
    Mock::given(method("GET"))
        .and(path("/wp-json/wcfmmp/v1/settings/id/6"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json("wcfm_settings_6.json")))
        .mount(shop)
        .await;
    Mock::given(method("GET"))
        .and(path("/wp-json/wp/v2/users/6"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json("wp_user_6.json")))
        .mount(shop)
        .await;
}

/// Settings for a server with its worker in-process that books through `shop`
/// ([`fake_koiki_and_shop`]) and mails through `sink`.
pub(crate) fn shipping_settings(db_url: &str, shop: &MockServer, sink: &SmtpSink) -> Settings {
    shipping_settings_with(db_url, shop, sink, &[])
}

/// [`shipping_settings`] with `extra` settings over them.
pub(crate) fn shipping_settings_with(
    db_url: &str,
    shop: &MockServer,
    sink: &SmtpSink,
    extra: &[(&str, &str)],
) -> Settings {
    let uri = shop.uri();
    let port = sink.port().to_string();
    let mut all: Vec<(&str, &str)> = vec![
        ("worker.embedded", "true"),
        ("koiki.host", &uri),
        ("koiki.tracking_host", &uri),
        ("koiki.auth_token", "koiki-token"),
        ("shop.host", &uri),
        ("shop.user", "connector"),
        ("shop.password", "secret"),
        ("mail.host", "127.0.0.1"),
        ("mail.port", &port),
        ("mail.from", "lazona@example.coop"),
        ("mail.admin_recipients", "admin@example.coop"),
        // This fake shop lists no orders: a reconciliation would be refused, dead-lettered, and
        // its alert mailed among the mails these tests count (shop_loop.rs turns it on).
        ("reconcile.enabled", "false"),
        // Nor notes or order updates: those jobs would die, and their alerts be mailed too.
        ("shop.write_back", "false"),
    ];
    all.extend_from_slice(extra);
    settings(db_url, &all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_order_becomes_a_koiki_label_in_the_vendors_inbox_once() {
    let sink = SmtpSink::start(None).await;
    let shop = fake_koiki_and_shop().await;
    let db = TestDb::sqlite();
    let app = TestApp::spawn(&shipping_settings(&db.url, &shop, &sink)).await;

    let order = fixture("order_minimal.json");
    let resp = app
        .post_signed("/api/deliveries/", &order, Some("e2e-1"))
        .await;
    assert_eq!(resp.status(), 201);
    let mails = sink.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(mails.len(), 1, "the label mail arrives");
    let vendor_email = json("wp_user_6.json")["email"]
        .as_str()
        .expect("email")
        .to_owned();
    assert_eq!(mails[0].to, vec![vendor_email]);
    assert_eq!(
        mails[0].header("subject").as_deref(),
        Some("Enviament Koiki per a la comanda: 33")
    );
    // Quoted-printable folds long lines with `=` + CRLF.
    let text = mails[0].text().replace("=\r\n", "");
    assert!(
        text.contains(r#"filename="yyy.pdf""#),
        "the label is named by its barcode"
    );
    assert!(
        text.contains("/area-privada/orders-details/33"),
        "the order link: {text}"
    );
    assert!(
        mails[0].text().contains("application/pdf"),
        "the label is attached"
    );

    // The row is saved before the mail; the mail is recorded once sent.
    let mut mailed = 0;
    for _ in 0..100 {
        mailed = app
            .count("SELECT COUNT(*) FROM shipments WHERE mailed_at IS NOT NULL")
            .await;
        if mailed == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(mailed, 1);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM shipments WHERE order_id = 33 AND vendor_id = 6 AND status = 'LABEL_SENT' AND delivery_id = 'yyy' AND label_pdf IS NOT NULL").await,
        1
    );
    // The webhook is marked processed after its mails: wait for it too.
    let mut processed = 0;
    for _ in 0..100 {
        processed = app
            .count("SELECT COUNT(*) FROM webhooks WHERE status = 'processed'")
            .await;
        if processed == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(processed, 1);

    // The same order again (an order.updated, another delivery): nothing booked, nothing mailed.
    let resp = app
        .post_signed("/api/deliveries/", &order, Some("e2e-2"))
        .await;
    assert_eq!(resp.status(), 201);
    for _ in 0..100 {
        if app
            .count("SELECT COUNT(*) FROM webhooks WHERE status = 'processed'")
            .await
            == 2
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        app.count("SELECT COUNT(*) FROM webhooks WHERE status = 'processed'")
            .await,
        2
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.messages().len(), 1, "no second mail");
    assert_eq!(app.count("SELECT COUNT(*) FROM shipments").await, 1);
    app.stop().await;
    shop.verify().await; // Koiki was called exactly once
}
