//! Processing a stored webhook when its use case is not configured: the `ProcessWebhook` job's
//! fallback.
//!
//! Orders are fulfilled by [`super::shipment_jobs`] once Koiki and the shop are configured, and
//! customers go through [`super::customers`] once the CRM and the shop are; until then processing
//! validates that the stored body still parses as its resource and records the webhook as
//! processed.

use crate::error::JobError;
use crate::model::payload;
use crate::model::{WebhookId, WebhookStatus};
use crate::ports::WebhookInbox;

/// Processes one stored webhook. Idempotent: a webhook already processed is left alone.
///
/// # Errors
/// [`JobError::Transient`] when the inbox cannot be reached, [`JobError::Permanent`] when the
/// webhook is missing or its body does not parse as its resource.
#[tracing::instrument(skip_all, fields(webhook_id = %id))]
pub async fn process_webhook(inbox: &dyn WebhookInbox, id: WebhookId) -> Result<(), JobError> {
    let Some(webhook) = inbox.get(id).await? else {
        return Err(JobError::Permanent {
            reason: format!("webhook {id} not found"),
        });
    };
    if webhook.data.status != WebhookStatus::Queued {
        return Ok(());
    }
    let parsed = payload::parse(webhook.data.resource, &webhook.data.body)
        .map(|_| None)
        .map_err(|e| JobError::Permanent {
            reason: format!("the {} body does not parse: {e}", webhook.data.resource),
        });
    settle(inbox, id, parsed).await
}

/// Records what processing a queued webhook came to, the same way for every use case: done (with
/// its summary) becomes `processed`; a permanent failure becomes `failed` with its reason, and is
/// returned so that the job is dead-lettered; a transient failure leaves the webhook `queued` for
/// the job's retry. Compare-and-set from `queued`: when two workers race on one webhook, one of
/// them records it, and a webhook already settled is left alone.
///
/// # Errors
/// The permanent or transient failure given; [`JobError::Transient`] when the inbox cannot be
/// reached.
pub async fn settle(
    inbox: &dyn WebhookInbox,
    id: WebhookId,
    result: Result<Option<String>, JobError>,
) -> Result<(), JobError> {
    match result {
        Ok(summary) => {
            inbox
                .transition(id, WebhookStatus::Queued, WebhookStatus::Processed, summary)
                .await?;
            Ok(())
        }
        Err(e @ JobError::Permanent { .. }) => {
            inbox
                .transition(
                    id,
                    WebhookStatus::Queued,
                    WebhookStatus::Failed,
                    Some(e.to_string()),
                )
                .await?;
            Err(e)
        }
        Err(e) => Err(e),
    }
}
