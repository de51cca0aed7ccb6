//! Contract suites for the storage ports: each checks, against any implementation, the promises
//! its trait's documentation makes (and that the use cases rely on).
//!
//! - [`inbox`] checks [`domain::ports::WebhookInbox`];
//! - [`shipments`] checks [`domain::ports::ShipmentStore`];
//! - [`events`] checks [`domain::ports::EventLog`];
//! - [`tokens`] checks [`domain::ports::TokenStore`].
//!
//! Each suite works like [`super::queue_conformance`]: a backend's test calls its `run_all` with a
//! name for messages and a factory that makes a fresh, empty storage (the port as `Arc<dyn ..>`
//! and a guard that keeps the storage alive); every check runs on a storage of its own, and the
//! first broken promise panics, naming the backend and the check. The implementations are taken
//! as instances, so an embedder runs the same suites against its own adapters.
//!
//! A backend known to break a promise runs the rest with `run_except`, naming the checks it
//! skips (each must exist); a note is printed for every check skipped.

pub mod events;
pub mod inbox;
pub mod shipments;
pub mod tokens;

use std::future::Future;
use std::pin::Pin;

/// One check of a suite, on a fresh storage `T`; the `String` names the backend.
pub(crate) type CheckFn<T> = fn(String, T) -> Pin<Box<dyn Future<Output = ()>>>;

/// A suite's checks, named.
pub(crate) type Checks<T> = &'static [(&'static str, CheckFn<T>)];

/// `(name, check)` for the async function `$check(backend: String, fresh: $fresh)`.
macro_rules! check {
    ($fresh:ty, $check:ident) => {
        (
            stringify!($check),
            (|backend: String,
              fresh: $fresh|
             -> ::std::pin::Pin<Box<dyn ::std::future::Future<Output = ()>>> {
                Box::pin($check(backend, fresh))
            }) as $crate::testing::contract::CheckFn<$fresh>,
        )
    };
}
pub(crate) use check;

/// Runs `checks` but those named in `skip`, each on a fresh storage from `make`.
///
/// # Panics
/// When a check fails, or `skip` names a check the suite does not have.
pub(crate) async fn run_checks<T, F, Fut>(backend: &str, make: F, checks: Checks<T>, skip: &[&str])
where
    F: Fn() -> Fut,
    Fut: Future<Output = T>,
{
    for name in skip {
        assert!(
            checks.iter().any(|(n, _)| n == name),
            "{backend}: the suite has no check named {name:?}"
        );
    }
    for (name, check) in checks {
        if skip.contains(name) {
            eprintln!("note: {backend}: contract check {name} skipped (known to diverge)");
            continue;
        }
        check(backend.to_owned(), make().await).await;
    }
}

/// The names of `checks`, in the order they run.
pub(crate) fn names<T>(checks: Checks<T>) -> Vec<&'static str> {
    checks.iter().map(|(n, _)| *n).collect()
}
