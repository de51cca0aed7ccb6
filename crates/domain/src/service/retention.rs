//! Retention and erasure of personal data ([`crate::model::retention`]).
//!
//! [`Retention::prune_once`] is the periodic pass (`JobKind::Prune`, every
//! `retention.interval_secs`): it clears what is past its retention in batches of
//! `retention.batch` rows, each one short transaction, so that intake's writer is never held
//! long. [`Erasure::purge`] clears one customer's data at once (`lazona purge`,
//! `POST /api/v1/purge`) and records it in the audit log under a hash of the e-mail.

use crate::error::{InboxError, QueueError, StoreError};
use crate::model::audit::subject as audit_subject;
use crate::model::{
    Actor, AuditAction, ErasureReport, JobKind, NewAuditEntry, NewJob, PruneReason, PruneReport,
    Resource, RetentionSettings, Webhook, WebhookFilter, WebhookId,
};
use crate::ports::{AlertStore, AuditLog, JobQueue, ShipmentStore, WebhookInbox};
use chrono::{DateTime, TimeDelta, Utc};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why a prune or an erasure stopped (what it did before stays done: every batch is committed
/// on its own, and running it again goes on from there).
#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    /// The inbox failed.
    #[error(transparent)]
    Inbox(#[from] InboxError),
    /// The shipment or alert store, or the audit log, failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The queue failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The address given is not an e-mail address.
    #[error("{0:?} is not an e-mail address")]
    NotAnEmail(String),
}

/// An alert's detail once its retention has passed.
pub const ALERT_DETAIL_PRUNED: &str =
    "(detall esborrat: retention.webhook_body_days / detail pruned after its retention)";

/// The periodic retention pass.
#[derive(Clone)]
pub struct Retention {
    /// Webhook bodies.
    pub inbox: Arc<dyn WebhookInbox>,
    /// Labels and carrier requests.
    pub shipments: Arc<dyn ShipmentStore>,
    /// Dead jobs.
    pub queue: Arc<dyn JobQueue>,
    /// Alerts, whose details may quote personal data (a refused booking's, the carrier
    /// request): kept as long as a webhook's body.
    pub alerts: Arc<dyn AlertStore>,
    /// How long each is kept.
    pub settings: RetentionSettings,
}

impl Retention {
    /// Clears everything past its retention as of `now`, batch after batch until a batch comes
    /// back short; returns how much of each.
    ///
    /// # Errors
    /// The first port error; the batches before it stay cleared.
    #[tracing::instrument(skip_all)]
    pub async fn prune_once(&self, now: DateTime<Utc>) -> Result<PruneReport, RetentionError> {
        self.prune(now, None).await
    }

    /// [`Retention::prune_once`] for `budget` at most: a pass that runs out of time with more
    /// to clear enqueues a follow-up pass (`JobKind::Prune`, in a second) and says so
    /// ([`PruneReport::more`]). The worker's passes are bounded so, so that a backlog (a year
    /// of bodies after an upgrade) never holds a job, or a graceful shutdown, for long.
    ///
    /// # Errors
    /// The first port error; the batches before it stay cleared.
    #[tracing::instrument(skip_all)]
    pub async fn prune_for(
        &self,
        now: DateTime<Utc>,
        budget: Duration,
    ) -> Result<PruneReport, RetentionError> {
        let report = self.prune(now, Some(Instant::now() + budget)).await?;
        if report.more {
            self.queue
                .enqueue(NewJob {
                    kind: JobKind::Prune,
                    run_at: Some(Utc::now() + TimeDelta::seconds(1)),
                })
                .await?;
        }
        Ok(report)
    }

    async fn prune(
        &self,
        now: DateTime<Utc>,
        deadline: Option<Instant>,
    ) -> Result<PruneReport, RetentionError> {
        let cutoffs = self.settings.cutoffs(now);
        let batch = self.settings.batch.max(1);
        let mut report = PruneReport::default();
        if let Some(before) = cutoffs.webhook_bodies {
            let (n, done) =
                batches(batch, deadline, || self.inbox.prune_bodies(before, batch)).await?;
            report.webhook_bodies = n;
            report.more |= !done;
            if !report.more {
                let (n, done) = batches(batch, deadline, || {
                    self.alerts
                        .prune_details(before, ALERT_DETAIL_PRUNED, batch)
                })
                .await?;
                report.alert_details = n;
                report.more |= !done;
            }
        }
        if !report.more
            && (cutoffs.labels_delivered.is_some() || cutoffs.labels_undelivered.is_some())
        {
            let (n, done) = batches(batch, deadline, || {
                self.shipments.prune_labels(
                    cutoffs.labels_delivered,
                    cutoffs.labels_undelivered,
                    batch,
                )
            })
            .await?;
            report.labels = n;
            report.more |= !done;
        }
        if !report.more
            && let Some(before) = cutoffs.dead_jobs
        {
            let (n, done) =
                batches(batch, deadline, || self.queue.prune_dead(before, batch)).await?;
            report.dead_jobs = n;
            report.more |= !done;
        }
        Ok(report)
    }
}

/// Runs `one` (a batch of at most `batch` rows) until it clears fewer, or `deadline` passes;
/// the total, and whether it ran to the end.
async fn batches<F, Fut, E>(
    batch: usize,
    deadline: Option<Instant>,
    mut one: F,
) -> Result<(u64, bool), RetentionError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<u64, E>>,
    RetentionError: From<E>,
{
    let mut total = 0;
    loop {
        let n = one().await?;
        total += n;
        if n < batch as u64 {
            return Ok((total, true));
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok((total, false));
        }
    }
}

/// The SHA-256 (hex) of an e-mail address, trimmed and lower-cased: how the audit log names the
/// customer an erasure was for, without the address.
pub fn email_hash(email: &str) -> String {
    let digest = Sha256::digest(email.trim().to_lowercase().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether a webhook body concerns the customer with this e-mail (lower-cased): an order whose
/// billing or shipping e-mail it is, or a customer whose e-mail it is.
pub fn concerns(body: &[u8], email: &str) -> bool {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return false;
    };
    let is = |v: Option<&serde_json::Value>| {
        v.and_then(serde_json::Value::as_str)
            .is_some_and(|e| e.trim().eq_ignore_ascii_case(email))
    };
    is(v.pointer("/billing/email")) || is(v.pointer("/shipping/email")) || is(v.get("email"))
}

/// A customer's erasure.
#[derive(Clone)]
pub struct Erasure {
    /// Webhook bodies.
    pub inbox: Arc<dyn WebhookInbox>,
    /// Labels and carrier requests of the customer's orders.
    pub shipments: Arc<dyn ShipmentStore>,
    /// Alerts about those shipments, whose details may quote the carrier request.
    pub alerts: Arc<dyn AlertStore>,
    /// Where the erasure is recorded.
    pub audit: Arc<dyn AuditLog>,
}

/// Candidates read per page.
const PAGE: usize = 200;

impl Erasure {
    /// Finds every webhook concerning the customer with `email` ([`concerns`]) and every other
    /// webhook of the same orders and customers, the shipments of those orders and their
    /// alerts; unless `dry_run`, clears their personal data and records the erasure in the audit
    /// log (by `actor`, the e-mail as a hash). Returns what it found and cleared.
    ///
    /// # Errors
    /// [`RetentionError::NotAnEmail`], or a port's error (what was cleared before it stays
    /// cleared; purging again finishes the work).
    #[tracing::instrument(skip_all, fields(dry_run))]
    pub async fn purge(
        &self,
        email: &str,
        dry_run: bool,
        actor: Actor,
    ) -> Result<ErasureReport, RetentionError> {
        let email = email.trim().to_lowercase();
        if !crate::service::operations::is_plausible_address(&email) {
            return Err(RetentionError::NotAnEmail(email));
        }
        let mut webhooks: BTreeSet<i64> = BTreeSet::new();
        let mut uncleared: BTreeSet<i64> = BTreeSet::new();
        let mut subjects: BTreeSet<(Resource, i64)> = BTreeSet::new();
        let mut after = WebhookId(0);
        loop {
            let page = self.inbox.mentioning(&email, after, PAGE).await?;
            for w in &page {
                if concerns(&w.data.body, &email) {
                    note(w, &mut webhooks, &mut uncleared);
                    if let Some(id) = w.data.subject_id {
                        subjects.insert((w.data.resource, id));
                    }
                }
            }
            match page.last() {
                Some(last) if page.len() == PAGE => after = last.id,
                _ => break,
            }
        }
        // The other webhooks of those orders and customers concern them too (an update whose
        // e-mail changed, a body the search could not read).
        for &(resource, id) in &subjects {
            let mut filter = WebhookFilter {
                resource: Some(resource),
                subject_id: Some(id),
                limit: 500,
                ..WebhookFilter::default()
            };
            loop {
                let page = self.inbox.list(&filter).await?;
                for w in &page {
                    webhooks.insert(w.id.0);
                    if w.pruned.is_none() {
                        uncleared.insert(w.id.0);
                    }
                }
                match page.last() {
                    Some(last) if page.len() == 500 => filter.before_id = Some(last.id),
                    _ => break,
                }
            }
        }
        let order_ids: Vec<i64> = subjects
            .iter()
            .filter(|(r, _)| *r == Resource::Order)
            .map(|(_, id)| *id)
            .collect();
        let mut shipment_ids = Vec::new();
        let mut shipments_uncleared = 0;
        for &order_id in &order_ids {
            for s in self.shipments.of_order(order_id).await? {
                shipment_ids.push(s.id);
                if s.label_pruned.is_none() || s.has_label || !s.request.is_empty() {
                    shipments_uncleared += 1;
                }
            }
        }
        let mut report = ErasureReport {
            subject_hash: email_hash(&email),
            dry_run,
            webhook_ids: webhooks.into_iter().collect(),
            webhooks_cleared: uncleared.len() as u64,
            order_ids,
            shipment_ids,
            shipments_cleared: shipments_uncleared,
        };
        if dry_run {
            return Ok(report);
        }
        let ids: Vec<WebhookId> = report.webhook_ids.iter().map(|&id| WebhookId(id)).collect();
        report.webhooks_cleared = self.inbox.clear_bodies(&ids, PruneReason::Erasure).await?;
        report.shipments_cleared = self
            .shipments
            .clear_labels(&report.shipment_ids, PruneReason::Erasure)
            .await?;
        let alert_subjects: Vec<String> = report
            .shipment_ids
            .iter()
            .map(|&id| crate::model::alert::subject::shipment(id))
            .collect();
        self.alerts
            .erase_details(
                &alert_subjects,
                "(erased at the customer's request: lazona purge)",
            )
            .await?;
        self.audit
            .record(
                &NewAuditEntry::now(
                    actor,
                    AuditAction::Purge,
                    audit_subject::customer(&report.subject_hash),
                )
                .detail(report.to_string()),
            )
            .await?;
        tracing::info!(
            webhooks = report.webhooks_cleared,
            shipments = report.shipments_cleared,
            "customer's personal data erased"
        );
        Ok(report)
    }
}

fn note(w: &Webhook, all: &mut BTreeSet<i64>, uncleared: &mut BTreeSet<i64>) {
    all.insert(w.id.0);
    if w.pruned.is_none() {
        uncleared.insert(w.id.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryShipmentStore;
    use crate::model::JobId;
    use crate::ports::{MockJobQueue, MockWebhookInbox};

    /// A pass out of time with a backlog left stops and enqueues its follow-up, so no job (and
    /// no graceful shutdown) waits for a backlog to be cleared.
    #[tokio::test]
    async fn a_pass_out_of_time_hands_the_rest_to_a_follow_up_job() {
        let mut inbox = MockWebhookInbox::new();
        // An endless backlog: every batch comes back full.
        inbox
            .expect_prune_bodies()
            .times(1)
            .returning(|_, limit| Ok(limit as u64));
        let mut queue = MockJobQueue::new();
        queue
            .expect_enqueue()
            .withf(|job| job.kind == JobKind::Prune && job.run_at.is_some())
            .times(1)
            .returning(|_| Ok(JobId(7)));
        let retention = Retention {
            inbox: Arc::new(inbox),
            shipments: Arc::new(MemoryShipmentStore::new()),
            queue: Arc::new(queue),
            alerts: Arc::new(crate::memory::MemoryAlertStore::new()),
            settings: RetentionSettings::default(),
        };
        let report = retention
            .prune_for(Utc::now(), Duration::ZERO)
            .await
            .expect("pruned");
        assert!(report.more, "{report:?}");
        assert_eq!(report.webhook_bodies, 100);
        assert_eq!(
            (report.labels, report.dead_jobs),
            (0, 0),
            "left for the next"
        );
        assert!(report.to_string().ends_with("more to come"), "{report}");
    }

    #[test]
    fn a_body_concerns_the_customer_by_billing_shipping_or_customer_email() {
        let order = br#"{"id": 5, "billing": {"email": "Ana@Example.coop"}}"#;
        assert!(concerns(order, "ana@example.coop"));
        assert!(!concerns(order, "anna@example.coop"));
        let shipped = br#"{"id": 5, "billing": {"email": "x@y.z"}, "shipping": {"email": "ana@example.coop"}}"#;
        assert!(concerns(shipped, "ana@example.coop"));
        let customer = br#"{"id": 9, "email": " ana@example.coop "}"#;
        assert!(concerns(customer, "ana@example.coop"));
        // Mentioned elsewhere (a note) is not enough, nor a body that is not JSON.
        assert!(!concerns(
            br#"{"id": 5, "customer_note": "ana@example.coop"}"#,
            "ana@example.coop"
        ));
        assert!(!concerns(b"ana@example.coop", "ana@example.coop"));
    }

    #[test]
    fn the_hash_ignores_case_and_spaces_and_is_not_the_address() {
        let h = email_hash(" Ana@Example.coop");
        assert_eq!(h, email_hash("ana@example.coop"));
        assert_eq!(h.len(), 64);
        assert!(!h.contains("ana"));
    }
}
