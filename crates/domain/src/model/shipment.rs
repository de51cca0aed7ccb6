//! Shipment statuses and methods, as the original stored them (spec §7).

use serde::{Deserialize, Serialize};

/// Where a shipment stands. The names are the original's stored values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ShipmentStatus {
    /// Claimed by a worker that is booking it now (not one of the original's statuses: a
    /// shipment stuck here means a booking was interrupted; an operator decides with `--force`).
    Booking,
    /// Koiki refused the booking ("Error alta enviament").
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
}

/// One Koiki `envio`: the fields of spec §5.1, in the carrier's names and order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)] // The fields are the carrier's own names; spec §5.1 documents each.
pub struct Envio {
    pub num_pedido: String,
    pub bultos: u32,
    pub kilos: f64,
    pub tipo_servicio: u32,
    pub reembolso: f64,
    pub observaciones: String,
    pub nombre_desti: String,
    pub apellido_desti: String,
    pub direccion_desti: String,
    pub direccion_adicional_desti: String,
    pub numero_calle_desti: String,
    pub cod_postal_desti: String,
    pub poblacion_desti: String,
    pub provincia_desti: String,
    pub pais_desti: String,
    pub telefono_desti: String,
    pub email_desti: String,
    pub nombre_remi: String,
    pub apellido_remi: String,
    pub numero_calle_remi: String,
    pub direccion_remi: String,
    pub cod_postal_remi: String,
    pub poblacion_remi: String,
    pub provincia_remi: String,
    pub pais_remi: String,
    pub email_remi: String,
    pub telefono_remi: String,
}

/// A booking: one envio per vendor of one order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BookingRequest {
    /// The envios, in the order the results will come back.
    pub envios: Vec<Envio>,
}

/// The carrier's answer for one envio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookingResult {
    /// The carrier's result code (`"101"` is success for Koiki).
    pub code: String,
    /// The carrier's message.
    pub message: String,
    /// The barcode (tracking code), empty on error.
    pub barcode: String,
    /// The carrier's shipment reference (`numPedido` in the answer).
    pub reference: String,
    /// The label PDF, empty on error.
    pub label_pdf: Vec<u8>,
}

impl BookingResult {
    /// Whether the carrier booked it.
    pub fn is_booked(&self) -> bool {
        self.code == "101"
    }
}

/// What the tracking API says about a shipment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrackingReport {
    /// The newest event.
    Event {
        /// Koiki's numeric code (`108` delivered, ...), when it sent one.
        code: Option<i64>,
        /// Its description (`codEstado`).
        description: String,
        /// Its date, as sent.
        date: Option<String>,
        /// Its notes.
        notes: String,
    },
    /// The tracking API answered with an error.
    Error {
        /// The error code.
        code: Option<i64>,
        /// The error message.
        message: String,
    },
}
