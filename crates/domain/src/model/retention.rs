//! Personal data kept for a while, then cleared: the retention policy (`[retention]`), what a
//! pruned or erased webhook body says of itself, and what a prune or an erasure came to.
//!
//! A webhook's body and headers carry the customer's name, address, phone and e-mail; a
//! shipment's carrier request and its label PDF carry the receiver's. Past their retention they
//! are cleared, the rows kept: a webhook keeps its status, topic, order id and history, a
//! shipment its barcode and statuses, so lists and counts still work.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// How long personal data is kept, in days; `0` keeps it for ever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionSettings {
    /// Days after which a webhook's body and headers are cleared (its row stays).
    pub webhook_body_days: u32,
    /// Days after a shipment's delivery after which its label PDF and the personal data of its
    /// carrier request are cleared.
    pub label_days: u32,
    /// Days after its booking after which the label of a shipment never delivered is cleared.
    pub label_undelivered_days: u32,
    /// Days a dead-lettered job is kept.
    pub dead_job_days: u32,
    /// Most rows cleared in one short transaction.
    pub batch: usize,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        RetentionSettings {
            webhook_body_days: 90,
            label_days: 90,
            label_undelivered_days: 180,
            dead_job_days: 30,
            batch: 100,
        }
    }
}

/// The moments before which each kind of data is expired, `None` for what is kept for ever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cutoffs {
    /// Webhooks received before this lose their body and headers.
    pub webhook_bodies: Option<DateTime<Utc>>,
    /// Shipments delivered (last changed) before this lose their label and request.
    pub labels_delivered: Option<DateTime<Utc>>,
    /// Shipments never delivered, created before this, lose their label and request.
    pub labels_undelivered: Option<DateTime<Utc>>,
    /// Dead jobs given up before this are deleted.
    pub dead_jobs: Option<DateTime<Utc>>,
}

impl RetentionSettings {
    /// The cutoffs as of `now`.
    pub fn cutoffs(&self, now: DateTime<Utc>) -> Cutoffs {
        let before = |days: u32| (days > 0).then(|| now - TimeDelta::days(i64::from(days)));
        Cutoffs {
            webhook_bodies: before(self.webhook_body_days),
            labels_delivered: before(self.label_days),
            labels_undelivered: before(self.label_undelivered_days),
            dead_jobs: before(self.dead_job_days),
        }
    }

    /// Whether nothing is ever pruned.
    pub fn keeps_everything(&self) -> bool {
        self.webhook_body_days == 0
            && self.label_days == 0
            && self.label_undelivered_days == 0
            && self.dead_job_days == 0
    }

    /// The policy in words, one line per kind of data (for `lazona config check`).
    pub fn describe(&self) -> Vec<String> {
        let days = |d: u32, what: &str| match d {
            0 => format!("{what}: kept for ever"),
            d => format!("{what}: cleared after {d} days"),
        };
        vec![
            days(
                self.webhook_body_days,
                "webhook bodies and headers (the row, status, topic, order id and history stay)",
            ),
            days(
                self.label_days,
                "labels and carrier requests of delivered shipments, counted from the delivery \
                 (the barcode and statuses stay)",
            ),
            days(
                self.label_undelivered_days,
                "labels and carrier requests of shipments never delivered, counted from the \
                 booking",
            ),
            days(self.dead_job_days, "dead jobs"),
        ]
    }
}

/// Why a webhook's body (or a shipment's label) was cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PruneReason {
    /// Its retention (`retention.*`) ran out.
    Retention,
    /// The customer's data was erased (`lazona purge`, `POST /api/v1/purge`).
    Erasure,
}

impl PruneReason {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            PruneReason::Retention => "retention",
            PruneReason::Erasure => "erasure",
        }
    }
}

impl fmt::Display for PruneReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PruneReason {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "retention" => Ok(PruneReason::Retention),
            "erasure" => Ok(PruneReason::Erasure),
            other => Err(format!("unknown prune reason {other:?}")),
        }
    }
}

/// Data cleared (a webhook's body and headers, a shipment's label and request): when and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Pruned {
    /// When.
    pub at: DateTime<Utc>,
    /// Why.
    pub why: PruneReason,
}

