//! A webhook as WooCommerce delivered it: headers, the exact body bytes and what became of it.

use super::retention::Pruned;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The inbox's identifier of a stored webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WebhookId(pub i64);

impl fmt::Display for WebhookId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Which endpoint received the webhook, and so which kind of resource its body describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resource {
    /// A WooCommerce order (`POST /api/deliveries/`).
    Order,
    /// A WooCommerce customer (`POST /api/customers/`).
    Customer,
}

impl Resource {
    /// The lowercase name WooCommerce uses in `X-WC-Webhook-Resource`.
    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Order => "order",
            Resource::Customer => "customer",
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Resource {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "order" => Ok(Resource::Order),
            "customer" => Ok(Resource::Customer),
            other => Err(format!("unknown resource {other:?}")),
        }
    }
}

/// Where a stored webhook stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookStatus {
    /// Stored and its job enqueued; not processed yet.
    Queued,
    /// Its job ran to the end.
    Processed,
    /// Its job failed for good (see the error).
    Failed,
    /// Refused at the door (not JSON, no `id`, ...): kept for inspection, no job.
    Rejected,
    /// Signed and valid, but nothing for the connector to do (for example another topic).
    Ignored,
}

impl WebhookStatus {
    /// Every status, in a stable order.
    pub const ALL: [WebhookStatus; 5] = [
        WebhookStatus::Queued,
        WebhookStatus::Processed,
        WebhookStatus::Failed,
        WebhookStatus::Rejected,
        WebhookStatus::Ignored,
    ];

    /// The name stored in the database and shown to operators.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookStatus::Queued => "queued",
            WebhookStatus::Processed => "processed",
            WebhookStatus::Failed => "failed",
            WebhookStatus::Rejected => "rejected",
            WebhookStatus::Ignored => "ignored",
        }
    }
}

impl fmt::Display for WebhookStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for WebhookStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown webhook status {s:?}"))
    }
}

/// The header that carries a request's id (`lazona-http` sets it on every request it receives,
/// so it is stored among a webhook's [`NewWebhook::headers`] and its job's log lines carry it).
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The longest request id kept from a client.
pub const REQUEST_ID_MAX_LEN: usize = 128;

/// Whether `value` is a request id worth logging: 1 to [`REQUEST_ID_MAX_LEN`] bytes of visible
/// ASCII (no spaces, no control characters), so that it cannot forge a log line or swell one.
pub fn is_request_id(value: &[u8]) -> bool {
    (1..=REQUEST_ID_MAX_LEN).contains(&value.len()) && value.iter().all(u8::is_ascii_graphic)
}

/// A webhook about to be written to the inbox.
#[derive(Clone, PartialEq)]
pub struct NewWebhook {
    /// The endpoint that received it.
    pub resource: Resource,
    /// `X-WC-Webhook-Topic`, for example `order.created`.
    pub topic: Option<String>,
    /// `X-WC-Webhook-Event`, for example `created`.
    pub event: Option<String>,
    /// `X-WC-Webhook-Delivery-ID`. Not unique on its own: WooCommerce derives it from the
    /// webhook's id and the current second, so two deliveries in one second share it (see
    /// [`NewWebhook::dedupe_key`]).
    pub delivery_id: Option<String>,
    /// `X-WC-Webhook-ID`: WooCommerce's id of the webhook configuration.
    pub wc_webhook_id: Option<i64>,
    /// `X-WC-Webhook-Source`: the shop's URL.
    pub source: Option<String>,
    /// The resource id found in the body (the order id or customer id), when there is one.
    pub subject_id: Option<i64>,
    /// For an order, when the shop last modified it (its `date_modified_gmt`): the
    /// reconciliation compares it with the shop's listing.
    pub subject_modified: Option<DateTime<Utc>>,
    /// The request headers worth keeping (all but cookies and authorisation).
    pub headers: Vec<(String, String)>,
    /// The body exactly as received: its signature is over these bytes.
    pub body: Bytes,
    /// When the connector received it.
    pub received_at: DateTime<Utc>,
    /// `Queued` (a job is enqueued with it), `Rejected` or `Ignored`.
    pub status: WebhookStatus,
    /// Why it was rejected or ignored.
    pub error: Option<String>,
}

