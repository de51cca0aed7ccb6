//! End to end, through the real SMTP sink: the admins' mails are not lost.
//! - A tracking change whose mail the server defers is mailed by the job's retry, once.
//! - A booking Koiki refuses reaches the admins.

use crate::helpers::{TestApp, TestDb, fixture};
use crate::shipping::{fake_koiki_and_shop, mount_vendor_6, shipping_settings};
use adapters::smtp_sink::SmtpSink;
use domain::model::{JobKind, NewJob};
use domain::ports::JobQueue as _;
use std::time::Duration;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tracking_change_whose_mail_is_deferred_reaches_the_admins_on_the_retry_once() {
    for (name, db) in TestDb::all().await {
        let sink = SmtpSink::start(None).await;
        let shop = fake_koiki_and_shop().await;
        Mock::given(method("POST"))
            .and(path("/kis/api/v1/service/track/see"))
            .respond_with(
                ResponseTemplate::new(200).set_body_string(fixture("koiki_track_see_ok.json")),
            )
            .mount(&shop)
            .await;
        let mut settings = shipping_settings(&db.url, &shop, &sink);
        settings.reconcile.enabled = Some(false);
        settings.shop.write_back = false;
        settings.koiki.tracking_auth_token = Some("tracking-token".to_owned().into());
        let app = TestApp::spawn(&settings).await;
        let resp = app
            .post_signed(
                "/api/deliveries/",
                &fixture("order_minimal.json"),
                Some("t-1"),
            )
            .await;
        assert_eq!(resp.status(), 201, "{name}");
        assert_eq!(
            sink.wait_for(1, Duration::from_secs(20)).await.len(),
            1,
            "{name}: label"
        );
        let id = app.count("SELECT MAX(id) FROM shipments").await;

        // The mail server defers the next message: the tracking change's.
        sink.defer_next(1);
        adapters::db::SqlJobQueue::new(app.running.db.clone())
            .enqueue(NewJob {
                kind: JobKind::TrackShipment { shipment_id: id },
                run_at: None,
            })
            .await
            .expect("enqueued");
        assert_eq!(
            app.wait_count(
                "SELECT COUNT(*) FROM shipments WHERE status = 'DELIVERED' \
                 AND tracking_unmailed_since IS NOT NULL",
                1
            )
            .await,
            1,
            "{name}: recorded, its mail due"
        );
        // The job's retry (about 5 s later) sends it.
        let mails = sink.wait_for(2, Duration::from_secs(30)).await;
        assert_eq!(
            mails.len(),
            2,
            "{name}: the tracking mail arrives on the retry"
        );
        assert_eq!(mails[1].to, vec!["admin@example.coop".to_owned()]);
        assert!(mails[1].text().contains("DELIVERED"), "{name}");
        assert_eq!(
            app.wait_count(
                "SELECT COUNT(*) FROM shipments WHERE tracking_unmailed_since IS NULL",
                1
            )
            .await,
            1,
            "{name}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(sink.messages().len(), 2, "{name}: once");
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_booking_reaches_the_admins_through_the_mail_server() {
    let db = TestDb::sqlite();
    let sink = SmtpSink::start(None).await;
    let shop = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/rekis/api/altaEnvios"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "respuesta": "101", "mensaje": "OK",
            "envios": [{"numPedido": "123", "codBarras": "", "etiqueta": "",
                        "respuesta": "103", "mensaje": "Codigo postal incorrecto"}]
        })))
        .expect(1)
        .mount(&shop)
        .await;
    mount_vendor_6(&shop).await;
    let mut settings = shipping_settings(&db.url, &shop, &sink);
    settings.reconcile.enabled = Some(false);
    settings.shop.write_back = false;
    let app = TestApp::spawn(&settings).await;
    let resp = app
        .post_signed(
            "/api/deliveries/",
            &fixture("order_minimal.json"),
            Some("r-1"),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let mails = sink.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].to, vec!["admin@example.coop".to_owned()]);
    let text = mails[0].text().replace("=\r\n", "");
    assert!(text.contains("Codigo postal incorrecto"), "{text}");
    assert!(text.contains("/area-privada/orders-details/33"), "{text}");
    assert_eq!(
        app.wait_count(
            "SELECT COUNT(*) FROM shipments WHERE status = 'ERROR_FROM_BODY' AND mailed_at IS NOT NULL",
            1
        )
        .await,
        1
    );
    app.stop().await;
    shop.verify().await;
}
