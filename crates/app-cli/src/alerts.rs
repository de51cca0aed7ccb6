//! `lazona alerts ...`: what needs a person, and closing it.

use crate::NOT_FOUND;
use clap::Subcommand;
use connector::Connector;
use domain::model::{Alert, AlertFilter, AlertKind, AlertState};
use std::process::ExitCode;

/// `lazona alerts ...`
#[derive(Debug, Subcommand)]
pub enum AlertsCommand {
    /// List alerts, the most recently seen first (open ones unless --all or --state).
    List {
        /// Only this state (open, resolved).
        #[arg(long, conflicts_with = "all")]
        state: Option<AlertState>,
        /// Open and resolved alike.
        #[arg(long)]
        all: bool,
        /// Only this kind (job_dead, booking_stuck, tracking_error, booking_refused,
        /// shop_silent, label_mail_bounced, shop_webhook, order_withdrawn).
        #[arg(long)]
        kind: Option<AlertKind>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Show one alert: what happened, what to do, how often, and whether it is told.
    Show {
        /// The alert id.
        id: i64,
    },
    /// Close alerts by hand (an alert also closes itself when its condition ends).
    Resolve {
        /// The alert ids.
        #[arg(required = true)]
        ids: Vec<i64>,
        /// Who resolves them (default: the OS user and host).
        #[arg(long)]
        actor: Option<String>,
    },
}

/// Who runs this command: `--actor`, or the OS user at the host.
pub(crate) fn actor(given: Option<String>) -> String {
    given.unwrap_or_else(|| {
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("USERNAME"))
            .unwrap_or_else(|_| "unknown".into());
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_default();
        if host.is_empty() {
            format!("cli:{user}")
        } else {
            format!("cli:{user}@{host}")
        }
    })
}

fn line(a: &Alert) -> String {
    format!(
        "{:>6}  {:<9}  {:<18}  {:<16}  {:>5}  {:<20}  {}",
        a.id,
        a.state.as_str(),
        a.kind.as_str(),
        a.subject,
        a.count,
        a.last_seen.format("%Y-%m-%d %H:%M:%S"),
        a.summary
    )
}

/// Runs `lazona alerts ...`.
pub(crate) async fn alerts(
    connector: &Connector,
    cmd: AlertsCommand,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let store = connector.alerts().store().clone();
    match cmd {
        AlertsCommand::List {
            state,
            all,
            kind,
            limit,
        } => {
            let filter = AlertFilter {
                state: if all {
                    None
                } else {
                    Some(state.unwrap_or(AlertState::Open))
                },
                kind,
                limit,
            };
            let found = store.list(&filter).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&found)?);
            } else {
                println!(
                    "{:>6}  {:<9}  {:<18}  {:<16}  {:>5}  {:<20}  summary",
                    "id", "state", "kind", "subject", "count", "last seen"
                );
                for a in &found {
                    println!("{}", line(a));
                }
                if found.is_empty() {
                    println!("(none)");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        AlertsCommand::Show { id } => {
            let Some(a) = store.get(id).await? else {
                eprintln!("no alert {id}");
                return Ok(ExitCode::from(NOT_FOUND));
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&a)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!("alert {}: {}", a.id, a.summary);
            println!("kind:        {}", a.kind);
            println!("subject:     {}", a.subject);
            println!("state:       {}", a.state.as_str());
            if let (Some(at), Some(by)) = (a.resolved_at, &a.resolved_by) {
                println!("resolved:    {} by {by}", at.to_rfc3339());
            }
            println!("seen:        {} time(s)", a.count);
            println!("first seen:  {}", a.first_seen.to_rfc3339());
            println!("last seen:   {}", a.last_seen.to_rfc3339());
            let told = |due: bool| if due { "not yet" } else { "yes" };
            println!(
                "told:        mail {}, webhook {}",
                told(a.mail_due),
                told(a.hook_due)
            );
            println!("\n{}", a.detail.trim_end());
            Ok(ExitCode::SUCCESS)
        }
        AlertsCommand::Resolve { ids, actor: given } => {
            let by = actor(given);
            let mut resolved = Vec::new();
            let mut missing = Vec::new();
            for id in ids {
                match store.resolve_id(id, &by).await? {
                    Some(a) => resolved.push(a),
                    None => missing.push(id),
                }
            }
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "resolved": resolved, "not_found": missing })
                );
            } else {
                for a in &resolved {
                    println!(
                        "alert {} resolved by {}",
                        a.id,
                        a.resolved_by.as_deref().unwrap_or(&by)
                    );
                }
                for id in &missing {
                    eprintln!("no alert {id}");
                }
            }
            Ok(if missing.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(NOT_FOUND)
            })
        }
    }
}
