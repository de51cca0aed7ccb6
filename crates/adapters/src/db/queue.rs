//! The job queue on the SQL jobs table (SQLite and Postgres).
//!
//! A job is `ready` until a worker reserves it, `running` while reserved (its `due_at` is then
//! the end of its lease: past it, the job can be reserved again), deleted when completed, and
//! `dead` when dead-lettered. On Postgres, reservations use `FOR UPDATE SKIP LOCKED` so
//! concurrent workers never take the same job; SQLite serialises writers.

use super::inbox::SqlBuilder;
use super::{Database, boxed, from_millis, millis};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::error::QueueError;
use domain::model::{Job, JobId, JobKind, NewJob};
use domain::ports::{JobQueue, QueueStats};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Value};
use std::time::Duration;

/// The queue on the connector's SQL database.
#[derive(Debug, Clone)]
pub struct SqlJobQueue {
    db: Database,
}

impl SqlJobQueue {
    /// A queue on `db` (the same database as the inbox, so enqueues share its transactions).
    pub fn new(db: Database) -> Self {
        SqlJobQueue { db }
    }

    async fn exec(&self, b: SqlBuilder) -> Result<u64, QueueError> {
        let res = self
            .db
            .conn()
            .execute_raw(b.build())
            .await
            .map_err(unavailable)?;
        Ok(res.rows_affected())
    }
}

fn unavailable(e: DbErr) -> QueueError {
    QueueError::Unavailable(boxed(e))
}

fn lease_ms(lease: Duration) -> i64 {
    i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2)
}

#[async_trait]
impl JobQueue for SqlJobQueue {
    async fn enqueue(&self, job: NewJob) -> Result<JobId, QueueError> {
        let now = millis(Utc::now());
        let due = job.run_at.map(millis).unwrap_or(now);
        let payload =
            serde_json::to_string(&job.kind).map_err(|e| QueueError::Unexpected(Box::new(e)))?;
        let mut b = SqlBuilder::new(
            self.db.backend(),
            "INSERT INTO jobs (kind, payload, status, attempts, due_at, created_at, updated_at) VALUES "
                .into(),
        );
        b.row(
            0,
            [
                job.kind.name().into(),
                payload.into(),
                "ready".into(),
                0i32.into(),
                due.into(),
                now.into(),
                now.into(),
            ],
        );
        b.sql.push_str(" RETURNING id");
        let row = self
            .db
            .conn()
            .query_one_raw(b.build())
            .await
            .map_err(unavailable)?
            .ok_or_else(|| QueueError::Unexpected("insert returned no id".into()))?;
        Ok(JobId(row.try_get_by_index(0).map_err(unavailable)?))
    }

    async fn reserve(&self, max: usize, lease: Duration) -> Result<Vec<Job>, QueueError> {
        let backend = self.db.backend();
        let now = millis(Utc::now());
        let mut b = SqlBuilder::new(
            backend,
            "UPDATE jobs SET status = 'running', attempts = attempts + 1, due_at = ".into(),
        );
        b.param((now + lease_ms(lease)).into());
        b.sql.push_str(", updated_at = ");
        b.param(now.into());
        b.sql.push_str(
            " WHERE id IN (SELECT id FROM jobs WHERE status IN ('ready', 'running') AND due_at <= ",
        );
        b.param(now.into());
        b.sql.push_str(" ORDER BY due_at LIMIT ");
        b.param(i64::try_from(max).unwrap_or(i64::MAX).into());
        if backend == DbBackend::Postgres {
            b.sql.push_str(" FOR UPDATE SKIP LOCKED");
        }
        b.sql.push_str(") RETURNING id, payload, attempts");
        let rows = self
            .db
            .conn()
            .query_all_raw(b.build())
            .await
            .map_err(unavailable)?;
        let mut jobs = Vec::with_capacity(rows.len());
        for row in rows {
            let id = JobId(row.try_get_by_index(0).map_err(unavailable)?);
            let payload: String = row.try_get_by_index(1).map_err(unavailable)?;
            let attempts: i32 = row.try_get_by_index(2).map_err(unavailable)?;
            match serde_json::from_str::<JobKind>(&payload) {
                Ok(kind) => jobs.push(Job {
                    id,
                    kind,
                    attempt: attempts.max(0) as u32,
                }),
                Err(e) => {
                    let reason = format!("undecodable payload: {e}");
                    self.dead_letter(id, &reason).await?;
                    tracing::error!(job_id = %id, %reason, "job dead-lettered");
                }
            }
        }
        Ok(jobs)
    }

    async fn complete(&self, ids: &[JobId]) -> Result<(), QueueError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut b = SqlBuilder::new(self.db.backend(), "DELETE FROM jobs WHERE id IN ".into());
        b.row(0, ids.iter().map(|id| Value::from(id.0)));
        self.exec(b).await.map(|_| ())
    }

    async fn retry(&self, id: JobId, at: DateTime<Utc>, error: &str) -> Result<(), QueueError> {
        let mut b = SqlBuilder::new(
            self.db.backend(),
            "UPDATE jobs SET status = 'ready', due_at = ".into(),
        );
        b.param(millis(at).into());
        b.sql.push_str(", last_error = ");
        b.param(error.into());
        b.sql.push_str(", updated_at = ");
        b.param(millis(Utc::now()).into());
        b.sql.push_str(" WHERE status = 'running' AND id = ");
        b.param(id.0.into());
        match self.exec(b).await? {
            0 => Err(QueueError::NotFound(id)),
            _ => Ok(()),
        }
    }

    async fn dead_letter(&self, id: JobId, error: &str) -> Result<(), QueueError> {
        let mut b = SqlBuilder::new(
            self.db.backend(),
            "UPDATE jobs SET status = 'dead', last_error = ".into(),
        );
        b.param(error.into());
        b.sql.push_str(", updated_at = ");
        b.param(millis(Utc::now()).into());
        b.sql.push_str(" WHERE status <> 'dead' AND id = ");
        b.param(id.0.into());
        match self.exec(b).await? {
            0 => Err(QueueError::NotFound(id)),
            _ => Ok(()),
        }
    }

    async fn stats(&self) -> Result<QueueStats, QueueError> {
        let b = SqlBuilder::new(
            self.db.backend(),
            "SELECT \
               COALESCE(SUM(CASE WHEN status <> 'dead' THEN 1 ELSE 0 END), 0), \
               COALESCE(SUM(CASE WHEN status = 'dead' THEN 1 ELSE 0 END), 0), \
               MIN(CASE WHEN status = 'ready' THEN due_at END) \
             FROM jobs"
                .into(),
        );
        let row = self
            .db
            .conn()
            .query_one_raw(b.build())
            .await
            .map_err(unavailable)?
            .ok_or_else(|| QueueError::Unexpected("no stats row".into()))?;
        let pending: i64 = row.try_get_by_index(0).map_err(unavailable)?;
        let dead: i64 = row.try_get_by_index(1).map_err(unavailable)?;
        let oldest: Option<i64> = row.try_get_by_index(2).map_err(unavailable)?;
        Ok(QueueStats {
            pending: pending.max(0) as u64,
            dead: dead.max(0) as u64,
            oldest_due: oldest.map(from_millis),
        })
    }
}
