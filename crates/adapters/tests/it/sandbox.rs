//! The sandbox's fakes through the connector's real clients, configured only from the
//! environment the sandbox prints.

use adapters::config::Settings;
use adapters::koiki::{Envio, KoikiClient};
use adapters::mail::SmtpMailer;
use adapters::sandbox::{Sandbox, SandboxOptions, vendor_email};
use adapters::wordpress::WordPressShop;
use domain::error::{ShippingError, ShopError};
use domain::model::ShipmentStatus;
use domain::ports::{Email, Mailer, ShippingProvider, Shop};
use domain::service::shipping::tracking_status;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(5);

/// The settings `lazona-http` gets from `env` (and nothing else).
#[allow(
    clippy::result_large_err,
    reason = "figment::Jail's closures return figment::Error"
)]
fn settings_from(env: Vec<(String, String)>) -> Settings {
    let mut loaded = None;
    figment::Jail::expect_with(|jail| {
        for (name, value) in &env {
            jail.set_env(name, value);
        }
        loaded = Some(Settings::load(None).expect("the sandbox's environment loads"));
        Ok(())
    });
    loaded.expect("loaded")
}

fn envio(num_pedido: &str, name: &str) -> Envio {
    Envio {
        num_pedido: num_pedido.into(),
        bultos: 1,
        kilos: 0.0,
        tipo_servicio: 5,
        reembolso: 0.0,
        observaciones: String::new(),
        nombre_desti: name.into(),
        apellido_desti: "Bond".into(),
        direccion_desti: "Address 1".into(),
        direccion_adicional_desti: String::new(),
        numero_calle_desti: String::new(),
        cod_postal_desti: "08025".into(),
        poblacion_desti: "Barcelona".into(),
        provincia_desti: "Barcelona".into(),
        pais_desti: "ES".into(),
        telefono_desti: "666554433".into(),
        email_desti: "email@example.com".into(),
        nombre_remi: "A granel".into(),
        apellido_remi: String::new(),
        numero_calle_remi: String::new(),
        direccion_remi: "Sant Antoni Maria Claret, 175".into(),
        cod_postal_remi: "08041".into(),
        poblacion_remi: "Barcelona".into(),
        provincia_remi: String::new(),
        pais_remi: "ES".into(),
        email_remi: "detergents@agranel.coop".into(),
        telefono_remi: "93333333".into(),
    }
}

#[tokio::test]
async fn the_sandbox_environment_points_the_real_clients_at_the_fakes() {
    let mails = tempfile::tempdir().expect("temp dir");
    let sandbox = Sandbox::start(SandboxOptions {
        mail_dir: Some(mails.path().to_owned()),
        ..SandboxOptions::default()
    })
    .await
    .expect("sandbox starts");
    let settings = settings_from(sandbox.env());
    assert_eq!(settings.koiki.host, sandbox.url());
    assert!(settings.webhook.secret.is_some());

    // Koiki: one envio answered per envio requested, in order, each with its own barcode and
    // a PDF label.
    let koiki = KoikiClient::new(&settings.koiki, TIMEOUT).expect("koiki client");
    let results = koiki
        .book_envios(&[envio("order-a", "James"), envio("order-b", "Moneypenny")])
        .await
        .expect("booked");
    assert_eq!(results.len(), 2);
    assert!(results.iter().all(|r| r.is_booked()), "{results:?}");
    assert_eq!(results[0].reference, "order-a");
    assert_eq!(results[1].reference, "order-b");
    assert_ne!(results[0].barcode, results[1].barcode);
    assert!(results[0].label_pdf.starts_with(b"%PDF-"));
    let label = String::from_utf8_lossy(&results[1].label_pdf);
    assert!(label.contains(&results[1].barcode) && label.contains("Moneypenny"));

    let report = koiki.track(&results[0].barcode).await.expect("tracked");
    assert_eq!(tracking_status(&report).0, ShipmentStatus::InProcess);

    // WCFM and WordPress, for any vendor.
    let shop = WordPressShop::new(&settings.shop, TIMEOUT).expect("shop client");
    let vendor = shop.vendor(42).await.expect("vendor 42");
    assert_eq!(vendor.email, vendor_email(42));
    assert_eq!(vendor.city, "Barcelona");
    assert_eq!(
        shop.vendor(7).await.expect("vendor 7").email,
        vendor_email(7)
    );
    assert_eq!(shop.order(77).await.expect("order 77").id, 77);

    // Users kept in memory, for the customers' roles.
    let customer = shop
        .user_by_email("partner@email.com")
        .await
        .expect("search")
        .expect("the fixture's customer is there");
    assert_eq!(customer.roles, ["customer"]);
    let updated = shop
        .set_user_roles(customer.id, &["customer".into(), "partner".into()])
        .await
        .expect("roles set");
    assert_eq!(updated.roles, ["customer", "partner"]);
    assert_eq!(sandbox.user(customer.id).roles, ["customer", "partner"]);
    assert!(
        shop.user_by_email("nobody@example.com")
            .await
            .expect("search")
            .is_none()
    );
    let added = sandbox.add_user("new@example.com", &["customer"]);
    assert_eq!(
        shop.user_by_email("new@example.com")
            .await
            .expect("search")
            .map(|u| u.id),
        Some(added)
    );

    // Mail: the sink writes each message to the folder.
    let mailer = SmtpMailer::new(&settings.mail, TIMEOUT).expect("mailer");
    mailer
        .send(&Email {
            to: vec![vendor.email.clone()],
            subject: "sandbox".into(),
            body: "hello".into(),
            ..Email::default()
        })
        .await
        .expect("mailed");
    assert_eq!(sandbox.smtp().count(), 1);
    let written: Vec<_> = std::fs::read_dir(mails.path())
        .expect("folder")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(written, ["000001.eml"]);

    let calls = sandbox.calls();
    assert_eq!((calls.koiki_bookings, calls.koiki_envios), (1, 2));
    assert_eq!(calls.koiki_tracking, 1);
    assert_eq!(calls.wcfm_settings, 2);
    assert_eq!(calls.wc_orders, 1);
    assert_eq!(calls.wp_user_updates, 1);
    assert_eq!(calls.refused, 0);
}

