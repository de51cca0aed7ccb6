//! `lazona shipments` and `lazona labels`: the real binary against a real database; the
//! operator's actions carried out by an in-process worker talking to fake Koiki and WooCommerce
//! servers, with a real SMTP sink.

use crate::support::{database, run, start_worker, stdout_json};
use adapters::db::SqlShipmentStore;
use adapters::smtp_sink::SmtpSink;
use adapters::testing::TestDb;
use base64::Engine as _;
use domain::model::{BookingOutcome, Claim, ShipmentMethod, ShipmentStatus};
use domain::ports::ShipmentStore;
use std::time::Duration;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const ORDER: &str = include_str!("../../../../tests/fixtures/order_minimal.json");
const WCFM_6: &str = include_str!("../../../../tests/fixtures/wcfm_settings_6.json");
const WP_USER_6: &str = include_str!("../../../../tests/fixtures/wp_user_6.json");

/// A shipment of `order` for `vendor`, booked as `status`; its id.
pub(crate) async fn shipment(
    store: &SqlShipmentStore,
    order: i64,
    vendor: i64,
    status: ShipmentStatus,
    barcode: &str,
    label: Option<&[u8]>,
) -> i64 {
    let Claim::Claimed(s) = store
        .claim(order, vendor, ShipmentMethod::Koiki)
        .await
        .expect("claim")
    else {
        panic!("a new shipment")
    };
    store
        .record_booking(
            s.id,
            0,
            &BookingOutcome {
                status,
                delivery_id: barcode.into(),
                request: "{\"numPedido\": \"x\"}".into(),
                message: "first answer".into(),
                label_pdf: label.map(<[u8]>::to_vec),
            },
        )
        .await
        .expect("record");
    s.id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipments_are_listed_shown_and_labels_downloaded_and_unsafe_actions_refused() {
    for (backend, db) in TestDb::all().await {
        let database = database(&db.url).await;
        let store = SqlShipmentStore::new(database.clone());
        let booked = shipment(
            &store,
            33,
            6,
            ShipmentStatus::LabelSent,
            "BAR1",
            Some(b"%PDF-1.4 label"),
        )
        .await;
        let refused = shipment(&store, 34, 7, ShipmentStatus::ErrorFromBody, "", None).await;

        let rows = stdout_json(&run(&db.url, &["shipments", "list", "--json"]).await);
        let ids: Vec<i64> = rows
            .as_array()
            .expect("array")
            .iter()
            .map(|r| r["id"].as_i64().expect("id"))
            .collect();
        assert_eq!(ids, vec![refused, booked], "{backend}: newest first");
        let rows = stdout_json(
            &run(
                &db.url,
                &["shipments", "list", "--status", "label_sent", "--json"],
            )
            .await,
        );
        assert_eq!(rows.as_array().map(Vec::len), Some(1), "{backend}");
        assert_eq!(rows[0]["delivery_id"], "BAR1", "{backend}");

        let one = stdout_json(
            &run(
                &db.url,
                &["shipments", "show", &booked.to_string(), "--json"],
            )
            .await,
        );
        assert_eq!(one["status"], "LABEL_SENT", "{backend}");
        assert_eq!(one["has_label"], true, "{backend}");
        let text = run(&db.url, &["shipments", "show", &booked.to_string()]).await;
        assert!(
            String::from_utf8_lossy(&text.stdout).contains("barcode    BAR1"),
            "{backend}"
        );
        assert_eq!(
            run(&db.url, &["shipments", "show", "999999"])
                .await
                .status
                .code(),
            Some(3),
            "{backend}: a missing shipment exits 3"
        );

        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("label.pdf");
        let out = run(
            &db.url,
            &[
                "labels",
                "get",
                &booked.to_string(),
                "-o",
                file.to_str().expect("path"),
            ],
        )
        .await;
        assert!(
            out.status.success(),
            "{backend}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            std::fs::read(&file).expect("file"),
            b"%PDF-1.4 label",
            "{backend}"
        );
        assert_eq!(
            run(
                &db.url,
                &["labels", "get", &refused.to_string(), "-o", "x.pdf"]
            )
            .await
            .status
            .code(),
            Some(3),
            "{backend}: no label exits 3"
        );

        let out = run(&db.url, &["shipments", "retry", &booked.to_string()]).await;
        assert_eq!(
            out.status.code(),
            Some(4),
            "{backend}: a booked shipment needs --force"
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("--force"),
            "{backend}"
        );
        let out = run(&db.url, &["shipments", "track", &refused.to_string()]).await;
        assert_eq!(
            out.status.code(),
            Some(4),
            "{backend}: no barcode, nothing to track"
        );

        let queued = stdout_json(
            &run(
                &db.url,
                &[
                    "shipments",
                    "retry",
                    &refused.to_string(),
                    "--no-wait",
                    "--json",
                ],
            )
            .await,
        );
        assert_eq!(queued["job"], "retry_shipment", "{backend}");
        assert_eq!(
            adapters::testing::count(&database, "SELECT COUNT(*) FROM jobs").await,
            1,
            "{backend}: the action is a job for the workers"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_and_track_are_carried_out_by_a_worker_and_mailed() {
    for (_, db) in TestDb::all().await {
        retry_and_track(&db).await;
    }
}

/// Fake Koiki (one booking, answered with barcode NEW1 and `pdf`) and WooCommerce/WCFM (order
/// 33, fetched once, and vendor 6).
async fn fake_koiki_and_shop(pdf: &[u8]) -> MockServer {
    let fake = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/rekis/api/altaEnvios"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "respuesta": "101", "mensaje": "OK",
            "envios": [{"numPedido": "33", "codBarras": "NEW1", "respuesta": "101", "mensaje": "OK",
                        "etiqueta": base64::engine::general_purpose::STANDARD.encode(pdf)}]
        })))
        .expect(1)
        .mount(&fake)
        .await;
    Mock::given(method("GET"))
        .and(path("/wp-json/wc/v3/orders/33"))
        .respond_with(ResponseTemplate::new(200).set_body_string(ORDER))
        .expect(1)
        .mount(&fake)
        .await;
    Mock::given(method("GET"))
        .and(path("/wp-json/wcfmmp/v1/settings/id/6"))
        .respond_with(ResponseTemplate::new(200).set_body_string(WCFM_6))
        .mount(&fake)
        .await;
    Mock::given(method("GET"))
        .and(path("/wp-json/wp/v2/users/6"))
        .respond_with(ResponseTemplate::new(200).set_body_string(WP_USER_6))
        .mount(&fake)
        .await;
    fake
}

