//! The `lazona` binary against a real SQLite database.

use std::process::Command;

mod alerts;
mod audit;
mod config_check;
mod database_url;
mod dead_and_replay;
mod first_use;
mod import_django;
mod purge;
mod reconcile;
mod sandbox;
mod shipments;
mod support;
mod tokens;
mod webhooks_list;

pub(crate) fn lazona(db_url: &str, args: &[&str]) -> std::process::Output {
    lazona_with(db_url, args, &[])
}

/// `lazona` with these environment variables set too.
pub(crate) fn lazona_with(
    db_url: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_lazona"))
        .args(args)
        .env("DATABASE_URL", db_url)
        .env_remove("LAZONA_CONFIG")
        .env_remove("LAZONA_ACTOR")
        .envs(env.iter().copied())
        .output()
        .expect("lazona runs")
}

#[test]
fn migrate_then_list_and_show() {
    let db = adapters::testing::TestDb::sqlite();
    let out = lazona(&db.url, &["migrate", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        r#"{"migrated":true}"#
    );

    let out = lazona(&db.url, &["webhooks", "list", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(rows, serde_json::json!([]));

    let out = lazona(&db.url, &["webhooks", "show", "999"]);
    assert_eq!(out.status.code(), Some(3), "a missing webhook exits 3");

    let out = lazona(&db.url, &["webhooks", "list", "--status", "nonsense"]);
    assert_eq!(out.status.code(), Some(2), "a usage error exits 2");
}

#[test]
fn cli_definition_is_consistent() {
    use clap::CommandFactory;
    app_cli::Cli::command().debug_assert();
}