impl Pruned {
    /// What a reader of the webhook is told, `received_at` being when it arrived: "its body was
    /// pruned on DATE after N days (retention.webhook_body_days)".
    pub fn explain_body(&self, received_at: DateTime<Utc>) -> String {
        let on = self.at.format("%Y-%m-%d");
        match self.why {
            PruneReason::Retention => format!(
                "its body was pruned on {on} after {} days (retention.webhook_body_days)",
                (self.at - received_at).num_days()
            ),
            PruneReason::Erasure => {
                format!("its body was erased on {on} at the customer's request (lazona purge)")
            }
        }
    }

    /// What a reader of a shipment's label is told.
    pub fn explain_label(&self) -> String {
        let on = self.at.format("%Y-%m-%d");
        match self.why {
            PruneReason::Retention => format!(
                "its label was pruned on {on} (retention.label_days, \
                 retention.label_undelivered_days)"
            ),
            PruneReason::Erasure => {
                format!("its label was erased on {on} at the customer's request (lazona purge)")
            }
        }
    }
}

/// What one retention pass cleared.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PruneReport {
    /// Webhooks whose body and headers were cleared.
    pub webhook_bodies: u64,
    /// Shipments whose label and request were cleared.
    pub labels: u64,
    /// Dead jobs deleted.
    pub dead_jobs: u64,
    /// Alerts whose detail was cleared.
    pub alert_details: u64,
    /// Whether the pass ran out of time with more to clear (a follow-up pass is enqueued).
    pub more: bool,
}

impl PruneReport {
    /// Whether nothing was cleared.
    pub fn is_empty(&self) -> bool {
        *self == PruneReport::default()
    }
}

impl fmt::Display for PruneReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "retention: {} webhook bodies, {} labels, {} dead jobs, {} alert details pruned{}",
            self.webhook_bodies,
            self.labels,
            self.dead_jobs,
            self.alert_details,
            if self.more { "; more to come" } else { "" }
        )
    }
}

/// What an erasure found and cleared (or, dry, would clear).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ErasureReport {
    /// The SHA-256 of the e-mail, lower-cased (what the audit log keeps).
    pub subject_hash: String,
    /// Whether nothing was changed.
    pub dry_run: bool,
    /// Webhooks concerning the customer (ids).
    pub webhook_ids: Vec<i64>,
    /// Of those, the ones whose body was still there and is now (or would be) cleared.
    pub webhooks_cleared: u64,
    /// The orders concerned.
    pub order_ids: Vec<i64>,
    /// The shipments of those orders (ids).
    pub shipment_ids: Vec<i64>,
    /// Of those, the ones whose label or request is now (or would be) cleared.
    pub shipments_cleared: u64,
}

impl fmt::Display for ErasureReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} webhooks, {} shipments cleared",
            self.webhooks_cleared, self.shipments_cleared
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().expect("date")
    }

    #[test]
    fn zero_days_keeps_for_ever_and_other_days_count_back_from_now() {
        let now = at("2026-06-30T12:00:00Z");
        let c = RetentionSettings::default().cutoffs(now);
        assert_eq!(c.webhook_bodies, Some(at("2026-04-01T12:00:00Z")));
        assert_eq!(c.labels_undelivered, Some(at("2026-01-01T12:00:00Z")));
        assert_eq!(c.dead_jobs, Some(at("2026-05-31T12:00:00Z")));
        let keep = RetentionSettings {
            webhook_body_days: 0,
            label_days: 0,
            label_undelivered_days: 0,
            dead_job_days: 0,
            batch: 10,
        };
        let c = keep.cutoffs(now);
        assert_eq!(
            (
                c.webhook_bodies,
                c.labels_delivered,
                c.labels_undelivered,
                c.dead_jobs
            ),
            (None, None, None, None)
        );
        assert!(keep.keeps_everything());
        assert!(keep.describe().iter().all(|l| l.ends_with("kept for ever")));
        assert!(!RetentionSettings::default().keeps_everything());
    }

    #[test]
    fn a_pruned_body_says_when_and_after_how_long() {
        let pruned = Pruned {
            at: at("2026-06-30T03:00:00Z"),
            why: PruneReason::Retention,
        };
        assert_eq!(
            pruned.explain_body(at("2026-04-01T02:00:00Z")),
            "its body was pruned on 2026-06-30 after 90 days (retention.webhook_body_days)"
        );
        let erased = Pruned {
            why: PruneReason::Erasure,
            ..pruned
        };
        assert!(
            erased
                .explain_body(at("2026-04-01T02:00:00Z"))
                .contains("erased")
        );
        for why in [PruneReason::Retention, PruneReason::Erasure] {
            assert_eq!(why.as_str().parse::<PruneReason>(), Ok(why));
        }
    }
}