async fn retry_and_track(db: &TestDb) {
    let sink = SmtpSink::start(None).await;
    let pdf = b"%PDF-1.4 the new label";
    let fake = fake_koiki_and_shop(pdf).await;
    Mock::given(method("POST"))
        .and(path("/kis/api/v1/service/track/see"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "result": [
                {"servicio": "111", "codEstado": "Envío entregado", "date": "2021-07-26T09:49:37+0000", "code": 108},
                {"servicio": "111", "codEstado": "Envio en Reparto", "date": "2021-07-26T07:09:21+0000", "code": 901}
            ]
        })))
        .expect(1)
        .mount(&fake)
        .await;

    let database = database(&db.url).await;
    let store = SqlShipmentStore::new(database.clone());
    let id = shipment(&store, 33, 6, ShipmentStatus::ErrorFromBody, "", None).await;

    let (shutdown, running) = start_worker(&db.url, &database, &fake.uri(), sink.port()).await;

    let out = stdout_json(&run(&db.url, &["shipments", "retry", &id.to_string(), "--json"]).await);
    assert_eq!(out["status"], "LABEL_SENT");
    assert_eq!(out["delivery_id"], "NEW1");
    let mails = sink.wait_for(1, Duration::from_secs(20)).await;
    let vendor: serde_json::Value = serde_json::from_str(WP_USER_6).expect("json");
    assert_eq!(
        mails[0].to,
        vec![vendor["email"].as_str().expect("email").to_owned()]
    );
    assert!(
        mails[0]
            .text()
            .replace("=\r\n", "")
            .contains(r#"filename="NEW1.pdf""#)
    );
    assert_eq!(
        store.label(id).await.expect("label").as_deref(),
        Some(&pdf[..]),
        "the new label is stored"
    );
    let out = run(&db.url, &["shipments", "retry", &id.to_string()]).await;
    assert_eq!(
        out.status.code(),
        Some(4),
        "booked now: a second retry needs --force"
    );

    let out = stdout_json(&run(&db.url, &["shipments", "track", &id.to_string(), "--json"]).await);
    assert_eq!(out["status"], "DELIVERED");
    let mails = sink.wait_for(2, Duration::from_secs(20)).await;
    assert_eq!(mails.len(), 2, "the label, then the tracking change");
    assert_eq!(mails[1].to, vec!["admin@example.coop".to_owned()]);
    // "Actualització" is sent as an RFC 2047 encoded word.
    let subject = mails[1].header("subject").unwrap_or_default();
    assert!(
        subject.ends_with("estat Koiki per l'enviament: NEW1"),
        "{subject}"
    );
    assert!(
        mails[1].text().contains("DELIVERED"),
        "the new status is in the mail"
    );

    shutdown.cancel();
    let _ = running.await;
    // The mocks' `expect(1)`: Koiki booked once, the order fetched once, tracking asked once.
    fake.verify().await;
}

