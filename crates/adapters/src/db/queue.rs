//! The job queue on the SQL jobs table (SQLite and Postgres).
//!
//! A job is `ready` until a worker reserves it, `running` while reserved (its `due_at` is then
//! the end of its lease and `lease_token` names the reservation: past the lease the job can be
//! reserved again, and the old holder can no longer record an outcome), deleted when completed,
//! and `dead` when dead-lettered. On Postgres, reservations use `FOR UPDATE SKIP LOCKED`, so
//! concurrent workers never take the same job, and idle workers wait on `LISTEN lazona_jobs`
//! (the inbox and `enqueue` notify); SQLite serialises writers, and an idle worker in the same
//! process as the inbox is woken by it directly.

use super::sql::SqlBuilder;
use super::{Database, boxed, from_millis, millis};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::error::QueueError;
use domain::model::{DeadJob, Job, JobId, JobKind, Lease, NewJob};
use domain::ports::{JobQueue, QueueStats};
use sea_orm::sqlx::postgres::PgListener;
use sea_orm::{ConnectionTrait, DbBackend, DbErr, TransactionTrait, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{Mutex, Notify};

/// The Postgres channel the inbox and `enqueue` notify when jobs are added.
pub const NOTIFY_CHANNEL: &str = "lazona_jobs";

/// How often an idle worker looks again when nothing can wake it.
const IDLE_POLL: Duration = Duration::from_millis(250);

/// The queue on the connector's SQL database.
#[derive(Clone)]
pub struct SqlJobQueue {
    db: Database,
    wake: Arc<Notify>,
    listener: Arc<Mutex<Option<PgListener>>>,
    nonce: Arc<str>,
    leases: Arc<AtomicU64>,
}

impl std::fmt::Debug for SqlJobQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlJobQueue").finish_non_exhaustive()
    }
}

