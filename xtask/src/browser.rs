//! The dashboard's browser tests (`tests/browser/*.mjs`, driven from app-http's
//! `dashboard::` tests), run as a ci step of their own. They are `#[ignore]`d, so a plain test
//! run lists them as skipped, never passed; this step runs them when what they need is there:
//! Debian's Chromium, `node` and `tests/browser/node_modules` (playwright-core). In CI the
//! missing pieces are installed and a failure fails the run; elsewhere a missing piece makes the
//! step SKIPPED, with why.

use crate::cmd::{self, cargo};
use anyhow::{Context, Result};
use std::path::Path;
use std::process::Command;

const CHROMIUM: &str = "/usr/bin/chromium";

/// The nextest filter of the browser tests.
const FILTER: &str = "package(app-http) & binary(it) & test(/^dashboard::/)";

/// Runs the browser tests with `env` (with nextest when `nextest`, else `cargo test`); `Some`
/// with why when they cannot run here (never under `in_ci`).
pub(crate) fn run(
    root: &Path,
    in_ci: bool,
    nextest: bool,
    env: &[(&str, &str)],
) -> Result<Option<String>> {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| CHROMIUM.to_owned());
    if let Some(missing) = prepare(root, in_ci, &chromium)? {
        return Ok(Some(missing));
    }
    let mut test = cargo(root);
    if nextest {
        test.args(["nextest", "run", "--run-ignored", "only", "-E", FILTER]);
    } else {
        test.args([
            "test",
            "-p",
            "app-http",
            "--test",
            "it",
            "--",
            "--ignored",
            "dashboard::",
        ]);
    }
    cmd::run(test.envs(env.iter().copied()))?;
    Ok(None)
}

/// Makes sure the browser tests can run with the Chromium at `chromium`, installing what is
/// missing when `in_ci`; `Some` with what is missing otherwise.
fn prepare(root: &Path, in_ci: bool, chromium: &str) -> Result<Option<String>> {
    if Path::new(chromium).exists() {
        println!("[ci] browser: {chromium}");
    } else if in_ci {
        println!("[ci] browser: no {chromium}; installing Debian's chromium");
        let install = || {
            cmd::run(
                Command::new("apt-get")
                    .args(["install", "-y", "--no-install-recommends", "chromium"])
                    .env("DEBIAN_FRONTEND", "noninteractive"),
            )
        };
        if install().is_err() {
            cmd::run(Command::new("apt-get").arg("update")).context("apt-get update")?;
            install().context("apt-get install chromium")?;
        }
    } else {
        return Ok(Some(format!("no {chromium} (apt-get install chromium)")));
    }

    if !cmd::succeeds(Command::new("node").arg("--version")) {
        if in_ci {
            anyhow::bail!("node is not installed");
        }
        return Ok(Some("node is not installed".into()));
    }

    let modules = root.join("tests/browser/node_modules/playwright-core");
    if modules.exists() {
        return Ok(None);
    }
    println!("[ci] browser: installing tests/browser's packages (npm ci)");
    let npm = cmd::run(
        Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--prefix"])
            .arg(root.join("tests/browser")),
    );
    match npm {
        Ok(()) => Ok(None),
        Err(e) if in_ci => Err(e.context("npm ci in tests/browser")),
        Err(e) => Ok(Some(format!("npm ci in tests/browser failed: {e:#}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_chromium_outside_ci_the_step_is_skipped_with_why() {
        let missing = prepare(Path::new("."), false, "/nonexistent/chromium").expect("no error");
        assert_eq!(
            missing.as_deref(),
            Some("no /nonexistent/chromium (apt-get install chromium)")
        );
    }
}