/// A forced retry books a second parcel: the shipment holds the new one, and the one it
/// replaced stays listed with its label (`shipments show`, `labels get --past`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_retry_keeps_the_parcel_it_replaces_with_its_label() {
    for (backend, db) in TestDb::all().await {
        let sink = SmtpSink::start(None).await;
        let fake = fake_koiki_and_shop(b"%PDF-new").await;
        let database = database(&db.url).await;
        let store = SqlShipmentStore::new(database.clone());
        let id = shipment(
            &store,
            33,
            6,
            ShipmentStatus::LabelSent,
            "BAR1",
            Some(b"%PDF-old"),
        )
        .await;
        let (shutdown, running) = start_worker(&db.url, &database, &fake.uri(), sink.port()).await;
        let out = stdout_json(
            &run(
                &db.url,
                &["shipments", "retry", &id.to_string(), "--force", "--json"],
            )
            .await,
        );
        assert_eq!(out["delivery_id"], "NEW1", "{backend}: {out}");
        let shown =
            stdout_json(&run(&db.url, &["shipments", "show", &id.to_string(), "--json"]).await);
        assert_eq!(shown["delivery_id"], "NEW1", "{backend}");
        let past = &shown["past_bookings"][0];
        assert_eq!(past["delivery_id"], "BAR1", "{backend}: {shown}");
        assert_eq!(past["reason"], "superseded", "{backend}");
        let text = run(&db.url, &["shipments", "show", &id.to_string()]).await;
        assert!(
            String::from_utf8_lossy(&text.stdout).contains("BAR1"),
            "{backend}"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("old.pdf");
        let past_id = past["id"].as_i64().expect("id").to_string();
        let out = run(
            &db.url,
            &[
                "labels",
                "get",
                &id.to_string(),
                "--past",
                &past_id,
                "-o",
                file.to_str().expect("path"),
            ],
        )
        .await;
        assert!(out.status.success(), "{backend}");
        assert_eq!(
            std::fs::read(&file).expect("file"),
            b"%PDF-old",
            "{backend}"
        );
        shutdown.cancel();
        let _ = running.await;
        fake.verify().await;
    }
}

