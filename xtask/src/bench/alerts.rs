//! `cargo xtask bench alerts --db sqlite|postgres [--jobs N] [--seconds S] [--pairs P]`: an alert
//! storm, measured two ways.
//!
//! 1. **The alerts alone**: N job_dead alerts raised at an even pace over S seconds through the
//!    connector's `Alerts` (as the worker raises them when a job is dead-lettered), then one
//!    delivery, with no worker and nothing else running in this process: its CPU time is what
//!    alerts cost, without the storm's own work around it. Repeated P times.
//! 2. **The whole worker, off against on**: N jobs that cannot succeed (tracking shipments that
//!    do not exist: a permanent failure, so each is dead-lettered at once) enqueued at the same
//!    pace into a connector whose worker runs in this process, mailing through the sandbox's SMTP
//!    sink; P pairs of runs on fresh databases, alternating every alert kind switched off
//!    (`alerts.off`) and alerts on. The difference in CPU time within each pair, over the storm's
//!    wall time, is what alerts cost the worker, with the worker's own run-to-run noise; the
//!    mails the sink got say how the storm was told (one by one, then digests).

use super::{BenchDb, Db};
use adapters::config::Settings;
use adapters::db::SqlStateStore;
use adapters::memory::MemoryMailer;
use adapters::sandbox::{Sandbox, SandboxOptions};
use anyhow::{Context, Result, bail};
use connector::Connector;
use domain::model::alert::subject;
use domain::model::{AlertKind, JobKind, NewAlert, NewJob};
use domain::service::alerts::AlertDelivery;
use figment::providers::Serialized;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

struct AlertArgs {
    db: Db,
    jobs: usize,
    seconds: u64,
    pairs: usize,
}

impl AlertArgs {
    fn parse(args: &[String]) -> Result<Self> {
        let mut a = AlertArgs {
            db: Db::Sqlite,
            jobs: 10_000,
            seconds: 60,
            pairs: 3,
        };
        let mut db = None;
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let mut value = || {
                it.next()
                    .cloned()
                    .with_context(|| format!("{flag} needs a value"))
            };
            match flag.as_str() {
                "--db" => db = Some(Db::parse(&value()?)?),
                "--jobs" => a.jobs = value()?.replace('_', "").parse().context("a number")?,
                "--seconds" => a.seconds = value()?.parse().context("a number")?,
                "--pairs" => a.pairs = value()?.parse::<usize>().context("a number")?.max(1),
                other => bail!("bench alerts: unknown option `{other}`"),
            }
        }
        a.db = db.context("bench alerts: --db sqlite|postgres is required")?;
        Ok(a)
    }
}

/// What one run measured.
struct Run {
    cpu: Duration,
    wall: Duration,
    dead: i64,
    opened: i64,
    mails: usize,
    digests: usize,
}

/// This process's CPU time (user and system), from `/proc/self/stat` (clock ticks of 10 ms).
fn cpu_time() -> Result<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").context("reading /proc/self/stat")?;
    // The fields after the command's closing parenthesis: utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').context("a stat line")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    Ok(Duration::from_millis(ticks * 10))
}

/// The median, lowest and highest of `values`.
fn spread(values: &[f64]) -> (f64, f64, f64) {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

/// `bench alerts --db sqlite|postgres [--jobs N] [--seconds S] [--pairs P]`.
pub(crate) fn run(args: &[String]) -> Result<()> {
    let args = AlertArgs::parse(args)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(async {
        let mut alone = Vec::new();
        for _ in 0..args.pairs {
            let bench_db = BenchDb::create(args.db).await?;
            let result = alerts_alone(&args, &bench_db.url).await;
            bench_db.remove().await?;
            let r = result?;
            println!(
                "alerts alone: {} raised over {:.1} s, CPU {:.3} s ({:.3}% of a core); rows {}, mails {}",
                args.jobs,
                r.wall.as_secs_f64(),
                r.cpu.as_secs_f64(),
                100.0 * r.cpu.as_secs_f64() / r.wall.as_secs_f64(),
                r.opened,
                r.mails
            );
            alone.push(100.0 * r.cpu.as_secs_f64() / r.wall.as_secs_f64());
        }
        let mut extra = Vec::new();
        for pair in 0..args.pairs {
            let mut runs = Vec::new();
            // Alternate which goes first, so a machine warming up or cooling down favours
            // neither.
            let order = if pair % 2 == 0 { [false, true] } else { [true, false] };
            for alerts_on in order {
                let bench_db = BenchDb::create(args.db).await?;
                let result = storm(&args, &bench_db.url, alerts_on).await;
                bench_db.remove().await?;
                runs.push((alerts_on, result?));
            }
            runs.sort_by_key(|(on, _)| *on);
            let (off, on) = (&runs[0].1, &runs[1].1);
            for (label, r) in [("alerts off", off), ("alerts on", on)] {
                println!(
                    "{label:>10}: {} jobs dead in {:.1} s, CPU {:.2} s ({:.1}% of a core); alerts opened {}, mails {} of which digests {}",
                    r.dead,
                    r.wall.as_secs_f64(),
                    r.cpu.as_secs_f64(),
                    100.0 * r.cpu.as_secs_f64() / r.wall.as_secs_f64(),
                    r.opened,
                    r.mails,
                    r.digests
                );
            }
            let cost = on.cpu.as_secs_f64() - off.cpu.as_secs_f64();
            println!(
                "pair {}: alerts cost {cost:.2} s of CPU over {:.1} s: {:.2}% of a core",
                pair + 1,
                on.wall.as_secs_f64(),
                100.0 * cost / on.wall.as_secs_f64()
            );
            extra.push(100.0 * cost / on.wall.as_secs_f64());
        }
        let (median, low, high) = spread(&alone);
        println!(
            "alerts alone, {} runs: median {median:.3}% of a core (from {low:.3}% to {high:.3}%)",
            alone.len()
        );
        let (median, low, high) = spread(&extra);
        println!(
            "whole worker, {} pairs: median {median:.2}% of a core (from {low:.2}% to {high:.2}%)",
            extra.len()
        );
        Ok(())
    })
}

/// The settings both runs share: the database, no reconciliation, no logs.
fn figment(db_url: &str) -> Result<figment::Figment> {
    Ok(Settings::figment(None)?
        .merge(Serialized::default("database.url", db_url))
        .merge(Serialized::default("reconcile.enabled", "false"))
        .merge(Serialized::default("log.level", "off")))
}

/// Calls `one` N times at an even pace over S seconds (every 100 ms, a tenth of a second's
/// share), with ids from 50,000,000 (jobs and alerts that exist nowhere else).
async fn paced<F, Fut>(args: &AlertArgs, mut one: F) -> Result<()>
where
    F: FnMut(i64) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let per_tick = (args.jobs / (args.seconds as usize * 10)).max(1);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut done = 0;
    while done < args.jobs {
        tick.tick().await;
        for _ in 0..per_tick.min(args.jobs - done) {
            one(50_000_000 + done as i64).await?;
            done += 1;
        }
    }
    Ok(())
}

