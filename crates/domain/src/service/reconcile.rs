//! Reconciling with the shop: the orders WooCommerce never delivered as webhooks, and the
//! webhooks WooCommerce stopped delivering.
//!
//! WooCommerce sends a webhook once, never retries a failed delivery, and disables the webhook
//! after more than five failures in a row. So a pass (the periodic
//! [`crate::model::JobKind::Reconcile`], or `lazona reconcile`) asks the shop for the orders
//! modified since the last pass (less an overlap), oldest first, page by page until a page is
//! short; each order the inbox holds no webhook of, for that modification or a later one, is
//! taken in **as a webhook** (stored with the source `reconcile`, its own job, the same
//! deduplication and status rules: [`classify`]), so that everything downstream treats it as it
//! treats any webhook. The cursor (the latest modification the shop listed) is kept in the
//! [`StateStore`] and moved forward with a compare-and-set, so a restart or a second worker
//! neither skips nor redoes a window; a pass that finds nothing new writes nothing.
//!
//! The same pass reads the shop's webhook configurations and tells the admins, once per change,
//! when the one of a topic the connector serves is missing, paused or disabled (and sets it back
//! to active itself when allowed to).

use super::alerts::Alerts;
use super::intake::{Intake, classify, header};
use crate::error::{Classified as _, JobError, error_chain};
use crate::model::alert::subject;
use crate::model::{
    AlertKind, NewAlert, NewWebhook, RecordOutcome, Resource, ShopOrder, ShopWebhook, WebhookId,
};
use crate::ports::{Email, Shop, StateStore, WebhookInbox};
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde::Serialize;
use std::sync::Arc;

/// The [`StateStore`] key of the reconciliation's cursor (an RFC 3339 time).
pub const CURSOR_KEY: &str = "reconcile.cursor";

/// The value of the `X-WC-Webhook-Source` kept on the webhooks a pass takes in.
pub const SOURCE: &str = "reconcile";

/// How a pass runs (`reconcile.*` settings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconcileSettings {
    /// How far before the cursor a pass starts, for orders modified while the last one ran.
    pub overlap: Duration,
    /// How far back the first pass (no cursor yet) looks.
    pub initial_lookback: Duration,
    /// Orders asked for per page (WooCommerce allows 100 at most).
    pub per_page: u32,
    /// Set a paused or disabled webhook of the connector back to active.
    pub reactivate_webhooks: bool,
    /// The topics the connector serves, each of which should have an active webhook.
    pub topics: Vec<String>,
}

impl Default for ReconcileSettings {
    fn default() -> Self {
        ReconcileSettings {
            overlap: Duration::seconds(300),
            initial_lookback: Duration::seconds(86_400),
            per_page: 100,
            reactivate_webhooks: false,
            topics: vec!["order.created".into(), "order.updated".into()],
        }
    }
}

/// What a pass over the shop's orders found and did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ReconcileReport {
    /// The window's start: orders modified after it were listed.
    pub since: Option<DateTime<Utc>>,
    /// The latest modification listed (the next cursor).
    pub until: Option<DateTime<Utc>>,
    /// Pages read.
    pub pages: u32,
    /// Orders listed.
    pub listed: usize,
    /// Orders the inbox held already, as listed or later.
    pub seen: usize,
    /// The orders the inbox did not hold (taken in, unless a dry run).
    pub missing: Vec<i64>,
    /// The webhooks stored for them (empty on a dry run).
    pub stored: Vec<WebhookId>,
    /// Whether nothing was written.
    pub dry_run: bool,
    /// Whether the cursor moved.
    pub cursor_moved: bool,
    /// The webhook configurations checked (empty when the shop would not list them).
    pub webhooks: Vec<WebhookCheck>,
}

/// The state of one topic's webhook in the shop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebhookCheck {
    /// The topic (`order.created`).
    pub topic: String,
    /// `active`, `paused`, `disabled` or `missing`.
    pub status: String,
    /// The shop's webhook, when there is one pointing at the connector.
    pub webhook: Option<ShopWebhook>,
    /// Whether the connector set it back to active now.
    pub reactivated: bool,
    /// Whether the admins were told now (a change since the last pass).
    pub reported: bool,
}

