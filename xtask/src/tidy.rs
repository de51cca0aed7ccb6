//! `cargo xtask tidy`: rules of the repository that neither rustc nor clippy check.
//!
//! - every source file under `crates/*/src` opens with a `//!` module doc (files under a
//!   `tests/` directory are exempt);
//! - `domain` stays free of I/O and frameworks: its `[dependencies]` are only those of
//!   [`DOMAIN_ALLOWED`] (a new one is a decision, written here);
//! - the workspace's crates depend on each other only as ARCHITECTURE.md draws them
//!   ([`LAYERS`]): `domain` ← `adapters` ← `connector` ← `app-*` (and `xtask`); nothing depends
//!   on an `app-*` crate, in any dependency table;
//! - no `dbg!(` or `todo!(` in any `.rs` file under `crates/`;
//! - the fuzz crate (`fuzz/`, a workspace of its own that clippy and rustdoc do not see): every
//!   source file opens with a `//!` doc saying what it fuzzes and checks, no `dbg!(` or `todo!(`,
//!   and every target has committed seeds in `fuzz/seeds/<target>/`.

use anyhow::{Context, Result, bail};
use std::fs;
use std::path::{Path, PathBuf};

/// The only crates `domain` may depend on (outside dev-dependencies): data, hashing, errors,
/// logging. No runtime, no I/O, no framework.
const DOMAIN_ALLOWED: &[&str] = &[
    "async-trait",
    "base64",
    "bytes",
    "chrono",
    "hmac",
    "mockall",
    "serde",
    "serde_json",
    "serde_path_to_error",
    "sha2",
    "thiserror",
    "tracing",
];

/// The workspace's layers, inner first: a crate may depend (in any table) on crates of inner
/// layers only. `app-*` stands for every crate whose name starts so; `xtask` sits with them.
const LAYERS: &[&[&str]] = &[
    &["domain"],
    &["adapters"],
    &["connector"],
    &["app-*", "xtask"],
];

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
    problems.extend(unlisted_deps(&crates.join("domain"), DOMAIN_ALLOWED)?);
    problems.extend(layer_problems(&workspace_edges(root)?));
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

/// The dependencies a manifest declares, by package name (a renamed dependency counts by its
/// `package`), each with the table it is in: `[dependencies]` and its `[target.*.dependencies]`
/// variants, plus dev- and build-dependencies when `all_tables`.
fn declared_deps(manifest: &Path, all_tables: bool) -> Result<Vec<(String, String)>> {
    let text =
        fs::read_to_string(manifest).with_context(|| format!("reading {}", manifest.display()))?;
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
    let mut deps = Vec::new();
    for (table, entries) in found_in {
        for (key, spec) in entries {
            let package = spec
                .get("package")
                .and_then(toml::Value::as_str)
                .unwrap_or(key);
            deps.push((package.to_owned(), table.clone()));
        }
    }
    Ok(deps)
}

/// The `[dependencies]` of `krate` that `allowed` does not list.
fn unlisted_deps(krate: &Path, allowed: &[&str]) -> Result<Vec<String>> {
    let manifest = krate.join("Cargo.toml");
    if !manifest.is_file() {
        return Ok(Vec::new());
    }
    let name = dir_name(krate);
    Ok(declared_deps(&manifest, false)?
        .into_iter()
        .filter(|(package, _)| !allowed.contains(&package.as_str()))
        .map(|(package, table)| {
            format!(
                "crates/{name}/Cargo.toml: `{package}` in {table} is not allowed in {name} \
                 (its allow-list is DOMAIN_ALLOWED in xtask/src/tidy.rs)"
            )
        })
        .collect())
}

fn dir_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// One dependency between two of the workspace's crates.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Edge {
    from: String,
    to: String,
    table: String,
}

/// Every dependency between the workspace's crates (`crates/*` and `xtask`), in every table. A
/// crate is named by its directory, which is its package name here.
fn workspace_edges(root: &Path) -> Result<Vec<Edge>> {
    let mut members: Vec<PathBuf> = sorted_dir(&root.join("crates"))?
        .into_iter()
        .filter(|d| d.join("Cargo.toml").is_file())
        .collect();
    if root.join("xtask/Cargo.toml").is_file() {
        members.push(root.join("xtask"));
    }
    let names: Vec<String> = members.iter().map(|m| dir_name(m)).collect();
    let mut edges = Vec::new();
    for member in &members {
        for (package, table) in declared_deps(&member.join("Cargo.toml"), true)? {
            // A crate naming itself (to turn its own features on for its tests) is no edge.
            if names.contains(&package) && package != dir_name(member) {
                edges.push(Edge {
                    from: dir_name(member),
                    to: package,
                    table,
                });
            }
        }
    }
    Ok(edges)
}

/// The layer of a workspace crate in [`LAYERS`]; `None` for a crate the picture does not place.
fn layer(name: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| {
        layer.iter().any(|pattern| match pattern.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => *pattern == name,
        })
    })
}

