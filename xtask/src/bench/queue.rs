//! `cargo xtask bench queue`: no-op jobs per second through a queue backend (enqueue N, then
//! drain them with a worker at its default options), and the end-to-end latency report of
//! `bench ingest --with-worker` (webhook received to job done, read from the inbox).

use super::{BenchDb, Db, connect, run_tag};
use adapters::config::Settings;
use adapters::redis_queue::RedisJobQueue;
use anyhow::{Context, Result, bail};
use connector::{Connector, WorkerOptions};
use domain::model::{JobKind, NewJob};
use figment::providers::Serialized;
use sea_orm::{ConnectionTrait, Statement};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const REDIS_URL: &str = "redis://127.0.0.1:6379";

struct QueueArgs {
    backend: String,
    jobs: usize,
}

impl QueueArgs {
    fn parse(args: &[String]) -> Result<Self> {
        let mut a = QueueArgs {
            backend: String::new(),
            jobs: 50_000,
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let mut value = || {
                it.next()
                    .cloned()
                    .with_context(|| format!("{flag} needs a value"))
            };
            match flag.as_str() {
                "--backend" => a.backend = value()?,
                "--jobs" => a.jobs = value()?.replace('_', "").parse().context("--jobs")?,
                other => bail!("bench queue: unknown option `{other}`"),
            }
        }
        if !matches!(a.backend.as_str(), "sqlite" | "postgres" | "redis") {
            bail!("bench queue: --backend sqlite|postgres|redis is required");
        }
        Ok(a)
    }
}

/// `bench queue --backend sqlite|postgres|redis [--jobs N]`.
pub(crate) fn run(args: &[String]) -> Result<()> {
    let args = QueueArgs::parse(args)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(async {
        // Redis keeps its outbox in Postgres, as a scaled-out deployment would.
        let db_kind = if args.backend == "sqlite" {
            Db::Sqlite
        } else {
            Db::Postgres
        };
        let bench_db = BenchDb::create(db_kind).await?;
        let result = measure(&args, &bench_db.url).await;
        bench_db.remove().await?;
        result
    })
}

async fn measure(args: &QueueArgs, db_url: &str) -> Result<()> {
    let prefix = format!("lazona-bench-{}", run_tag());
    let backend = if args.backend == "redis" {
        "redis"
    } else {
        "sql"
    };
    let settings: Settings = Settings::figment(None)?
        .merge(Serialized::default("database.url", db_url))
        .merge(Serialized::default("queue.backend", backend))
        .merge(Serialized::default("queue.redis_url", REDIS_URL))
        .merge(Serialized::default("queue.redis_prefix", &prefix))
        .extract()
        .context("settings")?;
    let options = WorkerOptions::from_config(&settings.worker);
    // The connector as the binaries build it: its worker, its handler, its queue.
    let connector = Connector::builder(settings).build().await?;
    let queue = connector.queue();

    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    let per_task = args.jobs.div_ceil(64);
    for task in 0..64 {
        let queue = queue.clone();
        let first = task * per_task;
        let last = ((task + 1) * per_task).min(args.jobs);
        set.spawn(async move {
            for tag in first..last {
                let job = NewJob {
                    kind: JobKind::Noop { tag: tag as u64 },
                    run_at: None,
                };
                queue.enqueue(job).await?;
            }
            Ok::<_, domain::error::QueueError>(())
        });
    }
    for r in set.join_all().await {
        r?;
    }
    let enqueue_secs = start.elapsed().as_secs_f64();

    let stop = CancellationToken::new();
    let start = Instant::now();
    let running = connector.spawn_worker(stop.clone());
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let stats = queue.stats().await?;
        if stats.pending == 0 {
            break;
        }
        if Instant::now() > deadline {
            bail!("jobs still pending after 10 minutes: {stats:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drain_secs = start.elapsed().as_secs_f64();
    stop.cancel();
    let outcome = running.await?;
    if backend == "redis" {
        let redis =
            RedisJobQueue::connect(REDIS_URL, &prefix, connector.database().clone()).await?;
        let keys = redis.purge().await?;
        println!("redis: {keys} keys under {prefix}:* deleted");
    }
    // The connector's worker also runs its periodic jobs (the events' pruning) once at start.
    if outcome.completed < args.jobs {
        bail!(
            "{} jobs completed, {} enqueued",
            outcome.completed,
            args.jobs
        );
    }
    let rate = args.jobs as f64 / drain_secs;
    println!();
    println!(
        "enqueued {} no-op jobs in {enqueue_secs:.2}s ({:.0}/s, 64 tasks); drained in {drain_secs:.2}s",
        args.jobs,
        args.jobs as f64 / enqueue_secs
    );
    println!("| backend | jobs | concurrency | batch | jobs/s |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| {} | {} | {} | {} | {rate:.0} |",
        args.backend, args.jobs, options.concurrency, options.batch
    );
    println!(
        "command: cargo xtask bench queue --backend {} --jobs {}",
        args.backend, args.jobs
    );
    Ok(())
}

/// Waits until the `accepted` webhooks are processed, then prints the distribution of their
/// received-to-processed times, read from the inbox.
pub(crate) async fn report_end_to_end(db_url: &str, accepted: i64) -> Result<()> {
    let conn = connect(db_url).await?;
    let backend = conn.get_database_backend();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let row = conn
            .query_one_raw(Statement::from_string(
                backend,
                "SELECT COUNT(*) FROM webhooks WHERE status = 'processed'",
            ))
            .await?
            .context("no row")?;
        let done: i64 = row.try_get_by_index(0)?;
        if done >= accepted {
            break;
        }
        if Instant::now() > deadline {
            bail!("{done} of {accepted} webhooks processed after 5 minutes");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rows = conn
        .query_all_raw(Statement::from_string(
            backend,
            "SELECT processed_at - received_at FROM webhooks WHERE status = 'processed'",
        ))
        .await?;
    let mut ms: Vec<i64> = rows
        .iter()
        .map(|r| r.try_get_by_index::<i64>(0))
        .collect::<Result<_, _>>()?;
    ms.sort_unstable();
    let pct = |p: f64| ms[((ms.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "end to end (received -> job done), {} webhooks: p50 {} ms  p90 {} ms  p99 {} ms  max {} ms",
        ms.len(),
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(1.0)
    );
    conn.close().await.ok();
    Ok(())
}
