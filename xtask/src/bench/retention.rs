//! `cargo xtask bench retention --db sqlite|postgres [--bodies N] [--requests R]
//! [--concurrency C] [--wait]`: the intake benchmark while the retention pass prunes.
//!
//! Twice, on fresh databases seeded with N webhooks received 200 days ago (the load's own order
//! body, ~2.5 KB, each): `lazona-http` (release) with its worker in-process, once with
//! `retention.webhook_body_days = 0` (keep for ever: nothing pruned) and once with 90 and a pass
//! every second, so the N bodies are pruned in `retention.batch` batches while R signed
//! `order.created` deliveries are posted over C connections. It reports intake's throughput and
//! latency in both runs, how much was pruned meanwhile (with `--wait`, how long the whole
//! pruning took), and what became of the space: the SQLite
//! file's size and its free pages (reused by later writes), or Postgres's database size and the
//! dead row versions autovacuum has to reclaim.

use super::{
    BenchDb, DELIVERIES_PATH, Db, FIRST_ORDER_ID, Server, build_server, connect, free_port, load,
    run_tag,
};
use anyhow::{Context, Result, bail};
use sea_orm::{ConnectionTrait as _, DatabaseConnection, DbBackend, Statement};
use std::path::Path;
use std::time::{Duration, Instant};

struct RetentionArgs {
    db: Db,
    bodies: usize,
    requests: usize,
    concurrency: usize,
    warmup: usize,
    /// Wait until every body is pruned (the space figures then describe a finished pass).
    wait: bool,
}

impl RetentionArgs {
    fn parse(args: &[String]) -> Result<Self> {
        let mut a = RetentionArgs {
            db: Db::Sqlite,
            bodies: 1_000_000,
            requests: 50_000,
            concurrency: 64,
            warmup: 2_000,
            wait: false,
        };
        let mut db = None;
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let mut value = || {
                it.next()
                    .cloned()
                    .with_context(|| format!("{flag} needs a value"))
            };
            let number = |v: String| -> Result<usize> {
                v.replace('_', "")
                    .parse()
                    .with_context(|| format!("{flag}: `{v}` is not a count"))
            };
            match flag.as_str() {
                "--db" => db = Some(Db::parse(&value()?)?),
                "--bodies" => a.bodies = number(value()?)?,
                "--requests" => a.requests = number(value()?)?.max(1),
                "--concurrency" => a.concurrency = number(value()?)?.max(1),
                "--warmup" => a.warmup = number(value()?)?,
                "--wait" => a.wait = true,
                other => bail!("bench retention: unknown option `{other}`"),
            }
        }
        a.db = db.context("bench retention: --db sqlite|postgres is required")?;
        Ok(a)
    }
}

/// What one run measured.
struct Run {
    rate: f64,
    p50: f64,
    p99: f64,
    max: f64,
    non_2xx: u64,
    /// Bodies pruned when the load ended, and in all.
    pruned_during_load: i64,
    /// From the server's start to the load's end.
    until_load_end: Duration,
    pruned: i64,
    /// From the server's start to the last body pruned.
    prune_time: Option<Duration>,
    space_before: u64,
    space_after: String,
}

/// `bench retention --db sqlite|postgres [--bodies N] [--requests R] [--concurrency C]`.
pub(crate) fn run(root: &Path, args: &[String]) -> Result<()> {
    let args = RetentionArgs::parse(args)?;
    let bin = build_server(root)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let mut runs = Vec::new();
    for prune in [false, true] {
        let bench_db = rt.block_on(BenchDb::create(args.db))?;
        let result = one_run(&rt, &args, &bin, &bench_db, prune);
        rt.block_on(bench_db.remove())?;
        runs.push(result?);
    }
    println!();
    println!(
        "| db | seeded bodies | retention | intake req/s | p50 ms | p99 ms | max ms | non-2xx | pruned from start to the load's end | pruned in all (time) | space before | space after |"
    );
    println!("|---|---:|---|---:|---:|---:|---:|---:|---:|---|---|---|");
    for (r, label) in runs.iter().zip(["off (0 days)", "on (90 days)"]) {
        println!(
            "| {} | {} | {label} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {} in {:.1} s | {}{} | {} | {} |",
            args.db.name(),
            args.bodies,
            r.rate,
            r.p50,
            r.p99,
            r.max,
            r.non_2xx,
            r.pruned_during_load,
            r.until_load_end.as_secs_f64(),
            r.pruned,
            r.prune_time
                .map(|t| format!(" in {:.1} s", t.as_secs_f64()))
                .unwrap_or_default(),
            mb(r.space_before),
            r.space_after
        );
    }
    let cost = 100.0 * (1.0 - runs[1].rate / runs[0].rate);
    println!();
    println!("intake throughput lost while pruning: {cost:.1}%");
    println!(
        "command: cargo xtask bench retention --db {} --bodies {} --requests {} --concurrency {}{}",
        args.db.name(),
        args.bodies,
        args.requests,
        args.concurrency,
        if args.wait { " --wait" } else { "" }
    );
    if runs.iter().any(|r| r.non_2xx > 0) {
        bail!("some requests were not accepted (see above)");
    }
    Ok(())
}

