//! Who did what, through the real binary on SQLite and Postgres: every action of the command
//! line records its actor (the OS user at the host, or `--actor` / `LAZONA_ACTOR`), shown by
//! `shipments show`, `webhooks show` and `lazona audit` with its filters.

use crate::dead_and_replay::order_webhook;
use crate::shipments::shipment;
use crate::support::{database, run, run_with, stdout_json};
use adapters::db::{SqlAlertStore, SqlInbox, SqlShipmentStore};
use adapters::queue::Queue;
use adapters::testing::TestDb;
use domain::model::{AlertKind, JobKind, NewAlert, NewJob, ShipmentStatus, WebhookStatus};
use domain::ports::{AlertStore as _, WebhookInbox as _};
use serde_json::Value;
use std::time::Duration;

/// The name a user `maria` is recorded by without `--actor`: `maria@<this host>`.
fn is_maria(name: &str) -> bool {
    name == "maria" || name.starts_with("maria@")
}

fn names(entries: &Value) -> Vec<(String, String)> {
    entries
        .as_array()
        .expect("a list")
        .iter()
        .map(|e| {
            (
                e["action"].as_str().expect("action").to_owned(),
                e["actor"]["name"].as_str().expect("name").to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cli_action_records_its_actor_and_lazona_audit_lists_them() {
    let as_maria: &[(&str, &str)] = &[("USER", "maria")];
    for (name, db) in TestDb::all().await {
        let database = database(&db.url).await;
        let settings = adapters::testing::settings_for(&db.url);
        let store = SqlShipmentStore::new(database.clone());
        let id = shipment(
            &store,
            33,
            6,
            ShipmentStatus::LabelSent,
            "BAR1",
            Some(b"%PDF-1.4"),
        )
        .await
        .to_string();

        // The OS user at the host by default; --actor and LAZONA_ACTOR name someone else.
        let retry = ["shipments", "retry", &id, "--force", "--no-wait", "--json"];
        stdout_json(&run_with(&db.url, &retry, as_maria).await);
        let track = ["--actor", "ana", "shipments", "track", &id, "--no-wait"];
        assert!(run_with(&db.url, &track, as_maria).await.status.success());
        let resend = [
            "labels",
            "resend",
            &id,
            "--to",
            "v@example.coop",
            "--no-wait",
        ];
        assert!(
            run_with(&db.url, &resend, &[("LAZONA_ACTOR", "bo")])
                .await
                .status
                .success()
        );
        let shown = stdout_json(&run(&db.url, &["shipments", "show", &id, "--json"]).await);
        // The OS user at the host: `maria@<this host>`.
        let maria = shown["actions"][2]["actor"]["name"]
            .as_str()
            .expect("a name")
            .to_owned();
        assert!(is_maria(&maria), "{name}: {maria}");
        assert_eq!(
            names(&shown["actions"]),
            [
                ("resend".to_owned(), "bo".to_owned()),
                ("track".to_owned(), "ana".to_owned()),
                ("retry".to_owned(), maria.clone()),
            ],
            "{name}: newest first"
        );
        assert_eq!(shown["actions"][2]["forced"], true, "{name}");
        assert_eq!(shown["actions"][2]["actor"]["via"], "cli", "{name}");
        let detail = shown["actions"][0]["detail"].as_str().expect("detail");
        assert!(
            detail.contains("resend_label") && !detail.contains("v@example.coop"),
            "{name}: the job, never the address: {detail}"
        );
        let text = run(&db.url, &["shipments", "show", &id]).await;
        let text = String::from_utf8_lossy(&text.stdout);
        assert!(
            text.contains("operator actions") && text.contains("cli ana"),
            "{name}: {text}"
        );

        // A replay: the webhook's history names the actor, and so does its detail.
        let inbox = SqlInbox::start(database.clone(), &settings.inbox);
        let w = inbox.record(order_webhook()).await.expect("record").id;
        assert!(
            inbox
                .transition(w, WebhookStatus::Queued, WebhookStatus::Processed, None)
                .await
                .expect("processed")
        );
        let replay = ["--actor", "ana", "replay", &w.0.to_string(), "--yes"];
        assert!(run(&db.url, &replay).await.status.success(), "{name}");
        let shown =
            stdout_json(&run(&db.url, &["webhooks", "show", &w.0.to_string(), "--json"]).await);
        assert_eq!(
            names(&shown["actions"]),
            [("replay".to_owned(), "ana".to_owned())],
            "{name}"
        );
        assert!(
            shown["history"]
                .as_array()
                .expect("history")
                .iter()
                .any(|h| h["detail"] == "replayed by cli ana"),
            "{name}: {shown}"
        );

        // A dead job requeued, an alert resolved, a token created and revoked.
        let queue = Queue::open(&settings, &database, None)
            .await
            .expect("queue");
        queue
            .port
            .enqueue(NewJob {
                kind: JobKind::TrackShipments,
                run_at: None,
            })
            .await
            .expect("enqueue");
        // The jobs the actions above enqueued are there too: take them all, kill the last.
        let jobs = queue
            .port
            .reserve(10, Duration::from_secs(30), Duration::ZERO)
            .await
            .expect("reserve");
        let dead = jobs.last().expect("a job");
        queue.port.dead_letter(dead, "gone").await.expect("dead");
        let requeue = ["dead", "requeue", &dead.id.0.to_string()];
        assert!(run_with(&db.url, &requeue, as_maria).await.status.success());
        let alerts = SqlAlertStore::new(database.clone());
        alerts
            .raise(&NewAlert {
                kind: AlertKind::JobDead,
                subject: "job:1".into(),
                summary: "dead".into(),
                detail: "what to do".into(),
            })
            .await
            .expect("raised");
        let alert = alerts.list(&Default::default()).await.expect("alerts")[0].id;
        let resolve = ["alerts", "resolve", &alert.to_string(), "--json"];
        let resolved = stdout_json(&run_with(&db.url, &resolve, as_maria).await);
        assert_eq!(
            resolved["resolved"][0]["resolved_by"],
            format!("cli {maria}"),
            "{name}"
        );
        let created = stdout_json(
            &run_with(
                &db.url,
                &["tokens", "create", "--admin", "--name", "ops", "--json"],
                as_maria,
            )
            .await,
        );
        let token = created["id"].as_i64().expect("id").to_string();
        assert!(
            run_with(&db.url, &["tokens", "revoke", &token], as_maria)
                .await
                .status
                .success()
        );

        // `lazona audit` and its filters.
        let all = stdout_json(&run(&db.url, &["audit", "--json"]).await);
        assert_eq!(
            names(&all)
                .iter()
                .map(|(a, _)| a.as_str())
                .collect::<Vec<_>>(),
            [
                "token_revoke",
                "token_create",
                "resolve_alert",
                "requeue",
                "replay",
                "resend",
                "track",
                "retry"
            ],
            "{name}"
        );
        let retries = stdout_json(&run(&db.url, &["audit", "--action", "retry", "--json"]).await);
        assert_eq!(
            names(&retries),
            [("retry".to_owned(), maria.clone())],
            "{name}"
        );
        assert_eq!(retries[0]["subject"], format!("shipment:{id}"), "{name}");
        let anas = stdout_json(&run(&db.url, &["audit", "--actor", "ana", "--json"]).await);
        assert_eq!(
            anas.as_array().map(Vec::len),
            Some(2),
            "{name}: track and replay"
        );
        let tokens = stdout_json(
            &run(
                &db.url,
                &["audit", "--subject", &format!("token:{token}"), "--json"],
            )
            .await,
        );
        assert_eq!(
            tokens.as_array().map(Vec::len),
            Some(2),
            "{name}: created, revoked"
        );
        let later = stdout_json(
            &run(
                &db.url,
                &["audit", "--since", "2999-01-01T00:00:00Z", "--json"],
            )
            .await,
        );
        assert_eq!(later, serde_json::json!([]), "{name}");
        let text = run(&db.url, &["audit", "--limit", "1"]).await;
        let text = String::from_utf8_lossy(&text.stdout);
        assert!(
            text.contains("token_revoke") && !text.contains("token_create"),
            "{name}: {text}"
        );
    }
}
