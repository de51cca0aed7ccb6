//! The live events of `/api/v1/events` (Server-Sent Events over HTTP) and the Prometheus
//! families of `/metrics`, through the real server.

use crate::helpers::{TestApp, TestDb, fixture, settings};
use adapters::db::{SqlEventLog, SqlTokenStore};
use adapters::sandbox::{self, Sandbox, SandboxOptions};
use domain::model::{EventKind, NewEvent, Principal};
use domain::ports::{EventLog, TokenStore};
use domain::service::signature::WebhookSecret;
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;

/// One SSE message.
#[derive(Debug)]
struct Message {
    id: i64,
    kind: String,
    data: Value,
}

/// An open event stream.
struct Stream {
    resp: reqwest::Response,
    buffer: String,
}

impl Stream {
    async fn open(app: &TestApp, token: &str, last_event_id: Option<i64>, query: &str) -> Self {
        let mut req = app
            .client
            .get(app.url(&format!("/api/v1/events{query}")))
            .bearer_auth(token);
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id.to_string());
        }
        let resp = req.send().await.expect("stream opens");
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers()["content-type"].to_str().expect("ascii"),
            "text/event-stream"
        );
        Stream {
            resp,
            buffer: String::new(),
        }
    }

    /// The next message, or `None` when none comes within `within`.
    async fn next(&mut self, within: Duration) -> Option<Message> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut id = None;
                let mut kind = None;
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().parse().ok();
                    } else if let Some(v) = line.strip_prefix("event:") {
                        kind = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim());
                    }
                }
                if let (Some(id), Some(kind)) = (id, kind) {
                    let data = serde_json::from_str(&data).expect("JSON data");
                    return Some(Message { id, kind, data });
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.resp.chunk()).await;
            match chunk {
                Ok(Ok(Some(bytes))) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
                Ok(Ok(None)) => panic!("the stream ended"),
                Ok(Err(e)) => panic!("the stream failed: {e}"),
                Err(_) => return None,
            }
        }
    }

    /// What the server sends until it ends the stream; `None` when it is still open after
    /// `within`.
    async fn rest(&mut self, within: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.resp.chunk()).await {
                Ok(Ok(Some(bytes))) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
                Ok(Ok(None)) => return Some(std::mem::take(&mut self.buffer)),
                Ok(Err(e)) => panic!("the stream failed: {e}"),
                Err(_) => return None,
            }
        }
    }

    /// Messages until `done` says so (or `within` passes).
    async fn until(
        &mut self,
        within: Duration,
        mut done: impl FnMut(&[Message]) -> bool,
    ) -> Vec<Message> {
        let deadline = tokio::time::Instant::now() + within;
        let mut seen = Vec::new();
        while !done(&seen) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(m) => seen.push(m),
                None => break,
            }
        }
        seen
    }
}

async fn token(app: &TestApp, principal: Principal) -> String {
    let (_, secret) = SqlTokenStore::new(app.running.db.clone())
        .create("events test", principal)
        .await
        .expect("token");
    secret.expose().to_owned()
}

#[tokio::test]
async fn the_stream_delivers_a_webhook_received_event_after_a_signed_webhook() {
    for (backend, db) in TestDb::all().await {
        let app = TestApp::spawn(&settings(&db.url, &[("worker.embedded", "false")])).await;
        let admin = token(&app, Principal::Admin).await;
        let mut stream = Stream::open(&app, &admin, None, "").await;

        let resp = app
            .client
            .post(app.url("/api/deliveries/"))
            .header("content-type", "application/json")
            .header(
                "x-wc-webhook-signature",
                crate::helpers::sign(fixture("order_minimal.json").as_bytes()),
            )
            .header("x-wc-webhook-topic", "order.created")
            .header("x-wc-webhook-delivery-id", "events-1")
            .body(fixture("order_minimal.json"))
            .send()
            .await
            .expect("posted");
        assert_eq!(resp.status(), 201, "{backend}");
        let webhook_id = resp.json::<Value>().await.expect("json")["webhook_id"]
            .as_i64()
            .expect("id");

        let m = stream
            .next(Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("{backend}: no event within 10 s"));
        assert_eq!(m.kind, "webhook_received", "{backend}");
        assert_eq!(m.data["webhook_id"], webhook_id, "{backend}");
        assert_eq!(m.data["message"], "order.created queued", "{backend}");
        assert_eq!(m.data["order_id"], 33, "{backend}");
        assert_eq!(m.data["id"], m.id, "{backend}");

        // Without a token: refused.
        let resp = app
            .client
            .get(app.url("/api/v1/events"))
            .send()
            .await
            .expect("sent");
        assert_eq!(resp.status(), 401, "{backend}");
        drop(stream);
        app.stop().await;
    }
}

