//! Ingesting one webhook request: the signature checked, the body classified by
//! [`domain::service::intake`], and the webhook written to the inbox with its job in one
//! transaction. `lazona-http`'s endpoints and [`crate::Connector::ingest`] both go through
//! [`ingest`], so an embedded connector accepts, refuses and deduplicates exactly as the server
//! does.

use bytes::Bytes;
use domain::error::{InboxError, error_chain};
use domain::model::{RecordOutcome, Resource, WebhookId, WebhookStatus};
use domain::ports::WebhookInbox;
use domain::service::intake::{AuthFailure, Intake, intake};
use domain::service::signature::WebhookSecret;
use std::time::Duration;

/// What became of an ingested request that was not refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestOutcome {
    /// WooCommerce's unsigned creation ping (`webhook_id=N`): nothing stored (`lazona-http`
    /// answers 200).
    Ping {
        /// WooCommerce's id of the webhook configuration, from the ping.
        wc_webhook_id: i64,
    },
    /// Stored now, with the status `Queued` (its job enqueued in the same transaction) or
    /// `Ignored` (a topic the endpoint does not handle, or a `*.deleted`).
    Stored {
        /// The stored webhook.
        webhook_id: WebhookId,
        /// `Queued` or `Ignored`.
        status: WebhookStatus,
    },
    /// This delivery was stored before (the same `X-WC-Webhook-Delivery-ID` with the same body:
    /// [`domain::model::NewWebhook::dedupe_key`]): nothing new was stored and no second job was
    /// enqueued.
    Duplicate {
        /// The webhook stored the first time.
        webhook_id: WebhookId,
    },
    /// Signed, but the body is not a webhook the connector can use (it does not parse as its
    /// resource: not JSON, no integer `id`, a customer without `email`, a field of the wrong
    /// type): kept with the status `Rejected` for an operator, no job
    /// (`lazona-http` answers 400).
    Rejected {
        /// The stored webhook.
        webhook_id: WebhookId,
        /// The body field at fault (a path such as `line_items[0].quantity`), when one is.
        field: Option<String>,
        /// What is wrong.
        message: String,
    },
}

impl IngestOutcome {
    /// The stored webhook this request is about; `None` for a ping.
    pub fn webhook_id(&self) -> Option<WebhookId> {
        match self {
            IngestOutcome::Ping { .. } => None,
            IngestOutcome::Stored { webhook_id, .. }
            | IngestOutcome::Duplicate { webhook_id }
            | IngestOutcome::Rejected { webhook_id, .. } => Some(*webhook_id),
        }
    }
}

/// Why a request was refused. Nothing was stored: the sender should deliver it again (or, for
/// a bad signature, not at all).
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// No `X-WC-Webhook-Signature` header (`lazona-http` answers 401).
    #[error("the request has no X-WC-Webhook-Signature header")]
    MissingSignature,
    /// A signature that does not match the body under the configured secret (401).
    #[error("the X-WC-Webhook-Signature does not match the body")]
    InvalidSignature,
    /// Signed, but no webhook secret is configured to check it (503).
    #[error("no webhook secret is configured (webhook.secret, WC_WEBHOOK_SECRET)")]
    Unconfigured,
    /// The inbox could not store it (503).
    #[error("the webhook was not stored")]
    Unavailable(#[source] InboxError),
    /// The inbox did not commit it in time (503); it may still be committed later, and a
    /// repeated delivery is then a duplicate.
    #[error("the database did not commit in time")]
    CommitTimeout,
}