impl fmt::Debug for NewWebhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The body holds personal data: only its size is printed.
        f.debug_struct("NewWebhook")
            .field("resource", &self.resource)
            .field("topic", &self.topic)
            .field("delivery_id", &self.delivery_id)
            .field("subject_id", &self.subject_id)
            .field("body_len", &self.body.len())
            .field("status", &self.status)
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl NewWebhook {
    /// The id of the request that delivered it (its [`REQUEST_ID_HEADER`], when that is a
    /// sane one: [`is_request_id`]), to follow it from the request to its job in the logs.
    pub fn request_id(&self) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(REQUEST_ID_HEADER))
            .map(|(_, v)| v.as_str())
            .filter(|v| is_request_id(v.as_bytes()))
    }

    /// The inbox's deduplication key: the SHA-256 of the delivery id, the endpoint, the topic and
    /// the exact body, its first 128 bits in hex (as short as WooCommerce's own 32-digit ids, so
    /// the unique index is no larger than before); `None` when WooCommerce sent no delivery id
    /// (then every copy is kept).
    ///
    /// The delivery id alone is not enough: WooCommerce computes it as
    /// `wp_hash($webhook_id . strtotime('now'))` (`WC_Webhook::get_new_delivery_id`), with a
    /// resolution of one second, so two orders delivered by one webhook within the same second
    /// share it. A true redelivery (the same delivery, the same bytes) has the same key and is a
    /// duplicate; the same id with another body is another webhook. Hashing also bounds the
    /// key's size whatever a client sends in the header.
    pub fn dedupe_key(&self) -> Option<String> {
        use sha2::{Digest as _, Sha256};
        let delivery_id = self.delivery_id.as_deref()?;
        let mut hash = Sha256::new();
        for part in [
            delivery_id.as_bytes(),
            self.resource.as_str().as_bytes(),
            self.topic.as_deref().unwrap_or_default().as_bytes(),
        ] {
            // Each part's length first, so that no two different triples hash the same bytes.
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part);
        }
        hash.update(&self.body);
        let digest = hash.finalize();
        let mut key = String::with_capacity(3 + 32);
        key.push_str("wc:");
        for b in &digest[..16] {
            key.push(char::from(HEX[usize::from(b >> 4)]));
            key.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        Some(key)
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// What the inbox did with a [`NewWebhook`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordOutcome {
    /// Stored now (and its job enqueued when its status is `Queued`).
    Stored,
    /// The same delivery (the same [`NewWebhook::dedupe_key`]: delivery id, endpoint, topic and
    /// body) was already stored: nothing was written.
    Duplicate,
}

/// The inbox's answer to a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    /// The stored webhook (the earlier one, for a duplicate).
    pub id: WebhookId,
    /// Whether it was stored now or was already there.
    pub outcome: RecordOutcome,
}

/// A stored webhook.
#[derive(Clone, PartialEq)]
pub struct Webhook {
    /// Its inbox id.
    pub id: WebhookId,
    /// Everything it was stored with.
    pub data: NewWebhook,
    /// The last error met while processing it.
    pub last_error: Option<String>,
    /// When its processing ended.
    pub processed_at: Option<DateTime<Utc>>,
    /// When its body and headers were cleared, and why (then `data.body` is empty):
    /// [`crate::model::retention`].
    pub pruned: Option<Pruned>,
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook")
            .field("id", &self.id)
            .field("data", &self.data)
            .field("last_error", &self.last_error)
            .field("processed_at", &self.processed_at)
            .field("pruned", &self.pruned)
            .finish()
    }
}

/// One line of a listing: a stored webhook without its body.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WebhookSummary {
    /// Its inbox id.
    pub id: WebhookId,
    /// The endpoint that received it.
    pub resource: Resource,
    /// Its topic, when WooCommerce sent one.
    pub topic: Option<String>,
    /// Its delivery id, when WooCommerce sent one.
    pub delivery_id: Option<String>,
    /// The order or customer id in its body.
    pub subject_id: Option<i64>,
    /// Where it stands.
    pub status: WebhookStatus,
    /// When it was received.
    pub received_at: DateTime<Utc>,
    /// The last error or rejection reason.
    pub error: Option<String>,
    /// When its body and headers were cleared, and why; absent while they are kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pruned: Option<Pruned>,
}

