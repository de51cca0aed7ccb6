//! Label mails followed to the inbox, end to end through `lazona-http` on SQLite and Postgres: a
//! label mail through the real SMTP sink carries its shipment (`X-MC-Metadata`) and a Message-ID
//! recorded on the shipment; Mandrill's signed events (`POST /api/mail-events/mandrill`) are
//! stored and mapped onto it; a bounce raises an open alert naming the vendor and the address;
//! the label mailed again (`ResendLabel`) and then delivered resolves it. A wrong signature is
//! 401 with nothing stored, a malformed delivery 400 and kept, `HEAD` 200.

use crate::alerts::{hook_receiver, hook_settings, the_post_of, with};
use crate::helpers::{TestApp, TestDb, fixture};
use crate::shipping::{fake_koiki_and_shop, shipping_settings_with};
use adapters::db::{SqlAlertStore, SqlJobQueue, SqlTokenStore};
use adapters::mandrill;
use adapters::smtp_sink::SmtpSink;
use domain::model::{AlertFilter, AlertKind, AlertState, JobKind, NewJob, Principal};
use domain::ports::{AlertStore, JobQueue, TokenStore};
use serde_json::{Value, json};
use std::time::Duration;

const KEY: &str = "test-mandrill-key";

/// Posts `events` (the `mandrill_events` field as it is) to the endpoint, signed with `key`.
async fn post_events(app: &TestApp, events: &str, key: &str) -> (u16, Value) {
    let url = app.url("/api/mail-events/mandrill");
    let params = vec![(mandrill::EVENTS_FIELD.to_owned(), events.to_owned())];
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter())
        .finish();
    let resp = app
        .client
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header(
            "x-mandrill-signature",
            mandrill::signature(key, &url, &params),
        )
        .body(body)
        .send()
        .await
        .expect("posted");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A Mandrill message event about the label mail of shipment `id` (`message_id`).
