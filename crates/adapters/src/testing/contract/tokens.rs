//! The [`TokenStore`] contract: a created token's secret (new each time, `lzn_`-prefixed)
//! authenticates as its principal until the token is revoked; unknown secrets are refused;
//! tokens are listed oldest first, revoked ones included; revoking twice changes nothing, and an
//! unknown id is not found; a use is recorded, at most once a minute.

use super::{Checks, check, run_checks};
use domain::error::TokenError;
use domain::model::Principal;
use domain::model::token::TOKEN_PREFIX;
use domain::ports::TokenStore;
use std::any::Any;
use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;

/// A fresh, empty store and what keeps its storage alive.
pub type Fresh = (Arc<dyn TokenStore>, Box<dyn Any + Send>);

const CHECKS: Checks<Fresh> = &[
    check!(Fresh, a_created_token_authenticates_as_its_principal),
    check!(Fresh, every_secret_is_new),
    check!(Fresh, unknown_and_malformed_secrets_are_refused),
    check!(Fresh, tokens_are_listed_oldest_first_revoked_included),
    check!(Fresh, a_revoked_token_no_longer_authenticates),
    check!(Fresh, a_use_is_recorded_at_most_once_a_minute),
];

/// The names of the checks, in the order they run.
pub fn checks() -> Vec<&'static str> {
    super::names(CHECKS)
}

/// Runs every check, each on a fresh store from `make`.
///
/// # Panics
/// On the first broken promise, naming the backend and the check.
pub async fn run_all<F, Fut>(backend: &str, make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Fresh>,
{
    run_checks(backend, make, CHECKS, &[]).await;
}

/// Runs every check but those in `known_divergent` (names from [`checks`]).
///
/// # Panics
/// On the first broken promise, or for a name that is not a check.
pub async fn run_except<F, Fut>(backend: &str, make: F, known_divergent: &[&str])
where
    F: Fn() -> Fut,
    Fut: Future<Output = Fresh>,
{
    run_checks(backend, make, CHECKS, known_divergent).await;
}

async fn a_created_token_authenticates_as_its_principal(backend: String, (store, _guard): Fresh) {
    let before = chrono::Utc::now() - chrono::TimeDelta::seconds(1);
    let (admin, admin_secret) = store.create("ops", Principal::Admin).await.expect("create");
    let six = Principal::Vendor { vendor_id: 6 };
    let (vendor, vendor_secret) = store.create("vendor six", six).await.expect("create");
    for (token, name, principal) in [
        (&admin, "ops", Principal::Admin),
        (&vendor, "vendor six", six),
    ] {
        assert_eq!(
            (token.name.as_str(), token.principal),
            (name, principal),
            "{backend}"
        );
        assert_eq!(
            (token.last_used_at, token.revoked_at),
            (None, None),
            "{backend}: unused, live"
        );
        assert!(token.created_at >= before, "{backend}: created now");
    }
    assert_ne!(admin.id, vendor.id, "{backend}");
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
        Some(six),
        "{backend}"
    );
}

async fn every_secret_is_new(backend: String, (store, _guard): Fresh) {
    let mut secrets = HashSet::new();
    let mut ids = HashSet::new();
    for n in 0..20 {
        let (token, secret) = store
            .create("same name", Principal::Vendor { vendor_id: n % 3 })
            .await
            .expect("create");
        assert!(
            secret.expose().starts_with(TOKEN_PREFIX) && secret.expose().len() > 40,
            "{backend}: a `{TOKEN_PREFIX}` secret of 32 random bytes"
        );
        assert!(
            secrets.insert(secret.expose().to_owned()),
            "{backend}: a new secret"
        );
        assert!(ids.insert(token.id), "{backend}: a new id");
    }
    assert_eq!(store.list().await.expect("list").len(), 20, "{backend}");
}

