//! What the CLI tests share: a migrated database, the binary run off the runtime's threads, and
//! an in-process worker pointed at fake third parties.

use crate::lazona_with;
use adapters::config::Settings;
use adapters::db::Database;
use std::process::Output;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A migrated database at `url`.
pub(crate) async fn database(url: &str) -> Database {
    let settings = adapters::testing::settings_for(url);
    let db = Database::connect(&settings.database).await.expect("db");
    db.migrate().await.expect("migrate");
    db
}

pub(crate) async fn run(url: &str, args: &[&str]) -> Output {
    run_with(url, args, &[]).await
}

/// [`run`] with these environment variables set too.
pub(crate) async fn run_with(url: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let url = url.to_owned();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        lazona_with(&url, &args, &env)
    })
    .await
    .expect("join")
}

pub(crate) fn stdout_json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "exit {:?}: {}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout).expect("json on stdout")
}

/// Settings for a worker on `db_url` whose Koiki, shop and tracking are at `fake`, mailing
/// through the SMTP server on `smtp_port`.
pub(crate) fn worker_settings(db_url: &str, fake: &str, smtp_port: u16) -> Settings {
    use figment::providers::Serialized;
    let port = smtp_port.to_string();
    let mut figment = Settings::figment(None).expect("figment");
    for (k, v) in [
        ("database.url", db_url),
        ("koiki.host", fake),
        ("koiki.tracking_host", fake),
        ("koiki.auth_token", "koiki-token"),
        ("koiki.tracking_auth_token", "tracking-token"),
        ("shop.host", fake),
        ("shop.user", "connector"),
        ("shop.password", "secret"),
        ("mail.host", "127.0.0.1"),
        ("mail.port", &port),
        ("mail.from", "lazona@example.coop"),
        ("mail.admin_recipients", "admin@example.coop"),
        // The fake shop lists no orders: a reconciliation would be refused, dead-lettered, and
        // its alert mailed among the mails these tests count.
        ("reconcile.enabled", "false"),
        // Nor does it take notes or order updates: those jobs would die and be alerted too.
        ("shop.write_back", "false"),
    ] {
        figment = figment.merge(Serialized::default(k, v));
    }
    figment.extract().expect("settings")
}

/// Starts the connector's worker in-process; cancel the token and await the handle to stop it.
pub(crate) async fn start_worker(
    db_url: &str,
    database: &Database,
    fake: &str,
    smtp_port: u16,
) -> (CancellationToken, JoinHandle<()>) {
    let settings = worker_settings(db_url, fake, smtp_port);
    let connector = connector::Connector::builder(settings)
        .database(database.clone())
        .build()
        .await
        .expect("connector");
    let shutdown = CancellationToken::new();
    let running = connector.spawn_worker(shutdown.clone());
    let running = tokio::spawn(async move {
        let _ = running.await;
    });
    (shutdown, running)
}
