//! The intake decision (`domain::service::intake::intake`) on any headers and body, for both
//! endpoints, with and without a secret.
//!
//! The input is one length byte `n`, then `n` bytes from which `arbitrary` builds the request
//! (endpoint, secret, signature, topic, other headers), then the body: a seed is `[0]` followed by
//! an order's JSON (the order endpoint, signed, no topic) or `[1, 1]` followed by a customer's.
//!
//! Besides never panicking, the decision must agree with the request and with processing:
//! - only a request signed with the configured secret is stored (accepted or rejected), byte for
//!   byte, with the same endpoint, without `authorization` or `cookie`, and with a status and an
//!   error that match the decision; a request whose signatures all verify is stored;
//! - without a secret nothing is stored; the ping is only `webhook_id=N`;
//! - a queued webhook's body parses with the parser processing runs, as the subject intake
//!   recorded (and, for a customer, with an e-mail): intake must not queue what processing will
//!   fail;
//! - an order that the processing parser reads is never refused at the door, nor a customer that
//!   it reads with an e-mail.

#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use chrono::DateTime;
use domain::model::{Resource, WebhookStatus};
use domain::service::intake::{AuthFailure, Intake, header, intake};
use domain::service::signature::WebhookSecret;
use lazona_fuzz::{processing_customer, processing_order};
use libfuzzer_sys::fuzz_target;

/// The request, as `arbitrary` builds it. Every field's first variant (or `false`) is what an
/// empty description gives: the order endpoint, the first secret, a valid signature, no topic.
#[derive(Arbitrary, Debug)]
struct Request<'a> {
    customer: bool,
    no_secret: bool,
    secret: Secret,
    signature: Signature<'a>,
    /// Where the signature header goes among the others (modulo their count plus one).
    signature_at: u8,
    topic: Topic<'a>,
    headers: Vec<(Name<'a>, &'a str)>,
}

/// Secrets as configured; their content matters little here (the signature target takes any).
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Secret {
    Plain,
    Empty,
    Entities,
    Unicode,
}

