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
