//! The dashboard in a real browser: headless Chromium (Debian's `chromium`) driven by
//! playwright-core (`tests/browser/dashboard.mjs`) against `lazona-http` with its worker and the
//! sandbox's fake Koiki and shop: sign in with a token, see a webhook arrive in the live feed,
//! press retry on a refused shipment, see it booked and open its label. And `/docs`
//! (`tests/browser/docs.mjs`): Swagger UI renders every operation. Both fail on any request to
//! another host and on any Content-Security-Policy violation.
//!
//! Needs `node`, `/usr/bin/chromium` (or `CHROMIUM`) and `tests/browser/node_modules`
//! (`npm ci --prefix tests/browser`), so the tests are `#[ignore]`d: a plain test run lists them
//! as skipped, never passed. `cargo xtask ci` runs them in a step of their own (`--run-ignored
//! only`), installing what is missing in CI and reporting the step SKIPPED elsewhere when a piece
//! is missing; once asked to run, a missing piece fails them.

use crate::helpers::{TestApp, TestDb, settings};
use adapters::db::{Database, SqlShipmentStore, SqlTokenStore};
use adapters::sandbox::{self, Sandbox, SandboxOptions};
use domain::model::{BookingOutcome, Claim, Principal, ShipmentMethod, ShipmentStatus};
use domain::ports::{ShipmentStore, TokenStore};
use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("workspace root")
        .to_owned()
}

/// The browser set-up, or why it is missing.
fn browser() -> Result<(PathBuf, PathBuf), String> {
    let root = workspace_root();
    let chromium = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if !chromium.exists() {
        return Err(format!("no Chromium at {}", chromium.display()));
    }
    if !root
        .join("tests/browser/node_modules/playwright-core")
        .exists()
    {
        return Err("tests/browser/node_modules is missing (npm ci --prefix tests/browser)".into());
    }
    if Command::new("node").arg("--version").output().is_err() {
        return Err("node is not installed".into());
    }
    Ok((root, chromium))
}

/// The browser set-up; a missing piece fails the test (it runs only when asked).
fn browser_or_fail() -> (PathBuf, PathBuf) {
    browser().unwrap_or_else(|why| panic!("the browser test cannot run: {why}"))
}

/// Runs `tests/browser/<script>` with `env`; fails unless it says `<name>: ok`.
async fn run_script(root: PathBuf, script: &str, env: Vec<(&'static str, String)>) {
    let path = root.join("tests/browser").join(script);
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(path)
            .envs(env)
            .output()
            .expect("node runs")
    })
    .await
    .expect("join");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let name = script.trim_end_matches(".mjs");
    assert!(
        out.status.success(),
        "the browser test {script} failed:\n{log}"
    );
    assert!(log.contains(&format!("{name}: ok")), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium, node and tests/browser/node_modules: cargo xtask ci runs it"]
async fn the_api_docs_render_from_this_server_alone() {
    let (root, chromium) = browser_or_fail();
    let db = TestDb::sqlite();
    let app = TestApp::spawn(&settings(&db.url, &[("worker.embedded", "false")])).await;
    let document: serde_json::Value = app
        .client
        .get(app.url("/api/v1/openapi.json"))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("JSON");
    let operations: usize = document["paths"]
        .as_object()
        .expect("paths")
        .values()
        .map(|p| p.as_object().expect("a path item").len())
        .sum();
    let screenshot = root.join("target/docs-failure.png");
    run_script(
        root,
        "docs.mjs",
        vec![
            ("BASE_URL", format!("http://{}", app.addr)),
            ("CHROMIUM", chromium.display().to_string()),
            ("OPERATIONS", operations.to_string()),
            ("SCREENSHOT", screenshot.display().to_string()),
        ],
    )
    .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium, node and tests/browser/node_modules: cargo xtask ci runs it"]
async fn an_admin_signs_in_sees_a_webhook_arrive_live_and_retries_a_shipment() {
    let (root, chromium) = browser_or_fail();
    let fakes = Sandbox::start(SandboxOptions::default())
        .await
        .expect("sandbox starts");
    let db = TestDb::sqlite();
    let config: Vec<(&str, String)> = fakes.config();
    let mut extra: Vec<(&str, &str)> = config.iter().map(|(k, v)| (*k, v.as_str())).collect();
    extra.push(("worker.embedded", "true"));
    let app = TestApp::spawn(&settings(&db.url, &extra)).await;

    // A refused booking to retry, and an admin token.
    let database = Database::connect(&settings(&db.url, &[]).database)
        .await
        .expect("db");
    let store = SqlShipmentStore::new(database.clone());
    let Claim::Claimed(refused) = store
        .claim(4242, 6, ShipmentMethod::Koiki)
        .await
        .expect("claim")
    else {
        panic!("a new shipment")
    };
    store
        .record_booking(
            refused.id,
            0,
            &BookingOutcome {
                status: ShipmentStatus::ErrorFromBody,
                delivery_id: String::new(),
                request: "{}".into(),
                message: "102: Falta el camp telefonoRemi".into(),
                label_pdf: None,
            },
        )
        .await
        .expect("record");
    let (_, secret) = SqlTokenStore::new(database.clone())
        .create("browser test", Principal::Admin)
        .await
        .expect("token");

    let dir = tempfile::tempdir().expect("tempdir");
    let order_file = dir.path().join("order.json");
    std::fs::write(&order_file, sandbox::sample_order(77)).expect("order");
    let screenshot = root.join("target/dashboard-failure.png");
    let base = format!("http://{}", app.addr);
    let token = secret.expose().to_owned();
    run_script(
        root,
        "dashboard.mjs",
        vec![
            ("BASE_URL", base),
            ("TOKEN", token),
            ("SECRET", sandbox::WEBHOOK_SECRET.to_owned()),
            ("ORDER_FILE", order_file.display().to_string()),
            ("SHIPMENT_ID", refused.id.to_string()),
            ("CHROMIUM", chromium.display().to_string()),
            ("SCREENSHOT", screenshot.display().to_string()),
        ],
    )
    .await;
    let retried = store.get(refused.id).await.expect("get").expect("row");
    assert_eq!(
        retried.status,
        ShipmentStatus::LabelSent,
        "the retry booked it"
    );
}