/// N job_dead alerts raised over S seconds through the connector's `Alerts`, with no worker,
/// then told once (to a mailer in memory): the CPU of the alerts' own path.
async fn alerts_alone(args: &AlertArgs, db_url: &str) -> Result<Run> {
    let settings: Settings = figment(db_url)?
        .merge(Serialized::default(
            "mail.admin_recipients",
            vec!["admin@example.coop"],
        ))
        .extract()
        .context("settings")?;
    let connector = Connector::builder(settings)
        .without_worker()
        .build()
        .await?;
    let alerts = connector.alerts().clone();
    let mailer = Arc::new(MemoryMailer::new());
    let delivery = AlertDelivery {
        alerts: alerts.clone(),
        mailer: mailer.clone(),
        admins: vec!["admin@example.coop".into()],
        hook: None,
        state: Arc::new(SqlStateStore::new(connector.database().clone())),
    };
    let started = Instant::now();
    let cpu_before = cpu_time()?;
    paced(args, |id| {
        let alerts = &alerts;
        async move {
            alerts
                .raise(NewAlert {
                    kind: AlertKind::JobDead,
                    subject: subject::job(id),
                    summary: format!("Tasca abandonada: track_shipment {id}"),
                    detail: "La tasca ha fallat definitivament: no shipment".into(),
                })
                .await?;
            Ok(())
        }
    })
    .await?;
    alerts.flush_folded(true).await?;
    delivery
        .deliver()
        .await
        .map_err(|e| anyhow::anyhow!("delivery: {e}"))?;
    let cpu = cpu_time()? - cpu_before;
    let wall = started.elapsed();
    let opened = count(&connector, "SELECT COUNT(*) FROM alerts").await?;
    Ok(Run {
        cpu,
        wall,
        dead: 0,
        opened,
        mails: mailer.sent().len(),
        digests: 0,
    })
}

async fn count(connector: &Connector, sql: &str) -> Result<i64> {
    use sea_orm::ConnectionTrait as _;
    let db = connector.database();
    let row = db
        .conn()
        .query_one_raw(sea_orm::Statement::from_string(db.backend(), sql))
        .await?
        .context("a count")?;
    Ok(row.try_get_by_index(0)?)
}

async fn storm(args: &AlertArgs, db_url: &str, alerts_on: bool) -> Result<Run> {
    let fakes = Sandbox::start(SandboxOptions::default())
        .await
        .context("starting the sandbox")?;
    let off: Vec<&str> = if alerts_on {
        Vec::new()
    } else {
        AlertKind::ALL.iter().map(|k| k.as_str()).collect()
    };
    let mut figment = figment(db_url)?.merge(Serialized::default("alerts.off", off));
    for (key, value) in fakes.config() {
        figment = figment.merge(Serialized::default(key, value));
    }
    let settings: Settings = figment.extract().context("settings")?;
    let connector = Connector::builder(settings).build().await?;
    let shutdown = CancellationToken::new();
    let worker = connector.spawn_worker(shutdown.clone());
    let queue = connector.queue();

    let started = Instant::now();
    let cpu_before = cpu_time()?;
    paced(args, |shipment_id| {
        let queue = &queue;
        async move {
            queue
                .enqueue(NewJob {
                    kind: JobKind::TrackShipment { shipment_id },
                    run_at: None,
                })
                .await?;
            Ok(())
        }
    })
    .await?;
    let want = i64::try_from(args.jobs)?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let dead = count(
            &connector,
            "SELECT COUNT(*) FROM jobs WHERE status = 'dead'",
        )
        .await?;
        if dead >= want || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The check and the delivery after the last death.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let cpu = cpu_time()? - cpu_before;
    let wall = started.elapsed();
    let dead = count(
        &connector,
        "SELECT COUNT(*) FROM jobs WHERE status = 'dead'",
    )
    .await?;
    let opened = count(&connector, "SELECT COUNT(*) FROM alerts").await?;
    shutdown.cancel();
    let _ = worker.await;
    let mails = fakes.smtp().messages();
    let digests = mails
        .iter()
        .filter(|m| {
            m.header("subject")
                .is_some_and(|s| s.starts_with("Connector La Zona:"))
        })
        .count();
    Ok(Run {
        cpu,
        wall,
        dead,
        opened,
        mails: mails.len(),
        digests,
    })
}
