//! The dashboard in a real browser: headless Chromium (Debian's `chromium`) driven by
//! playwright-core (`tests/browser/dashboard.mjs`) against `lazona-http` with its worker and the
//! sandbox's fake Koiki and shop: sign in with a token, see a webhook arrive in the live feed,
//! press retry on a refused shipment and see it booked.
//!
//! Needs `node`, `/usr/bin/chromium` (or `CHROMIUM`) and `tests/browser/node_modules`
//! (`npm ci --prefix tests/browser`); `cargo xtask ci` provides them in CI, where their absence
//! fails the test. Elsewhere it is skipped with a note.

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_signs_in_sees_a_webhook_arrive_live_and_retries_a_shipment() {
    let (root, chromium) = match browser() {
        Ok(found) => found,
        Err(why) if std::env::var_os("CI").is_some() => {
            panic!("the browser test is required in CI: {why}")
        }
        Err(why) => {
            eprintln!("note: browser test skipped: {why}");
            return;
        }
    };
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
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(root.join("tests/browser/dashboard.mjs"))
            .env("BASE_URL", base)
            .env("TOKEN", token)
            .env("SECRET", sandbox::WEBHOOK_SECRET)
            .env("ORDER_FILE", &order_file)
            .env("SHIPMENT_ID", refused.id.to_string())
            .env("CHROMIUM", chromium)
            .env("SCREENSHOT", screenshot)
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
    assert!(out.status.success(), "the browser test failed:\n{log}");
    assert!(log.contains("dashboard: ok"), "{log}");
    let retried = store.get(refused.id).await.expect("get").expect("row");
    assert_eq!(
        retried.status,
        ShipmentStatus::LabelSent,
        "the retry booked it"
    );
}
