//! `cargo xtask tidy`: rules of the repository that neither rustc nor clippy check.
//!
//! - every source file under `crates/*/src` opens with a `//!` module doc (files under a
//!   `tests/` directory are exempt);
//! - `domain` stays free of I/O and frameworks: none of [`DOMAIN_FORBIDDEN`] in its
//!   `[dependencies]`;
//! - `adapters` never depends on an app crate ([`ADAPTERS_FORBIDDEN`]);
//! - no `dbg!(` or `todo!(` in any `.rs` file under `crates/`;
//! - the fuzz crate (`fuzz/`, a workspace of its own that clippy and rustdoc do not see): every
//!   source file opens with a `//!` doc saying what it fuzzes and checks, no `dbg!(` or `todo!(`,
//!   and every target has committed seeds in `fuzz/seeds/<target>/`.

use anyhow::{Context, Result, bail};
use std::fs;
use std::path::{Path, PathBuf};

/// Crates `domain` must not depend on (outside dev-dependencies).
const DOMAIN_FORBIDDEN: &[&str] = &[
    "tokio",
    "axum",
    "sea-orm",
    "sea-orm-migration",
    "sqlx",
    "reqwest",
    "redis",
    "figment",
    "lettre",
    "hyper",
];

/// Crates `adapters` must not depend on, in any dependency table.
const ADAPTERS_FORBIDDEN: &[&str] = &["app-http", "app-worker", "app-cli"];

/// Runs every check; reports all violations at once.
pub(crate) fn run(root: &Path) -> Result<()> {
    let crates = root.join("crates");
    let mut problems = Vec::new();
    let mut sources = Vec::new();
    for krate in sorted_dir(&crates)? {
        if krate.join("Cargo.toml").is_file() {
            rust_files(&krate, &mut sources)?;
        }
    }
    let fuzz = root.join("fuzz");
    let mut fuzz_sources = Vec::new();
    rust_files(&fuzz, &mut fuzz_sources)?;
    sources.extend(fuzz_sources);
    for file in &sources {
        let text =
            fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let shown = file.strip_prefix(root).unwrap_or(file).display();
        let in_src = file.strip_prefix(&crates).is_ok_and(|rel| {
            rel.components()
                .nth(1)
                .is_some_and(|c| c.as_os_str() == "src")
        });
        let in_tests = file.components().any(|c| c.as_os_str() == "tests");
        let in_fuzz = file.starts_with(&fuzz);
        if ((in_src && !in_tests) || in_fuzz) && !starts_with_module_doc(&text) {
            problems.push(format!(
                "{shown}: does not start with a `//!` module doc comment"
            ));
        }
        for (n, line) in text.lines().enumerate() {
            for banned in ["dbg!(", "todo!("] {
                if line.contains(banned) {
                    problems.push(format!("{shown}:{}: `{banned}` left in", n + 1));
                }
            }
        }
    }
    problems.extend(forbidden_deps(
        &crates.join("domain"),
        DOMAIN_FORBIDDEN,
        false,
    )?);
    problems.extend(forbidden_deps(
        &crates.join("adapters"),
        ADAPTERS_FORBIDDEN,
        true,
    )?);
    if fuzz.join("Cargo.toml").is_file() {
        for target in crate::fuzz::targets(root)? {
            let seeds = fuzz.join("seeds").join(&target);
            if sorted_dir(&seeds)?.is_empty() {
                problems.push(format!(
                    "fuzz/seeds/{target}/: the fuzz target `{target}` has no seeds"
                ));
            }
        }
    }

    if problems.is_empty() {
        return Ok(());
    }
    for p in &problems {
        eprintln!("tidy: {p}");
    }
    bail!("tidy found {} problem(s)", problems.len())
}

/// Whether the first non-blank line is a `//!` comment.
fn starts_with_module_doc(text: &str) -> bool {
    text.trim_start_matches('\u{feff}')
        .lines()
        .find(|l| !l.trim().is_empty())
        .is_some_and(|l| l.trim_start().starts_with("//!"))
}

