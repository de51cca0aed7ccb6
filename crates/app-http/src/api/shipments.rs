//! `/api/v1/shipments`: listing (an admin sees all, a vendor their own), one shipment, its label
//! PDF, and the admin's actions (book again, refresh tracking). A vendor asking for another
//! vendor's shipment or label is answered 404, exactly as for one that does not exist.

use super::auth::Admin;
use super::{
    Accepted, ErrorBody, Id, Listing, Params, operation_error, page, schemas, unavailable,
};
use crate::{ApiError, AppState};
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use domain::model::{
    MailEvent, MailEventFilter, PastBooking, Principal, ShipmentFilter, ShipmentRecord,
    ShipmentStatus,
};
use domain::service::operations::{self, Enqueued};
use serde::Serialize;
use utoipa::ToSchema;

/// A shipment: one vendor's part of an order.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ShipmentView {
    /// Its id.
    pub(crate) id: i64,
    /// The WooCommerce order.
    pub(crate) order_id: i64,
    /// The vendor (WordPress user id).
    pub(crate) vendor_id: i64,
    /// `KOIKI` or `LOCAL_PICKUP`.
    pub(crate) method: String,
    /// `BOOKING`, `ERROR_FROM_BODY`, `LABEL_SENT`, `IN_PROCESS`, `ON_HOLD`,
    /// `ERROR_FROM_TRACKING` or `DELIVERED`.
    pub(crate) status: String,
    /// The carrier's barcode, empty when none.
    pub(crate) barcode: String,
    /// The carrier's or the tracking API's message.
    pub(crate) message: String,
    /// The tracking notes.
    pub(crate) notes: String,
    /// Whether a label PDF is stored (`GET /api/v1/shipments/{id}/label`).
    pub(crate) has_label: bool,
    /// When its label and the personal data of its carrier request were cleared (README,
    /// "Personal data"); `null` while kept.
    pub(crate) label_pruned_at: Option<DateTime<Utc>>,
    /// Why: `retention` or `erasure`.
    pub(crate) label_pruned_why: Option<String>,
    /// Date of the latest tracking event, as the carrier sent it.
    pub(crate) tracking_status_created_at: Option<String>,
    /// When tracking last looked.
    pub(crate) tracking_updated_at: Option<DateTime<Utc>>,
    /// When the label was (last) mailed to the vendor.
    pub(crate) mailed_at: Option<DateTime<Utc>>,
    /// Where the latest label mail stands, as the mail relay reported it: `sent` (handed to the
    /// relay), `deferred`, `delivered`, `opened`, `bounced`, `rejected` or `spam`; `null` before
    /// the first label mail.
    pub(crate) mail_state: Option<String>,
    /// When `mail_state` was last set.
    pub(crate) mail_state_at: Option<DateTime<Utc>>,
    /// The connector's `Message-ID` of the latest label mail.
    pub(crate) mail_message_id: Option<String>,
    /// When it was created.
    pub(crate) created_at: DateTime<Utc>,
    /// When it last changed.
    pub(crate) updated_at: DateTime<Utc>,
    /// The request sent to the carrier (JSON; in `GET /api/v1/shipments/{id}` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) request: Option<String>,
    /// Which booking of the shipment it holds: 0 for the first, one more for each retry that
    /// took it.
    pub(crate) booking_attempt: i64,
    /// The order's status (`cancelled`, `refunded`, `failed`) when it arrived so after this
    /// shipment was booked: the admins were told to cancel the booking with the carrier.
    pub(crate) order_withdrawn: Option<String>,
    /// The barcode whose tracking note was written on the order in the shop.
    pub(crate) noted_barcode: Option<String>,
    /// Bookings the carrier made for it that it no longer holds (a forced retry's replaced
    /// booking, or one that came back late): parcels to cancel or follow by hand (in
    /// `GET /api/v1/shipments/{id}` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) past_bookings: Option<Vec<PastBookingView>>,
    /// What the mail relay reported about its label mails, and the labels mailed again, newest
    /// first (in `GET /api/v1/shipments/{id}` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) mail_events: Option<Vec<MailEventView>>,
    /// The operators' actions on it (retries, tracking, resends), newest first, with who took
    /// them: one shipment's detail, for an admin's token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) actions: Option<Vec<super::audit::AuditView>>,
}

