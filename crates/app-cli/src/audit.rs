//! Who did what: the actor every action of this command line is recorded as (`--actor`, or the
//! OS user at the host), `lazona audit` (the actions recorded, with filters), and the actions
//! on one webhook or shipment as `webhooks show` and `shipments show` list them.

use chrono::{DateTime, Utc};
use clap::Args;
use connector::Connector;
use domain::model::{Actor, AuditAction, AuditEntry, AuditFilter};
use domain::ports::AuditLog;
use std::process::ExitCode;

/// Who runs this command: `--actor` (or `LAZONA_ACTOR`), or the OS user at the host
/// (`maria@caixa`), recorded as `cli <name>`.
pub(crate) fn actor(given: Option<&str>) -> Actor {
    if let Some(name) = given.map(str::trim).filter(|n| !n.is_empty()) {
        return Actor::cli(name);
    }
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    if host.is_empty() {
        Actor::cli(user)
    } else {
        Actor::cli(format!("{user}@{host}"))
    }
}

/// `lazona audit ...`
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only this actor's: a token's name, `user@host`, an `--actor` given.
    #[arg(long)]
    actor: Option<String>,
    /// Only this action (replay, retry, track, requeue, resend, purge, resolve_alert,
    /// token_create, token_revoke).
    #[arg(long)]
    action: Option<AuditAction>,
    /// Only on this subject (webhook:12, shipment:7, job:40, alert:3, token:2).
    #[arg(long)]
    subject: Option<String>,
    /// Only those at or after this time (RFC 3339, e.g. 2026-11-20T08:00:00Z).
    #[arg(long)]
    since: Option<DateTime<Utc>>,
    /// Only ids below this one (the next page).
    #[arg(long)]
    before: Option<i64>,
    /// At most this many.
    #[arg(long, default_value_t = 50)]
    limit: u64,
}

/// The actions recorded on `subject` (`shipment:7`), newest first.
pub(crate) async fn on(audit: &dyn AuditLog, subject: String) -> anyhow::Result<Vec<AuditEntry>> {
    Ok(audit
        .list(&AuditFilter {
            subject: Some(subject),
            limit: 200,
            ..AuditFilter::default()
        })
        .await?)
}

fn line(e: &AuditEntry) -> String {
    let d = &e.data;
    format!(
        "{:>6}  {:<19}  {:<13}  {:<14}  {:<28}  {}{}",
        e.id,
        d.at.format("%Y-%m-%d %H:%M:%S"),
        d.action.as_str(),
        d.subject,
        d.actor.to_string(),
        if d.forced { "(forced) " } else { "" },
        d.detail.as_deref().unwrap_or("")
    )
}

/// Prints the operators' actions on a webhook or shipment, under its detail.
pub(crate) fn print_actions(actions: &[AuditEntry]) {
    if actions.is_empty() {
        return;
    }
    println!("\noperator actions (newest first):");
    for e in actions {
        println!("  {}", line(e));
    }
}

/// Runs `lazona audit`.
pub(crate) async fn audit(
    connector: &Connector,
    args: AuditArgs,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let rows = connector
        .audit()
        .list(&AuditFilter {
            actor: args.actor,
            action: args.action,
            subject: args.subject,
            since: args.since,
            before_id: args.before,
            limit: args.limit,
        })
        .await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        println!(
            "{:>6}  {:<19}  {:<13}  {:<14}  {:<28}  detail",
            "id", "at", "action", "subject", "actor"
        );
        for e in &rows {
            println!("{}", line(e));
        }
        if rows.is_empty() {
            println!("(none)");
        }
    }
    Ok(ExitCode::SUCCESS)
}
