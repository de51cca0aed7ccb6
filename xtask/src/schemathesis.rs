//! The `schemathesis` step of `cargo xtask ci`: Schemathesis (a PyPI package, pinned) sends
//! requests generated from the OpenAPI document that `lazona-http` serves, valid and invalid
//! ones, to the real server, and fails on any answer the document does not describe (a status,
//! a body, a header), any 5xx, any valid request refused or invalid one accepted.
//!
//! The server is the built `lazona-http` on a throwaway SQLite database, its worker in-process,
//! pointed at the sandbox's fakes, with an admin token from `lazona tokens create --admin` and a
//! few webhooks posted first (an order, booked into two shipments with labels; a JSON array and
//! a body that is not JSON, both stored as rejected), so that the API answers with data.
//!
//! With `$CI` set Schemathesis is installed when missing, into a virtualenv under `target/`;
//! without it the step runs only when that virtualenv exists, and otherwise says it was skipped.

use crate::cmd;
use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::{Method, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// The Schemathesis release installed and run.
const VERSION: &str = "4.32.5";
/// Test cases per operation and phase: a few thousand requests, in about a minute on two cores.
const MAX_EXAMPLES: &str = "100";
/// The run is stopped, and fails, after this long (it takes about a minute).
const RUN_TIMEOUT: Duration = Duration::from_secs(300);
/// How long the server gets to answer `/readyz`, and the worker to book the seeded order.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the check; `Ok(Some(why))` when it was skipped (not installed, outside CI).
pub(crate) fn run(root: &Path, in_ci: bool) -> Result<Option<String>> {
    let target = target_dir(root);
    let venv = target.join(format!("schemathesis-{VERSION}"));
    let st = venv.join("bin/st");
    if !st.is_file() {
        if !in_ci {
            return Ok(Some(format!(
                "schemathesis {VERSION} is not installed in {} (`CI=1 cargo xtask ci` installs \
                 it; or `python3 -m venv {0} && {0}/bin/pip install schemathesis=={VERSION}`)",
                venv.display()
            )));
        }
        install(&venv)?;
    }
    let version = Command::new(&st)
        .arg("--version")
        .output()
        .with_context(|| format!("running {}", st.display()))?;
    let version = String::from_utf8_lossy(&version.stdout);
    if !version.contains(VERSION) {
        bail!("{} is {}, not {VERSION}", st.display(), version.trim());
    }

    cmd::run(cmd::cargo(root).args([
        "build",
        "-p",
        "app-http",
        "--bin",
        "lazona-http",
        "-p",
        "app-cli",
        "--bin",
        "lazona",
    ]))?;
    let bins = target.join("debug");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(check(root, &st, &bins))?;
    Ok(None)
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|t| if t.is_relative() { root.join(t) } else { t })
        .unwrap_or_else(|| root.join("target"))
}

/// `python3 -m venv`, then `pip install schemathesis==VERSION` in it.
fn install(venv: &Path) -> Result<()> {
    println!(
        "[ci] schemathesis: installing {VERSION} into {}",
        venv.display()
    );
    cmd::run(Command::new("python3").args(["-m", "venv"]).arg(venv))
        .context("python3 -m venv (Python 3.9 or newer with venv is needed)")?;
    let installed = cmd::run(
        Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .arg(format!("schemathesis=={VERSION}")),
    );
    if let Err(e) = installed {
        // A half-made virtualenv would be taken for an installed one next time.
        let _ = std::fs::remove_dir_all(venv);
        return Err(e.context(format!("pip install schemathesis=={VERSION}")));
    }
    Ok(())
}

/// A child process, killed if still running when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// `command` without the caller's own configuration (`LAZONA_*` and the original's variables).
fn clean(mut command: Command) -> Command {
    for (key, _) in std::env::vars_os() {
        let key_text = key.to_string_lossy();
        if key_text.starts_with("LAZONA_")
            || adapters::config::LEGACY_ENV
                .iter()
                .any(|(name, _)| *name == key_text)
        {
            command.env_remove(key);
        }
    }
    command
}

