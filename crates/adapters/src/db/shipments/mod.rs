//! The shipment store on SQL: one row per (order, vendor), unique; the label PDF kept in the row.
//!
//! Writes go through a [`GroupWriter`]: the claims, bookings and mail marks of many jobs at once
//! share one commit, the claims waiting together are one multi-row `INSERT` and the mail marks one
//! `UPDATE`. Each write returns the row it wrote (`RETURNING`), so nothing is read back.

mod prune;
mod write;

use crate::db::group::GroupWriter;
use crate::db::sql::SqlBuilder;
use crate::db::{Database, boxed, from_millis, millis};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::error::StoreError;
use domain::model::{
    BookingOutcome, BookingRecorded, Claim, MailUpdate, PastBooking, PruneReason, Pruned,
    ShipmentFilter, ShipmentMethod, ShipmentRecord, ShipmentStatus,
};
use domain::ports::ShipmentStore;
use sea_orm::{ConnectionTrait, DbErr, QueryResult};
use std::sync::{Arc, OnceLock};
use write::*;

pub(super) const COLUMNS: &str = "id, order_id, vendor_id, method, status, delivery_id, request, message, \
     notes, label_pdf IS NOT NULL, tracking_status_created_at, tracking_updated_at, mailed_at, \
     created_at, updated_at, booking_attempt, order_withdrawn, noted_barcode, \
     tracking_unmailed_since, mail_message_id, mail_state, mail_state_at, label_pruned_at, \
     label_pruned_why";

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

pub(super) fn unavailable(e: DbErr) -> StoreError {
    StoreError::Unavailable(boxed(e))
}

/// A `label_pdf IS NOT NULL` column: a boolean on Postgres, an integer on SQLite.
fn flag(row: &QueryResult, index: usize) -> Result<bool, DbErr> {
    row.try_get_by_index::<bool>(index)
        .or_else(|_| row.try_get_by_index::<i64>(index).map(|v| v != 0))
}

/// A status column read back into its enum.
fn parsed<T: std::str::FromStr<Err = String>>(
    row: &QueryResult,
    index: usize,
) -> Result<T, StoreError> {
    let text: String = row
        .try_get_by_index(index)
        .map_err(|e| StoreError::Unexpected(boxed(e)))?;
    text.parse()
        .map_err(|e: String| StoreError::Unexpected(e.into()))
}

pub(super) fn past_booking(row: &QueryResult) -> Result<PastBooking, StoreError> {
    let get = |e: DbErr| StoreError::Unexpected(boxed(e));
    Ok(PastBooking {
        id: row.try_get_by_index(0).map_err(get)?,
        shipment_id: row.try_get_by_index(1).map_err(get)?,
        delivery_id: row.try_get_by_index(2).map_err(get)?,
        status: parsed(row, 3)?,
        message: row.try_get_by_index(4).map_err(get)?,
        has_label: flag(row, 5).map_err(get)?,
        kept_at: from_millis(row.try_get_by_index(6).map_err(get)?),
        reason: parsed(row, 7)?,
    })
}

pub(super) fn record(row: &QueryResult) -> Result<ShipmentRecord, StoreError> {
    let get = |e: DbErr| StoreError::Unexpected(boxed(e));
    Ok(ShipmentRecord {
        id: row.try_get_by_index(0).map_err(get)?,
        order_id: row.try_get_by_index(1).map_err(get)?,
        vendor_id: row.try_get_by_index(2).map_err(get)?,
        method: parsed(row, 3)?,
        status: parsed(row, 4)?,
        delivery_id: row.try_get_by_index(5).map_err(get)?,
        request: row.try_get_by_index(6).map_err(get)?,
        message: row.try_get_by_index(7).map_err(get)?,
        notes: row.try_get_by_index(8).map_err(get)?,
        has_label: flag(row, 9).map_err(get)?,
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
        order_withdrawn: row.try_get_by_index(16).map_err(get)?,
        noted_barcode: row.try_get_by_index(17).map_err(get)?,
        tracking_unmailed_since: row
            .try_get_by_index::<Option<i64>>(18)
            .map_err(get)?
            .map(from_millis),
        mail_message_id: row.try_get_by_index(19).map_err(get)?,
        mail_state: row
            .try_get_by_index::<Option<String>>(20)
            .map_err(get)?
            .map(|s| s.parse())
            .transpose()
            .map_err(|e: String| StoreError::Unexpected(e.into()))?,
        mail_state_at: row
            .try_get_by_index::<Option<i64>>(21)
            .map_err(get)?
            .map(from_millis),
        label_pruned: match (
            row.try_get_by_index::<Option<i64>>(22).map_err(get)?,
            row.try_get_by_index::<Option<String>>(23).map_err(get)?,
        ) {
            (Some(at), Some(why)) => Some(Pruned {
                at: from_millis(at),
                why: why
                    .parse()
                    .map_err(|e: String| StoreError::Unexpected(e.into()))?,
            }),
            _ => None,
        },
    })
}

