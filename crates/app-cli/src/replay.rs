//! `lazona replay`: stored webhooks processed again through the normal job path (so nothing is
//! booked twice), or re-sent, signed, to another connector.

use crate::REFUSED;
use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use connector::Connector;
use domain::model::{Resource, Webhook, WebhookFilter, WebhookId, WebhookStatus, WebhookSummary};
use domain::ports::{JobQueue, ShipmentStore, WebhookInbox};
use domain::service::operations::{self, Operator, ReplayTarget};
use domain::service::signature::WebhookSecret;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

/// `lazona replay ...`
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// Inbox ids to replay. Without ids, the filters choose (at least one is required).
    ids: Vec<i64>,
    /// Only this topic (order.created, customer.updated, ...).
    #[arg(long)]
    topic: Option<String>,
    /// Only this endpoint (order, customer).
    #[arg(long)]
    resource: Option<Resource>,
    /// Only this status (processed, failed, rejected, ignored).
    #[arg(long)]
    status: Option<WebhookStatus>,
    /// Only this order or customer id.
    #[arg(long)]
    subject: Option<i64>,
    /// Received at or after this time (RFC 3339, e.g. 2026-11-20T08:00:00Z).
    #[arg(long)]
    since: Option<DateTime<Utc>>,
    /// Received before this time (RFC 3339).
    #[arg(long)]
    until: Option<DateTime<Utc>>,
    /// At most this many webhooks.
    #[arg(long, default_value_t = 10_000)]
    limit: u64,
    /// Show what would be done and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    yes: bool,
    /// For orders whose shipments exist: book them again (a second parcel each), re-fetching the
    /// order from WooCommerce like `lazona shipments retry --force`.
    #[arg(long)]
    force: bool,
    /// Re-send the webhooks to this connector URL (for example a staging instance) instead of
    /// processing them here. The path is the stored one's endpoint unless the URL has one.
    #[arg(long, value_name = "URL")]
    to: Option<String>,
    /// The secret to sign re-sent webhooks with (`--to`).
    #[arg(long, env = "LAZONA_REPLAY_SECRET", hide_env_values = true)]
    secret: Option<String>,
}

impl ReplayArgs {
    fn filter(&self) -> Option<WebhookFilter> {
        let any = self.topic.is_some()
            || self.resource.is_some()
            || self.status.is_some()
            || self.subject.is_some()
            || self.since.is_some()
            || self.until.is_some();
        any.then(|| WebhookFilter {
            resource: self.resource,
            topic: self.topic.clone(),
            status: self.status,
            subject_id: self.subject,
            since: self.since,
            until: self.until,
            ..WebhookFilter::default()
        })
    }
}

/// What replay did (or would do) with one webhook.
#[derive(Debug, Serialize)]
struct Outcome {
    id: i64,
    resource: Resource,
    topic: Option<String>,
    subject_id: Option<i64>,
    status: WebhookStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    skipped: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    failed: Option<String>,
}

#[derive(Debug, Default, Serialize)]
struct Summary {
    dry_run: bool,
    replayed: Vec<i64>,
    skipped: Vec<Outcome>,
    failed: Vec<Outcome>,
}

/// Pages through the inbox: the webhooks `filter` selects, newest first, at most `limit`.
async fn select(
    inbox: &dyn WebhookInbox,
    mut filter: WebhookFilter,
    limit: u64,
) -> anyhow::Result<Vec<WebhookSummary>> {
    let mut out: Vec<WebhookSummary> = Vec::new();
    while (out.len() as u64) < limit {
        filter.limit = (limit - out.len() as u64).min(500);
        let page = inbox.list(&filter).await?;
        let Some(last) = page.last() else { break };
        filter.before_id = Some(last.id);
        let done = (page.len() as u64) < filter.limit;
        out.extend(page);
        if done {
            break;
        }
    }
    Ok(out)
}

fn skip_reason(w: &WebhookSummary, to: bool) -> Option<String> {
    if to {
        return None;
    }
    match w.status {
        WebhookStatus::Queued => Some("already queued: a worker will process it".into()),
        _ => None,
    }
}

fn progress(len: usize, json: bool) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    if json || len < 2 || !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    if let Ok(style) =
        ProgressStyle::with_template("{bar:40} {pos}/{len} {per_sec} eta {eta} {msg}")
    {
        bar.set_style(style);
    }
    bar
}

