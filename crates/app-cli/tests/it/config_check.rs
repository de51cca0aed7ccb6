//! `lazona config check`: every value with its source, secrets never printed, and each
//! connection tested.

use crate::lazona;
use adapters::testing::TestDb;
use std::process::Command;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn check(db_url: &str, env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lazona"));
    cmd.args(["config", "check", "--json", "--timeout", "2"])
        .env("DATABASE_URL", db_url)
        .env_remove("LAZONA_CONFIG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("lazona runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_check_shows_sources_hides_secrets_and_tests_connections() {
    let db = TestDb::sqlite();
    assert!(lazona(&db.url, &["migrate"]).status.success());
    let shop = MockServer::start().await;
    // The shop's webhooks (read with its credentials): the connector's two, active, and one of
    // another plugin, which is not shown.
    Mock::given(method("GET"))
        .and(path("/wp-json/wc/v3/webhooks"))
        .and(query_param("per_page", "100"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!([
            {"id": 3, "name": "Comandes", "status": "active", "topic": "order.created",
             "delivery_url": "https://connector.example/api/deliveries/"},
            {"id": 4, "name": "Clients", "status": "active", "topic": "customer.created",
             "delivery_url": "https://connector.example/api/customers/"},
            {"id": 5, "name": "Altres", "status": "disabled", "topic": "product.created",
             "delivery_url": "https://elsewhere.example/hook"}
        ])))
        .mount(&shop)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&shop)
        .await;
    let shop_uri: &'static str = Box::leak(shop.uri().into_boxed_str());
    let env = [
        ("WC_WEBHOOK_SECRET", "webhook-s3cret"),
        ("WCFMMP_HOST", shop_uri),
        ("WCFMMP_PASSWORD", "shop-s3cret"),
        ("LAZONA_KOIKI__AUTH_TOKEN", "koiki-s3cret"),
    ];
    let out = tokio::task::spawn_blocking({
        let url = db.url.clone();
        move || check(&url, &env)
    })
    .await
    .expect("join");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    for secret in ["webhook-s3cret", "shop-s3cret", "koiki-s3cret"] {
        assert!(!text.contains(secret), "a secret is printed: {text}");
    }
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&text).expect("json");
    let setting = |key: &str| {
        report["settings"]
            .as_array()
            .expect("settings")
            .iter()
            .find(|e| e["key"] == key)
            .cloned()
            .unwrap_or_else(|| panic!("no {key}"))
    };
    assert_eq!(setting("webhook.secret")["value"], "***");
    assert_eq!(setting("webhook.secret")["source"], "env WC_WEBHOOK_SECRET");
    assert_eq!(
        setting("koiki.auth_token")["source"],
        "env LAZONA_KOIKI__AUTH_TOKEN"
    );
    assert_eq!(setting("shop.host")["value"], shop_uri);
    assert_eq!(setting("worker.concurrency")["source"], "default");
    let checks = report["checks"].as_array().expect("checks");
    let names: Vec<&str> = checks.iter().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(
        names,
        ["database", "queue", "shop", "webhook", "webhook"],
        "{checks:?}"
    );
    assert!(checks.iter().all(|c| c["ok"] == true), "{checks:?}");
    assert_eq!(
        checks[3]["target"],
        "order.created -> https://connector.example/api/deliveries/"
    );
    assert_eq!(checks[3]["detail"], "id 3 \"Comandes\": active");

    // An unreachable carrier fails the check (exit 1) and says so.
    let out = tokio::task::spawn_blocking({
        let url = db.url.clone();
        move || check(&url, &[("KOIKI_HOST", "http://127.0.0.1:1/services")])
    })
    .await
    .expect("join");
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let koiki = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == "koiki")
        .cloned()
        .expect("koiki checked");
    assert_eq!(koiki["ok"], false);
    assert!(
        koiki["detail"]
            .as_str()
            .is_some_and(|d| d.contains("unreachable"))
    );
}