async fn check(root: &Path, st: &Path, bins: &Path) -> Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("lazona-schemathesis-")
        .tempdir()
        .context("creating a temp dir")?;
    let db_url = format!("sqlite://{}/api.db?mode=rwc", dir.path().display());
    let fakes = adapters::sandbox::Sandbox::start(adapters::sandbox::SandboxOptions::default())
        .await
        .context("starting the sandbox's fakes")?;
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("finding a free port")?
        .port();
    let authority = format!("127.0.0.1:{port}");

    let mut server = clean(Command::new(bins.join("lazona-http")));
    server
        .envs(fakes.env())
        .env("LAZONA_LISTEN", &authority)
        .env("LAZONA_DATABASE__URL", &db_url)
        .env("LAZONA_WORKER__EMBEDDED", "true")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    // Its log apart, shown when the run fails (the worker logs every job it gives up on, and
    // Schemathesis makes many: replays of webhooks that cannot be processed).
    let log_path = dir.path().join("lazona-http.log");
    let log = std::fs::File::create(&log_path).context("creating the server's log")?;
    server.stdout(log.try_clone()?).stderr(log);
    eprintln!("$ {}", cmd::display(&server));
    let mut server = Process(server.spawn().context("starting lazona-http")?);
    wait_ready(&mut server, &authority).await?;

    let mut create = clean(Command::new(bins.join("lazona")));
    create
        .args(["tokens", "create", "--admin", "--name", "schemathesis"])
        .env("LAZONA_DATABASE__URL", &db_url)
        .stderr(Stdio::inherit());
    eprintln!("$ {}", cmd::display(&create));
    let out = create.output().context("running lazona tokens create")?;
    if !out.status.success() {
        bail!("lazona tokens create failed ({})", out.status);
    }
    let token = String::from_utf8(out.stdout)
        .context("the token is not UTF-8")?
        .trim()
        .to_owned();

    seed(&authority, &token).await?;

    let config = root.join("xtask/schemathesis.toml");
    let mut run = Command::new(st);
    run.arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(format!("http://{authority}/api/v1/openapi.json"))
        .args(["--checks", "all", "--max-examples", MAX_EXAMPLES])
        .args(["--workers", "2", "--request-timeout", "10"])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .arg("--report-dir")
        .arg(target_dir(root).join("schemathesis-report"))
        .args(["--report", "junit"])
        .env("NO_COLOR", "1")
        // Its cache (`.schemathesis/`) goes with the temporary directory.
        .current_dir(dir.path())
        .stdin(Stdio::null());
    // The token stays out of the log (Schemathesis shows it as [Filtered] too).
    eprintln!("$ {}", cmd::display(&run).replace(&token, "<admin token>"));
    let started = Instant::now();
    let mut child = Process(run.spawn().context("running st")?);
    let status = loop {
        if let Some(status) = child.0.try_wait()? {
            break status;
        }
        if started.elapsed() > RUN_TIMEOUT {
            bail!(
                "schemathesis still running after {}s: stopped (a request that hangs?)",
                RUN_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!(
        "[ci] schemathesis: {} in {:.0}s",
        if status.success() { "passed" } else { "FAILED" },
        started.elapsed().as_secs_f64()
    );
    let died = server.0.try_wait()?;
    if died.is_some() || !status.success() {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        println!("[ci] schemathesis: the end of lazona-http's log:");
        for line in &lines[lines.len().saturating_sub(40)..] {
            println!("  {line}");
        }
    }
    if let Some(status) = died {
        bail!("lazona-http died during the run ({status})");
    }
    if !status.success() {
        bail!(
            "schemathesis found failures ({status}): the server and its OpenAPI document \
             disagree (see above; `st replay` needs the same server, so reproduce with the curl \
             commands shown)"
        );
    }
    Ok(())
}

/// Polls `GET /readyz` until it answers 200.
async fn wait_ready(server: &mut Process, authority: &str) -> Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(status) = server.0.try_wait()? {
            bail!("lazona-http exited before it was ready ({status})");
        }
        if let Ok((StatusCode::OK, _)) = request(authority, Method::GET, "/readyz", &[], "").await {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("lazona-http not ready after {}s", READY_TIMEOUT.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Posts the webhooks the API will show, and waits for the order's two shipments.
async fn seed(authority: &str, token: &str) -> Result<()> {
    let secret = domain::service::signature::WebhookSecret::new(adapters::sandbox::WEBHOOK_SECRET);
    let bodies = [
        (adapters::sandbox::sample_order(4242), "order.created", 201),
        ("[1, 2, 3]".to_owned(), "order.created", 400),
        ("not JSON at all".to_owned(), "order.updated", 400),
    ];
    for (n, (body, topic, want)) in bodies.into_iter().enumerate() {
        let signature = secret.sign(body.as_bytes());
        let delivery = format!("schemathesis-{n}");
        let headers = [
            ("content-type", "application/json"),
            ("x-wc-webhook-signature", signature.as_str()),
            ("x-wc-webhook-topic", topic),
            ("x-wc-webhook-delivery-id", delivery.as_str()),
        ];
        let (status, answer) =
            request(authority, Method::POST, "/api/deliveries/", &headers, &body).await?;
        if status.as_u16() != want {
            bail!("seeding: a {topic} webhook was answered {status}, not {want}: {answer}");
        }
    }
    let bearer = format!("Bearer {token}");
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let (status, answer) = request(
            authority,
            Method::GET,
            "/api/v1/shipments",
            &[("authorization", bearer.as_str())],
            "",
        )
        .await?;
        let page: serde_json::Value = serde_json::from_str(&answer)
            .with_context(|| format!("seeding: the shipments ({status}): {answer}"))?;
        let labelled = page["items"].as_array().map_or(0, |items| {
            items.iter().filter(|s| s["has_label"] == true).count()
        });
        if labelled >= 2 {
            println!("[ci] schemathesis: seeded 3 webhooks and 2 shipments with labels");
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "seeding: the order was not booked within {}s: {answer}",
                READY_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One request on a fresh connection: the status and the body as text.
async fn request(
    authority: &str,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<(StatusCode, String)> {
    let exchange = async {
        let stream = TcpStream::connect(authority)
            .await
            .with_context(|| format!("connecting to {authority}"))?;
        let (mut sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP handshake")?;
        tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, authority);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let req = req
            .body(Full::new(Bytes::from(body.to_owned())))
            .context("building the request")?;
        let resp = sender.send_request(req).await.context("sending")?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await.context("reading")?;
        Ok((
            status,
            String::from_utf8_lossy(&bytes.to_bytes()).into_owned(),
        ))
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .with_context(|| format!("{path}: no answer within 10s"))?
}
