//! `lazona shipments ...` and `lazona labels ...`: look at shipments (their label mail's state
//! and the mail relay's reports too), download labels, and the operator's actions (book again,
//! refresh tracking, mail a label again) run as worker jobs.

use crate::{NOT_FOUND, REFUSED};
use anyhow::Context;
use clap::Subcommand;
use connector::Connector;
use domain::model::{
    JobId, MailEvent, MailEventFilter, MailEventStatus, MailState, PastBooking, ShipmentFilter,
    ShipmentRecord, ShipmentStatus,
};
use domain::ports::{JobQueue, MailEventStore, ShipmentStore};
use domain::service::operations::{self, Enqueued, OperationError, Operator, Refusal};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// `lazona shipments ...`
#[derive(Debug, Subcommand)]
pub enum ShipmentsCommand {
    /// List shipments, newest first.
    List {
        /// Only this order.
        #[arg(long)]
        order: Option<i64>,
        /// Only this vendor.
        #[arg(long)]
        vendor: Option<i64>,
        /// Only this status (BOOKING, ERROR_FROM_BODY, LABEL_SENT, IN_PROCESS, ON_HOLD,
        /// ERROR_FROM_TRACKING, DELIVERED).
        #[arg(long, value_parser = parse_status)]
        status: Option<ShipmentStatus>,
        /// Only this carrier barcode.
        #[arg(long)]
        barcode: Option<String>,
        /// Only ids below this one (the next page).
        #[arg(long)]
        before: Option<i64>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u64,
    },
    /// Show one shipment: status, barcode, messages, its label mail (where it stands and what the
    /// mail relay reported), the request sent to the carrier.
    Show {
        /// The shipment id.
        id: i64,
    },
    /// Book the shipment again (the order is fetched again from WooCommerce) and mail the new
    /// label. Only a refused booking is booked again unless `--force`.
    Retry {
        /// The shipment id.
        id: i64,
        /// Book even though the carrier already has a booking (a second parcel).
        #[arg(long)]
        force: bool,
        /// Waiting for the worker.
        #[command(flatten)]
        wait: Wait,
    },
    /// Ask the carrier for the shipment's tracking status now.
    Track {
        /// The shipment id.
        id: i64,
        /// Waiting for the worker.
        #[command(flatten)]
        wait: Wait,
    },
}

/// How long an action waits for a worker to carry it out.
#[derive(Debug, clap::Args)]
pub struct Wait {
    /// Enqueue the job and return without waiting for a worker.
    #[arg(long)]
    no_wait: bool,
    /// Seconds to wait for a worker to carry the job out.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
}

/// `lazona labels ...`
#[derive(Debug, Subcommand)]
pub enum LabelsCommand {
    /// Write a shipment's label PDF to a file (`-` for standard output).
    Get {
        /// The shipment id.
        id: i64,
        /// Where to write it.
        #[arg(short, long)]
        output: PathBuf,
        /// The label of one of the shipment's past bookings instead (its id, as `shipments
        /// show` lists them): a booking a forced retry replaced, or a second parcel.
        #[arg(long, value_name = "PAST_ID")]
        past: Option<i64>,
    },
    /// Mail the shipment's label again (a worker sends it): to its vendor's address as the shop
    /// has it now, or to --to. Recorded on the shipment (its mail state back to `sent`) and
    /// among its mail events.
    Resend {
        /// The shipment id.
        id: i64,
        /// Mail it to this address instead of the vendor's.
        #[arg(long, value_name = "EMAIL")]
        to: Option<String>,
        /// Waiting for the worker.
        #[command(flatten)]
        wait: Wait,
    },
}

fn parse_status(s: &str) -> Result<ShipmentStatus, String> {
    s.to_ascii_uppercase().parse()
}

