//! The outcomes of a reserved job: `complete` (the rows deleted first, then Redis acknowledged),
//! `retry` (back to the delayed set, written to the row too) and `dead_letter` (the row becomes
//! the dead letter in a transaction that commits once Redis has dropped the job). An outcome is
//! recorded in Redis only while the job's lease is still held.

use super::{
    GROUP, MARKER_TTL_SECS, RELAY_BATCH, RedisJobQueue, db_unavailable, id_list, placeholder,
    redis_err, statement,
};
use crate::db::millis;
use chrono::{DateTime, Utc};
use domain::error::QueueError;
use domain::model::Job;
use redis::RedisError;
use sea_orm::{ConnectionTrait, TransactionTrait, Value};

impl RedisJobQueue {
    /// `complete`: the rows deleted, held or not, then the jobs still held acknowledged.
    pub(super) async fn complete_jobs(&self, jobs: &[Job]) -> Result<(), QueueError> {
        if jobs.is_empty() {
            return Ok(());
        }
        // The rows first, held or not (the handlers ran): once they are gone no reconciliation
        // brings the jobs back. Redis is acknowledged whatever became of them.
        let deleted = self.delete_rows(jobs).await;
        let acked = self
            .for_held(&self.inner.scripts.complete, None, true, jobs)
            .await;
        deleted?;
        let n = acked?;
        if n < jobs.len() {
            tracing::debug!(
                lost = jobs.len() - n,
                "leases lost, completion skipped in Redis"
            );
        }
        Ok(())
    }

    /// `retry`: the job, still held, waits in the delayed set until `at`.
    pub(super) async fn retry_job(
        &self,
        job: &Job,
        at: DateTime<Utc>,
        error: &str,
    ) -> Result<(), QueueError> {
        let Some((entry, attempt)) = self.held(job) else {
            return Err(QueueError::LeaseLost(job.id));
        };
        let keys = &self.inner.keys;
        let done: i64 = self
            .inner
            .scripts
            .retry
            .key(&keys.stream)
            .key(&keys.attempts)
            .key(&keys.delayed)
            .key(&keys.leases)
            .key(keys.relayed(job.id.0))
            .arg(GROUP)
            .arg(&self.inner.consumer)
            .arg(entry)
            .arg(job.id.0)
            .arg(attempt)
            .arg(millis(at))
            .arg(error)
            .arg(MARKER_TTL_SECS)
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        if done == 0 {
            return Err(QueueError::LeaseLost(job.id));
        }
        self.record_retry(job, attempt, at, error).await;
        Ok(())
    }

    /// `dead_letter`: the job, still held, leaves Redis and its row becomes the dead letter.
    pub(super) async fn dead_letter_job(&self, job: &Job, error: &str) -> Result<(), QueueError> {
        let Some((entry, attempt)) = self.held(job) else {
            return Err(QueueError::LeaseLost(job.id));
        };
        // The row becomes the dead letter in a transaction that commits once Redis has dropped
        // the job (and its marker): the row is locked meanwhile, so no reconciliation sees a
        // relayed row without a marker.
        let db = &self.inner.db;
        let backend = db.backend();
        let p = |n| placeholder(backend, n);
        let now = millis(Utc::now());
        let mark = statement(
            backend,
            &format!(
                "UPDATE jobs SET status = 'dead', attempts = {}, last_error = {}, updated_at = {}, \
                 due_at = {} WHERE id = {} AND status IN ('ready', 'relayed')",
                p(1),
                p(2),
                p(3),
                p(3),
                p(4)
            ),
            vec![
                attempt.parse::<i32>().unwrap_or(0).into(),
                error.into(),
                now.into(),
                job.id.0.into(),
            ],
        );
        let txn = db.conn().begin().await.map_err(db_unavailable)?;
        let marked = txn
            .execute_raw(mark)
            .await
            .map_err(db_unavailable)?
            .rows_affected();
        let keys = &self.inner.keys;
        let done: Result<i64, RedisError> = self
            .inner
            .scripts
            .dead
            .key(&keys.stream)
            .key(&keys.attempts)
            .key(&keys.leases)
            .key(keys.relayed(job.id.0))
            .arg(GROUP)
            .arg(&self.inner.consumer)
            .arg(entry)
            .arg(job.id.0)
            .arg(attempt)
            .invoke_async(&mut self.conn())
            .await;
        match done {
            Ok(0) => {
                let _ = txn.rollback().await;
                Err(QueueError::LeaseLost(job.id))
            }
            Ok(_) => {
                txn.commit().await.map_err(db_unavailable)?;
                if marked == 0 {
                    tracing::warn!(job_id = %job.id,
                        "dead-lettered job has no outbox row (completed already?): dropped");
                }
                Ok(())
            }
            Err(e) => {
                let _ = txn.rollback().await;
                Err(redis_err(e))
            }
        }
    }

    /// Deletes the rows of completed jobs (`ready` or `relayed`: not dead letters).
    async fn delete_rows(&self, jobs: &[Job]) -> Result<(), QueueError> {
        let backend = self.inner.db.backend();
        for chunk in jobs.chunks(RELAY_BATCH) {
            let values: Vec<Value> = chunk.iter().map(|j| Value::from(j.id.0)).collect();
            let delete = statement(
                backend,
                &format!(
                    "DELETE FROM jobs WHERE status IN ('ready', 'relayed') AND id IN {}",
                    id_list(backend, 1, values.len())
                ),
                values,
            );
            self.inner
                .db
                .conn()
                .execute_raw(delete)
                .await
                .map_err(db_unavailable)?;
        }
        Ok(())
    }

    /// Writes a retry to the job's row, so that it survives Redis losing the job (best effort:
    /// Redis has it already).
    async fn record_retry(&self, job: &Job, attempt: &str, at: DateTime<Utc>, error: &str) {
        let backend = self.inner.db.backend();
        let p = |n| placeholder(backend, n);
        let update = statement(
            backend,
            &format!(
                "UPDATE jobs SET due_at = {}, last_error = {}, attempts = {}, updated_at = {} \
                 WHERE id = {} AND status = 'relayed'",
                p(1),
                p(2),
                p(3),
                p(4),
                p(5)
            ),
            vec![
                millis(at).into(),
                error.into(),
                attempt.parse::<i32>().unwrap_or(0).into(),
                millis(Utc::now()).into(),
                job.id.0.into(),
            ],
        );
        if let Err(e) = self.inner.db.conn().execute_raw(update).await {
            tracing::warn!(job_id = %job.id, error = %e,
                "retry not written to the outbox row (only matters if Redis loses the job)");
        }
    }
}