/// A report about one of a shipment's label mails.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MailEventView {
    /// Its id.
    pub(crate) id: i64,
    /// When the connector received it.
    pub(crate) received_at: DateTime<Utc>,
    /// Who reported it: `mandrill`, or `lazona` for a label mailed again.
    pub(crate) provider: String,
    /// The event as the provider names it (`send`, `hard_bounce`, `resent`, ...).
    pub(crate) event: String,
    /// What it means for the mail (`delivered`, `bounced`, ...); `null` when nothing.
    pub(crate) state: Option<String>,
    /// The recipient.
    pub(crate) email: Option<String>,
    /// Why, for a failure.
    pub(crate) detail: Option<String>,
    /// When it happened, as the provider says.
    pub(crate) occurred_at: Option<DateTime<Utc>>,
    /// `applied`, `stale` (about an older mail of the shipment) or `ignored`.
    pub(crate) status: String,
}

impl From<MailEvent> for MailEventView {
    fn from(e: MailEvent) -> Self {
        MailEventView {
            id: e.id,
            received_at: e.received_at,
            provider: e.data.provider,
            event: e.data.event,
            state: e.data.state.map(|s| s.as_str().to_owned()),
            email: e.data.email,
            detail: e.data.detail,
            occurred_at: e.data.occurred_at,
            status: e.data.status.as_str().to_owned(),
        }
    }
}

/// A booking the carrier made for a shipment that it no longer holds.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PastBookingView {
    /// Its id among the shipment's past bookings.
    pub(crate) id: i64,
    /// The carrier's barcode, empty when the booking was refused.
    pub(crate) barcode: String,
    /// What it came to (`LABEL_SENT`, `ERROR_FROM_BODY`, ...).
    pub(crate) status: String,
    /// The carrier's message.
    pub(crate) message: String,
    /// Whether its label PDF is kept (`lazona labels get ID --past N`).
    pub(crate) has_label: bool,
    /// When it was kept: when the booking that replaced it was recorded, or when it came back.
    pub(crate) kept_at: DateTime<Utc>,
    /// `superseded` (a retry booked the shipment again) or `late` (it came back after another
    /// booking of the shipment had started: a second parcel).
    pub(crate) reason: String,
}

impl From<PastBooking> for PastBookingView {
    fn from(p: PastBooking) -> Self {
        PastBookingView {
            id: p.id,
            barcode: p.delivery_id,
            status: p.status.as_str().to_owned(),
            message: p.message,
            has_label: p.has_label,
            kept_at: p.kept_at,
            reason: p.reason.as_str().to_owned(),
        }
    }
}

impl ShipmentView {
    fn of(s: ShipmentRecord, with_request: bool) -> Self {
        ShipmentView {
            id: s.id,
            order_id: s.order_id,
            vendor_id: s.vendor_id,
            method: s.method.as_str().to_owned(),
            status: s.status.as_str().to_owned(),
            barcode: s.delivery_id,
            message: s.message,
            notes: s.notes,
            has_label: s.has_label,
            label_pruned_at: s.label_pruned.map(|p| p.at),
            label_pruned_why: s.label_pruned.map(|p| p.why.as_str().to_owned()),
            tracking_status_created_at: s.tracking_status_created_at,
            tracking_updated_at: s.tracking_updated_at,
            mailed_at: s.mailed_at,
            mail_state: s.mail_state.map(|m| m.as_str().to_owned()),
            mail_state_at: s.mail_state_at,
            mail_message_id: s.mail_message_id,
            created_at: s.created_at,
            updated_at: s.updated_at,
            request: with_request.then_some(s.request),
            booking_attempt: s.booking_attempt,
            order_withdrawn: s.order_withdrawn,
            noted_barcode: s.noted_barcode,
            past_bookings: None,
            mail_events: None,
            actions: None,
        }
    }
}

/// A page of shipments, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ShipmentPage {
    /// The shipments.
    pub(crate) items: Vec<ShipmentView>,
    /// Pass it as `?cursor=` for the next page; `null` on the last one.
    pub(crate) next_cursor: Option<String>,
}

/// The shipment `id` if `principal` may see it; 404 alike for a missing one and another
/// vendor's.
async fn visible(
    state: &AppState,
    principal: Principal,
    id: i64,
) -> Result<ShipmentRecord, ApiError> {
    let found = state.api()?.shipments.get(id).await.map_err(unavailable)?;
    found
        .filter(|s| principal.sees_vendor(s.vendor_id))
        .ok_or_else(|| ApiError::Missing(format!("no shipment {id}")))
}

