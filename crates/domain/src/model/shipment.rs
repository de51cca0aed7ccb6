//! Shipment statuses and methods, as the original stored them (spec §7), and a vendor's sender
//! data.

use serde::{Deserialize, Serialize};

/// Where a shipment stands. The names are the original's stored values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ShipmentStatus {
    /// Claimed by a worker that is booking it now (not one of the original's statuses: a
    /// shipment stuck here means a booking was interrupted; an operator decides with `--force`).
    Booking,
    /// The carrier refused the booking ("Error alta enviament").
    ErrorFromBody,
    /// The label was booked and sent to the vendor ("Etiqueta enviada al venedor").
    LabelSent,
    /// On its way ("En proces").
    InProcess,
    /// Something held it up ("Particularitat al proces d'enviament").
    OnHold,
    /// The tracking API failed or gave an unknown code ("Error API de seguiment").
    ErrorFromTracking,
    /// Delivered, or picked up at the shop ("Entregat").
    Delivered,
}

/// How a vendor's part of an order travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ShipmentMethod {
    /// Booked with Koiki ("Enviament via Koiki").
    Koiki,
    /// Picked up at the shop ("Recollida en botiga").
    LocalPickup,
}

/// A vendor's sender data: WCFM store settings plus the WordPress user's e-mail.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VendorProfile {
    /// The vendor's WordPress user id.
    pub id: i64,
    /// The store's phone.
    pub phone: String,
    /// Street (WCFM `address.street_1`).
    pub street: String,
    /// Postcode (WCFM `address.zip`).
    pub zip: String,
    /// City.
    pub city: String,
    /// State or province code (WCFM `address.state`).
    pub state: String,
    /// Country (WCFM `address.country`).
    pub country: String,
    /// The vendor's e-mail (WordPress user).
    pub email: String,
    /// The store's name (WCFM `store_name`), shown to customers; may be empty.
    pub store_name: String,
}
