//! `cargo xtask fuzz`: runs the cargo-fuzz targets of `fuzz/` for a given time each, and fails
//! when one crashes.
//!
//! Needs the nightly toolchain (`rustup toolchain install nightly`); installs cargo-fuzz when it
//! is missing. The targets are built once (`cargo +nightly fuzz build`), then each runs in turn
//! (`cargo +nightly fuzz run <target> fuzz/corpus/<target> fuzz/seeds/<target> --
//! -max_total_time=N`): the committed seeds are read, what the fuzzer finds goes to the
//! git-ignored `fuzz/corpus/<target>/`, crashing inputs to `fuzz/artifacts/<target>/`.
//!
//! The targets are built without a sanitizer by default: the domain forbids `unsafe`, so a
//! sanitizer would mostly slow the fuzzer down (about four times here); `--sanitizer address`
//! builds with one. `--keep-going` runs libFuzzer's fork mode, which records a crash and goes on,
//! to count the crashing inputs of a whole run (the command still fails when there is one).

use crate::cmd::{self, cargo};
use anyhow::{Context, Result, bail};
use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The cargo-fuzz version installed when there is none.
const CARGO_FUZZ_VERSION: &str = "0.13.2";
/// libFuzzer's limit for one input: an input this slow is a finding (libFuzzer's default is
/// twenty minutes).
const INPUT_TIMEOUT_SECS: u64 = 10;
/// The time each target gets in `cargo xtask ci`.
pub(crate) const CI_SECONDS: u64 = 30;

/// `cargo xtask fuzz` options.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct FuzzArgs {
    /// How long each target runs.
    pub(crate) seconds: u64,
    /// Only this target.
    pub(crate) target: Option<String>,
    /// libFuzzer's fork mode: record crashes and go on.
    pub(crate) keep_going: bool,
    /// cargo-fuzz's `--sanitizer` (`none`, `address`, ...).
    pub(crate) sanitizer: String,
}

impl FuzzArgs {
    /// Each target for `seconds`, no sanitizer, stop at the first crash.
    pub(crate) fn all_for(seconds: u64) -> Self {
        FuzzArgs {
            seconds,
            target: None,
            keep_going: false,
            sanitizer: "none".to_owned(),
        }
    }

    pub(crate) fn parse(args: &[String]) -> Result<Self> {
        let mut a = FuzzArgs::all_for(60);
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let (flag, inline) = match flag.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f, Some(v.to_owned())),
                _ => (flag.as_str(), None),
            };
            let mut value = || -> Result<String> {
                match inline.clone() {
                    Some(v) => Ok(v),
                    None => it
                        .next()
                        .cloned()
                        .with_context(|| format!("{flag} needs a value")),
                }
            };
            match flag {
                "--seconds" => {
                    let v = value()?;
                    a.seconds = v
                        .replace('_', "")
                        .parse()
                        .ok()
                        .filter(|s| *s > 0)
                        .with_context(|| format!("--seconds: `{v}` is not a number of seconds"))?;
                }
                "--target" => a.target = Some(value()?),
                "--sanitizer" => a.sanitizer = value()?,
                "--keep-going" => a.keep_going = true,
                other => bail!("unknown option `{other}` (see `cargo xtask help`)"),
            }
        }
        Ok(a)
    }
}

/// What one target's run gave.
#[derive(Debug, Default, PartialEq)]
struct Report {
    executions: Option<u64>,
    execs_per_sec: Option<u64>,
    corpus: Option<u64>,
    /// Crashing (or timing out, or out-of-memory) inputs written by this run.
    crashes: Vec<PathBuf>,
    /// libFuzzer exited with an error.
    failed: bool,
    took: Duration,
}

/// Runs `cargo xtask fuzz ...`.
pub(crate) fn run(root: &Path, args: &FuzzArgs) -> Result<()> {
    let targets = targets(root)?;
    let chosen: Vec<String> = match &args.target {
        Some(t) if targets.contains(t) => vec![t.clone()],
        Some(t) => bail!("no fuzz target `{t}` (targets: {})", targets.join(", ")),
        None => targets,
    };
    if !nightly_available(root) {
        bail!(
            "fuzzing needs the nightly toolchain, and `cargo +nightly` does not run: \
             `rustup toolchain install nightly`"
        );
    }
    ensure_cargo_fuzz(root)?;

    let build = Instant::now();
    let mut b = fuzz(root);
    b.args(["build", "--sanitizer", &args.sanitizer]);
    if let Some(t) = &args.target {
        b.arg(t);
    }
    cmd::run(&mut b)?;
    println!(
        "[fuzz] built {} target(s) in {:.0}s",
        chosen.len(),
        build.elapsed().as_secs_f64()
    );

    let mut reports = Vec::new();
    for target in &chosen {
        println!("\n==> [fuzz] {target}: {}s", args.seconds);
        let report = run_target(root, target, args)?;
        reports.push((target.as_str(), report));
    }

    println!("\n[fuzz] target        seconds   executions     exec/s   corpus  crashes");
    let shown = |n: Option<u64>| n.map_or_else(|| "?".to_owned(), |n| n.to_string());
    for (target, r) in &reports {
        println!(
            "[fuzz] {target:<12} {:>8.0} {:>12} {:>10} {:>8} {:>8}",
            r.took.as_secs_f64(),
            shown(r.executions),
            shown(r.execs_per_sec),
            shown(r.corpus),
            r.crashes.len()
        );
    }
    let bad: Vec<&(&str, Report)> = reports
        .iter()
        .filter(|(_, r)| r.failed || !r.crashes.is_empty())
        .collect();
    if bad.is_empty() {
        return Ok(());
    }
    for (target, r) in &bad {
        for input in &r.crashes {
            let shown = input.strip_prefix(root).unwrap_or(input).display();
            eprintln!(
                "[fuzz] {target}: {shown} (reproduce: cargo +nightly fuzz run -s {} {target} {shown})",
                args.sanitizer
            );
        }
    }
    let names: Vec<&str> = bad.iter().map(|(t, _)| *t).collect();
    bail!("fuzzing found crashes in: {}", names.join(", "))
}

