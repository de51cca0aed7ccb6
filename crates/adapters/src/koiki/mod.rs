//! Koiki, the carrier: [`KoikiClient`] implements [`ShippingProvider`] over Koiki's two JSON APIs
//! (spec §5).
//!
//! Koiki's wire format lives here, not in the domain: each of the domain's parcels becomes one
//! [`Envio`] ([`wire`], with the details cleaned as Koiki wants them by [`cleaning`]), and
//! Koiki's answers and tracking codes become the domain's bookings and tracking states.
//!
//! - **Booking**: `POST {host}/rekis/api/altaEnvios` with
//!   `{"formatoEtiqueta":"PDF","envios":[...],"token":"..."}` (the token goes in the body). Each
//!   envio of the answer becomes one [`EnvioResult`], in request order; only the string
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

pub mod cleaning;
pub mod wire;

use async_trait::async_trait;
use domain::error::{ShippingError, UnshippableParcel};
use domain::model::{Parcel, ParcelBooking, TrackingReport};
use domain::ports::ShippingProvider;
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use std::fmt;
use std::time::Duration;
use wire::{
    AltaEnvios, QUOTED_BODY_CHARS, TrackSee, envio_result, int_of, is_truthy, text_of,
    truncate_labels,
};
pub use wire::{Envio, EnvioResult, TrackingAnswer};

use crate::config::KoikiConfig;
use crate::http::{cut, http_client, join, retry_after};
use crate::redact::redact;

/// The path of the booking API, after `KOIKI_HOST`.
pub const BOOKING_PATH: &str = "/rekis/api/altaEnvios";
/// The path of the tracking API, after `KOIKI_TRACKING_HOST`.
pub const TRACKING_PATH: &str = "/kis/api/v1/service/track/see";

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
    /// The parcel's envio, as pretty JSON (what the shipment keeps of the request).
    fn request_for(&self, parcel: &Parcel) -> Result<String, UnshippableParcel> {
        let envio = Envio::from_parcel(parcel).map_err(|e| UnshippableParcel {
            reason: e.to_string(),
        })?;
        Ok(serde_json::to_string_pretty(&envio).unwrap_or_default())
    }

    /// Books one envio per parcel. A parcel Koiki cannot take
    /// ([`ShippingProvider::request_for`] refuses it) makes the whole call
    /// [`ShippingError::Rejected`], before anything is sent.
    async fn book(&self, parcels: &[Parcel]) -> Result<Vec<ParcelBooking>, ShippingError> {
        let envios = parcels
            .iter()
            .map(Envio::from_parcel)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ShippingError::Rejected {
                reason: e.to_string(),
            })?;
        let results = self.book_envios(&envios).await?;
        Ok(results.into_iter().map(ParcelBooking::from).collect())
    }

    async fn track(&self, barcode: &str) -> Result<TrackingReport, ShippingError> {
        self.track_see(barcode).await.map(TrackingReport::from)
    }
}

impl KoikiClient {
    /// Books `envios` in one `altaEnvios` call; the results are in request order.
    ///
    /// # Errors
    /// As for [`ShippingProvider::book`].
    pub async fn book_envios(&self, envios: &[Envio]) -> Result<Vec<EnvioResult>, ShippingError> {
        if envios.is_empty() {
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
            envios,
            token: None,
        };
        // The receivers' names, addresses and phones stay out of the logs: INFO says what is
        // booked, DEBUG shows the body with them redacted.
        tracing::info!(
            envios = envios.len(),
            orders = %envios.iter().map(|e| e.num_pedido.as_str()).collect::<Vec<_>>().join(","),
            "Koiki request to {}",
            redact(url)
        );
        if tracing::enabled!(tracing::Level::DEBUG) {
            let redacted: Vec<Envio> = envios.iter().map(Envio::redacted).collect();
            tracing::debug!(
                "Koiki request to {}. body={}",
                redact(url),
                serde_json::to_string(&AltaEnvios {
                    envios: &redacted,
                    ..logged
                })
                .unwrap_or_default()
            );
        }
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
        let answered = match answer.get("envios") {
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
        if answered.len() != envios.len() {
            return Err(ShippingError::InvalidResponse {
                reason: format!(
                    "{} envios sent, {} answered: the answers cannot be matched to them",
                    envios.len(),
                    answered.len()
                ),
            });
        }

        let results = answered
            .iter()
            .enumerate()
            .map(|(i, envio)| envio_result(i, envio))
            .collect::<Result<Vec<_>, _>>()?;
        let logged = self.scrub(&truncate_labels(&answer).to_string());
        if results.iter().all(EnvioResult::is_booked) {
            tracing::info!(
                booked = results.len(),
                barcodes = %results.iter().map(|r| r.barcode.as_str()).collect::<Vec<_>>().join(","),
                "Koiki response. status={status}"
            );
            tracing::debug!("Koiki response. status={status}, body={logged}");
        } else {
            tracing::error!("Koiki response. status={status}, body={logged}");
        }
        Ok(results)
    }

    /// The newest tracking event of `barcode`, or the tracking API's error, in one
    /// `track/see` call.
    ///
    /// # Errors
    /// As for [`ShippingProvider::track`].
    pub async fn track_see(&self, barcode: &str) -> Result<TrackingAnswer, ShippingError> {
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
                Value::Object(error) => TrackingAnswer::Error {
                    code: int_of(error.get("code")),
                    message: text_of(error.get("message")),
                },
                other => TrackingAnswer::Error {
                    code: None,
                    message: text_of(Some(other)),
                },
            });
        }
        match answer.get("result") {
            Some(Value::Array(events)) if !events.is_empty() => {
                tracing::info!(barcode, "Koiki response. status={status}");
                tracing::debug!(
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
                Ok(TrackingAnswer::Event {
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
mod tests;