#[tokio::test]
async fn the_fakes_refuse_wrong_credentials() {
    let sandbox = Sandbox::start(SandboxOptions::default())
        .await
        .expect("sandbox starts");
    let mut settings = settings_from(sandbox.env());
    settings.koiki.auth_token = Some("wrong".to_owned().into());
    settings.shop.password = Some("wrong".to_owned().into());
    let koiki = KoikiClient::new(&settings.koiki, TIMEOUT).expect("koiki client");
    let err = koiki
        .book_envios(&[envio("x", "James")])
        .await
        .expect_err("refused");
    assert!(
        matches!(&err, ShippingError::Rejected { reason } if reason.contains("TOKEN NOT FOUND")),
        "{err:?}"
    );
    let shop = WordPressShop::new(&settings.shop, TIMEOUT).expect("shop client");
    let err = shop.vendor(6).await.expect_err("refused");
    assert!(matches!(err, ShopError::Rejected { .. }), "{err:?}");
    assert_eq!(sandbox.calls().refused, 2);
}

fn sandbox_shop(sandbox: &Sandbox) -> WordPressShop {
    WordPressShop::new(&settings_from(sandbox.env()).shop, TIMEOUT).expect("shop client")
}

fn utc(text: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(text)
        .expect("RFC 3339")
        .with_timezone(&chrono::Utc)
}

