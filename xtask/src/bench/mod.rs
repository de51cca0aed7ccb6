//! `cargo xtask bench ingest`: the webhook-intake load benchmark.
//!
//! Builds `lazona-http` in release, starts it on a free port against a fresh database (a SQLite
//! file in a temp dir, or a new Postgres database dropped afterwards), posts signed WooCommerce
//! `order.created` deliveries over keep-alive connections (warm-up, then the measured phase),
//! stops the server with SIGTERM and checks that every accepted webhook is in the inbox. It
//! prints the results and a row for `BENCHMARKS.md`.

mod alerts;
mod load;
mod order;
mod orders;
mod queue;
mod reconcile;
mod retention;

use crate::cmd;
use anyhow::{Context, Result, bail};
use sea_orm::{ConnectOptions, ConnectionTrait, DatabaseConnection, Statement};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::runtime::Runtime;

/// The Postgres server the benchmark creates its database on.
const POSTGRES_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const POSTGRES_BASE_URL: &str = "postgres://postgres@127.0.0.1:5432";
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
const DELIVERIES_PATH: &str = "/api/deliveries/";
/// Order ids start here (warm-up first, then the measured phase).
const FIRST_ORDER_ID: u64 = 1_000_000;

/// Dispatches `cargo xtask bench <what> ...`.
pub(crate) fn run(root: &Path, args: &[String]) -> Result<()> {
    if cfg!(debug_assertions) {
        // The load client shares the cores with the server it measures: a debug client would
        // eat the server's CPU. Re-run this command from an optimised build.
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut release = Command::new(cargo);
        release
            .current_dir(root)
            .args([
                "run",
                "--release",
                "--quiet",
                "--package",
                "xtask",
                "--",
                "bench",
            ])
            .args(args);
        return cmd::run(&mut release);
    }
    match args.first().map(String::as_str) {
        Some("ingest") => ingest(root, &IngestArgs::parse(&args[1..])?),
        Some("queue") => queue::run(&args[1..]),
        Some("orders") => orders::run(root, &args[1..]),
        Some("reconcile") => reconcile::run(&args[1..]),
        Some("alerts") => alerts::run(&args[1..]),
        Some("retention") => retention::run(root, &args[1..]),
        Some(other) => {
            bail!(
                "unknown benchmark `{other}` (available: ingest, queue, orders, reconcile, alerts, retention)"
            )
        }
        None => bail!("which benchmark? `cargo xtask bench ingest --db sqlite|postgres`"),
    }
}

/// The database kind under test.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Db {
    Sqlite,
    Postgres,
}

impl Db {
    /// The value of a `--db` option.
    fn parse(value: &str) -> Result<Db> {
        match value {
            "sqlite" => Ok(Db::Sqlite),
            "postgres" | "postgresql" => Ok(Db::Postgres),
            other => bail!("--db: `{other}` (expected sqlite or postgres)"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Db::Sqlite => "sqlite",
            Db::Postgres => "postgres",
        }
    }
}

/// `bench ingest` options.
struct IngestArgs {
    db: Option<Db>,
    requests: usize,
    concurrency: usize,
    warmup: usize,
    url: Option<String>,
    database_url: Option<String>,
    /// Run the server's in-process worker and report webhook-to-job-done latency.
    with_worker: bool,
    /// `sql` or `redis` (with `--with-worker`).
    queue: String,
}

impl IngestArgs {
    fn parse(args: &[String]) -> Result<Self> {
        let mut a = IngestArgs {
            db: None,
            requests: 100_000,
            concurrency: 64,
            warmup: 5_000,
            url: None,
            database_url: None,
            with_worker: false,
            queue: "sql".to_owned(),
        };
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
            let number = |v: String| -> Result<usize> {
                v.replace('_', "")
                    .parse()
                    .with_context(|| format!("{flag}: `{v}` is not a count"))
            };
            match flag {
                "--db" => {
                    a.db = Some(Db::parse(&value()?)?);
                }
                "--requests" => a.requests = number(value()?)?,
                "--concurrency" => a.concurrency = number(value()?)?,
                "--warmup" => a.warmup = number(value()?)?,
                "--url" => a.url = Some(value()?),
                "--database-url" => a.database_url = Some(value()?),
                "--with-worker" => a.with_worker = true,
                "--queue" => a.queue = value()?,
                other => bail!("bench ingest: unknown option `{other}` (see `cargo xtask help`)"),
            }
        }
        if a.url.is_none() && a.db.is_none() {
            bail!("bench ingest: --db sqlite|postgres is required (or --url for a running server)");
        }
        if a.url.is_none() && a.database_url.is_some() {
            bail!("bench ingest: --database-url only goes with --url");
        }
        if a.concurrency == 0 || a.requests == 0 {
            bail!("bench ingest: --requests and --concurrency must be at least 1");
        }
        Ok(a)
    }

