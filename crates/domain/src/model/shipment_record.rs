//! The connector's record of a vendor's part of an order: one per (order, vendor), unique, so
//! that a repeated or racing delivery never books a second shipment.

use super::mail::MailState;
use super::shipment::{ShipmentMethod, ShipmentStatus};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::fmt;
use std::str::FromStr;

impl ShipmentStatus {
    /// Every status, in a stable order.
    pub const ALL: [ShipmentStatus; 7] = [
        ShipmentStatus::Booking,
        ShipmentStatus::ErrorFromBody,
        ShipmentStatus::LabelSent,
        ShipmentStatus::InProcess,
        ShipmentStatus::OnHold,
        ShipmentStatus::ErrorFromTracking,
        ShipmentStatus::Delivered,
    ];

    /// The stored name (the original's values, plus `BOOKING`).
    pub fn as_str(self) -> &'static str {
        match self {
            ShipmentStatus::Booking => "BOOKING",
            ShipmentStatus::ErrorFromBody => "ERROR_FROM_BODY",
            ShipmentStatus::LabelSent => "LABEL_SENT",
            ShipmentStatus::InProcess => "IN_PROCESS",
            ShipmentStatus::OnHold => "ON_HOLD",
            ShipmentStatus::ErrorFromTracking => "ERROR_FROM_TRACKING",
            ShipmentStatus::Delivered => "DELIVERED",
        }
    }
}

impl fmt::Display for ShipmentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ShipmentStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown shipment status {s:?}"))
    }
}

impl ShipmentMethod {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ShipmentMethod::Koiki => "KOIKI",
            ShipmentMethod::LocalPickup => "LOCAL_PICKUP",
        }
    }
}

impl FromStr for ShipmentMethod {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "KOIKI" => Ok(ShipmentMethod::Koiki),
            "LOCAL_PICKUP" => Ok(ShipmentMethod::LocalPickup),
            other => Err(format!("unknown shipment method {other:?}")),
        }
    }
}

/// A stored shipment.
#[derive(Clone, PartialEq, Serialize)]
pub struct ShipmentRecord {
    /// Its id.
    pub id: i64,
    /// The WooCommerce order.
    pub order_id: i64,
    /// The vendor (WordPress user id).
    pub vendor_id: i64,
    /// Koiki or local pickup.
    pub method: ShipmentMethod,
    /// Where it stands.
    pub status: ShipmentStatus,
    /// The carrier's barcode, empty when there is none.
    pub delivery_id: String,
    /// The request sent to the carrier (JSON, without the token).
    pub request: String,
    /// The carrier's or the tracking API's message.
    pub message: String,
    /// The tracking notes.
    pub notes: String,
    /// Whether a label PDF is stored.
    pub has_label: bool,
    /// Date of the latest tracking event, as the carrier sent it.
    pub tracking_status_created_at: Option<String>,
    /// When tracking last looked.
    pub tracking_updated_at: Option<DateTime<Utc>>,
    /// When the label was mailed to the vendor.
    pub mailed_at: Option<DateTime<Utc>>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed (while `BOOKING`: when its booking started or was last resumed).
    pub updated_at: DateTime<Utc>,
    /// Which booking of the shipment the row is for: 0 for the first (the claim's), one more
    /// each time an operator's retry takes the shipment to book it again. Whoever books holds
    /// an attempt, and records its booking only while the row still has it.
    pub booking_attempt: i64,
    /// The order's status (`cancelled`, `refunded`, `failed`) when it arrived withdrawn after
    /// this shipment was booked: the admins were told to cancel the booking by hand.
    pub order_withdrawn: Option<String>,
    /// The barcode whose tracking note was written on the order in the shop (the note is
    /// written again when a forced retry changes the barcode).
    pub noted_barcode: Option<String>,
    /// Since when a tracking change (status or message) waits for its mail to the admins: set
    /// by [`crate::ports::ShipmentStore::record_tracking`] in the same write as the change,
    /// cleared once the mail is sent ([`crate::ports::ShipmentStore::mark_tracking_mailed`]),
    /// so a mail that fails is sent by the retry instead of being lost.
    pub tracking_unmailed_since: Option<DateTime<Utc>>,
    /// The connector's `Message-ID` of the latest label mail (see [`crate::model::mail`]).
    pub mail_message_id: Option<String>,
    /// Where the latest label mail stands, as the mail relay reported it (`sent` once handed
    /// to the relay); `None` before the first label mail.
    pub mail_state: Option<MailState>,
    /// When `mail_state` was last set.
    pub mail_state_at: Option<DateTime<Utc>>,
    /// When its label PDF (and its past bookings') and the personal data of its carrier request
    /// were cleared, and why ([`crate::model::retention`]); `None` while they are kept.
    pub label_pruned: Option<crate::model::Pruned>,
}

