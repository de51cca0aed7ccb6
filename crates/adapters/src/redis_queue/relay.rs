//! The outbox relay: due `ready` rows of the `jobs` table pushed to the stream and marked
//! `relayed` in one transaction that commits only once Redis has them
//! ([`RedisJobQueue::relay_once`]), and its loop ([`RedisJobQueue::run_relay`]), which also runs
//! the reconciliation and the repairs.

use super::{
    MARKER_TTL_SECS, RELAY_BATCH, RedisJobQueue, db_unavailable, placeholder, redis_err, statement,
};
use crate::db::millis;
use chrono::Utc;
use domain::error::QueueError;
use redis::RedisError;
use sea_orm::{ConnectionTrait, DbBackend, TransactionTrait};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long [`RedisJobQueue::run_relay`] sleeps when the outbox had nothing more to move.
const RELAY_IDLE: Duration = Duration::from_millis(50);

/// The longest [`RedisJobQueue::run_relay`] backs off after errors.
const RELAY_MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How often [`RedisJobQueue::run_relay`] forgets consumers of workers long gone.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// Consumers idle this long with nothing pending are forgotten by the relay, and entries pending
/// this long with no lease recorded are given back.
const PRUNE_IDLE: Duration = Duration::from_secs(3600);

/// An outbox row being relayed.
struct Relayed {
    id: i64,
    payload: String,
    attempts: i32,
    created_at: i64,
}

impl RedisJobQueue {
    /// Pushes up to `max` due `ready` outbox rows to the stream and marks them `relayed`, in one
    /// SQL transaction that commits only after Redis has them. Returns how many rows were
    /// relayed.
    ///
    /// # Errors
    /// [`QueueError::Unavailable`] when the database or Redis cannot be reached: the rows stay
    /// in the outbox.
    pub async fn relay_once(&self, max: usize) -> Result<usize, QueueError> {
        if max == 0 {
            return Ok(0);
        }
        let db = &self.inner.db;
        let backend = db.backend();
        let now = millis(Utc::now());
        // A read first: an idle relay takes no write lock (SQLite has only one).
        if !self.any_ready(now).await? {
            return Ok(0);
        }
        let lock = if backend == DbBackend::Postgres {
            " FOR UPDATE SKIP LOCKED"
        } else {
            ""
        };
        let take = statement(
            backend,
            &format!(
                "UPDATE jobs SET status = 'relayed', updated_at = {p1} WHERE id IN (SELECT id \
                 FROM jobs WHERE status = 'ready' AND due_at <= {p1} ORDER BY id LIMIT {}{lock}) \
                 RETURNING id, payload, attempts, created_at",
                placeholder(backend, 2),
                p1 = placeholder(backend, 1),
            ),
            vec![now.into(), i64::try_from(max).unwrap_or(i64::MAX).into()],
        );
        let txn = db.conn().begin().await.map_err(db_unavailable)?;
        let rows = txn.query_all_raw(take).await.map_err(db_unavailable)?;
        if rows.is_empty() {
            txn.commit().await.map_err(db_unavailable)?;
            return Ok(0);
        }
        let mut decoded = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: i64 = row.try_get_by_index(0).map_err(db_unavailable)?;
            let payload: String = row.try_get_by_index(1).map_err(db_unavailable)?;
            let attempts: i32 = row.try_get_by_index(2).map_err(db_unavailable)?;
            let created_at: i64 = row.try_get_by_index(3).map_err(db_unavailable)?;
            decoded.push(Relayed {
                id,
                payload,
                attempts,
                created_at,
            });
        }
        // Relayed in id order, as the rows were returned (RETURNING promises no order).
        decoded.sort_by_key(|r| r.id);
        if let Err(e) = self.push(&decoded).await {
            let _ = txn.rollback().await;
            return Err(redis_err(e));
        }
        txn.commit().await.map_err(db_unavailable)?;
        Ok(decoded.len())
    }

    /// Whether any `ready` row is due at `now`.
    async fn any_ready(&self, now: i64) -> Result<bool, QueueError> {
        let db = &self.inner.db;
        let backend = db.backend();
        let probe = statement(
            backend,
            &format!(
                "SELECT id FROM jobs WHERE status = 'ready' AND due_at <= {} LIMIT 1",
                placeholder(backend, 1)
            ),
            vec![now.into()],
        );
        Ok(db
            .conn()
            .query_one_raw(probe)
            .await
            .map_err(db_unavailable)?
            .is_some())
    }

    /// Adds the rows to the stream (the relay script: once per row and `created_at`).
    async fn push(&self, rows: &[Relayed]) -> Result<(), RedisError> {
        let keys = &self.inner.keys;
        let mut call = self.inner.scripts.relay.prepare_invoke();
        call.key(&keys.stream).key(&keys.attempts);
        call.arg(MARKER_TTL_SECS);
        for row in rows {
            call.key(keys.relayed(row.id));
            call.arg(row.id)
                .arg(&row.payload)
                .arg(row.attempts)
                .arg(row.created_at);
        }
        call.invoke_async::<i64>(&mut self.conn()).await.map(drop)
    }

    /// Relays until `shutdown` is cancelled: again at once after a full batch, after a short
    /// sleep otherwise, backing off on errors. Every [`RECONCILE_EVERY`](super::RECONCILE_EVERY) it reconciles the
    /// outbox with Redis ([`RedisJobQueue::reconcile_once`]). Every ten minutes it also forgets
    /// consumers of workers gone for an hour with nothing pending, and repairs jobs pending with
    /// no lease recorded ([`RedisJobQueue::recover_orphans`]). Not needed for correctness
    /// (`reserve` relays and reconciles too), it keeps new jobs flowing while every worker is
    /// busy.
    pub async fn run_relay(&self, shutdown: CancellationToken) {
        let mut backoff = RELAY_IDLE;
        let mut next_prune = Instant::now() + PRUNE_EVERY;
        while !shutdown.is_cancelled() {
            self.reconcile_if_due().await;
            let pause = match self.relay_once(RELAY_BATCH).await {
                Ok(n) => {
                    backoff = RELAY_IDLE;
                    if n == RELAY_BATCH {
                        Duration::ZERO
                    } else {
                        RELAY_IDLE
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %domain::error::error_chain(&e), retry_in = ?backoff,
                        "job relay failed");
                    let pause = backoff;
                    backoff = (backoff * 2).min(RELAY_MAX_BACKOFF);
                    pause
                }
            };
            if Instant::now() >= next_prune {
                next_prune = Instant::now() + PRUNE_EVERY;
                match self.recover_orphans(PRUNE_IDLE).await {
                    Ok(0) => {}
                    Ok(n) => tracing::warn!(jobs = n, "gave back jobs reserved without a lease"),
                    Err(e) => tracing::warn!(error = %e, "recovering orphaned jobs failed"),
                }
                match self.prune_consumers(PRUNE_IDLE).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(consumers = n, "forgot idle queue consumers"),
                    Err(e) => tracing::warn!(error = %e, "pruning queue consumers failed"),
                }
            }
            if pause.is_zero() {
                tokio::task::yield_now().await;
            } else {
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = shutdown.cancelled() => {}
                }
            }
        }
    }

    /// Relays for a reservation: a failure is logged, not returned (what is in Redis can still
    /// be reserved while the database is down).
    pub(super) async fn relay_quietly(&self) {
        if let Err(e) = self.relay_once(RELAY_BATCH).await {
            tracing::warn!(error = %domain::error::error_chain(&e), "job relay failed");
        }
    }
}
