//! The operators' command line (`lazona`): migrations and a look into the inbox.
//!
//! Every command prints human text by default and JSON with `--json`; exit codes are 0 on
//! success, 1 on failure, 2 on a usage error (clap), 3 when the thing asked for does not exist,
//! and 4 when an action is refused as it stands (a retry that needs `--force`, tracking a shipment
//! without a barcode).

#![allow(clippy::print_stdout, reason = "a command line prints its results")]

use adapters::config::Settings;
use adapters::db::{ConnectError, Database, Schema};
use clap::{Parser, Subcommand};
use connector::Connector;
use domain::model::{Resource, WebhookFilter, WebhookId, WebhookStatus};
use std::path::PathBuf;
use std::process::ExitCode;

mod sandbox;

pub use sandbox::SandboxArgs;

mod alerts;
mod audit;
mod config_check;
mod dead;
mod mail_events;
mod purge;
mod reconcile;
mod replay;
mod shipments;
mod tokens;

pub use alerts::AlertsCommand;
pub use audit::AuditArgs;
pub use config_check::ConfigCommand;
pub use dead::DeadCommand;
pub use mail_events::MailEventsCommand;
pub use purge::PurgeArgs;
pub use reconcile::ReconcileArgs;
pub use replay::ReplayArgs;

pub use shipments::{LabelsCommand, ShipmentsCommand};
pub use tokens::TokensCommand;

/// Exit code: the thing asked for does not exist.
pub(crate) const NOT_FOUND: u8 = 3;
/// Exit code: the action is refused as things stand.
pub(crate) const REFUSED: u8 = 4;

