//! `/api/v1/audit`: who did what (admin only): the operators' actions recorded with their actor,
//! newest first, with filters. A webhook's and a shipment's own actions are also in their detail
//! (`actions`, [`actions_on`]).

use super::auth::Admin;
use super::{ErrorBody, Params, schemas, unavailable};
use crate::{ApiError, AppState};
use axum::Json;
use axum::extract::State;
use axum::http::Uri;
use chrono::{DateTime, Utc};
use domain::model::{AuditAction, AuditEntry, AuditFilter};
use domain::ports::AuditLog;
use serde::Serialize;
use utoipa::ToSchema;

/// An operator's action, as recorded.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AuditView {
    /// Its id (increasing in the order actions were recorded).
    pub(crate) id: i64,
    /// When.
    pub(crate) at: DateTime<Utc>,
    /// Who, in words: `token ops (#3)`, `cli maria@caixa`, `connector`.
    pub(crate) actor: String,
    /// Through what: `api`, `cli` or `system`.
    pub(crate) actor_via: String,
    /// The token's name, `user@host` (or the `--actor` given), `connector`.
    pub(crate) actor_name: String,
    /// The API token's id, for `api`.
    pub(crate) token_id: Option<i64>,
    /// What: `replay`, `retry`, `track`, `requeue`, `resend`, `purge`, `resolve_alert`,
    /// `token_create` or `token_revoke`.
    pub(crate) action: String,
    /// On what: `webhook:<id>`, `shipment:<id>`, `job:<id>`, `alert:<id>`, `token:<id>`,
    /// `customer:<hash>`.
    pub(crate) subject: String,
    /// Forced past a refusal (`--force`, `?force=true`).
    pub(crate) forced: bool,
    /// What came of it (the job enqueued, ...).
    pub(crate) detail: Option<String>,
}

impl From<AuditEntry> for AuditView {
    fn from(e: AuditEntry) -> Self {
        let d = e.data;
        AuditView {
            id: e.id,
            at: d.at,
            actor: d.actor.to_string(),
            actor_via: d.actor.via.as_str().to_owned(),
            actor_name: d.actor.name,
            token_id: d.actor.token_id,
            action: d.action.as_str().to_owned(),
            subject: d.subject,
            forced: d.forced,
            detail: d.detail,
        }
    }
}

/// A page of recorded actions, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AuditPage {
    /// The actions.
    pub(crate) items: Vec<AuditView>,
    /// Pass it as `?before_id=` for the next page; `null` on the last one.
    pub(crate) next_before_id: Option<i64>,
}

/// How many of a subject's actions its detail shows.
const ON_SUBJECT: u64 = 200;

/// The actions recorded on `subject` (`shipment:7`), newest first.
pub(crate) async fn actions_on(
    audit: &dyn AuditLog,
    subject: String,
) -> Result<Vec<AuditView>, ApiError> {
    let rows = audit
        .list(&AuditFilter {
            subject: Some(subject),
            limit: ON_SUBJECT,
            ..AuditFilter::default()
        })
        .await
        .map_err(unavailable)?;
    Ok(rows.into_iter().map(AuditView::from).collect())
}

/// List the operators' actions, newest first: who did what, when, on what.
#[utoipa::path(
    get,
    path = "/api/v1/audit",
    operation_id = "list_audit",
    tag = "audit",
    params(
        ("actor" = inline(Option<schemas::ActorName>), Query, description = "Only this actor's: a token's name, `user@host`, an `--actor` given"),
        ("action" = inline(Option<schemas::AuditActionName>), Query, description = "Only this action"),
        ("subject" = inline(Option<schemas::AuditSubject>), Query, description = "Only on this subject (`webhook:12`, `shipment:7`, `job:40`, `alert:3`, `token:2`, `customer:<sha256>`)"),
        ("since" = Option<String>, Query, format = DateTime, description = "Only those at or after this time (RFC 3339)"),
        ("before_id" = Option<i64>, Query, description = "Only ids below this one (`next_before_id` of the previous page)"),
        ("limit" = inline(Option<super::schemas::Limit>), Query, description = "Page size, 1 to 500 (default 50)"),
    ),
    responses(
        (status = 200, description = "A page of recorded actions", body = AuditPage),
        (status = 400, description = "A parameter does not parse (`field` names it)", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
    )
)]
pub(super) async fn list(
    _: Admin,
    State(state): State<AppState>,
    uri: Uri,
) -> Result<Json<AuditPage>, ApiError> {
    let mut p = Params::of(&uri)?;
    let limit = p.limit()?;
    let filter = AuditFilter {
        actor: p.take_with("actor", schemas::ActorName::check)?,
        action: p.take::<AuditAction>("action")?,
        subject: p.take_with("subject", schemas::AuditSubject::check)?,
        since: p.take("since")?,
        before_id: p.take("before_id")?,
        limit: limit + 1,
    };
    p.finish()?;
    let mut rows = state
        .api()?
        .audit
        .list(&filter)
        .await
        .map_err(unavailable)?;
    let more = rows.len() as u64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let next_before_id = more.then(|| rows.last().map(|e| e.id)).flatten();
    Ok(Json(AuditPage {
        items: rows.into_iter().map(AuditView::from).collect(),
        next_before_id,
    }))
}
