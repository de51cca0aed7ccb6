//! The mail events on SQL (`mail_events`, migration m0012): one row per event the mail relay
//! reported (or per label mailed again), a redelivery recognised by the partial unique index on
//! (provider, dedupe_key): the insert does nothing and the stored row is read back.

use super::sql::SqlBuilder;
use super::{Database, boxed, from_millis, millis};
use async_trait::async_trait;
use chrono::Utc;
use domain::error::StoreError;
use domain::model::{MailEvent, MailEventFilter, MailEventStatus, NewMailEvent, RecordedMailEvent};
use domain::ports::MailEventStore;
use sea_orm::{ConnectionTrait as _, DbErr, QueryResult};

/// The mail events on the connector's SQL database.
#[derive(Debug, Clone)]
pub struct SqlMailEventStore {
    db: Database,
}

impl SqlMailEventStore {
    /// A store on `db`.
    pub fn new(db: Database) -> Self {
        SqlMailEventStore { db }
    }

    fn builder(&self, sql: &str) -> SqlBuilder {
        SqlBuilder::new(self.db.backend(), sql.to_owned())
    }

    async fn rows(&self, b: SqlBuilder) -> Result<Vec<MailEvent>, StoreError> {
        let rows = self
            .db
            .conn()
            .query_all_raw(b.build())
            .await
            .map_err(unavailable)?;
        rows.iter().map(event_of).collect()
    }
}

const COLUMNS: &str = "id, received_at, provider, event, state, email, message_id, shipment_id, \
                       provider_id, detail, occurred_at, dedupe_key, raw, status, error";

fn unavailable(e: DbErr) -> StoreError {
    StoreError::Unavailable(boxed(e))
}

fn unexpected(reason: String) -> StoreError {
    StoreError::Unexpected(reason.into())
}

fn event_of(row: &QueryResult) -> Result<MailEvent, StoreError> {
    let text = |i: usize| row.try_get_by_index::<String>(i).map_err(unavailable);
    let opt_text = |i: usize| {
        row.try_get_by_index::<Option<String>>(i)
            .map_err(unavailable)
    };
    let opt_i64 = |i: usize| row.try_get_by_index::<Option<i64>>(i).map_err(unavailable);
    Ok(MailEvent {
        id: row.try_get_by_index(0).map_err(unavailable)?,
        received_at: from_millis(row.try_get_by_index(1).map_err(unavailable)?),
        data: NewMailEvent {
            provider: text(2)?,
            event: text(3)?,
            state: opt_text(4)?
                .map(|s| s.parse())
                .transpose()
                .map_err(unexpected)?,
            email: opt_text(5)?,
            message_id: opt_text(6)?,
            shipment_id: opt_i64(7)?,
            provider_id: opt_text(8)?,
            detail: opt_text(9)?,
            occurred_at: opt_i64(10)?.map(from_millis),
            dedupe_key: opt_text(11)?,
            raw: text(12)?,
            status: text(13)?.parse().map_err(unexpected)?,
            error: opt_text(14)?,
        },
    })
}

#[async_trait]
impl MailEventStore for SqlMailEventStore {
    async fn record(&self, e: &NewMailEvent) -> Result<RecordedMailEvent, StoreError> {
        let mut b = self.builder(
            "INSERT INTO mail_events (received_at, provider, event, state, email, message_id, \
             shipment_id, provider_id, detail, occurred_at, dedupe_key, raw, status, error) \
             VALUES ",
        );
        b.row(
            0,
            [
                millis(Utc::now()).into(),
                e.provider.clone().into(),
                e.event.clone().into(),
                e.state.map(|s| s.as_str().to_owned()).into(),
                e.email.clone().into(),
                e.message_id.clone().into(),
                e.shipment_id.into(),
                e.provider_id.clone().into(),
                e.detail.clone().into(),
                e.occurred_at.map(millis).into(),
                e.dedupe_key.clone().into(),
                e.raw.clone().into(),
                e.status.as_str().into(),
                e.error.clone().into(),
            ],
        );
        b.sql.push_str(" ON CONFLICT DO NOTHING RETURNING id");
        let inserted = self
            .db
            .conn()
            .query_one_raw(b.build())
            .await
            .map_err(unavailable)?;
        if let Some(row) = inserted {
            let id: i64 = row.try_get_by_index(0).map_err(unavailable)?;
            return Ok(RecordedMailEvent::Inserted(id));
        }
        let mut b = self.builder("SELECT id, status FROM mail_events WHERE provider = ");
        b.param(e.provider.clone().into());
        b.sql.push_str(" AND dedupe_key = ");
        b.param(e.dedupe_key.clone().into());
        let row = self
            .db
            .conn()
            .query_one_raw(b.build())
            .await
            .map_err(unavailable)?
            .ok_or_else(|| unexpected("a mail event neither stored nor found".into()))?;
        let status: String = row.try_get_by_index(1).map_err(unavailable)?;
        Ok(RecordedMailEvent::Duplicate {
            id: row.try_get_by_index(0).map_err(unavailable)?,
            status: status.parse::<MailEventStatus>().map_err(unexpected)?,
        })
    }

    async fn settle(
        &self,
        id: i64,
        status: MailEventStatus,
        shipment_id: Option<i64>,
        error: Option<String>,
    ) -> Result<(), StoreError> {
        let mut b = self.builder("UPDATE mail_events SET status = ");
        b.param(status.as_str().into());
        b.sql.push_str(", shipment_id = ");
        b.param(shipment_id.into());
        b.sql.push_str(", error = ");
        b.param(error.into());
        b.sql.push_str(" WHERE id = ");
        b.param(id.into());
        self.db
            .conn()
            .execute_raw(b.build())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn get(&self, id: i64) -> Result<Option<MailEvent>, StoreError> {
        let mut b = self.builder(&format!("SELECT {COLUMNS} FROM mail_events WHERE id = "));
        b.param(id.into());
        Ok(self.rows(b).await?.into_iter().next())
    }

    async fn list(&self, f: &MailEventFilter) -> Result<Vec<MailEvent>, StoreError> {
        let mut b = self.builder(&format!("SELECT {COLUMNS} FROM mail_events WHERE 1 = 1"));
        if let Some(shipment_id) = f.shipment_id {
            b.sql.push_str(" AND shipment_id = ");
            b.param(shipment_id.into());
        }
        if let Some(status) = f.status {
            b.sql.push_str(" AND status = ");
            b.param(status.as_str().into());
        }
        if let Some(before) = f.before_id {
            b.sql.push_str(" AND id < ");
            b.param(before.into());
        }
        let limit = if f.limit == 0 {
            100
        } else {
            f.limit.min(10_000)
        };
        b.sql.push_str(&format!(" ORDER BY id DESC LIMIT {limit}"));
        self.rows(b).await
    }
}
