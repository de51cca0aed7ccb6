//! The audit log on SQL (`audit`, migration m0013): one row per operator action, never pruned
//! with the events.

use super::sql::SqlBuilder;
use super::{Database, boxed, from_millis, millis};
use async_trait::async_trait;
use domain::error::StoreError;
use domain::model::{Actor, AuditEntry, AuditFilter, NewAuditEntry};
use domain::ports::AuditLog;
use sea_orm::{ConnectionTrait as _, DbErr, QueryResult};

const COLUMNS: &str =
    "id, at, actor_via, actor_name, actor_token_id, action, subject, forced, detail";

/// The audit log on the connector's SQL database.
#[derive(Debug, Clone)]
pub struct SqlAuditLog {
    db: Database,
}

impl SqlAuditLog {
    /// A log on `db`.
    pub fn new(db: Database) -> Self {
        SqlAuditLog { db }
    }
}

fn unavailable(e: DbErr) -> StoreError {
    StoreError::Unavailable(boxed(e))
}

fn unexpected(reason: String) -> StoreError {
    StoreError::Unexpected(reason.into())
}

fn entry_of(row: &QueryResult) -> Result<AuditEntry, StoreError> {
    let get_i64 = |i: usize| row.try_get_by_index::<i64>(i).map_err(unavailable);
    let get_str = |i: usize| row.try_get_by_index::<String>(i).map_err(unavailable);
    Ok(AuditEntry {
        id: get_i64(0)?,
        data: NewAuditEntry {
            at: from_millis(get_i64(1)?),
            actor: Actor {
                via: get_str(2)?.parse().map_err(unexpected)?,
                name: get_str(3)?,
                token_id: row
                    .try_get_by_index::<Option<i64>>(4)
                    .map_err(unavailable)?,
            },
            action: get_str(5)?.parse().map_err(unexpected)?,
            subject: get_str(6)?,
            forced: get_i64(7)? != 0,
            detail: row
                .try_get_by_index::<Option<String>>(8)
                .map_err(unavailable)?,
        },
    })
}

#[async_trait]
impl AuditLog for SqlAuditLog {
    async fn record(&self, e: &NewAuditEntry) -> Result<i64, StoreError> {
        let mut b = SqlBuilder::new(
            self.db.backend(),
            "INSERT INTO audit (at, actor_via, actor_name, actor_token_id, action, subject, \
             forced, detail) VALUES "
                .into(),
        );
        b.row(
            0,
            [
                millis(e.at).into(),
                e.actor.via.as_str().into(),
                e.actor.name.clone().into(),
                e.actor.token_id.into(),
                e.action.as_str().into(),
                e.subject.clone().into(),
                i64::from(e.forced).into(),
                e.detail.clone().into(),
            ],
        );
        b.sql.push_str(" RETURNING id");
        let row = self
            .db
            .conn()
            .query_one_raw(b.build())
            .await
            .map_err(unavailable)?
            .ok_or_else(|| unexpected("INSERT returned no id".into()))?;
        row.try_get_by_index(0).map_err(unavailable)
    }

    async fn list(&self, f: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        let mut b = SqlBuilder::new(
            self.db.backend(),
            format!("SELECT {COLUMNS} FROM audit WHERE 1 = 1"),
        );
        if let Some(actor) = &f.actor {
            b.sql.push_str(" AND actor_name = ");
            b.param(actor.clone().into());
        }
        if let Some(action) = f.action {
            b.sql.push_str(" AND action = ");
            b.param(action.as_str().into());
        }
        if let Some(subject) = &f.subject {
            b.sql.push_str(" AND subject = ");
            b.param(subject.clone().into());
        }
        if let Some(since) = f.since {
            b.sql.push_str(" AND at >= ");
            b.param(millis(since).into());
        }
        if let Some(before) = f.before_id {
            b.sql.push_str(" AND id < ");
            b.param(before.into());
        }
        b.sql.push_str(" ORDER BY id DESC LIMIT ");
        let limit = if f.limit == 0 { 100 } else { f.limit };
        b.param(i64::try_from(limit).unwrap_or(i64::MAX).into());
        let rows = self
            .db
            .reader()
            .query_all_raw(b.build())
            .await
            .map_err(unavailable)?;
        rows.iter().map(entry_of).collect()
    }
}