fn print_table(rows: &[ShipmentRecord]) {
    println!(
        "{:>8}  {:>8}  {:>7}  {:<12}  {:<19}  {:<20}  {:<6}  {:<20}  message",
        "id", "order", "vendor", "method", "status", "barcode", "mailed", "updated"
    );
    for s in rows {
        println!(
            "{:>8}  {:>8}  {:>7}  {:<12}  {:<19}  {:<20}  {:<6}  {:<20}  {}",
            s.id,
            s.order_id,
            s.vendor_id,
            s.method.as_str(),
            s.status.as_str(),
            if s.delivery_id.is_empty() {
                "-"
            } else {
                &s.delivery_id
            },
            if s.mailed_at.is_some() { "yes" } else { "no" },
            s.updated_at.format("%Y-%m-%d %H:%M:%S"),
            s.message.lines().next().unwrap_or("")
        );
    }
}

/// A shipment with the bookings it no longer holds, its label mails' events and the operators'
/// actions on it, as `shipments show --json` prints it.
#[derive(serde::Serialize)]
struct Shown<'a> {
    #[serde(flatten)]
    shipment: &'a ShipmentRecord,
    past_bookings: &'a [PastBooking],
    mail_events: &'a [MailEvent],
    actions: &'a [domain::model::AuditEntry],
}

fn print_mail_events(s: &ShipmentRecord, events: &[MailEvent]) {
    if events.is_empty() {
        return;
    }
    println!("\nlabel mail events (newest first):");
    for e in events {
        let d = &e.data;
        println!(
            "  {:<19}  {:<8}  {:<11}  {:<9}  {:<30}  {}{}",
            d.occurred_at
                .unwrap_or(e.received_at)
                .format("%Y-%m-%d %H:%M:%S"),
            d.provider,
            d.event,
            d.state.map_or("-", |m| m.as_str()),
            d.email.as_deref().unwrap_or("-"),
            d.detail.as_deref().unwrap_or(""),
            match d.status {
                MailEventStatus::Applied => String::new(),
                MailEventStatus::Stale => " (about an earlier label mail: no change)".to_owned(),
                MailEventStatus::Ignored => " (no change)".to_owned(),
                other => format!(" ({other})"),
            }
        );
    }
    if s.mail_state.is_some_and(MailState::is_failure) {
        println!(
            "\nThe vendor has no label: check their address in the shop, then `lazona labels \
             resend {}` (or `--to EMAIL`).",
            s.id
        );
    }
}

fn print_past(s: &ShipmentRecord, past: &[PastBooking]) {
    if past.is_empty() {
        return;
    }
    println!("\npast bookings (parcels the carrier booked that this shipment no longer holds):");
    for p in past {
        println!(
            "  {:>4}  {:<10}  {:<16}  {:<20}  kept {}  label {}",
            p.id,
            p.reason.as_str(),
            p.status.as_str(),
            if p.delivery_id.is_empty() {
                "-"
            } else {
                &p.delivery_id
            },
            p.kept_at.format("%Y-%m-%d %H:%M:%S"),
            if p.has_label {
                format!("lazona labels get {} --past {} -o label.pdf", s.id, p.id)
            } else {
                "none".into()
            }
        );
    }
}

