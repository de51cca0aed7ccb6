//! The reconciliation of the outbox with Redis: rows `relayed` whose marker Redis no longer has
//! (it lost the job) are set back to `ready` for the relay to push again
//! ([`RedisJobQueue::reconcile_once`]); and the repairs [`RedisJobQueue::run_relay`] runs now and
//! then (consumers long gone forgotten, entries pending with no lease given one).

use super::{
    GROUP, MARKER_TTL_SECS, RECONCILE_BATCH, RECONCILE_EVERY, RECONCILE_GRACE, RedisJobQueue,
    db_unavailable, duration_ms, id_list, placeholder, redis_err, statement,
};
use crate::db::millis;
use chrono::Utc;
use domain::error::QueueError;
use sea_orm::{ConnectionTrait, Value};
use std::time::Duration;
use tokio::time::Instant;

/// A reconciliation refreshes the markers that would expire within this many seconds (1 day).
const MARKER_REFRESH_BELOW_SECS: u64 = 24 * 3600;

/// How many reconciliation passes `connect` runs at most (while they find lost jobs).
const CONNECT_RECONCILE_PASSES: usize = 64;

/// Where this instance's reconciliation stands.
pub(super) struct Reconcile {
    /// The id after which the next pass starts.
    cursor: i64,
    /// When the next pass is due (`None`: at once).
    next: Option<Instant>,
}

/// What one reconciliation pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pass {
    /// Rows whose marker was checked.
    checked: usize,
    /// Rows set back to `ready`.
    reset: usize,
    /// Whether the pass reached the last relayed row (the next one starts over).
    wrapped: bool,
}

impl Reconcile {
    /// From the oldest row, at once.
    pub(super) fn new() -> Self {
        Reconcile {
            cursor: 0,
            next: None,
        }
    }
}

impl RedisJobQueue {
    /// One reconciliation pass of at most `max` rows, from where this instance's previous pass
    /// stopped: the rows `relayed` more than [`RECONCILE_GRACE`] ago whose marker Redis no
    /// longer has (Redis restarted empty, was flushed, ...) are set back to `ready`, for the relay
    /// to push again. Returns how many were.
    ///
    /// # Errors
    /// [`QueueError::Unavailable`] when the database or Redis cannot be reached: nothing changed.
    pub async fn reconcile_once(&self, max: usize) -> Result<usize, QueueError> {
        let mut state = self.inner.reconcile.lock().await;
        let pass = self.reconcile_pass(&mut state.cursor, max).await?;
        Ok(pass.reset)
    }

    /// The passes run by `connect`: from the oldest row, on while they find lost jobs.
    pub(super) async fn reconcile_at_start(&self) {
        let mut state = self.inner.reconcile.lock().await;
        let mut reset = 0;
        for _ in 0..CONNECT_RECONCILE_PASSES {
            match self
                .reconcile_pass(&mut state.cursor, RECONCILE_BATCH)
                .await
            {
                Ok(pass) => {
                    reset += pass.reset;
                    if pass.reset == 0 || pass.wrapped {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %domain::error::error_chain(&e),
                        "reconciling the job outbox with Redis failed");
                    break;
                }
            }
        }
        if reset > 0 {
            tracing::warn!(jobs = reset, "jobs lost by Redis are relayed again");
        }
        state.next = Some(Instant::now() + RECONCILE_EVERY);
    }

    /// A reconciliation pass if this instance's next one is due and no other call of it is
    /// running one; failures are logged.
    pub(super) async fn reconcile_if_due(&self) {
        let Ok(mut state) = self.inner.reconcile.try_lock() else {
            return;
        };
        if state.next.is_some_and(|next| Instant::now() < next) {
            return;
        }
        let again = match self
            .reconcile_pass(&mut state.cursor, RECONCILE_BATCH)
            .await
        {
            Ok(pass) => {
                tracing::debug!(
                    checked = pass.checked,
                    reset = pass.reset,
                    "outbox reconciled"
                );
                if pass.reset > 0 {
                    tracing::warn!(jobs = pass.reset, "jobs lost by Redis are relayed again");
                }
                // Lost jobs found and more rows to check: the next pass follows at once.
                pass.reset > 0 && !pass.wrapped
            }
            Err(e) => {
                tracing::warn!(error = %domain::error::error_chain(&e),
                    "reconciling the job outbox with Redis failed");
                false
            }
        };
        state.next = (!again).then(|| Instant::now() + RECONCILE_EVERY);
    }

