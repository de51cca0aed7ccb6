//! `cargo xtask bench orders`: end-to-end orders per second, from the webhook accepted to every
//! shipment recorded and its label mailed, against the sandbox's fakes (Koiki, WCFM, WordPress
//! and an SMTP sink that only counts), which answer at once.
//!
//! It builds a release `lazona-http`, starts the fakes in this process, starts the server on a
//! fresh database (a SQLite file, or a new Postgres database dropped afterwards) with its worker
//! in-process and pointed at the fakes, posts N signed orders with distinct ids over C keep-alive
//! connections, and waits until the sink has counted every label mail and every shipment row is
//! `LABEL_SENT` with `mailed_at` set. The rate is N over the time from the first post to the last
//! `mailed_at`; the latency of an order is its last shipment's `mailed_at` minus its webhook's
//! `received_at` (both recorded by the server, in milliseconds).

use super::load::{self, Delivery};
use super::{BenchDb, DELIVERIES_PATH, Db, Server, build_server, connect, free_port, run_tag};
use crate::cmd;
use adapters::sandbox::{Sandbox, SandboxOptions};
use anyhow::{Context, Result, bail};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Order ids start here.
const FIRST_ORDER_ID: u64 = 5_000_000;
/// The run fails when no mail arrives for this long.
const STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// How many Koiki vendors each order has.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Vendors {
    One,
    Two,
    /// One, and two for every fourth order.
    Mix,
}

impl Vendors {
    fn of(self, index: usize) -> usize {
        match self {
            Vendors::One => 1,
            Vendors::Two => 2,
            Vendors::Mix if index % 4 == 3 => 2,
            Vendors::Mix => 1,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Vendors::One => "1",
            Vendors::Two => "2",
            Vendors::Mix => "mix",
        }
    }
}

/// `bench orders` options.
struct OrdersArgs {
    db: Db,
    orders: usize,
    connections: usize,
    vendors: Vendors,
    /// Server settings for this run (`worker.concurrency=64`), as `LAZONA_*` variables.
    set: Vec<(String, String)>,
}

impl OrdersArgs {
    fn parse(args: &[String]) -> Result<Self> {
        let mut db = None;
        let mut a = OrdersArgs {
            db: Db::Sqlite,
            orders: 10_000,
            connections: 16,
            vendors: Vendors::One,
            set: Vec::new(),
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
                    db = Some(Db::parse(&value()?)?);
                }
                "--orders" => a.orders = number(value()?)?,
                "--connections" => a.connections = number(value()?)?,
                "--vendors" => {
                    a.vendors = match value()?.as_str() {
                        "1" => Vendors::One,
                        "2" => Vendors::Two,
                        "mix" => Vendors::Mix,
                        other => bail!("--vendors: `{other}` (expected 1, 2 or mix)"),
                    };
                }
                "--set" => {
                    let setting = value()?;
                    let (key, v) = setting
                        .split_once('=')
                        .with_context(|| format!("--set: `{setting}` is not key=value"))?;
                    a.set.push((key.to_owned(), v.to_owned()));
                }
                other => bail!("bench orders: unknown option `{other}` (see `cargo xtask help`)"),
            }
        }
        a.db = db.context("bench orders: --db sqlite|postgres is required")?;
        if a.orders == 0 || a.connections == 0 {
            bail!("bench orders: --orders and --connections must be at least 1");
        }
        Ok(a)
    }

    /// The command line that reproduces this run.
    fn command(&self) -> String {
        let mut c = format!(
            "cargo xtask bench orders --db {} --orders {} --connections {} --vendors {}",
            self.db.name(),
            self.orders,
            self.connections,
            self.vendors.name()
        );
        for (key, value) in &self.set {
            c += &format!(" --set {key}={value}");
        }
        c
    }

    /// Label mails (= shipments) the run makes.
    fn shipments(&self) -> usize {
        (0..self.orders).map(|i| self.vendors.of(i)).sum()
    }
}

/// `bench orders --db sqlite|postgres [--orders N] [--connections C] [--vendors 1|2|mix]`.
pub(crate) fn run(root: &Path, args: &[String]) -> Result<()> {
    let args = OrdersArgs::parse(args)?;
    let bin = build_server(root)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let bench_db = rt.block_on(BenchDb::create(args.db))?;
    let result = rt.block_on(measure(&args, &bin, &bench_db.url));
    let dropped = rt.block_on(bench_db.remove());
    result.and(dropped)
}