/// The edges the picture does not allow, and the crates it does not place.
fn layer_problems(edges: &[Edge]) -> Vec<String> {
    let mut problems = Vec::new();
    for e in edges {
        let manifest = if e.from == "xtask" {
            "xtask/Cargo.toml".to_owned()
        } else {
            format!("crates/{}/Cargo.toml", e.from)
        };
        match (layer(&e.from), layer(&e.to)) {
            (Some(from), Some(to)) if to < from => {}
            (Some(_), Some(_)) => problems.push(format!(
                "{manifest}: `{}` in {} points outwards or sideways: dependencies go \
                 domain <- adapters <- connector <- app-*, and nothing depends on an app-* crate",
                e.to, e.table
            )),
            (None, _) => problems.push(format!(
                "{manifest}: the crate `{}` has no place in LAYERS (xtask/src/tidy.rs) and \
                 ARCHITECTURE.md",
                e.from
            )),
            (_, None) => problems.push(format!(
                "{manifest}: `{}` has no place in LAYERS (xtask/src/tidy.rs) and ARCHITECTURE.md",
                e.to
            )),
        }
    }
    problems
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

    fn manifest(root: &Path, dir: &str, deps: &str) {
        let krate = root.join(dir);
        fs::create_dir_all(&krate).expect("crate dir");
        let name = dir.rsplit('/').next().expect("name");
        fs::write(
            krate.join("Cargo.toml"),
            format!("[package]\nname = \"{name}\"\n\n{deps}"),
        )
        .expect("manifest");
    }

    #[test]
    fn domain_dependencies_outside_its_allow_list_are_found_even_renamed() {
        let dir = tempfile::tempdir().expect("temp dir");
        manifest(
            dir.path(),
            "domain",
            "[dependencies]\nserde = \"1\"\nrt = { package = \"tokio\", version = \"1\" }\n\
             hyper.workspace = true\n\n[dev-dependencies]\naxum = \"0.8\"\n",
        );
        let found = unlisted_deps(&dir.path().join("domain"), DOMAIN_ALLOWED).expect("checks");
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found.iter().any(|p| p.contains("`tokio`")));
        assert!(found.iter().any(|p| p.contains("`hyper`")));
    }

    /// The picture holds: an app crate depending on another, `adapters` on `connector`, or
    /// anything on an app crate (a dev-dependency or renamed included) fails tidy.
    #[test]
    fn a_new_edge_against_the_layers_fails() {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path();
        manifest(root, "crates/domain", "[dependencies]\nserde = \"1\"\n");
        manifest(
            root,
            "crates/adapters",
            "[dependencies]\ndomain.workspace = true\n\
             [dev-dependencies]\nadapters = { path = \".\", features = [\"testing\"] }\n",
        );
        manifest(
            root,
            "crates/connector",
            "[dependencies]\ndomain.workspace = true\nadapters.workspace = true\n",
        );
        manifest(
            root,
            "crates/app-http",
            "[dependencies]\nconnector.workspace = true\nadapters.workspace = true\n",
        );
        manifest(
            root,
            "crates/app-worker",
            "[dependencies]\nconnector.workspace = true\n",
        );
        manifest(
            root,
            "xtask",
            "[dependencies]\nconnector.workspace = true\n",
        );
        assert_eq!(
            layer_problems(&workspace_edges(root).expect("edges")),
            Vec::<String>::new()
        );

        manifest(
            root,
            "crates/app-http",
            "[dependencies]\nconnector.workspace = true\nw = { package = \"app-worker\", path = \"../app-worker\" }\n",
        );
        manifest(
            root,
            "crates/adapters",
            "[dependencies]\ndomain.workspace = true\n[dev-dependencies]\nconnector.workspace = true\n",
        );
        manifest(root, "xtask", "[dependencies]\napp-cli.workspace = true\n");
        manifest(
            root,
            "crates/app-cli",
            "[dependencies]\nconnector.workspace = true\n",
        );
        manifest(
            root,
            "crates/domain",
            "[dependencies]\nadapters.workspace = true\n",
        );
        let problems = layer_problems(&workspace_edges(root).expect("edges"));
        assert_eq!(problems.len(), 4, "{problems:#?}");
        for (manifest, dep) in [
            (
                "crates/app-http/Cargo.toml",
                "`app-worker` in [dependencies]",
            ),
            (
                "crates/adapters/Cargo.toml",
                "`connector` in [dev-dependencies]",
            ),
            ("xtask/Cargo.toml", "`app-cli` in [dependencies]"),
            ("crates/domain/Cargo.toml", "`adapters` in [dependencies]"),
        ] {
            assert!(
                problems
                    .iter()
                    .any(|p| p.starts_with(manifest) && p.contains(dep)),
                "{manifest} {dep}: {problems:#?}"
            );
        }

        manifest(
            root,
            "crates/lambda",
            "[dependencies]\nconnector.workspace = true\n",
        );
        let problems = layer_problems(&workspace_edges(root).expect("edges"));
        assert!(
            problems.iter().any(|p| p.contains("`lambda` has no place")),
            "{problems:#?}"
        );
    }
}
