//! Koiki, the carrier: [`KoikiClient`] implements [`ShippingProvider`] over Koiki's two JSON APIs
//! (spec §5).
//!
//! - **Booking**: `POST {host}/rekis/api/altaEnvios` with
//!   `{"formatoEtiqueta":"PDF","envios":[...],"token":"..."}` (the token goes in the body). Each
//!   envio of the answer becomes one [`BookingResult`], in request order; only the string
//!   `respuesta` `"101"` is a booking.
//! - **Tracking**: `POST {tracking_host}/kis/api/v1/service/track/see` with
//!   `{"code":"<barcode>","token":"..."}`; the first entry of `result` is the newest event.
//!
//! Unlike the original (spec §12 #4/#5) every call has a timeout, and every answer is classified
//! instead of crashing: a connection that fails, 429 and 503 (with their `Retry-After`) are
//! [`ShippingError::Unavailable`], and so are timeouts and other 5xx of a tracking call; a booking
//! that was sent and got no answer (a timeout, a connection broken after sending, a 5xx other
//! than 503) is [`ShippingError::Indeterminate`]: Koiki may have booked it, and since it takes no
//! idempotency key it is not sent again on its own (it could ship twice); other 4xx, and a 200
//! that books nothing (`envios` missing or empty, e.g. `102 TOKEN NOT FOUND`), are
//! [`ShippingError::Rejected`]; a body that is not JSON or does not follow the API is
//! [`ShippingError::InvalidResponse`].
//!
//! The log lines are the original's (spec §10): `Koiki request to {url}. body=...` without the
//! token, and `Koiki response. status=..., body=...` with each label cut to 10 characters. The
//! tokens never reach a log line, an error or `Debug`.

use async_trait::async_trait;
use base64::Engine as _;
use domain::error::ShippingError;
use domain::model::shipment::{BookingRequest, BookingResult, Envio, TrackingReport};
use domain::ports::ShippingProvider;
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::{Map, Value};
use std::fmt;
use std::time::Duration;

use crate::config::KoikiConfig;
use crate::http::{cut, http_client, join, retry_after};
use crate::redact::redact;

/// The path of the booking API, after `KOIKI_HOST`.
pub const BOOKING_PATH: &str = "/rekis/api/altaEnvios";
/// The path of the tracking API, after `KOIKI_TRACKING_HOST`.
pub const TRACKING_PATH: &str = "/kis/api/v1/service/track/see";

/// How many characters of an unexpected body an error message quotes.
const QUOTED_BODY_CHARS: usize = 200;
/// How many characters of a label the log lines keep.
const LOGGED_LABEL_CHARS: usize = 10;
/// How many characters of a body a log line keeps at most.
const LOGGED_BODY_CHARS: usize = 4000;

/// The Koiki client. Cheap to clone (the HTTP client is shared).
#[derive(Clone)]
pub struct KoikiClient {
    http: reqwest::Client,
    booking_url: String,
    tracking_url: String,
    auth_token: Option<SecretString>,
    tracking_token: Option<SecretString>,
}

impl fmt::Debug for KoikiClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KoikiClient")
            .field("booking_url", &self.booking_url)
            .field("tracking_url", &self.tracking_url)
            .field(
                "auth_token",
                &self.auth_token.as_ref().map(|_| "[REDACTED]"),
            )
            .field(
                "tracking_token",
                &self.tracking_token.as_ref().map(|_| "[REDACTED]"),
            )
            .finish_non_exhaustive()
    }
}

/// The altaEnvios body, in the original's key order. Logged without the token.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AltaEnvios<'a> {
    formato_etiqueta: &'static str,
    envios: &'a [Envio],
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<&'a str>,
}

/// The track/see body. Logged without the token.
#[derive(Serialize)]
struct TrackSee<'a> {
    code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<&'a str>,
}