/// The benchmark's order `id`: the realistic template with one or two Koiki vendors (6 and 11).
fn order_body(template: &Value, id: u64, vendors: usize) -> Result<Vec<u8>> {
    let mut order = template.clone();
    super::order::set_id(&mut order, id);
    if vendors == 1 {
        // Vendor 11's line item and shipping line go; vendor 6 keeps two items.
        for list in ["line_items", "shipping_lines"] {
            if let Some(items) = order[list].as_array_mut() {
                items.retain(|item| {
                    !item["meta_data"]
                        .as_array()
                        .is_some_and(|m| m.iter().any(|meta| meta["value"] == "11"))
                });
            }
        }
    }
    serde_json::to_vec(&order).context("serializing an order")
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

async fn measure(args: &OrdersArgs, bin: &Path, db_url: &str) -> Result<()> {
    let fakes = Sandbox::start(SandboxOptions {
        count_mails_only: true,
        ..SandboxOptions::default()
    })
    .await
    .context("starting the sandbox's fakes")?;
    println!(
        "fakes: Koiki, WCFM, WordPress on {}, SMTP sink (counting only) on port {}",
        fakes.url(),
        fakes.smtp().port()
    );

    let authority = format!("127.0.0.1:{}", free_port()?);
    let mut server = start_server(bin, &authority, db_url, &fakes, &args.set)?;
    server.wait_ready(&authority).await?;

    let tag = run_tag();
    let template = super::order::template();
    let mut deliveries: Vec<Delivery> = Vec::with_capacity(args.orders);
    for i in 0..args.orders {
        let id = FIRST_ORDER_ID + i as u64;
        let body = order_body(&template, id, args.vendors.of(i))?;
        deliveries.push(Delivery::signed(body, format!("orders-{tag}-{id}"))?);
    }
    let expected = args.shipments();
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        // Other work on the machine shares its cores with the run: say how much there was.
        println!("load average before the run: {}", load.trim());
    }
    println!(
        "posting {} signed orders ({expected} Koiki shipments, ~{} bytes each) to http://{authority}{DELIVERIES_PATH} over {} connections",
        args.orders,
        deliveries.first().map_or(0, Delivery::len),
        args.connections
    );

    let target = load::Target {
        authority: authority.clone(),
        path: DELIVERIES_PATH.to_owned(),
    };
    let commits_before = committed(db_url, args.db).await?;
    let cpu_before = (cpu_secs(server.child.id()), cpu_secs(std::process::id()));
    let machine_before = machine_ticks();
    let started_ms = now_ms();
    let start = Instant::now();
    let (_, posted) = load::run(&target, args.connections, Vec::new(), deliveries).await?;
    let posting = start.elapsed();
    if posted.non_2xx() > 0 {
        bail!(
            "{} orders were not accepted (statuses {:?}, first error {:?})",
            posted.non_2xx(),
            posted.statuses,
            posted.first_error
        );
    }
    println!(
        "accepted {} orders in {:.2}s ({:.0}/s); waiting for the labels",
        posted.accepted,
        posting.as_secs_f64(),
        posted.accepted as f64 / posting.as_secs_f64()
    );

    // Every mail counted by the sink...
    let mut last = (0, Instant::now());
    loop {
        let mailed = fakes.smtp().count();
        if mailed >= expected {
            break;
        }
        if mailed != last.0 {
            last = (mailed, Instant::now());
        } else if last.1.elapsed() > STALL_TIMEOUT {
            bail!(
                "{mailed} of {expected} label mails after {}s without progress; fakes saw {:?}",
                STALL_TIMEOUT.as_secs(),
                fakes.calls()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let sink_done = start.elapsed();
    // ... and every shipment recorded as mailed.
    let conn = connect(db_url).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = count(
            &conn,
            "SELECT COUNT(*) FROM shipments WHERE status = 'LABEL_SENT' AND mailed_at IS NOT NULL",
        )
        .await?;
        if done as usize >= expected {
            break;
        }
        if Instant::now() > deadline {
            bail!("{done} of {expected} shipments recorded as mailed a minute after the last mail");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let cpu_after = (cpu_secs(server.child.id()), cpu_secs(std::process::id()));
    let machine_busy = match (machine_before, machine_ticks()) {
        (Some((busy0, all0)), Some((busy1, all1))) if all1 > all0 => {
            Some(100.0 * (busy1 - busy0) as f64 / (all1 - all0) as f64)
        }
        _ => None,
    };
    let server_rss = peak_rss_kib(server.child.id());
    let last_mailed = count(&conn, "SELECT MAX(mailed_at) FROM shipments").await?;
    let shipments = count(&conn, "SELECT COUNT(*) FROM shipments").await?;
    let latencies = order_latencies(&conn).await?;
    conn.close().await.ok();
    server.stop()?;
    let commits = match (commits_before, committed(db_url, args.db).await?) {
        (Some(before), Some(after)) => Some(after - before),
        _ => None,
    };

    let calls = fakes.calls();
    if shipments as usize != expected || calls.koiki_envios as usize != expected {
        bail!(
            "{shipments} shipment rows and {} envios booked, {expected} expected",
            calls.koiki_envios
        );
    }
    if calls.koiki_bookings as usize != args.orders {
        bail!(
            "{} Koiki calls for {} orders (one each expected)",
            calls.koiki_bookings,
            args.orders
        );
    }
    if fakes.smtp().count() != expected {
        bail!("{} mails for {expected} shipments", fakes.smtp().count());
    }

    let secs = (last_mailed - started_ms) as f64 / 1000.0;
    let rate = args.orders as f64 / secs;
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(0)
    };
    let cpu = |(before, after): (Option<f64>, Option<f64>)| match (before, after) {
        (Some(b), Some(a)) => format!("{:.1}s", a - b),
        _ => "?".to_owned(),
    };
    println!();
    println!(
        "{} orders, {expected} shipments booked (one Koiki call per order) and mailed in {secs:.2}s \
         (sink counted the last mail at {:.2}s)",
        args.orders,
        sink_done.as_secs_f64()
    );
    println!(
        "  orders/s end to end: {rate:.0}   shipments (label mails)/s: {:.0}",
        expected as f64 / secs
    );
    println!(
        "  webhook received -> last label mailed, ms: p50 {}  p90 {}  p99 {}  max {}",
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(1.0)
    );
    println!(
        "  intake: {:.0} orders/s accepted, answer p50 {:.2} ms  p99 {:.2} ms",
        posted.accepted as f64 / posting.as_secs_f64(),
        posted.percentile_ms(0.5),
        posted.percentile_ms(0.99)
    );
    println!(
        "  CPU: lazona-http {}, this process (load client and fakes) {}; lazona-http peak RSS {}",
        cpu((cpu_before.0, cpu_after.0)),
        cpu((cpu_before.1, cpu_after.1)),
        server_rss.map_or("?".to_owned(), |kib| format!("{} MiB", kib / 1024))
    );
    if let Some(busy) = machine_busy {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        println!("  machine CPU busy (every process, {cores} cores): {busy:.0}%");
    }
    if let Some(commits) = commits {
        println!(
            "  Postgres transactions committed: {commits} ({:.1} per order)",
            commits as f64 / args.orders as f64
        );
    }
    println!(
        "  SMTP connections opened: {} for {} mails",
        fakes.smtp().connections(),
        fakes.smtp().count()
    );
    println!("  fakes saw: {calls:?}");
    println!();
    println!(
        "| database | orders | shipments | connections | orders/s | p50 ms | p99 ms | max ms | peak RSS |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {} | {expected} | {} | **{rate:.0}** | {} | {} | {} | {} |",
        args.db.name(),
        args.orders,
        args.connections,
        pct(0.5),
        pct(0.99),
        pct(1.0),
        server_rss.map_or("?".to_owned(), |kib| format!("{} MiB", kib / 1024))
    );
    println!();
    println!("command: {}", args.command());
    Ok(())
}

/// Starts the release `lazona-http` on `db_url`, its worker in-process, pointed at `fakes`.
fn start_server(
    bin: &Path,
    listen: &str,
    db_url: &str,
    fakes: &Sandbox,
    set: &[(String, String)],
) -> Result<Server> {
    let mut command = Command::new(bin);
    // The caller's own configuration must not leak into the benchmark.
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
    command.envs(fakes.env());
    command
        .env("LAZONA_WEBHOOK__SECRET", load::SECRET)
        .env("LAZONA_LISTEN", listen)
        .env("LAZONA_DATABASE__URL", db_url)
        .env("LAZONA_WORKER__EMBEDDED", "true")
        // The run counts label mails: no reconciliation pass, whose mail about the sandbox's
        // disabled webhook would be one more.
        .env("LAZONA_RECONCILE__ENABLED", "false")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    for (key, value) in set {
        command.env(adapters::sandbox::env_name(key), value);
    }
    eprintln!("$ {}", cmd::display(&command));
    let child = command
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    Ok(Server { child })
}

async fn count(conn: &DatabaseConnection, sql: &str) -> Result<i64> {
    let row = conn
        .query_one_raw(Statement::from_string(conn.get_database_backend(), sql))
        .await
        .with_context(|| sql.to_owned())?
        .context("no row")?;
    Ok(row.try_get_by_index::<Option<i64>>(0)?.unwrap_or(0))
}

/// Transactions committed in the Postgres database so far (`pg_stat_database`), read on a
/// connection of its own; `None` on SQLite.
async fn committed(db_url: &str, db: Db) -> Result<Option<i64>> {
    if db != Db::Postgres {
        return Ok(None);
    }
    let conn = connect(db_url).await?;
    let n = count(
        &conn,
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
    )
    .await?;
    conn.close().await.ok();
    Ok(Some(n))
}

/// Each order's webhook `received_at` to its last shipment's `mailed_at`, in ms, sorted.
async fn order_latencies(conn: &DatabaseConnection) -> Result<Vec<i64>> {
    let rows = conn
        .query_all_raw(Statement::from_string(
            conn.get_database_backend(),
            "SELECT MAX(s.mailed_at) - w.received_at FROM webhooks w \
             JOIN shipments s ON s.order_id = w.subject_id GROUP BY w.id, w.received_at",
        ))
        .await
        .context("reading the latencies")?;
    let mut ms: Vec<i64> = rows
        .iter()
        .map(|r| r.try_get_by_index::<i64>(0))
        .collect::<Result<_, _>>()?;
    ms.sort_unstable();
    Ok(ms)
}

/// The user and system CPU time of process `pid` so far, from `/proc` (Linux only).
fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at `state`, field 3.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // USER_HZ is 100 on every Linux this runs on.
    Some(ticks / 100.0)
}

/// The machine's busy and total CPU ticks so far (`/proc/stat`; idle and iowait are not busy).
fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<u64> = stat
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .filter_map(|t| t.parse().ok())
        .collect();
    let all: u64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3)? + ticks.get(4)?;
    Some((all - idle, all))
}

