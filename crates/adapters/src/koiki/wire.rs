//! Koiki's wire format (spec §5): the `envio` of a booking and its answer, the tracking answer,
//! Koiki's codes, and the translation from and to the domain's parcels and tracking reports.

use super::cleaning::{UnknownProvince, clean_city, province_name, strip_country_prefix};
use crate::http::cut;
use base64::Engine as _;
use domain::error::ShippingError;
use domain::model::{Parcel, ParcelBooking, TrackingReport, TrackingState};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// How many characters of an unexpected body an error message quotes.
pub(crate) const QUOTED_BODY_CHARS: usize = 200;
/// How many characters of a label the log lines keep.
const LOGGED_LABEL_CHARS: usize = 10;

/// The `respuesta` of a booked envio; any other is a refusal.
pub const BOOKED: &str = "101";
/// Tracking codes meaning the parcel is on its way.
const IN_PROCESS_CODES: [i64; 4] = [100, 102, 103, 114];
/// Tracking codes meaning something held the parcel up (and 900 to 906).
const ON_HOLD_CODES: [i64; 3] = [111, 112, 113];
/// The tracking code of a delivered parcel.
const DELIVERED_CODE: i64 = 108;
/// Koiki's service type (`tipoServicio`) for every booking.
const SERVICE_TYPE: u32 = 5;
/// The sender's country when the vendor gave none.
const DEFAULT_COUNTRY: &str = "ES";

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

impl Envio {
    /// This envio with the receiver's name, address, phone, e-mail and the customer's note
    /// replaced by `[redacted]` (for a DEBUG log line); the postcode, town, province and country
    /// stay, with the sender's details.
    pub fn redacted(&self) -> Self {
        let hidden = || "[redacted]".to_owned();
        Envio {
            observaciones: hidden(),
            nombre_desti: hidden(),
            apellido_desti: hidden(),
            direccion_desti: hidden(),
            direccion_adicional_desti: hidden(),
            numero_calle_desti: hidden(),
            telefono_desti: hidden(),
            email_desti: hidden(),
            ..self.clone()
        }
    }

    /// The envio of a parcel, field by field as spec §5.1 says.
    ///
    /// Towns are cleaned (`'` and `-` become spaces, `ç` becomes `c`); the recipient's phone
    /// loses its `+34`-like prefix, the sender's is sent as it is; the recipient's province is
    /// sent raw, the sender's as a province name (§5.5); the sender's country defaults to `ES`.
    /// Service type 5, no cash on delivery, no street numbers (they are in the address lines).
    ///
    /// # Errors
    /// [`UnknownProvince`] when the sender's region is not a known Spanish code.
    pub fn from_parcel(parcel: &Parcel) -> Result<Self, UnknownProvince> {
        let (to, from) = (&parcel.recipient, &parcel.sender);
        Ok(Envio {
            num_pedido: parcel.order_reference.clone(),
            bultos: parcel.packages,
            kilos: parcel.weight_kg,
            tipo_servicio: SERVICE_TYPE,
            reembolso: 0.0,
            observaciones: parcel.notes.clone(),
            nombre_desti: to.name.clone(),
            apellido_desti: to.surname.clone(),
            direccion_desti: to.address_line_1.clone(),
            direccion_adicional_desti: to.address_line_2.clone(),
            numero_calle_desti: String::new(),
            cod_postal_desti: to.postcode.clone(),
            poblacion_desti: clean_city(&to.city),
            provincia_desti: to.region.clone(),
            pais_desti: to.country.clone(),
            telefono_desti: strip_country_prefix(&to.phone),
            email_desti: to.email.clone(),
            nombre_remi: from.name.clone(),
            apellido_remi: from.surname.clone(),
            numero_calle_remi: String::new(),
            direccion_remi: from.address_line_1.clone(),
            cod_postal_remi: from.postcode.clone(),
            poblacion_remi: clean_city(&from.city),
            provincia_remi: province_name(&from.region)?,
            pais_remi: if from.country.is_empty() {
                DEFAULT_COUNTRY.to_owned()
            } else {
                from.country.clone()
            },
            email_remi: from.email.clone(),
            telefono_remi: from.phone.clone(),
        })
    }
}

/// Koiki's answer for one envio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvioResult {
    /// The `respuesta`, as sent ([`BOOKED`] is a booking).
    pub code: String,
    /// The `mensaje`.
    pub message: String,
    /// The `codBarras` (the barcode), empty on error.
    pub barcode: String,
    /// The `numPedido` of the answer.
    pub reference: String,
    /// The `etiqueta`, decoded: the label PDF, empty on error.
    pub label_pdf: Vec<u8>,
}

impl EnvioResult {
    /// Whether Koiki booked it: only the string `"101"` is a booking (spec §5.2).
    pub fn is_booked(&self) -> bool {
        self.code == BOOKED
    }
}