#[tokio::test]
async fn the_fake_lists_orders_modified_after_a_time_page_by_page() {
    let sandbox = Sandbox::start(SandboxOptions::default())
        .await
        .expect("sandbox starts");
    // Added out of order; two share a modification time (then by id); one is too old.
    for (id, modified) in [
        (5, "2026-12-07T10:00:00"),
        (3, "2026-12-07T09:00:00"),
        (1, "2026-12-07T07:59:59"),
        (4, "2026-12-07T09:00:00"),
        (2, "2026-12-07T08:00:00"),
        (6, "2026-12-07T11:00:00"),
        (7, "2026-12-08T00:00:00"),
    ] {
        sandbox.add_shop_order(Sandbox::sample_order(id, "processing", modified));
    }
    // Added again with a later modification: listed once, at its new place.
    sandbox.add_shop_order(Sandbox::sample_order(2, "on-hold", "2026-12-07T12:00:00"));
    let shop = sandbox_shop(&sandbox);
    let after = utc("2026-12-07T08:00:00Z");

    let mut pages = Vec::new();
    for page in 1.. {
        let listed = shop
            .orders_modified_after(after, page, 2)
            .await
            .expect("listed");
        assert_eq!(listed.per_page, 2);
        let ids: Vec<i64> = listed.orders.iter().map(|o| o.id).collect();
        let short = ids.len() < 2;
        pages.push(ids);
        if short {
            break;
        }
    }
    // Three full pages, then an empty one (six orders after the time, two a page).
    assert_eq!(pages, [vec![3, 4], vec![5, 6], vec![2, 7], vec![]]);
    let page = shop
        .orders_modified_after(after, 2, 5)
        .await
        .expect("listed");
    let ids: Vec<i64> = page.orders.iter().map(|o| o.id).collect();
    assert_eq!(ids, [7], "a short last page");
    let order = &page.orders[0];
    assert_eq!(order.status, "processing");
    assert_eq!(order.modified, Some(utc("2026-12-08T00:00:00Z")));
    let body: serde_json::Value = serde_json::from_slice(&order.body).expect("JSON");
    assert_eq!(body["shipping_lines"].as_array().map(Vec::len), Some(2));

    // The order by id is the one added (the others stay the sample).
    let two = shop.order(2).await.expect("order 2");
    assert_eq!(two.id, 2);
    let raw = adapters::http::http_client(TIMEOUT)
        .expect("client")
        .get(format!("{}/wp-json/wc/v3/orders/2", sandbox.url()))
        .basic_auth(
            adapters::sandbox::SHOP_USER,
            Some(adapters::sandbox::SHOP_PASSWORD),
        )
        .send()
        .await
        .expect("sent")
        .json::<serde_json::Value>()
        .await
        .expect("JSON");
    assert_eq!(raw["status"], "on-hold");
    assert_eq!(raw["date_modified_gmt"], "2026-12-07T12:00:00");

    // WooCommerce's bounds: 100 a page at most.
    let err = shop
        .orders_modified_after(after, 1, 101)
        .await
        .expect_err("too many");
    assert!(
        matches!(&err, ShopError::Rejected { reason } if reason.contains("rest_invalid_param")),
        "{err:?}"
    );
    let calls = sandbox.calls();
    assert_eq!(calls.wc_order_lists, 6);
    assert_eq!(calls.wc_orders, 2, "the client's read and the raw one");
}

#[tokio::test]
async fn ten_thousand_orders_are_read_in_a_hundred_pages_quickly() {
    let sandbox = Sandbox::start(SandboxOptions::default())
        .await
        .expect("sandbox starts");
    let start = utc("2026-01-01T00:00:00Z");
    let template = Sandbox::sample_order(0, "processing", "2026-01-01T00:00:00");
    sandbox.add_shop_orders((1..=10_000_i64).map(|id| {
        let mut order = template.clone();
        let modified = (start + chrono::Duration::seconds(10_001 - id))
            .format("%Y-%m-%dT%H:%M:%S")
            .to_string();
        order["id"] = serde_json::json!(id);
        order["date_modified_gmt"] = serde_json::json!(modified);
        order
    }));
    let shop = sandbox_shop(&sandbox);
    let began = std::time::Instant::now();
    let mut ids = Vec::new();
    for page in 1..=101 {
        let listed = shop
            .orders_modified_after(start, page, 100)
            .await
            .expect("listed");
        ids.extend(listed.orders.iter().map(|o| o.id));
    }
    // Modified in the reverse order of their ids.
    assert_eq!(ids, (1..=10_000).rev().collect::<Vec<i64>>());
    assert!(
        began.elapsed() < Duration::from_secs(30),
        "{:?}",
        began.elapsed()
    );
}

#[tokio::test]
async fn order_notes_and_updates_round_trip_through_the_fake() {
    let sandbox = Sandbox::start(SandboxOptions::default())
        .await
        .expect("sandbox starts");
    sandbox.add_shop_order(Sandbox::sample_order(
        33,
        "processing",
        "2026-12-07T08:00:00",
    ));
    let shop = sandbox_shop(&sandbox);

    assert!(shop.order_notes(33).await.expect("notes").is_empty());
    let first = shop
        .add_order_note(33, "Codi de seguiment: 9900001.", true)
        .await
        .expect("added");
    let second = shop
        .add_order_note(33, "internal", false)
        .await
        .expect("added");
    assert_eq!(first.note, "Codi de seguiment: 9900001.");
    assert!(first.customer_note);
    assert_ne!(first.id, second.id);
    let notes = shop.order_notes(33).await.expect("notes");
    assert_eq!(notes, [second.clone(), first.clone()], "newest first");
    assert_eq!(
        sandbox.order_notes(33),
        [
            ("Codi de seguiment: 9900001.".to_owned(), true),
            ("internal".to_owned(), false)
        ]
    );
    assert!(sandbox.order_notes(34).is_empty());

    let meta = serde_json::json!([{"vendor_id": 6, "barcode": "9900001", "status": "delivered"}]);
    shop.update_order(
        33,
        &domain::model::OrderUpdate {
            status: None,
            meta_data: vec![("_lazona_shipments".into(), meta.clone())],
        },
    )
    .await
    .expect("meta");
    shop.update_order(
        33,
        &domain::model::OrderUpdate {
            status: Some("completed".into()),
            meta_data: Vec::new(),
        },
    )
    .await
    .expect("status");
    assert_eq!(
        sandbox.order_updates(),
        [
            (
                33,
                serde_json::json!({"meta_data": [{"key": "_lazona_shipments", "value": meta}]})
            ),
            (33, serde_json::json!({"status": "completed"})),
        ]
    );
    // Applied to the order added, whose modification is kept.
    let listed = shop
        .orders_modified_after(utc("2026-12-07T00:00:00Z"), 1, 10)
        .await
        .expect("listed");
    assert_eq!(listed.orders.len(), 1);
    assert_eq!(listed.orders[0].status, "completed");
    let body: serde_json::Value = serde_json::from_slice(&listed.orders[0].body).expect("JSON");
    assert_eq!(body["meta_data"][0]["value"], meta);
    assert_eq!(body["date_modified_gmt"], "2026-12-07T08:00:00");

    let calls = sandbox.calls();
    assert_eq!((calls.wc_note_reads, calls.wc_note_writes), (2, 2));
    assert_eq!(calls.wc_order_updates, 2);
}

