//! Switching over from the original (Django) deployment: its `api_shipment` rows copied into
//! the connector's shipments, so that their history stays and an order it already shipped is
//! never booked again here.

use super::sql::SqlBuilder;
use super::{ConnectError, Database, SCHEMES, millis};
use chrono::{DateTime, NaiveDateTime, Utc};
use domain::model::{ShipmentMethod, ShipmentStatus};
use sea_orm::{ConnectionTrait, DbErr, QueryResult, Statement, Value};
use serde::Serialize;
use std::path::Path;

/// What an import did (or, dry, would do).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    /// Rows read from `api_shipment`.
    pub read: u64,
    /// Shipments created here.
    pub imported: u64,
    /// Rows whose (order, vendor) already has a shipment here (an earlier import, or an order
    /// this connector shipped).
    pub already_here: u64,
    /// Rows that repeat an earlier row's (order, vendor): the original had no unique
    /// constraint, so a repeated webhook could ship twice. The first row is kept.
    pub duplicates: u64,
    /// Labels read from `--labels-dir` and stored with their shipment.
    pub labels: u64,
    /// Rows with an empty status (a crash right after `get_or_create`): imported as `BOOKING`,
    /// for an operator to look at.
    pub unknown_status: u64,
}

/// Why an import failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The Django database cannot be opened (its URL's password masked).
    #[error("the Django database: {0}")]
    Source(ConnectError),
    /// Reading or writing failed.
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// One `api_shipment` row.
#[derive(Debug, Clone)]
struct DjangoShipment {
    delivery_id: String,
    order_id: i64,
    vendor_id: i64,
    label_url: String,
    status: String,
    method: String,
    updated_at: Option<DateTime<Utc>>,
    tracking_updated_at: Option<DateTime<Utc>>,
    tracking_status_created_at: Option<DateTime<Utc>>,
    req_body: String,
    delivery_message: String,
    delivery_notes: String,
}

/// A timestamp as Postgres (timestamptz) or SQLite (Django's text format) returns it.
fn time(row: &QueryResult, col: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = row.try_get::<Option<DateTime<Utc>>>("", col) {
        return t;
    }
    if let Ok(Some(t)) = row.try_get::<Option<NaiveDateTime>>("", col) {
        return Some(t.and_utc());
    }
    let text: Option<String> = row.try_get("", col).ok().flatten();
    let text = text?;
    DateTime::parse_from_rfc3339(&text)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(text.trim_end_matches("+00:00"), "%Y-%m-%d %H:%M:%S%.f")
                .ok()
                .map(|t| t.and_utc())
        })
}

fn text(row: &QueryResult, col: &str) -> String {
    row.try_get::<Option<String>>("", col)
        .ok()
        .flatten()
        .unwrap_or_default()
}

fn int(row: &QueryResult, col: &str) -> Result<i64, DbErr> {
    row.try_get::<i64>("", col)
        .or_else(|_| row.try_get::<i32>("", col).map(i64::from))
}

async fn read_source(url: &str) -> Result<Vec<DjangoShipment>, ImportError> {
    if let Some(problem) = crate::redact::url_problem(url, SCHEMES) {
        return Err(ImportError::Source(ConnectError::InvalidUrl {
            url: crate::redact::redact(url),
            problem,
        }));
    }
    let source = sea_orm::Database::connect(url)
        .await
        .map_err(|e| ImportError::Source(ConnectError::failed(url, &e)))?;
    let backend = source.get_database_backend();
    let rows = source
        .query_all_raw(Statement::from_string(
            backend,
            "SELECT id, delivery_id, order_id, vendor_id, label_url, status, method, updated_at, \
             tracking_updated_at, tracking_status_created_at, req_body, delivery_message, \
             delivery_notes FROM api_shipment ORDER BY id",
        ))
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        out.push(DjangoShipment {
            delivery_id: text(row, "delivery_id"),
            order_id: int(row, "order_id")?,
            vendor_id: int(row, "vendor_id")?,
            label_url: text(row, "label_url"),
            status: text(row, "status"),
            method: text(row, "method"),
            updated_at: time(row, "updated_at"),
            tracking_updated_at: time(row, "tracking_updated_at"),
            tracking_status_created_at: time(row, "tracking_status_created_at"),
            req_body: text(row, "req_body"),
            delivery_message: text(row, "delivery_message"),
            delivery_notes: text(row, "delivery_notes"),
        });
    }
    source.close().await?;
    Ok(out)
}

