//! Traceable requests: every answer carries an `X-Request-Id` (the client's when it is sane, a new
//! one otherwise), and the log lines of the job that processes a webhook carry the id of the
//! request that delivered it, down to the Koiki call.
//!
//! The log lines are those the binary writes (`adapters::telemetry`'s JSON subscriber), captured
//! in a buffer: the subscriber is the process's global one, which nextest gives each test alone.

use crate::helpers::{TestApp, TestDb, fixture, sign};
use crate::shipping::{fake_koiki_and_shop, shipping_settings};
use adapters::smtp_sink::SmtpSink;
use serde_json::Value;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    /// Installs the binary's JSON subscriber, at `info`, writing here.
    fn capture() -> Logs {
        let logs = Logs::default();
        let writer = logs.clone();
        let subscriber = adapters::telemetry::subscriber(
            "json",
            tracing_subscriber::EnvFilter::new("info"),
            move || writer.clone(),
            false,
        );
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other subscriber in this process");
        logs
    }

    fn lines(&self) -> Vec<Value> {
        let bytes = self.0.lock().expect("lock").clone();
        String::from_utf8(bytes)
            .expect("utf-8")
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }
}

/// The span named `name` among the line's spans, outermost first.
fn span<'a>(line: &'a Value, name: &str) -> Option<&'a Value> {
    line["spans"].as_array()?.iter().find(|s| s["name"] == name)
}

fn request_id(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("x-request-id")
        .expect("an X-Request-Id")
        .to_str()
        .expect("visible ASCII")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_is_echoed_and_follows_the_order_to_its_koiki_call() {
    let logs = Logs::capture();
    let sink = SmtpSink::start(None).await;
    let shop = fake_koiki_and_shop().await;
    let db = TestDb::sqlite();
    let app = TestApp::spawn(&shipping_settings(&db.url, &shop, &sink)).await;

    let order = fixture("order_minimal.json");
    let resp = app
        .client
        .post(app.url("/api/deliveries/"))
        .header("content-type", "application/json")
        .header("x-wc-webhook-signature", sign(order.as_bytes()))
        .header("x-wc-webhook-delivery-id", "traced-1")
        .header("x-request-id", "test-req-42")
        .body(order.clone())
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), 201);
    assert_eq!(
        request_id(&resp),
        "test-req-42",
        "the client's id is echoed"
    );
    let body: Value = resp.json().await.expect("JSON");
    let webhook_id = body["webhook_id"].as_i64().expect("a webhook id");

    // Without an id, or with one that is not short visible ASCII, the server makes one.
    let plain = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("sent");
    let made = request_id(&plain);
    assert_eq!(made.len(), 36, "a UUID: {made}");
    let odd = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "two words")
        .send()
        .await
        .expect("sent");
    let remade = request_id(&odd);
    assert_eq!(remade.len(), 36, "a UUID: {remade}");
    assert_ne!(made, remade, "one id per request");

    // The job books the order with Koiki and mails the label.
    sink.wait_for(1, Duration::from_secs(20)).await;
    for _ in 0..100 {
        if app
            .count("SELECT COUNT(*) FROM webhooks WHERE status = 'processed'")
            .await
            == 1
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.stop().await;
    shop.verify().await;

    let lines = logs.lines();
    let answered = lines
        .iter()
        .find(|l| {
            l["message"] == "request answered"
                && span(l, "request").is_some_and(|s| s["request_id"] == "test-req-42")
        })
        .unwrap_or_else(|| panic!("the webhook's request is logged: {lines:#?}"));
    let request = span(answered, "request").expect("its span");
    assert_eq!(request["method"], "POST");
    assert_eq!(request["path"], "/api/deliveries/");
    assert_eq!(request["status"], 201);
    assert_eq!(request["webhook_id"], webhook_id);
    assert!(request["latency_ms"].is_u64(), "{request}");

    // The job's lines, from the moment it read the webhook: the Koiki call among them.
    let job_lines: Vec<&Value> = lines
        .iter()
        .filter(|l| {
            span(l, "job")
                .is_some_and(|s| s["webhook_id"] == webhook_id && s["request_id"] == "test-req-42")
        })
        .collect();
    let koiki = job_lines
        .iter()
        .find(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("Koiki request to"))
        })
        .unwrap_or_else(|| panic!("the Koiki call carries the request id: {lines:#?}"));
    let process = span(koiki, "process_order").expect("inside the use case's span");
    assert_eq!(process["order_id"], 33);
    assert!(
        job_lines.iter().any(|l| l["message"] == "order fulfilled"),
        "{job_lines:#?}"
    );

    // Nothing secret in the request spans: only the id among the headers.
    let all = String::from_utf8(logs.0.lock().expect("lock").clone()).expect("utf-8");
    assert!(
        !all.contains("koiki-token"),
        "the Koiki token is never logged"
    );
    assert!(!all.contains(&sign(order.as_bytes())), "nor the signature");
}
