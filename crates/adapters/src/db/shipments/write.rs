//! The shipment store's writes through the [`GroupWriter`]: claims, bookings (the superseded
//! and late ones kept), mail marks and tracking, batched into as few statements as they allow.

use super::{COLUMNS, record};
use crate::db::group::Batch;
use crate::db::millis;
use crate::db::sql::SqlBuilder;
use async_trait::async_trait;
use chrono::Utc;
use domain::error::StoreError;
use domain::model::{
    BookingOutcome, BookingRecorded, PastBookingReason, ShipmentMethod, ShipmentRecord,
    ShipmentStatus,
};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, QueryResult, Statement, Value};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// A write to the shipments table, as the group writer takes it.
#[derive(Clone)]
pub(super) enum Write {
    /// Creates the shipment of (order, vendor) in `BOOKING` unless one exists.
    Claim {
        order_id: i64,
        vendor_id: i64,
        method: ShipmentMethod,
    },
    /// Records a booking's outcome made with booking attempt `attempt`.
    Record {
        id: i64,
        attempt: i64,
        outcome: Arc<BookingOutcome>,
    },
    /// Sets `mailed_at`.
    Mailed { id: i64 },
    /// Any other write: one statement.
    Statement(Statement),
}

/// What a [`Write`] returned.
pub(super) enum Written {
    /// The shipment a claim created (none when it existed) or a mail mark updated.
    Record(Option<ShipmentRecord>),
    /// Where a booking went (none for an unknown shipment).
    Booking(Option<BookingRecorded>),
    /// The rows a statement returned.
    Rows(Vec<QueryResult>),
}

/// Writes a batch: its statements one by one, its claims as one multi-row `INSERT ... ON
/// CONFLICT DO NOTHING`, its bookings as one `UPDATE ... FROM` a list of values, its mail marks
/// as one `UPDATE ... WHERE id IN (...)`.
pub(super) struct ShipmentWrites {
    pub(super) backend: DbBackend,
}

/// `UPDATE shipments SET <the outcome> WHERE id = <id> AND booking_attempt = <attempt>`.
pub(super) fn record_booking_statement(
    backend: DbBackend,
    id: i64,
    attempt: i64,
    outcome: &BookingOutcome,
    now: i64,
) -> SqlBuilder {
    let mut b = SqlBuilder::new(backend, "UPDATE shipments SET status = ".into());
    b.param(outcome.status.as_str().into());
    b.sql.push_str(", delivery_id = ");
    b.param(outcome.delivery_id.clone().into());
    b.sql.push_str(", request = ");
    b.param(outcome.request.clone().into());
    b.sql.push_str(", message = ");
    b.param(outcome.message.clone().into());
    b.sql.push_str(", label_pdf = ");
    b.param(Value::Bytes(outcome.label_pdf.clone()));
    // A new booking's label and request are kept anew (a retention or an erasure cleared the
    // old ones).
    b.sql.push_str(
        ", label_pruned_at = NULL, label_pruned_why = NULL, mailed_at = NULL, updated_at = ",
    );
    b.param(now.into());
    b.sql.push_str(" WHERE id = ");
    b.param(id.into());
    b.sql.push_str(" AND booking_attempt = ");
    b.param(attempt.into());
    b
}

/// Keeps the booking the shipment holds among its past bookings, as superseded, when it has a
/// barcode and still holds `attempt` (run before the booking that replaces it is written).
pub(super) fn keep_superseded_statement(
    backend: DbBackend,
    id: i64,
    attempt: i64,
    now: i64,
) -> SqlBuilder {
    let mut b = SqlBuilder::new(
        backend,
        format!(
            "INSERT INTO shipment_bookings ({PAST_INSERT_COLUMNS}) SELECT id, delivery_id, \
             status, message, request, label_pdf, "
        ),
    );
    b.param(now.into());
    b.sql.push_str(", 'superseded' FROM shipments WHERE id = ");
    b.param(id.into());
    b.sql.push_str(" AND booking_attempt = ");
    b.param(attempt.into());
    b.sql.push_str(" AND delivery_id <> ''");
    b
}

/// Keeps a booking that came back after another attempt took its shipment, as late.
pub(super) fn keep_late_statement(
    backend: DbBackend,
    id: i64,
    outcome: &BookingOutcome,
    now: i64,
) -> SqlBuilder {
    let mut b = SqlBuilder::new(
        backend,
        format!("INSERT INTO shipment_bookings ({PAST_INSERT_COLUMNS}) VALUES "),
    );
    b.row(
        0,
        [
            id.into(),
            outcome.delivery_id.clone().into(),
            outcome.status.as_str().into(),
            outcome.message.clone().into(),
            outcome.request.clone().into(),
            Value::Bytes(outcome.label_pdf.clone()),
            now.into(),
            PastBookingReason::Late.as_str().into(),
        ],
    );
    b
}

