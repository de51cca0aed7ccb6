//! Webhook intake: decides, from the endpoint, the headers and the raw body, whether a request is
//! WooCommerce's creation ping, an unauthenticated attempt, or a webhook to store (queued for
//! processing, rejected for bad data, or ignored).
//!
//! A webhook is accepted when its body parses as its resource with the very function processing
//! uses ([`crate::model::payload::parse`]): a UTF-8 JSON object with an integer `id` (a string
//! holding one is an id), a customer's non-empty `email`, and fields of a plausible type. So
//! what is acknowledged can be processed, and what could not be is refused now (400, kept as
//! rejected) rather than dead-lettered later. That parser is lenient: field lengths and odd
//! values are never a reason to refuse a real order (the original answered 400 to long notes,
//! odd postcodes and array meta values, and WooCommerce disabled the webhook after five of those).

use super::signature::WebhookSecret;
use crate::model::payload::{self, PayloadError};
use crate::model::{NewWebhook, Resource, WebhookStatus};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Deserialize;

/// Header names (lowercase) WooCommerce sends with a delivery.
pub mod header {
    /// base64 HMAC-SHA256 of the body.
    pub const SIGNATURE: &str = "x-wc-webhook-signature";
    /// `order.created`, ...
    pub const TOPIC: &str = "x-wc-webhook-topic";
    /// `order`, ...
    pub const RESOURCE: &str = "x-wc-webhook-resource";
    /// `created`, ...
    pub const EVENT: &str = "x-wc-webhook-event";
    /// Unique per delivery.
    pub const DELIVERY_ID: &str = "x-wc-webhook-delivery-id";
    /// WooCommerce's id of the webhook configuration.
    pub const WEBHOOK_ID: &str = "x-wc-webhook-id";
    /// The shop's URL.
    pub const SOURCE: &str = "x-wc-webhook-source";
}

/// Why a request was not authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No `X-WC-Webhook-Signature` header.
    MissingSignature,
    /// A signature that does not match the body.
    InvalidSignature,
}

/// Why a signed webhook was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The body field at fault (a path such as `line_items[0].quantity`), when one is.
    pub field: Option<String>,
    /// What is wrong, for the sender and the operator.
    pub message: String,
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Intake {
    /// WooCommerce's unsigned creation ping (`webhook_id=N`): answer exactly 200.
    Ping {
        /// The webhook id in the ping.
        webhook_id: i64,
    },
    /// Not authenticated: store nothing, answer 401.
    Unauthenticated(AuthFailure),
    /// Signed, but no secret is configured to check it: store nothing, answer 503.
    Unconfigured,
    /// Store it with its status `Queued` (enqueue its job) or `Ignored`, and acknowledge it.
    Accept(NewWebhook),
    /// Store it with the status `Rejected` so an operator can see it, and answer 400.
    Reject(NewWebhook, Rejection),
}

/// Classifies a request to the endpoint for `resource`. `headers` have lowercase names.
pub fn intake(
    resource: Resource,
    headers: &[(String, String)],
    body: Bytes,
    secret: Option<&WebhookSecret>,
    received_at: DateTime<Utc>,
) -> Intake {
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };

    let Some(signature) = get(header::SIGNATURE) else {
        if get(header::TOPIC).is_none()
            && let Some(webhook_id) = parse_ping(&body)
        {
            return Intake::Ping { webhook_id };
        }
        return Intake::Unauthenticated(AuthFailure::MissingSignature);
    };
    let Some(secret) = secret else {
        return Intake::Unconfigured;
    };
    if !secret.verify(&body, signature) {
        return Intake::Unauthenticated(AuthFailure::InvalidSignature);
    }
    classify(resource, headers, body, received_at)
}