#[tokio::test]
async fn a_stream_resumes_after_its_last_event_id() {
    let db = TestDb::sqlite();
    let app = TestApp::spawn(&settings(&db.url, &[("worker.embedded", "false")])).await;
    let admin = token(&app, Principal::Admin).await;
    let log = SqlEventLog::new(app.running.db.clone());
    log.append(&[
        NewEvent::now(EventKind::JobStarted, "one").job(1),
        NewEvent::now(EventKind::JobSucceeded, "two").job(1),
        NewEvent::now(EventKind::JobDead, "three").job(2),
    ])
    .await
    .expect("append");
    let ids: Vec<i64> = log
        .read(domain::model::EventId(0), None, 10)
        .await
        .expect("read")
        .iter()
        .map(|e| e.id.0)
        .collect();

    // As a browser reconnecting: Last-Event-ID is where it was.
    let mut stream = Stream::open(&app, &admin, Some(ids[0]), "").await;
    let got = stream.until(Duration::from_secs(5), |s| s.len() >= 2).await;
    assert_eq!(
        got.iter()
            .map(|m| (m.id, m.data["message"].as_str().unwrap_or("")))
            .collect::<Vec<_>>(),
        [(ids[1], "two"), (ids[2], "three")]
    );
    assert!(
        stream.next(Duration::from_millis(700)).await.is_none(),
        "nothing more"
    );

    // `?after=` does the same; Last-Event-ID wins over it.
    let mut stream = Stream::open(&app, &admin, None, &format!("?after={}", ids[1])).await;
    let m = stream.next(Duration::from_secs(5)).await.expect("an event");
    assert_eq!((m.id, m.kind.as_str()), (ids[2], "job_dead"));
    let mut stream = Stream::open(&app, &admin, Some(ids[1]), "?after=0").await;
    let m = stream.next(Duration::from_secs(5)).await.expect("an event");
    assert_eq!(m.id, ids[2]);
    app.stop().await;
}

#[tokio::test]
async fn a_stream_ends_once_its_token_is_revoked_and_sends_nothing_after() {
    let db = TestDb::sqlite();
    let app = TestApp::spawn(&settings(&db.url, &[("worker.embedded", "false")])).await;
    let tokens = SqlTokenStore::new(app.running.db.clone());
    let log = SqlEventLog::new(app.running.db.clone());

    // Events flowing: the check before sending them ends the stream, without the new one.
    let (busy, secret) = tokens
        .create("revoked while busy", Principal::Admin)
        .await
        .expect("token");
    let mut stream = Stream::open(&app, secret.expose(), None, "").await;
    log.append(&[NewEvent::now(EventKind::JobStarted, "before").job(1)])
        .await
        .expect("append");
    let m = stream.next(Duration::from_secs(5)).await.expect("an event");
    assert_eq!(m.data["message"], "before");
    tokens.revoke(busy.id).await.expect("revoked");
    log.append(&[NewEvent::now(EventKind::JobStarted, "after").job(2)])
        .await
        .expect("append");
    let rest = stream
        .rest(Duration::from_secs(5))
        .await
        .expect("the stream is still open 5 s after its token was revoked");
    assert!(!rest.contains("after"), "sent after the revocation: {rest}");

    // Nothing happening: the periodic check ends it.
    let (idle, secret) = tokens
        .create("revoked while idle", Principal::Vendor { vendor_id: 6 })
        .await
        .expect("token");
    let mut stream = Stream::open(&app, secret.expose(), None, "").await;
    tokens.revoke(idle.id).await.expect("revoked");
    let started = tokio::time::Instant::now();
    let rest = stream
        .rest(Duration::from_secs(5))
        .await
        .expect("an idle stream is still open 5 s after its token was revoked");
    assert!(!rest.contains("data:"), "{rest}");
    assert!(started.elapsed() <= app_http::api::events::RECHECK + Duration::from_secs(2));

    // And it cannot be opened again.
    let resp = app
        .client
        .get(app.url("/api/v1/events"))
        .bearer_auth(secret.expose())
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), 401);
    app.stop().await;
}

