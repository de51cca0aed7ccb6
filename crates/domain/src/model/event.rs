//! Events: a short, append-only account of what the connector did (a webhook received, a job
//! started or given up, a shipment booked, a label mailed, a member upgraded), for the live
//! stream of `/api/v1/events`. They are written by every server and worker process to one table
//! ([`crate::ports::EventLog`]) and read back by id, so a stream sees what every process did.
//!
//! Events are an observation, not a record the connector relies on: they are written
//! best-effort (a lost event loses nothing else) and pruned after a retention period.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// An event's id: increasing in the order events were written; a stream's cursor.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct EventId(pub i64);

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A webhook was stored (queued, ignored or rejected); the message names its topic and
    /// status.
    WebhookReceived,
    /// A worker started a job.
    JobStarted,
    /// A job finished.
    JobSucceeded,
    /// A job failed and will be tried again.
    JobRetried,
    /// A job failed for good and went to the dead letters.
    JobDead,
    /// The carrier booked a vendor's shipment.
    ShipmentBooked,
    /// The carrier refused a vendor's shipment.
    ShipmentRefused,
    /// A local-pickup shipment, recorded as delivered.
    ShipmentPickedUp,
    /// A booking came back after another booking of its shipment had started: a second parcel,
    /// kept among the shipment's past bookings with its label.
    BookingKeptAside,
    /// A shipment's label was mailed to its vendor.
    LabelMailed,
    /// A refused booking was mailed to the admins.
    BookingErrorMailed,
    /// A tracking poll changed a shipment's status or message.
    TrackingChanged,
    /// A customer recognised as a member got the partner role.
    MemberUpgraded,
    /// An operator acted (a replay, a retry, an alert resolved, ...); the message names who and
    /// what, as the audit log records it ([`crate::model::audit`]).
    OperatorAction,
    /// The retention pass cleared personal data past its retention; the message says how much.
    DataPruned,
}

impl EventKind {
    /// Every kind.
    pub const ALL: [EventKind; 15] = [
        EventKind::WebhookReceived,
        EventKind::JobStarted,
        EventKind::JobSucceeded,
        EventKind::JobRetried,
        EventKind::JobDead,
        EventKind::ShipmentBooked,
        EventKind::ShipmentRefused,
        EventKind::ShipmentPickedUp,
        EventKind::BookingKeptAside,
        EventKind::LabelMailed,
        EventKind::BookingErrorMailed,
        EventKind::TrackingChanged,
        EventKind::MemberUpgraded,
        EventKind::OperatorAction,
        EventKind::DataPruned,
    ];

    /// The name stored and shown (`webhook_received`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::WebhookReceived => "webhook_received",
            EventKind::JobStarted => "job_started",
            EventKind::JobSucceeded => "job_succeeded",
            EventKind::JobRetried => "job_retried",
            EventKind::JobDead => "job_dead",
            EventKind::ShipmentBooked => "shipment_booked",
            EventKind::ShipmentRefused => "shipment_refused",
            EventKind::ShipmentPickedUp => "shipment_picked_up",
            EventKind::BookingKeptAside => "booking_kept_aside",
            EventKind::LabelMailed => "label_mailed",
            EventKind::BookingErrorMailed => "booking_error_mailed",
            EventKind::TrackingChanged => "tracking_changed",
            EventKind::MemberUpgraded => "member_upgraded",
            EventKind::OperatorAction => "operator_action",
            EventKind::DataPruned => "data_pruned",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown event kind {s:?}"))
    }
}

/// An event to append.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewEvent {
    /// When it happened.
    pub at: DateTime<Utc>,
    /// What happened.
    pub kind: EventKind,
    /// The webhook it is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_id: Option<i64>,
    /// The job it is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<i64>,
    /// The shipment it is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shipment_id: Option<i64>,
    /// The WooCommerce order it is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<i64>,
    /// The vendor it concerns: a vendor's stream shows only its own events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor_id: Option<i64>,
    /// A short human-readable line.
    pub message: String,
}

impl NewEvent {
    /// An event of `kind` happening now, about nothing yet.
    pub fn now(kind: EventKind, message: impl Into<String>) -> Self {
        NewEvent {
            at: Utc::now(),
            kind,
            webhook_id: None,
            job_id: None,
            shipment_id: None,
            order_id: None,
            vendor_id: None,
            message: message.into(),
        }
    }

    /// About this webhook.
    #[must_use]
    pub fn webhook(mut self, id: i64) -> Self {
        self.webhook_id = Some(id);
        self
    }

    /// About this job.
    #[must_use]
    pub fn job(mut self, id: i64) -> Self {
        self.job_id = Some(id);
        self
    }

    /// About this shipment, of this order and vendor.
    #[must_use]
    pub fn shipment(mut self, id: i64, order_id: i64, vendor_id: i64) -> Self {
        self.shipment_id = Some(id);
        self.order_id = Some(order_id);
        self.vendor_id = Some(vendor_id);
        self
    }

    /// About this order.
    #[must_use]
    pub fn order(mut self, id: i64) -> Self {
        self.order_id = Some(id);
        self
    }
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Its id.
    pub id: EventId,
    /// What it says.
    #[serde(flatten)]
    pub data: NewEvent,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_names() {
        for kind in EventKind::ALL {
            assert_eq!(kind.as_str().parse::<EventKind>(), Ok(kind));
            assert_eq!(
                serde_json::to_value(kind).expect("json"),
                serde_json::Value::String(kind.as_str().into())
            );
        }
        assert!("nope".parse::<EventKind>().is_err());
    }

    #[test]
    fn an_event_serialises_flat_without_empty_ids() {
        let e = Event {
            id: EventId(7),
            data: NewEvent::now(EventKind::ShipmentBooked, "barcode X1").shipment(3, 33, 6),
        };
        let v = serde_json::to_value(&e).expect("json");
        assert_eq!(v["id"], 7);
        assert_eq!(v["kind"], "shipment_booked");
        assert_eq!(v["vendor_id"], 6);
        assert!(v.get("webhook_id").is_none());
    }
}
