//! End to end, through `lazona-http` with its worker: alerts raised by the use cases and the
//! periodic check, told once by mail (the real SMTP sink) and by the signed outbound webhook (a
//! local receiver that checks the Standard Webhooks signature), shown by `/api/v1/alerts`, and
//! resolved by their condition's end or by hand.

use crate::helpers::{TestApp, TestDb, fixture};
use crate::shipping::{fake_koiki_and_shop, shipping_settings_with};
use adapters::alert_hook::{sign, signing_key};
use adapters::db::{SqlJobQueue, SqlShipmentStore, SqlTokenStore};
use adapters::smtp_sink::SmtpSink;
use base64::Engine as _;
use domain::model::{Claim, JobKind, NewJob, Principal, ShipmentMethod, ShipmentStatus};
use domain::ports::{JobQueue as _, ShipmentStore as _, TokenStore as _};
use serde_json::Value;
use std::time::Duration;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const HOOK_SECRET: &[u8] = b"alert-hook-secret";

/// A receiver of the alerts' webhook.
pub(crate) async fn hook_receiver() -> MockServer {
    let hook = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&hook)
        .await;
    hook
}

/// The posts the receiver got, each checked as a Standard Webhooks receiver does.
pub(crate) async fn verified_posts(hook: &MockServer, want: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let got = hook.received_requests().await.unwrap_or_default();
        if got.len() >= want || tokio::time::Instant::now() > deadline {
            let key = signing_key(&secret_text());
            return got
                .iter()
                .map(|r| {
                    let header = |n: &str| {
                        r.headers
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_else(|| panic!("{n} header"))
                            .to_owned()
                    };
                    let id = header("webhook-id");
                    let ts: i64 = header("webhook-timestamp").parse().expect("timestamp");
                    assert!((chrono::Utc::now().timestamp() - ts).abs() < 300, "fresh");
                    assert_eq!(
                        header("webhook-signature"),
                        sign(&key, &id, ts, &r.body),
                        "the signature verifies"
                    );
                    serde_json::from_slice(&r.body).expect("json")
                })
                .collect();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn secret_text() -> String {
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(HOOK_SECRET)
    )
}

async fn admin_token(app: &TestApp) -> String {
    let (_, secret) = SqlTokenStore::new(app.running.db.clone())
        .create("ops", Principal::Admin)
        .await
        .expect("token");
    secret.expose().to_owned()
}

async fn get(app: &TestApp, token: &str, path: &str) -> (u16, Value) {
    let resp = app
        .client
        .get(app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .expect("sent");
    (resp.status().as_u16(), resp.json().await.expect("json"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_booking_and_a_dead_job_are_told_once_shown_and_resolved() {
    for (name, db) in TestDb::all().await {
        let sink = SmtpSink::start(None).await;
        // Nothing is booked or tracked here: the shop and Koiki are never called.
        let shop = MockServer::start().await;
        let hook = hook_receiver().await;
        let hook_url = format!("{}/hook", hook.uri());
        let secret = secret_text();
        let settings = shipping_settings_with(
            &db.url,
            &shop,
            &sink,
            &[
                ("reconcile.enabled", "false"),
                ("alerts.booking_stuck_secs", "1"),
                ("alerts.check_interval_secs", "1"),
                ("alerts.webhook_url", &hook_url),
                ("alerts.webhook_secret", &secret),
                ("alerts.list_url", "https://connector.example/dashboard"),
            ],
        );
        let app = TestApp::spawn(&settings).await;
        let token = admin_token(&app).await;

        // A booking left BOOKING (its worker died mid-call), and a job that cannot succeed.
        let store = SqlShipmentStore::new(app.running.db.clone());
        let Claim::Claimed(claimed) = store
            .claim(40, 6, ShipmentMethod::Koiki)
            .await
            .expect("claimed")
        else {
            panic!("{name}: a new shipment")
        };
        let stuck_id = claimed.id;
        SqlJobQueue::new(app.running.db.clone())
            .enqueue(NewJob {
                kind: JobKind::TrackShipment {
                    shipment_id: 987_654,
                },
                run_at: None,
            })
            .await
            .expect("enqueued");

        let mails = sink.wait_for(2, Duration::from_secs(20)).await;
        assert_eq!(mails.len(), 2, "{name}: one mail per alert");
        let subjects: Vec<String> = mails
            .iter()
            .map(|m| m.header("subject").unwrap_or_default())
            .collect();
        assert!(
            subjects
                .iter()
                .any(|s| s.contains(&format!("Enviament {stuck_id} de la comanda 40 encallat"))),
            "{name}: {subjects:?}"
        );
        assert!(
            subjects
                .iter()
                .any(|s| s.contains("Tasca abandonada: track_shipment")),
            "{name}: {subjects:?}"
        );
        for m in &mails {
            assert_eq!(m.to, vec!["admin@example.coop".to_owned()], "{name}");
            let text = m.text().replace("=\r\n", "");
            assert!(
                text.contains("https://connector.example/dashboard"),
                "{name}: the list is linked: {text}"
            );
        }

        let posts = verified_posts(&hook, 2).await;
        assert_eq!(posts.len(), 2, "{name}");
        for p in &posts {
            assert_eq!(p["type"], "alert.opened", "{name}");
            assert!(
                p["text"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("[lazona] ")),
                "{name}: {p}"
            );
        }

        // Shown: both open, counted by kind.
        let (status, list) = get(&app, &token, "/api/v1/alerts").await;
        assert_eq!(status, 200, "{name}: {list}");
        assert_eq!(list["open_total"], 2, "{name}: {list}");
        assert_eq!(list["open_by_kind"]["booking_stuck"], 1, "{name}");
        assert_eq!(list["open_by_kind"]["job_dead"], 1, "{name}");

        // Still stuck at the next checks: counted, not told again.
        assert!(
            app.wait_count(
                "SELECT COUNT(*) FROM alerts WHERE kind = 'booking_stuck' AND count >= 2",
                1
            )
            .await
                >= 1,
            "{name}: the repeat is counted"
        );
        assert_eq!(sink.messages().len(), 2, "{name}: and not mailed again");

        // The shipment leaves BOOKING: the next check resolves its alert.
        assert!(
            store
                .transition(
                    stuck_id,
                    ShipmentStatus::Booking,
                    ShipmentStatus::ErrorFromBody
                )
                .await
                .expect("moved")
        );
        assert_eq!(
            app.wait_count(
                "SELECT COUNT(*) FROM alerts WHERE kind = 'booking_stuck' \
                 AND state = 'resolved' AND resolved_by = 'auto'",
                1
            )
            .await,
            1,
            "{name}: resolved by itself"
        );

        // The dead job's alert, resolved by hand through the API.
        let dead = list["items"]
            .as_array()
            .expect("items")
            .iter()
            .find(|a| a["kind"] == "job_dead")
            .expect("the dead job's alert")["id"]
            .as_i64()
            .expect("id");
        let resp = app
            .client
            .post(app.url(&format!("/api/v1/alerts/{dead}/resolve")))
            .bearer_auth(&token)
            .send()
            .await
            .expect("sent");
        assert_eq!(resp.status(), 200, "{name}");
        let resolved: Value = resp.json().await.expect("json");
        assert_eq!(resolved["state"], "resolved", "{name}");
        assert!(
            resolved["resolved_by"]
                .as_str()
                .is_some_and(|by| by.starts_with("token ops (#")),
            "{name}: {resolved}"
        );
        let (_, list) = get(&app, &token, "/api/v1/alerts").await;
        assert_eq!(list["open_total"], 0, "{name}: {list}");
        let (status, _) = get(&app, &token, "/api/v1/alerts/999999").await;
        assert_eq!(status, 404, "{name}");
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tracking_error_is_told_and_resolves_when_the_tracking_answers_again() {
    for (name, db) in TestDb::all().await {
        let sink = SmtpSink::start(None).await;
        let shop = fake_koiki_and_shop().await;
        Mock::given(method("POST"))
            .and(path("/kis/api/v1/service/track/see"))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "error": {"code": 404, "message": "Envio no encontrado"}
            })))
            .up_to_n_times(1)
            .mount(&shop)
            .await;
        Mock::given(method("POST"))
            .and(path("/kis/api/v1/service/track/see"))
            .respond_with(
                ResponseTemplate::new(200).set_body_string(fixture("koiki_track_see_ok.json")),
            )
            .mount(&shop)
            .await;
        let hook = hook_receiver().await;
        let hooked = hook_settings(&hook);
        let mut settings = shipping_settings_with(&db.url, &shop, &sink, &with(&hooked, &[]));
        settings.koiki.tracking_auth_token = Some("tracking-token".to_owned().into());
        let app = TestApp::spawn(&settings).await;
        let resp = app
            .post_signed(
                "/api/deliveries/",
                &fixture("order_minimal.json"),
                Some("te-1"),
            )
            .await;
        assert_eq!(resp.status(), 201, "{name}");
        sink.wait_for(1, Duration::from_secs(20)).await;
        let id = app.count("SELECT MAX(id) FROM shipments").await;
        let track = || async {
            SqlJobQueue::new(app.running.db.clone())
                .enqueue(NewJob {
                    kind: JobKind::TrackShipment { shipment_id: id },
                    run_at: None,
                })
                .await
                .expect("enqueued");
        };
        track().await;
        assert_eq!(
            app.wait_count(
                "SELECT COUNT(*) FROM alerts WHERE kind = 'tracking_error' AND state = 'open'",
                1
            )
            .await,
            1,
            "{name}"
        );
        // The label, the tracking change's mail, and the alert's.
        let mails = sink.wait_for(3, Duration::from_secs(20)).await;
        let alert_mail = mails
            .iter()
            .find(|m| {
                m.header("subject")
                    .is_some_and(|s| s.starts_with("Error de seguiment Koiki"))
            })
            .unwrap_or_else(|| panic!("{name}: the alert's mail among {mails:?}"));
        assert!(alert_mail.text().contains("Envio no encontrado"), "{name}");
        let post = the_post_of(&hook, "tracking_error", name).await;
        assert_eq!(
            post["alert"]["subject"],
            format!("shipment:{id}"),
            "{name}: {post}"
        );

        track().await;
        assert_eq!(
            app.wait_count(
                "SELECT COUNT(*) FROM alerts WHERE kind = 'tracking_error' AND state = 'resolved'",
                1
            )
            .await,
            1,
            "{name}: resolved when the tracking answers"
        );
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shop_that_sends_no_order_is_told_and_the_next_order_resolves_it() {
    for (name, db) in TestDb::all().await {
        let sink = SmtpSink::start(None).await;
        let shop = MockServer::start().await;
        // 0.0005 hours: under two seconds without an order webhook.
        let hook = hook_receiver().await;
        let hooked = hook_settings(&hook);
        let settings = shipping_settings_with(
            &db.url,
            &shop,
            &sink,
            &with(
                &hooked,
                &[
                    ("alerts.silence_hours", "0.0005"),
                    ("alerts.check_interval_secs", "1"),
                    ("koiki.host", ""),
                ],
            ),
        );
        let app = TestApp::spawn(&settings).await;
        let mails = sink.wait_for(1, Duration::from_secs(20)).await;
        assert_eq!(mails.len(), 1, "{name}");
        assert!(
            mails[0]
                .header("subject")
                .is_some_and(|s| s.starts_with("La botiga no ha enviat cap comanda")),
            "{name}: {:?}",
            mails[0].header("subject")
        );
        let post = the_post_of(&hook, "shop_silent", name).await;
        assert_eq!(post["alert"]["subject"], "shop", "{name}: {post}");
        let resp = app
            .post_signed(
                "/api/deliveries/",
                &fixture("order_minimal.json"),
                Some("silence-1"),
            )
            .await;
        assert_eq!(resp.status(), 201, "{name}");
        assert_eq!(
            app.wait_count(
                "SELECT COUNT(*) FROM alerts WHERE kind = 'shop_silent' AND state = 'resolved'",
                1
            )
            .await,
            1,
            "{name}: resolved by the next order"
        );
        app.stop().await;
    }
}

/// The settings that post alerts to `hook`'s receiver, signed with [`HOOK_SECRET`].
pub(crate) fn hook_settings(hook: &MockServer) -> [(&'static str, String); 2] {
    [
        ("alerts.webhook_url", format!("{}/hook", hook.uri())),
        ("alerts.webhook_secret", secret_text()),
    ]
}

/// `base` with `extra` on top, as the settings builders take them.
pub(crate) fn with<'a>(
    base: &'a [(&'static str, String)],
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    base.iter()
        .map(|(k, v)| (*k, v.as_str()))
        .chain(extra.iter().copied())
        .collect()
}

/// The one signed post of `kind`'s alert the receiver got, checked.
pub(crate) async fn the_post_of(hook: &MockServer, kind: &str, name: &str) -> Value {
    let posts = verified_posts(hook, 1).await;
    let of_kind: Vec<&Value> = posts
        .iter()
        .filter(|p| p["alert"]["kind"] == kind)
        .collect();
    assert_eq!(of_kind.len(), 1, "{name}: one {kind} post among {posts:?}");
    of_kind[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_booking_is_told_once_and_a_successful_retry_resolves_it() {
    for (name, db) in TestDb::all().await {
        let sink = SmtpSink::start(None).await;
        // Koiki refuses the first booking (a postcode it does not take), then books.
        let shop = fake_koiki_and_shop().await;
        Mock::given(method("POST"))
            .and(path("/rekis/api/altaEnvios"))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "respuesta": "101", "mensaje": "OK",
                "envios": [{"numPedido": "123", "codBarras": "", "etiqueta": "",
                            "respuesta": "103", "mensaje": "Codigo postal incorrecto"}]
            })))
            .up_to_n_times(1)
            .with_priority(1)
            .mount(&shop)
            .await;
        // The retry fetches the order again from the shop.
        Mock::given(method("GET"))
            .and(path("/wp-json/wc/v3/orders/33"))
            .respond_with(ResponseTemplate::new(200).set_body_string(fixture("order_minimal.json")))
            .mount(&shop)
            .await;
        let hook = hook_receiver().await;
        let hooked = hook_settings(&hook);
        let settings = shipping_settings_with(&db.url, &shop, &sink, &with(&hooked, &[]));
        let app = TestApp::spawn(&settings).await;
        let token = admin_token(&app).await;
        let resp = app
            .post_signed(
                "/api/deliveries/",
                &fixture("order_minimal.json"),
                Some("rf-1"),
            )
            .await;
        assert_eq!(resp.status(), 201, "{name}");

        // Told once by mail (the original's error mail, word for word) and once by the hook.
        let mails = sink.wait_for(1, Duration::from_secs(20)).await;
        assert_eq!(mails.len(), 1, "{name}");
        assert!(
            mails[0]
                .text()
                .replace("=\r\n", "")
                .contains("Codigo postal incorrecto"),
            "{name}"
        );
        let post = the_post_of(&hook, "booking_refused", name).await;
        assert_eq!(post["type"], "alert.opened", "{name}");
        assert!(
            post["text"].as_str() == Some("[lazona] Error enviament Koiki per a la comanda: 33"),
            "{name}: {post}"
        );
        let (_, list) = get(&app, &token, "/api/v1/alerts?kind=booking_refused").await;
        assert_eq!(list["open_total"], 1, "{name}: {list}");
        let shipment = app.count("SELECT MAX(id) FROM shipments").await;

        // The operator retries; Koiki books it; the alert closes itself.
        let resp = app
            .client
            .post(app.url(&format!("/api/v1/shipments/{shipment}/retry")))
            .bearer_auth(&token)
            .send()
            .await
            .expect("sent");
        assert_eq!(resp.status(), 202, "{name}");
        assert_eq!(
            app.wait_count(
                "SELECT COUNT(*) FROM alerts WHERE kind = 'booking_refused' \
                 AND state = 'resolved' AND resolved_by = 'auto'",
                1
            )
            .await,
            1,
            "{name}: resolved by the booking"
        );
        assert_eq!(
            app.count("SELECT COUNT(*) FROM shipments WHERE status = 'LABEL_SENT'")
                .await,
            1,
            "{name}: booked"
        );
        let (_, list) = get(&app, &token, "/api/v1/alerts").await;
        assert_eq!(list["open_total"], 0, "{name}: {list}");
        app.stop().await;
    }
}
