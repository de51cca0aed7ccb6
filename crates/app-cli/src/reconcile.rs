//! `lazona reconcile`: one reconciliation pass by hand, over a window the operator chooses.

use chrono::{DateTime, Utc};
use clap::Args;
use connector::Connector;
use std::process::ExitCode;

/// `lazona reconcile --since TIME [--dry-run]`
#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// The window's start: the orders the shop modified after it are listed. RFC 3339
    /// (2026-12-07T08:00:00Z) or an age (90m, 6h, 2d).
    #[arg(long, value_parser = parse_since)]
    pub since: DateTime<Utc>,
    /// Say what is missing; store nothing.
    #[arg(long)]
    pub dry_run: bool,
}

fn parse_since(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let n: i64 = number
        .parse()
        .map_err(|_| format!("{text:?} is neither an RFC 3339 time nor an age such as 6h"))?;
    let age = match unit {
        "m" => chrono::Duration::minutes(n),
        "h" => chrono::Duration::hours(n),
        "d" => chrono::Duration::days(n),
        _ => return Err(format!("{text:?}: an age ends with m, h or d")),
    };
    Ok(Utc::now() - age)
}

/// Runs the pass: the orders the inbox never received are stored as webhooks (source
/// `reconcile`) with their jobs, for the workers; the shop's webhooks are shown, not reported.
pub(crate) async fn reconcile(
    connector: &Connector,
    args: ReconcileArgs,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let Some(reconciler) = connector.reconciler() else {
        anyhow::bail!("no shop is configured (shop.host, WCFMMP_HOST): there is nothing to ask");
    };
    let mut report = reconciler
        .pass(args.since, args.dry_run)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    report.webhooks = reconciler
        .check_webhooks(true)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{}orders modified since {}: {} listed in {} page(s), {} received already, {} missing",
        if args.dry_run { "dry run: " } else { "" },
        args.since.to_rfc3339(),
        report.listed,
        report.pages,
        report.seen,
        report.missing.len()
    );
    if !report.missing.is_empty() {
        let ids: Vec<String> = report.missing.iter().map(ToString::to_string).collect();
        println!("missing orders: {}", ids.join(", "));
    }
    if !report.stored.is_empty() {
        let ids: Vec<String> = report.stored.iter().map(ToString::to_string).collect();
        println!(
            "stored as webhooks {} (source reconcile); a worker processes them",
            ids.join(", ")
        );
    }
    for w in &report.webhooks {
        println!(
            "webhook {:<17} {}{}",
            w.topic,
            w.status,
            w.webhook
                .as_ref()
                .map(|h| format!(" (id {}, {})", h.id, h.delivery_url))
                .unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_reads_a_time_or_an_age() {
        assert_eq!(
            parse_since("2026-12-07T08:00:00Z")
                .expect("time")
                .to_rfc3339(),
            "2026-12-07T08:00:00+00:00"
        );
        let six_hours = Utc::now() - parse_since("6h").expect("age");
        assert!((six_hours.num_minutes() - 360).abs() <= 1);
        assert!(parse_since("yesterday").is_err());
        assert!(parse_since("6w").is_err());
    }
}
