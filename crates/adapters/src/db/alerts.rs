//! The alerts on SQL (`alerts`, migration m0011): one open row per (kind, subject), held by a
//! partial unique index, so a repeat is an `UPDATE ... count = count + 1` and two raisers racing
//! open one row.

use super::sql::SqlBuilder;
use super::{Database, boxed, from_millis, millis};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::error::StoreError;
use domain::model::{
    Alert, AlertChannel, AlertFilter, AlertKind, AlertState, KindCounts, NewAlert, Raised,
};
use domain::ports::AlertStore;
use sea_orm::{ConnectionTrait as _, DbErr, QueryResult, Value};

/// The alerts on the connector's SQL database.
#[derive(Debug, Clone)]
pub struct SqlAlertStore {
    db: Database,
}

impl SqlAlertStore {
    /// A store on `db`.
    pub fn new(db: Database) -> Self {
        SqlAlertStore { db }
    }

    fn builder(&self, sql: &str) -> SqlBuilder {
        SqlBuilder::new(self.db.backend(), sql.to_owned())
    }

    async fn query(&self, b: SqlBuilder) -> Result<Vec<QueryResult>, StoreError> {
        self.db
            .conn()
            .query_all_raw(b.build())
            .await
            .map_err(unavailable)
    }

    async fn rows(&self, b: SqlBuilder) -> Result<Vec<Alert>, StoreError> {
        self.query(b).await?.iter().map(alert_of).collect()
    }

    async fn one(&self, b: SqlBuilder) -> Result<Option<Alert>, StoreError> {
        Ok(self.rows(b).await?.into_iter().next())
    }

    async fn exec(&self, b: SqlBuilder) -> Result<u64, StoreError> {
        Ok(self
            .db
            .conn()
            .execute_raw(b.build())
            .await
            .map_err(unavailable)?
            .rows_affected())
    }

    /// Counts a repeat on the open alert of `new`'s kind and subject, if there is one.
    async fn count_repeat(
        &self,
        new: &NewAlert,
        times: i64,
        now: i64,
    ) -> Result<Option<Alert>, StoreError> {
        let mut b = self.builder("UPDATE alerts SET count = count + ");
        b.param(times.into());
        b.sql.push_str(", last_seen = ");
        b.param(now.into());
        b.sql.push_str(", detail = ");
        b.param(new.detail.clone().into());
        b.sql.push_str(" WHERE state = 'open' AND kind = ");
        b.param(new.kind.as_str().into());
        b.sql.push_str(" AND subject = ");
        b.param(new.subject.clone().into());
        b.sql.push_str(RETURNING);
        self.one(b).await
    }
}

const COLUMNS: &str = "id, kind, subject, summary, detail, state, count, first_seen, last_seen, \
                       resolved_at, resolved_by, mail_due, hook_due";
const RETURNING: &str = " RETURNING id, kind, subject, summary, detail, state, count, \
                         first_seen, last_seen, resolved_at, resolved_by, mail_due, hook_due";

fn unavailable(e: DbErr) -> StoreError {
    StoreError::Unavailable(boxed(e))
}

fn unexpected(reason: String) -> StoreError {
    StoreError::Unexpected(reason.into())
}

fn alert_of(row: &QueryResult) -> Result<Alert, StoreError> {
    let get_i64 = |i: usize| row.try_get_by_index::<i64>(i).map_err(unavailable);
    let get_str = |i: usize| row.try_get_by_index::<String>(i).map_err(unavailable);
    let kind: AlertKind = get_str(1)?.parse().map_err(unexpected)?;
    let state: AlertState = get_str(5)?.parse().map_err(unexpected)?;
    Ok(Alert {
        id: get_i64(0)?,
        kind,
        subject: get_str(2)?,
        summary: get_str(3)?,
        detail: get_str(4)?,
        state,
        count: u64::try_from(get_i64(6)?).unwrap_or(0),
        first_seen: from_millis(get_i64(7)?),
        last_seen: from_millis(get_i64(8)?),
        resolved_at: row
            .try_get_by_index::<Option<i64>>(9)
            .map_err(unavailable)?
            .map(from_millis),
        resolved_by: row
            .try_get_by_index::<Option<String>>(10)
            .map_err(unavailable)?,
        mail_due: get_i64(11)? != 0,
        hook_due: get_i64(12)? != 0,
    })
}