/// The step of `cargo xtask ci`: each target for [`CI_SECONDS`] under `$CI`. Outside CI it does
/// not run, and says why (`Ok(Some(reason))`).
pub(crate) fn ci_step(root: &Path, in_ci: bool) -> Result<Option<String>> {
    if !in_ci {
        let tools = if !nightly_available(root) {
            "; nightly is not installed either"
        } else if !cargo_fuzz_available(root) {
            "; cargo-fuzz is not installed either"
        } else {
            ""
        };
        return Ok(Some(format!(
            "$CI is not set{tools}; run it with `cargo xtask fuzz --seconds {CI_SECONDS}`"
        )));
    }
    run(root, &FuzzArgs::all_for(CI_SECONDS))?;
    Ok(None)
}

/// `cargo +nightly fuzz`, from the repository root, with the nightly toolchain whatever the
/// environment `cargo xtask` itself runs in.
fn fuzz(root: &Path) -> Command {
    let mut c = cargo(root);
    c.args(["+nightly", "fuzz"])
        .env_remove("CARGO")
        .env_remove("RUSTC")
        .env_remove("RUSTUP_TOOLCHAIN");
    c
}

fn nightly_available(root: &Path) -> bool {
    cmd::succeeds(
        cargo(root)
            .env_remove("RUSTUP_TOOLCHAIN")
            .args(["+nightly", "--version"]),
    )
}

fn cargo_fuzz_available(root: &Path) -> bool {
    cmd::succeeds(cargo(root).args(["fuzz", "--version"]))
}

fn ensure_cargo_fuzz(root: &Path) -> Result<()> {
    if cargo_fuzz_available(root) {
        return Ok(());
    }
    println!("[fuzz] cargo-fuzz is not installed; installing {CARGO_FUZZ_VERSION}");
    cmd::run(cargo(root).args([
        "install",
        "cargo-fuzz",
        "--locked",
        "--version",
        CARGO_FUZZ_VERSION,
    ]))
}

/// The fuzz targets: the `[[bin]]`s of `fuzz/Cargo.toml`.
pub(crate) fn targets(root: &Path) -> Result<Vec<String>> {
    let manifest = root.join("fuzz/Cargo.toml");
    let text =
        fs::read_to_string(&manifest).with_context(|| format!("reading {}", manifest.display()))?;
    let doc: toml::Table = text
        .parse()
        .with_context(|| format!("parsing {}", manifest.display()))?;
    let names: Vec<String> = doc
        .get("bin")
        .and_then(toml::Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|bin| bin.get("name").and_then(toml::Value::as_str))
        .map(str::to_owned)
        .collect();
    if names.is_empty() {
        bail!("{} declares no [[bin]] fuzz target", manifest.display());
    }
    Ok(names)
}

fn run_target(root: &Path, target: &str, args: &FuzzArgs) -> Result<Report> {
    let corpus = root.join("fuzz/corpus").join(target);
    let seeds = root.join("fuzz/seeds").join(target);
    let artifacts = root.join("fuzz/artifacts").join(target);
    fs::create_dir_all(&corpus).with_context(|| format!("creating {}", corpus.display()))?;
    let before = crash_files(&artifacts)?;

    let mut c = fuzz(root);
    c.args(["run", "--sanitizer", &args.sanitizer, target])
        .arg(&corpus)
        .arg(&seeds)
        .arg("--")
        .arg(format!("-max_total_time={}", args.seconds))
        .arg(format!("-timeout={INPUT_TIMEOUT_SECS}"))
        .arg("-print_final_stats=1");
    if args.keep_going {
        c.args([
            "-fork=1",
            "-ignore_crashes=1",
            "-ignore_timeouts=1",
            "-ignore_ooms=1",
        ]);
    }
    eprintln!("$ {}", cmd::display(&c));
    let start = Instant::now();
    let mut child = c
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start `{}`", cmd::display(&c)))?;
    let mut stats = Stats::default();
    if let Some(stderr) = child.stderr.take() {
        for line in BufReader::new(stderr).split(b'\n') {
            let line =
                String::from_utf8_lossy(&line.context("reading libFuzzer's output")?).into_owned();
            eprintln!("{line}");
            stats.read(&line);
        }
    }
    let status = child.wait().context("waiting for cargo fuzz")?;
    let took = start.elapsed();
    let after = crash_files(&artifacts)?;
    let crashes = after.difference(&before).cloned().collect();
    let executions = stats.executions;
    Ok(Report {
        executions,
        execs_per_sec: stats.execs_per_sec.or_else(|| {
            let secs = stats.seconds.filter(|s| *s > 0)?;
            Some(executions? / secs)
        }),
        corpus: stats.corpus,
        crashes,
        failed: !status.success(),
        took,
    })
}

