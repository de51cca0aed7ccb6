//! `cargo xtask ci`: the whole gate, step by step, failing fast.
//!
//! fmt, clippy, the tests (nextest when installed, else `cargo test`), the doctests, the
//! embedding example, the browser tests (reported SKIPPED without `$CI` when Chromium, node or
//! playwright-core is missing), rustdoc with warnings denied, tidy, then fuzzing. The tests get
//! `TEST_DATABASE_URL` and `TEST_REDIS_URL` pointing at local Postgres and Redis; with `$CI`
//! set those services must be up (they are started when they are not), and each fuzz target
//! runs for [`crate::fuzz::CI_SECONDS`] (nightly needed); without `$CI` the fuzz step is
//! reported SKIPPED, never passed.

use crate::cmd::{self, cargo};
use anyhow::{Context, Result, bail};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const POSTGRES_ADDR: &str = "127.0.0.1:5432";
const REDIS_ADDR: &str = "127.0.0.1:6379";
const TEST_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const TEST_REDIS_URL: &str = "redis://127.0.0.1:6379";
const POSTGRES_START: &str =
    "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start";
const REDIS_START: &[&str] = &[
    "--daemonize",
    "yes",
    "--bind",
    "127.0.0.1",
    "-::1",
    "--port",
    "6379",
    "--save",
    "",
    "--appendonly",
    "no",
    "--dir",
    "/var/lib/redis",
    "--logfile",
    "/var/log/redis/ci.log",
];
/// How long a service gets to accept connections after its start command.
const SERVICE_START_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs the gate from the workspace root.
pub(crate) fn run(root: &Path) -> Result<()> {
    let mut steps = Steps::default();
    steps.run("fmt", || {
        cmd::run(cargo(root).args(["fmt", "--all", "--check"]))?;
        // The fuzz crate is a workspace of its own (`fuzz/`).
        cmd::run(cargo(root).args(["fmt", "--check", "--manifest-path", "fuzz/Cargo.toml"]))
    })?;
    steps.run("clippy", || {
        cmd::run(cargo(root).args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))
    })?;

    let in_ci = std::env::var_os("CI").is_some();
    let mut test_env: Vec<(&str, &str)> = Vec::new();
    steps.run("services", || {
        test_env = services(in_ci)?;
        Ok(())
    })?;

    let nextest = cmd::succeeds(cargo(root).args(["nextest", "--version"]));
    if nextest {
        steps.run("test (nextest)", || {
            cmd::run(
                cargo(root)
                    .args(["nextest", "run", "--workspace", "--no-fail-fast"])
                    .envs(test_env.iter().copied()),
            )
        })?;
        steps.run("doctest", || {
            cmd::run(
                cargo(root)
                    .args(["test", "--workspace", "--doc"])
                    .envs(test_env.iter().copied()),
            )
        })?;
    } else {
        eprintln!(
            "xtask ci: cargo-nextest is not installed; using `cargo test` (doctests included)"
        );
        steps.run("test", || {
            cmd::run(
                cargo(root)
                    .args(["test", "--workspace"])
                    .envs(test_env.iter().copied()),
            )
        })?;
    }

    // The operations API against its own OpenAPI document, with the real server.
    steps.run_or_skip("schemathesis", || crate::schemathesis::run(root, in_ci))?;

    // The embedding example (`crates/connector/examples/embed.rs`) runs: a library API that only
    // compiles is not enough.
    steps.run("example", || {
        cmd::run(cargo(root).args(["run", "-p", "connector", "--example", "embed"]))
    })?;
    // The dashboard in a real browser: `#[ignore]`d above, run here when Chromium is there.
    steps.run_or_skip("browser", || {
        crate::browser::run(root, in_ci, nextest, &test_env)
    })?;
    steps.run("doc", || {
        cmd::run(
            cargo(root)
                .args(["doc", "--workspace", "--no-deps"])
                .env("RUSTDOCFLAGS", "-D warnings"),
        )
    })?;
    steps.run("tidy", || crate::tidy::run(root))?;
    // Last: the slowest step, and the only one that needs nightly.
    steps.run_or_skip("fuzz", || crate::fuzz::ci_step(root, in_ci))?;
    steps.summary();
    Ok(())
}

