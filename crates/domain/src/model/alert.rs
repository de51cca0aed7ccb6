//! Alerts: something that needs a person. One alert per (kind, subject) is open at a time; a
//! repeat counts on it instead of telling anyone again, and it resolves itself when its condition
//! ends (or an operator resolves it).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// What an alert is about. Each kind can be switched off (`alerts.off`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// A job was dead-lettered (its retries exhausted, or a permanent failure). Subject
    /// `job:<id>`; resolves when the job, requeued, succeeds.
    JobDead,
    /// A shipment stayed `BOOKING` longer than `alerts.booking_stuck_secs` (a worker died
    /// mid-call: the carrier may hold a parcel). Subject `shipment:<id>`; resolves when it leaves
    /// `BOOKING`.
    BookingStuck,
    /// The carrier's tracking answered an error for a shipment. Subject `shipment:<id>`; resolves
    /// when its tracking answers again.
    TrackingError,
    /// The carrier refused a booking (the original's error mail). Subject `shipment:<id>`;
    /// resolves when the shipment is booked.
    BookingRefused,
    /// No order webhook arrived for `alerts.silence_hours`. Subject `shop`; resolves with the
    /// next order webhook.
    ShopSilent,
    /// A label mail bounced, was rejected or reported as spam: the vendor has no label. Subject
    /// `shipment:<id>`.
    LabelMailBounced,
    /// A WooCommerce webhook the connector needs is disabled, paused or missing. Subject
    /// `shop-webhook:<topic>`; resolves when it is active again.
    ShopWebhook,
    /// An order was cancelled, refunded or failed after its parcels were booked: they are to be
    /// cancelled with the carrier by hand. Subject `order:<id>`.
    OrderWithdrawn,
}

impl AlertKind {
    /// Every kind, in this order.
    pub const ALL: [AlertKind; 8] = [
        AlertKind::JobDead,
        AlertKind::BookingStuck,
        AlertKind::TrackingError,
        AlertKind::BookingRefused,
        AlertKind::ShopSilent,
        AlertKind::LabelMailBounced,
        AlertKind::ShopWebhook,
        AlertKind::OrderWithdrawn,
    ];

    /// The kind's name in storage, settings and the API.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::JobDead => "job_dead",
            AlertKind::BookingStuck => "booking_stuck",
            AlertKind::TrackingError => "tracking_error",
            AlertKind::BookingRefused => "booking_refused",
            AlertKind::ShopSilent => "shop_silent",
            AlertKind::LabelMailBounced => "label_mail_bounced",
            AlertKind::ShopWebhook => "shop_webhook",
            AlertKind::OrderWithdrawn => "order_withdrawn",
        }
    }

    /// What the kind means, in the admins' Catalan (the digest's lines).
    #[must_use]
    pub fn label_ca(self) -> &'static str {
        match self {
            AlertKind::JobDead => "tasques abandonades",
            AlertKind::BookingStuck => "enviaments encallats en BOOKING",
            AlertKind::TrackingError => "errors de seguiment",
            AlertKind::BookingRefused => "enviaments refusats per Koiki",
            AlertKind::ShopSilent => "botiga sense webhooks",
            AlertKind::LabelMailBounced => "correus d'etiqueta retornats",
            AlertKind::ShopWebhook => "webhooks de WooCommerce desactivats",
            AlertKind::OrderWithdrawn => "comandes anul·lades amb enviaments",
        }
    }
}

impl fmt::Display for AlertKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AlertKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AlertKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s.trim())
            .ok_or_else(|| {
                let names: Vec<&str> = AlertKind::ALL.iter().map(|k| k.as_str()).collect();
                format!("unknown alert kind {s:?} (one of {})", names.join(", "))
            })
    }
}

/// How many alerts of each kind.
pub type KindCounts = Vec<(AlertKind, u64)>;

/// Whether an alert still needs a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    /// Its condition holds (or nobody closed it yet).
    Open,
    /// Its condition ended, or an operator resolved it.
    Resolved,
}

impl AlertState {
    /// The state's name in storage and the API.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Open => "open",
            AlertState::Resolved => "resolved",
        }
    }
}

impl FromStr for AlertState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "open" => Ok(AlertState::Open),
            "resolved" => Ok(AlertState::Resolved),
            other => Err(format!("unknown alert state {other:?} (open or resolved)")),
        }
    }
}