#[tokio::test]
async fn the_fakes_webhooks_are_listed_and_set() {
    let sandbox = Sandbox::start(SandboxOptions::default())
        .await
        .expect("sandbox starts");
    let shop = sandbox_shop(&sandbox);
    let hooks = shop.webhooks().await.expect("listed");
    let summary: Vec<(i64, &str, &str, &str)> = hooks
        .iter()
        .map(|h| {
            (
                h.id,
                h.topic.as_str(),
                h.status.as_str(),
                h.delivery_url.as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                1,
                "order.created",
                "active",
                "http://127.0.0.1:8080/api/deliveries/"
            ),
            (
                2,
                "order.updated",
                "disabled",
                "http://127.0.0.1:8080/api/deliveries/"
            ),
            (
                3,
                "customer.created",
                "active",
                "http://127.0.0.1:8080/api/customers/"
            ),
            (
                4,
                "customer.updated",
                "active",
                "http://127.0.0.1:8080/api/customers/"
            ),
        ]
    );
    assert_eq!(sandbox.webhooks(), hooks);

    let updated = shop.set_webhook_status(2, "active").await.expect("set");
    assert!(updated.is_active());
    assert_eq!(updated.topic, "order.updated");
    assert!(sandbox.webhooks().iter().all(|h| h.is_active()));
    let err = shop.set_webhook_status(2, "sleeping").await.unwrap_err();
    assert!(matches!(err, ShopError::Rejected { .. }), "{err:?}");
    let err = shop.set_webhook_status(99, "active").await.unwrap_err();
    assert!(matches!(err, ShopError::NotFound { .. }), "{err:?}");

    assert!(sandbox.set_webhook_status(1, "paused"));
    assert!(!sandbox.set_webhook_status(99, "paused"));
    sandbox.set_connector_url("http://127.0.0.1:9999/");
    let hooks = shop.webhooks().await.expect("listed");
    assert_eq!(hooks[0].status, "paused");
    assert_eq!(
        hooks[0].delivery_url,
        "http://127.0.0.1:9999/api/deliveries/"
    );
    assert_eq!(
        hooks[2].delivery_url,
        "http://127.0.0.1:9999/api/customers/"
    );
    let calls = sandbox.calls();
    assert_eq!((calls.wc_webhook_lists, calls.wc_webhook_updates), (2, 3));
}

#[tokio::test]
async fn the_woocommerce_fakes_want_the_password() {
    let sandbox = Sandbox::start(SandboxOptions::default())
        .await
        .expect("sandbox starts");
    let mut settings = settings_from(sandbox.env());
    settings.shop.password = Some("wrong".to_owned().into());
    let shop = WordPressShop::new(&settings.shop, TIMEOUT).expect("shop client");
    let after = utc("2026-01-01T00:00:00Z");
    assert!(matches!(
        shop.orders_modified_after(after, 1, 10).await,
        Err(ShopError::Rejected { .. })
    ));
    assert!(matches!(
        shop.webhooks().await,
        Err(ShopError::Rejected { .. })
    ));
    assert!(matches!(
        shop.add_order_note(1, "x", false).await,
        Err(ShopError::Rejected { .. })
    ));
    assert!(sandbox.order_notes(1).is_empty());
    assert_eq!(sandbox.calls().refused, 3);
}
