//! `/api/v1/webhooks`: the stored webhooks (admin only): listing with filters, one webhook with
//! its headers, body and history, and replay.

use super::auth::Admin;
use super::{
    Accepted, ErrorBody, Id, Listing, Params, operation_error, page, schemas, unavailable,
};
use crate::{ApiError, AppState};
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use chrono::{DateTime, Utc};
use domain::model::{Resource, WebhookEvent, WebhookFilter, WebhookId, WebhookSummary};
use domain::service::operations;
use serde::Serialize;
use utoipa::ToSchema;

/// A stored webhook, without its body.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WebhookView {
    /// Its inbox id.
    pub(crate) id: i64,
    /// The endpoint that received it: `order` or `customer`.
    pub(crate) resource: String,
    /// `X-WC-Webhook-Topic` (`order.created`, ...).
    pub(crate) topic: Option<String>,
    /// `X-WC-Webhook-Delivery-ID`.
    pub(crate) delivery_id: Option<String>,
    /// The order or customer id in its body.
    pub(crate) subject_id: Option<i64>,
    /// `queued`, `processed`, `failed`, `rejected` or `ignored`.
    pub(crate) status: String,
    /// When it was received.
    pub(crate) received_at: DateTime<Utc>,
    /// The last error or rejection reason.
    pub(crate) error: Option<String>,
    /// When its body and headers were cleared (README, "Personal data"); `null` while kept.
    pub(crate) pruned_at: Option<DateTime<Utc>>,
    /// Why: `retention` or `erasure`.
    pub(crate) pruned_why: Option<String>,
}

impl From<WebhookSummary> for WebhookView {
    fn from(w: WebhookSummary) -> Self {
        WebhookView {
            id: w.id.0,
            resource: w.resource.as_str().to_owned(),
            topic: w.topic,
            delivery_id: w.delivery_id,
            subject_id: w.subject_id,
            status: w.status.as_str().to_owned(),
            received_at: w.received_at,
            error: w.error,
            pruned_at: w.pruned.map(|p| p.at),
            pruned_why: w.pruned.map(|p| p.why.as_str().to_owned()),
        }
    }
}

/// A page of webhooks, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WebhookPage {
    /// The webhooks.
    pub(crate) items: Vec<WebhookView>,
    /// Pass it as `?cursor=` for the next page; `null` on the last one.
    pub(crate) next_cursor: Option<String>,
}

/// One request header as received.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Header {
    /// Its name.
    pub(crate) name: String,
    /// Its value.
    pub(crate) value: String,
}

/// One step of a webhook's processing.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct HistoryEntry {
    /// When.
    pub(crate) at: DateTime<Utc>,
    /// The status it moved to.
    pub(crate) status: String,
    /// The error or note recorded with it.
    pub(crate) detail: Option<String>,
}

impl From<WebhookEvent> for HistoryEntry {
    fn from(e: WebhookEvent) -> Self {
        HistoryEntry {
            at: e.at,
            status: e.status.as_str().to_owned(),
            detail: e.detail,
        }
    }
}

/// A stored webhook in full.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WebhookDetail {
    /// Its inbox id.
    pub(crate) id: i64,
    /// The endpoint that received it: `order` or `customer`.
    pub(crate) resource: String,
    /// `X-WC-Webhook-Topic`.
    pub(crate) topic: Option<String>,
    /// `X-WC-Webhook-Event`.
    pub(crate) event: Option<String>,
    /// `X-WC-Webhook-Delivery-ID`.
    pub(crate) delivery_id: Option<String>,
    /// `X-WC-Webhook-ID`: WooCommerce's id of the webhook configuration.
    pub(crate) wc_webhook_id: Option<i64>,
    /// `X-WC-Webhook-Source`: the shop.
    pub(crate) source: Option<String>,
    /// The order or customer id in its body.
    pub(crate) subject_id: Option<i64>,
    /// `queued`, `processed`, `failed`, `rejected` or `ignored`.
    pub(crate) status: String,
    /// When it was received.
    pub(crate) received_at: DateTime<Utc>,
    /// When its processing ended.
    pub(crate) processed_at: Option<DateTime<Utc>>,
    /// The last error or rejection reason.
    pub(crate) error: Option<String>,
    /// The request headers kept (all but cookies and authorisation).
    pub(crate) headers: Vec<Header>,
    /// Whether `body` is the body parsed as JSON (else it is the body as text).
    pub(crate) body_is_json: bool,
    /// The body: its JSON when it parses (any JSON value: an object from WooCommerce, but a
    /// rejected body may be an array, a number, ...), else its text (invalid UTF-8 replaced).
    pub(crate) body: serde_json::Value,
    /// Its processing history, oldest first.
    pub(crate) history: Vec<HistoryEntry>,
    /// The operators' actions on it (replays), newest first, with who took them.
    pub(crate) actions: Vec<super::audit::AuditView>,
    /// When its body and headers were cleared, and why, in words ("its body was pruned on
    /// DATE after N days (retention.webhook_body_days)"); `null` while kept. A pruned
    /// webhook's `body` is the empty string and its replay is refused (409).
    pub(crate) pruned: Option<String>,
}

