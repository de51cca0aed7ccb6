//! `lazona alerts list|show|resolve` on SQLite and Postgres: open alerts listed, one shown,
//! resolved by hand with the operator recorded, and an unknown id answered "not found".

use crate::support::{database, run, stdout_json};
use adapters::db::SqlAlertStore;
use adapters::testing::TestDb;
use domain::model::{AlertKind, NewAlert};
use domain::ports::AlertStore as _;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_are_listed_shown_and_resolved_by_an_operator() {
    for (name, db) in TestDb::all().await {
        let store = SqlAlertStore::new(database(&db.url).await);
        for (kind, subject) in [
            (AlertKind::BookingStuck, "shipment:3"),
            (AlertKind::JobDead, "job:12"),
        ] {
            store
                .raise(&NewAlert {
                    kind,
                    subject: subject.into(),
                    summary: format!("{kind} {subject}"),
                    detail: "what to do".into(),
                })
                .await
                .expect("raised");
        }
        let listed = stdout_json(&run(&db.url, &["--json", "alerts", "list"]).await);
        let listed = listed.as_array().expect("a list");
        assert_eq!(listed.len(), 2, "{name}");
        let id = listed
            .iter()
            .find(|a| a["kind"] == "booking_stuck")
            .expect("the stuck booking")["id"]
            .as_i64()
            .expect("id");

        let shown = run(&db.url, &["alerts", "show", &id.to_string()]).await;
        let text = String::from_utf8_lossy(&shown.stdout);
        assert!(shown.status.success(), "{name}: {text}");
        assert!(
            text.contains("shipment:3") && text.contains("what to do"),
            "{name}: {text}"
        );

        let done = stdout_json(
            &run(
                &db.url,
                &[
                    "--json",
                    "alerts",
                    "resolve",
                    &id.to_string(),
                    "--actor",
                    "ana",
                ],
            )
            .await,
        );
        assert_eq!(done["resolved"][0]["resolved_by"], "cli ana", "{name}");
        let open = stdout_json(&run(&db.url, &["--json", "alerts", "list"]).await);
        assert_eq!(open.as_array().map(Vec::len), Some(1), "{name}");
        let all = stdout_json(&run(&db.url, &["--json", "alerts", "list", "--all"]).await);
        assert_eq!(all.as_array().map(Vec::len), Some(2), "{name}");

        let missing = run(&db.url, &["alerts", "resolve", "99999"]).await;
        assert_eq!(missing.status.code(), Some(3), "{name}: not found");
    }
}