/// The subject strings of alerts: what an alert concerns.
pub mod subject {
    /// A job of the queue.
    #[must_use]
    pub fn job(id: i64) -> String {
        format!("job:{id}")
    }
    /// A shipment.
    #[must_use]
    pub fn shipment(id: i64) -> String {
        format!("shipment:{id}")
    }
    /// An order of the shop.
    #[must_use]
    pub fn order(id: i64) -> String {
        format!("order:{id}")
    }
    /// A WooCommerce webhook configuration, by topic.
    #[must_use]
    pub fn shop_webhook(topic: &str) -> String {
        format!("shop-webhook:{topic}")
    }
    /// The shop as a whole.
    pub const SHOP: &str = "shop";
    /// The alert a storm of one kind is folded into.
    pub const STORM: &str = "storm";

    /// The number after `prefix:` in `subject`.
    #[must_use]
    pub fn id_of(subject: &str, prefix: &str) -> Option<i64> {
        subject
            .strip_prefix(prefix)
            .and_then(|s| s.strip_prefix(':'))
            .and_then(|s| s.parse().ok())
    }
}

/// An alert to raise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAlert {
    /// Its kind.
    pub kind: AlertKind,
    /// What it concerns ([`subject`]).
    pub subject: String,
    /// One line, in Catalan: the mail's subject.
    pub summary: String,
    /// What happened and what to do, in Catalan: the mail's body. No secret, no customer data
    /// beyond what the admins' mails always carried.
    pub detail: String,
}

/// A delivery channel of alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertChannel {
    /// Mail to `mail.admin_recipients`.
    Mail,
    /// The outbound webhook `alerts.webhook_url`.
    Hook,
}

impl AlertChannel {
    /// The channel's name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            AlertChannel::Mail => "mail",
            AlertChannel::Hook => "hook",
        }
    }
}

/// A stored alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alert {
    /// Its id.
    pub id: i64,
    /// Its kind.
    pub kind: AlertKind,
    /// What it concerns.
    pub subject: String,
    /// One line.
    pub summary: String,
    /// The whole text (the latest raise's).
    pub detail: String,
    /// Open or resolved.
    pub state: AlertState,
    /// How many times it was raised while open.
    pub count: u64,
    /// When it was first raised.
    pub first_seen: DateTime<Utc>,
    /// When it was last raised.
    pub last_seen: DateTime<Utc>,
    /// When it was resolved.
    pub resolved_at: Option<DateTime<Utc>>,
    /// Who resolved it: `auto` (its condition ended) or the operator.
    pub resolved_by: Option<String>,
    /// Its mail to the admins is still to be sent.
    pub mail_due: bool,
    /// Its outbound webhook is still to be posted.
    pub hook_due: bool,
}

impl Alert {
    /// Whether `channel` still has to tell it.
    #[must_use]
    pub fn due(&self, channel: AlertChannel) -> bool {
        match channel {
            AlertChannel::Mail => self.mail_due,
            AlertChannel::Hook => self.hook_due,
        }
    }
}

/// What [`crate::ports::AlertStore::raise`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Raised {
    /// A new open alert, due on every channel.
    Opened(Alert),
    /// The open alert of the same kind and subject, counted once more; nobody is told again.
    Repeated(Alert),
}

impl Raised {
    /// The alert as stored.
    #[must_use]
    pub fn alert(&self) -> &Alert {
        match self {
            Raised::Opened(a) | Raised::Repeated(a) => a,
        }
    }
}

/// Which alerts to list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AlertFilter {
    /// Only these.
    pub state: Option<AlertState>,
    /// Only this kind.
    pub kind: Option<AlertKind>,
    /// At most this many (0: the store's default, 100).
    pub limit: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_back_from_their_names() {
        for kind in AlertKind::ALL {
            assert_eq!(kind.as_str().parse::<AlertKind>(), Ok(kind));
        }
        assert!(
            "nope"
                .parse::<AlertKind>()
                .unwrap_err()
                .contains("job_dead")
        );
        assert_eq!(subject::id_of(&subject::shipment(12), "shipment"), Some(12));
        assert_eq!(subject::id_of("shipment:x", "shipment"), None);
    }
}