/// The peak resident set size of process `pid` (`VmHWM`), in KiB (Linux only).
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn parses_orders_options() {
        let a = OrdersArgs::parse(&args(
            "--db postgres --orders 2_000 --connections=8 --vendors mix --set worker.concurrency=64",
        ))
        .expect("parses");
        assert!(a.db == Db::Postgres);
        assert_eq!(
            (a.orders, a.connections, a.vendors),
            (2000, 8, Vendors::Mix)
        );
        assert_eq!(a.shipments(), 2500);
        assert_eq!(
            a.command(),
            "cargo xtask bench orders --db postgres --orders 2000 --connections 8 --vendors mix \
             --set worker.concurrency=64"
        );
        assert!(
            OrdersArgs::parse(&args("--orders 5")).is_err(),
            "--db needed"
        );
        assert!(OrdersArgs::parse(&args("--db sqlite --vendors 3")).is_err());
    }

    #[test]
    fn one_vendor_orders_keep_only_vendor_6() {
        let template = super::super::order::template();
        let one: Value =
            serde_json::from_slice(&order_body(&template, 42, 1).expect("body")).expect("json");
        assert_eq!(one["id"], 42);
        assert_eq!(one["line_items"].as_array().map(Vec::len), Some(2));
        assert_eq!(one["shipping_lines"].as_array().map(Vec::len), Some(1));
        assert_eq!(one["shipping_lines"][0]["meta_data"][0]["value"], "6");
        let two: Value =
            serde_json::from_slice(&order_body(&template, 43, 2).expect("body")).expect("json");
        assert_eq!(two["shipping_lines"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn reads_this_process_from_proc() {
        assert!(peak_rss_kib(std::process::id()).is_some_and(|kib| kib > 0));
        assert!(cpu_secs(std::process::id()).is_some());
        assert!(machine_ticks().is_some_and(|(busy, all)| busy <= all && all > 0));
    }
}
