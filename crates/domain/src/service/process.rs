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
    if let Err(e) = payload::parse(webhook.data.resource, &webhook.data.body) {
        let reason = format!("the {} body does not parse: {e}", webhook.data.resource);
        inbox
            .transition(
                id,
                WebhookStatus::Queued,
                WebhookStatus::Failed,
                Some(reason.clone()),
            )
            .await?;
        return Err(JobError::Permanent { reason });
    }
    // Compare-and-set: when two workers race on the same webhook, one of them records it.
    inbox
        .transition(id, WebhookStatus::Queued, WebhookStatus::Processed, None)
        .await?;
    Ok(())
}
