//! `POST /api/mail-events/mandrill`: Mandrill's message-event webhook. The signature is checked
//! ([`adapters::mandrill::verify`], with `mail.events_key` and the webhook's URL: `mail.events_url`,
//! or the request's own scheme, `Host` and path), the events are read
//! ([`adapters::mandrill::events`]) and handed to the domain ([`MailTracking::receive`]), which
//! stores them and maps them onto the shipments' label mails. `HEAD` (Mandrill's check when the
//! webhook is added, before its key exists) is answered 200.
//!
//! Answers: 200 with what the events came to; 401 for a missing or wrong signature (nothing
//! stored); 400 for a delivery that cannot be read, kept as a `malformed` mail event for
//! inspection; 503 when no key is set (Mandrill retries) or the database is down.

use crate::AppState;
use adapters::mandrill;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use domain::error::error_chain;
use domain::service::mail_events::MailTracking;
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::json;

/// The largest delivery taken (Mandrill batches up to 1,000 events in one POST).
pub(crate) const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// What the endpoint needs.
#[derive(Clone)]
pub struct MailEventsEndpoint {
    /// Where the events go.
    pub tracking: MailTracking,
    /// `mail.events_key`; `None` answers 503.
    pub key: Option<SecretString>,
    /// `mail.events_url`; `None`: the request's own.
    pub url: Option<String>,
}

fn error(status: StatusCode, code: &str, message: String) -> Response {
    let mut response = (
        status,
        axum::Json(json!({ "error": { "code": code, "message": message } })),
    )
        .into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
    }
    response
}

fn counted(result: &'static str) {
    metrics::counter!("lazona_mail_event_deliveries_total", "provider" => mandrill::PROVIDER, "result" => result)
        .increment(1);
}

/// The webhook's URL as Mandrill signed it: the configured one, or this request's.
fn signed_url(configured: Option<&str>, headers: &HeaderMap, uri: &Uri) -> String {
    if let Some(url) = configured {
        return url.to_owned();
    }
    let value = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(',').next().unwrap_or(v).trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let scheme = value("x-forwarded-proto").unwrap_or_else(|| "http".to_owned());
    let host = value("host")
        .or_else(|| uri.authority().map(ToString::to_string))
        .unwrap_or_default();
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    format!("{scheme}://{host}{path}")
}

/// `HEAD`: Mandrill checks that the URL answers when the webhook is added.
pub(crate) async fn head() -> StatusCode {
    StatusCode::OK
}

/// `POST`: a delivery of events.
pub(crate) async fn mandrill(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Some(endpoint) = state.mail_events.as_deref() else {
        counted("not_configured");
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_configured",
            "mail events are not set up on this server".into(),
        );
    };
    let Some(key) = endpoint
        .key
        .as_ref()
        .filter(|k| !k.expose_secret().is_empty())
    else {
        counted("not_configured");
        tracing::warn!("Mandrill events refused: mail.events_key is not set");
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_configured",
            "mail.events_key is not set (LAZONA_MAIL__EVENTS_KEY): set it to the key Mandrill \
             shows for this webhook"
                .into(),
        );
    };
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            counted("unreadable");
            return error(rejection.status(), "unreadable_body", rejection.body_text());
        }
    };
    let params: Vec<(String, String)> = form_urlencoded::parse(&body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let url = signed_url(endpoint.url.as_deref(), &headers, &uri);
    let presented = headers
        .get(mandrill::SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if presented.is_empty() {
        counted("missing_signature");
        return error(
            StatusCode::UNAUTHORIZED,
            "missing_signature",
            "no X-Mandrill-Signature header".into(),
        );
    }
    if !mandrill::verify(key.expose_secret(), &url, &params, presented) {
        counted("invalid_signature");
        tracing::warn!(
            %url,
            "Mandrill events refused: the signature does not match (a wrong mail.events_key, \
             or Mandrill signed another URL: set mail.events_url to the webhook's URL)"
        );
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
            format!(
                "X-Mandrill-Signature does not match this delivery signed for {url} with \
                 mail.events_key"
            ),
        );
    }
    let field = params
        .iter()
        .find(|(k, _)| k == mandrill::EVENTS_FIELD)
        .map(|(_, v)| v.as_str());
    let read = match field {
        Some(field) => mandrill::events(field).map_err(|e| (field.to_owned(), e)),
        None => Err((
            String::from_utf8_lossy(&body).into_owned(),
            format!("no {} field", mandrill::EVENTS_FIELD),
        )),
    };
    let events = match read {
        Ok(events) => events,
        Err((raw, why)) => {
            counted("malformed");
            return match endpoint
                .tracking
                .malformed(mandrill::PROVIDER, raw, &why)
                .await
            {
                Ok(id) => (
                    StatusCode::BAD_REQUEST,
                    axum::Json(json!({ "error": {
                        "code": "invalid_payload",
                        "message": why,
                        "mail_event_id": id,
                    }})),
                )
                    .into_response(),
                Err(e) => error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage_unavailable",
                    format!(
                        "storage unavailable, nothing was stored: {}",
                        error_chain(&e)
                    ),
                ),
            };
        }
    };
    match endpoint.tracking.receive(events).await {
        Ok(received) => {
            counted("received");
            (StatusCode::OK, axum::Json(received)).into_response()
        }
        Err(e) => {
            counted("unavailable");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                format!(
                    "storage unavailable, the events were not all taken: {}",
                    error_chain(&e)
                ),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signed_url_is_the_configured_one_or_the_requests_own() {
        let uri: Uri = "/api/mail-events/mandrill?x=1".parse().expect("uri");
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("lazona.example"));
        assert_eq!(
            signed_url(None, &headers, &uri),
            "http://lazona.example/api/mail-events/mandrill?x=1"
        );
        headers.insert("x-forwarded-proto", HeaderValue::from_static("https, http"));
        assert_eq!(
            signed_url(None, &headers, &uri),
            "https://lazona.example/api/mail-events/mandrill?x=1"
        );
        assert_eq!(
            signed_url(Some("https://a.example/hook"), &headers, &uri),
            "https://a.example/hook"
        );
    }
}
