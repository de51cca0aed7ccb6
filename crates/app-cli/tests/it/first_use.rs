//! `lazona` before any server has run: a command that writes migrates the database first (as
//! the server does with `database.migrate_on_start`), or says to run `lazona migrate` when that
//! is off; a command that only looks creates no file and says there is no database.

use std::process::{Command, Output};

fn lazona(url: &str, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lazona"));
    cmd.args(args)
        .env("DATABASE_URL", url)
        .env_remove("LAZONA_CONFIG")
        .env_remove("LAZONA_DATABASE__MIGRATE_ON_START");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("lazona runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_command_that_writes_migrates_a_new_database_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("new.db").display());
    let out = lazona(&url, &[], &["tokens", "create", "--admin", "--name", "ops"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("lzn_"));
    let out = lazona(&url, &[], &["tokens", "list", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let tokens: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(tokens.as_array().map(Vec::len), Some(1), "{tokens}");
}

#[test]
fn without_migrate_on_start_a_command_that_writes_says_to_migrate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("new.db").display());
    let off = [("LAZONA_DATABASE__MIGRATE_ON_START", "false")];
    let out = lazona(
        &url,
        &off,
        &["tokens", "create", "--admin", "--name", "ops"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("run `lazona migrate`"),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains("no such table"), "{}", text(&out));

    assert!(lazona(&url, &off, &["migrate"]).status.success());
    let out = lazona(
        &url,
        &off,
        &["tokens", "create", "--admin", "--name", "ops"],
    );
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn a_look_at_a_missing_database_creates_nothing_and_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("lazona.db");
    let url = format!("sqlite://{}?mode=rwc", file.display());
    for args in [
        &["webhooks", "list"][..],
        &["tokens", "list"],
        &["shipments", "list"],
        &["dead", "list"],
    ] {
        let out = lazona(&url, &[], args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", text(&out));
        assert!(
            text(&out).contains(&format!("there is no database at {}", file.display())),
            "{args:?}: {}",
            text(&out)
        );
        assert!(text(&out).contains("lazona migrate"), "{}", text(&out));
        assert!(!file.exists(), "{args:?} created {}", file.display());
    }
    let out = lazona(&url, &[], &["config", "check", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("there is no database at"),
        "{}",
        text(&out)
    );
    assert!(!file.exists(), "config check created {}", file.display());

    // A file that is there but empty (an earlier version's leftover) has no tables: said so.
    std::fs::write(&file, b"").expect("empty file");
    let out = lazona(&url, &[], &["webhooks", "list"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("the database has no tables yet"),
        "{}",
        text(&out)
    );
}