impl SqlJobQueue {
    /// A queue on `db` (the same database as the inbox, so enqueues share its transactions).
    pub fn new(db: Database) -> Self {
        SqlJobQueue {
            db,
            wake: Arc::new(Notify::new()),
            listener: Arc::new(Mutex::new(None)),
            nonce: super::process_nonce().into(),
            leases: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Also wakes idle reservations when `notify` fires (the in-process inbox's "jobs enqueued").
    pub fn wake_on(mut self, notify: Arc<Notify>) -> Self {
        self.wake = notify;
        self
    }

    fn backend(&self) -> DbBackend {
        self.db.backend()
    }

    /// Runs an `UPDATE` or `DELETE` of jobs (committed with the other writes waiting, on
    /// SQLite); the number of jobs it changed.
    async fn exec(&self, mut b: SqlBuilder) -> Result<u64, QueueError> {
        b.sql.push_str(" RETURNING id");
        let rows = self.db.write(b.build()).await.map_err(unavailable)?;
        Ok(u64::try_from(rows.len()).unwrap_or(u64::MAX))
    }

    /// Claims up to `max` due jobs under a new lease.
    async fn claim(&self, max: usize, lease: Duration) -> Result<Vec<Job>, QueueError> {
        let backend = self.backend();
        let now = millis(Utc::now());
        let token = format!(
            "{}-{}",
            self.nonce,
            self.leases.fetch_add(1, Ordering::Relaxed)
        );
        let b = claim_statement(backend, now, lease, &token, max);
        let rows = self.db.write(b.build()).await.map_err(unavailable)?;
        let mut jobs = Vec::with_capacity(rows.len());
        for row in rows {
            let id = JobId(row.try_get_by_index(0).map_err(unavailable)?);
            let payload: String = row.try_get_by_index(1).map_err(unavailable)?;
            let attempts: i32 = row.try_get_by_index(2).map_err(unavailable)?;
            let lease = Lease(token.clone());
            match serde_json::from_str::<JobKind>(&payload) {
                Ok(kind) => jobs.push(Job {
                    id,
                    kind,
                    attempt: u32::try_from(attempts).unwrap_or(0),
                    lease,
                }),
                Err(e) => {
                    let reason = format!("undecodable payload: {e}");
                    tracing::error!(job_id = %id, %reason, "job dead-lettered");
                    let job = Job {
                        id,
                        kind: JobKind::Noop { tag: 0 },
                        attempt: 0,
                        lease,
                    };
                    self.dead_letter(&job, &reason).await?;
                }
            }
        }
        Ok(jobs)
    }

    /// Waits up to `wait` for a sign that jobs were added.
    async fn idle(&self, wait: Duration) {
        if self.backend() == DbBackend::Postgres {
            let mut guard = self.listener.lock().await;
            if guard.is_none() {
                let pool = self.db.conn().get_postgres_connection_pool().clone();
                match PgListener::connect_with(&pool).await {
                    Ok(mut l) => match l.listen(NOTIFY_CHANNEL).await {
                        Ok(()) => *guard = Some(l),
                        Err(e) => tracing::warn!(error = %e, "LISTEN failed; polling instead"),
                    },
                    Err(e) => tracing::warn!(error = %e, "no listener connection; polling instead"),
                }
            }
            if let Some(listener) = guard.as_mut() {
                tokio::select! {
                    r = tokio::time::timeout(wait, listener.recv()) => {
                        if let Ok(Err(e)) = r {
                            tracing::warn!(error = %e, "listener lost; reconnecting");
                            *guard = None;
                        }
                    }
                    () = self.wake.notified() => {}
                }
                return;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(wait.min(IDLE_POLL)) => {}
            () = self.wake.notified() => {}
        }
    }

    async fn set_outcome(
        &self,
        job: &Job,
        status: &str,
        at: Option<DateTime<Utc>>,
        error: &str,
    ) -> Result<(), QueueError> {
        let now = Utc::now();
        let mut b = SqlBuilder::new(self.backend(), "UPDATE jobs SET status = ".into());
        b.param(status.into());
        b.sql.push_str(", due_at = ");
        b.param(millis(at.unwrap_or(now)).into());
        b.sql.push_str(", last_error = ");
        b.param(error.into());
        b.sql.push_str(", updated_at = ");
        b.param(millis(now).into());
        b.sql
            .push_str(", lease_token = NULL WHERE status = 'running' AND id = ");
        b.param(job.id.0.into());
        b.sql.push_str(" AND lease_token = ");
        b.param(job.lease.0.clone().into());
        match self.exec(b).await? {
            0 => Err(QueueError::LeaseLost(job.id)),
            _ => Ok(()),
        }
    }
}

/// The reservation: the `max` earliest due jobs, ready or with an ended lease, under the lease
/// `token` until `now + lease`. Its `WHERE` is the predicate of the partial index
/// `idx_jobs_active_due` (M0007), which it walks in `due_at` order, reading only the rows it
/// takes however long the backlog.
fn claim_statement(
    backend: DbBackend,
    now: i64,
    lease: Duration,
    token: &str,
    max: usize,
) -> SqlBuilder {
    let mut b = SqlBuilder::new(
        backend,
        "UPDATE jobs SET status = 'running', attempts = attempts + 1, due_at = ".into(),
    );
    b.param((now + lease_ms(lease)).into());
    b.sql.push_str(", updated_at = ");
    b.param(now.into());
    b.sql.push_str(", lease_token = ");
    b.param(token.into());
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
    b
}

fn unavailable(e: DbErr) -> QueueError {
    QueueError::Unavailable(boxed(e))
}

fn lease_ms(lease: Duration) -> i64 {
    i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2)
}

/// The jobs grouped by lease token (a reservation's jobs share one).
fn by_lease(jobs: &[Job]) -> BTreeMap<&str, Vec<Value>> {
    let mut groups: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    for job in jobs {
        groups
            .entry(job.lease.0.as_str())
            .or_default()
            .push(job.id.0.into());
    }
    groups
}

/// Inserts a job row (ready, due at `due`) and notifies idle Postgres workers at commit.
pub(crate) async fn insert_job<C: ConnectionTrait>(conn: &C, job: &NewJob) -> Result<JobId, DbErr> {
    let backend = conn.get_database_backend();
    let now = millis(Utc::now());
    let due = job.run_at.map(millis).unwrap_or(now);
    let payload = serde_json::to_string(&job.kind).map_err(|e| DbErr::Custom(e.to_string()))?;
    let mut b = SqlBuilder::new(
        backend,
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
    let row = conn
        .query_one_raw(b.build())
        .await?
        .ok_or_else(|| DbErr::Custom("insert returned no id".into()))?;
    if backend == DbBackend::Postgres {
        conn.execute_unprepared(&format!("NOTIFY {NOTIFY_CHANNEL}"))
            .await?;
    }
    Ok(JobId(row.try_get_by_index(0)?))
}

#[async_trait]
impl JobQueue for SqlJobQueue {
    async fn enqueue(&self, job: NewJob) -> Result<JobId, QueueError> {
        let id = self
            .db
            .transact(move |txn| {
                let job = job.clone();
                Box::pin(async move { insert_job(txn, &job).await })
            })
            .await
            .map_err(unavailable)?;
        self.wake.notify_one();
        Ok(id)
    }

    async fn enqueue_periodic(
        &self,
        name: &str,
        every: Duration,
        job: NewJob,
    ) -> Result<bool, QueueError> {
        let backend = self.backend();
        let now = millis(Utc::now());
        let txn = self.db.conn().begin().await.map_err(unavailable)?;
        let mut b = SqlBuilder::new(
            backend,
            "INSERT INTO schedules (name, next_run_at) VALUES ".into(),
        );
        b.row(0, [name.into(), now.into()]);
        b.sql.push_str(" ON CONFLICT (name) DO NOTHING");
        txn.execute_raw(b.build()).await.map_err(unavailable)?;
        let mut b = SqlBuilder::new(backend, "UPDATE schedules SET next_run_at = ".into());
        b.param((now + lease_ms(every)).into());
        b.sql.push_str(" WHERE name = ");
        b.param(name.into());
        b.sql.push_str(" AND next_run_at <= ");
        b.param(now.into());
        let won = txn
            .execute_raw(b.build())
            .await
            .map_err(unavailable)?
            .rows_affected()
            == 1;
        if won {
            insert_job(&txn, &job).await.map_err(unavailable)?;
        }
        txn.commit().await.map_err(unavailable)?;
        if won {
            self.wake.notify_one();
        }
        Ok(won)
    }

    async fn reserve(
        &self,
        max: usize,
        lease: Duration,
        wait: Duration,
    ) -> Result<Vec<Job>, QueueError> {
        let jobs = self.claim(max, lease).await?;
        if !jobs.is_empty() || wait.is_zero() {
            return Ok(jobs);
        }
        self.idle(wait).await;
        self.claim(max, lease).await
    }

    async fn extend(&self, jobs: &[Job], lease: Duration) -> Result<(), QueueError> {
        let now = millis(Utc::now());
        for (token, ids) in by_lease(jobs) {
            let mut b = SqlBuilder::new(self.backend(), "UPDATE jobs SET due_at = ".into());
            b.param((now + lease_ms(lease)).into());
            b.sql
                .push_str(" WHERE status = 'running' AND lease_token = ");
            b.param(token.into());
            b.sql.push_str(" AND id IN ");
            b.row(0, ids);
            self.exec(b).await?;
        }
        Ok(())
    }

    async fn complete(&self, jobs: &[Job]) -> Result<(), QueueError> {
        for (token, ids) in by_lease(jobs) {
            let mut b = SqlBuilder::new(
                self.backend(),
                "DELETE FROM jobs WHERE status = 'running' AND lease_token = ".into(),
            );
            b.param(token.into());
            b.sql.push_str(" AND id IN ");
            b.row(0, ids);
            self.exec(b).await?;
        }
        Ok(())
    }

    async fn retry(&self, job: &Job, at: DateTime<Utc>, error: &str) -> Result<(), QueueError> {
        self.set_outcome(job, "ready", Some(at), error).await
    }

    async fn dead_letter(&self, job: &Job, error: &str) -> Result<(), QueueError> {
        self.set_outcome(job, "dead", None, error).await
    }

    async fn dead_jobs(&self, limit: usize) -> Result<Vec<DeadJob>, QueueError> {
        let mut b = SqlBuilder::new(
            self.backend(),
            "SELECT id, payload, attempts, last_error, updated_at FROM jobs \
             WHERE status = 'dead' ORDER BY updated_at DESC, id DESC LIMIT "
                .into(),
        );
        b.param(i64::try_from(limit).unwrap_or(i64::MAX).into());
        let rows = self
            .db
            .conn()
            .query_all_raw(b.build())
            .await
            .map_err(unavailable)?;
        let mut dead = Vec::with_capacity(rows.len());
        for row in rows {
            let id = JobId(row.try_get_by_index(0).map_err(unavailable)?);
            let payload: String = row.try_get_by_index(1).map_err(unavailable)?;
            let attempts: i32 = row.try_get_by_index(2).map_err(unavailable)?;
            let error: Option<String> = row.try_get_by_index(3).map_err(unavailable)?;
            let failed_at: i64 = row.try_get_by_index(4).map_err(unavailable)?;
            let kind = serde_json::from_str(&payload).map_err(|e| QueueError::Corrupt {
                id,
                reason: e.to_string(),
            })?;
            dead.push(DeadJob {
                id,
                kind,
                attempts: u32::try_from(attempts).unwrap_or(0),
                error: error.unwrap_or_default(),
                failed_at: from_millis(failed_at),
            });
        }
        Ok(dead)
    }

    async fn requeue_dead(&self, id: JobId) -> Result<(), QueueError> {
        let now = millis(Utc::now());
        let mut b = SqlBuilder::new(
            self.backend(),
            "UPDATE jobs SET status = 'ready', attempts = 0, lease_token = NULL, due_at = ".into(),
        );
        b.param(now.into());
        b.sql.push_str(", updated_at = ");
        b.param(now.into());
        b.sql.push_str(" WHERE status = 'dead' AND id = ");
        b.param(id.0.into());
        match self.exec(b).await? {
            0 => Err(QueueError::NotFound(id)),
            _ => {
                self.wake.notify_one();
                Ok(())
            }
        }
    }

    async fn prune_dead(&self, before: DateTime<Utc>, limit: usize) -> Result<u64, QueueError> {
        let mut b = SqlBuilder::new(
            self.backend(),
            "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE status = 'dead' \
             AND updated_at < "
                .into(),
        );
        b.param(millis(before).into());
        b.sql
            .push_str(&format!(" ORDER BY updated_at LIMIT {})", limit.max(1)));
        let started = std::time::Instant::now();
        let deleted = self.exec(b).await;
        crate::db::pace(started).await;
        deleted
    }

    async fn holds(&self, id: JobId) -> Result<bool, QueueError> {
        let mut b = SqlBuilder::new(self.backend(), "SELECT id FROM jobs WHERE id = ".into());
        b.param(id.0.into());
        let row = self
            .db
            .conn()
            .query_one_raw(b.build())
            .await
            .map_err(unavailable)?;
        Ok(row.is_some())
    }

    async fn stats(&self) -> Result<QueueStats, QueueError> {
        let mut b = SqlBuilder::new(
            self.backend(),
            "SELECT \
               COALESCE(SUM(CASE WHEN status <> 'dead' THEN 1 ELSE 0 END), 0), \
               COALESCE(SUM(CASE WHEN status = 'running' AND due_at > "
                .into(),
        );
        b.param(millis(Utc::now()).into());
        b.sql.push_str(
            " THEN 1 ELSE 0 END), 0), \
               COALESCE(SUM(CASE WHEN status = 'dead' THEN 1 ELSE 0 END), 0), \
               MIN(CASE WHEN status = 'ready' THEN due_at END) \
             FROM jobs",
        );
        let row = self
            .db
            .conn()
            .query_one_raw(b.build())
            .await
            .map_err(unavailable)?
            .ok_or_else(|| QueueError::Unexpected("no stats row".into()))?;
        let count = |i: usize| -> Result<u64, QueueError> {
            let v: i64 = row.try_get_by_index(i).map_err(unavailable)?;
            Ok(u64::try_from(v).unwrap_or(0))
        };
        let oldest: Option<i64> = row.try_get_by_index(3).map_err(unavailable)?;
        Ok(QueueStats {
            pending: count(0)?,
            running: count(1)?,
            dead: count(2)?,
            oldest_due: oldest.map(from_millis),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{TestDb, settings_for};

    /// The reservation's plan on a backlog of 3,000 ready jobs: it walks `idx_jobs_active_due`
    /// and sorts nothing, so its cost does not grow with the backlog.
    #[tokio::test]
    async fn a_reservation_walks_the_due_index_whatever_the_backlog() {
        for (name, test_db) in TestDb::all().await {
            let db = Database::connect(&settings_for(&test_db.url).database)
                .await
                .expect("connect");
            db.migrate().await.expect("migrate");
            db.conn()
                .execute_unprepared(
                    "INSERT INTO jobs (kind, payload, status, attempts, due_at, created_at, \
                     updated_at) \
                     WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n \
                     WHERE i < 3000) \
                     SELECT 'noop', '{}', 'ready', 0, i, i, i FROM n",
                )
                .await
                .expect("backlog");
            db.conn()
                .execute_unprepared("ANALYZE jobs")
                .await
                .expect("analyze");
            let stmt =
                claim_statement(db.backend(), 5_000, Duration::from_secs(300), "t", 64).build();
            let explain = match db.backend() {
                DbBackend::Postgres => "EXPLAIN ",
                _ => "EXPLAIN QUERY PLAN ",
            };
            let stmt = sea_orm::Statement {
                sql: format!("{explain}{}", stmt.sql),
                ..stmt
            };
            let plan: Vec<String> = db
                .conn()
                .query_all_raw(stmt)
                .await
                .expect("explain")
                .iter()
                .map(|row| {
                    // Postgres: one text column; SQLite: (id, parent, notused, detail).
                    row.try_get_by_index::<String>(0)
                        .or_else(|_| row.try_get_by_index::<String>(3))
                        .expect("plan line")
                })
                .collect();
            let plan = plan.join("\n");
            assert!(plan.contains("idx_jobs_active_due"), "{name}:\n{plan}");
            assert!(
                !plan.contains("Sort") && !plan.contains("TEMP B-TREE"),
                "{name}:\n{plan}"
            );
            db.close().await.expect("close");
        }
    }
}