pub(crate) fn confirm(question: &str) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        eprintln!("{question} [y/N] (no terminal to answer on: pass --yes to go ahead)");
        return Ok(false);
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes" | "Yes"))
}

/// Runs `lazona replay`.
pub(crate) async fn replay(
    connector: &Connector,
    op: &Operator<'_>,
    args: ReplayArgs,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let inbox = connector.inbox();
    let inbox = inbox.as_ref();
    let mut selected: Vec<WebhookSummary> = Vec::new();
    let mut missing = Vec::new();
    if !args.ids.is_empty() {
        for id in &args.ids {
            match inbox.get(WebhookId(*id)).await? {
                Some(w) => selected.push(summary(&w)),
                None => missing.push(*id),
            }
        }
    } else if let Some(filter) = args.filter() {
        selected = select(inbox, filter, args.limit).await?;
    } else {
        bail!(
            "name the webhooks to replay: ids, or at least one filter (--topic, --resource, \
             --status, --subject, --since, --until)"
        );
    }
    if args.to.is_some() && args.secret.is_none() {
        bail!("--to needs --secret (or LAZONA_REPLAY_SECRET): the receiving connector's secret");
    }
    // Oldest first: the shop's order of events.
    selected.sort_by_key(|w| w.id);

    let mut summary = Summary {
        dry_run: args.dry_run,
        ..Summary::default()
    };
    let mut todo = Vec::new();
    for id in missing {
        eprintln!("no webhook {id}");
        summary.failed.push(Outcome {
            id,
            resource: Resource::Order,
            topic: None,
            subject_id: None,
            status: WebhookStatus::Rejected,
            skipped: None,
            failed: Some("not found".into()),
        });
    }
    for w in selected {
        match skip_reason(&w, args.to.is_some()) {
            Some(reason) => summary.skipped.push(outcome(&w, Some(reason), None)),
            None => todo.push(w),
        }
    }

    let action = match &args.to {
        Some(url) => format!("re-send {} webhook(s) to {url}", todo.len()),
        None => format!(
            "replay {} webhook(s) through the job queue{}",
            todo.len(),
            if args.force {
                ", booking existing shipments AGAIN (--force)"
            } else {
                ""
            }
        ),
    };
    if !json {
        for w in &todo {
            println!(
                "{:>8}  {:<9}  {:<18}  {:>8}  {}",
                w.id,
                w.resource,
                w.topic.as_deref().unwrap_or("-"),
                w.subject_id.map_or("-".into(), |s| s.to_string()),
                w.status
            );
        }
        for s in &summary.skipped {
            println!(
                "{:>8}  skipped: {}",
                s.id,
                s.skipped.as_deref().unwrap_or("")
            );
        }
    }
    if args.dry_run {
        if json {
            summary.replayed = todo.iter().map(|w| w.id.0).collect();
            println!("{}", serde_json::to_string_pretty(&summary)?);
        } else {
            println!("dry run: would {action}; nothing changed");
        }
        return Ok(ExitCode::SUCCESS);
    }
    if todo.is_empty() {
        finish(&summary, json)?;
        return Ok(exit(&summary));
    }
    if !args.yes && !confirm(&format!("About to {action}. Go ahead?"))? {
        eprintln!("nothing done");
        return Ok(ExitCode::from(REFUSED));
    }

    let bar = progress(todo.len(), json);
    match &args.to {
        Some(url) => {
            let secret = WebhookSecret::new(args.secret.as_deref().unwrap_or_default());
            let http = adapters::http::http_client(Duration::from_secs(30))?;
            for w in &todo {
                let result = match inbox.get(w.id).await? {
                    Some(full) => resend(&http, url, &secret, &full).await,
                    None => Err(anyhow::anyhow!("gone from the inbox")),
                };
                record(&mut summary, w, result);
                bar.inc(1);
            }
        }
        None => {
            let (queue, store) = (connector.queue(), connector.shipments());
            for w in &todo {
                let result =
                    requeue(op, inbox, queue.as_ref(), store.as_ref(), w, args.force).await;
                record(&mut summary, w, result);
                bar.inc(1);
            }
        }
    }
    bar.finish_and_clear();
    finish(&summary, json)?;
    Ok(exit(&summary))
}

