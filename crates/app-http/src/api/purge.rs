//! `POST /api/v1/purge`: erases one customer's personal data (admin only), as `lazona purge`
//! does (README, "Personal data"), recorded in the audit log under a hash of the e-mail.

use super::ErrorBody;
use super::auth::Admin;
use crate::{ApiError, AppState};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use domain::model::ErasureReport;
use domain::service::operations::is_plausible_address;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Whose data to erase.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PurgeRequest {
    /// The customer's e-mail (billing, shipping or customer account), in any case.
    #[schema(format = Email, min_length = 3, max_length = 254)]
    pub(crate) email: String,
    /// Say what would be erased; change nothing.
    #[serde(default)]
    pub(crate) dry_run: bool,
}

/// What an erasure found and cleared (or, dry, would clear).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PurgeReport {
    /// Whether nothing was changed.
    pub(crate) dry_run: bool,
    /// The SHA-256 of the e-mail, lower-cased: the audit log's `customer:<hash>`.
    pub(crate) subject_hash: String,
    /// The webhooks concerning the customer.
    pub(crate) webhook_ids: Vec<i64>,
    /// Of those, how many had their body and headers cleared (or would have).
    pub(crate) webhooks_cleared: u64,
    /// The customer's orders.
    pub(crate) order_ids: Vec<i64>,
    /// The shipments of those orders.
    pub(crate) shipment_ids: Vec<i64>,
    /// Of those, how many had their label and carrier request cleared (or would have).
    pub(crate) shipments_cleared: u64,
}

impl From<ErasureReport> for PurgeReport {
    fn from(r: ErasureReport) -> Self {
        PurgeReport {
            dry_run: r.dry_run,
            subject_hash: r.subject_hash,
            webhook_ids: r.webhook_ids,
            webhooks_cleared: r.webhooks_cleared,
            order_ids: r.order_ids,
            shipment_ids: r.shipment_ids,
            shipments_cleared: r.shipments_cleared,
        }
    }
}

/// Erase a customer's personal data: the bodies and headers of the webhooks that concern them
/// (billing or shipping e-mail, their customer webhooks, and every other webhook of those orders
/// and customers), the labels and carrier requests of their orders' shipments, and those
/// shipments' alert details. The rows, statuses and barcodes stay. Recorded in the audit log
/// (the e-mail as a hash). With `dry_run`, says what would be cleared.
#[utoipa::path(
    post,
    path = "/api/v1/purge",
    operation_id = "purge_customer",
    tag = "personal data",
    request_body(content = PurgeRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "What was (or, dry, would be) cleared", body = PurgeReport),
        (status = 400, description = "The body is not the JSON expected, or `email` is not an e-mail address (`field` says which)", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    )
)]
pub(super) async fn purge(
    admin: Admin,
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Json<PurgeReport>, ApiError> {
    // An object only: serde would read `["x@y.z"]` as the struct too.
    let request: PurgeRequest = match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(v @ serde_json::Value::Object(_)) => {
            serde_json::from_value(v).map_err(|e| ApiError::BadBody(e.to_string()))?
        }
        Ok(_) => return Err(ApiError::BadBody("a JSON object is expected".into())),
        Err(e) => return Err(ApiError::BadBody(e.to_string())),
    };
    let email = request.email.trim();
    if email.len() > 254 || !is_plausible_address(email) {
        return Err(ApiError::BadParameter {
            field: "email".into(),
            message: "`email` is not an e-mail address".into(),
        });
    }
    let report = state
        .api()?
        .connector
        .purge(email, request.dry_run, admin.actor)
        .await
        .map_err(|e| ApiError::Unavailable(format!("{e:#}")))?;
    tracing::info!(
        dry_run = report.dry_run,
        webhooks = report.webhooks_cleared,
        shipments = report.shipments_cleared,
        "customer erasure through the API"
    );
    Ok(Json(report.into()))
}
