//! `lazona-http` pointed at the sandbox only through the sandbox's own settings: a signed order
//! with two Koiki vendors becomes one Koiki call and one label mail per vendor, each written to
//! the sandbox's mail folder.

use crate::helpers::{TestApp, TestDb, settings};
use adapters::sandbox::{self, Sandbox, SandboxOptions, vendor_email};
use domain::service::signature::WebhookSecret;
use std::collections::BTreeSet;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_vendor_order_becomes_one_label_mail_per_vendor_in_the_sandbox() {
    let mails = tempfile::tempdir().expect("temp dir");
    let fakes = Sandbox::start(SandboxOptions {
        mail_dir: Some(mails.path().to_owned()),
        ..SandboxOptions::default()
    })
    .await
    .expect("sandbox starts");
    let db = TestDb::sqlite();
    let config: Vec<(&str, String)> = fakes.config();
    let mut extra: Vec<(&str, &str)> = config.iter().map(|(k, v)| (*k, v.as_str())).collect();
    extra.push(("worker.embedded", "true"));
    let app = TestApp::spawn(&settings(&db.url, &extra)).await;

    let order = sandbox::sample_order(33);
    let signature = WebhookSecret::new(sandbox::WEBHOOK_SECRET).sign(order.as_bytes());
    let resp = app
        .client
        .post(app.url("/api/deliveries/"))
        .header("content-type", "application/json")
        .header("x-wc-webhook-signature", signature)
        .header("x-wc-webhook-topic", "order.created")
        .header("x-wc-webhook-resource", "order")
        .header("x-wc-webhook-event", "created")
        .header("x-wc-webhook-delivery-id", "sandbox-e2e-1")
        .body(order)
        .send()
        .await
        .expect("posted");
    assert_eq!(resp.status(), 201);

    // One label mail per vendor, and the admins told once that the shop's order.updated webhook
    // is disabled (the sandbox's shop has it so, to show the watch on the webhooks).
    let received = fakes.smtp().wait_for(3, Duration::from_secs(20)).await;
    assert_eq!(
        received.len(),
        3,
        "two label mails and one about the webhook"
    );
    let alerts: Vec<_> = received
        .iter()
        .filter(|m| m.to == [sandbox::ADMIN_EMAIL])
        .collect();
    assert_eq!(alerts.len(), 1, "the disabled webhook is reported once");
    assert_eq!(
        alerts[0].header("subject").as_deref(),
        Some("Webhook de WooCommerce «order.updated»: disabled")
    );
    let mut mailed = 0;
    for _ in 0..100 {
        mailed = app
            .count("SELECT COUNT(*) FROM shipments WHERE status = 'LABEL_SENT' AND mailed_at IS NOT NULL")
            .await;
        if mailed == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(mailed, 2, "both shipments recorded as mailed");

    // Each vendor's own mail, as a file in the folder, with its own label.
    let mut files: Vec<_> = std::fs::read_dir(mails.path())
        .expect("mail folder")
        .map(|e| e.expect("entry").path())
        .filter(|p| std::fs::read_to_string(p).is_ok_and(|t| !t.contains(sandbox::ADMIN_EMAIL)))
        .collect();
    files.sort();
    assert_eq!(files.len(), 2, "{files:?}");
    let mut recipients = BTreeSet::new();
    let mut labels = BTreeSet::new();
    for file in &files {
        let text = std::fs::read_to_string(file)
            .expect("mail file")
            .replace("=\r\n", "");
        let to = text
            .lines()
            .find_map(|l| l.strip_prefix("To: "))
            .expect("a To header")
            .trim()
            .to_owned();
        assert!(text.contains("application/pdf"), "the label is attached");
        assert!(text.contains("Enviament Koiki per a la comanda: 33"));
        let label = text
            .split("filename=\"")
            .nth(1)
            .and_then(|t| t.split('"').next())
            .expect("a named label")
            .to_owned();
        recipients.insert(to);
        labels.insert(label);
    }
    assert_eq!(
        recipients,
        BTreeSet::from([vendor_email(6), vendor_email(7)])
    );
    assert_eq!(
        labels.len(),
        2,
        "each vendor gets its own label: {labels:?}"
    );

    let calls = fakes.calls();
    assert_eq!(
        calls.koiki_bookings, 1,
        "Koiki is called once for the order"
    );
    assert_eq!(calls.koiki_envios, 2);
    assert_eq!(calls.refused, 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_of_the_sandbox_crm_becomes_a_partner_and_a_stranger_stays_a_customer() {
    let fakes = Sandbox::start(SandboxOptions::default())
        .await
        .expect("sandbox starts");
    let db = TestDb::sqlite();
    let config: Vec<(&str, String)> = fakes.config();
    let mut extra: Vec<(&str, &str)> = config.iter().map(|(k, v)| (*k, v.as_str())).collect();
    extra.push(("worker.embedded", "true"));
    let app = TestApp::spawn(&settings(&db.url, &extra)).await;
    let stranger = fakes.add_user("stranger@example.coop", &["customer"]);

    for (id, email) in [
        (501, "member1@example.coop"),
        (502, "stranger@example.coop"),
    ] {
        let body = serde_json::json!({"id": id, "email": email, "role": "customer"}).to_string();
        let signature = WebhookSecret::new(sandbox::WEBHOOK_SECRET).sign(body.as_bytes());
        let resp = app
            .client
            .post(app.url("/api/customers/"))
            .header("content-type", "application/json")
            .header("x-wc-webhook-signature", signature)
            .header("x-wc-webhook-topic", "customer.created")
            .header("x-wc-webhook-delivery-id", format!("sandbox-customer-{id}"))
            .body(body)
            .send()
            .await
            .expect("posted");
        assert_eq!(resp.status(), 200);
    }
    let mut member = None;
    for _ in 0..200 {
        member = fakes.user_by_email("member1@example.coop");
        let processed = app
            .count("SELECT COUNT(*) FROM webhooks WHERE status = 'processed'")
            .await;
        if processed == 2
            && member
                .as_ref()
                .is_some_and(|m| m.roles.contains(&"partner".to_owned()))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let member = member.expect("the member's user");
    assert_eq!(
        member.roles,
        vec![sandbox::PARTNER_ROLE.to_owned()],
        "customer became partner"
    );
    assert_eq!(fakes.user(stranger).roles, vec!["customer".to_owned()]);
    assert!(fakes.calls().crm_calls >= 3, "login, search, get_entry");
}

/// The sandbox's fake Mandrill reports the label mails to the connector, signed: vendor 6's
/// delivered, vendor 7's bounced, which raises an alert the admins are mailed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fake_mandrill_reports_the_label_mails_and_a_bounce_reaches_the_admins() {
    let fakes = Sandbox::start(SandboxOptions {
        mail_events: true,
        ..SandboxOptions::default()
    })
    .await
    .expect("sandbox starts");
    let db = TestDb::sqlite();
    let config: Vec<(&str, String)> = fakes.config();
    let mut extra: Vec<(&str, &str)> = config.iter().map(|(k, v)| (*k, v.as_str())).collect();
    extra.push(("worker.embedded", "true"));
    extra.push(("reconcile.enabled", "false"));
    let app = TestApp::spawn(&settings(&db.url, &extra)).await;
    fakes.set_connector_url(&app.url(""));

    let order = sandbox::sample_order(44);
    let signature = WebhookSecret::new(sandbox::WEBHOOK_SECRET).sign(order.as_bytes());
    let resp = app
        .client
        .post(app.url("/api/deliveries/"))
        .header("content-type", "application/json")
        .header("x-wc-webhook-signature", signature)
        .header("x-wc-webhook-topic", "order.created")
        .header("x-wc-webhook-delivery-id", "sandbox-mandrill-1")
        .body(order)
        .send()
        .await
        .expect("posted");
    assert_eq!(resp.status(), 201);

    let state = |vendor: i64, state: &'static str| {
        format!(
            "SELECT COUNT(*) FROM shipments WHERE vendor_id = {vendor} AND mail_state = '{state}'"
        )
    };
    assert_eq!(app.wait_count(&state(6, "delivered"), 1).await, 1);
    assert_eq!(app.wait_count(&state(7, "bounced"), 1).await, 1);
    assert_eq!(
        app.wait_count(
            "SELECT COUNT(*) FROM alerts WHERE kind = 'label_mail_bounced' AND state = 'open'",
            1
        )
        .await,
        1
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let alert = loop {
        let told = fakes
            .smtp()
            .messages()
            .into_iter()
            .find(|m| m.to == [sandbox::ADMIN_EMAIL]);
        if let Some(m) = told {
            break m;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the admins are told"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let subject = alert.header("subject").unwrap_or_default();
    assert!(subject.contains("venedora 7"), "{subject}");
    assert!(subject.contains(&vendor_email(7)), "{subject}");
    let calls = fakes.calls();
    assert_eq!((calls.mandrill_events, calls.mandrill_refused), (2, 0));
    app.stop().await;
}
