//! `lazona-http` as a process with `SENTRY_DSN` pointing at a local fake Sentry (wiremock taking
//! envelopes): an error it logs arrives there as an event, without the webhook's body.
//!
//! The error provoked: a signed order posted to a server that has no webhook secret (answered
//! 503, logged at ERROR by `connector::ingest`).

use crate::helpers::{fixture, sign};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Kills the server however the test ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The envelopes holding an event that `sentry` has received so far: each one's `X-Sentry-Auth`
/// header and body.
async fn events(sentry: &MockServer) -> Vec<(String, String)> {
    sentry
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|r| {
            let auth = r
                .headers
                .get("x-sentry-auth")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            (auth, String::from_utf8_lossy(&r.body).into_owned())
        })
        .filter(|(_, body)| body.contains(r#""type":"event""#))
        .collect()
}

/// A fake Sentry taking envelopes for project 42.
async fn fake_sentry() -> MockServer {
    let sentry = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/42/envelope/"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&sentry)
        .await;
    sentry
}

/// `lazona-http` on its embedded default (a SQLite file in a fresh directory), reporting to
/// `sentry`, with `env` on top; answers once it is up, with its base URL and client.
async fn spawn_server(
    sentry: &MockServer,
    dir: &tempfile::TempDir,
    env: &[(&str, &str)],
) -> (Server, String, reqwest::Client) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("free port")
        .local_addr()
        .expect("addr")
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let mut command = Command::new(env!("CARGO_BIN_EXE_lazona-http"));
    command
        .current_dir(dir.path())
        .env("LAZONA_LISTEN", format!("127.0.0.1:{port}"))
        .env(
            "SENTRY_DSN",
            format!("http://publickey@{}/42", sentry.address()),
        )
        .env("RUST_LOG", "info")
        .env_remove("LAZONA_CONFIG")
        .env_remove("LAZONA_SENTRY__DSN")
        .env_remove("WC_WEBHOOK_SECRET")
        .env_remove("LAZONA_WEBHOOK__SECRET")
        .env_remove("DATABASE_URL")
        .env_remove("LAZONA_DATABASE__URL")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in env {
        command.env(k, v);
    }
    let server = Server(command.spawn().expect("lazona-http starts"));
    let client = adapters::http::http_client(Duration::from_secs(10)).expect("http client");
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "lazona-http never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (server, base, client)
}

/// The events `sentry` has received once there is at least one, or none after 30 s.
async fn first_events(sentry: &MockServer) -> Vec<(String, String)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut sent = events(sentry).await;
    while sent.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        sent = events(sentry).await;
    }
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_the_server_logs_is_reported_to_sentry_without_the_webhook_body() {
    let sentry = fake_sentry().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (_server, base, client) = spawn_server(&sentry, &dir, &[]).await;

    let order = fixture("order_minimal.json");
    assert!(order.contains("lennon@example.com") && order.contains("Beatles Street 66"));
    let resp = client
        .post(format!("{base}/api/deliveries/"))
        .header("content-type", "application/json")
        .header("x-wc-webhook-topic", "order.created")
        .header("x-wc-webhook-signature", sign(order.as_bytes()))
        .body(order)
        .send()
        .await
        .expect("request sent");
    assert_eq!(resp.status(), 503, "no webhook secret: refused");

    let sent = first_events(&sentry).await;
    assert_eq!(sent.len(), 1, "one event: {sent:?}");
    let (auth, event) = &sent[0];
    assert!(auth.contains("sentry_key=publickey"), "{auth}");
    assert!(
        event.contains("signed webhook refused: no webhook secret configured"),
        "{event}"
    );
    for private in ["lennon@example.com", "Beatles Street 66"] {
        assert!(!event.contains(private), "{private} sent: {event}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_is_reported_to_sentry_once() {
    let sentry = fake_sentry().await;
    let dir = tempfile::tempdir().expect("tempdir");
    // A shop silent for two seconds (0.0005 hours), checked every second: one alert, seen at
    // every check, opened once.
    let (_server, _, _) = spawn_server(
        &sentry,
        &dir,
        &[
            ("LAZONA_ALERTS__SILENCE_HOURS", "0.0005"),
            ("LAZONA_ALERTS__CHECK_INTERVAL_SECS", "1"),
        ],
    )
    .await;
    let sent = first_events(&sentry).await;
    assert!(!sent.is_empty(), "the alert reached Sentry");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let sent: Vec<String> = events(&sentry)
        .await
        .into_iter()
        .map(|(_, event)| event)
        .filter(|event| event.contains("alert: "))
        .collect();
    assert_eq!(sent.len(), 1, "one event for the open alert: {sent:?}");
    assert!(
        sent[0].contains("La botiga no ha enviat cap comanda"),
        "{}",
        sent[0]
    );
    assert!(sent[0].contains("shop_silent"), "its kind: {}", sent[0]);
}
