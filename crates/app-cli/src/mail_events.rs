//! `lazona mail-events ...`: what the mail relay reported about the label mails (and the labels
//! mailed again), with the deliveries that could not be read, kept for inspection.

use crate::NOT_FOUND;
use clap::Subcommand;
use connector::Connector;
use domain::model::{MailEventFilter, MailEventStatus};
use std::process::ExitCode;

/// `lazona mail-events ...`
#[derive(Debug, Subcommand)]
pub enum MailEventsCommand {
    /// List mail events, newest first.
    List {
        /// Only this status (received, applied, stale, unmatched, ignored, malformed).
        #[arg(long)]
        status: Option<MailEventStatus>,
        /// Only this shipment's.
        #[arg(long)]
        shipment: Option<i64>,
        /// Only ids below this one (the next page).
        #[arg(long)]
        before: Option<i64>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Show one mail event, as received.
    Show {
        /// Its id.
        id: i64,
    },
}

/// Runs `lazona mail-events ...`.
pub(crate) async fn mail_events(
    connector: &Connector,
    cmd: MailEventsCommand,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let store = connector.mail_events();
    match cmd {
        MailEventsCommand::List {
            status,
            shipment,
            before,
            limit,
        } => {
            let rows = store
                .list(&MailEventFilter {
                    shipment_id: shipment,
                    status,
                    before_id: before,
                    limit,
                })
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{:>8}  {:<19}  {:<8}  {:<11}  {:<9}  {:>8}  {:<9}  {:<28}  detail",
                "id", "received", "provider", "event", "state", "shipment", "status", "email"
            );
            for e in rows {
                let d = &e.data;
                println!(
                    "{:>8}  {:<19}  {:<8}  {:<11}  {:<9}  {:>8}  {:<9}  {:<28}  {}",
                    e.id,
                    e.received_at.format("%Y-%m-%d %H:%M:%S"),
                    d.provider,
                    d.event,
                    d.state.map_or("-", |s| s.as_str()),
                    d.shipment_id.map_or("-".into(), |s| s.to_string()),
                    d.status,
                    d.email.as_deref().unwrap_or("-"),
                    d.error.as_deref().or(d.detail.as_deref()).unwrap_or("")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        MailEventsCommand::Show { id } => {
            let Some(e) = store.get(id).await? else {
                eprintln!("no mail event {id}");
                return Ok(ExitCode::from(NOT_FOUND));
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&e)?);
                return Ok(ExitCode::SUCCESS);
            }
            let d = &e.data;
            println!(
                "mail event {}  {} {}  {}",
                e.id, d.provider, d.event, d.status
            );
            println!("received  {}", e.received_at);
            if let Some(t) = d.occurred_at {
                println!("occurred  {t}");
            }
            if let Some(s) = d.state {
                println!("state     {s}");
            }
            if let Some(s) = d.shipment_id {
                println!("shipment  {s} (lazona shipments show {s})");
            }
            for (name, value) in [
                ("email", &d.email),
                ("message", &d.message_id),
                ("relay id", &d.provider_id),
                ("detail", &d.detail),
                ("error", &d.error),
            ] {
                if let Some(v) = value {
                    println!("{name:<9} {v}");
                }
            }
            let raw = serde_json::from_str::<serde_json::Value>(&d.raw)
                .ok()
                .and_then(|v| serde_json::to_string_pretty(&v).ok())
                .unwrap_or_else(|| d.raw.clone());
            println!("\nas received:\n{raw}");
            Ok(ExitCode::SUCCESS)
        }
    }
}