fn due_column(channel: AlertChannel) -> &'static str {
    match channel {
        AlertChannel::Mail => "mail_due",
        AlertChannel::Hook => "hook_due",
    }
}

fn kind_counts(rows: &[QueryResult]) -> Result<Vec<(AlertKind, u64)>, StoreError> {
    let mut counts = Vec::with_capacity(rows.len());
    for row in rows {
        let kind: String = row.try_get_by_index(0).map_err(unavailable)?;
        let n: i64 = row.try_get_by_index(1).map_err(unavailable)?;
        counts.push((
            kind.parse().map_err(unexpected)?,
            u64::try_from(n).unwrap_or(0),
        ));
    }
    counts.sort();
    Ok(counts)
}

fn limit_of(limit: usize) -> Value {
    let limit = if limit == 0 { 100 } else { limit };
    i64::try_from(limit).unwrap_or(i64::MAX).into()
}

#[async_trait]
impl AlertStore for SqlAlertStore {
    async fn raise_times(&self, new: &NewAlert, times: u64) -> Result<Raised, StoreError> {
        let now = millis(Utc::now());
        let times = i64::try_from(times).unwrap_or(i64::MAX);
        // A new alert is one statement; a repeat two. Two rounds at most: an open alert resolved
        // between the two statements lets the second round open a new one.
        for _ in 0..2 {
            let mut b = self.builder(
                "INSERT INTO alerts (kind, subject, summary, detail, state, count, first_seen, \
                 last_seen, mail_due, hook_due) VALUES ",
            );
            b.row(
                0,
                [
                    new.kind.as_str().into(),
                    new.subject.clone().into(),
                    new.summary.clone().into(),
                    new.detail.clone().into(),
                    "open".into(),
                    times.into(),
                    now.into(),
                    now.into(),
                    1_i64.into(),
                    1_i64.into(),
                ],
            );
            b.sql.push_str(" ON CONFLICT DO NOTHING");
            b.sql.push_str(RETURNING);
            if let Some(alert) = self.one(b).await? {
                return Ok(Raised::Opened(alert));
            }
            if let Some(alert) = self.count_repeat(new, times, now).await? {
                return Ok(Raised::Repeated(alert));
            }
        }
        Err(unexpected(format!(
            "alert {} {} neither opened nor counted",
            new.kind, new.subject
        )))
    }

    async fn resolve(
        &self,
        kind: AlertKind,
        subject: &str,
        by: &str,
    ) -> Result<Option<Alert>, StoreError> {
        let mut b = self.builder("UPDATE alerts SET state = 'resolved', resolved_at = ");
        b.param(millis(Utc::now()).into());
        b.sql.push_str(", resolved_by = ");
        b.param(by.to_owned().into());
        b.sql.push_str(" WHERE state = 'open' AND kind = ");
        b.param(kind.as_str().into());
        b.sql.push_str(" AND subject = ");
        b.param(subject.to_owned().into());
        b.sql.push_str(RETURNING);
        self.one(b).await
    }

    async fn resolve_id(&self, id: i64, by: &str) -> Result<Option<Alert>, StoreError> {
        let mut b = self.builder("UPDATE alerts SET state = 'resolved', resolved_at = ");
        b.param(millis(Utc::now()).into());
        b.sql.push_str(", resolved_by = ");
        b.param(by.to_owned().into());
        b.sql.push_str(" WHERE state = 'open' AND id = ");
        b.param(id.into());
        self.exec(b).await?;
        self.get(id).await
    }

    async fn get(&self, id: i64) -> Result<Option<Alert>, StoreError> {
        let mut b = self.builder(&format!("SELECT {COLUMNS} FROM alerts WHERE id = "));
        b.param(id.into());
        self.one(b).await
    }