    /// The command line that reproduces this run.
    fn command(&self) -> String {
        let mut c = String::from("cargo xtask bench ingest");
        if let Some(db) = self.db {
            c += &format!(" --db {}", db.name());
        }
        c += &format!(
            " --requests {} --concurrency {} --warmup {}",
            self.requests, self.concurrency, self.warmup
        );
        if let Some(url) = &self.url {
            c += &format!(" --url {url}");
        }
        if self.with_worker {
            c += &format!(" --with-worker --queue {}", self.queue);
        }
        if self.database_url.is_some() {
            c += " --database-url <url>";
        }
        c
    }

    /// The `db` column of the report.
    fn label(&self) -> String {
        match (self.db, &self.database_url) {
            (Some(db), _) => db.name().to_owned(),
            (None, Some(url)) if url.starts_with("sqlite:") => "sqlite".to_owned(),
            (None, Some(url)) if url.starts_with("postgres") => "postgres".to_owned(),
            _ => "external".to_owned(),
        }
    }
}

fn ingest(root: &Path, args: &IngestArgs) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    match &args.url {
        Some(url) => {
            let authority = authority_of(url)?;
            let outcome = load_and_report(&rt, args, &authority, None)?;
            match &args.database_url {
                Some(db_url) => rt.block_on(inbox_check(db_url, outcome.accepted))?,
                None => println!("inbox check: skipped (no --database-url)"),
            }
            outcome.verdict()
        }
        None => {
            let db = args.db.context("--db is required")?;
            let bin = build_server(root)?;
            let bench_db = rt.block_on(BenchDb::create(db))?;
            let result = with_server(&rt, args, &bin, &bench_db);
            let dropped = rt.block_on(bench_db.remove());
            result.and(dropped)
        }
    }
}

/// Starts the server on `db`, runs the load, stops it, checks the inbox.
fn with_server(rt: &Runtime, args: &IngestArgs, bin: &Path, db: &BenchDb) -> Result<()> {
    let port = free_port()?;
    let authority = format!("127.0.0.1:{port}");
    let mut server = Server::start(bin, &authority, &db.url, args)?;
    rt.block_on(server.wait_ready(&authority))?;
    let outcome = load_and_report(rt, args, &authority, Some((&mut server, db.url.as_str())))?;
    rt.block_on(inbox_check(&db.url, outcome.accepted))?;
    outcome.verdict()
}

/// What the run accepted and rejected, both phases together.
struct Outcome {
    accepted: u64,
    failed: u64,
}

impl Outcome {
    fn verdict(&self) -> Result<()> {
        if self.failed > 0 {
            bail!("{} request(s) were not accepted (see above)", self.failed);
        }
        Ok(())
    }
}

/// Prepares the deliveries, runs both phases, stops `server` (when we own it) and prints the
/// report.
fn load_and_report(
    rt: &Runtime,
    args: &IngestArgs,
    authority: &str,
    server: Option<(&mut Server, &str)>,
) -> Result<Outcome> {
    let tag = run_tag();
    let start = Instant::now();
    let warmup = load::prepare(FIRST_ORDER_ID, args.warmup, &tag)?;
    let measured = load::prepare(FIRST_ORDER_ID + args.warmup as u64, args.requests, &tag)?;
    let bytes = measured.first().map_or(0, load::Delivery::len);
    println!(
        "prepared {} signed deliveries (~{bytes} bytes each) in {:.1}s",
        args.warmup + args.requests,
        start.elapsed().as_secs_f64()
    );
    println!(
        "posting to http://{authority}{DELIVERIES_PATH}: {} warm-up + {} measured requests over {} connections",
        args.warmup, args.requests, args.concurrency
    );
    let target = load::Target {
        authority: authority.to_owned(),
        path: DELIVERIES_PATH.to_owned(),
    };
    let (warm, meas) = rt.block_on(load::run(&target, args.concurrency, warmup, measured))?;
    if let Some((server, db_url)) = server {
        if args.with_worker {
            let accepted = (warm.accepted + meas.accepted) as i64;
            rt.block_on(queue::report_end_to_end(db_url, accepted))?;
        }
        server.stop()?;
    }

    let secs = meas.elapsed.as_secs_f64();
    let rate = if secs > 0.0 {
        meas.accepted as f64 / secs
    } else {
        0.0
    };
    let (p50, p90, p99, max) = (
        meas.percentile_ms(0.50),
        meas.percentile_ms(0.90),
        meas.percentile_ms(0.99),
        meas.percentile_ms(1.0),
    );
    println!();
    println!(
        "warm-up:  {} accepted, {} not",
        warm.accepted,
        warm.non_2xx()
    );
    println!("measured: {} requests in {secs:.2}s", args.requests);
    println!("  accepted webhooks/s: {rate:.0}");
    println!("  latency ms: p50 {p50:.2}  p90 {p90:.2}  p99 {p99:.2}  max {max:.2}");
    println!("  non-2xx: {}", meas.non_2xx());
    for (phase, stats) in [("warm-up", &warm), ("measured", &meas)] {
        for (status, n) in &stats.statuses {
            println!("  {phase}: {n} answered {status}");
        }
        if stats.errors > 0 {
            println!(
                "  {phase}: {} without an answer (first: {})",
                stats.errors,
                stats.first_error.as_deref().unwrap_or("?")
            );
        }
    }
    println!();
    println!("| db | requests | concurrency | req/s | p50 ms | p99 ms | max ms | non-2xx |");
    println!("|----|---------:|------------:|------:|-------:|-------:|-------:|--------:|");
    println!(
        "| {} | {} | {} | {rate:.0} | {p50:.2} | {p99:.2} | {max:.2} | {} |",
        args.label(),
        args.requests,
        args.concurrency,
        meas.non_2xx()
    );
    println!();
    println!("command: {}", args.command());
    Ok(Outcome {
        accepted: warm.accepted + meas.accepted,
        failed: warm.non_2xx() + meas.non_2xx(),
    })
}