impl Secret {
    fn text(self) -> &'static str {
        match self {
            Secret::Plain => "s3cret",
            Secret::Empty => "",
            Secret::Entities => "a&amp;b&#039;c&lt;",
            Secret::Unicode => "clau secreta àéïõü ✓",
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Signature<'a> {
    /// The body signed with the secret (or with `s3cret` when there is none).
    Valid,
    /// No signature header.
    Missing,
    /// The right signature with a header's surrounding whitespace.
    Padded,
    /// A signature of another body.
    OtherBody,
    /// Signed with another secret.
    OtherSecret,
    /// An empty header.
    Empty,
    /// Any value.
    Given(&'a str),
}

#[derive(Arbitrary, Debug)]
enum Topic<'a> {
    None,
    Created,
    Updated,
    Deleted,
    /// The other endpoint's resource, `created`.
    OtherResource,
    Product,
    Given(&'a str),
}

#[derive(Arbitrary, Debug)]
enum Name<'a> {
    Signature,
    Topic,
    Resource,
    Event,
    DeliveryId,
    WebhookId,
    Source,
    Authorization,
    Cookie,
    ContentType,
    /// Any name; lowercased as the HTTP layer gives them.
    Given(&'a str),
}

impl Name<'_> {
    fn lowercase(&self) -> String {
        match self {
            Name::Signature => header::SIGNATURE.to_owned(),
            Name::Topic => header::TOPIC.to_owned(),
            Name::Resource => header::RESOURCE.to_owned(),
            Name::Event => header::EVENT.to_owned(),
            Name::DeliveryId => header::DELIVERY_ID.to_owned(),
            Name::WebhookId => header::WEBHOOK_ID.to_owned(),
            Name::Source => header::SOURCE.to_owned(),
            Name::Authorization => "authorization".to_owned(),
            Name::Cookie => "cookie".to_owned(),
            Name::ContentType => "content-type".to_owned(),
            Name::Given(name) => name.to_ascii_lowercase(),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let (description, body) = rest.split_at(usize::from(n).min(rest.len()));
    let Ok(request) = Request::arbitrary_take_rest(Unstructured::new(description)) else {
        return;
    };
    check(&request, body);
});

fn check(request: &Request<'_>, body: &[u8]) {
    let resource = if request.customer {
        Resource::Customer
    } else {
        Resource::Order
    };
    let configured = WebhookSecret::new(request.secret.text());
    let secret = (!request.no_secret).then_some(&configured);
    let signer = secret
        .cloned()
        .unwrap_or_else(|| WebhookSecret::new("s3cret"));

    let mut headers: Vec<(String, String)> = request
        .headers
        .iter()
        .map(|(name, value)| (name.lowercase(), (*value).to_owned()))
        .collect();
    let topic = match &request.topic {
        Topic::None => None,
        Topic::Created => Some(format!("{resource}.created")),
        Topic::Updated => Some(format!("{resource}.updated")),
        Topic::Deleted => Some(format!("{resource}.deleted")),
        Topic::OtherResource => Some(match resource {
            Resource::Order => "customer.created".to_owned(),
            Resource::Customer => "order.created".to_owned(),
        }),
        Topic::Product => Some("product.updated".to_owned()),
        Topic::Given(t) => Some((*t).to_owned()),
    };
    if let Some(topic) = topic {
        headers.insert(0, (header::TOPIC.to_owned(), topic));
    }
    let signature = match &request.signature {
        Signature::Valid => Some(signer.sign(body)),
        Signature::Missing => None,
        Signature::Padded => Some(format!(" {}\t", signer.sign(body))),
        Signature::OtherBody => Some(signer.sign(&[body, b" "].concat())),
        Signature::OtherSecret => Some(WebhookSecret::new("another").sign(body)),
        Signature::Empty => Some(String::new()),
        Signature::Given(s) => Some((*s).to_owned()),
    };
    if let Some(signature) = signature {
        let at = usize::from(request.signature_at) % (headers.len() + 1);
        headers.insert(at, (header::SIGNATURE.to_owned(), signature));
    }

    let received_at = DateTime::from_timestamp(1_700_000_000, 0).expect("a valid time");
    let decision = intake(
        resource,
        &headers,
        Bytes::copy_from_slice(body),
        secret,
        received_at,
    );

    let signatures: Vec<&str> = headers
        .iter()
        .filter(|(k, _)| k == header::SIGNATURE)
        .map(|(_, v)| v.as_str())
        .collect();
    let verifies = |s: &WebhookSecret, v: &str| s.verify(body, v);

    // With a secret, a request whose every signature verifies is stored.
    if let Some(secret) = secret
        && !signatures.is_empty()
        && signatures.iter().all(|v| verifies(secret, v))
    {
        assert!(
            matches!(decision, Intake::Accept(_) | Intake::Reject(..)),
            "a correctly signed request was not stored: {decision:?}"
        );
    }

    match &decision {
        Intake::Ping { webhook_id } => {
            let text = std::str::from_utf8(body).expect("a ping is text").trim();
            let id = text.strip_prefix("webhook_id=").map(str::parse::<i64>);
            assert_eq!(id, Some(Ok(*webhook_id)), "a ping that is not webhook_id=N");
        }
        Intake::Unauthenticated(AuthFailure::MissingSignature) => {}
        Intake::Unauthenticated(AuthFailure::InvalidSignature) => {
            let secret = secret.expect("a signature checked without a secret");
            assert!(
                signatures
                    .iter()
                    .any(|v| !v.is_empty() && !verifies(secret, v)),
                "refused as invalid, but every signature verifies"
            );
        }
        Intake::Unconfigured => {
            assert!(secret.is_none(), "unconfigured with a secret");
            assert!(
                signatures.iter().any(|v| !v.is_empty()),
                "unconfigured, but not signed"
            );
        }
        Intake::Accept(webhook) | Intake::Reject(webhook, _) => {
            let secret = secret.expect("stored without a secret");
            assert!(
                signatures.iter().any(|v| verifies(secret, v)),
                "stored, but no signature verifies"
            );
            assert_eq!(
                &webhook.body[..],
                body,
                "the body is not stored byte for byte"
            );
            assert_eq!(webhook.resource, resource);
            assert_eq!(webhook.received_at, received_at);
            assert!(
                webhook
                    .headers
                    .iter()
                    .all(|(k, _)| k != "authorization" && k != "cookie"),
                "credentials stored"
            );
            assert!(
                webhook.headers.iter().all(|h| headers.contains(h)),
                "a header that was not sent is stored"
            );
            match &decision {
                Intake::Reject(_, rejection) => {
                    assert_eq!(webhook.status, WebhookStatus::Rejected);
                    assert!(webhook.error.is_some(), "a rejection without its error");
                    never_refuses_what_processing_reads(resource, body, &rejection.message);
                }
                _ => match webhook.status {
                    WebhookStatus::Queued => {
                        assert!(webhook.error.is_none(), "queued with an error");
                        queued_parses_for_processing(resource, body, webhook.subject_id);
                    }
                    WebhookStatus::Ignored => {
                        assert!(webhook.error.is_some(), "ignored without a reason");
                    }
                    other => panic!("accepted as {other:?}"),
                },
            }
        }
    }
}

/// A queued webhook is processed with the processing parser: it must parse, as the same subject.
fn queued_parses_for_processing(resource: Resource, body: &[u8], subject_id: Option<i64>) {
    let text = String::from_utf8_lossy(body);
    match resource {
        Resource::Order => match processing_order(body) {
            Ok(order) => assert_eq!(
                subject_id,
                Some(order.id),
                "queued as another order than processing reads: {text}"
            ),
            Err(e) => panic!("intake queued an order that processing cannot parse ({e}): {text}"),
        },
        Resource::Customer => match processing_customer(body) {
            Ok(customer) => {
                assert_eq!(
                    subject_id,
                    Some(customer.id),
                    "queued as another customer than processing reads: {text}"
                );
                assert!(
                    !customer.email.trim().is_empty(),
                    "queued a customer without an e-mail: {text}"
                );
            }
            Err(e) => {
                panic!("intake queued a customer that processing cannot parse ({e}): {text}")
            }
        },
    }
}

/// What processing reads is not refused at the door: an order, a customer with an e-mail.
fn never_refuses_what_processing_reads(resource: Resource, body: &[u8], why: &str) {
    let text = String::from_utf8_lossy(body);
    match resource {
        Resource::Order => {
            if processing_order(body).is_ok() {
                panic!("intake refused an order that processing reads ({why}): {text}");
            }
        }
        Resource::Customer => {
            if processing_customer(body).is_ok_and(|c| !c.email.trim().is_empty()) {
                panic!("intake refused a customer that processing reads ({why}): {text}");
            }
        }
    }
}
