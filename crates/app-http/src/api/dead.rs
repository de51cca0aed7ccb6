//! `/api/v1/dead`: jobs the workers gave up on (admin only), and putting one back in the queue.

use super::auth::Admin;
use super::{
    Accepted, ErrorBody, Id, Listing, Params, operation_error, page, schemas, unavailable,
};
use crate::{ApiError, AppState};
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use chrono::{DateTime, Utc};
use domain::model::{DeadJob, JobId};
use domain::service::operations;
use serde::Serialize;
use utoipa::ToSchema;

/// The most dead letters a listing looks through (the port lists the most recent; a dead-letter
/// table stays small).
const SCAN: usize = 100_000;

/// A dead-lettered job.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeadJobView {
    /// The job's id.
    pub(crate) id: i64,
    /// What it was to do (`process_webhook`, `retry_shipment`, ...).
    pub(crate) job: String,
    /// The job in full (`{"kind": ..., ...}`).
    #[schema(value_type = Object)]
    pub(crate) payload: serde_json::Value,
    /// Attempts made.
    pub(crate) attempts: u32,
    /// Why it was given up.
    pub(crate) error: String,
    /// When it was given up.
    pub(crate) failed_at: DateTime<Utc>,
}

impl From<DeadJob> for DeadJobView {
    fn from(d: DeadJob) -> Self {
        DeadJobView {
            id: d.id.0,
            job: d.kind.name().to_owned(),
            payload: serde_json::to_value(&d.kind).unwrap_or_default(),
            attempts: d.attempts,
            error: d.error,
            failed_at: d.failed_at,
        }
    }
}

/// A page of dead jobs, newest jobs first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeadJobPage {
    /// The jobs.
    pub(crate) items: Vec<DeadJobView>,
    /// Pass it as `?cursor=` for the next page; `null` on the last one.
    pub(crate) next_cursor: Option<String>,
}

/// List dead jobs, newest jobs (highest ids) first.
#[utoipa::path(
    get,
    path = "/api/v1/dead",
    operation_id = "list_dead_jobs",
    tag = "dead jobs",
    params(
        ("job" = Option<String>, Query, description = "Only this kind of job (`process_webhook`, `retry_shipment`, ...)"),
        ("cursor" = inline(Option<schemas::DeadCursor>), Query, description = "`next_cursor` of the previous page, as it is (`dead-<id>`)"),
        ("before" = Option<i64>, Query, description = "Only ids below this one (with `cursor` too: below both)"),
        ("limit" = inline(Option<schemas::Limit>), Query, description = "Page size, 1 to 500 (default 50)"),
    ),
    responses(
        (status = 200, description = "A page of dead jobs", body = DeadJobPage),
        (status = 400, description = "A parameter does not parse (`field` names it)", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
    )
)]
pub(super) async fn list(
    _: Admin,
    State(state): State<AppState>,
    uri: Uri,
) -> Result<Json<DeadJobPage>, ApiError> {
    let mut p = Params::of(&uri)?;
    let limit = p.limit()?;
    let job: Option<String> = p.take("job")?;
    let before = p.before_id(Listing::Dead)?;
    p.finish()?;
    let mut rows = state
        .api()?
        .queue
        .dead_jobs(SCAN)
        .await
        .map_err(unavailable)?;
    rows.retain(|d| {
        before.is_none_or(|b| d.id.0 < b) && job.as_deref().is_none_or(|j| d.kind.name() == j)
    });
    rows.sort_by_key(|d| std::cmp::Reverse(d.id));
    rows.truncate(usize::try_from(limit + 1).unwrap_or(usize::MAX));
    let (rows, next_cursor) = page(rows, limit, Listing::Dead, |d| d.id.0);
    Ok(Json(DeadJobPage {
        items: rows.into_iter().map(DeadJobView::from).collect(),
        next_cursor,
    }))
}

/// Put a dead job back in the queue, due now, with its attempts reset.
#[utoipa::path(
    post,
    path = "/api/v1/dead/{id}/requeue",
    operation_id = "requeue_dead_job",
    tag = "dead jobs",
    params(("id" = i64, Path, description = "The job's id")),
    responses(
        (status = 202, description = "It is queued again", body = Accepted),
        (status = 400, description = "The id is not an integer", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 404, description = "No dead job with this id", body = ErrorBody),
    )
)]
pub(super) async fn requeue(
    admin: Admin,
    State(state): State<AppState>,
    Id(id): Id,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let id = JobId(id);
    let api = state.api()?;
    let queue = api.queue.as_ref();
    // Its kind, for the answer (a job that is not dead is answered 404 by the requeue anyway).
    let kind = queue
        .dead_jobs(SCAN)
        .await
        .map_err(unavailable)?
        .into_iter()
        .find(|d| d.id == id)
        .map(|d| d.kind.name().to_owned());
    operations::requeue_dead(&api.operator(&admin.actor), queue, id)
        .await
        .map_err(operation_error)?;
    tracing::info!(job_id = %id, "dead job requeued through the API");
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            job_id: id.0,
            job: kind.unwrap_or_default(),
            retry_job_ids: Vec::new(),
        }),
    ))
}