fn event(name: &str, id: i64, message_id: &str, email: &str, ts: i64) -> Value {
    let mut msg = json!({
        "_id": format!("m-{message_id}"),
        "ts": ts,
        "email": email,
        "metadata": { "shipment_id": id.to_string(), "message_id": message_id },
        "state": "sent",
    });
    if name.ends_with("bounce") {
        msg["bounce_description"] = json!("bad_mailbox");
        msg["diag"] = json!("smtp;550 5.1.1 no such user");
    }
    json!({ "event": name, "_id": format!("m-{message_id}"), "ts": ts, "msg": msg })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounced_label_mail_raises_an_alert_and_its_resend_delivered_resolves_it() {
    for (name, db) in TestDb::all().await {
        let sink = SmtpSink::start(None).await;
        let shop = fake_koiki_and_shop().await;
        let hook = hook_receiver().await;
        let hooked = hook_settings(&hook);
        let settings = shipping_settings_with(
            &db.url,
            &shop,
            &sink,
            &with(&hooked, &[("mail.events_key", KEY)]),
        );
        let app = TestApp::spawn(&settings).await;
        let resp = app
            .post_signed(
                "/api/deliveries/",
                &fixture("order_minimal.json"),
                Some("m-1"),
            )
            .await;
        assert_eq!(resp.status(), 201, "{name}");

        // The label mail carries its shipment and a Message-ID, recorded on the shipment.
        let mails = sink.wait_for(1, Duration::from_secs(20)).await;
        let label = mails
            .iter()
            .find(|m| m.header("X-MC-Metadata").is_some())
            .expect("the label mail");
        let id = app.count("SELECT MAX(id) FROM shipments").await;
        let metadata: Value =
            serde_json::from_str(&label.header("X-MC-Metadata").expect("metadata")).expect("JSON");
        assert_eq!(metadata["shipment_id"], id, "{name}");
        let message_id = label.header("Message-ID").expect("a Message-ID");
        assert!(
            message_id.starts_with(&format!("<lazona.shipment.{id}.")),
            "{name}: {message_id}"
        );
        assert!(
            message_id.ends_with("@example.coop>"),
            "{name}: {message_id}"
        );
        assert_eq!(metadata["message_id"], message_id.as_str(), "{name}");
        let recorded = format!(
            "SELECT COUNT(*) FROM shipments WHERE id = {id} AND mail_message_id = '{message_id}' \
             AND mail_state = 'sent'"
        );
        assert_eq!(app.wait_count(&recorded, 1).await, 1, "{name}: recorded");
        let vendor = label.to[0].clone();

        // Mandrill's check when the webhook is added.
        let head = app
            .client
            .head(app.url("/api/mail-events/mandrill"))
            .send()
            .await
            .expect("head");
        assert_eq!(head.status(), 200, "{name}");

        let batch = json!([
            event("send", id, &message_id, &vendor, 1_700_000_000),
            event("hard_bounce", id, &message_id, &vendor, 1_700_000_001),
        ])
        .to_string();
        // A wrong key: 401, nothing stored.
        let (status, body) = post_events(&app, &batch, "not-the-key").await;
        assert_eq!(status, 401, "{name}: {body}");
        assert_eq!(body["error"]["code"], "invalid_signature", "{name}");
        assert_eq!(
            app.count("SELECT COUNT(*) FROM mail_events").await,
            0,
            "{name}"
        );

        // Signed but not JSON: 400, kept for inspection.
        let (status, body) = post_events(&app, "[{not json", KEY).await;
        assert_eq!(status, 400, "{name}: {body}");
        assert_eq!(body["error"]["code"], "invalid_payload", "{name}");
        assert!(body["error"]["mail_event_id"].is_i64(), "{name}: {body}");
        assert_eq!(
            app.count(
                "SELECT COUNT(*) FROM mail_events WHERE status = 'malformed' AND raw = '[{not json'"
            )
            .await,
            1,
            "{name}"
        );

        // Delivered, then bounced: the bounce stands and raises one alert.
        let (status, body) = post_events(&app, &batch, KEY).await;
        assert_eq!(status, 200, "{name}: {body}");
        assert_eq!(
            (body["applied"].as_i64(), body["alerts"].as_i64()),
            (Some(2), Some(1)),
            "{name}: {body}"
        );
        assert_eq!(
            app.count(&format!(
                "SELECT COUNT(*) FROM shipments WHERE id = {id} AND mail_state = 'bounced'"
            ))
            .await,
            1,
            "{name}"
        );
        let alerts = SqlAlertStore::new(app.running.db.clone());
        let open = alerts
            .list(&AlertFilter {
                state: Some(AlertState::Open),
                kind: Some(AlertKind::LabelMailBounced),
                ..AlertFilter::default()
            })
            .await
            .expect("alerts");
        assert_eq!(open.len(), 1, "{name}");
        assert_eq!(open[0].subject, format!("shipment:{id}"), "{name}");
        let post = the_post_of(&hook, "label_mail_bounced", name).await;
        assert_eq!(
            post["alert"]["subject"],
            format!("shipment:{id}"),
            "{name}: {post}"
        );
        assert!(
            open[0].summary.contains("venedora 6"),
            "{name}: {}",
            open[0].summary
        );
        assert!(
            open[0].summary.contains(&vendor),
            "{name}: {}",
            open[0].summary
        );
        // A redelivery of the batch changes nothing.
        let (status, body) = post_events(&app, &batch, KEY).await;
        assert_eq!(
            (status, body["duplicates"].as_i64()),
            (200, Some(2)),
            "{name}: {body}"
        );

        // The API shows the mail state and the events.
        let tokens = SqlTokenStore::new(app.running.db.clone());
        let (_, token) = tokens.create("t", Principal::Admin).await.expect("token");
        let shown: Value = app
            .client
            .get(app.url(&format!("/api/v1/shipments/{id}")))
            .bearer_auth(token.expose())
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("JSON");
        assert_eq!(shown["mail_state"], "bounced", "{name}: {shown}");
        assert_eq!(shown["mail_message_id"], message_id.as_str(), "{name}");
        let events = shown["mail_events"].as_array().expect("events");
        assert_eq!(events.len(), 2, "{name}: {shown}");
        assert_eq!(events[0]["event"], "hard_bounce", "{name}: newest first");
        assert_eq!(events[0]["state"], "bounced", "{name}");
        assert!(
            events[0]["detail"]
                .as_str()
                .is_some_and(|d| d.contains("no such user")),
            "{name}"
        );

        // Mailed again to another address: a new Message-ID, the state back to sent.
        SqlJobQueue::new(app.running.db.clone())
            .enqueue(NewJob {
                kind: JobKind::ResendLabel {
                    shipment_id: id,
                    to: Some("fixed@example.coop".into()),
                },
                run_at: None,
            })
            .await
            .expect("enqueued");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let resent = loop {
            let seen = sink.messages().len();
            let mails = sink.wait_for(seen + 1, Duration::from_secs(1)).await;
            if let Some(m) = mails.iter().find(|m| m.to == ["fixed@example.coop"]) {
                break m.clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name}: no resent label among {} mails",
                mails.len()
            );
        };
        let new_id = resent.header("Message-ID").expect("a Message-ID");
        assert_ne!(new_id, message_id, "{name}");
        let sent_again = format!(
            "SELECT COUNT(*) FROM shipments WHERE id = {id} AND mail_message_id = '{new_id}' \
             AND mail_state = 'sent'"
        );
        assert_eq!(app.wait_count(&sent_again, 1).await, 1, "{name}");
        assert_eq!(
            app.wait_count(
                "SELECT COUNT(*) FROM mail_events WHERE provider = 'lazona' AND event = 'resent' \
                 AND email = 'fixed@example.coop'",
                1
            )
            .await,
            1,
            "{name}: the resend recorded"
        );

        // A late report about the first mail is stale; the new one delivered resolves the alert.
        let late = json!([
            event("soft_bounce", id, &message_id, &vendor, 1_700_000_002),
            event("send", id, &new_id, "fixed@example.coop", 1_700_000_003),
        ])
        .to_string();
        let (status, body) = post_events(&app, &late, KEY).await;
        assert_eq!(
            (status, body["stale"].as_i64(), body["applied"].as_i64()),
            (200, Some(1), Some(1)),
            "{name}: {body}"
        );
        assert_eq!(
            app.count(&format!(
                "SELECT COUNT(*) FROM shipments WHERE id = {id} AND mail_state = 'delivered'"
            ))
            .await,
            1,
            "{name}"
        );
        assert!(
            alerts
                .list(&AlertFilter {
                    state: Some(AlertState::Open),
                    kind: Some(AlertKind::LabelMailBounced),
                    ..AlertFilter::default()
                })
                .await
                .expect("alerts")
                .is_empty(),
            "{name}: resolved"
        );
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_key_the_endpoint_answers_503_and_head_200() {
    let db = TestDb::sqlite();
    let app = TestApp::spawn(&crate::helpers::settings(&db.url, &[])).await;
    let head = app
        .client
        .head(app.url("/api/mail-events/mandrill"))
        .send()
        .await
        .expect("head");
    assert_eq!(head.status(), 200);
    let (status, body) = post_events(&app, "[]", KEY).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "not_configured");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("mail.events_key"))
    );
    let unsigned = app
        .client
        .post(app.url("/api/mail-events/mandrill"))
        .body("mandrill_events=%5B%5D")
        .send()
        .await
        .expect("posted");
    assert_eq!(unsigned.status(), 503);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsigned_delivery_is_401_and_an_event_of_no_shipment_is_kept_unmatched() {
    let db = TestDb::sqlite();
    let app = TestApp::spawn(&crate::helpers::settings(
        &db.url,
        &[("mail.events_key", KEY)],
    ))
    .await;
    let unsigned = app
        .client
        .post(app.url("/api/mail-events/mandrill"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("mandrill_events=%5B%5D")
        .send()
        .await
        .expect("posted");
    assert_eq!(unsigned.status(), 401);
    let batch = json!([event(
        "hard_bounce",
        4242,
        "<lazona.shipment.4242.1@x>",
        "v@x.org",
        1
    )])
    .to_string();
    let (status, body) = post_events(&app, &batch, KEY).await;
    assert_eq!(
        (status, body["unmatched"].as_i64()),
        (200, Some(1)),
        "{body}"
    );
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM mail_events WHERE status = 'unmatched' AND shipment_id IS NULL"
        )
        .await,
        1
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM alerts").await, 0);
    // Mandrill's test delivery when the webhook is added: an empty batch.
    let (status, body) = post_events(&app, "[]", KEY).await;
    assert_eq!((status, body["events"].as_i64()), (200, Some(0)), "{body}");
    app.stop().await;
}