/// How long a booking in flight holds its shipment: a shipment `BOOKING` for less than this is
/// not taken by another retry, forced or not (at most one booking in flight per shipment). Far
/// longer than any carrier call may take (`shipping.http_timeout_secs`, 30 s by default), so a
/// shipment still `BOOKING` after it was left by a worker that died.
pub const BOOKING_LEASE: chrono::TimeDelta = chrono::TimeDelta::minutes(10);

impl fmt::Debug for ShipmentRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The request holds the customer's address: only its size is printed.
        f.debug_struct("ShipmentRecord")
            .field("id", &self.id)
            .field("order_id", &self.order_id)
            .field("vendor_id", &self.vendor_id)
            .field("method", &self.method)
            .field("status", &self.status)
            .field("delivery_id", &self.delivery_id)
            .field("request_len", &self.request.len())
            .field("message", &self.message)
            .finish_non_exhaustive()
    }
}

/// What the store did with a claim on (order, vendor).
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// No shipment existed: this caller now owns the new one, in status `BOOKING`.
    Claimed(ShipmentRecord),
    /// A shipment already exists (booked, failed, or being booked by someone else).
    Exists(ShipmentRecord),
}

/// Where [`crate::ports::ShipmentStore::record_booking`] put a booking.
#[derive(Debug, Clone, PartialEq)]
pub enum BookingRecorded {
    /// On the shipment: it now holds this booking (a booking it held before, if any, is kept
    /// among its past bookings).
    Current(ShipmentRecord),
    /// Beside the shipment, among its past bookings: another booking of it had started
    /// meanwhile (a retry took it after the lease ran out), so this one is kept, with its
    /// barcode and label, without replacing the other. The record is the shipment as it is.
    Aside(ShipmentRecord),
}

impl BookingRecorded {
    /// The shipment as it now is.
    pub fn shipment(&self) -> &ShipmentRecord {
        match self {
            BookingRecorded::Current(s) | BookingRecorded::Aside(s) => s,
        }
    }

    /// The shipment, when it now holds this booking.
    pub fn current(self) -> Option<ShipmentRecord> {
        match self {
            BookingRecorded::Current(s) => Some(s),
            BookingRecorded::Aside(_) => None,
        }
    }
}

/// Why a booking is among a shipment's past bookings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PastBookingReason {
    /// A retry booked the shipment again: this was its booking before.
    Superseded,
    /// It came back after another booking of the shipment had started: a second parcel.
    Late,
}

impl PastBookingReason {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            PastBookingReason::Superseded => "superseded",
            PastBookingReason::Late => "late",
        }
    }
}

impl FromStr for PastBookingReason {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "superseded" => Ok(PastBookingReason::Superseded),
            "late" => Ok(PastBookingReason::Late),
            other => Err(format!("unknown past booking reason {other:?}")),
        }
    }
}

/// A booking the carrier made for a shipment that the shipment no longer (or never) held:
/// kept so that no parcel booked is forgotten.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PastBooking {
    /// Its id among past bookings.
    pub id: i64,
    /// The shipment it was made for.
    pub shipment_id: i64,
    /// The carrier's barcode, empty when the booking was refused.
    pub delivery_id: String,
    /// What the booking came to.
    pub status: ShipmentStatus,
    /// The carrier's message.
    pub message: String,
    /// Whether its label PDF is kept.
    pub has_label: bool,
    /// When it was kept here: when the booking that superseded it was recorded, or when a late
    /// booking came back.
    pub kept_at: DateTime<Utc>,
    /// Why it is here.
    pub reason: PastBookingReason,
}

/// What a booking attempt came to, recorded on its shipment.
#[derive(Debug, Clone, PartialEq)]
pub struct BookingOutcome {
    /// `LABEL_SENT`, `ERROR_FROM_BODY` or `DELIVERED` (local pickup).
    pub status: ShipmentStatus,
    /// The barcode, empty when none.
    pub delivery_id: String,
    /// The request sent (JSON, without the token).
    pub request: String,
    /// The carrier's message.
    pub message: String,
    /// The label PDF, when the carrier sent one.
    pub label_pdf: Option<Vec<u8>>,
}

/// Which shipments to list (every field narrows; `None` is no condition).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShipmentFilter {
    /// Only this order.
    pub order_id: Option<i64>,
    /// Only this vendor.
    pub vendor_id: Option<i64>,
    /// Only this status.
    pub status: Option<ShipmentStatus>,
    /// Only this carrier barcode.
    pub delivery_id: Option<String>,
    /// Only ids below this one (the next page, newest first).
    pub before_id: Option<i64>,
    /// Only the shipment whose latest label mail has this `Message-ID`.
    pub mail_message_id: Option<String>,
    /// At most this many (0: a default of 50).
    pub limit: u64,
}