fn mb(bytes: u64) -> String {
    format!("{:.0} MB", bytes as f64 / 1e6)
}

fn one_run(
    rt: &tokio::runtime::Runtime,
    args: &RetentionArgs,
    bin: &Path,
    db: &BenchDb,
    prune: bool,
) -> Result<Run> {
    // The schema, from the server itself (it migrates at start), then the seed.
    let port = free_port()?;
    let authority = format!("127.0.0.1:{port}");
    let off = [
        ("LAZONA_RETENTION__WEBHOOK_BODY_DAYS", "0"),
        ("LAZONA_RETENTION__LABEL_DAYS", "0"),
        ("LAZONA_RETENTION__LABEL_UNDELIVERED_DAYS", "0"),
        ("LAZONA_RETENTION__DEAD_JOB_DAYS", "0"),
    ];
    let mut server = Server::start_with(bin, &authority, &db.url, false, &off)?;
    rt.block_on(server.wait_ready(&authority))?;
    server.stop()?;
    let seeded = Instant::now();
    rt.block_on(seed(&db.url, args.bodies))?;
    let space_before = rt.block_on(space(&db.url))?.0;
    println!(
        "seeded {} webhooks received 200 days ago in {:.1} s ({})",
        args.bodies,
        seeded.elapsed().as_secs_f64(),
        mb(space_before)
    );

    let mut env: Vec<(&str, &str)> = off.to_vec();
    if prune {
        env = vec![
            ("LAZONA_RETENTION__WEBHOOK_BODY_DAYS", "90"),
            ("LAZONA_RETENTION__LABEL_DAYS", "0"),
            ("LAZONA_RETENTION__LABEL_UNDELIVERED_DAYS", "0"),
            ("LAZONA_RETENTION__DEAD_JOB_DAYS", "0"),
            ("LAZONA_RETENTION__INTERVAL_SECS", "1"),
        ];
    }
    let started = Instant::now();
    let mut server = Server::start_with(bin, &authority, &db.url, true, &env)?;
    rt.block_on(server.wait_ready(&authority))?;
    let tag = run_tag();
    let warmup = load::prepare(FIRST_ORDER_ID, args.warmup, &tag)?;
    let measured = load::prepare(FIRST_ORDER_ID + args.warmup as u64, args.requests, &tag)?;
    let target = load::Target {
        authority: authority.clone(),
        path: DELIVERIES_PATH.to_owned(),
    };
    let (_, meas) = rt.block_on(load::run(&target, args.concurrency, warmup, measured))?;
    let until_load_end = started.elapsed();
    let conn = rt.block_on(connect(&db.url))?;
    let pruned_during_load = rt.block_on(pruned(&conn))?;
    let mut prune_time = None;
    if prune && args.wait {
        let deadline = Instant::now() + Duration::from_secs(3_600);
        loop {
            let n = rt.block_on(pruned(&conn))?;
            if n >= args.bodies as i64 {
                prune_time = Some(started.elapsed());
                break;
            }
            if Instant::now() > deadline {
                bail!("{n} of {} bodies pruned after an hour", args.bodies);
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    let pruned_all = rt.block_on(pruned(&conn))?;
    rt.block_on(conn.close()).ok();
    server.stop()?;
    let secs = meas.elapsed.as_secs_f64();
    let (size, detail) = rt.block_on(space(&db.url))?;
    Ok(Run {
        rate: meas.accepted as f64 / secs.max(f64::EPSILON),
        p50: meas.percentile_ms(0.50),
        p99: meas.percentile_ms(0.99),
        max: meas.percentile_ms(1.0),
        non_2xx: meas.non_2xx(),
        pruned_during_load,
        until_load_end,
        pruned: pruned_all,
        prune_time,
        space_before,
        space_after: format!("{}{detail}", mb(size)),
    })
}

async fn pruned(conn: &DatabaseConnection) -> Result<i64> {
    let row = conn
        .query_one_raw(Statement::from_string(
            conn.get_database_backend(),
            "SELECT COUNT(*) FROM webhooks WHERE pruned_at IS NOT NULL",
        ))
        .await?
        .context("a count")?;
    Ok(row.try_get_by_index(0)?)
}

/// `n` processed order webhooks received 200 days ago, each with the load's order body, in
/// chunks of 50,000 rows per statement.
async fn seed(url: &str, n: usize) -> Result<()> {
    let conn = connect(url).await?;
    let backend = conn.get_database_backend();
    let body = load::prepare(1, 1, "seed")?
        .pop()
        .context("a body")?
        .body()
        .to_vec();
    let old = (chrono::Utc::now() - chrono::TimeDelta::days(200)).timestamp_millis();
    const CHUNK: usize = 50_000;
    let mut from = 1;
    while from <= n {
        let to = (from + CHUNK - 1).min(n);
        let sql = match backend {
            DbBackend::Postgres => {
                "INSERT INTO webhooks (dedupe_key, resource, topic, subject_id, headers, body, \
                 received_at, status) SELECT 'seed-' || x, 'order', 'order.created', x, '[]', \
                 $3, $4 + x, 'processed' FROM generate_series($1::bigint, $2::bigint) AS x"
            }
            _ => {
                "WITH RECURSIVE c(x) AS (SELECT ?1 UNION ALL SELECT x + 1 FROM c WHERE x < ?2) \
                 INSERT INTO webhooks (dedupe_key, resource, topic, subject_id, headers, body, \
                 received_at, status) SELECT 'seed-' || x, 'order', 'order.created', x, '[]', \
                 ?3, ?4 + x, 'processed' FROM c"
            }
        };
        conn.execute_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [
                (from as i64).into(),
                (to as i64).into(),
                body.clone().into(),
                old.into(),
            ],
        ))
        .await
        .context("seeding webhooks")?;
        from = to + 1;
    }
    if backend == DbBackend::Postgres {
        conn.execute_unprepared("VACUUM ANALYZE webhooks").await?;
    }
    conn.close().await.ok();
    Ok(())
}

/// The database's size in bytes, and what is reusable in it, in words.
async fn space(url: &str) -> Result<(u64, String)> {
    let conn = connect(url).await?;
    let backend = conn.get_database_backend();
    let one = |sql: &'static str| {
        let conn = &conn;
        async move {
            let row = conn
                .query_one_raw(Statement::from_string(backend, sql))
                .await?
                .context("a row")?;
            anyhow::Ok(row.try_get_by_index::<i64>(0)?)
        }
    };
    let out = match backend {
        DbBackend::Postgres => {
            let size = one("SELECT pg_database_size(current_database())").await?;
            let dead = one(
                "SELECT COALESCE(SUM(n_dead_tup), 0)::bigint FROM pg_stat_user_tables \
                 WHERE relname = 'webhooks'",
            )
            .await?;
            (
                size as u64,
                format!(", {dead} dead row versions in webhooks"),
            )
        }
        _ => {
            conn.execute_unprepared("PRAGMA wal_checkpoint(TRUNCATE)")
                .await?;
            let pages = one("PRAGMA page_count").await?;
            let free = one("PRAGMA freelist_count").await?;
            let page = one("PRAGMA page_size").await?;
            (
                (pages * page) as u64,
                format!(", of which {} free for reuse", mb((free * page) as u64)),
            )
        }
    };
    conn.close().await.ok();
    Ok(out)
}
