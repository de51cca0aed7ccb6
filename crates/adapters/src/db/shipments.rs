//! The shipment store on SQL: one row per (order, vendor), unique; the label PDF kept in the row.
//!
//! Writes go through a [`GroupWriter`]: the claims, bookings and mail marks of many jobs at once
//! share one commit, the claims waiting together are one multi-row `INSERT` and the mail marks one
//! `UPDATE`. Each write returns the row it wrote (`RETURNING`), so nothing is read back.

use super::group::{Batch, GroupWriter};
use super::sql::SqlBuilder;
use super::{Database, boxed, from_millis, millis};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::error::StoreError;
use domain::model::{
    BookingOutcome, BookingRecorded, Claim, PastBooking, PastBookingReason, ShipmentFilter,
    ShipmentMethod, ShipmentRecord, ShipmentStatus,
};
use domain::ports::ShipmentStore;
use sea_orm::{ConnectionTrait, DbBackend, DbErr, QueryResult, Statement, Value};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};

const COLUMNS: &str = "id, order_id, vendor_id, method, status, delivery_id, request, message, \
     notes, label_pdf IS NOT NULL, tracking_status_created_at, tracking_updated_at, mailed_at, \
     created_at, updated_at, booking_attempt";

/// A write to the shipments table, as the group writer takes it.
#[derive(Clone)]
enum Write {
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
enum Written {
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
struct ShipmentWrites {
    backend: DbBackend,
}

/// `UPDATE shipments SET <the outcome> WHERE id = <id> AND booking_attempt = <attempt>`.
fn record_booking_statement(
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
    b.sql.push_str(", mailed_at = NULL, updated_at = ");
    b.param(now.into());
    b.sql.push_str(" WHERE id = ");
    b.param(id.into());
    b.sql.push_str(" AND booking_attempt = ");
    b.param(attempt.into());
    b
}

/// Keeps the booking the shipment holds among its past bookings, as superseded, when it has a
/// barcode and still holds `attempt` (run before the booking that replaces it is written).
fn keep_superseded_statement(backend: DbBackend, id: i64, attempt: i64, now: i64) -> SqlBuilder {
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
fn keep_late_statement(
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

const PAST_INSERT_COLUMNS: &str =
    "shipment_id, delivery_id, status, message, request, label_pdf, kept_at, reason";

/// Records a booking that did not go on its shipment (the attempt was taken): kept as late,
/// and the shipment as it is returned. `None` for an unknown shipment.
async fn keep_late<C: ConnectionTrait>(
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
fn qualified_columns() -> String {
    COLUMNS
        .split(", ")
        .map(|c| format!("shipments.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn corrupt(e: StoreError) -> DbErr {
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

/// The shipments on the connector's SQL database.
#[derive(Debug, Clone)]
pub struct SqlShipmentStore {
    db: Database,
    /// Started on the first write (so that a store can be made outside a runtime).
    writer: Arc<OnceLock<GroupWriter<ShipmentWrites>>>,
}

impl SqlShipmentStore {
    /// A store on `db`.
    pub fn new(db: Database) -> Self {
        SqlShipmentStore {
            db,
            writer: Arc::default(),
        }
    }

    /// Runs a write, group-committed with other callers'.
    async fn write(&self, w: Write) -> Result<Written, StoreError> {
        let writer = self.writer.get_or_init(|| {
            GroupWriter::start(
                self.db.clone(),
                ShipmentWrites {
                    backend: self.db.backend(),
                },
            )
        });
        writer.run(w).await.map_err(unavailable)
    }

    /// Runs a statement; the rows it returned.
    async fn write_statement(&self, b: SqlBuilder) -> Result<Vec<QueryResult>, StoreError> {
        match self.write(Write::Statement(b.build())).await? {
            Written::Rows(rows) => Ok(rows),
            Written::Record(_) | Written::Booking(_) => {
                Err(StoreError::Unexpected("rows expected".into()))
            }
        }
    }

    /// Runs a statement that returns the shipment's columns; the shipment it wrote, if any.
    async fn write_record(&self, mut b: SqlBuilder) -> Result<Option<ShipmentRecord>, StoreError> {
        b.sql.push_str(" RETURNING ");
        b.sql.push_str(COLUMNS);
        self.write_statement(b)
            .await?
            .first()
            .map(record)
            .transpose()
    }

    async fn one(&self, b: SqlBuilder) -> Result<Option<ShipmentRecord>, StoreError> {
        let row = self
            .db
            .reader()
            .query_one_raw(b.build())
            .await
            .map_err(unavailable)?;
        row.map(|r| record(&r)).transpose()
    }

    async fn many(&self, b: SqlBuilder) -> Result<Vec<ShipmentRecord>, StoreError> {
        let rows = self
            .db
            .reader()
            .query_all_raw(b.build())
            .await
            .map_err(unavailable)?;
        rows.iter().map(record).collect()
    }

    fn select(&self, tail: &str) -> SqlBuilder {
        SqlBuilder::new(
            self.db.backend(),
            format!("SELECT {COLUMNS} FROM shipments {tail}"),
        )
    }
}

fn unavailable(e: DbErr) -> StoreError {
    StoreError::Unavailable(boxed(e))
}

fn past_booking(row: &QueryResult) -> Result<PastBooking, StoreError> {
    let get = |e: DbErr| StoreError::Unexpected(boxed(e));
    let status: String = row.try_get_by_index(3).map_err(get)?;
    let reason: String = row.try_get_by_index(7).map_err(get)?;
    let has_label: bool = row
        .try_get_by_index::<bool>(5)
        .or_else(|_| row.try_get_by_index::<i64>(5).map(|v| v != 0))
        .map_err(get)?;
    Ok(PastBooking {
        id: row.try_get_by_index(0).map_err(get)?,
        shipment_id: row.try_get_by_index(1).map_err(get)?,
        delivery_id: row.try_get_by_index(2).map_err(get)?,
        status: status
            .parse()
            .map_err(|e: String| StoreError::Unexpected(e.into()))?,
        message: row.try_get_by_index(4).map_err(get)?,
        has_label,
        kept_at: from_millis(row.try_get_by_index(6).map_err(get)?),
        reason: reason
            .parse()
            .map_err(|e: String| StoreError::Unexpected(e.into()))?,
    })
}

fn record(row: &QueryResult) -> Result<ShipmentRecord, StoreError> {
    let get = |e: DbErr| StoreError::Unexpected(boxed(e));
    let method: String = row.try_get_by_index(3).map_err(get)?;
    let status: String = row.try_get_by_index(4).map_err(get)?;
    let has_label: bool = row
        .try_get_by_index::<bool>(9)
        .or_else(|_| row.try_get_by_index::<i64>(9).map(|v| v != 0))
        .map_err(get)?;
    Ok(ShipmentRecord {
        id: row.try_get_by_index(0).map_err(get)?,
        order_id: row.try_get_by_index(1).map_err(get)?,
        vendor_id: row.try_get_by_index(2).map_err(get)?,
        method: method
            .parse()
            .map_err(|e: String| StoreError::Unexpected(e.into()))?,
        status: status
            .parse()
            .map_err(|e: String| StoreError::Unexpected(e.into()))?,
        delivery_id: row.try_get_by_index(5).map_err(get)?,
        request: row.try_get_by_index(6).map_err(get)?,
        message: row.try_get_by_index(7).map_err(get)?,
        notes: row.try_get_by_index(8).map_err(get)?,
        has_label,
        tracking_status_created_at: row.try_get_by_index(10).map_err(get)?,
        tracking_updated_at: row
            .try_get_by_index::<Option<i64>>(11)
            .map_err(get)?
            .map(from_millis),
        mailed_at: row
            .try_get_by_index::<Option<i64>>(12)
            .map_err(get)?
            .map(from_millis),
        created_at: from_millis(row.try_get_by_index(13).map_err(get)?),
        updated_at: from_millis(row.try_get_by_index(14).map_err(get)?),
        booking_attempt: row.try_get_by_index(15).map_err(get)?,
    })
}

#[async_trait]
impl ShipmentStore for SqlShipmentStore {
    async fn claim(
        &self,
        order_id: i64,
        vendor_id: i64,
        method: ShipmentMethod,
    ) -> Result<Claim, StoreError> {
        let claim = Write::Claim {
            order_id,
            vendor_id,
            method,
        };
        if let Written::Record(Some(claimed)) = self.write(claim).await? {
            return Ok(Claim::Claimed(claimed));
        }
        let mut b = self.select("WHERE order_id = ");
        b.param(order_id.into());
        b.sql.push_str(" AND vendor_id = ");
        b.param(vendor_id.into());
        let existing = self
            .one(b)
            .await?
            .ok_or_else(|| StoreError::Unexpected("claimed shipment not found".into()))?;
        Ok(Claim::Exists(existing))
    }

    async fn release(&self, id: i64) -> Result<(), StoreError> {
        let mut b = SqlBuilder::new(
            self.db.backend(),
            "DELETE FROM shipments WHERE id = ".into(),
        );
        b.param(id.into());
        b.sql.push_str(" AND status = ");
        b.param(ShipmentStatus::Booking.as_str().into());
        b.sql.push_str(" AND booking_attempt = 0 RETURNING id");
        self.write_statement(b).await?;
        Ok(())
    }

    async fn record_booking(
        &self,
        id: i64,
        attempt: i64,
        outcome: &BookingOutcome,
    ) -> Result<BookingRecorded, StoreError> {
        let outcome = Arc::new(outcome.clone());
        match self
            .write(Write::Record {
                id,
                attempt,
                outcome,
            })
            .await?
        {
            Written::Booking(Some(r)) => Ok(r),
            _ => Err(StoreError::NotFound(id)),
        }
    }

    async fn reserve_booking(
        &self,
        id: i64,
        from: ShipmentStatus,
        attempt: i64,
        stale_before: DateTime<Utc>,
    ) -> Result<Option<ShipmentRecord>, StoreError> {
        let mut b = SqlBuilder::new(
            self.db.backend(),
            "UPDATE shipments SET status = 'BOOKING', booking_attempt = booking_attempt + 1, \
             updated_at = "
                .into(),
        );
        b.param(millis(Utc::now()).into());
        b.sql.push_str(" WHERE id = ");
        b.param(id.into());
        b.sql.push_str(" AND status = ");
        b.param(from.as_str().into());
        b.sql.push_str(" AND booking_attempt = ");
        b.param(attempt.into());
        b.sql.push_str(" AND (status <> 'BOOKING' OR updated_at < ");
        b.param(millis(stale_before).into());
        b.sql.push(')');
        self.write_record(b).await
    }

    async fn start_booking(
        &self,
        id: i64,
        attempt: i64,
        from: ShipmentStatus,
    ) -> Result<bool, StoreError> {
        let mut b = SqlBuilder::new(
            self.db.backend(),
            "UPDATE shipments SET status = 'BOOKING', updated_at = ".into(),
        );
        b.param(millis(Utc::now()).into());
        b.sql.push_str(" WHERE id = ");
        b.param(id.into());
        b.sql.push_str(" AND booking_attempt = ");
        b.param(attempt.into());
        b.sql.push_str(" AND status IN ('BOOKING', ");
        b.param(from.as_str().into());
        b.sql.push_str(") RETURNING id");
        Ok(!self.write_statement(b).await?.is_empty())
    }

    async fn end_booking(
        &self,
        id: i64,
        attempt: i64,
        to: ShipmentStatus,
    ) -> Result<bool, StoreError> {
        let mut b = SqlBuilder::new(self.db.backend(), "UPDATE shipments SET status = ".into());
        b.param(to.as_str().into());
        b.sql.push_str(", updated_at = ");
        b.param(millis(Utc::now()).into());
        b.sql.push_str(" WHERE id = ");
        b.param(id.into());
        b.sql.push_str(" AND booking_attempt = ");
        b.param(attempt.into());
        b.sql.push_str(" AND status = 'BOOKING' RETURNING id");
        Ok(!self.write_statement(b).await?.is_empty())
    }

    async fn past_bookings(&self, id: i64) -> Result<Vec<PastBooking>, StoreError> {
        let mut b = SqlBuilder::new(
            self.db.backend(),
            "SELECT id, shipment_id, delivery_id, status, message, label_pdf IS NOT NULL, \
             kept_at, reason FROM shipment_bookings WHERE shipment_id = "
                .into(),
        );
        b.param(id.into());
        b.sql.push_str(" ORDER BY id");
        let rows = self
            .db
            .reader()
            .query_all_raw(b.build())
            .await
            .map_err(unavailable)?;
        rows.iter().map(past_booking).collect()
    }

    async fn past_label(&self, id: i64, past_id: i64) -> Result<Option<Vec<u8>>, StoreError> {
        let mut b = SqlBuilder::new(
            self.db.backend(),
            "SELECT label_pdf FROM shipment_bookings WHERE shipment_id = ".into(),
        );
        b.param(id.into());
        b.sql.push_str(" AND id = ");
        b.param(past_id.into());
        let row = self
            .db
            .reader()
            .query_one_raw(b.build())
            .await
            .map_err(unavailable)?;
        match row {
            Some(r) => r
                .try_get_by_index::<Option<Vec<u8>>>(0)
                .map_err(|e| StoreError::Unexpected(boxed(e))),
            None => Ok(None),
        }
    }

    async fn record_tracking(
        &self,
        id: i64,
        status: ShipmentStatus,
        message: &str,
        notes: &str,
        event_date: Option<String>,
    ) -> Result<ShipmentRecord, StoreError> {
        let now = millis(Utc::now());
        let mut b = SqlBuilder::new(self.db.backend(), "UPDATE shipments SET status = ".into());
        b.param(status.as_str().into());
        b.sql.push_str(", message = ");
        b.param(message.into());
        b.sql.push_str(", notes = ");
        b.param(notes.into());
        b.sql.push_str(", tracking_status_created_at = ");
        b.param(event_date.into());
        b.sql.push_str(", tracking_updated_at = ");
        b.param(now.into());
        b.sql.push_str(", updated_at = ");
        b.param(now.into());
        b.sql.push_str(" WHERE id = ");
        b.param(id.into());
        // A shipment being booked again is left alone: its tracking is the new booking's.
        b.sql.push_str(" AND status <> 'BOOKING'");
        if let Some(r) = self.write_record(b).await? {
            return Ok(r);
        }
        self.get(id).await?.ok_or(StoreError::NotFound(id))
    }

    async fn mark_mailed(&self, id: i64) -> Result<ShipmentRecord, StoreError> {
        match self.write(Write::Mailed { id }).await? {
            Written::Record(Some(r)) => Ok(r),
            _ => Err(StoreError::NotFound(id)),
        }
    }

    async fn get(&self, id: i64) -> Result<Option<ShipmentRecord>, StoreError> {
        let mut b = self.select("WHERE id = ");
        b.param(id.into());
        self.one(b).await
    }

    async fn label(&self, id: i64) -> Result<Option<Vec<u8>>, StoreError> {
        let mut b = SqlBuilder::new(
            self.db.backend(),
            "SELECT label_pdf FROM shipments WHERE id = ".into(),
        );
        b.param(id.into());
        let row = self
            .db
            .reader()
            .query_one_raw(b.build())
            .await
            .map_err(unavailable)?;
        match row {
            Some(r) => r
                .try_get_by_index::<Option<Vec<u8>>>(0)
                .map_err(|e| StoreError::Unexpected(boxed(e))),
            None => Ok(None),
        }
    }

    async fn of_order(&self, order_id: i64) -> Result<Vec<ShipmentRecord>, StoreError> {
        let mut b = self.select("WHERE order_id = ");
        b.param(order_id.into());
        b.sql.push_str(" ORDER BY id");
        self.many(b).await
    }

    async fn transition(
        &self,
        id: i64,
        from: ShipmentStatus,
        to: ShipmentStatus,
    ) -> Result<bool, StoreError> {
        let mut b = SqlBuilder::new(self.db.backend(), "UPDATE shipments SET status = ".into());
        b.param(to.as_str().into());
        b.sql.push_str(", updated_at = ");
        b.param(millis(Utc::now()).into());
        b.sql.push_str(" WHERE id = ");
        b.param(id.into());
        b.sql.push_str(" AND status = ");
        b.param(from.as_str().into());
        b.sql.push_str(" RETURNING id");
        Ok(!self.write_statement(b).await?.is_empty())
    }

    async fn list(&self, filter: &ShipmentFilter) -> Result<Vec<ShipmentRecord>, StoreError> {
        let mut b = self.select("WHERE 1 = 1");
        if let Some(order_id) = filter.order_id {
            b.sql.push_str(" AND order_id = ");
            b.param(order_id.into());
        }
        if let Some(vendor_id) = filter.vendor_id {
            b.sql.push_str(" AND vendor_id = ");
            b.param(vendor_id.into());
        }
        if let Some(status) = filter.status {
            b.sql.push_str(" AND status = ");
            b.param(status.as_str().into());
        }
        if let Some(delivery_id) = &filter.delivery_id {
            b.sql.push_str(" AND delivery_id = ");
            b.param(delivery_id.clone().into());
        }
        if let Some(before) = filter.before_id {
            b.sql.push_str(" AND id < ");
            b.param(before.into());
        }
        let limit = if filter.limit == 0 {
            50
        } else {
            filter.limit.min(10_000)
        };
        b.sql.push_str(&format!(" ORDER BY id DESC LIMIT {limit}"));
        self.many(b).await
    }

    async fn to_track(&self) -> Result<Vec<ShipmentRecord>, StoreError> {
        let mut b = self.select("WHERE delivery_id <> '' AND status NOT IN ('BOOKING', ");
        b.param(ShipmentStatus::Delivered.as_str().into());
        b.sql.push(')');
        b.sql.push_str(" ORDER BY id");
        self.many(b).await
    }
}
