//! Running external commands: echo them, run them, turn a failure into an error.

use anyhow::{Context, Result, bail};
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

/// `cargo`, run from `root`. The `cargo` on `PATH` (the rustup proxy) is used rather than
/// `$CARGO`, so toolchain components (`cargo fmt`, `cargo clippy`) and plug-ins installed in
/// `~/.cargo/bin` (`cargo nextest`) resolve as they do in a shell.
///
/// The variables `cargo run` set for xtask itself (`CARGO_PKG_*`, `CARGO_MANIFEST_DIR`, ...) are
/// removed: build scripts that watch them (ring's) would otherwise see them change between
/// `cargo xtask ...` and a plain `cargo ...`, and rebuild half the tree each time.
pub(crate) fn cargo(root: &Path) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root);
    for (key, _) in std::env::vars_os() {
        let key_str = key.to_string_lossy();
        if [
            "CARGO_PKG_",
            "CARGO_MANIFEST_",
            "CARGO_CRATE_",
            "CARGO_BIN_",
            "CARGO_PRIMARY_PACKAGE",
        ]
        .iter()
        .any(|prefix| key_str.starts_with(prefix))
        {
            cmd.env_remove(&key);
        }
    }
    cmd
}

/// Runs `cmd` with inherited stdio; fails when it cannot start or exits unsuccessfully.
pub(crate) fn run(cmd: &mut Command) -> Result<()> {
    let shown = display(cmd);
    eprintln!("$ {shown}");
    let status = cmd
        .status()
        .with_context(|| format!("could not start `{shown}`"))?;
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }
    Ok(())
}

/// Whether `cmd` runs and exits successfully, with its output discarded.
pub(crate) fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `cmd` as a shell-like line, its environment overrides first.
pub(crate) fn display(cmd: &Command) -> String {
    let mut out = String::new();
    for (key, value) in cmd.get_envs() {
        if let Some(value) = value {
            let _ = write!(out, "{}={} ", key.to_string_lossy(), quote(value));
        }
    }
    out.push_str(&quote(cmd.get_program()));
    for arg in cmd.get_args() {
        out.push(' ');
        out.push_str(&quote(arg));
    }
    out
}

fn quote(s: &OsStr) -> String {
    let s = s.to_string_lossy();
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%".contains(c));
    if plain {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}