/// Classifies a body the connector trusts already (signed, or read from the shop by the
/// reconciliation) exactly as [`intake`] classifies a signed request: `Accept` (queued, or
/// ignored for another topic or a deletion) or `Reject`. `headers` have lowercase names.
pub fn classify(
    resource: Resource,
    headers: &[(String, String)],
    body: Bytes,
    received_at: DateTime<Utc>,
) -> Intake {
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let topic = get(header::TOPIC).map(str::to_owned);
    let mut webhook = NewWebhook {
        resource,
        event: get(header::EVENT).map(str::to_owned).or_else(|| {
            topic
                .as_deref()
                .and_then(|t| t.split_once('.'))
                .map(|(_, e)| e.to_owned())
        }),
        topic,
        delivery_id: get(header::DELIVERY_ID).map(str::to_owned),
        wc_webhook_id: get(header::WEBHOOK_ID).and_then(|v| v.trim().parse().ok()),
        source: get(header::SOURCE).map(str::to_owned),
        subject_id: None,
        subject_modified: None,
        headers: headers
            .iter()
            .filter(|(k, _)| k != "authorization" && k != "cookie")
            .cloned()
            .collect(),
        body,
        received_at,
        status: WebhookStatus::Queued,
        error: None,
    };

    // A topic of another resource posted here (say `product.updated` to the order endpoint) is
    // the shop's configuration error, not the payload's: keep it, acknowledge it, do nothing. A
    // deletion needs nothing either. Their bodies need only be JSON objects.
    let topic_resource = webhook
        .topic
        .as_deref()
        .map(|t| t.split('.').next().unwrap_or_default());
    let ignored = match (topic_resource, webhook.event.as_deref()) {
        (Some(other), _) if other != resource.as_str() => Some(format!(
            "topic {:?} is not handled by the {resource} endpoint",
            webhook.topic.as_deref().unwrap_or_default()
        )),
        (_, Some("deleted")) => Some("deleted: nothing to do".to_owned()),
        _ => None,
    };
    if let Some(reason) = ignored {
        return match payload::parse_as::<IdProbe>(&webhook.body) {
            Ok(probe) => {
                webhook.subject_id = probe.id();
                ignore(webhook, reason)
            }
            Err(e) => reject(webhook, e.into()),
        };
    }

    // What processing will parse, parsed here by the same function: what is acknowledged can
    // be processed, and what cannot is refused now (400) and kept as rejected.
    match payload::subject(resource, &webhook.body) {
        Ok(subject) => {
            webhook.subject_id = Some(subject.id);
            webhook.subject_modified = subject.modified;
            Intake::Accept(webhook)
        }
        Err(e) => {
            // The id still names the order for an operator, when it can be read.
            webhook.subject_id = serde_json::from_slice::<IdProbe>(&webhook.body)
                .ok()
                .and_then(|p| p.id());
            reject(webhook, e.into())
        }
    }
}

impl From<PayloadError> for Rejection {
    fn from(e: PayloadError) -> Self {
        Rejection {
            field: e.field,
            message: e.message,
        }
    }
}

fn reject(mut webhook: NewWebhook, rejection: Rejection) -> Intake {
    webhook.status = WebhookStatus::Rejected;
    webhook.error = Some(match &rejection.field {
        Some(field) => format!("{field}: {}", rejection.message),
        None => rejection.message.clone(),
    });
    Intake::Reject(webhook, rejection)
}

fn ignore(mut webhook: NewWebhook, reason: String) -> Intake {
    webhook.status = WebhookStatus::Ignored;
    webhook.error = Some(reason);
    Intake::Accept(webhook)
}

/// `webhook_id=N`, WooCommerce's ping body (form-encoded, maybe with a trailing newline).
fn parse_ping(body: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(body).ok()?.trim();
    let value = text.strip_prefix("webhook_id=")?;
    value.parse().ok()
}

/// The `id` of a body that need not be an order or a customer (an ignored topic), when it has
/// one that reads as an integer.
#[derive(Deserialize)]
struct IdProbe {
    #[serde(default)]
    id: Option<serde_json::Value>,
}

