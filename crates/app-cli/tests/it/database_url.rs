//! A database URL the connector cannot use: every command says what is wrong with it (which
//! part of the URL) and never prints its password, `config check` included.

use std::process::Command;

const PASSWORD: &str = "Secr3t";

/// The misconfigurations, each with what the error must name.
const CASES: &[(&str, &str)] = &[
    // An unencoded `#`: the URL does not parse, and the driver used to echo it whole.
    (
        "postgres://postgres:Secr3t#1@127.0.0.1:5432/lz",
        "the password contains `#`",
    ),
    (
        "postgres://postgres:Secr3t@127.0.0.1:port/lz",
        "the port is not a number",
    ),
    (
        "mysql://u:Secr3t@host/x",
        "the scheme mysql:// is not supported",
    ),
];

/// Runs `lazona args` with `DATABASE_URL=url` in an empty folder; stdout and stderr together.
fn lazona(url: &str, args: &[&str]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_lazona"))
        .args(args)
        .current_dir(dir.path())
        .env("DATABASE_URL", url)
        .env_remove("LAZONA_CONFIG")
        .env_remove("LAZONA_DATABASE__URL")
        .output()
        .expect("lazona runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[test]
fn a_bad_database_url_is_explained_and_its_password_never_printed() {
    for (url, problem) in CASES {
        for args in [
            &["config", "check", "--timeout", "2"][..],
            &["config", "check", "--json", "--timeout", "2"],
            &["webhooks", "list"],
            &["tokens", "create", "--admin", "--name", "ops"],
            &["migrate"],
        ] {
            let (code, text) = lazona(url, args);
            assert_eq!(code, Some(1), "{url} {args:?}: {text}");
            assert!(
                !text.contains(PASSWORD),
                "{url} {args:?} prints the password: {text}"
            );
            assert!(
                text.contains(problem),
                "{url} {args:?} does not say {problem:?}: {text}"
            );
        }
    }
}

#[test]
fn a_password_with_a_space_is_masked_whole() {
    // Nothing listens on port 1: the URL parses, the connection fails.
    let url = "postgres://postgres:Secr3t pw@127.0.0.1:1/lz";
    for args in [
        &["config", "check", "--timeout", "2"][..],
        &["webhooks", "list"],
    ] {
        let (code, text) = lazona(url, args);
        assert_eq!(code, Some(1), "{args:?}: {text}");
        assert!(
            !text.contains(PASSWORD),
            "{args:?} prints the password: {text}"
        );
        assert!(!text.contains(" pw@"), "{args:?} prints part of it: {text}");
        assert!(
            text.contains("postgres://postgres:***@127.0.0.1:1/lz"),
            "{args:?}: {text}"
        );
    }
}