/// List stored webhooks, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/webhooks",
    operation_id = "list_webhooks",
    tag = "webhooks",
    params(
        ("topic" = Option<String>, Query, description = "Only this topic (`order.created`, ...)"),
        ("resource" = inline(Option<schemas::ResourceName>), Query, description = "Only this endpoint: `order` or `customer`"),
        ("status" = inline(Option<schemas::WebhookStatusName>), Query, description = "Only this status: `queued`, `processed`, `failed`, `rejected`, `ignored`"),
        ("subject" = Option<i64>, Query, description = "Only this order or customer id"),
        ("since" = Option<String>, Query, format = DateTime, description = "Received at or after (RFC 3339)"),
        ("until" = Option<String>, Query, format = DateTime, description = "Received before (RFC 3339)"),
        ("cursor" = inline(Option<schemas::WebhooksCursor>), Query, description = "`next_cursor` of the previous page, as it is (`webhooks-<id>`)"),
        ("before" = Option<i64>, Query, description = "Only ids below this one (with `cursor` too: below both)"),
        ("limit" = inline(Option<schemas::Limit>), Query, description = "Page size, 1 to 500 (default 50)"),
    ),
    responses(
        (status = 200, description = "A page of webhooks", body = WebhookPage),
        (status = 400, description = "A parameter does not parse (`field` names it)", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
    )
)]
pub(super) async fn list(
    _: Admin,
    State(state): State<AppState>,
    uri: Uri,
) -> Result<Json<WebhookPage>, ApiError> {
    let mut p = Params::of(&uri)?;
    let limit = p.limit()?;
    let filter = WebhookFilter {
        topic: p.take("topic")?,
        resource: p.take::<Resource>("resource")?,
        status: p.take("status")?,
        subject_id: p.take("subject")?,
        delivery_id: None,
        since: p.take("since")?,
        until: p.take("until")?,
        before_id: p.before_id(Listing::Webhooks)?.map(WebhookId),
        limit: limit + 1,
    };
    p.finish()?;
    let rows = state.inbox.list(&filter).await.map_err(unavailable)?;
    let (rows, next_cursor) = page(rows, limit, Listing::Webhooks, |w| w.id.0);
    Ok(Json(WebhookPage {
        items: rows.into_iter().map(WebhookView::from).collect(),
        next_cursor,
    }))
}

/// One stored webhook: headers, body (as JSON when it parses), processing history and the
/// operators' actions on it.
#[utoipa::path(
    get,
    path = "/api/v1/webhooks/{id}",
    operation_id = "get_webhook",
    tag = "webhooks",
    params(("id" = i64, Path, description = "The webhook's inbox id")),
    responses(
        (status = 200, description = "The webhook", body = WebhookDetail),
        (status = 400, description = "The id is not an integer", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 404, description = "No such webhook", body = ErrorBody),
    )
)]
pub(super) async fn show(
    _: Admin,
    State(state): State<AppState>,
    Id(id): Id,
) -> Result<Json<WebhookDetail>, ApiError> {
    let id = WebhookId(id);
    let w = state
        .inbox
        .get(id)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| ApiError::Missing(format!("no webhook {id}")))?;
    let history = state.inbox.history(id).await.map_err(unavailable)?;
    let actions = super::audit::actions_on(
        state.api()?.audit.as_ref(),
        domain::model::audit::subject::webhook(id.0),
    )
    .await?;
    let (body_is_json, body) = match serde_json::from_slice::<serde_json::Value>(&w.data.body) {
        Ok(v) => (true, v),
        Err(_) => (
            false,
            serde_json::Value::String(String::from_utf8_lossy(&w.data.body).into_owned()),
        ),
    };
    let pruned = w.pruned.map(|p| p.explain_body(w.data.received_at));
    let d = w.data;
    Ok(Json(WebhookDetail {
        id: w.id.0,
        resource: d.resource.as_str().to_owned(),
        topic: d.topic,
        event: d.event,
        delivery_id: d.delivery_id,
        wc_webhook_id: d.wc_webhook_id,
        source: d.source,
        subject_id: d.subject_id,
        status: d.status.as_str().to_owned(),
        received_at: d.received_at,
        processed_at: w.processed_at,
        error: w.last_error,
        headers: d
            .headers
            .into_iter()
            .map(|(name, value)| Header { name, value })
            .collect(),
        body_is_json,
        body,
        history: history.into_iter().map(HistoryEntry::from).collect(),
        actions,
        pruned,
    }))
}

/// Process a stored webhook again through the job queue: back to `queued` with a new job, so
/// nothing already booked is booked again. With `force=true`, an order's existing shipments are
/// booked again too (a second parcel each).
#[utoipa::path(
    post,
    path = "/api/v1/webhooks/{id}/replay",
    operation_id = "replay_webhook",
    tag = "webhooks",
    params(
        ("id" = i64, Path, description = "The webhook's inbox id"),
        ("force" = Option<bool>, Query, description = "Also book the order's existing shipments again"),
    ),
    responses(
        (status = 202, description = "Its job is enqueued", body = Accepted),
        (status = 400, description = "A parameter does not parse", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 404, description = "No such webhook", body = ErrorBody),
        (status = 409, description = "Already queued, its status changed meanwhile, or its body was pruned (the message says when and why)", body = ErrorBody),
    )
)]
pub(super) async fn replay(
    admin: Admin,
    State(state): State<AppState>,
    Id(id): Id,
    uri: Uri,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let id = WebhookId(id);
    let mut p = Params::of(&uri)?;
    let force = p.force()?;
    p.finish()?;
    let api = state.api()?;
    let replayed = operations::replay_webhook_by_id(
        &api.operator(&admin.actor),
        state.inbox.as_ref(),
        api.queue.as_ref(),
        api.shipments.as_ref(),
        id,
        force,
    )
    .await
    .map_err(operation_error)?;
    tracing::info!(webhook_id = %id, force, job_id = %replayed.job_id, "webhook replayed through the API");
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            job_id: replayed.job_id.0,
            job: "process_webhook".into(),
            retry_job_ids: replayed.retry_jobs.iter().map(|j| j.0).collect(),
        }),
    ))
}