/// Checks, classifies and stores one request to the endpoint for `resource`, as `lazona-http`
/// does: `headers` (lowercase names) and the exact `body` bytes as received; signatures are
/// checked with `secret`; the write waits at most `commit_timeout`.
///
/// # Errors
/// [`IngestError`] when the request is refused or could not be stored; nothing was stored then.
pub async fn ingest(
    inbox: &dyn WebhookInbox,
    secret: Option<&WebhookSecret>,
    resource: Resource,
    headers: &[(String, String)],
    body: Bytes,
    commit_timeout: Duration,
) -> Result<IngestOutcome, IngestError> {
    let (webhook, rejection) = match intake(resource, headers, body, secret, chrono::Utc::now()) {
        Intake::Ping { webhook_id } => {
            tracing::info!(%resource, wc_webhook_id = webhook_id, "WooCommerce webhook ping");
            return Ok(IngestOutcome::Ping {
                wc_webhook_id: webhook_id,
            });
        }
        Intake::Unauthenticated(failure) => {
            tracing::warn!(%resource, ?failure, "webhook refused: bad signature");
            return Err(match failure {
                AuthFailure::MissingSignature => IngestError::MissingSignature,
                AuthFailure::InvalidSignature => IngestError::InvalidSignature,
            });
        }
        Intake::Unconfigured => {
            tracing::error!(%resource, "signed webhook refused: no webhook secret configured");
            return Err(IngestError::Unconfigured);
        }
        Intake::Accept(webhook) => (webhook, None),
        Intake::Reject(webhook, rejection) => (webhook, Some(rejection)),
    };

    let status = webhook.status;
    let delivery_id = webhook.delivery_id.clone();
    let recorded = match tokio::time::timeout(commit_timeout, inbox.record(webhook)).await {
        Ok(Ok(recorded)) => recorded,
        Ok(Err(e)) => {
            tracing::error!(%resource, error = %error_chain(&e), "webhook not stored");
            return Err(IngestError::Unavailable(e));
        }
        Err(_) => {
            tracing::error!(%resource, "webhook not committed in time");
            return Err(IngestError::CommitTimeout);
        }
    };
    let webhook_id = recorded.id;

    if let Some(rejection) = rejection {
        tracing::warn!(%resource, %webhook_id, field = ?rejection.field, message = %rejection.message, "webhook rejected and kept");
        return Ok(IngestOutcome::Rejected {
            webhook_id,
            field: rejection.field,
            message: rejection.message,
        });
    }
    if recorded.outcome == RecordOutcome::Duplicate {
        tracing::info!(%resource, %webhook_id, ?delivery_id, "duplicate delivery: nothing new stored");
        return Ok(IngestOutcome::Duplicate { webhook_id });
    }
    tracing::info!(%resource, %webhook_id, ?delivery_id, %status, "webhook stored");
    Ok(IngestOutcome::Stored { webhook_id, status })
}

/// Counts an ingested request in the `metrics` facade, the one place intake is counted (every
/// front calls it): `lazona_webhooks_total{resource,result}` (`accepted`, `duplicate`,
/// `rejected`), `lazona_signature_failures_total`, `lazona_pings_total`,
/// `lazona_unavailable_total`, and `lazona_webhooks_received_total{topic,result}` (`result`:
/// `queued`, `ignored`, `duplicate`, `rejected`, `ping`, `missing_signature`,
/// `invalid_signature`, `unconfigured`, `unavailable`). The topic is WooCommerce's
/// `X-WC-Webhook-Topic` of signed requests only (`unauthenticated` otherwise), and `other` when
/// it does not look like one, so that no sender can make up label values.
pub fn count(
    resource: Resource,
    topic: Option<&str>,
    ingested: &Result<IngestOutcome, IngestError>,
) {
    use IngestError as E;
    use IngestOutcome as O;
    let resource_label = match resource {
        Resource::Order => "order",
        Resource::Customer => "customer",
    };
    let by_resource = |result: &'static str| {
        metrics::counter!("lazona_webhooks_total", "resource" => resource_label, "result" => result)
            .increment(1);
    };
    let (signed, result) = match ingested {
        Ok(O::Ping { .. }) => {
            metrics::counter!("lazona_pings_total").increment(1);
            (false, "ping")
        }
        Ok(O::Stored { status, .. }) => {
            by_resource("accepted");
            (true, status.as_str())
        }
        Ok(O::Duplicate { .. }) => {
            by_resource("duplicate");
            (true, "duplicate")
        }
        Ok(O::Rejected { .. }) => {
            by_resource("rejected");
            (true, "rejected")
        }
        Err(e @ (E::MissingSignature | E::InvalidSignature)) => {
            metrics::counter!("lazona_signature_failures_total").increment(1);
            let result = if matches!(e, E::MissingSignature) {
                "missing_signature"
            } else {
                "invalid_signature"
            };
            (false, result)
        }
        Err(E::Unconfigured) => {
            metrics::counter!("lazona_unavailable_total").increment(1);
            (false, "unconfigured")
        }
        Err(E::Unavailable(_) | E::CommitTimeout) => {
            metrics::counter!("lazona_unavailable_total").increment(1);
            (true, "unavailable")
        }
    };
    let topic = match topic {
        _ if !signed => "unauthenticated",
        Some(t) if looks_like_a_topic(t) => t,
        _ => "other",
    };
    metrics::counter!("lazona_webhooks_received_total", "topic" => topic.to_owned(), "result" => result)
        .increment(1);
}

/// Counts a request refused for its size (413), before it could be ingested.
pub fn count_too_large() {
    metrics::counter!("lazona_body_too_large_total").increment(1);
}

/// `resource.event`, lowercase letters and underscores, short.
fn looks_like_a_topic(t: &str) -> bool {
    t.len() <= 40
        && t.split_once('.').is_some_and(|(a, b)| {
            !a.is_empty()
                && !b.is_empty()
                && t.bytes()
                    .all(|c| c.is_ascii_lowercase() || c == b'.' || c == b'_')
        })
}