impl IdProbe {
    fn id(&self) -> Option<i64> {
        match self.id.as_ref()? {
            serde_json::Value::Number(n) => n.as_i64(),
            serde_json::Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> WebhookSecret {
        WebhookSecret::new("s3cret")
    }

    fn signed(body: &str, topic: Option<&str>) -> Vec<(String, String)> {
        let mut h = vec![
            (header::SIGNATURE.to_owned(), secret().sign(body.as_bytes())),
            (header::DELIVERY_ID.to_owned(), "d-1".to_owned()),
            ("cookie".to_owned(), "x".to_owned()),
        ];
        if let Some(t) = topic {
            h.push((header::TOPIC.to_owned(), t.to_owned()));
        }
        h
    }

    fn run(resource: Resource, body: &str, headers: &[(String, String)]) -> Intake {
        intake(
            resource,
            headers,
            Bytes::from(body.to_owned()),
            Some(&secret()),
            Utc::now(),
        )
    }

    #[test]
    fn the_creation_ping_is_recognised_only_unsigned_and_without_topic() {
        assert_eq!(
            run(Resource::Order, "webhook_id=12", &[]),
            Intake::Ping { webhook_id: 12 }
        );
        assert_eq!(
            run(Resource::Order, "webhook_id=x", &[]),
            Intake::Unauthenticated(AuthFailure::MissingSignature)
        );
        let topic = vec![(header::TOPIC.to_owned(), "order.created".to_owned())];
        assert_eq!(
            run(Resource::Order, "webhook_id=12", &topic),
            Intake::Unauthenticated(AuthFailure::MissingSignature)
        );
    }

    #[test]
    fn without_a_secret_signed_requests_are_unconfigured_but_the_ping_works() {
        let body = r#"{"id":1}"#;
        let h = signed(body, None);
        assert_eq!(
            intake(Resource::Order, &h, Bytes::from(body), None, Utc::now()),
            Intake::Unconfigured
        );
        assert_eq!(
            intake(
                Resource::Order,
                &[],
                Bytes::from("webhook_id=3"),
                None,
                Utc::now()
            ),
            Intake::Ping { webhook_id: 3 }
        );
    }

    #[test]
    fn a_bad_signature_is_refused() {
        let mut h = signed("{}", None);
        h[0].1 = secret().sign(b"other");
        assert_eq!(
            run(Resource::Order, r#"{"id":1}"#, &h),
            Intake::Unauthenticated(AuthFailure::InvalidSignature)
        );
    }

    #[test]
    fn a_signed_order_is_queued_with_its_metadata_and_without_cookies() {
        let body = r#"{"id": 33, "customer_note": "a note well over a hundred characters ............................................................"}"#;
        let Intake::Accept(w) = run(Resource::Order, body, &signed(body, Some("order.created")))
        else {
            panic!("accepted expected");
        };
        assert_eq!(w.status, WebhookStatus::Queued);
        assert_eq!(w.subject_id, Some(33));
        assert_eq!(w.topic.as_deref(), Some("order.created"));
        assert_eq!(w.event.as_deref(), Some("created"));
        assert_eq!(w.delivery_id.as_deref(), Some("d-1"));
        assert!(w.headers.iter().all(|(k, _)| k != "cookie"));
        assert_eq!(&w.body[..], body.as_bytes());
    }

    #[test]
    fn bad_bodies_are_rejected_with_a_field_and_kept() {
        let cases = [
            ("not json", None, "not JSON"),
            ("[1,2]", None, "not an object"),
            ("", None, "empty"),
            (r#"{"id": 1"#, None, "not valid JSON"),
            (r#"{"order_key": "x"}"#, Some("id"), "required"),
            (r#"{"id": "abc"}"#, Some("id"), "integer"),
            (r#"{"id": [1]}"#, Some("id"), "integer"),
        ];
        for (body, field, words) in cases {
            match run(Resource::Order, body, &signed(body, None)) {
                Intake::Reject(w, r) => {
                    assert_eq!(r.field.as_deref(), field, "case {body:?}");
                    assert!(r.message.contains(words), "case {body:?}: {}", r.message);
                    assert_eq!(w.status, WebhookStatus::Rejected, "case {body:?}");
                    assert!(w.error.is_some(), "case {body:?}");
                }
                other => panic!("case {body:?}: rejection expected, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_string_id_is_accepted_as_the_original_did() {
        let body = r#"{"id": "42"}"#;
        let Intake::Accept(w) = run(Resource::Order, body, &signed(body, None)) else {
            panic!("accepted expected");
        };
        assert_eq!(w.subject_id, Some(42));
    }

    #[test]
    fn customers_need_an_email() {
        let body = r#"{"id": 1, "email": ""}"#;
        let Intake::Reject(_, r) = run(Resource::Customer, body, &signed(body, None)) else {
            panic!("rejection expected");
        };
        assert_eq!(r.field.as_deref(), Some("email"));
        let body =
            r#"{"id":1,"email":"partner@email.com","username":"test.test","role":"customer"}"#;
        assert!(matches!(
            run(Resource::Customer, body, &signed(body, Some("customer.created"))),
            Intake::Accept(w) if w.status == WebhookStatus::Queued
        ));
    }

    #[test]
    fn other_topics_and_deletions_are_kept_but_ignored() {
        for (resource, topic) in [
            (Resource::Order, "product.updated"),
            (Resource::Order, "order.deleted"),
            (Resource::Customer, "customer.deleted"),
        ] {
            let body = r#"{"id": 5}"#;
            match run(resource, body, &signed(body, Some(topic))) {
                Intake::Accept(w) => assert_eq!(w.status, WebhookStatus::Ignored, "{topic}"),
                other => panic!("{topic}: {other:?}"),
            }
        }
    }
}
