//! Project automation for the La Zona connector, run as `cargo xtask <command>`.
//!
//! - `ci`: the whole gate (format, clippy, tests, doctests, rustdoc, tidy), as `.ci/run` runs it.
//! - `tidy`: the repository's own rules (module docs, layering, no `dbg!`/`todo!`).
//! - `fuzz`: the cargo-fuzz targets of `fuzz/`, each for a given time.
//! - `schemathesis`: the operations API against its OpenAPI document (a step of `ci`).
//! - `bench ingest`: the webhook-intake load benchmark against a release `lazona-http`.

// A command-line tool: printing its report on stdout is its job.
#![allow(clippy::print_stdout)]

mod bench;
mod browser;
mod ci;
mod cmd;
mod fuzz;
mod schemathesis;
mod tidy;

use anyhow::{Result, bail};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const HELP: &str = "\
cargo xtask <command>

Commands:
  ci                      fmt --check, clippy -D warnings, tests (nextest when installed),
                          doctests, rustdoc -D warnings, tidy, then fuzzing. With $CI set,
                          checks (and starts) Postgres and Redis first, and fuzzes each
                          target for 30 s (without $CI the fuzz step is SKIPPED).
  tidy                    repository rules: `//!` docs on every module, domain/adapters
                          layering, no `dbg!(` / `todo!(` under crates/ and fuzz/, seeds
                          for every fuzz target.
  fuzz [options]          run the cargo-fuzz targets of fuzz/ (nightly; installs cargo-fuzz
                          when missing): builds them, runs each in turn, fails on a crash.
      --seconds N             how long each target runs (default 60)
      --target NAME           only this target (signature, intake, order)
      --keep-going            libFuzzer's fork mode: record crashes and go on (still fails)
      --sanitizer S           none (default), address, ...
  schemathesis            the operations API against its OpenAPI document (the ci step alone):
                          Schemathesis, installed under target/ when missing, against the
                          built lazona-http on a throwaway SQLite database.
  bench ingest [options]  webhook-intake load benchmark (builds and starts a release
                          lazona-http on a fresh database unless --url is given).
      --db sqlite|postgres    database to benchmark (required without --url)
      --requests N            measured requests (default 100000)
      --concurrency C         keep-alive connections (default 64)
      --warmup N              unmeasured requests first (default 5000)
      --url URL               use an already-running server, e.g. http://127.0.0.1:8000
      --database-url URL      with --url: that server's database, for the inbox check
  bench orders [options]  end-to-end orders/s: a release lazona-http with its worker, pointed at
                          the sandbox's fakes (Koiki, WCFM, WordPress, a counting SMTP sink),
                          from webhook accepted to every label mailed.
      --db sqlite|postgres    database (required; Postgres: a fresh database, dropped after)
      --orders N              orders posted (default 10000)
      --connections C         keep-alive connections (default 16)
      --vendors 1|2|mix       Koiki vendors per order (default 1; mix: 2 for every 4th)
      --set KEY=VALUE         a server setting for the run (worker.concurrency=64), repeatable
  bench reconcile [options]  one reconciliation pass over the sandbox shop's orders, of which
                          some never reached the inbox: the pass timed, those booked exactly
                          once, and a second pass that writes nothing.
      --db sqlite|postgres    database (required)
      --orders N              orders in the shop (default 10000)
      --missing M             of them never received (default 100)
  help                    this text
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<()> {
    let root = workspace_root();
    match args.first().map(String::as_str) {
        None | Some("help" | "-h" | "--help") => {
            print!("{HELP}");
            Ok(())
        }
        Some("ci") => {
            no_more_args(&args[1..])?;
            ci::run(&root)
        }
        Some("tidy") => {
            no_more_args(&args[1..])?;
            tidy::run(&root)?;
            println!("tidy: ok");
            Ok(())
        }
        Some("fuzz") => fuzz::run(&root, &fuzz::FuzzArgs::parse(&args[1..])?),
        Some("schemathesis") => {
            no_more_args(&args[1..])?;
            // Asked for by name: installed when missing, as in CI.
            schemathesis::run(&root, true)?;
            Ok(())
        }
        Some("bench") => bench::run(&root, &args[1..]),
        Some(other) => {
            print!("{HELP}");
            bail!("unknown command `{other}`")
        }
    }
}

fn no_more_args(rest: &[String]) -> Result<()> {
    if let Some(extra) = rest.first() {
        bail!("unexpected argument `{extra}` (see `cargo xtask help`)");
    }
    Ok(())
}

/// The workspace root: xtask lives one level below it. `cargo run` and `cargo test` give the
/// manifest directory at run time; the compile-time one is the fallback (it goes stale when a
/// checkout and its `target/` are moved together).
fn workspace_root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest_dir
        .parent()
        .map_or_else(|| manifest_dir.clone(), Path::to_path_buf)
}