/// List shipments, newest first: all of them for an admin, only the vendor's own for a vendor.
#[utoipa::path(
    get,
    path = "/api/v1/shipments",
    operation_id = "list_shipments",
    tag = "shipments",
    params(
        ("order" = Option<i64>, Query, description = "Only this order"),
        ("vendor" = Option<i64>, Query, description = "Only this vendor (a vendor's token sees only its own anyway)"),
        ("status" = inline(Option<schemas::ShipmentStatusName>), Query, description = "Only this status, in any case: `BOOKING`, `ERROR_FROM_BODY`, `LABEL_SENT`, `IN_PROCESS`, `ON_HOLD`, `ERROR_FROM_TRACKING`, `DELIVERED`"),
        ("barcode" = Option<String>, Query, description = "Only this carrier barcode"),
        ("cursor" = inline(Option<schemas::ShipmentsCursor>), Query, description = "`next_cursor` of the previous page, as it is (`shipments-<id>`)"),
        ("before" = Option<i64>, Query, description = "Only ids below this one (with `cursor` too: below both)"),
        ("limit" = inline(Option<schemas::Limit>), Query, description = "Page size, 1 to 500 (default 50)"),
    ),
    responses(
        (status = 200, description = "A page of shipments", body = ShipmentPage),
        (status = 400, description = "A parameter does not parse (`field` names it)", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
    )
)]
pub(super) async fn list(
    principal: Principal,
    State(state): State<AppState>,
    uri: Uri,
) -> Result<Json<ShipmentPage>, ApiError> {
    let mut p = Params::of(&uri)?;
    let limit = p.limit()?;
    let mut filter = ShipmentFilter {
        order_id: p.take("order")?,
        vendor_id: p.take("vendor")?,
        status: p.take_with("status", |s| {
            s.to_ascii_uppercase().parse::<ShipmentStatus>()
        })?,
        delivery_id: p.take("barcode")?,
        before_id: p.before_id(Listing::Shipments)?,
        mail_message_id: None,
        limit: limit + 1,
    };
    p.finish()?;
    if let Principal::Vendor { vendor_id } = principal {
        if filter.vendor_id.is_some_and(|v| v != vendor_id) {
            // Another vendor's shipments: none that this token may see.
            return Ok(Json(ShipmentPage {
                items: Vec::new(),
                next_cursor: None,
            }));
        }
        filter.vendor_id = Some(vendor_id);
    }
    let rows = state
        .api()?
        .shipments
        .list(&filter)
        .await
        .map_err(unavailable)?;
    let (rows, next_cursor) = page(rows, limit, Listing::Shipments, |s| s.id);
    Ok(Json(ShipmentPage {
        items: rows
            .into_iter()
            .map(|s| ShipmentView::of(s, false))
            .collect(),
        next_cursor,
    }))
}

/// One shipment, with the request sent to the carrier, its past bookings, its label mails'
/// events and (for an admin) the operators' actions on it.
#[utoipa::path(
    get,
    path = "/api/v1/shipments/{id}",
    operation_id = "get_shipment",
    tag = "shipments",
    params(("id" = i64, Path, description = "The shipment's id")),
    responses(
        (status = 200, description = "The shipment", body = ShipmentView),
        (status = 400, description = "The id is not an integer", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such shipment, or another vendor's", body = ErrorBody),
    )
)]
pub(super) async fn show(
    principal: Principal,
    State(state): State<AppState>,
    Id(id): Id,
) -> Result<Json<ShipmentView>, ApiError> {
    let s = visible(&state, principal, id).await?;
    let api = state.api()?;
    let past = api
        .shipments
        .past_bookings(s.id)
        .await
        .map_err(unavailable)?;
    let mails = api
        .mail_events
        .list(&MailEventFilter {
            shipment_id: Some(s.id),
            limit: 200,
            ..MailEventFilter::default()
        })
        .await
        .map_err(unavailable)?;
    let subject = domain::model::audit::subject::shipment(s.id);
    let mut view = ShipmentView::of(s, true);
    if principal.is_admin() {
        view.actions = Some(super::audit::actions_on(api.audit.as_ref(), subject).await?);
    }
    view.past_bookings = Some(past.into_iter().map(PastBookingView::from).collect());
    view.mail_events = Some(mails.into_iter().map(MailEventView::from).collect());
    Ok(Json(view))
}

