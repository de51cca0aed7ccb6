//! `lazona purge --customer EMAIL`: erases one customer's personal data (README, "Personal
//! data"): the bodies of the webhooks that concern them, the labels and carrier requests of their
//! orders' shipments, those shipments' alert details; recorded in the audit log under a hash of
//! the e-mail.

use crate::REFUSED;
use clap::Args;
use connector::Connector;
use domain::model::{Actor, ErasureReport};
use std::process::ExitCode;

/// `lazona purge --customer EMAIL [--dry-run] [--yes] [--actor NAME]`
#[derive(Debug, Args)]
pub struct PurgeArgs {
    /// The customer's e-mail (billing, shipping or customer account), in any case.
    #[arg(long, value_name = "EMAIL")]
    pub customer: String,
    /// Say what would be erased; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask: erase.
    #[arg(long)]
    pub yes: bool,
}

/// Finds what concerns the customer, asks (unless `--yes` or `--dry-run`), erases, says what it
/// did.
pub(crate) async fn purge(
    connector: &Connector,
    args: PurgeArgs,
    actor: Actor,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let found = connector.purge(&args.customer, true, actor.clone()).await?;
    if args.dry_run {
        print(&found, json)?;
        return Ok(ExitCode::SUCCESS);
    }
    if !args.yes
        && !crate::replay::confirm(&format!(
            "About to erase the personal data of {} webhook(s) and {} shipment(s) for good. \
             Go ahead?",
            found.webhooks_cleared, found.shipments_cleared
        ))?
    {
        eprintln!("nothing erased");
        return Ok(ExitCode::from(REFUSED));
    }
    let done = connector.purge(&args.customer, false, actor).await?;
    print(&done, json)?;
    Ok(ExitCode::SUCCESS)
}

fn print(report: &ErasureReport, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
        return Ok(());
    }
    let ids = |v: &[i64]| {
        v.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "{}{} webhook(s) concern the customer ({}), of orders {}; {} shipment(s) ({})",
        if report.dry_run { "dry run: " } else { "" },
        report.webhook_ids.len(),
        ids(&report.webhook_ids),
        ids(&report.order_ids),
        report.shipment_ids.len(),
        ids(&report.shipment_ids),
    );
    println!(
        "{} {} webhook bodies and {} shipments' labels and requests{}",
        if report.dry_run {
            "would clear"
        } else {
            "cleared"
        },
        report.webhooks_cleared,
        report.shipments_cleared,
        if report.dry_run {
            String::new()
        } else {
            format!(
                "; recorded in the audit log as customer:{}",
                report.subject_hash
            )
        }
    );
    Ok(())
}
