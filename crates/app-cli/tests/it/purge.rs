//! `lazona purge --customer EMAIL`: `--dry-run` changes nothing, without `--yes` and without a
//! terminal nothing is erased (exit 4), with `--yes` the customer's webhooks are cleared and
//! `webhooks show` says so, the other customer's stay; `config check` prints the policy.

use crate::support::{database, run, stdout_json};
use adapters::db::SqlInbox;
use adapters::testing::TestDb;
use bytes::Bytes;
use domain::model::{NewWebhook, WebhookStatus};
use domain::ports::WebhookInbox;

fn order(delivery: &str, id: i64, email: &str) -> NewWebhook {
    let mut w = crate::webhooks_list::webhook(delivery, id);
    w.status = WebhookStatus::Processed;
    w.body = Bytes::from(format!(
        r#"{{"id":{id},"billing":{{"email":"{email}","phone":"600"}}}}"#
    ));
    w
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_asks_erases_one_customer_and_says_what_it_did() {
    let db = TestDb::sqlite();
    let database = database(&db.url).await;
    let inbox = SqlInbox::start(database, &adapters::testing::settings_for(&db.url).inbox);
    let ana = inbox
        .record(order("d-1", 1, "ana@example.coop"))
        .await
        .expect("record")
        .id;
    let bob = inbox
        .record(order("d-2", 2, "bob@example.coop"))
        .await
        .expect("record")
        .id;

    let dry = run(
        &db.url,
        &[
            "purge",
            "--customer",
            "Ana@Example.coop",
            "--dry-run",
            "--json",
        ],
    )
    .await;
    assert!(
        dry.status.success(),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    let report = stdout_json(&dry);
    assert_eq!(report["webhook_ids"], serde_json::json!([ana.0]));
    assert_eq!(report["dry_run"], true);

    // No terminal to ask on and no --yes: nothing erased.
    let refused = run(&db.url, &["purge", "--customer", "ana@example.coop"]).await;
    assert_eq!(refused.status.code(), Some(4));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--yes"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let show = run(&db.url, &["webhooks", "show", &ana.0.to_string(), "--json"]).await;
    assert!(stdout_json(&show)["pruned"].is_null());

    let done = run(
        &db.url,
        &[
            "purge",
            "--customer",
            "ana@example.coop",
            "--yes",
            "--actor",
            "maria",
        ],
    )
    .await;
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let text = String::from_utf8_lossy(&done.stdout).into_owned();
    assert!(text.contains("cleared 1 webhook bodies"), "{text}");
    let show = run(&db.url, &["webhooks", "show", &ana.0.to_string()]).await;
    let text = String::from_utf8_lossy(&show.stdout).into_owned();
    assert!(
        text.contains("its body was erased on") && !text.contains("ana@example.coop"),
        "{text}"
    );
    let other = run(&db.url, &["webhooks", "show", &bob.0.to_string()]).await;
    assert!(String::from_utf8_lossy(&other.stdout).contains("bob@example.coop"));

    let bad = run(&db.url, &["purge", "--customer", "nobody", "--dry-run"]).await;
    assert!(!bad.status.success());

    let check = run(&db.url, &["config", "check", "--no-connect"]).await;
    let text = String::from_utf8_lossy(&check.stdout).into_owned();
    assert!(
        text.contains("personal data:")
            && text.contains("webhook bodies and headers (the row, status, topic, order id and history stay): cleared after 90 days"),
        "{text}"
    );
}