impl KoikiClient {
    /// A client for the hosts and tokens of `cfg`, each request limited to `timeout`.
    ///
    /// # Errors
    /// The [`reqwest::Error`] when the HTTP client cannot be built.
    pub fn new(cfg: &KoikiConfig, timeout: Duration) -> Result<Self, reqwest::Error> {
        Ok(Self {
            http: http_client(timeout)?,
            booking_url: join(&cfg.host, BOOKING_PATH),
            tracking_url: join(&cfg.tracking_host, TRACKING_PATH),
            auth_token: cfg.auth_token.clone(),
            tracking_token: cfg.tracking_auth_token.clone(),
        })
    }

    /// The booking URL (`{host}/rekis/api/altaEnvios`).
    pub fn booking_url(&self) -> &str {
        &self.booking_url
    }

    /// The tracking URL (`{tracking_host}/kis/api/v1/service/track/see`).
    pub fn tracking_url(&self) -> &str {
        &self.tracking_url
    }

    /// Sends `body` to `url` and returns the status and the whole answer.
    async fn post(&self, call: Call, url: &str, body: Vec<u8>) -> Result<Exchange, ShippingError> {
        let response = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| unreachable_error(call, url, &e))?;
        let status = response.status();
        let retry_after = retry_after(&response);
        let text = response
            .text()
            .await
            .map_err(|e| unreachable_error(call, url, &e))?;
        Ok(Exchange {
            status,
            retry_after,
            text,
        })
    }

    /// Removes the tokens from a text bound for a log line or an error.
    fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for token in [&self.auth_token, &self.tracking_token]
            .into_iter()
            .flatten()
        {
            let token = token.expose_secret();
            if !token.is_empty() {
                out = out.replace(token, "[REDACTED]");
            }
        }
        out
    }

    /// Classifies a non-2xx answer (logging it), or parses a 2xx one as JSON.
    fn json_or_error(&self, call: Call, exchange: &Exchange) -> Result<Value, ShippingError> {
        let status = exchange.status;
        let body = self.scrub(&exchange.text);
        if !status.is_success() {
            tracing::error!(
                "Koiki response. status={}, body={}",
                status.as_u16(),
                cut(&body, LOGGED_BODY_CHARS)
            );
            return Err(status_error(call, status, exchange.retry_after, &body));
        }
        serde_json::from_str(&exchange.text).map_err(|e| {
            tracing::error!(
                "Koiki response. status={}, body={}",
                status.as_u16(),
                cut(&body, LOGGED_BODY_CHARS)
            );
            ShippingError::InvalidResponse {
                reason: format!(
                    "status {}, body is not JSON ({e}): {}",
                    status.as_u16(),
                    cut(&body, QUOTED_BODY_CHARS)
                ),
            }
        })
    }
}

/// Which API a request calls: a booking that may have happened is not the same failure as a
/// tracking call that did not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Booking,
    Tracking,
}

/// One HTTP answer, read in full.
struct Exchange {
    status: StatusCode,
    retry_after: Option<Duration>,
    text: String,
}