    /// Checks the markers of up to `max` relayed rows after `cursor` and sets the rows whose
    /// marker is gone back to `ready`; moves `cursor` on (back to the start past the last row).
    async fn reconcile_pass(&self, cursor: &mut i64, max: usize) -> Result<Pass, QueueError> {
        if max == 0 {
            return Ok(Pass {
                checked: 0,
                reset: 0,
                wrapped: false,
            });
        }
        let now = millis(Utc::now());
        let settled = now - i64::try_from(RECONCILE_GRACE.as_millis()).unwrap_or(0);
        let ids = self.settled_relayed(*cursor, settled, max).await?;
        let wrapped = ids.len() < max;
        let next_cursor = if wrapped {
            0
        } else {
            ids.last().copied().unwrap_or(0)
        };
        if ids.is_empty() {
            *cursor = next_cursor;
            return Ok(Pass {
                checked: 0,
                reset: 0,
                wrapped,
            });
        }
        let lost = self.markers_lost(&ids).await?;
        let mut reset = 0;
        if !lost.is_empty() {
            reset = self.reset_lost(&lost, now, settled).await?;
        }
        *cursor = next_cursor;
        Ok(Pass {
            checked: ids.len(),
            reset,
            wrapped,
        })
    }

    /// The ids of up to `max` rows after `cursor`, in id order, relayed at `settled` or before.
    async fn settled_relayed(
        &self,
        cursor: i64,
        settled: i64,
        max: usize,
    ) -> Result<Vec<i64>, QueueError> {
        let db = &self.inner.db;
        let backend = db.backend();
        let select = statement(
            backend,
            &format!(
                "SELECT id FROM jobs WHERE status = 'relayed' AND id > {} AND updated_at <= {} \
                 ORDER BY id LIMIT {}",
                placeholder(backend, 1),
                placeholder(backend, 2),
                placeholder(backend, 3)
            ),
            vec![
                cursor.into(),
                settled.into(),
                i64::try_from(max).unwrap_or(i64::MAX).into(),
            ],
        );
        let rows = db
            .conn()
            .query_all_raw(select)
            .await
            .map_err(db_unavailable)?;
        let mut ids = Vec::with_capacity(rows.len());
        for row in &rows {
            ids.push(row.try_get_by_index::<i64>(0).map_err(db_unavailable)?);
        }
        Ok(ids)
    }

    /// The ids among `ids` whose marker Redis no longer has (the markers script, which also
    /// refreshes the markers about to expire).
    async fn markers_lost(&self, ids: &[i64]) -> Result<Vec<i64>, QueueError> {
        let keys = &self.inner.keys;
        let mut call = self.inner.scripts.markers.prepare_invoke();
        for id in ids {
            call.key(keys.relayed(*id));
        }
        call.arg(MARKER_TTL_SECS).arg(MARKER_REFRESH_BELOW_SECS);
        let present: Vec<i64> = call
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        Ok(ids
            .iter()
            .zip(present.iter().chain(std::iter::repeat(&1)))
            .filter(|(_, present)| **present == 0)
            .map(|(id, _)| *id)
            .collect())
    }

    /// Sets the `lost` rows back to `ready`, only those not relayed again since they were read
    /// (their `updated_at` moved past `settled`). Returns how many were.
    async fn reset_lost(&self, lost: &[i64], now: i64, settled: i64) -> Result<usize, QueueError> {
        let db = &self.inner.db;
        let backend = db.backend();
        let mut values: Vec<Value> = vec![now.into(), settled.into()];
        let list = id_list(backend, 3, lost.len());
        values.extend(lost.iter().map(|id| Value::from(*id)));
        let update = statement(
            backend,
            &format!(
                "UPDATE jobs SET status = 'ready', updated_at = {} WHERE status = 'relayed' \
                 AND updated_at <= {} AND id IN {list}",
                placeholder(backend, 1),
                placeholder(backend, 2)
            ),
            values,
        );
        let done = db
            .conn()
            .execute_raw(update)
            .await
            .map_err(db_unavailable)?;
        Ok(usize::try_from(done.rows_affected()).unwrap_or(usize::MAX))
    }

    /// Deletes the group's other consumers that have been idle for `idle` with no job pending
    /// (the consumers of workers that stopped). Returns how many.
    ///
    /// # Errors
    /// [`QueueError::Unavailable`] when Redis cannot be reached.
    pub async fn prune_consumers(&self, idle: Duration) -> Result<usize, QueueError> {
        let n: usize = self
            .inner
            .scripts
            .prune
            .key(&self.inner.keys.stream)
            .arg(GROUP)
            .arg(&self.inner.consumer)
            .arg(duration_ms(idle))
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        Ok(n)
    }

    /// Gives back the entries pending for `idle` or longer with no lease recorded (which only
    /// hand-edited keys can cause): the next reservation takes them over. Returns how many.
    ///
    /// # Errors
    /// [`QueueError::Unavailable`] when Redis cannot be reached.
    pub async fn recover_orphans(&self, idle: Duration) -> Result<usize, QueueError> {
        let n: usize = self
            .inner
            .scripts
            .orphans
            .key(&self.inner.keys.stream)
            .key(&self.inner.keys.leases)
            .arg(GROUP)
            .arg(duration_ms(idle))
            .arg(millis(Utc::now()))
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        Ok(n)
    }
}
