//! Reservations and leases: `reserve` (the reserve script: due retries promoted, ended leases
//! taken over, new entries read, each counted an attempt with the end of its lease; then a
//! blocking wait for more) and `extend`, and the lease tokens (`{entry id}/{attempt}`) the
//! outcomes check.

use super::{GROUP, POLL_SLICE, RedisJobQueue, duration_ms, lease_end, parse_score, redis_err};
use crate::db::millis;
use chrono::Utc;
use domain::error::QueueError;
use domain::model::{Job, JobId, JobKind, Lease};
use redis::Script;
use std::time::Duration;
use tokio::time::Instant;

/// How many due retries one reservation moves to the stream at most.
const PROMOTE_BATCH: usize = 256;

/// Extra time given to a blocking read beyond its `BLOCK`, before it is abandoned.
const BLOCK_GRACE: Duration = Duration::from_secs(1);

/// What a reservation pass saw, for the wait that may follow it.
struct Seen {
    /// The stream's newest entry id: a blocking read from it wakes on the next entry.
    newest: String,
    /// When the first retry becomes due or the first lease ends (ms), if any.
    next_due: Option<i64>,
}

impl RedisJobQueue {
    /// `reserve`: up to `max` jobs, each leased for `lease`, waiting up to `wait` for some.
    pub(super) async fn reserve_jobs(
        &self,
        max: usize,
        lease: Duration,
        wait: Duration,
    ) -> Result<Vec<Job>, QueueError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let deadline = Instant::now() + wait;
        loop {
            self.reconcile_if_due().await;
            self.relay_quietly().await;
            let (jobs, seen) = self.claim(max, lease).await?;
            let now = Instant::now();
            if !jobs.is_empty() || now >= deadline {
                return Ok(jobs);
            }
            let mut block = (deadline - now).min(POLL_SLICE);
            if let Some(due) = seen.next_due {
                let until = u64::try_from(due - millis(Utc::now())).unwrap_or(0);
                block = block.min(Duration::from_millis(until.max(1)));
            }
            self.wait_for_entry(&seen.newest, block).await?;
        }
    }

    /// `extend`: moves the end of the lease of the jobs still held to `lease` from now.
    pub(super) async fn extend_leases(
        &self,
        jobs: &[Job],
        lease: Duration,
    ) -> Result<(), QueueError> {
        let end = lease_end(millis(Utc::now()), lease);
        let n = self
            .for_held(&self.inner.scripts.extend, Some(end), false, jobs)
            .await?;
        if n < jobs.len() {
            tracing::debug!(lost = jobs.len() - n, "leases lost, not extended");
        }
        Ok(())
    }

    /// One reservation pass (the reserve script), then decoding.
    async fn claim(&self, max: usize, lease: Duration) -> Result<(Vec<Job>, Seen), QueueError> {
        let keys = &self.inner.keys;
        let now = millis(Utc::now());
        type Reply = (Vec<String>, Vec<(String, String, String, i64)>);
        let (meta, entries): Reply = self
            .inner
            .scripts
            .reserve
            .key(&keys.stream)
            .key(&keys.delayed)
            .key(&keys.attempts)
            .key(&keys.leases)
            .arg(GROUP)
            .arg(&self.inner.consumer)
            .arg(now)
            .arg(lease_end(now, lease))
            .arg(max)
            .arg(PROMOTE_BATCH)
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        let mut meta = meta.into_iter();
        let newest = meta.next().unwrap_or_else(|| "0-0".into());
        let next_due = meta.filter_map(|s| parse_score(&s)).min();
        let seen = Seen { newest, next_due };
        let mut jobs = Vec::with_capacity(entries.len());
        for (entry, job_id, payload, attempt) in entries {
            let attempt = u32::try_from(attempt).unwrap_or(0);
            let Ok(id) = job_id.parse::<i64>().map(JobId) else {
                tracing::error!(%entry, job_id, "stream entry without a job id dropped");
                self.drop_entry(&entry).await?;
                continue;
            };
            let lease = Lease(format!("{entry}/{attempt}"));
            match serde_json::from_str::<JobKind>(&payload) {
                Ok(kind) => jobs.push(Job {
                    id,
                    kind,
                    attempt,
                    lease,
                }),
                Err(e) => {
                    let reason = format!("undecodable payload: {e}");
                    tracing::error!(job_id = %id, %reason, "job dead-lettered");
                    let job = Job {
                        id,
                        kind: JobKind::Noop { tag: 0 },
                        attempt,
                        lease,
                    };
                    match self.dead_letter_job(&job, &reason).await {
                        Ok(()) | Err(QueueError::LeaseLost(_)) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Ok((jobs, seen))
    }

    /// Acknowledges and deletes an entry that is not a job.
    async fn drop_entry(&self, entry: &str) -> Result<(), QueueError> {
        let keys = &self.inner.keys;
        redis::pipe()
            .cmd("XACK")
            .arg(&keys.stream)
            .arg(GROUP)
            .arg(entry)
            .ignore()
            .cmd("XDEL")
            .arg(&keys.stream)
            .arg(entry)
            .ignore()
            .query_async::<()>(&mut self.conn())
            .await
            .map_err(redis_err)
    }

    /// Waits up to `block` for an entry newer than `newest`.
    async fn wait_for_entry(&self, newest: &str, block: Duration) -> Result<(), QueueError> {
        let Ok(mut conn) = self.inner.blocking.try_lock() else {
            // Another reservation of this instance is blocked on the connection already.
            tokio::time::sleep(block).await;
            return Ok(());
        };
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT")
            .arg(1)
            .arg("BLOCK")
            .arg(duration_ms(block).max(1))
            .arg("STREAMS")
            .arg(&self.inner.keys.stream)
            .arg(newest);
        let read = cmd.query_async::<redis::Value>(&mut *conn);
        match tokio::time::timeout(block + BLOCK_GRACE, read).await {
            Ok(Ok(_)) | Err(_) => Ok(()),
            Ok(Err(e)) => Err(redis_err(e)),
        }
    }

    /// The job's stream entry and attempt, from its lease token.
    pub(super) fn held<'j>(&self, job: &'j Job) -> Option<(&'j str, &'j str)> {
        job.lease
            .0
            .split_once('/')
            .filter(|(entry, attempt)| !entry.is_empty() && !attempt.is_empty())
    }

    /// Runs the extend script (with the new lease end) or the complete script (without, and with
    /// the jobs' markers) over the jobs still held; returns how many were.
    pub(super) async fn for_held(
        &self,
        script: &Script,
        lease_end: Option<i64>,
        markers: bool,
        jobs: &[Job],
    ) -> Result<usize, QueueError> {
        let keys = &self.inner.keys;
        let mut call = script.prepare_invoke();
        call.key(&keys.stream)
            .key(&keys.attempts)
            .key(&keys.leases)
            .arg(GROUP)
            .arg(&self.inner.consumer);
        if let Some(end) = lease_end {
            call.arg(end);
        }
        let mut any = false;
        for job in jobs {
            if let Some((entry, attempt)) = self.held(job) {
                call.arg(entry).arg(job.id.0).arg(attempt);
                if markers {
                    call.key(keys.relayed(job.id.0));
                }
                any = true;
            }
        }
        if !any {
            return Ok(0);
        }
        call.invoke_async(&mut self.conn()).await.map_err(redis_err)
    }
}
