//! The event log on SQL: the `events` table (migration M0006), appended by every process,
//! read by id.
//!
//! The inbox writes its `webhook_received` events itself, in the group-commit transaction that
//! stores the webhooks (no extra round trip on the intake path); the workers append theirs in
//! batches through [`SqlEventLog::append`]. Readers are woken at once by writes in their own
//! process, and look again every poll otherwise.

use super::sql::SqlBuilder;
use super::{Database, boxed, from_millis, millis};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::error::EventError;
use domain::model::{Event, EventId, NewEvent};
use domain::ports::EventLog;
use sea_orm::{ConnectionTrait, DbErr, QueryResult, Value};
use std::sync::LazyLock;
use std::time::Duration;
use tokio::sync::Notify;

/// Rows per `INSERT` (7 values each: well under SQLite's and Postgres's parameter limits).
const APPEND_CHUNK: usize = 500;

/// Notified after events are committed by this process (the inbox's writer or an append).
static WRITTEN: LazyLock<Notify> = LazyLock::new(Notify::new);

/// Wakes the readers of this process: events were committed.
pub(crate) fn notify_written() {
    WRITTEN.notify_waiters();
}

/// The columns an event row is inserted with, in [`event_values`]' order.
pub(crate) const EVENT_COLUMNS: &str =
    "at, kind, webhook_id, job_id, shipment_id, order_id, vendor_id, message";

/// The values of an event row, for `INSERT INTO events (EVENT_COLUMNS)`.
pub(crate) fn event_values(e: &NewEvent) -> [Value; 8] {
    [
        millis(e.at).into(),
        e.kind.as_str().into(),
        e.webhook_id.into(),
        e.job_id.into(),
        e.shipment_id.into(),
        e.order_id.into(),
        e.vendor_id.into(),
        e.message.clone().into(),
    ]
}

/// The event log on the connector's SQL database.
#[derive(Debug, Clone)]
pub struct SqlEventLog {
    db: Database,
}

impl SqlEventLog {
    /// The log on `db`.
    pub fn new(db: Database) -> Self {
        SqlEventLog { db }
    }
}

fn unavailable(e: DbErr) -> EventError {
    EventError::Unavailable(boxed(e))
}

fn event(row: &QueryResult) -> Result<Event, EventError> {
    let get_i64 = |i: usize| -> Result<Option<i64>, EventError> {
        row.try_get_by_index(i).map_err(unavailable)
    };
    let id: i64 = row.try_get_by_index(0).map_err(unavailable)?;
    let at: i64 = row.try_get_by_index(1).map_err(unavailable)?;
    let kind: String = row.try_get_by_index(2).map_err(unavailable)?;
    Ok(Event {
        id: EventId(id),
        data: NewEvent {
            at: from_millis(at),
            kind: kind
                .parse()
                .map_err(|e: String| EventError::Unexpected(e.into()))?,
            webhook_id: get_i64(3)?,
            job_id: get_i64(4)?,
            shipment_id: get_i64(5)?,
            order_id: get_i64(6)?,
            vendor_id: get_i64(7)?,
            message: row.try_get_by_index(8).map_err(unavailable)?,
        },
    })
}

#[async_trait]
impl EventLog for SqlEventLog {
    async fn append(&self, events: &[NewEvent]) -> Result<(), EventError> {
        for chunk in events.chunks(APPEND_CHUNK) {
            let mut insert = SqlBuilder::new(
                self.db.backend(),
                format!("INSERT INTO events ({EVENT_COLUMNS}) VALUES "),
            );
            for (i, e) in chunk.iter().enumerate() {
                insert.row(i, event_values(e));
            }
            self.db.write(insert.build()).await.map_err(unavailable)?;
        }
        if !events.is_empty() {
            notify_written();
        }
        Ok(())
    }

    async fn read(
        &self,
        after: EventId,
        vendor_id: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Event>, EventError> {
        let mut select = SqlBuilder::new(
            self.db.backend(),
            format!("SELECT id, {EVENT_COLUMNS} FROM events WHERE id > "),
        );
        select.param(after.0.into());
        if let Some(vendor) = vendor_id {
            select.sql.push_str(" AND vendor_id = ");
            select.param(vendor.into());
        }
        select.sql.push_str(" ORDER BY id LIMIT ");
        select.param(i64::try_from(limit.max(1)).unwrap_or(i64::MAX).into());
        let rows = self
            .db
            .reader()
            .query_all_raw(select.build())
            .await
            .map_err(unavailable)?;
        rows.iter().map(event).collect()
    }

    async fn last_id(&self) -> Result<EventId, EventError> {
        let select = SqlBuilder::new(
            self.db.backend(),
            "SELECT COALESCE(MAX(id), 0) FROM events".into(),
        );
        let row = self
            .db
            .reader()
            .query_one_raw(select.build())
            .await
            .map_err(unavailable)?
            .ok_or_else(|| EventError::Unexpected("no row".into()))?;
        Ok(EventId(row.try_get_by_index(0).map_err(unavailable)?))
    }

    async fn prune(&self, before: DateTime<Utc>) -> Result<u64, EventError> {
        let mut delete =
            SqlBuilder::new(self.db.backend(), "DELETE FROM events WHERE at < ".into());
        delete.param(millis(before).into());
        let done = self
            .db
            .conn()
            .execute_raw(delete.build())
            .await
            .map_err(unavailable)?;
        Ok(done.rows_affected())
    }

    async fn wait(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, WRITTEN.notified()).await;
    }
}
