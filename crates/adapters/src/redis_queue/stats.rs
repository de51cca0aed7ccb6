//! `stats`: what Redis says is running and waiting, with the counts of the outbox rows (every
//! job not done has its row, wherever the job is).

use super::{GROUP, RedisJobQueue, db_unavailable, parse_score, redis_err, statement};
use crate::db::{from_millis, millis};
use chrono::Utc;
use domain::error::QueueError;
use domain::ports::QueueStats;
use sea_orm::ConnectionTrait;

impl RedisJobQueue {
    /// `stats`: pending (the outbox rows not dead), running (leases not ended), dead, and the
    /// oldest due time of a job waiting in the stream, the delayed set or the outbox.
    pub(super) async fn queue_stats(&self) -> Result<QueueStats, QueueError> {
        let keys = &self.inner.keys;
        let (running, oldest, first_delayed): (u64, String, String) = self
            .inner
            .scripts
            .stats
            .key(&keys.stream)
            .key(&keys.delayed)
            .key(&keys.leases)
            .arg(GROUP)
            .arg(millis(Utc::now()))
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        // Every job not done has its row: pending counts them, wherever the job is.
        let backend = self.inner.db.backend();
        let outbox = statement(
            backend,
            "SELECT COALESCE(SUM(CASE WHEN status IN ('ready', 'relayed') THEN 1 ELSE 0 END), 0), \
               COALESCE(SUM(CASE WHEN status = 'dead' THEN 1 ELSE 0 END), 0), \
               MIN(CASE WHEN status = 'ready' THEN due_at END) FROM jobs",
            Vec::new(),
        );
        let row = self
            .inner
            .db
            .conn()
            .query_one_raw(outbox)
            .await
            .map_err(db_unavailable)?
            .ok_or_else(|| QueueError::Unexpected("no outbox stats row".into()))?;
        let pending: i64 = row.try_get_by_index(0).map_err(db_unavailable)?;
        let dead: i64 = row.try_get_by_index(1).map_err(db_unavailable)?;
        let outbox_due: Option<i64> = row.try_get_by_index(2).map_err(db_unavailable)?;
        let oldest_due = [
            entry_millis(&oldest),
            parse_score(&first_delayed),
            outbox_due,
        ]
        .into_iter()
        .flatten()
        .min()
        .map(from_millis);
        Ok(QueueStats {
            pending: u64::try_from(pending).unwrap_or(0),
            running,
            dead: u64::try_from(dead).unwrap_or(0),
            oldest_due,
        })
    }
}

/// The millisecond timestamp in a stream entry id (`<ms>-<seq>`).
fn entry_millis(entry: &str) -> Option<i64> {
    entry.split_once('-').and_then(|(ms, _)| ms.parse().ok())
}
