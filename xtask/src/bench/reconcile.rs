//! `cargo xtask bench reconcile --db sqlite|postgres [--orders N] [--missing M]`: one
//! reconciliation pass over a shop of N orders (the sandbox's WooCommerce listing) of which M
//! never reached the inbox. The other N - M are stored first as the webhooks they came as. The
//! pass is timed; then the worker books what it took in, and the Koiki calls are counted (exactly
//! M); then a second pass finds nothing missing, and the webhooks and jobs tables are compared
//! before and after it (no write).

use super::{BenchDb, Db};
use adapters::config::Settings;
use adapters::sandbox::{Sandbox, SandboxOptions};
use anyhow::{Context, Result, bail};
use bytes::Bytes;
use chrono::{Duration as Age, Utc};
use connector::Connector;
use domain::model::{NewWebhook, Resource, WebhookStatus};
use figment::providers::Serialized;
use std::time::Instant;

const FIRST_ORDER_ID: i64 = 700_000;

struct ReconcileArgs {
    db: Db,
    orders: usize,
    missing: usize,
}

impl ReconcileArgs {
    fn parse(args: &[String]) -> Result<Self> {
        let mut a = ReconcileArgs {
            db: Db::Sqlite,
            orders: 10_000,
            missing: 100,
        };
        let mut db = None;
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let mut value = || {
                it.next()
                    .cloned()
                    .with_context(|| format!("{flag} needs a value"))
            };
            let number = |v: String| v.replace('_', "").parse::<usize>().context("a number");
            match flag.as_str() {
                "--db" => {
                    db = Some(Db::parse(&value()?)?);
                }
                "--orders" => a.orders = number(value()?)?,
                "--missing" => a.missing = number(value()?)?,
                other => bail!("bench reconcile: unknown option `{other}`"),
            }
        }
        a.db = db.context("bench reconcile: --db sqlite|postgres is required")?;
        if a.missing > a.orders {
            bail!("bench reconcile: --missing is more than --orders");
        }
        Ok(a)
    }
}

/// `bench reconcile --db sqlite|postgres [--orders N] [--missing M]`.
pub(crate) fn run(args: &[String]) -> Result<()> {
    let args = ReconcileArgs::parse(args)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(async {
        let bench_db = BenchDb::create(args.db).await?;
        let result = measure(&args, &bench_db.url).await;
        bench_db.remove().await?;
        result
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

async fn measure(args: &ReconcileArgs, db_url: &str) -> Result<()> {
    let fakes = Sandbox::start(SandboxOptions {
        count_mails_only: true,
        ..SandboxOptions::default()
    })
    .await
    .context("starting the sandbox")?;
    let mut figment = Settings::figment(None)?
        .merge(Serialized::default("database.url", db_url))
        .merge(Serialized::default("reconcile.enabled", "false"))
        .merge(Serialized::default("log.level", "warn"));
    for (key, value) in fakes.config() {
        figment = figment.merge(Serialized::default(key, value));
    }
    let settings: Settings = figment.extract().context("settings")?;
    let connector = Connector::builder(settings).build().await?;
    let reconciler = connector
        .reconciler()
        .context("the sandbox's shop is configured")?
        .clone();

    // The shop: N orders modified over the last hour, oldest first; every (N/M)-th is missing
    // from the inbox, the others are stored as the webhooks that brought them.
    let start = Utc::now() - Age::hours(1);
    let step = args.orders / args.missing.max(1);
    let inbox = connector.inbox();
    let mut orders = Vec::with_capacity(args.orders);
    let mut missing = 0;
    let loading = Instant::now();
    let mut stores = tokio::task::JoinSet::new();
    for i in 0..args.orders {
        let id = FIRST_ORDER_ID + i as i64;
        let modified = start + Age::milliseconds(i as i64 * 300);
        let stamp = modified.format("%Y-%m-%dT%H:%M:%S%.3f").to_string();
        let order = Sandbox::sample_order(id, "processing", &stamp);
        let is_missing = missing < args.missing && step > 0 && i % step == 0;
        if is_missing {
            missing += 1;
        } else {
            let inbox = inbox.clone();
            let body = Bytes::from(serde_json::to_vec(&order)?);
            stores.spawn(async move {
                inbox
                    .record(NewWebhook {
                        resource: Resource::Order,
                        topic: Some("order.updated".into()),
                        event: Some("updated".into()),
                        delivery_id: Some(format!("bench-{id}")),
                        wc_webhook_id: None,
                        source: None,
                        subject_id: Some(id),
                        subject_modified: Some(modified),
                        headers: Vec::new(),
                        body,
                        received_at: Utc::now(),
                        // Held already (processed long ago): no job.
                        status: WebhookStatus::Ignored,
                        error: None,
                    })
                    .await
            });
            if stores.len() >= 256 {
                while let Some(r) = stores.join_next().await {
                    r??;
                }
            }
        }
        orders.push(order);
    }
    while let Some(r) = stores.join_next().await {
        r??;
    }
    fakes.add_shop_orders(orders);
    println!(
        "shop: {} orders, {missing} of them never received ({} stored as webhooks in {:.1}s)",
        args.orders,
        args.orders - missing,
        loading.elapsed().as_secs_f64()
    );

    let calls_before = fakes.calls();
    let started = Instant::now();
    let report = reconciler
        .pass(start - Age::minutes(5), false)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let pass = started.elapsed();
    println!(
        "pass: {:.2}s, {} pages, {} listed, {} held, {} missing, {} stored",
        pass.as_secs_f64(),
        report.pages,
        report.listed,
        report.seen,
        report.missing.len(),
        report.stored.len()
    );
    if report.missing.len() != missing || report.stored.len() != missing {
        bail!(
            "the pass found {} missing orders, {missing} expected",
            report.missing.len()
        );
    }

    let draining = Instant::now();
    connector.drain().await?;
    let bookings = fakes.calls().koiki_bookings - calls_before.koiki_bookings;
    println!(
        "booked: {bookings} Koiki calls for the {missing} orders taken in ({:.1}s to drain)",
        draining.elapsed().as_secs_f64()
    );
    if bookings != missing as u64 {
        bail!("{bookings} Koiki bookings, {missing} expected");
    }

    let tables = "SELECT (SELECT COUNT(*) FROM webhooks) * 1000000 + (SELECT COUNT(*) FROM jobs)";
    let before = count(&connector, tables).await?;
    let started = Instant::now();
    let again = reconciler
        .pass(start - Age::minutes(5), false)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let second = started.elapsed();
    let after = count(&connector, tables).await?;
    println!(
        "second pass: {:.2}s, {} listed, {} missing, webhooks and jobs {}",
        second.as_secs_f64(),
        again.listed,
        again.missing.len(),
        if before == after {
            "unchanged"
        } else {
            "CHANGED"
        }
    );
    if !again.missing.is_empty() || before != after {
        bail!("the second pass wrote to the database");
    }
    println!();
    println!(
        "| {} | {} orders, {missing} missing | {:.2} s | {bookings} bookings | {:.2} s, no write |",
        args.db.name(),
        args.orders,
        pass.as_secs_f64(),
        second.as_secs_f64()
    );
    Ok(())
}
