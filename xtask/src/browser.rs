//! What the dashboard's browser test needs: Debian's Chromium and `tests/browser/node_modules`
//! (playwright-core). In CI both are installed when missing, and a failure fails the run;
//! elsewhere a missing piece is reported and the test skips itself.

use crate::cmd;
use anyhow::{Context, Result};
use std::path::Path;
use std::process::Command;

const CHROMIUM: &str = "/usr/bin/chromium";

/// Makes sure the browser test can run (installing what is missing when `in_ci`).
pub(crate) fn prepare(root: &Path, in_ci: bool) -> Result<()> {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| CHROMIUM.to_owned());
    if Path::new(&chromium).exists() {
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
        println!("[ci] browser: no {chromium} (apt-get install chromium); the browser test skips");
    }

    let modules = root.join("tests/browser/node_modules/playwright-core");
    if modules.exists() {
        return Ok(());
    }
    println!("[ci] browser: installing tests/browser's packages (npm ci)");
    let npm = cmd::run(
        Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--prefix"])
            .arg(root.join("tests/browser")),
    );
    match npm {
        Ok(()) => Ok(()),
        Err(e) if in_ci => Err(e.context("npm ci in tests/browser")),
        Err(e) => {
            println!("[ci] browser: npm ci failed ({e:#}); the browser test skips");
            Ok(())
        }
    }
}