pub(super) const PAST_INSERT_COLUMNS: &str =
    "shipment_id, delivery_id, status, message, request, label_pdf, kept_at, reason";

/// Records a booking that did not go on its shipment (the attempt was taken): kept as late,
/// and the shipment as it is returned. `None` for an unknown shipment.
pub(super) async fn keep_late<C: ConnectionTrait>(
    conn: &C,
    backend: DbBackend,
    id: i64,
    outcome: &BookingOutcome,
    now: i64,
) -> Result<Option<BookingRecorded>, DbErr> {
    let mut select = SqlBuilder::new(
        backend,
        format!("SELECT {COLUMNS} FROM shipments WHERE id = "),
    );
    select.param(id.into());
    let Some(row) = conn.query_one_raw(select.build()).await? else {
        return Ok(None);
    };
    conn.execute_raw(keep_late_statement(backend, id, outcome, now).build())
        .await?;
    tracing::error!(
        shipment_id = id,
        barcode = %outcome.delivery_id,
        "shipment {id}: a booking came back after another attempt had taken the shipment; \
         kept among its past bookings with its label"
    );
    Ok(Some(BookingRecorded::Aside(record(&row).map_err(corrupt)?)))
}

/// [`COLUMNS`] qualified with the table's name (for statements that join another).
pub(super) fn qualified_columns() -> String {
    COLUMNS
        .split(", ")
        .map(|c| format!("shipments.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn corrupt(e: StoreError) -> DbErr {
    DbErr::Custom(e.to_string())
}

#[async_trait]
impl Batch for ShipmentWrites {
    type Request = Write;
    type Output = Written;

    fn single_statement(&self, requests: &[Write]) -> bool {
        // One statement per `Statement`, per kind of merged write present, and per booking of a
        // shipment already booked in the batch (written again alone).
        let (mut claims, mut bookings, mut marks, mut alone) = (false, false, false, 0);
        let mut booked = HashSet::new();
        for w in requests {
            match w {
                Write::Statement(_) => alone += 1,
                Write::Claim { .. } => claims = true,
                Write::Record { id, attempt, .. } => {
                    // A retry's booking (attempt > 0) may replace one: written alone, after
                    // keeping the one it replaces.
                    if *attempt > 0 || !booked.insert(*id) {
                        alone += 2;
                    } else {
                        bookings = true;
                    }
                }
                Write::Mailed { .. } => marks = true,
            }
        }
        alone + usize::from(claims) + usize::from(bookings) + usize::from(marks) == 1
    }

    async fn write<C: ConnectionTrait>(
        &self,
        txn: &C,
        requests: &[Write],
    ) -> Result<Vec<Written>, DbErr> {
        let now = millis(Utc::now());
        let mut out: Vec<Option<Written>> = requests.iter().map(|_| None).collect();
        for (i, w) in requests.iter().enumerate() {
            if let Write::Statement(stmt) = w {
                out[i] = Some(Written::Rows(txn.query_all_raw(stmt.clone()).await?));
            }
        }

        // Claims: the first request for a pair goes into the INSERT; a later one in the same batch
        // finds the shipment the first created.
        let mut insert = SqlBuilder::new(
            self.backend,
            "INSERT INTO shipments (order_id, vendor_id, method, status, created_at, updated_at) \
             VALUES "
                .into(),
        );
        let mut claimants: HashMap<(i64, i64), usize> = HashMap::new();
        for (i, w) in requests.iter().enumerate() {
            let Write::Claim {
                order_id,
                vendor_id,
                method,
            } = w
            else {
                continue;
            };
            if claimants.contains_key(&(*order_id, *vendor_id)) {
                out[i] = Some(Written::Record(None));
                continue;
            }
            insert.row(
                claimants.len(),
                [
                    (*order_id).into(),
                    (*vendor_id).into(),
                    method.as_str().into(),
                    ShipmentStatus::Booking.as_str().into(),
                    now.into(),
                    now.into(),
                ],
            );
            claimants.insert((*order_id, *vendor_id), i);
        }
        if !claimants.is_empty() {
            insert
                .sql
                .push_str(" ON CONFLICT (order_id, vendor_id) DO NOTHING RETURNING ");
            insert.sql.push_str(COLUMNS);
            let mut created = HashMap::new();
            for row in txn.query_all_raw(insert.build()).await? {
                let r = record(&row).map_err(corrupt)?;
                created.insert((r.order_id, r.vendor_id), r);
            }
            for (pair, i) in claimants {
                out[i] = Some(Written::Record(created.remove(&pair)));
            }
        }

        // First bookings (attempt 0, on a claim: nothing to replace): one UPDATE from a list of
        // values, for the shipments that still hold attempt 0. A retry's booking, and a shipment
        // named twice, is written alone, after.
        let mut values = SqlBuilder::new(
            self.backend,
            "WITH v (v_id, v_status, v_delivery_id, v_request, v_message, v_label, v_at) AS \
             (VALUES "
                .into(),
        );
        let mut bookings: HashMap<i64, usize> = HashMap::new();
        let mut again = Vec::new();
        for (i, w) in requests.iter().enumerate() {
            let Write::Record {
                id,
                attempt,
                outcome,
            } = w
            else {
                continue;
            };
            if *attempt > 0 || bookings.contains_key(id) {
                again.push(i);
                continue;
            }
            values.row(
                bookings.len(),
                [
                    (*id).into(),
                    outcome.status.as_str().into(),
                    outcome.delivery_id.clone().into(),
                    outcome.request.clone().into(),
                    outcome.message.clone().into(),
                    Value::Bytes(outcome.label_pdf.clone()),
                    now.into(),
                ],
            );
            bookings.insert(*id, i);
        }
        if !bookings.is_empty() {
            values.sql.push_str(
                ") UPDATE shipments SET status = v.v_status, delivery_id = v.v_delivery_id, \
                 request = v.v_request, message = v.v_message, label_pdf = v.v_label, \
                 mailed_at = NULL, updated_at = v.v_at FROM v WHERE shipments.id = v.v_id \
                 AND shipments.booking_attempt = 0 RETURNING ",
            );
            values.sql.push_str(&qualified_columns());
            let mut recorded = HashMap::new();
            for row in txn.query_all_raw(values.build()).await? {
                let r = record(&row).map_err(corrupt)?;
                recorded.insert(r.id, r);
            }
            for (id, i) in bookings {
                out[i] = Some(Written::Booking(match recorded.remove(&id) {
                    Some(r) => Some(BookingRecorded::Current(r)),
                    // A retry took the shipment meanwhile (or there is none).
                    None => {
                        let Write::Record { outcome, .. } = &requests[i] else {
                            continue;
                        };
                        keep_late(txn, self.backend, id, outcome, now).await?
                    }
                }));
            }
        }
        for i in again {
            if let Write::Record {
                id,
                attempt,
                outcome,
            } = &requests[i]
            {
                let (id, attempt) = (*id, *attempt);
                txn.execute_raw(keep_superseded_statement(self.backend, id, attempt, now).build())
                    .await?;
                let mut b = record_booking_statement(self.backend, id, attempt, outcome, now);
                b.sql.push_str(" RETURNING ");
                b.sql.push_str(COLUMNS);
                let row = txn.query_all_raw(b.build()).await?;
                out[i] = Some(Written::Booking(match row.first() {
                    Some(row) => Some(BookingRecorded::Current(record(row).map_err(corrupt)?)),
                    None => keep_late(txn, self.backend, id, outcome, now).await?,
                }));
            }
        }

        // Mail marks.
        let mut update = SqlBuilder::new(self.backend, "UPDATE shipments SET mailed_at = ".into());
        update.param(now.into());
        update.sql.push_str(" WHERE id IN ");
        let ids: Vec<Value> = requests
            .iter()
            .filter_map(|w| match w {
                Write::Mailed { id } => Some((*id).into()),
                _ => None,
            })
            .collect();
        if !ids.is_empty() {
            update.row(0, ids);
            update.sql.push_str(" RETURNING ");
            update.sql.push_str(COLUMNS);
            let mut mailed = HashMap::new();
            for row in txn.query_all_raw(update.build()).await? {
                let r = record(&row).map_err(corrupt)?;
                mailed.insert(r.id, r);
            }
            for (i, w) in requests.iter().enumerate() {
                if let Write::Mailed { id } = w {
                    out[i] = Some(Written::Record(mailed.get(id).cloned()));
                }
            }
        }
        out.into_iter()
            .map(|o| o.ok_or_else(|| DbErr::Custom("a write was not written".into())))
            .collect()
    }
}
