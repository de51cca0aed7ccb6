//! `lazona reconcile`: a pass by hand against the sandbox's shop. A dry run says what is missing
//! and stores nothing; a real pass stores each missing order as a webhook from the
//! reconciliation, with its job; a second pass finds nothing.

use adapters::sandbox::{Sandbox, SandboxOptions};
use adapters::testing::TestDb;
use std::process::Command;

fn reconcile(db_url: &str, fakes: &Sandbox, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lazona"));
    cmd.args(["reconcile", "--json"])
        .args(args)
        .env("DATABASE_URL", db_url)
        .env_remove("LAZONA_CONFIG");
    for (k, v) in fakes.env() {
        cmd.env(k, v);
    }
    cmd.output().expect("lazona runs")
}

fn report(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_by_hand_takes_in_the_orders_never_received_once() {
    let fakes = Sandbox::start(SandboxOptions::default())
        .await
        .expect("sandbox");
    let now = chrono::Utc::now();
    for (id, status) in [(9001, "processing"), (9002, "pending")] {
        let modified = (now - chrono::Duration::minutes(10))
            .format("%Y-%m-%dT%H:%M:%S")
            .to_string();
        fakes.add_shop_order(Sandbox::sample_order(id, status, &modified));
    }
    let db = TestDb::sqlite();
    assert!(crate::lazona(&db.url, &["migrate"]).status.success());
    let url = db.url.clone();
    let run = move |args: &'static [&'static str]| {
        let fakes = &fakes;
        let out = reconcile(&url, fakes, args);
        report(&out)
    };

    let dry = run(&["--since", "1h", "--dry-run"]);
    assert_eq!(dry["listed"], 2);
    assert_eq!(dry["missing"], serde_json::json!([9001, 9002]));
    assert_eq!(dry["stored"], serde_json::json!([]));
    let topics: Vec<(&str, &str)> = dry["webhooks"]
        .as_array()
        .expect("webhooks")
        .iter()
        .map(|w| {
            (
                w["topic"].as_str().unwrap_or(""),
                w["status"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert!(
        topics.contains(&("order.updated", "disabled")),
        "{topics:?}"
    );
    let listed = crate::lazona(&db.url, &["webhooks", "list", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&listed.stdout).expect("json");
    assert_eq!(rows, serde_json::json!([]), "a dry run stores nothing");

    let pass = run(&["--since", "1h"]);
    assert_eq!(pass["missing"], serde_json::json!([9001, 9002]));
    assert_eq!(pass["stored"].as_array().map(Vec::len), Some(2));
    let listed = crate::lazona(&db.url, &["webhooks", "show", "1", "--json"]);
    let shown: serde_json::Value = serde_json::from_slice(&listed.stdout).expect("json");
    assert_eq!(shown["topic"], "order.updated");
    assert_eq!(shown["status"], "queued", "its job waits for a worker");
    assert!(
        shown["headers"]
            .as_array()
            .expect("headers")
            .iter()
            .any(|h| h[0] == "x-wc-webhook-source" && h[1] == "reconcile"),
        "{shown}"
    );

    let again = run(&["--since", "1h"]);
    assert_eq!(again["listed"], 2);
    assert_eq!(again["seen"], 2);
    assert_eq!(again["missing"], serde_json::json!([]));
}