/// La Zona connector: operations on the connector's database.
#[derive(Debug, Parser)]
#[command(name = "lazona", version)]
pub struct Cli {
    /// A TOML configuration file (see config/default.toml).
    #[arg(long, global = true, env = "LAZONA_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Who takes the actions (recorded in the audit log and the webhook's or shipment's
    /// history); default: the OS user at the host (`maria@caixa`).
    #[arg(long, global = true, env = "LAZONA_ACTOR", value_name = "NAME")]
    pub actor: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply the pending database migrations.
    Migrate,
    /// Look into the webhook inbox.
    #[command(subcommand)]
    Webhooks(WebhooksCommand),
    /// Start fake Koiki, WCFM, WordPress and WooCommerce endpoints and an SMTP sink, and print
    /// the environment that points lazona-http at them (a sandbox: nothing real is called).
    Sandbox(SandboxArgs),
    /// Look at shipments; book one again or refresh its tracking (run by a worker).
    #[command(subcommand)]
    Shipments(ShipmentsCommand),
    /// Download label PDFs; mail a label again.
    #[command(subcommand)]
    Labels(LabelsCommand),
    /// Process stored webhooks again (nothing already booked is booked again unless --force),
    /// or re-send them to another connector with --to.
    Replay(ReplayArgs),
    /// Ask the shop for the orders modified since a time and take in, as webhooks, those the
    /// connector never received (a worker then processes them); show the shop's webhooks.
    Reconcile(ReconcileArgs),
    /// Erase one customer's personal data: the bodies of the webhooks that concern them, the
    /// labels and carrier requests of their orders' shipments (asks first; --dry-run to look).
    Purge(PurgeArgs),
    /// Jobs the workers gave up on: list, show, requeue.
    #[command(subcommand)]
    Dead(DeadCommand),
    /// What needs a person: list, show, resolve alerts.
    #[command(subcommand)]
    Alerts(AlertsCommand),
    /// What the mail relay reported about the label mails (delivered, bounced, ...), and the
    /// deliveries that could not be read, kept for inspection.
    #[command(subcommand)]
    MailEvents(MailEventsCommand),
    /// The resolved configuration and a test of every connection.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// The operations API's tokens: create (the secret is shown once), list, revoke.
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// Who did what: the operators' actions recorded with their actor (a token, `user@host`),
    /// newest first.
    Audit(AuditArgs),
    /// Copy the original (Django) deployment's shipments, so that its history stays and no
    /// order it shipped is booked again. Safe to run again: rows already here are skipped.
    ImportDjango {
        /// The Django database URL (postgres://... or sqlite://...).
        #[arg(long = "from", value_name = "URL")]
        from: String,
        /// The Django media folder, where `label_url` (`pdf_barcodes/...`) points: the labels
        /// are copied too.
        #[arg(long)]
        labels_dir: Option<PathBuf>,
        /// Count what would be imported; write nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// `lazona webhooks ...`
#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// List stored webhooks, newest first. The error column says why a webhook failed or was
    /// rejected; with --json, `error` is the last status note whatever the status (a processed
    /// order's summary too).
    List {
        /// Only this status (queued, processed, failed, rejected, ignored).
        #[arg(long)]
        status: Option<WebhookStatus>,
        /// Only this endpoint (order, customer).
        #[arg(long)]
        resource: Option<Resource>,
        /// Only this topic (order.created, customer.updated, ...).
        #[arg(long)]
        topic: Option<String>,
        /// Only this order or customer id.
        #[arg(long, visible_alias = "order")]
        subject: Option<i64>,
        /// Only this delivery id (X-WC-Webhook-Delivery-ID).
        #[arg(long)]
        delivery: Option<String>,
        /// Received at or after this time (RFC 3339, e.g. 2026-11-20T08:00:00Z).
        #[arg(long)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// Received before this time (RFC 3339).
        #[arg(long)]
        until: Option<chrono::DateTime<chrono::Utc>>,
        /// Only ids below this one (the next page).
        #[arg(long)]
        before: Option<i64>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u64,
    },
    /// Show one stored webhook: headers, body, status, and its error (or note when it did not
    /// fail).
    Show {
        /// Its inbox id.
        id: i64,
    },
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::Sandbox(args) = &cli.command {
        // No configuration, no database: the sandbox stands alone.
        return sandbox::run(args).await;
    }
    if let Command::Config(cmd) = cli.command {
        // Checks the configuration itself: it must not need a valid one to start.
        return config_check::check(cli.config.as_deref(), cmd, cli.json).await;
    }
    let settings = Settings::load(cli.config.as_deref())?;
    let db = open(&settings, &cli.command).await?;
    if matches!(cli.command, Command::Migrate | Command::ImportDjango { .. }) {
        return maintain(db, cli.command, cli.json).await;
    }
    // The connector through its one composition root, on the database opened as this command
    // needs: its stores, and its queue as the jobs table (workers run elsewhere).
    let connector = Connector::builder(settings)
        .database(db)
        .without_worker()
        .build()
        .await?;
    let actor = audit::actor(cli.actor.as_deref());
    let op = connector.operator(&actor);
    match cli.command {
        Command::Webhooks(cmd) => webhooks(&connector, cmd, cli.json).await,
        Command::Shipments(cmd) => shipments::shipments(&connector, &op, cmd, cli.json).await,
        Command::Labels(cmd) => shipments::labels(&connector, &op, cmd, cli.json).await,
        Command::Replay(args) => replay::replay(&connector, &op, args, cli.json).await,
        Command::Dead(cmd) => dead::dead(&connector, &op, cmd, cli.json).await,
        Command::Alerts(cmd) => alerts::alerts(&connector, &op, cmd, cli.json).await,
        Command::MailEvents(cmd) => mail_events::mail_events(&connector, cmd, cli.json).await,
        Command::Tokens(cmd) => tokens::tokens(&connector, &op, cmd, cli.json).await,
        Command::Audit(args) => audit::audit(&connector, args, cli.json).await,
        Command::Reconcile(args) => reconcile::reconcile(&connector, args, cli.json).await,
        Command::Purge(args) => purge::purge(&connector, args, actor.clone(), cli.json).await,
        Command::Sandbox(_)
        | Command::Config(_)
        | Command::Migrate
        | Command::ImportDjango { .. } => unreachable!("handled above"),
    }
}

/// The commands on the database itself: its migrations, the import from the original.
async fn maintain(db: Database, command: Command, json: bool) -> anyhow::Result<ExitCode> {
    let cli_json = json;
    match command {
        Command::Migrate => {
            db.migrate().await?;
            if cli_json {
                println!("{}", serde_json::json!({ "migrated": true }));
            } else {
                println!("database migrated");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::ImportDjango {
            from,
            labels_dir,
            dry_run,
        } => {
            let report =
                adapters::db::import_django_shipments(&db, &from, labels_dir.as_deref(), dry_run)
                    .await?;
            if cli_json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!(
                    "{}read {}, imported {}, already here {}, duplicates skipped {}, labels {}, \
                     unknown status (now BOOKING) {}",
                    if dry_run { "dry run: " } else { "" },
                    report.read,
                    report.imported,
                    report.already_here,
                    report.duplicates,
                    report.labels,
                    report.unknown_status
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        _ => unreachable!("only the database's own commands"),
    }
}

/// What creates a missing database, said where one is missing.
pub(crate) const CREATE_HINT: &str =
    "lazona-http creates the database and its tables when it starts; or run `lazona migrate`";

impl Command {
    /// Whether the command may write to the database.
    fn writes(&self) -> bool {
        match self {
            Command::Migrate | Command::Replay(_) | Command::ImportDjango { .. } => true,
            Command::Reconcile(args) => !args.dry_run,
            Command::Purge(args) => !args.dry_run,
            Command::Tokens(cmd) => !matches!(cmd, TokensCommand::List),
            Command::Shipments(cmd) => matches!(
                cmd,
                ShipmentsCommand::Retry { .. } | ShipmentsCommand::Track { .. }
            ),
            Command::Dead(cmd) => matches!(cmd, DeadCommand::Requeue { .. }),
            Command::Alerts(cmd) => matches!(cmd, AlertsCommand::Resolve { .. }),
            Command::Labels(cmd) => matches!(cmd, LabelsCommand::Resend { .. }),
            Command::Webhooks(_)
            | Command::Audit(_)
            | Command::MailEvents(_)
            | Command::Sandbox(_)
            | Command::Config(_) => false,
        }
    }
}

/// Opens the database for `command`. A command that writes migrates it first when
/// `database.migrate_on_start` is on (as the server does at start-up), and otherwise refuses a
/// database whose migrations have not all run. A command that only looks never creates a SQLite
/// file, and says so when there is no database or no tables yet.
async fn open(settings: &Settings, command: &Command) -> anyhow::Result<Database> {
    let cfg = &settings.database;
    if matches!(command, Command::Migrate) {
        return Ok(Database::connect(cfg).await?);
    }
    if command.writes() {
        let db = Database::connect(cfg).await?;
        if cfg.migrate_on_start {
            db.migrate()
                .await
                .map_err(|e| anyhow::anyhow!("cannot migrate the database: {e}"))?;
        } else if db.schema().await? != Schema::Current {
            anyhow::bail!(
                "the database's migrations have not all run, and database.migrate_on_start is \
                 off: run `lazona migrate` first"
            );
        }
        return Ok(db);
    }
    let db = match Database::connect_existing(cfg).await {
        Err(e @ ConnectError::Missing(_)) => anyhow::bail!("{e} ({CREATE_HINT})"),
        other => other?,
    };
    if db.schema().await? == Schema::Empty {
        anyhow::bail!("the database has no tables yet ({CREATE_HINT})");
    }
    Ok(db)
}

/// The inbox keeps one note per webhook, the last status change's (`"booked 1, refused 0, ..."`
/// for a processed order): it is an error only when the webhook failed or was rejected.
fn failure(status: WebhookStatus, note: Option<&str>) -> Option<&str> {
    matches!(status, WebhookStatus::Failed | WebhookStatus::Rejected)
        .then_some(note)
        .flatten()
}

async fn webhooks(
    connector: &Connector,
    cmd: WebhooksCommand,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let inbox = connector.inbox();
    let inbox = inbox.as_ref();
    match cmd {
        WebhooksCommand::List {
            status,
            resource,
            topic,
            subject,
            delivery,
            since,
            until,
            before,
            limit,
        } => {
            let filter = WebhookFilter {
                status,
                resource,
                topic,
                subject_id: subject,
                delivery_id: delivery,
                since,
                until,
                before_id: before.map(WebhookId),
                limit,
            };
            let rows = inbox.list(&filter).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!(
                    "{:>8}  {:<9}  {:<16}  {:>8}  {:<10}  {:<20}  error",
                    "id", "resource", "topic", "subject", "status", "received"
                );
                for w in rows {
                    println!(
                        "{:>8}  {:<9}  {:<16}  {:>8}  {:<10}  {:<20}  {}",
                        w.id,
                        w.resource,
                        w.topic.as_deref().unwrap_or("-"),
                        w.subject_id.map_or("-".into(), |s| s.to_string()),
                        w.status,
                        w.received_at.format("%Y-%m-%d %H:%M:%S"),
                        failure(w.status, w.error.as_deref()).unwrap_or("")
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        WebhooksCommand::Show { id } => {
            let Some(w) = inbox.get(WebhookId(id)).await? else {
                eprintln!("no webhook {id}");
                return Ok(ExitCode::from(NOT_FOUND));
            };
            let history = inbox.history(w.id).await?;
            let actions = audit::on(
                connector.audit().as_ref(),
                domain::model::audit::subject::webhook(id),
            )
            .await?;
            let pruned = w.pruned.map(|p| p.explain_body(w.data.received_at));
            let body = match &pruned {
                Some(why) => format!("({why})"),
                None => serde_json::from_slice::<serde_json::Value>(&w.data.body)
                    .map(|v| serde_json::to_string_pretty(&v).unwrap_or_default())
                    .unwrap_or_else(|_| String::from_utf8_lossy(&w.data.body).into_owned()),
            };
            if json {
                let out = serde_json::json!({
                    "id": w.id,
                    "resource": w.data.resource,
                    "topic": w.data.topic,
                    "delivery_id": w.data.delivery_id,
                    "subject_id": w.data.subject_id,
                    "status": w.data.status,
                    "received_at": w.data.received_at,
                    "processed_at": w.processed_at,
                    "error": w.last_error,
                    "headers": w.data.headers,
                    "history": history,
                    "actions": actions,
                    "body": String::from_utf8_lossy(&w.data.body),
                    "pruned": w.pruned,
                    "pruned_note": pruned,
                });
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!("webhook {}  {}  {}", w.id, w.data.resource, w.data.status);
                println!("received  {}", w.data.received_at);
                if let Some(t) = w.processed_at {
                    println!("processed {t}");
                }
                match (
                    failure(w.data.status, w.last_error.as_deref()),
                    &w.last_error,
                ) {
                    (Some(e), _) => println!("error     {e}"),
                    (None, Some(note)) => println!("note      {note}"),
                    (None, None) => {}
                }
                println!("\nhistory:");
                for e in &history {
                    println!(
                        "  {}  {}  {}",
                        e.at,
                        e.status,
                        e.detail.as_deref().unwrap_or("")
                    );
                }
                audit::print_actions(&actions);
                println!("\nheaders:");
                for (k, v) in &w.data.headers {
                    println!("  {k}: {v}");
                }
                println!("\nbody:\n{body}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