#[async_trait]
impl ShippingProvider for KoikiClient {
    async fn book(&self, request: &BookingRequest) -> Result<Vec<BookingResult>, ShippingError> {
        if request.envios.is_empty() {
            // The original called Koiki with `envios: []` (spec §12 #3): nothing to book.
            return Ok(Vec::new());
        }
        let Some(token) = self.auth_token.as_ref() else {
            return Err(ShippingError::Rejected {
                reason: "no Koiki auth token is configured (KOIKI_AUTH_TOKEN)".into(),
            });
        };
        let url = &self.booking_url;
        let logged = AltaEnvios {
            formato_etiqueta: "PDF",
            envios: &request.envios,
            token: None,
        };
        tracing::info!(
            "Koiki request to {}. body={}",
            redact(url),
            serde_json::to_string(&logged).unwrap_or_default()
        );
        // `to_vec`, not a `Value`: the body keeps the struct's key order.
        let body = serde_json::to_vec(&AltaEnvios {
            token: Some(token.expose_secret()),
            ..logged
        })
        .map_err(|e| ShippingError::InvalidResponse {
            reason: format!("cannot encode the booking: {e}"),
        })?;

        let exchange = self.post(Call::Booking, url, body).await?;
        let answer = self.json_or_error(Call::Booking, &exchange)?;
        let status = exchange.status.as_u16();
        let envios = match answer.get("envios") {
            Some(Value::Array(envios)) if !envios.is_empty() => envios,
            Some(Value::Array(_)) | None | Some(Value::Null) => {
                tracing::error!(
                    "Koiki response. status={status}, body={}",
                    cut(&self.scrub(&exchange.text), LOGGED_BODY_CHARS)
                );
                let code = text_of(answer.get("respuesta"));
                let message = text_of(answer.get("mensaje"));
                let reason = match (code.is_empty(), message.is_empty()) {
                    (true, true) => format!(
                        "status {status}, no envios in the answer: {}",
                        cut(&self.scrub(&exchange.text), QUOTED_BODY_CHARS)
                    ),
                    _ => format!("{code} {message}").trim().to_owned(),
                };
                return Err(ShippingError::Rejected { reason });
            }
            Some(other) => {
                return Err(ShippingError::InvalidResponse {
                    reason: format!(
                        "status {status}, envios is not a list: {}",
                        cut(&other.to_string(), QUOTED_BODY_CHARS)
                    ),
                });
            }
        };
        if envios.len() != request.envios.len() {
            return Err(ShippingError::InvalidResponse {
                reason: format!(
                    "{} envios sent, {} answered: the answers cannot be matched to them",
                    request.envios.len(),
                    envios.len()
                ),
            });
        }

        let results = envios
            .iter()
            .enumerate()
            .map(|(i, envio)| booking_result(i, envio))
            .collect::<Result<Vec<_>, _>>()?;
        let logged = self.scrub(&truncate_labels(&answer).to_string());
        if results.iter().all(BookingResult::is_booked) {
            tracing::info!("Koiki response. status={status}, body={logged}");
        } else {
            tracing::error!("Koiki response. status={status}, body={logged}");
        }
        Ok(results)
    }

    async fn track(&self, barcode: &str) -> Result<TrackingReport, ShippingError> {
        let Some(token) = self.tracking_token.as_ref() else {
            return Err(ShippingError::Rejected {
                reason: "no Koiki tracking token is configured (KOIKI_TRACKING_AUTH_TOKEN)".into(),
            });
        };
        let url = &self.tracking_url;
        let logged = TrackSee {
            code: barcode,
            token: None,
        };
        tracing::info!(
            "Koiki request to {}. body={}",
            redact(url),
            serde_json::to_string(&logged).unwrap_or_default()
        );
        let body = serde_json::to_vec(&TrackSee {
            token: Some(token.expose_secret()),
            ..logged
        })
        .map_err(|e| ShippingError::InvalidResponse {
            reason: format!("cannot encode the tracking request: {e}"),
        })?;

        let exchange = self.post(Call::Tracking, url, body).await?;
        let answer = self.json_or_error(Call::Tracking, &exchange)?;
        let status = exchange.status.as_u16();
        let body = self.scrub(&exchange.text);

        if let Some(error) = answer.get("error").filter(|e| is_truthy(e)) {
            tracing::error!(
                "Koiki response. status={status}, body={}",
                cut(&body, LOGGED_BODY_CHARS)
            );
            return Ok(match error {
                Value::Object(error) => TrackingReport::Error {
                    code: int_of(error.get("code")),
                    message: text_of(error.get("message")),
                },
                other => TrackingReport::Error {
                    code: None,
                    message: text_of(Some(other)),
                },
            });
        }
        match answer.get("result") {
            Some(Value::Array(events)) if !events.is_empty() => {
                tracing::info!(
                    "Koiki response. status={status}, body={}",
                    cut(&body, LOGGED_BODY_CHARS)
                );
                let Value::Object(event) = &events[0] else {
                    return Err(ShippingError::InvalidResponse {
                        reason: format!(
                            "result[0] is not an object: {}",
                            cut(&events[0].to_string(), QUOTED_BODY_CHARS)
                        ),
                    });
                };
                Ok(TrackingReport::Event {
                    code: int_of(event.get("code")),
                    description: text_of(event.get("codEstado")),
                    date: Some(text_of(event.get("date"))).filter(|d| !d.is_empty()),
                    notes: text_of(event.get("notas")),
                })
            }
            _ => {
                tracing::error!(
                    "Koiki response. status={status}, body={}",
                    cut(&body, LOGGED_BODY_CHARS)
                );
                Err(ShippingError::InvalidResponse {
                    reason: format!(
                        "status {status}, neither result nor error in the answer: {}",
                        cut(&body, QUOTED_BODY_CHARS)
                    ),
                })
            }
        }
    }
}