/// `host:port` of an `http://` URL.
fn authority_of(url: &str) -> Result<String> {
    let uri: hyper::Uri = url
        .parse()
        .with_context(|| format!("--url: `{url}` is not a URL"))?;
    if uri.scheme_str() != Some("http") {
        bail!("--url: only http:// is supported");
    }
    let host = uri.host().context("--url: no host")?;
    Ok(format!("{host}:{}", uri.port_u16().unwrap_or(80)))
}

/// `cargo build --release` of the server; its path.
fn build_server(root: &Path) -> Result<PathBuf> {
    cmd::run(cmd::cargo(root).args([
        "build",
        "--release",
        "-p",
        "app-http",
        "--bin",
        "lazona-http",
    ]))?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|t| if t.is_relative() { root.join(t) } else { t })
        .unwrap_or_else(|| root.join("target"));
    let bin = target.join("release").join("lazona-http");
    if !bin.is_file() {
        bail!("{} missing after the build", bin.display());
    }
    Ok(bin)
}

/// A port nothing listens on right now.
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// A short, unique-enough tag for this run (database name, delivery ids).
fn run_tag() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{:x}",
        (nanos as u64) ^ (u64::from(std::process::id()) << 32)
    )
}

/// The benchmark's own database.
struct BenchDb {
    url: String,
    /// The SQLite file's directory, removed on drop.
    _dir: Option<tempfile::TempDir>,
    /// The Postgres database to drop afterwards.
    postgres_name: Option<String>,
}

impl BenchDb {
    async fn create(db: Db) -> Result<Self> {
        match db {
            Db::Sqlite => {
                let dir = tempfile::Builder::new()
                    .prefix("lazona-bench-")
                    .tempdir()
                    .context("creating a temp dir")?;
                let url = format!("sqlite://{}/bench.db?mode=rwc", dir.path().display());
                println!("database: {url}");
                Ok(BenchDb {
                    url,
                    _dir: Some(dir),
                    postgres_name: None,
                })
            }
            Db::Postgres => {
                let name = format!("lazona_bench_{}", run_tag());
                let admin = connect(POSTGRES_ADMIN_URL).await?;
                admin
                    .execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await
                    .with_context(|| format!("creating database {name}"))?;
                admin.close().await.ok();
                let url = format!("{POSTGRES_BASE_URL}/{name}");
                println!("database: {url}");
                Ok(BenchDb {
                    url,
                    _dir: None,
                    postgres_name: Some(name),
                })
            }
        }
    }

    /// Drops the Postgres database (the SQLite directory goes with `self`).
    async fn remove(self) -> Result<()> {
        if let Some(name) = &self.postgres_name {
            let admin = connect(POSTGRES_ADMIN_URL).await?;
            admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await
                .with_context(|| format!("dropping database {name}"))?;
            admin.close().await.ok();
            println!("database {name} dropped");
        }
        Ok(())
    }
}