/// The entries of `dir`, sorted; empty when it does not exist.
fn sorted_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut entries = fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<Vec<_>>>()?;
    entries.sort();
    Ok(entries)
}

/// Every `.rs` file below `dir`, skipping `target` directories and hidden entries.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for path in sorted_dir(dir)? {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with('.') || name == "target" {
            continue;
        }
        if path.is_dir() {
            rust_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// The `forbidden` crates `krate`'s manifest depends on: `[dependencies]` and its
/// `[target.*.dependencies]` variants, plus dev- and build-dependencies when `all_tables`.
/// Renamed dependencies count by their `package`.
fn forbidden_deps(krate: &Path, forbidden: &[&str], all_tables: bool) -> Result<Vec<String>> {
    let manifest = krate.join("Cargo.toml");
    if !manifest.is_file() {
        return Ok(Vec::new());
    }
    let text =
        fs::read_to_string(&manifest).with_context(|| format!("reading {}", manifest.display()))?;
    let doc: toml::Table = text
        .parse()
        .with_context(|| format!("parsing {}", manifest.display()))?;
    let tables: &[&str] = if all_tables {
        &["dependencies", "dev-dependencies", "build-dependencies"]
    } else {
        &["dependencies"]
    };
    let mut found_in: Vec<(String, &toml::Table)> = Vec::new();
    for &table in tables {
        if let Some(deps) = doc.get(table).and_then(toml::Value::as_table) {
            found_in.push((format!("[{table}]"), deps));
        }
        if let Some(targets) = doc.get("target").and_then(toml::Value::as_table) {
            for (cfg, target) in targets {
                if let Some(deps) = target.get(table).and_then(toml::Value::as_table) {
                    found_in.push((format!("[target.{cfg}.{table}]"), deps));
                }
            }
        }
    }
    let name = krate
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut problems = Vec::new();
    for (table, deps) in found_in {
        for (key, spec) in deps {
            let package = spec
                .get("package")
                .and_then(toml::Value::as_str)
                .unwrap_or(key);
            if forbidden.contains(&package) {
                problems.push(format!(
                    "crates/{name}/Cargo.toml: `{package}` in {table} is not allowed in {name}"
                ));
            }
        }
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `cargo test` enforces tidy too.
    #[test]
    fn workspace_is_tidy() {
        if let Err(e) = run(&crate::workspace_root()) {
            panic!("{e:#} (details above; run `cargo xtask tidy`)");
        }
    }

    #[test]
    fn module_doc_detection() {
        assert!(starts_with_module_doc("//! Docs.\nfn f() {}"));
        assert!(starts_with_module_doc("\n  //! Docs."));
        assert!(!starts_with_module_doc("/// Item doc.\nfn f() {}"));
        assert!(!starts_with_module_doc("use x;\n//! late"));
        assert!(!starts_with_module_doc(""));
    }

    #[test]
    fn forbidden_dependencies_are_found_even_renamed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let krate = dir.path().join("domain");
        fs::create_dir(&krate).expect("crate dir");
        fs::write(
            krate.join("Cargo.toml"),
            "[package]\nname = \"domain\"\n\n[dependencies]\nserde = \"1\"\n\
             rt = { package = \"tokio\", version = \"1\" }\nhyper.workspace = true\n\n\
             [dev-dependencies]\naxum = \"0.8\"\n",
        )
        .expect("manifest");
        let found = forbidden_deps(&krate, DOMAIN_FORBIDDEN, false).expect("checks");
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found.iter().any(|p| p.contains("`tokio`")));
        assert!(found.iter().any(|p| p.contains("`hyper`")));
        let all = forbidden_deps(&krate, &["axum"], true).expect("checks");
        assert_eq!(all.len(), 1, "{all:?}");
    }
}