impl From<EnvioResult> for ParcelBooking {
    /// A booking, or a refusal with Koiki's `mensaje`.
    fn from(result: EnvioResult) -> Self {
        if result.is_booked() {
            ParcelBooking::Booked {
                barcode: result.barcode,
                reference: result.reference,
                message: result.message,
                label_pdf: result.label_pdf,
            }
        } else {
            ParcelBooking::Refused {
                reason: result.message,
            }
        }
    }
}

/// What the tracking API says about a barcode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrackingAnswer {
    /// The newest event (`result[0]`).
    Event {
        /// Its numeric `code` (108 delivered, ...), when there is one.
        code: Option<i64>,
        /// Its description (`codEstado`).
        description: String,
        /// Its `date`, as sent.
        date: Option<String>,
        /// Its `notas`.
        notes: String,
    },
    /// The `error` of the answer.
    Error {
        /// The error's code.
        code: Option<i64>,
        /// The error's message.
        message: String,
    },
}

/// Where a tracking code leaves the parcel (spec §5.4): 100, 102, 103 and 114 on its way; 111
/// to 113 and 900 to 906 held up; 108 delivered; any other code, or none, unrecognised.
pub fn tracking_state(code: Option<i64>) -> TrackingState {
    match code {
        Some(c) if IN_PROCESS_CODES.contains(&c) => TrackingState::InTransit,
        Some(c) if ON_HOLD_CODES.contains(&c) || (900..=906).contains(&c) => TrackingState::HeldUp,
        Some(DELIVERED_CODE) => TrackingState::Delivered,
        _ => TrackingState::Unrecognised,
    }
}

impl From<TrackingAnswer> for TrackingReport {
    fn from(answer: TrackingAnswer) -> Self {
        match answer {
            TrackingAnswer::Event {
                code,
                description,
                date,
                notes,
            } => TrackingReport::Event {
                state: tracking_state(code),
                description,
                date,
                notes,
            },
            TrackingAnswer::Error { message, .. } => TrackingReport::Error { message },
        }
    }
}

/// The altaEnvios body, in the original's key order. Logged without the token.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AltaEnvios<'a> {
    pub(crate) formato_etiqueta: &'static str,
    pub(crate) envios: &'a [Envio],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) token: Option<&'a str>,
}

/// The track/see body. Logged without the token.
#[derive(Serialize)]
pub(crate) struct TrackSee<'a> {
    pub(crate) code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) token: Option<&'a str>,
}

/// One envio of the answer as an [`EnvioResult`].
pub(crate) fn envio_result(index: usize, envio: &Value) -> Result<EnvioResult, ShippingError> {
    let Value::Object(envio) = envio else {
        return Err(ShippingError::InvalidResponse {
            reason: format!(
                "envios[{index}] is not an object: {}",
                cut(&envio.to_string(), QUOTED_BODY_CHARS)
            ),
        });
    };
    let label_pdf = match envio.get("etiqueta") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(label)) => {
            decode_label(label).map_err(|e| ShippingError::InvalidResponse {
                reason: format!("envios[{index}].etiqueta is not valid base64: {e}"),
            })?
        }
        Some(other) => {
            return Err(ShippingError::InvalidResponse {
                reason: format!(
                    "envios[{index}].etiqueta is not a string: {}",
                    cut(&other.to_string(), QUOTED_BODY_CHARS)
                ),
            });
        }
    };
    Ok(EnvioResult {
        code: code_of(envio.get("respuesta")),
        message: text_of(envio.get("mensaje")),
        barcode: text_of(envio.get("codBarras")),
        reference: text_of(envio.get("numPedido")),
        label_pdf,
    })
}

/// Standard base64; line breaks and spaces (which some encoders insert) are ignored.
fn decode_label(label: &str) -> Result<Vec<u8>, base64::DecodeError> {
    let compact: String = label.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(compact)
}

/// The envio's `respuesta` as sent. Only the *string* `"101"` is a booking (spec §5.2), so a
/// value of another type is marked as such and never reads as `"101"`.
pub(crate) fn code_of(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => format!("{other} (not a string)"),
    }
}

/// A string field as text: strings as they are, other values as JSON, missing or null as "".
pub(crate) fn text_of(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// An integer field, given as a number or as a numeric string.
pub(crate) fn int_of(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Python's truthiness, which the original used for the tracking `error` key.
pub(crate) fn is_truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// The answer with each envio's `etiqueta` cut to its first 10 characters and `...`.
pub(crate) fn truncate_labels(answer: &Value) -> Value {
    let mut answer = answer.clone();
    if let Some(Value::Array(envios)) = answer.get_mut("envios") {
        for envio in envios.iter_mut().filter_map(Value::as_object_mut) {
            truncate_label(envio);
        }
    }
    answer
}

fn truncate_label(envio: &mut Map<String, Value>) {
    if let Some(Value::String(label)) = envio.get_mut("etiqueta") {
        let short: String = label.chars().take(LOGGED_LABEL_CHARS).collect();
        *label = format!("{short}...");
    }
}