/// `lazona labels resend` mails the label again through a worker, to the vendor or to `--to`;
/// `shipments show` shows the label mail's state and its events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_label_is_mailed_again_and_the_mail_shown_with_the_shipment() {
    for (backend, db) in TestDb::all().await {
        let sink = SmtpSink::start(None).await;
        let fake = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/wp-json/wcfmmp/v1/settings/id/6"))
            .respond_with(ResponseTemplate::new(200).set_body_string(WCFM_6))
            .mount(&fake)
            .await;
        Mock::given(method("GET"))
            .and(path("/wp-json/wp/v2/users/6"))
            .respond_with(ResponseTemplate::new(200).set_body_string(WP_USER_6))
            .mount(&fake)
            .await;
        let database = database(&db.url).await;
        let store = SqlShipmentStore::new(database.clone());
        let id = shipment(
            &store,
            33,
            6,
            ShipmentStatus::LabelSent,
            "BAR1",
            Some(b"%PDF-label"),
        )
        .await;
        let refused = shipment(&store, 34, 6, ShipmentStatus::ErrorFromBody, "", None).await;
        let (shutdown, running) = start_worker(&db.url, &database, &fake.uri(), sink.port()).await;

        let out =
            stdout_json(&run(&db.url, &["labels", "resend", &id.to_string(), "--json"]).await);
        assert_eq!(out["mail_state"], "sent", "{backend}: {out}");
        let first = out["mail_message_id"]
            .as_str()
            .expect("a Message-ID")
            .to_owned();
        let vendor: serde_json::Value = serde_json::from_str(WP_USER_6).expect("json");
        // The label mails (the admins may be told something else meanwhile).
        let labels = || {
            sink.messages()
                .into_iter()
                .filter(|m| m.header("X-MC-Metadata").is_some())
                .collect::<Vec<_>>()
        };
        let mails = labels();
        assert_eq!(
            mails.len(),
            1,
            "{backend}: sent before the command returned"
        );
        assert_eq!(
            mails[0].to,
            vec![vendor["email"].as_str().expect("email").to_owned()],
            "{backend}"
        );
        assert_eq!(
            mails[0].header("Message-ID").as_deref(),
            Some(first.as_str()),
            "{backend}"
        );

        let out = stdout_json(
            &run(
                &db.url,
                &[
                    "labels",
                    "resend",
                    &id.to_string(),
                    "--to",
                    "fixed@example.coop",
                    "--json",
                ],
            )
            .await,
        );
        assert_ne!(
            out["mail_message_id"],
            first.as_str(),
            "{backend}: a new mail"
        );
        let mails = labels();
        assert_eq!(mails.len(), 2, "{backend}");
        assert_eq!(
            mails[1].to,
            vec!["fixed@example.coop".to_owned()],
            "{backend}"
        );

        let shown =
            stdout_json(&run(&db.url, &["shipments", "show", &id.to_string(), "--json"]).await);
        assert_eq!(shown["mail_state"], "sent", "{backend}");
        let events = shown["mail_events"].as_array().expect("events");
        assert_eq!(events.len(), 2, "{backend}: {shown}");
        assert_eq!(events[0]["event"], "resent", "{backend}");
        assert_eq!(
            events[0]["email"], "fixed@example.coop",
            "{backend}: newest first"
        );
        let text = run(&db.url, &["shipments", "show", &id.to_string()]).await;
        let text = String::from_utf8_lossy(&text.stdout).into_owned();
        assert!(text.contains("mail       sent"), "{backend}: {text}");
        assert!(text.contains("resent"), "{backend}: {text}");
        assert!(text.contains("fixed@example.coop"), "{backend}: {text}");

        // Refused as things stand: no label, not an address; a missing shipment.
        let out = run(&db.url, &["labels", "resend", &refused.to_string()]).await;
        assert_eq!(out.status.code(), Some(4), "{backend}: no label");
        let out = run(
            &db.url,
            &[
                "labels",
                "resend",
                &id.to_string(),
                "--to",
                "a@x.org, b@y.org",
            ],
        )
        .await;
        assert_eq!(out.status.code(), Some(4), "{backend}: not one address");
        let out = run(&db.url, &["labels", "resend", "999999"]).await;
        assert_eq!(out.status.code(), Some(3), "{backend}");
        shutdown.cancel();
        let _ = running.await;
    }
}

/// `lazona mail-events` lists what the relay reported, and shows a malformed delivery as it came.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_events_are_listed_and_a_malformed_delivery_shown_as_received() {
    use domain::model::{MailEventStatus, NewMailEvent};
    use domain::ports::MailEventStore as _;
    for (backend, db) in TestDb::all().await {
        let database = database(&db.url).await;
        let events = adapters::db::SqlMailEventStore::new(database.clone());
        let mut bad = NewMailEvent::new("mandrill", "malformed", "[{not json".into());
        bad.status = MailEventStatus::Malformed;
        bad.error = Some("mandrill_events is not JSON".into());
        events.record(&bad).await.expect("kept");
        let mut resent = NewMailEvent::new("lazona", "resent", "{}".into());
        resent.status = MailEventStatus::Applied;
        resent.shipment_id = Some(5);
        events.record(&resent).await.expect("kept");

        let rows = stdout_json(
            &run(
                &db.url,
                &["mail-events", "list", "--status", "malformed", "--json"],
            )
            .await,
        );
        let rows = rows.as_array().expect("array");
        assert_eq!(rows.len(), 1, "{backend}");
        assert_eq!(rows[0]["raw"], "[{not json", "{backend}");
        let id = rows[0]["id"].as_i64().expect("id").to_string();
        let out = run(&db.url, &["mail-events", "show", &id]).await;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(text.contains("[{not json"), "{backend}: {text}");
        assert!(text.contains("is not JSON"), "{backend}: {text}");
        let rows = stdout_json(
            &run(
                &db.url,
                &["mail-events", "list", "--shipment", "5", "--json"],
            )
            .await,
        );
        assert_eq!(rows[0]["event"], "resent", "{backend}");
        assert_eq!(
            run(&db.url, &["mail-events", "show", "999999"])
                .await
                .status
                .code(),
            Some(3),
            "{backend}"
        );
    }
}