/// Inputs libFuzzer wrote for a crash, a timeout, an out-of-memory or a leak.
fn crash_files(dir: &Path) -> Result<BTreeSet<PathBuf>> {
    let mut found = BTreeSet::new();
    if !dir.is_dir() {
        return Ok(found);
    }
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if ["crash-", "timeout-", "oom-", "leak-"]
            .iter()
            .any(|p| name.starts_with(p))
        {
            found.insert(path);
        }
    }
    Ok(found)
}

/// What libFuzzer says about a run: its status lines (`#N ... corp: C/..b ... exec/s: E`, or
/// `#N: ... corp: C exec/s: E ... time: Ts` in fork mode) and its final `stat::` lines.
#[derive(Debug, Default, PartialEq)]
struct Stats {
    executions: Option<u64>,
    execs_per_sec: Option<u64>,
    corpus: Option<u64>,
    seconds: Option<u64>,
}

impl Stats {
    fn read(&mut self, line: &str) {
        let line = line.trim();
        if let Some(n) = line.strip_prefix("stat::number_of_executed_units:") {
            self.executions = n.trim().parse().ok().or(self.executions);
        } else if let Some(n) = line.strip_prefix("stat::average_exec_per_sec:") {
            self.execs_per_sec = n.trim().parse().ok().or(self.execs_per_sec);
        } else if let Some(rest) = line.strip_prefix('#')
            && line.contains("cov: ")
        {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            self.executions = digits.parse().ok().or(self.executions);
            self.corpus = number_after(line, "corp: ").or(self.corpus);
            self.seconds = number_after(line, "time: ").or(self.seconds);
        }
    }
}

/// The integer right after `label` in `line`.
fn number_after(line: &str, label: &str) -> Option<u64> {
    let (_, rest) = line.split_once(label)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn parses_fuzz_options() {
        let a = FuzzArgs::parse(&args("--seconds 600 --target=intake --keep-going")).expect("ok");
        assert_eq!(a.seconds, 600);
        assert_eq!(a.target.as_deref(), Some("intake"));
        assert!(a.keep_going);
        assert_eq!(a.sanitizer, "none");
        assert_eq!(
            FuzzArgs::parse(&[]).expect("defaults"),
            FuzzArgs::all_for(60)
        );
        assert!(FuzzArgs::parse(&args("--seconds 0")).is_err());
        assert!(FuzzArgs::parse(&args("--seconds")).is_err());
        assert!(FuzzArgs::parse(&args("--bogus")).is_err());
    }

    #[test]
    fn outside_ci_the_step_says_it_did_not_run() {
        let skipped = ci_step(&crate::workspace_root(), false).expect("no error outside CI");
        let reason = skipped.expect("skipped, not passed");
        assert!(reason.contains("$CI is not set"), "{reason}");
        assert!(reason.contains("cargo xtask fuzz --seconds 30"), "{reason}");
    }

    #[test]
    fn reads_libfuzzer_figures() {
        let mut s = Stats::default();
        s.read("#2\tINITED cov: 1 ft: 1 corp: 9/12Kb exec/s: 0 rss: 30Mb");
        s.read("#1071519\tDONE   cov: 2417 ft: 5980 corp: 1734/690Kb lim: 2285 exec/s: 51024 rss: 36Mb");
        s.read("stat::number_of_executed_units: 1071519");
        s.read("stat::average_exec_per_sec:     51024");
        assert_eq!(
            s,
            Stats {
                executions: Some(1_071_519),
                execs_per_sec: Some(51_024),
                corpus: Some(1734),
                seconds: None,
            }
        );
        let mut fork = Stats::default();
        fork.read("#95308: cov: 2999 ft: 6571 corp: 791 exec/s: 4155 oom/timeout/crash: 0/0/2 time: 26s job: 6 dft_time: 0");
        assert_eq!(
            (fork.executions, fork.corpus, fork.seconds),
            (Some(95_308), Some(791), Some(26))
        );
    }
}
