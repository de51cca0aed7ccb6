//! `lazona tokens`: the real binary creates, lists and revokes API tokens; the secret is printed
//! once and works, only its hash is stored, and a revoked token is refused.

use crate::support::{database, run, stdout_json};
use adapters::db::SqlTokenStore;
use adapters::testing::TestDb;
use domain::model::Principal;
use domain::ports::TokenStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_created_listed_and_revoked_and_secrets_shown_once() {
    for (backend, db) in TestDb::all().await {
        let database = database(&db.url).await;
        let store = SqlTokenStore::new(database.clone());

        let out = run(&db.url, &["tokens", "create", "--admin", "--name", "ops"]).await;
        assert!(
            out.status.success(),
            "{backend}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let admin_secret = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        assert!(
            admin_secret.starts_with("lzn_"),
            "{backend}: {admin_secret}"
        );
        assert_eq!(
            admin_secret.lines().count(),
            1,
            "{backend}: the secret alone on stdout"
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("shown this once"),
            "{backend}"
        );
        assert_eq!(
            store.authenticate(&admin_secret).await.expect("auth"),
            Some(Principal::Admin),
            "{backend}"
        );

        let vendor = stdout_json(
            &run(
                &db.url,
                &[
                    "tokens", "create", "--vendor", "6", "--name", "shop six", "--json",
                ],
            )
            .await,
        );
        assert_eq!(vendor["scope"], "vendor", "{backend}");
        assert_eq!(vendor["vendor_id"], 6, "{backend}");
        let vendor_secret = vendor["secret"].as_str().expect("secret").to_owned();
        let vendor_id = vendor["id"].as_i64().expect("id");
        assert_eq!(
            store.authenticate(&vendor_secret).await.expect("auth"),
            Some(Principal::Vendor { vendor_id: 6 }),
            "{backend}"
        );

        let listed = run(&db.url, &["tokens", "list", "--json"]).await;
        let text = String::from_utf8_lossy(&listed.stdout).into_owned();
        assert!(
            !text.contains(&admin_secret) && !text.contains(&vendor_secret),
            "{backend}: no secret in the listing"
        );
        assert!(!text.contains("hash"), "{backend}: no hash either");
        let rows = stdout_json(&listed);
        let names: Vec<&str> = rows
            .as_array()
            .expect("array")
            .iter()
            .map(|r| r["name"].as_str().expect("name"))
            .collect();
        assert_eq!(names, ["ops", "shop six"], "{backend}");
        assert!(
            rows[0]["last_used_at"].is_string(),
            "{backend}: use recorded"
        );
        assert!(rows[1]["revoked_at"].is_null(), "{backend}");
        let table = run(&db.url, &["tokens", "list"]).await;
        assert!(
            String::from_utf8_lossy(&table.stdout).contains("shop six"),
            "{backend}"
        );

        let out = run(&db.url, &["tokens", "revoke", &vendor_id.to_string()]).await;
        assert!(out.status.success(), "{backend}");
        assert_eq!(
            store.authenticate(&vendor_secret).await.expect("auth"),
            None,
            "{backend}: revoked"
        );
        let rows = stdout_json(&run(&db.url, &["tokens", "list", "--json"]).await);
        assert!(rows[1]["revoked_at"].is_string(), "{backend}");

        assert_eq!(
            run(&db.url, &["tokens", "revoke", "999"])
                .await
                .status
                .code(),
            Some(3),
            "{backend}: an unknown token exits 3"
        );
        assert_eq!(
            run(&db.url, &["tokens", "create", "--name", "x"])
                .await
                .status
                .code(),
            Some(2),
            "{backend}: a scope is required"
        );
        assert_eq!(
            run(
                &db.url,
                &[
                    "tokens", "create", "--admin", "--vendor", "6", "--name", "x"
                ]
            )
            .await
            .status
            .code(),
            Some(2),
            "{backend}: one scope only"
        );
    }
}