/// The reconciliation and what it needs. Built once by the composition root.
#[derive(Clone)]
pub struct Reconciler {
    /// Where the orders found missing are stored, as webhooks.
    pub inbox: Arc<dyn WebhookInbox>,
    /// The shop.
    pub shop: Arc<dyn Shop>,
    /// The cursor and the webhook states reported.
    pub state: Arc<dyn StateStore>,
    /// Alerts to the operators (a webhook disabled, paused or missing).
    pub alerts: Alerts,
    /// How passes run.
    pub settings: ReconcileSettings,
}

fn transient(reason: String) -> JobError {
    JobError::Transient {
        reason,
        retry_after: None,
    }
}

/// The path a webhook of `topic` is delivered to.
fn endpoint_of(topic: &str) -> &'static str {
    if topic.starts_with("customer.") {
        "/api/customers/"
    } else {
        "/api/deliveries/"
    }
}

/// Whether a webhook delivering to `url` delivers to one of the connector's endpoints
/// (`/api/deliveries/`, `/api/customers/`).
pub fn points_at_connector(url: &str) -> bool {
    points_at(url, endpoint_of("order.created")) || points_at(url, endpoint_of("customer.created"))
}

/// Whether `url` is the connector's endpoint `path` (with or without its trailing slash, a
/// query string or a fragment).
fn points_at(url: &str, path: &str) -> bool {
    let url = url.split(['?', '#']).next().unwrap_or_default();
    let url = url.trim_end_matches('/');
    url.ends_with(path.trim_end_matches('/'))
}