/// One envio of the answer as a [`BookingResult`].
fn booking_result(index: usize, envio: &Value) -> Result<BookingResult, ShippingError> {
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
    Ok(BookingResult {
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
fn code_of(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => format!("{other} (not a string)"),
    }
}

/// A string field as text: strings as they are, other values as JSON, missing or null as "".
fn text_of(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// An integer field, given as a number or as a numeric string.
fn int_of(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Python's truthiness, which the original used for the tracking `error` key.
fn is_truthy(value: &Value) -> bool {
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
fn truncate_labels(answer: &Value) -> Value {
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

/// The error for a request that got no answer. A booking that could not connect was not sent
/// and can be sent again; one that was sent (or may have been) and got no answer may have booked.
fn unreachable_error(call: Call, url: &str, e: &reqwest::Error) -> ShippingError {
    // A connect timeout is both `is_connect` and `is_timeout`: nothing was sent.
    let what = if e.is_connect() {
        "connection failed"
    } else if e.is_timeout() {
        "timed out"
    } else {
        "request failed"
    };
    // The tokens travel in the body; a password in the host is masked.
    tracing::error!(
        "Koiki request to {} {what}: {}",
        redact(url),
        redact(&e.to_string())
    );
    let reason = redact(&format!("{what}: {}", domain::error::error_chain(e)));
    if call == Call::Booking && !e.is_connect() {
        ShippingError::Indeterminate { reason }
    } else {
        ShippingError::Unavailable {
            reason,
            retry_after: None,
        }
    }
}

/// The error for a non-2xx answer. 429 and 503 say the request was not taken; another 5xx to a
/// booking does not say whether it was booked.
fn status_error(
    call: Call,
    status: StatusCode,
    retry_after: Option<Duration>,
    body: &str,
) -> ShippingError {
    let reason = format!(
        "status {}: {}",
        status.as_u16(),
        cut(body, QUOTED_BODY_CHARS)
    );
    // Safe to send again: a request that was not taken, or any tracking call.
    let again = matches!(
        status,
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
    ) || (call == Call::Tracking && status.is_server_error());
    if again {
        ShippingError::Unavailable {
            reason,
            retry_after,
        }
    } else if status.is_server_error() {
        ShippingError::Indeterminate { reason }
    } else if status.is_client_error() {
        ShippingError::Rejected { reason }
    } else {
        ShippingError::InvalidResponse { reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_string_101_is_a_booking_code() {
        assert_eq!(code_of(Some(&Value::from("101"))), "101");
        assert_ne!(code_of(Some(&Value::from(101))), "101");
        assert_eq!(code_of(None), "");
    }

    #[test]
    fn tracking_codes_may_be_numeric_strings() {
        assert_eq!(int_of(Some(&Value::from(108))), Some(108));
        assert_eq!(int_of(Some(&Value::from("108"))), Some(108));
        assert_eq!(int_of(Some(&Value::from("x"))), None);
    }

    #[test]
    fn labels_are_cut_in_the_logged_answer() {
        let answer = serde_json::json!({"envios": [{"etiqueta": "0123456789abcdef"}]});
        assert_eq!(
            truncate_labels(&answer)["envios"][0]["etiqueta"],
            "0123456789..."
        );
    }

    #[test]
    fn urls_get_one_slash() {
        assert_eq!(
            join("https://h/services/", BOOKING_PATH),
            "https://h/services/rekis/api/altaEnvios"
        );
    }
}