/// The steps run so far, with their durations, and those skipped, with why.
#[derive(Default)]
struct Steps {
    done: Vec<(&'static str, Duration)>,
    skipped: Vec<(&'static str, String)>,
    started: Option<Instant>,
}

impl Steps {
    fn run(&mut self, name: &'static str, step: impl FnOnce() -> Result<()>) -> Result<()> {
        self.run_or_skip(name, || step().map(|()| None))
    }

    /// Runs a step that may decline to run: `Ok(Some(reason))` is reported SKIPPED, not passed.
    fn run_or_skip(
        &mut self,
        name: &'static str,
        step: impl FnOnce() -> Result<Option<String>>,
    ) -> Result<()> {
        let start = Instant::now();
        self.started.get_or_insert(start);
        println!("\n==> [ci] {name}");
        let outcome = step();
        let took = start.elapsed();
        match outcome {
            Ok(None) => {
                println!("<== [ci] {name}: ok in {}", secs(took));
                self.done.push((name, took));
                Ok(())
            }
            Ok(Some(reason)) => {
                println!("<== [ci] {name}: SKIPPED ({reason})");
                self.skipped.push((name, reason));
                Ok(())
            }
            Err(e) => {
                self.summary();
                Err(e.context(format!("ci step `{name}` failed after {}", secs(took))))
            }
        }
    }

    fn summary(&self) {
        println!("\n[ci] steps passed:");
        for (name, took) in &self.done {
            println!("  {name:<16} {:>9}", secs(*took));
        }
        if let Some(start) = self.started {
            println!("  {:<16} {:>9}", "total", secs(start.elapsed()));
        }
        if !self.skipped.is_empty() {
            println!("[ci] steps SKIPPED (not run, not passed):");
            for (name, reason) in &self.skipped {
                println!("  {name:<16} {reason}");
            }
        }
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// Makes sure Postgres and Redis are reachable (starting them under `$CI`) and returns the
/// environment the tests get. Variables already set are left alone.
///
/// Outside CI nothing is started: a service that is down just leaves its variable unset, so
/// the tests that need it skip themselves.
fn services(in_ci: bool) -> Result<Vec<(&'static str, &'static str)>> {
    let mut env = Vec::new();
    let wanted = [
        (
            "Postgres",
            POSTGRES_ADDR,
            "TEST_DATABASE_URL",
            TEST_DATABASE_URL,
        ),
        ("Redis", REDIS_ADDR, "TEST_REDIS_URL", TEST_REDIS_URL),
    ];
    for (name, addr, var, url) in wanted {
        let addr: SocketAddr = addr.parse().context("service address")?;
        let already_set = std::env::var_os(var).is_some();
        if in_ci {
            ensure_up(name, addr)?;
        } else if already_set {
            println!("[ci] {name}: using ${var} as set");
            continue;
        } else if !reachable(addr) {
            println!("[ci] {name}: nothing on {addr} (not CI): ${var} left unset, its tests skip");
            continue;
        }
        if already_set {
            println!("[ci] {name}: up on {addr}; using ${var} as set");
        } else {
            println!("[ci] {name}: up on {addr}; {var}={url}");
            env.push((var, url));
        }
    }
    Ok(env)
}

fn ensure_up(name: &str, addr: SocketAddr) -> Result<()> {
    if reachable(addr) {
        return Ok(());
    }
    println!("[ci] {name}: nothing on {addr}; starting it");
    let mut start = if name == "Postgres" {
        let mut c = Command::new("sh");
        c.args(["-c", POSTGRES_START]);
        c
    } else {
        let mut c = Command::new("redis-server");
        c.args(REDIS_START);
        c
    };
    if let Err(e) = cmd::run(&mut start) {
        // It may still have come up (e.g. "cluster is already running"): the probe decides.
        eprintln!("[ci] {name}: start command failed: {e:#}");
    }
    let deadline = Instant::now() + SERVICE_START_TIMEOUT;
    while Instant::now() < deadline {
        if reachable(addr) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    bail!(
        "{name} is not accepting connections on {addr} after trying to start it ({}s)",
        SERVICE_START_TIMEOUT.as_secs()
    )
}

fn reachable(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
}