/// The webhook of an order the shop listed, as the reconciliation stores it: headers as
/// WooCommerce would send them for `order.updated`, a delivery id made of the order's id and
/// modification (so two passes that list the same order store it once), the source
/// [`SOURCE`], and the order's JSON as the body.
pub fn reconciled_webhook(order: &ShopOrder, received_at: DateTime<Utc>) -> (NewWebhook, bool) {
    let modified = order.modified.map_or_else(
        || "unknown".to_owned(),
        |m| m.timestamp_millis().to_string(),
    );
    let headers: Vec<(String, String)> = [
        (header::TOPIC, "order.updated".to_owned()),
        (header::RESOURCE, "order".to_owned()),
        (header::EVENT, "updated".to_owned()),
        (
            header::DELIVERY_ID,
            format!("reconcile-{}-{modified}", order.id),
        ),
        (header::SOURCE, SOURCE.to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    match classify(Resource::Order, &headers, order.body.clone(), received_at) {
        Intake::Accept(mut webhook) => {
            // The listing's date wins over a body that lacks one.
            webhook.subject_modified = webhook.subject_modified.or(order.modified);
            (webhook, true)
        }
        Intake::Reject(mut webhook, _) => {
            webhook.subject_id = webhook.subject_id.or(Some(order.id));
            webhook.subject_modified = order.modified;
            (webhook, false)
        }
        // `classify` neither pings nor authenticates.
        other => unreachable!("classify returned {other:?}"),
    }
}

impl Reconciler {
    /// The periodic pass: from the stored cursor (less the overlap), or the initial lookback
    /// when there is none; moves the cursor when it got further; then checks the webhooks.
    ///
    /// # Errors
    /// [`JobError::Transient`] when the shop, the inbox or the state cannot be reached (retried
    /// with the usual backoff; the cursor stays, so the window is redone then).
    #[tracing::instrument(skip_all)]
    pub async fn run(&self) -> Result<ReconcileReport, JobError> {
        let cursor = self
            .state
            .get(CURSOR_KEY)
            .await
            .map_err(|e| transient(format!("reconcile cursor: {}", error_chain(&e))))?;
        let parsed = cursor
            .as_deref()
            .and_then(|c| DateTime::parse_from_rfc3339(c).ok())
            .map(|c| c.with_timezone(&Utc));
        let since = match parsed {
            Some(c) => c - self.settings.overlap,
            None => Utc::now() - self.settings.initial_lookback,
        };
        let mut report = self.pass(since, false).await?;
        if let Some(until) = report.until
            && parsed.is_none_or(|c| until > c)
        {
            let value = until.to_rfc3339_opts(SecondsFormat::Millis, true);
            report.cursor_moved = self
                .state
                .compare_and_set(CURSOR_KEY, cursor.as_deref(), &value)
                .await
                .map_err(|e| transient(format!("reconcile cursor: {}", error_chain(&e))))?;
        }
        report.webhooks = self.check_webhooks(false).await?;
        tracing::info!(
            listed = report.listed,
            missing = report.missing.len(),
            pages = report.pages,
            "reconciliation pass done"
        );
        Ok(report)
    }

    /// One pass over the orders modified after `since`: lists them page by page and takes in
    /// those the inbox does not hold (none when `dry_run`). Leaves the cursor alone.
    ///
    /// # Errors
    /// As for [`Reconciler::run`]; [`JobError::Permanent`] when the shop refuses the listing.
    pub async fn pass(
        &self,
        since: DateTime<Utc>,
        dry_run: bool,
    ) -> Result<ReconcileReport, JobError> {
        let mut report = ReconcileReport {
            since: Some(since),
            dry_run,
            ..ReconcileReport::default()
        };
        let mut page = 1;
        loop {
            let listed = self
                .shop
                .orders_modified_after(since, page, self.settings.per_page)
                .await
                .map_err(|e| {
                    let reason = format!("listing the shop's orders: {}", error_chain(&e));
                    JobError::classified(e.transience(), reason)
                })?;
            report.pages = page;
            report.listed += listed.orders.len();
            self.take_in(&listed.orders, dry_run, &mut report).await?;
            if listed.orders.len() < listed.per_page || listed.orders.is_empty() {
                break;
            }
            page += 1;
        }
        Ok(report)
    }

    /// Takes in the orders of a page the inbox does not hold.
    async fn take_in(
        &self,
        orders: &[ShopOrder],
        dry_run: bool,
        report: &mut ReconcileReport,
    ) -> Result<(), JobError> {
        let ids: Vec<i64> = orders.iter().map(|o| o.id).collect();
        let versions = self
            .inbox
            .order_versions(&ids)
            .await
            .map_err(|e| transient(format!("inbox: {}", error_chain(&e))))?;
        for order in orders {
            if let Some(m) = order.modified {
                report.until = Some(report.until.map_or(m, |u| u.max(m)));
            }
            // Held when a webhook of it carries this modification or a later one. One that
            // carries none (received before the connector kept it) cannot tell: taken in, and
            // the (order, vendor) claims keep it from being booked twice.
            let held = match versions.get(&order.id) {
                Some(Some(stored)) => order.modified.is_some_and(|m| *stored >= m),
                _ => false,
            };
            if held {
                report.seen += 1;
                continue;
            }
            report.missing.push(order.id);
            if dry_run {
                continue;
            }
            let (webhook, usable) = reconciled_webhook(order, Utc::now());
            let recorded = self
                .inbox
                .record(webhook)
                .await
                .map_err(|e| transient(format!("inbox: {}", error_chain(&e))))?;
            if recorded.outcome == RecordOutcome::Stored {
                report.stored.push(recorded.id);
            }
            if usable {
                tracing::warn!(
                    order_id = order.id,
                    status = %order.status,
                    webhook_id = %recorded.id,
                    "order {} was never received as a webhook: taken in from the shop's listing",
                    order.id
                );
            } else {
                tracing::error!(
                    order_id = order.id,
                    webhook_id = %recorded.id,
                    "order {} from the shop's listing cannot be read: kept as rejected",
                    order.id
                );
            }
        }
        Ok(())
    }

    /// Checks the shop's webhook configurations: for each topic served, whether one points at
    /// the connector and is active. A change into missing, paused or disabled is mailed to the
    /// admins once (unless `dry_run`); with `reactivate_webhooks`, a paused or disabled one is set
    /// back to active first, and the mail says so. A shop that will not list its webhooks is
    /// logged and skipped: the orders' pass does not depend on it.
    ///
    /// # Errors
    /// [`JobError::Transient`] when the state or the mail server cannot be reached.
    pub async fn check_webhooks(&self, dry_run: bool) -> Result<Vec<WebhookCheck>, JobError> {
        let hooks = match self.shop.webhooks().await {
            Ok(hooks) => hooks,
            Err(e) => {
                tracing::warn!(error = %error_chain(&e), "the shop's webhooks could not be read");
                return Ok(Vec::new());
            }
        };
        let mut checks = Vec::new();
        for topic in &self.settings.topics {
            let ours: Vec<&ShopWebhook> = hooks
                .iter()
                .filter(|h| h.topic == *topic && points_at(&h.delivery_url, endpoint_of(topic)))
                .collect();
            let (status, webhook) = match ours.iter().find(|h| h.is_active()) {
                Some(h) => ("active".to_owned(), Some((*h).clone())),
                None => match ours.first() {
                    Some(h) => (h.status.clone(), Some((*h).clone())),
                    None => ("missing".to_owned(), None),
                },
            };
            let mut check = WebhookCheck {
                topic: topic.clone(),
                status,
                webhook,
                reactivated: false,
                reported: false,
            };
            if !dry_run {
                self.report_webhook(&mut check).await?;
            }
            checks.push(check);
        }
        Ok(checks)
    }

    /// Tells the admins about a webhook's change of state, once (the state reported is kept).
    async fn report_webhook(&self, check: &mut WebhookCheck) -> Result<(), JobError> {
        let status = check.status.clone();
        let key = format!("webhook.{}", check.topic);
        let state_error =
            |e: crate::error::StoreError| transient(format!("state: {}", error_chain(&e)));
        let previous = self.state.get(&key).await.map_err(state_error)?;
        let state = match &check.webhook {
            Some(h) => format!("{}:{}", h.status, h.id),
            None => "missing".to_owned(),
        };
        if status == "active" {
            if previous.as_deref() != Some(state.as_str()) {
                self.alerts
                    .resolve(AlertKind::ShopWebhook, &subject::shop_webhook(&check.topic))
                    .await
                    .map_err(state_error)?;
                self.state
                    .compare_and_set(&key, previous.as_deref(), &state)
                    .await
                    .map_err(state_error)?;
            }
            return Ok(());
        }
        if previous.as_deref() == Some(state.as_str()) {
            return Ok(());
        }
        if self.settings.reactivate_webhooks
            && let Some(h) = &check.webhook
        {
            match self.shop.set_webhook_status(h.id, "active").await {
                Ok(updated) => {
                    check.reactivated = true;
                    check.webhook = Some(updated);
                }
                Err(e) => tracing::error!(
                    webhook = h.id,
                    error = %error_chain(&e),
                    "webhook {} could not be set back to active",
                    h.id
                ),
            }
        }
        tracing::error!(
            topic = %check.topic,
            status = %status,
            reactivated = check.reactivated,
            "the shop's webhook for {} is {status}",
            check.topic
        );
        let mail = webhook_mail(&[], check, &status);
        self.alerts
            .raise(NewAlert {
                kind: AlertKind::ShopWebhook,
                subject: subject::shop_webhook(&check.topic),
                summary: mail.subject,
                detail: mail.body,
            })
            .await
            .map_err(state_error)?;
        check.reported = true;
        // Reported as it was found: when it goes wrong again after a reactivation it is a change
        // again only if it was seen active in between.
        let kept = if check.reactivated {
            format!("active:{}", check.webhook.as_ref().map_or(0, |h| h.id))
        } else {
            state
        };
        self.state
            .compare_and_set(&key, previous.as_deref(), &kept)
            .await
            .map_err(state_error)?;
        Ok(())
    }
}

/// The mail to the admins about a webhook that is missing, paused or disabled (in Catalan, as
/// the other admin mails).
#[must_use]
pub fn webhook_mail(admins: &[String], check: &WebhookCheck, status: &str) -> Email {
    let what = match (&check.webhook, status) {
        (None, _) => format!(
            "No hi ha cap webhook de WooCommerce pel tema «{}» que apunti al connector \
             (…{}).",
            check.topic,
            endpoint_of(&check.topic)
        ),
        (Some(h), _) => format!(
            "El webhook de WooCommerce «{}» (id {}, tema «{}») està «{status}»: WooCommerce no \
             envia res mentre no estigui actiu, i el desactiva després de més de 5 errors de \
             lliurament seguits.",
            h.name, h.id, check.topic
        ),
    };
    let todo = if check.reactivated {
        "El connector l'ha tornat a posar actiu (reconcile.reactivate_webhooks). La \
         reconciliació periòdica recupera les comandes que no han arribat mentrestant."
            .to_owned()
    } else if check.webhook.is_some() {
        "Cal tornar-lo a posar actiu a WordPress: WooCommerce > Configuració > Avançat > \
         Webhooks, obrir-lo, Estat: Actiu, Desar. La reconciliació periòdica recupera les \
         comandes que no han arribat mentrestant."
            .to_owned()
    } else {
        format!(
            "Cal crear-lo a WordPress: WooCommerce > Configuració > Avançat > Webhooks > Afegeix \
             webhook, tema «{}», URL de lliurament https://<connector>{}, amb el secret del \
             connector.",
            check.topic,
            endpoint_of(&check.topic)
        )
    };
    Email {
        to: admins.to_vec(),
        subject: format!("Webhook de WooCommerce «{}»: {status}", check.topic),
        body: format!("\nHola,\n\n{what}\n\n{todo}\n\n"),
        attachments: Vec::new(),
        ..Email::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::WebhookStatus;

    #[test]
    fn the_connectors_endpoints_are_recognised_with_or_without_a_slash() {
        assert!(points_at(
            "https://c.example/api/deliveries/",
            "/api/deliveries/"
        ));
        assert!(points_at(
            "https://c.example/api/deliveries",
            "/api/deliveries/"
        ));
        assert!(points_at(
            "https://c.example/x/api/customers/?a=1",
            "/api/customers/"
        ));
        assert!(!points_at(
            "https://c.example/api/deliveries/",
            "/api/customers/"
        ));
        assert!(!points_at("https://other.example/hook", "/api/deliveries/"));
        assert!(points_at_connector("https://c.example/api/customers"));
        assert!(!points_at_connector("https://other.example/hook"));
    }

    #[test]
    fn a_listed_order_becomes_an_order_updated_webhook_from_the_reconciliation() {
        let order = ShopOrder {
            id: 77,
            status: "processing".into(),
            modified: Some("2026-12-07T08:00:00Z".parse().expect("date")),
            body: bytes::Bytes::from_static(
                br#"{"id":77,"status":"processing","date_modified_gmt":"2026-12-07T08:00:00"}"#,
            ),
        };
        let (w, usable) = reconciled_webhook(&order, Utc::now());
        assert!(usable);
        assert_eq!(w.status, WebhookStatus::Queued);
        assert_eq!(w.topic.as_deref(), Some("order.updated"));
        assert_eq!(w.source.as_deref(), Some(SOURCE));
        assert_eq!(w.subject_id, Some(77));
        assert_eq!(w.subject_modified, order.modified);
        assert_eq!(
            w.delivery_id.as_deref(),
            Some(
                format!(
                    "reconcile-77-{}",
                    order.modified.expect("m").timestamp_millis()
                )
                .as_str()
            )
        );
        // The same listing twice is the same delivery: the inbox stores it once.
        let (again, _) = reconciled_webhook(&order, Utc::now());
        assert_eq!(w.dedupe_key(), again.dedupe_key());
    }

    #[test]
    fn an_unreadable_listed_order_is_kept_as_rejected() {
        let order = ShopOrder {
            id: 78,
            status: "processing".into(),
            modified: None,
            body: bytes::Bytes::from_static(br#"{"id":78,"line_items":"nope"}"#),
        };
        let (w, usable) = reconciled_webhook(&order, Utc::now());
        assert!(!usable);
        assert_eq!(w.status, WebhookStatus::Rejected);
        assert_eq!(w.subject_id, Some(78));
    }
}