/// Parses the Prometheus text format: `name{labels}` to value.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            Some((key.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// The samples of `family` whose labels include every one of `labels`.
fn matching(all: &HashMap<String, f64>, family: &str, labels: &[&str]) -> Vec<f64> {
    all.iter()
        .filter(|(k, _)| {
            (k.as_str() == family || k.starts_with(&format!("{family}{{")))
                && labels.iter().all(|l| k.contains(l))
        })
        .map(|(_, v)| *v)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vendors_stream_gets_only_its_shipments_and_metrics_show_every_family() {
    let fakes = Sandbox::start(SandboxOptions::default())
        .await
        .expect("sandbox starts");
    let db = TestDb::sqlite();
    let config: Vec<(&str, String)> = fakes.config();
    let mut extra: Vec<(&str, &str)> = config.iter().map(|(k, v)| (*k, v.as_str())).collect();
    extra.push(("worker.embedded", "true"));
    let app = TestApp::spawn(&settings(&db.url, &extra)).await;
    let six = token(&app, Principal::Vendor { vendor_id: 6 }).await;
    let admin = token(&app, Principal::Admin).await;
    let mut vendor_stream = Stream::open(&app, &six, None, "").await;
    let mut admin_stream = Stream::open(&app, &admin, None, "").await;

    let order = sandbox::sample_order(33);
    let signature = WebhookSecret::new(sandbox::WEBHOOK_SECRET).sign(order.as_bytes());
    let resp = app
        .client
        .post(app.url("/api/deliveries/"))
        .header("content-type", "application/json")
        .header("x-wc-webhook-signature", signature)
        .header("x-wc-webhook-topic", "order.created")
        .header("x-wc-webhook-delivery-id", "events-two-vendors")
        .body(order.clone())
        .send()
        .await
        .expect("posted");
    assert_eq!(resp.status(), 201);
    let resp = app
        .client
        .post(app.url("/api/deliveries/"))
        .header("x-wc-webhook-signature", "bad")
        .header("x-wc-webhook-topic", "order.created")
        .body(order)
        .send()
        .await
        .expect("posted");
    assert_eq!(resp.status(), 401);

    // The admin sees both vendors' shipments booked and mailed (in the order's job)...
    let all = admin_stream
        .until(Duration::from_secs(20), |s| {
            s.iter().filter(|m| m.kind == "label_mailed").count() == 2
                && s.iter().any(|m| m.kind == "job_succeeded")
        })
        .await;
    let kinds: Vec<&str> = all.iter().map(|m| m.kind.as_str()).collect();
    for kind in [
        "webhook_received",
        "job_started",
        "job_succeeded",
        "shipment_booked",
        "label_mailed",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    let booked_vendors: Vec<i64> = all
        .iter()
        .filter(|m| m.kind == "shipment_booked")
        .filter_map(|m| m.data["vendor_id"].as_i64())
        .collect();
    assert_eq!(booked_vendors.len(), 2, "{all:?}");
    assert!(booked_vendors.contains(&6) && booked_vendors.contains(&7));

    // ...vendor 6 its own only.
    let mine = vendor_stream
        .until(Duration::from_secs(5), |s| {
            s.iter().any(|m| m.kind == "label_mailed")
        })
        .await;
    let mut more = vendor_stream.until(Duration::from_secs(1), |_| false).await;
    let mine: Vec<Message> = mine.into_iter().chain(more.drain(..)).collect();
    assert!(!mine.is_empty());
    assert!(
        mine.iter().all(|m| m.data["vendor_id"] == 6),
        "another vendor's or a vendor-less event: {mine:?}"
    );
    let kinds: Vec<&str> = mine.iter().map(|m| m.kind.as_str()).collect();
    assert_eq!(kinds, ["shipment_booked", "label_mailed"], "{mine:?}");

    // Every family, with plausible values.
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let all = samples(&text);
    let one = |family: &str, labels: &[&str]| -> f64 {
        let v = matching(&all, family, labels);
        assert!(!v.is_empty(), "no {family}{labels:?} in\n{text}");
        v.iter().sum()
    };
    assert!(
        one(
            "lazona_webhooks_received_total",
            &["topic=\"order.created\"", "result=\"queued\""]
        ) >= 1.0
    );
    assert!(
        one(
            "lazona_webhooks_received_total",
            &["topic=\"unauthenticated\"", "result=\"invalid_signature\""]
        ) >= 1.0
    );
    assert!(one("lazona_signature_failures_total", &[]) >= 1.0);
    assert!(
        one(
            "lazona_queue_jobs",
            &["backend=\"sql\"", "state=\"pending\""]
        ) >= 0.0
    );
    assert!(one("lazona_queue_jobs", &["backend=\"sql\"", "state=\"dead\""]) >= 0.0);
    let age = one("lazona_queue_oldest_job_age_seconds", &["backend=\"sql\""]);
    assert!((0.0..3600.0).contains(&age), "{age}");
    assert!(
        one(
            "lazona_job_duration_seconds_count",
            &["kind=\"process_webhook\"", "result=\"ok\""]
        ) >= 1.0
    );
    assert!(
        one(
            "lazona_job_duration_seconds_sum",
            &["kind=\"process_webhook\""]
        ) > 0.0
    );
    assert!(
        one(
            "lazona_jobs_total",
            &["kind=\"process_webhook\"", "outcome=\"succeeded\""]
        ) >= 1.0
    );
    for (service, call) in [("koiki", "book"), ("shop", "vendor"), ("smtp", "send")] {
        let labels = [format!("service=\"{service}\""), format!("call=\"{call}\"")];
        let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
        assert!(
            one("lazona_external_call_duration_seconds_count", &labels) >= 1.0,
            "{service}"
        );
        let sum = one("lazona_external_call_duration_seconds_sum", &labels);
        assert!(sum > 0.0 && sum < 60.0, "{service}: {sum}");
    }
    assert!(one("lazona_events_written_total", &[]) >= 4.0);
    drop((vendor_stream, admin_stream));
    app.stop().await;
}
