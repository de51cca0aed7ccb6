//! The API token store: only hashes stored, looked up by the secret, revoked tokens refused.

use adapters::db::SqlTokenStore;
use adapters::testing::TestDb;
use domain::error::TokenError;
use domain::model::Principal;
use domain::ports::TokenStore;

#[tokio::test]
async fn tokens_are_created_found_by_secret_listed_and_revoked() {
    for (backend, test_db) in TestDb::all().await {
        let settings = adapters::testing::settings_for(&test_db.url);
        let db = adapters::db::Database::connect(&settings.database)
            .await
            .expect("db");
        db.migrate().await.expect("migrate");
        let store = SqlTokenStore::new(db.clone());

        let (admin, admin_secret) = store.create("ops", Principal::Admin).await.expect("create");
        let (vendor, vendor_secret) = store
            .create("vendor six", Principal::Vendor { vendor_id: 6 })
            .await
            .expect("create");
        assert_ne!(admin_secret, vendor_secret, "{backend}");
        assert_eq!(vendor.principal, Principal::Vendor { vendor_id: 6 });
        assert_eq!(admin.last_used_at, None);

        let stored = adapters::testing::count(
            &db,
            &format!(
                "SELECT COUNT(*) FROM tokens WHERE hash = '{}'",
                admin_secret.hash().0
            ),
        )
        .await;
        assert_eq!(stored, 1, "{backend}: the hash is stored");
        let leaked = adapters::testing::count(
            &db,
            &format!(
                "SELECT COUNT(*) FROM tokens WHERE hash = '{0}' OR name = '{0}'",
                admin_secret.expose()
            ),
        )
        .await;
        assert_eq!(leaked, 0, "{backend}: the secret is not");

        assert_eq!(
            store
                .authenticate(admin_secret.expose())
                .await
                .expect("auth"),
            Some(Principal::Admin),
            "{backend}"
        );
        assert_eq!(
            store
                .authenticate(vendor_secret.expose())
                .await
                .expect("auth"),
            Some(Principal::Vendor { vendor_id: 6 }),
            "{backend}"
        );
        assert_eq!(
            store.authenticate("lzn_nope").await.expect("auth"),
            None,
            "{backend}"
        );
        let listed = store.list().await.expect("list");
        assert_eq!(listed.len(), 2, "{backend}");
        assert!(listed[0].last_used_at.is_some(), "{backend}: use recorded");

        let revoked = store.revoke(vendor.id).await.expect("revoke");
        assert!(revoked.revoked_at.is_some(), "{backend}");
        let again = store.revoke(vendor.id).await.expect("revoke again");
        assert_eq!(again.revoked_at, revoked.revoked_at, "{backend}");
        assert_eq!(
            store
                .authenticate(vendor_secret.expose())
                .await
                .expect("auth"),
            None,
            "{backend}: revoked"
        );
        assert!(matches!(
            store.revoke(999).await,
            Err(TokenError::NotFound(999))
        ));
        db.close().await.expect("close");
    }
}