/// The shipment's label PDF.
#[utoipa::path(
    get,
    path = "/api/v1/shipments/{id}/label",
    operation_id = "get_label",
    tag = "shipments",
    params(("id" = i64, Path, description = "The shipment's id")),
    responses(
        (status = 200, description = "The label", content_type = "application/pdf", body = String),
        (status = 400, description = "The id is not an integer", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such shipment, another vendor's, or no label stored (the message says when one was pruned)", body = ErrorBody),
    )
)]
pub(super) async fn label(
    principal: Principal,
    State(state): State<AppState>,
    Id(id): Id,
) -> Result<Response, ApiError> {
    let s = visible(&state, principal, id).await?;
    let pdf = state
        .api()?
        .shipments
        .label(s.id)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| {
            ApiError::Missing(match &s.label_pruned {
                Some(pruned) => format!("shipment {}: {}", s.id, pruned.explain_label()),
                None => format!("shipment {} has no stored label", s.id),
            })
        })?;
    let name = if s.delivery_id.is_empty() {
        format!("shipment-{}", s.id)
    } else {
        s.delivery_id
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
            .collect()
    };
    Ok((
        [
            (header::CONTENT_TYPE, "application/pdf".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}.pdf\""),
            ),
        ],
        pdf,
    )
        .into_response())
}

fn accepted(done: Enqueued) -> (StatusCode, Json<Accepted>) {
    (
        StatusCode::ACCEPTED,
        Json(Accepted {
            job_id: done.job_id.0,
            job: done.kind.name().to_owned(),
            retry_job_ids: Vec::new(),
        }),
    )
}

/// Book the shipment again (a worker fetches the order again from the shop) and mail the new
/// label. Only a refused booking (`ERROR_FROM_BODY`) is booked again unless `force=true`.
#[utoipa::path(
    post,
    path = "/api/v1/shipments/{id}/retry",
    operation_id = "retry_shipment",
    tag = "shipments",
    params(
        ("id" = i64, Path, description = "The shipment's id"),
        ("force" = Option<bool>, Query, description = "Book even though the carrier has a booking (a second parcel)"),
    ),
    responses(
        (status = 202, description = "Its job is enqueued", body = Accepted),
        (status = 400, description = "A parameter does not parse", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 404, description = "No such shipment", body = ErrorBody),
        (status = 409, description = "Booked already (needs `force=true`), a booking of it in flight, taken by another retry meanwhile, or a local pickup", body = ErrorBody),
    )
)]
pub(super) async fn retry(
    admin: Admin,
    State(state): State<AppState>,
    Id(id): Id,
    uri: Uri,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let mut p = Params::of(&uri)?;
    let force = p.force()?;
    p.finish()?;
    let api = state.api()?;
    let done = operations::retry_shipment(
        &api.operator(&admin.actor),
        api.shipments.as_ref(),
        api.queue.as_ref(),
        id,
        force,
    )
    .await
    .map_err(operation_error)?;
    tracing::info!(shipment_id = id, force, job_id = %done.job_id, "shipment retry enqueued through the API");
    Ok(accepted(done))
}

/// Ask the carrier for the shipment's tracking now.
#[utoipa::path(
    post,
    path = "/api/v1/shipments/{id}/track",
    operation_id = "track_shipment",
    tag = "shipments",
    params(("id" = i64, Path, description = "The shipment's id")),
    responses(
        (status = 202, description = "Its job is enqueued", body = Accepted),
        (status = 400, description = "The id is not an integer", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 404, description = "No such shipment", body = ErrorBody),
        (status = 409, description = "No barcode: nothing to track", body = ErrorBody),
    )
)]
pub(super) async fn track(
    admin: Admin,
    State(state): State<AppState>,
    Id(id): Id,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let api = state.api()?;
    let done = operations::track_shipment(
        &api.operator(&admin.actor),
        api.shipments.as_ref(),
        api.queue.as_ref(),
        id,
    )
    .await
    .map_err(operation_error)?;
    tracing::info!(shipment_id = id, job_id = %done.job_id, "shipment tracking enqueued through the API");
    Ok(accepted(done))
}
