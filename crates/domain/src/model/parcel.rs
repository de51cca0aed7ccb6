//! What the connector asks of a carrier, in its own words: a [`Parcel`] to book from a
//! [`Party`] to another, the [`ParcelBooking`] that comes back, and the [`TrackingReport`] of a
//! parcel on its way. Each carrier's adapter translates these to its API and back.

use serde::Serialize;

/// Someone a parcel travels from or to, as the shop gave their details (a carrier's adapter
/// cleans or converts them as its API needs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Party {
    /// The given name, or the whole name of a store.
    pub name: String,
    /// The surname; empty for a store.
    pub surname: String,
    /// The street address.
    pub address_line_1: String,
    /// More of the address (floor, door, ...).
    pub address_line_2: String,
    /// The postcode.
    pub postcode: String,
    /// The town or city.
    pub city: String,
    /// The state, province or region, as the shop gave it (a code such as `B`, or a name).
    pub region: String,
    /// The country, as the shop gave it (an ISO code such as `ES`, or empty).
    pub country: String,
    /// The phone number, as the shop gave it (maybe with its `+34` prefix).
    pub phone: String,
    /// The e-mail address.
    pub email: String,
}

/// One vendor's part of an order, to be carried from the vendor to the customer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Parcel {
    /// The shop's order.
    pub order_id: i64,
    /// The vendor who sends it.
    pub vendor_id: i64,
    /// The order's reference for the carrier (the shop's order key).
    pub order_reference: String,
    /// How many packages.
    pub packages: u32,
    /// The weight, in kilograms (0 when unknown).
    pub weight_kg: f64,
    /// Notes for the carrier: the customer's note on the order.
    pub notes: String,
    /// The vendor's store.
    pub sender: Party,
    /// The customer, at the order's shipping address.
    pub recipient: Party,
}

/// The carrier's answer for one parcel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParcelBooking {
    /// The carrier will carry it.
    Booked {
        /// The barcode that tracks it.
        barcode: String,
        /// The carrier's own reference for the booking, if it gives one.
        reference: String,
        /// The carrier's message.
        message: String,
        /// The label to stick on the parcel (a PDF).
        label_pdf: Vec<u8>,
    },
    /// The carrier refused it.
    Refused {
        /// The carrier's words.
        reason: String,
    },
}

impl ParcelBooking {
    /// The barcode; empty when the carrier refused the parcel.
    pub fn barcode(&self) -> &str {
        match self {
            ParcelBooking::Booked { barcode, .. } => barcode,
            ParcelBooking::Refused { .. } => "",
        }
    }
}

/// Where a parcel stands, by the newest event the carrier reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackingState {
    /// On its way.
    InTransit,
    /// Something held it up (an absent recipient, a wrong address, ...).
    HeldUp,
    /// Delivered.
    Delivered,
    /// An event that is none of these (or that the carrier did not classify).
    Unrecognised,
}

/// What the carrier's tracking says about a parcel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrackingReport {
    /// The newest event.
    Event {
        /// Where that leaves the parcel.
        state: TrackingState,
        /// The carrier's description of the event.
        description: String,
        /// Its date, as the carrier sent it.
        date: Option<String>,
        /// The carrier's notes.
        notes: String,
    },
    /// The tracking answered with an error for this parcel.
    Error {
        /// The carrier's message.
        message: String,
    },
}