async fn unknown_and_malformed_secrets_are_refused(backend: String, (store, _guard): Fresh) {
    let (_, secret) = store.create("ops", Principal::Admin).await.expect("create");
    let real = secret.expose();
    let mut altered = real.to_owned();
    let last = altered.pop().expect("not empty");
    altered.push(if last == 'A' { 'B' } else { 'A' });
    let without_prefix = real.trim_start_matches(TOKEN_PREFIX);
    let longer = format!("{real}x");
    let upper = real.to_uppercase();
    for presented in [
        "",
        TOKEN_PREFIX,
        "lzn_nope",
        altered.as_str(),
        without_prefix,
        &real[..real.len() - 1],
        longer.as_str(),
        upper.as_str(),
        " ",
    ] {
        assert_eq!(
            store.authenticate(presented).await.expect("auth"),
            None,
            "{backend}: {presented:?} is refused"
        );
    }
    assert_eq!(
        store.authenticate(real).await.expect("auth"),
        Some(Principal::Admin),
        "{backend}: the real one still works"
    );
}

async fn tokens_are_listed_oldest_first_revoked_included(backend: String, (store, _guard): Fresh) {
    assert!(
        store.list().await.expect("list").is_empty(),
        "{backend}: none yet"
    );
    let mut created = Vec::new();
    for (name, principal) in [
        ("a", Principal::Admin),
        ("b", Principal::Vendor { vendor_id: 6 }),
        ("c", Principal::Vendor { vendor_id: 7 }),
    ] {
        created.push(store.create(name, principal).await.expect("create").0);
    }
    let revoked = store.revoke(created[1].id).await.expect("revoke");
    let listed = store.list().await.expect("list");
    assert_eq!(
        listed,
        [created[0].clone(), revoked, created[2].clone()],
        "{backend}: every token as created (or revoked), oldest first"
    );
}

async fn a_revoked_token_no_longer_authenticates(backend: String, (store, _guard): Fresh) {
    let (keep, keep_secret) = store
        .create("keep", Principal::Admin)
        .await
        .expect("create");
    let (gone, gone_secret) = store
        .create("gone", Principal::Vendor { vendor_id: 6 })
        .await
        .expect("create");
    assert!(
        store
            .authenticate(gone_secret.expose())
            .await
            .expect("auth")
            .is_some(),
        "{backend}"
    );
    let before = chrono::Utc::now() - chrono::TimeDelta::seconds(1);
    let revoked = store.revoke(gone.id).await.expect("revoke");
    assert_eq!(
        (revoked.id, revoked.name.as_str(), revoked.principal),
        (gone.id, "gone", gone.principal),
        "{backend}: the token revoked"
    );
    assert!(
        revoked.revoked_at.is_some_and(|at| at >= before),
        "{backend}: revoked now"
    );
    assert_eq!(
        store
            .authenticate(gone_secret.expose())
            .await
            .expect("auth"),
        None,
        "{backend}: refused from now on"
    );
    assert_eq!(
        store
            .authenticate(keep_secret.expose())
            .await
            .expect("auth"),
        Some(Principal::Admin),
        "{backend}: the others still work"
    );
    let again = store.revoke(gone.id).await.expect("revoke again");
    assert_eq!(
        again.revoked_at, revoked.revoked_at,
        "{backend}: revoking again changes nothing"
    );
    assert_eq!(
        store
            .authenticate(gone_secret.expose())
            .await
            .expect("auth"),
        None,
        "{backend}"
    );
    let unknown = keep.id.max(gone.id) + 1000;
    assert!(
        matches!(store.revoke(unknown).await, Err(TokenError::NotFound(id)) if id == unknown),
        "{backend}: an unknown id"
    );
}

async fn a_use_is_recorded_at_most_once_a_minute(backend: String, (store, _guard): Fresh) {
    let (token, secret) = store.create("ops", Principal::Admin).await.expect("create");
    let (other, _) = store
        .create("unused", Principal::Admin)
        .await
        .expect("create");
    let before = chrono::Utc::now() - chrono::TimeDelta::seconds(1);
    store.authenticate(secret.expose()).await.expect("auth");
    let used = |tokens: Vec<domain::model::ApiToken>, id| {
        tokens
            .into_iter()
            .find(|t| t.id == id)
            .expect("listed")
            .last_used_at
    };
    let first = used(store.list().await.expect("list"), token.id);
    assert!(
        first.is_some_and(|at| at >= before),
        "{backend}: the use is recorded: {first:?}"
    );
    assert_eq!(
        used(store.list().await.expect("list"), other.id),
        None,
        "{backend}: only on the token used"
    );
    store.authenticate(secret.expose()).await.expect("auth");
    assert_eq!(
        used(store.list().await.expect("list"), token.id),
        first,
        "{backend}: not again within the minute"
    );
}
