//! `lazona sandbox`, the real binary: the printed environment, the sample order and its
//! signature, and a fake WCFM endpoint answering on the printed host.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use domain::service::signature::WebhookSecret;
use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Kills the sandbox when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `GET path` on `authority` with basic auth; the status and the body.
fn get(authority: &str, path: &str, user: &str, password: &str) -> (u16, serde_json::Value) {
    let mut stream = TcpStream::connect(authority).expect("connect to the sandbox");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let auth = BASE64.encode(format!("{user}:{password}"));
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Basic {auth}\r\nConnection: close\r\n\r\n"
    )
    .expect("request sent");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("answer read");
    let (head, body) = answer.split_once("\r\n\r\n").expect("a full answer");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    (status, serde_json::from_str(body).expect("a JSON body"))
}

/// Starts `lazona sandbox --dir dir args`; the running sandbox and what it printed up to its
/// last instruction.
fn start(dir: &std::path::Path, args: &[&str]) -> (Running, Vec<String>) {
    let child = Command::new(env!("CARGO_BIN_EXE_lazona"))
        .args(["sandbox", "--dir"])
        .arg(dir)
        .args(args)
        .env_remove("LAZONA_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("lazona sandbox starts");
    let mut running = Running(child);
    let stdout = running.0.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    let mut printed = Vec::new();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("the sandbox stopped printing ({e}): {printed:#?}"));
        let done = line.starts_with("Each vendor's label mail");
        printed.push(line);
        if done {
            break;
        }
    }
    (running, printed)
}

/// The `export NAME=value` lines of `printed`.
fn exports(printed: &[String]) -> HashMap<String, String> {
    printed
        .iter()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('\'').to_owned()))
        .collect()
}

#[test]
fn the_sandbox_prints_its_environment_and_serves_the_fakes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut running, printed) = start(dir.path(), &[]);
    assert!(
        printed[1].starts_with("SANDBOX") && printed[1].contains("nothing real is called"),
        "{printed:#?}"
    );
    let env = exports(&printed);
    for name in [
        "LAZONA_KOIKI__HOST",
        "LAZONA_KOIKI__AUTH_TOKEN",
        "LAZONA_KOIKI__TRACKING_HOST",
        "LAZONA_SHOP__HOST",
        "LAZONA_SHOP__USER",
        "LAZONA_SHOP__PASSWORD",
        "LAZONA_MAIL__HOST",
        "LAZONA_MAIL__PORT",
        "LAZONA_MAIL__FROM",
        "LAZONA_MAIL__ADMIN_RECIPIENTS",
        "LAZONA_DATABASE__URL",
    ] {
        assert!(env.contains_key(name), "{name} missing: {printed:#?}");
    }
    assert_eq!(env["LAZONA_WEBHOOK__SECRET"], "sandbox-secret");
    assert!(
        env["LAZONA_DATABASE__URL"].contains(&*dir.path().to_string_lossy()),
        "the server gets a database of its own in the sandbox folder"
    );
    let env_file = std::fs::read_to_string(dir.path().join("sandbox.env")).expect("sandbox.env");
    assert!(env_file.contains("export LAZONA_KOIKI__HOST="));

    // The sample order is written, and the curl command carries its signature.
    let order = std::fs::read(dir.path().join("order.json")).expect("order.json");
    let signature = WebhookSecret::new(&env["LAZONA_WEBHOOK__SECRET"]).sign(&order);
    let text = printed.join("\n");
    assert!(
        text.contains(&format!("X-WC-Webhook-Signature: {signature}")),
        "{text}"
    );
    assert!(text.contains("X-WC-Webhook-Topic: order.created"));
    assert!(text.contains("--data-binary @"));

    // The fake WCFM and WordPress answer on the printed host.
    let shop = env["LAZONA_SHOP__HOST"]
        .strip_prefix("http://")
        .expect("an http host")
        .to_owned();
    let (user, password) = (&env["LAZONA_SHOP__USER"], &env["LAZONA_SHOP__PASSWORD"]);
    let (status, settings) = get(&shop, "/wp-json/wcfmmp/v1/settings/id/6", user, password);
    assert_eq!(status, 200, "{settings}");
    assert_eq!(settings["address"]["city"], "Barcelona");
    let (status, vendor) = get(&shop, "/wp-json/wp/v2/users/6?context=edit", user, password);
    assert_eq!(status, 200, "{vendor}");
    assert_eq!(vendor["email"], "vendor6@sandbox.invalid");
    let (status, _) = get(&shop, "/wp-json/wcfmmp/v1/settings/id/6", user, "wrong");
    assert_eq!(status, 401);

    running.0.kill().expect("killed");
    running.0.wait().expect("reaped");
}

#[test]
fn the_fakes_port_and_the_connectors_address_are_each_their_own() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fakes = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let (_running, printed) = start(
        dir.path(),
        &["--port", &fakes.to_string(), "--listen", "127.0.0.1:9191"],
    );
    let env = exports(&printed);
    assert_eq!(
        env["LAZONA_SHOP__HOST"],
        format!("http://127.0.0.1:{fakes}")
    );
    assert_eq!(env["LAZONA_LISTEN"], "127.0.0.1:9191");
    let env_file = std::fs::read_to_string(dir.path().join("sandbox.env")).expect("sandbox.env");
    assert!(
        env_file.contains("export LAZONA_LISTEN=127.0.0.1:9191\n"),
        "{env_file}"
    );
    let text = printed.join("\n");
    assert!(
        text.contains("curl -sS -X POST http://127.0.0.1:9191/api/deliveries/"),
        "{text}"
    );
    assert!(!text.contains("8080"), "{text}");
    // The same build profile as the README's `cargo run --release --bin lazona -- sandbox`.
    assert!(
        text.contains("cargo run --release --bin lazona-http"),
        "{text}"
    );
}