/// Copies the shipments of the Django database at `source_url` (Postgres or SQLite) into
/// `target`. Labels are read from `labels_dir` (the deployment's media folder, where
/// `label_url` points) when given. Idempotent: a second run imports nothing. With `dry_run`
/// nothing is written.
///
/// Mapping: statuses and methods keep their values (an empty status becomes `BOOKING`, an empty
/// method `KOIKI`); `req_body`, `delivery_message` and `delivery_notes` become the request,
/// message and notes; shipments past booking count as mailed (the original mailed at booking),
/// so no label is mailed again.
///
/// # Errors
/// [`ImportError::Source`] when the Django database cannot be opened, [`ImportError::Db`] when
/// either database cannot be read or written.
pub async fn import_django_shipments(
    target: &Database,
    source_url: &str,
    labels_dir: Option<&Path>,
    dry_run: bool,
) -> Result<ImportReport, ImportError> {
    let rows = read_source(source_url).await?;
    let mut report = ImportReport {
        read: rows.len() as u64,
        ..ImportReport::default()
    };
    let mut seen = std::collections::HashSet::new();
    for row in rows {
        if !seen.insert((row.order_id, row.vendor_id)) {
            report.duplicates += 1;
            continue;
        }
        let status = if row.status.is_empty() {
            report.unknown_status += 1;
            ShipmentStatus::Booking
        } else {
            row.status.parse().unwrap_or(ShipmentStatus::Booking)
        };
        let method = row.method.parse().unwrap_or(ShipmentMethod::Koiki);
        let label = match (labels_dir, row.label_url.is_empty()) {
            (Some(dir), false) => std::fs::read(dir.join(&row.label_url)).ok(),
            _ => None,
        };
        let updated = row.updated_at.unwrap_or_else(Utc::now);
        // The original mailed the label (or the error) at booking.
        let mailed = status != ShipmentStatus::Booking;
        if dry_run {
            let mut b = SqlBuilder::new(
                target.backend(),
                "SELECT id FROM shipments WHERE order_id = ".into(),
            );
            b.param(row.order_id.into());
            b.sql.push_str(" AND vendor_id = ");
            b.param(row.vendor_id.into());
            if target.conn().query_one_raw(b.build()).await?.is_some() {
                report.already_here += 1;
            } else {
                report.imported += 1;
                report.labels += u64::from(label.is_some());
            }
            continue;
        }
        let mut b = SqlBuilder::new(
            target.backend(),
            "INSERT INTO shipments (order_id, vendor_id, method, status, delivery_id, request, \
             message, notes, label_pdf, tracking_status_created_at, tracking_updated_at, \
             mailed_at, created_at, updated_at) VALUES "
                .into(),
        );
        let has_label = label.is_some();
        b.row(
            0,
            [
                row.order_id.into(),
                row.vendor_id.into(),
                method.as_str().into(),
                status.as_str().into(),
                row.delivery_id.into(),
                row.req_body.into(),
                row.delivery_message.into(),
                row.delivery_notes.into(),
                Value::Bytes(label),
                row.tracking_status_created_at
                    .map(|t| t.to_rfc3339())
                    .into(),
                row.tracking_updated_at.map(millis).into(),
                mailed.then(|| millis(updated)).into(),
                millis(updated).into(),
                millis(updated).into(),
            ],
        );
        b.sql
            .push_str(" ON CONFLICT (order_id, vendor_id) DO NOTHING");
        let inserted = target.conn().execute_raw(b.build()).await?.rows_affected();
        if inserted == 1 {
            report.imported += 1;
            report.labels += u64::from(has_label);
        } else {
            report.already_here += 1;
        }
    }
    Ok(report)
}