    async fn list(&self, filter: &AlertFilter) -> Result<Vec<Alert>, StoreError> {
        let mut b = self.builder(&format!("SELECT {COLUMNS} FROM alerts WHERE 1 = 1"));
        if let Some(state) = filter.state {
            b.sql.push_str(" AND state = ");
            b.param(state.as_str().into());
        }
        if let Some(kind) = filter.kind {
            b.sql.push_str(" AND kind = ");
            b.param(kind.as_str().into());
        }
        b.sql.push_str(" ORDER BY last_seen DESC, id DESC LIMIT ");
        b.param(limit_of(filter.limit));
        self.rows(b).await
    }

    async fn open_counts(&self) -> Result<Vec<(AlertKind, u64)>, StoreError> {
        let b =
            self.builder("SELECT kind, COUNT(*) FROM alerts WHERE state = 'open' GROUP BY kind");
        let rows = self.query(b).await?;
        kind_counts(&rows)
    }

    async fn open_subjects(&self, kind: AlertKind) -> Result<Vec<String>, StoreError> {
        let mut b = self.builder("SELECT subject FROM alerts WHERE state = 'open' AND kind = ");
        b.param(kind.as_str().into());
        b.sql.push_str(" ORDER BY id LIMIT 10000");
        let rows = self.query(b).await?;
        rows.iter()
            .map(|r| r.try_get_by_index::<String>(0).map_err(unavailable))
            .collect()
    }

    async fn due(&self, channel: AlertChannel, limit: usize) -> Result<Vec<Alert>, StoreError> {
        let mut b = self.builder(&format!(
            "SELECT {COLUMNS} FROM alerts WHERE {} = 1 ORDER BY id LIMIT ",
            due_column(channel)
        ));
        b.param(limit_of(limit));
        self.rows(b).await
    }

    async fn due_counts(
        &self,
        channel: AlertChannel,
    ) -> Result<(KindCounts, Option<i64>), StoreError> {
        let b = self.builder(&format!(
            "SELECT kind, COUNT(*), MAX(id) FROM alerts WHERE {} = 1 GROUP BY kind",
            due_column(channel)
        ));
        let rows = self.query(b).await?;
        let mut max = None;
        for row in &rows {
            let id: i64 = row.try_get_by_index(2).map_err(unavailable)?;
            max = max.max(Some(id));
        }
        Ok((kind_counts(&rows)?, max))
    }

    async fn opened_since(&self, since: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut b = self.builder("SELECT COUNT(*) FROM alerts WHERE first_seen >= ");
        b.param(millis(since).into());
        let row = self
            .db
            .conn()
            .query_one_raw(b.build())
            .await
            .map_err(unavailable)?;
        let n: i64 = match row {
            Some(r) => r.try_get_by_index(0).map_err(unavailable)?,
            None => 0,
        };
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn delivered(&self, channel: AlertChannel, from: i64, to: i64) -> Result<(), StoreError> {
        let column = due_column(channel);
        let mut b = self.builder(&format!(
            "UPDATE alerts SET {column} = 0 WHERE {column} = 1 AND id >= "
        ));
        b.param(from.into());
        b.sql.push_str(" AND id <= ");
        b.param(to.into());
        self.exec(b).await?;
        Ok(())
    }

    async fn erase_details(&self, subjects: &[String], note: &str) -> Result<u64, StoreError> {
        let mut n = 0;
        for chunk in subjects.chunks(500) {
            let mut b = self.builder("UPDATE alerts SET detail = ");
            b.param(note.into());
            b.sql.push_str(" WHERE detail <> ");
            b.param(note.into());
            b.sql.push_str(" AND subject IN ");
            b.row(0, chunk.iter().map(|s| sea_orm::Value::from(s.clone())));
            n += self.exec(b).await?;
        }
        Ok(n)
    }

    async fn prune_details(
        &self,
        before: DateTime<Utc>,
        note: &str,
        limit: usize,
    ) -> Result<u64, StoreError> {
        let mut b = self.builder("UPDATE alerts SET detail = ");
        b.param(note.into());
        b.sql
            .push_str(" WHERE id IN (SELECT id FROM alerts WHERE last_seen < ");
        b.param(millis(before).into());
        b.sql.push_str(" AND detail <> ");
        b.param(note.into());
        b.sql
            .push_str(&format!(" ORDER BY id LIMIT {})", limit.max(1)));
        let started = std::time::Instant::now();
        let changed = self.exec(b).await;
        crate::db::pace(started).await;
        changed
    }
}