fn print_one(s: &ShipmentRecord) {
    println!(
        "shipment {}  order {}  vendor {}  {}",
        s.id,
        s.order_id,
        s.vendor_id,
        s.method.as_str()
    );
    println!("status     {}", s.status);
    if !s.delivery_id.is_empty() {
        println!("barcode    {}", s.delivery_id);
    }
    println!(
        "label      {}",
        match (s.has_label, &s.label_pruned) {
            (true, _) => format!("stored (lazona labels get {} -o label.pdf)", s.id),
            (false, Some(pruned)) => format!("none: {}", pruned.explain_label()),
            (false, None) => "none".into(),
        }
    );
    println!(
        "mailed     {}",
        s.mailed_at.map_or("no".into(), |t| t.to_string())
    );
    if let Some(state) = s.mail_state {
        println!(
            "mail       {state}{}{}",
            s.mail_state_at
                .map_or(String::new(), |t| format!(" since {t}")),
            s.mail_message_id
                .as_deref()
                .map_or(String::new(), |m| format!(" (Message-ID {m})"))
        );
    }
    if let Some(barcode) = &s.noted_barcode {
        println!("noted      tracking note for {barcode} written on the order in the shop");
    }
    if let Some(status) = &s.order_withdrawn {
        println!(
            "WITHDRAWN  the order arrived {status} after this booking: cancel it with Koiki by \
             hand (the admins were mailed)"
        );
    }
    println!("created    {}", s.created_at);
    println!("updated    {}", s.updated_at);
    if let Some(t) = s.tracking_updated_at {
        println!(
            "tracked    {t} (event {})",
            s.tracking_status_created_at.as_deref().unwrap_or("-")
        );
    }
    if !s.message.is_empty() {
        println!("message    {}", s.message);
    }
    if !s.notes.is_empty() {
        println!("notes      {}", s.notes);
    }
    if !s.request.is_empty() {
        println!("\nrequest sent to the carrier:\n{}", s.request);
    }
}

async fn mail_events(events: &dyn MailEventStore, id: i64) -> anyhow::Result<Vec<MailEvent>> {
    Ok(events
        .list(&MailEventFilter {
            shipment_id: Some(id),
            limit: 200,
            ..MailEventFilter::default()
        })
        .await?)
}

async fn find(store: &dyn ShipmentStore, id: i64) -> anyhow::Result<Option<ShipmentRecord>> {
    let found = store.get(id).await?;
    if found.is_none() {
        eprintln!("no shipment {id}");
    }
    Ok(found)
}

/// Runs `lazona shipments ...`.
pub(crate) async fn shipments(
    connector: &Connector,
    op: &Operator<'_>,
    cmd: ShipmentsCommand,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let store = connector.shipments();
    let store = store.as_ref();
    match cmd {
        ShipmentsCommand::List {
            order,
            vendor,
            status,
            barcode,
            before,
            limit,
        } => {
            let rows = store
                .list(&ShipmentFilter {
                    order_id: order,
                    vendor_id: vendor,
                    status,
                    delivery_id: barcode,
                    before_id: before,
                    mail_message_id: None,
                    limit,
                })
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print_table(&rows);
            }
            Ok(ExitCode::SUCCESS)
        }
        ShipmentsCommand::Show { id } => {
            let Some(s) = find(store, id).await? else {
                return Ok(ExitCode::from(NOT_FOUND));
            };
            let past = store.past_bookings(id).await?;
            let mails = mail_events(connector.mail_events().as_ref(), id).await?;
            let actions = crate::audit::on(
                connector.audit().as_ref(),
                domain::model::audit::subject::shipment(id),
            )
            .await?;
            if json {
                let shown = Shown {
                    shipment: &s,
                    past_bookings: &past,
                    mail_events: &mails,
                    actions: &actions,
                };
                println!("{}", serde_json::to_string_pretty(&shown)?);
            } else {
                print_one(&s);
                print_mail_events(&s, &mails);
                print_past(&s, &past);
                crate::audit::print_actions(&actions);
            }
            Ok(ExitCode::SUCCESS)
        }
        ShipmentsCommand::Retry { id, force, wait } => {
            let queue = connector.queue();
            let done = operations::retry_shipment(op, store, queue.as_ref(), id, force).await;
            act(queue.as_ref(), store, id, done, &wait, json).await
        }
        ShipmentsCommand::Track { id, wait } => {
            let queue = connector.queue();
            let done = operations::track_shipment(op, store, queue.as_ref(), id).await;
            act(queue.as_ref(), store, id, done, &wait, json).await
        }
    }
}