/// Filters for listing the inbox; `None` means "any".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WebhookFilter {
    /// Only this endpoint.
    pub resource: Option<Resource>,
    /// Only this topic.
    pub topic: Option<String>,
    /// Only this status.
    pub status: Option<WebhookStatus>,
    /// Only this order or customer id.
    pub subject_id: Option<i64>,
    /// Only this delivery id.
    pub delivery_id: Option<String>,
    /// Received at or after.
    pub since: Option<DateTime<Utc>>,
    /// Received before.
    pub until: Option<DateTime<Utc>>,
    /// Only ids below this one (pagination, newest first).
    pub before_id: Option<WebhookId>,
    /// At most this many rows.
    pub limit: u64,
}

/// One step of a webhook's processing history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebhookEvent {
    /// When it happened.
    pub at: DateTime<Utc>,
    /// The status the webhook moved to.
    pub status: WebhookStatus,
    /// The error or note recorded with it.
    pub detail: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(id: Option<&str>, topic: &str, body: &str) -> NewWebhook {
        NewWebhook {
            resource: Resource::Order,
            topic: Some(topic.to_owned()),
            event: None,
            delivery_id: id.map(str::to_owned),
            wc_webhook_id: Some(3),
            source: None,
            subject_id: None,
            subject_modified: None,
            headers: Vec::new(),
            body: Bytes::from(body.to_owned()),
            received_at: Utc::now(),
            status: WebhookStatus::Queued,
            error: None,
        }
    }

    #[test]
    fn one_delivery_id_in_one_second_for_two_orders_gives_two_keys() {
        let a = delivery(Some("same"), "order.created", r#"{"id":5001}"#);
        let b = delivery(Some("same"), "order.created", r#"{"id":5002}"#);
        assert_ne!(a.dedupe_key(), b.dedupe_key());
        let updated = delivery(Some("same"), "order.updated", r#"{"id":5001}"#);
        assert_ne!(a.dedupe_key(), updated.dedupe_key());
    }

    #[test]
    fn a_true_redelivery_has_the_same_key_whatever_else_differs() {
        let a = delivery(Some("same"), "order.created", r#"{"id":5001}"#);
        let mut again = a.clone();
        again.received_at += chrono::Duration::seconds(30);
        again
            .headers
            .push(("x-forwarded-for".into(), "10.0.0.1".into()));
        assert_eq!(a.dedupe_key(), again.dedupe_key());
        let key = a.dedupe_key().expect("a key");
        assert!(key.starts_with("wc:") && key.len() == 35, "{key}");
    }

    #[test]
    fn the_request_id_is_read_from_the_headers_when_it_is_sane() {
        let mut w = delivery(Some("a"), "order.created", "{}");
        assert_eq!(w.request_id(), None);
        w.headers.push(("x-request-id".into(), "req 1".into()));
        assert_eq!(w.request_id(), None, "a space is not kept");
        w.headers.clear();
        w.headers
            .push(("x-request-id".into(), "test-req-42".into()));
        assert_eq!(w.request_id(), Some("test-req-42"));
        assert!(!is_request_id(b""));
        assert!(!is_request_id("é".as_bytes()));
        assert!(!is_request_id(b"a\nb"));
        assert!(is_request_id(&[b'x'; REQUEST_ID_MAX_LEN]));
        assert!(!is_request_id(&[b'x'; REQUEST_ID_MAX_LEN + 1]));
    }

    #[test]
    fn no_delivery_id_no_key_and_the_key_is_bounded() {
        assert_eq!(delivery(None, "order.created", "{}").dedupe_key(), None);
        let long = "x".repeat(100_000);
        assert_eq!(
            delivery(Some(&long), "order.created", "{}")
                .dedupe_key()
                .expect("a key")
                .len(),
            35
        );
    }
}
