//! Error reports through the real `sentry` client and transport that `adapters::telemetry`
//! builds, received by a local fake Sentry (wiremock taking `POST /api/42/envelope/`): an ERROR
//! event arrives with its message and without the secret and the body logged beside it; a WARN
//! alone sends nothing, and goes along with the next error as a breadcrumb, filtered the same.

use adapters::config::SentryConfig;
use adapters::telemetry;
use std::sync::Arc;
use std::time::Duration;
use tracing_subscriber::EnvFilter;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The bodies of the envelopes `sentry` has received, and their `X-Sentry-Auth` headers.
async fn envelopes(sentry: &MockServer) -> Vec<(String, String)> {
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
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_reaches_sentry_without_its_secret_or_body_and_a_warning_alone_sends_nothing() {
    let sentry = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/42/envelope/"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&sentry)
        .await;
    let config = SentryConfig {
        dsn: Some(format!("http://publickey@{}/42", sentry.address()).into()),
        environment: "test".into(),
        sample_rate: 1.0,
    };
    let client = telemetry::sentry_client(&config)
        .expect("a valid DSN")
        .expect("a client");
    let hub = Arc::new(sentry::Hub::new(
        Some(client.clone()),
        Arc::new(sentry::Scope::default()),
    ));
    let logs = tracing::Dispatch::new(telemetry::subscriber_with_sentry(
        "text",
        EnvFilter::new("info"),
        std::io::sink,
        false,
    ));
    let log = |f: &dyn Fn()| {
        sentry::Hub::run(hub.clone(), || tracing::dispatcher::with_default(&logs, f));
    };

    log(&|| {
        tracing::warn!(
            password = "hunter2",
            "Koiki slow to answer. body={{\"dni\": \"12345678Z\"}}"
        );
    });
    assert!(client.flush(Some(Duration::from_secs(10))), "flushed");
    let sent = envelopes(&sentry).await;
    assert!(sent.is_empty(), "a WARN is no event: {sent:?}");

    log(&|| {
        tracing::error!(
            secret = "s3cr3t",
            body = "{\"billing\": {\"email\": \"lennon@example.com\"}}",
            order_id = 7,
            "booking refused for order 7"
        );
    });
    assert!(client.flush(Some(Duration::from_secs(10))), "flushed");
    let sent = envelopes(&sentry).await;
    assert_eq!(sent.len(), 1, "one envelope: {sent:?}");
    let (auth, envelope) = &sent[0];
    assert!(auth.contains("sentry_key=publickey"), "{auth}");
    assert!(envelope.contains(r#""type":"event""#), "{envelope}");
    assert!(
        envelope.contains("booking refused for order 7"),
        "{envelope}"
    );
    assert!(envelope.contains(r#""order_id":7"#), "{envelope}");
    assert!(envelope.contains(r#""environment":"test""#), "{envelope}");
    assert!(
        envelope.contains("Koiki slow to answer"),
        "the breadcrumb: {envelope}"
    );
    for private in [
        "s3cr3t",
        "billing",
        "lennon@example.com",
        "hunter2",
        "12345678Z",
    ] {
        assert!(!envelope.contains(private), "{private} sent: {envelope}");
    }
}

#[test]
fn no_dsn_no_client_and_a_bad_dsn_is_named_without_its_value() {
    let mut config = SentryConfig {
        dsn: None,
        environment: "production".into(),
        sample_rate: 1.0,
    };
    assert!(telemetry::sentry_client(&config).expect("no DSN").is_none());
    config.dsn = Some("not-a-dsn-hunter2".to_owned().into());
    let err = telemetry::sentry_client(&config).expect_err("refused");
    assert!(err.contains("SENTRY_DSN"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}
