//! `/api/v1/alerts`: what needs a person (admin only), and closing an alert by hand.

use super::auth::Admin;
use super::{ErrorBody, Id, Params, unavailable};
use crate::{ApiError, AppState};
use axum::Json;
use axum::extract::State;
use axum::http::Uri;
use chrono::{DateTime, Utc};
use domain::model::{Alert, AlertFilter, AlertKind, AlertState};
use domain::service::operations;
use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// An alert.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AlertView {
    /// Its id.
    pub(crate) id: i64,
    /// `job_dead`, `booking_stuck`, `tracking_error`, `booking_refused`, `shop_silent`,
    /// `label_mail_bounced`, `shop_webhook` or `order_withdrawn`.
    pub(crate) kind: String,
    /// What it concerns: `job:<id>`, `shipment:<id>`, `order:<id>`, `shop-webhook:<topic>`,
    /// `shop`.
    pub(crate) subject: String,
    /// One line (the mail's subject, in Catalan).
    pub(crate) summary: String,
    /// What happened and what to do (the mail's body).
    pub(crate) detail: String,
    /// `open` or `resolved`.
    pub(crate) state: String,
    /// How many times it was raised while open.
    pub(crate) count: u64,
    /// When it was first raised.
    pub(crate) first_seen: DateTime<Utc>,
    /// When it was last raised.
    pub(crate) last_seen: DateTime<Utc>,
    /// When it was resolved.
    pub(crate) resolved_at: Option<DateTime<Utc>>,
    /// Who resolved it (`auto`: its condition ended; `token ops (#3)`, `cli maria@caixa`: by
    /// hand).
    pub(crate) resolved_by: Option<String>,
    /// Its mail to the admins is not sent yet.
    pub(crate) mail_due: bool,
    /// Its outbound webhook is not posted yet.
    pub(crate) hook_due: bool,
}

impl From<Alert> for AlertView {
    fn from(a: Alert) -> Self {
        AlertView {
            id: a.id,
            kind: a.kind.as_str().to_owned(),
            subject: a.subject,
            summary: a.summary,
            detail: a.detail,
            state: a.state.as_str().to_owned(),
            count: a.count,
            first_seen: a.first_seen,
            last_seen: a.last_seen,
            resolved_at: a.resolved_at,
            resolved_by: a.resolved_by,
            mail_due: a.mail_due,
            hook_due: a.hook_due,
        }
    }
}

/// Alerts, most recently seen first, with the open ones counted.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AlertList {
    /// The alerts.
    pub(crate) items: Vec<AlertView>,
    /// How many alerts are open in all (the dashboard's banner).
    pub(crate) open_total: u64,
    /// How many are open, per kind.
    pub(crate) open_by_kind: BTreeMap<String, u64>,
}

/// List alerts (open ones unless `state` says otherwise), most recently seen first.
#[utoipa::path(
    get,
    path = "/api/v1/alerts",
    operation_id = "list_alerts",
    tag = "alerts",
    params(
        ("state" = inline(Option<super::schemas::AlertStateName>), Query, description = "`open` (the default), `resolved` or `all`"),
        ("kind" = inline(Option<super::schemas::AlertKindName>), Query, description = "Only this kind (`job_dead`, `booking_stuck`, ...)"),
        ("limit" = inline(Option<super::schemas::Limit>), Query, description = "At most this many, 1 to 500 (default 50)"),
    ),
    responses(
        (status = 200, description = "The alerts and the open counts", body = AlertList),
        (status = 400, description = "A parameter does not parse (`field` names it)", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
    )
)]
pub(super) async fn list(
    _: Admin,
    State(state): State<AppState>,
    uri: Uri,
) -> Result<Json<AlertList>, ApiError> {
    let mut p = Params::of(&uri)?;
    let limit = p.limit()?;
    let wanted = p.take_with("state", |s| match s {
        "all" => Ok(None),
        s => s.parse::<AlertState>().map(Some),
    })?;
    let kind: Option<AlertKind> = p.take("kind")?;
    p.finish()?;
    let store = &state.api()?.alerts;
    let filter = AlertFilter {
        state: wanted.unwrap_or(Some(AlertState::Open)),
        kind,
        limit: usize::try_from(limit).unwrap_or(usize::MAX),
    };
    let items = store.list(&filter).await.map_err(unavailable)?;
    let counts = store.open_counts().await.map_err(unavailable)?;
    Ok(Json(AlertList {
        items: items.into_iter().map(AlertView::from).collect(),
        open_total: counts.iter().map(|(_, n)| n).sum(),
        open_by_kind: counts
            .into_iter()
            .map(|(k, n)| (k.as_str().to_owned(), n))
            .collect(),
    }))
}

/// One alert.
#[utoipa::path(
    get,
    path = "/api/v1/alerts/{id}",
    operation_id = "show_alert",
    tag = "alerts",
    params(("id" = i64, Path, description = "The alert's id")),
    responses(
        (status = 200, description = "The alert", body = AlertView),
        (status = 400, description = "The id is not an integer", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 404, description = "No alert with this id", body = ErrorBody),
    )
)]
pub(super) async fn show(
    _: Admin,
    State(state): State<AppState>,
    Id(id): Id,
) -> Result<Json<AlertView>, ApiError> {
    let alert = state
        .api()?
        .alerts
        .get(id)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| ApiError::Missing(format!("no alert {id}")))?;
    Ok(Json(alert.into()))
}

/// Resolve an alert by hand (an alert also resolves itself when its condition ends). Resolving
/// a resolved alert changes nothing.
#[utoipa::path(
    post,
    path = "/api/v1/alerts/{id}/resolve",
    operation_id = "resolve_alert",
    tag = "alerts",
    params(("id" = i64, Path, description = "The alert's id")),
    responses(
        (status = 200, description = "The alert, resolved", body = AlertView),
        (status = 400, description = "The id is not an integer", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 404, description = "No alert with this id", body = ErrorBody),
    )
)]
pub(super) async fn resolve(
    admin: Admin,
    State(state): State<AppState>,
    Id(id): Id,
) -> Result<Json<AlertView>, ApiError> {
    let api = state.api()?;
    let alert = operations::resolve_alert(&api.operator(&admin.actor), api.alerts.as_ref(), id)
        .await
        .map_err(super::operation_error)?;
    tracing::info!(alert_id = id, "alert resolved through the API");
    Ok(Json(alert.into()))
}
