//! `lazona-http` that cannot start (a database URL it cannot use, a Redis it cannot reach)
//! exits with an error that says why, and never prints a password; its logs to a pipe carry no
//! colour codes.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PASSWORD: &str = "Secr3t";

/// Runs `lazona-http` in an empty folder with `env` until it exits (it must, within 30 s); its
/// exit code, and stdout and stderr together.
fn lazona_http(env: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lazona-http"));
    cmd.current_dir(dir.path())
        .env_remove("LAZONA_CONFIG")
        .env("LAZONA_LISTEN", "127.0.0.1:0")
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("lazona-http starts");
    let until = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > until {
            let _ = child.kill();
            panic!("lazona-http did not exit");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[test]
fn a_bad_database_url_stops_the_server_saying_why_without_its_password() {
    for (url, problem) in [
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
    ] {
        let (code, text) = lazona_http(&[("DATABASE_URL", url)]);
        assert_eq!(code, Some(1), "{url}: {text}");
        assert!(
            !text.contains(PASSWORD),
            "{url}: the password is printed: {text}"
        );
        assert!(
            text.contains(problem),
            "{url}: does not say {problem:?}: {text}"
        );
    }
}

#[test]
fn a_redis_that_cannot_be_reached_is_named_with_the_cause() {
    // A port nothing listens on: bound, then let go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let url = format!("redis://:{PASSWORD}@127.0.0.1:{port}");
    let (code, text) = lazona_http(&[
        ("LAZONA_QUEUE__BACKEND", "redis"),
        ("REDIS_URL", &url),
        ("LAZONA_WORKER__EMBEDDED", "true"),
    ]);
    assert_eq!(code, Some(1), "{text}");
    assert!(!text.contains(PASSWORD), "the password is printed: {text}");
    // Its log lines went to a pipe, not a terminal: no colour codes.
    assert!(text.contains(" WARN "), "{text}");
    assert!(!text.contains('\x1b'), "colour codes in a pipe: {text:?}");
    assert!(
        text.contains(&format!(
            "job queue unavailable: cannot connect to redis://:***@127.0.0.1:{port}"
        )),
        "no cause: {text}"
    );
}