async fn connect(url: &str) -> Result<DatabaseConnection> {
    let mut opts = ConnectOptions::new(url.to_owned());
    opts.sqlx_logging(false)
        .max_connections(1)
        .connect_timeout(Duration::from_secs(10));
    sea_orm::Database::connect(opts)
        .await
        .with_context(|| format!("connecting to {url}"))
}

/// Fails unless the inbox holds exactly the `accepted` webhooks.
async fn inbox_check(db_url: &str, accepted: u64) -> Result<()> {
    let conn = connect(db_url).await?;
    let backend = conn.get_database_backend();
    let row = conn
        .query_one_raw(Statement::from_string(
            backend,
            "SELECT COUNT(*) FROM webhooks",
        ))
        .await
        .context("counting the inbox")?
        .context("COUNT(*) returned no row")?;
    let rows: i64 = row.try_get_by_index(0).context("reading COUNT(*)")?;
    conn.close().await.ok();
    if u64::try_from(rows).ok() != Some(accepted) {
        bail!(
            "inbox check FAILED: {rows} rows in `webhooks`, but {accepted} webhooks were accepted"
        );
    }
    println!("inbox check: {rows} rows, all accepted webhooks stored");
    Ok(())
}

/// A `lazona-http` child process, killed if still running when dropped.
struct Server {
    child: Child,
}

impl Server {
    fn start(bin: &Path, listen: &str, db_url: &str, args: &IngestArgs) -> Result<Self> {
        let queue = [("LAZONA_QUEUE__BACKEND", args.queue.as_str())];
        Self::start_with(bin, listen, db_url, args.with_worker, &queue)
    }

    /// The server on `db_url`, its worker in-process or not, with `env` on top.
    fn start_with(
        bin: &Path,
        listen: &str,
        db_url: &str,
        with_worker: bool,
        env: &[(&str, &str)],
    ) -> Result<Self> {
        let mut cmd = Command::new(bin);
        // The caller's own configuration must not leak into the benchmark.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("LAZONA_") {
                cmd.env_remove(key);
            }
        }
        cmd.env("LAZONA_LISTEN", listen)
            .env("WC_WEBHOOK_SECRET", load::SECRET)
            .env("DATABASE_URL", db_url)
            .env("LAZONA_WORKER__EMBEDDED", with_worker.to_string())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null());
        for (key, value) in env {
            cmd.env(key, value);
        }
        eprintln!("$ {}", cmd::display(&cmd));
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        Ok(Server { child })
    }

    /// Polls `GET /readyz` until it answers 200.
    async fn wait_ready(&mut self, authority: &str) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut last = String::from("no answer yet");
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!("lazona-http exited before it was ready ({status})");
            }
            match load::get_status(authority, "/readyz").await {
                Ok(s) if s.as_u16() == 200 => {
                    println!("lazona-http ready on {authority}");
                    return Ok(());
                }
                Ok(s) => last = format!("answered {s}"),
                Err(e) => last = format!("{e:#}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!(
            "lazona-http not ready after {}s: /readyz {last}",
            READY_TIMEOUT.as_secs()
        )
    }

    /// SIGTERM, then waits for the graceful shutdown.
    fn stop(&mut self) -> Result<()> {
        if self.child.try_wait()?.is_some() {
            bail!("lazona-http died during the benchmark");
        }
        cmd::run(Command::new("kill").args(["-TERM", &self.child.id().to_string()]))?;
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    eprintln!("warning: lazona-http exited with {status} after SIGTERM");
                }
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!(
            "lazona-http still running {}s after SIGTERM",
            STOP_TIMEOUT.as_secs()
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn parses_ingest_options() {
        let a = IngestArgs::parse(&args("--db postgres --requests 20_000 --concurrency=8"))
            .expect("parses");
        assert!(a.db == Some(Db::Postgres));
        assert_eq!((a.requests, a.concurrency, a.warmup), (20_000, 8, 5_000));
        assert_eq!(
            a.command(),
            "cargo xtask bench ingest --db postgres --requests 20000 --concurrency 8 --warmup 5000"
        );
        assert!(
            IngestArgs::parse(&args("--requests 5")).is_err(),
            "--db or --url needed"
        );
        assert!(IngestArgs::parse(&args("--db mysql")).is_err());
        assert!(IngestArgs::parse(&args("--db sqlite --bogus 1")).is_err());
        let ext = IngestArgs::parse(&args("--url http://localhost:8000")).expect("parses");
        assert_eq!(ext.label(), "external");
        assert_eq!(
            authority_of("http://localhost:8000/").expect("url"),
            "localhost:8000"
        );
        assert!(authority_of("https://x").is_err());
    }
}