/// Reports an action's job (enqueued by [`operations`], or refused) and, unless told not to,
/// waits for a worker to carry it out: the shipment changes, or the job is dead-lettered.
async fn act(
    queue: &dyn JobQueue,
    store: &dyn ShipmentStore,
    id: i64,
    done: Result<Enqueued, OperationError>,
    wait: &Wait,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let (job, kind, before) = match done {
        Ok(Enqueued {
            job_id,
            kind,
            shipment,
        }) => (job_id, kind, shipment),
        Err(OperationError::NoShipment(_)) => {
            eprintln!("no shipment {id}");
            return Ok(ExitCode::from(NOT_FOUND));
        }
        Err(OperationError::Refused(refusal)) => {
            eprintln!("shipment {id} refused: {refusal}.");
            if matches!(refusal, Refusal::NeedsForce { .. }) {
                eprintln!("If a second parcel is what you want, add --force.");
            }
            if matches!(refusal, Refusal::NoLabel) {
                eprintln!(
                    "`lazona shipments show {id}` says why; a refused booking is booked again \
                     with `lazona shipments retry {id}`."
                );
            }
            return Ok(ExitCode::from(REFUSED));
        }
        Err(e) => return Err(e.into()),
    };
    let name = kind.name();
    if wait.no_wait {
        if json {
            println!("{}", serde_json::json!({ "job_id": job, "job": name }));
        } else {
            println!("enqueued {name} as job {job}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !json {
        eprintln!("enqueued {name} as job {job}; waiting for a worker...");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait.timeout);
    loop {
        if let Some(dead) = dead(queue, job).await? {
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "job_id": job, "job": name, "failed": dead })
                );
            } else {
                eprintln!("job {job} failed: {dead}");
            }
            return Ok(ExitCode::FAILURE);
        }
        let now = store.get(before.id).await?;
        if let Some(s) = now
            && s.status != ShipmentStatus::Booking
            && (s.updated_at != before.updated_at
                || s.tracking_updated_at != before.tracking_updated_at
                || s.mailed_at != before.mailed_at)
        {
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                print_one(&s);
            }
            let ok = !matches!(
                s.status,
                ShipmentStatus::ErrorFromBody | ShipmentStatus::ErrorFromTracking
            );
            return Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        if tokio::time::Instant::now() >= deadline {
            eprintln!(
                "job {job} is enqueued but no worker carried it out within {} s: is a worker \
                 running (lazona-http or lazona-worker on this database)? It will run when one \
                 does.",
                wait.timeout
            );
            return Ok(ExitCode::FAILURE);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn dead(queue: &dyn JobQueue, job: JobId) -> anyhow::Result<Option<String>> {
    Ok(queue
        .dead_jobs(1000)
        .await?
        .into_iter()
        .find(|d| d.id == job)
        .map(|d| d.error))
}

/// Runs `lazona labels ...`.
pub(crate) async fn labels(
    connector: &Connector,
    op: &Operator<'_>,
    cmd: LabelsCommand,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let store = connector.shipments();
    match cmd {
        LabelsCommand::Resend { id, to, wait } => {
            let queue = connector.queue();
            let done =
                operations::resend_label(op, store.as_ref(), queue.as_ref(), id, to.as_deref())
                    .await;
            act(queue.as_ref(), store.as_ref(), id, done, &wait, json).await
        }
        LabelsCommand::Get { id, output, past } => {
            let pdf = match past {
                Some(past) => store.past_label(id, past).await?,
                None => store.label(id).await?,
            };
            let Some(pdf) = pdf else {
                match past {
                    Some(past) => {
                        eprintln!("shipment {id} has no past booking {past} with a label")
                    }
                    None => match store.get(id).await?.and_then(|s| s.label_pruned) {
                        Some(pruned) => eprintln!("shipment {id}: {}", pruned.explain_label()),
                        None => eprintln!("shipment {id} has no stored label (or does not exist)"),
                    },
                }
                return Ok(ExitCode::from(NOT_FOUND));
            };
            if output.as_os_str() == "-" {
                use std::io::Write;
                std::io::stdout().write_all(&pdf)?;
            } else {
                std::fs::write(&output, &pdf)
                    .with_context(|| format!("writing {}", output.display()))?;
                eprintln!("wrote {} ({} bytes)", output.display(), pdf.len());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