fn summary(w: &Webhook) -> WebhookSummary {
    WebhookSummary {
        id: w.id,
        resource: w.data.resource,
        topic: w.data.topic.clone(),
        delivery_id: w.data.delivery_id.clone(),
        subject_id: w.data.subject_id,
        status: w.data.status,
        received_at: w.data.received_at,
        error: w.last_error.clone(),
        pruned: w.pruned,
    }
}

fn outcome(w: &WebhookSummary, skipped: Option<String>, failed: Option<String>) -> Outcome {
    Outcome {
        id: w.id.0,
        resource: w.resource,
        topic: w.topic.clone(),
        subject_id: w.subject_id,
        status: w.status,
        skipped,
        failed,
    }
}

fn record(summary: &mut Summary, w: &WebhookSummary, result: anyhow::Result<()>) {
    match result {
        Ok(()) => summary.replayed.push(w.id.0),
        Err(e) => summary
            .failed
            .push(outcome(w, None, Some(format!("{e:#}")))),
    }
}

fn finish(summary: &Summary, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(summary)?);
    } else {
        for f in &summary.failed {
            eprintln!("{:>8}  failed: {}", f.id, f.failed.as_deref().unwrap_or(""));
        }
        println!(
            "replayed {}, skipped {}, failed {}",
            summary.replayed.len(),
            summary.skipped.len(),
            summary.failed.len()
        );
    }
    Ok(())
}

fn exit(summary: &Summary) -> ExitCode {
    if summary.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Back to `queued` with a new job, through the same operation as the API's replay.
async fn requeue(
    op: &Operator<'_>,
    inbox: &dyn WebhookInbox,
    queue: &dyn JobQueue,
    store: &dyn ShipmentStore,
    w: &WebhookSummary,
    force: bool,
) -> anyhow::Result<()> {
    let target = ReplayTarget {
        id: w.id,
        resource: w.resource,
        status: w.status,
        subject_id: w.subject_id,
        received_at: w.received_at,
        pruned: w.pruned,
    };
    operations::replay_webhook(op, inbox, queue, store, &target, force).await?;
    Ok(())
}

/// The stored request again, headers included, signed with `secret`.
async fn resend(
    http: &reqwest::Client,
    url: &str,
    secret: &WebhookSecret,
    w: &Webhook,
) -> anyhow::Result<()> {
    if let Some(pruned) = &w.pruned {
        bail!(
            "{}: there is nothing to send",
            pruned.explain_body(w.data.received_at)
        );
    }
    let target = target_url(url, w.data.resource);
    let mut request = http.post(&target).body(w.data.body.to_vec());
    for (name, value) in &w.data.headers {
        let lower = name.to_ascii_lowercase();
        if matches!(
            lower.as_str(),
            "host"
                | "content-length"
                | "x-wc-webhook-signature"
                | "connection"
                | "transfer-encoding"
        ) {
            continue;
        }
        request = request.header(name, value);
    }
    request = request.header("X-WC-Webhook-Signature", secret.sign(&w.data.body));
    let response = request.send().await.context("sending")?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        bail!(
            "{target} answered {status}: {}",
            body.chars().take(200).collect::<String>()
        );
    }
    Ok(())
}

/// `url` when it names a path, else the connector's endpoint for the resource under it.
fn target_url(url: &str, resource: Resource) -> String {
    let trimmed = url.trim_end_matches('/');
    let has_path = trimmed
        .split_once("://")
        .is_some_and(|(_, rest)| rest.contains('/'));
    if has_path {
        url.to_owned()
    } else {
        match resource {
            Resource::Order => format!("{trimmed}/api/deliveries/"),
            Resource::Customer => format!("{trimmed}/api/customers/"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_url_gets_the_endpoint_of_the_resource() {
        assert_eq!(
            target_url("http://staging:8000", Resource::Order),
            "http://staging:8000/api/deliveries/"
        );
        assert_eq!(
            target_url("http://staging:8000/", Resource::Customer),
            "http://staging:8000/api/customers/"
        );
        assert_eq!(
            target_url("https://x.example/hooks/in", Resource::Order),
            "https://x.example/hooks/in"
        );
    }
}