/// `AND column = value`, or `AND column IS NULL` for `None`.
fn matches_or_null(b: &mut SqlBuilder, column: &str, value: Option<String>) {
    match value {
        Some(v) => {
            b.sql.push_str(&format!(" AND {column} = "));
            b.param(v.into());
        }
        None => b.sql.push_str(&format!(" AND {column} IS NULL")),
    }
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
        let mut b = SqlBuilder::new(
            self.db.backend(),
            "UPDATE shipments SET tracking_unmailed_since = CASE WHEN \
             tracking_unmailed_since IS NULL AND (status <> "
                .into(),
        );
        // The right-hand side reads the row as it was: the change and its mail's due mark are
        // one write.
        b.param(status.as_str().into());
        b.sql.push_str(" OR message <> ");
        b.param(message.into());
        b.sql.push_str(") THEN ");
        b.param(now.into());
        b.sql
            .push_str(" ELSE tracking_unmailed_since END, status = ");
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

    async fn mark_tracking_mailed(
        &self,
        id: i64,
        since: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut b = SqlBuilder::new(
            self.db.backend(),
            "UPDATE shipments SET tracking_unmailed_since = NULL WHERE id = ".into(),
        );
        b.param(id.into());
        b.sql.push_str(" AND tracking_unmailed_since = ");
        b.param(millis(since).into());
        b.sql.push_str(" RETURNING id");
        Ok(!self.write_statement(b).await?.is_empty())
    }

    async fn mark_mailed(&self, id: i64) -> Result<ShipmentRecord, StoreError> {
        match self.write(Write::Mailed { id }).await? {
            Written::Record(Some(r)) => Ok(r),
            _ => Err(StoreError::NotFound(id)),
        }
    }

    async fn update_mail(
        &self,
        id: i64,
        u: &MailUpdate,
    ) -> Result<Option<ShipmentRecord>, StoreError> {
        let mut b = SqlBuilder::new(
            self.db.backend(),
            "UPDATE shipments SET mail_message_id = ".into(),
        );
        b.param(u.message_id.clone().into());
        b.sql.push_str(", mail_state = ");
        b.param(u.state.map(|s| s.as_str().to_owned()).into());
        b.sql.push_str(", mail_state_at = ");
        b.param(u.at.map(millis).into());
        if u.mailed {
            b.sql.push_str(", mailed_at = ");
            b.param(millis(Utc::now()).into());
        }
        b.sql.push_str(" WHERE id = ");
        b.param(id.into());
        matches_or_null(&mut b, "mail_message_id", u.seen_message_id.clone());
        matches_or_null(
            &mut b,
            "mail_state",
            u.seen_state.map(|s| s.as_str().to_owned()),
        );
        if let Some(r) = self.write_record(b).await? {
            return Ok(Some(r));
        }
        match self.get(id).await? {
            Some(_) => Ok(None),
            None => Err(StoreError::NotFound(id)),
        }
    }

    async fn mark_withdrawn(
        &self,
        order_id: i64,
        status: &str,
    ) -> Result<Vec<ShipmentRecord>, StoreError> {
        let mut b = SqlBuilder::new(
            self.db.backend(),
            "UPDATE shipments SET order_withdrawn = ".into(),
        );
        b.param(status.to_owned().into());
        b.sql.push_str(", updated_at = ");
        b.param(millis(Utc::now()).into());
        b.sql.push_str(" WHERE order_id = ");
        b.param(order_id.into());
        b.sql
            .push_str(" AND delivery_id <> '' AND order_withdrawn IS NULL RETURNING ");
        b.sql.push_str(COLUMNS);
        self.write_statement(b).await?.iter().map(record).collect()
    }

    async fn mark_noted(&self, id: i64, barcode: &str) -> Result<ShipmentRecord, StoreError> {
        let mut b = SqlBuilder::new(
            self.db.backend(),
            "UPDATE shipments SET noted_barcode = ".into(),
        );
        b.param(barcode.to_owned().into());
        b.sql.push_str(" WHERE id = ");
        b.param(id.into());
        self.write_record(b).await?.ok_or(StoreError::NotFound(id))
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
        if let Some(message_id) = &filter.mail_message_id {
            b.sql.push_str(" AND mail_message_id = ");
            b.param(message_id.clone().into());
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

    async fn prune_labels(
        &self,
        delivered_before: Option<DateTime<Utc>>,
        booked_before: Option<DateTime<Utc>>,
        limit: usize,
    ) -> Result<u64, StoreError> {
        self.prune_expired(delivered_before, booked_before, limit)
            .await
    }

    async fn clear_labels(&self, ids: &[i64], why: PruneReason) -> Result<u64, StoreError> {
        self.clear_ids(ids, why).await
    }
}
