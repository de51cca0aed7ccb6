//! The worker: reserves jobs from a [`JobQueue`], runs them, and acknowledges, retries or
//! dead-letters each one. `lazona-worker` runs it as its own process; `lazona-http` runs it
//! in-process on the embedded default. Embedders call [`Worker::run`] in their own runtime.

use chrono::Utc;
use domain::error::JobError;
use domain::model::{Job, JobKind};
use domain::ports::{JobQueue, WebhookInbox};
use domain::service::process::process_webhook;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Jobs run at the same time.
    pub concurrency: usize,
    /// How long a reserved job is held.
    pub lease: Duration,
    /// How long an idle worker waits before looking again (when not woken earlier).
    pub poll_interval: Duration,
    /// How long shutdown waits for jobs in flight.
    pub shutdown_timeout: Duration,
    /// Attempts before a transiently failing job is dead-lettered.
    pub max_attempts: u32,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            concurrency: 8,
            lease: Duration::from_secs(300),
            poll_interval: Duration::from_millis(500),
            shutdown_timeout: Duration::from_secs(30),
            max_attempts: 12,
        }
    }
}

impl WorkerOptions {
    /// The options in the configuration's `[worker]` table.
    pub fn from_config(cfg: &adapters::config::WorkerConfig) -> Self {
        WorkerOptions {
            concurrency: cfg.concurrency.max(1),
            lease: cfg.lease_secs,
            poll_interval: cfg.poll_interval_ms,
            shutdown_timeout: cfg.shutdown_timeout_secs,
            ..WorkerOptions::default()
        }
    }
}

/// What one pass over the queue did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassOutcome {
    /// Jobs completed.
    pub completed: usize,
    /// Jobs put back for a later attempt.
    pub retried: usize,
    /// Jobs dead-lettered.
    pub dead: usize,
}

impl PassOutcome {
    /// Jobs handled in the pass.
    pub fn total(&self) -> usize {
        self.completed + self.retried + self.dead
    }
}

/// A worker: the queue it serves and the ports its job handlers use.
#[derive(Clone)]
pub struct Worker {
    queue: Arc<dyn JobQueue>,
    inbox: Arc<dyn WebhookInbox>,
    options: WorkerOptions,
    wake: Option<Arc<Notify>>,
}

impl Worker {
    /// A worker over `queue`, handling jobs with `inbox`.
    pub fn new(
        queue: Arc<dyn JobQueue>,
        inbox: Arc<dyn WebhookInbox>,
        options: WorkerOptions,
    ) -> Self {
        Worker {
            queue,
            inbox,
            options,
            wake: None,
        }
    }

    /// Wakes the idle worker when `notify` fires (the in-process inbox's "jobs enqueued").
    pub fn wake_on(mut self, notify: Arc<Notify>) -> Self {
        self.wake = Some(notify);
        self
    }

    /// Runs until `shutdown` is cancelled, then finishes the jobs in flight (at most
    /// `shutdown_timeout`); jobs not finished by then are left to their lease and run again.
    pub async fn run(&self, shutdown: CancellationToken) {
        tracing::info!(concurrency = self.options.concurrency, "worker started");
        let mut backoff = self.options.poll_interval;
        while !shutdown.is_cancelled() {
            let pass = self.run_once();
            tokio::pin!(pass);
            let result = tokio::select! {
                r = &mut pass => r,
                () = shutdown.cancelled() => {
                    match tokio::time::timeout(self.options.shutdown_timeout, pass).await {
                        Ok(r) => r,
                        Err(_) => {
                            tracing::warn!("shutdown timeout: jobs in flight are left to their lease");
                            break;
                        }
                    }
                }
            };
            match result {
                Ok(outcome) if outcome.total() > 0 => {
                    backoff = self.options.poll_interval;
                    continue;
                }
                Ok(_) => backoff = self.options.poll_interval,
                Err(e) => {
                    tracing::error!(error = %e, "job queue unavailable");
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
            let idle = tokio::time::sleep(backoff);
            match &self.wake {
                Some(wake) => tokio::select! {
                    () = idle => {}
                    () = wake.notified() => {}
                    () = shutdown.cancelled() => {}
                },
                None => tokio::select! {
                    () = idle => {}
                    () = shutdown.cancelled() => {}
                },
            }
        }
        tracing::info!("worker stopped");
    }

    /// Reserves up to `concurrency` due jobs, runs them concurrently and records each outcome.
    ///
    /// # Errors
    /// The queue's error when it cannot be reached.
    pub async fn run_once(&self) -> Result<PassOutcome, domain::error::QueueError> {
        let jobs = self
            .queue
            .reserve(self.options.concurrency, self.options.lease)
            .await?;
        if jobs.is_empty() {
            return Ok(PassOutcome::default());
        }
        let mut tasks = tokio::task::JoinSet::new();
        for job in jobs {
            let this = self.clone();
            tasks.spawn(async move {
                let result = this.handle(&job).await;
                (job, result)
            });
        }
        let mut outcome = PassOutcome::default();
        let mut done = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            let Ok((job, result)) = joined else {
                // A panicking handler: its job stays reserved and runs again after its lease.
                tracing::error!("job handler panicked");
                continue;
            };
            match result {
                Ok(()) => done.push(job.id),
                Err(JobError::Permanent { reason }) => {
                    tracing::error!(job_id = %job.id, kind = job.kind.name(), %reason, "job failed for good");
                    self.queue.dead_letter(job.id, &reason).await?;
                    outcome.dead += 1;
                }
                Err(JobError::Transient {
                    reason,
                    retry_after,
                }) => {
                    if job.attempt >= self.options.max_attempts {
                        let reason = format!("gave up after {} attempts: {reason}", job.attempt);
                        tracing::error!(job_id = %job.id, kind = job.kind.name(), %reason, "job dead-lettered");
                        self.queue.dead_letter(job.id, &reason).await?;
                        outcome.dead += 1;
                    } else {
                        let delay = retry_after.unwrap_or_else(|| backoff(job.attempt));
                        let at = Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
                        tracing::warn!(job_id = %job.id, kind = job.kind.name(), %reason, retry_in = ?delay, "job will be retried");
                        self.queue.retry(job.id, at, &reason).await?;
                        outcome.retried += 1;
                    }
                }
            }
        }
        outcome.completed = done.len();
        self.queue.complete(&done).await?;
        Ok(outcome)
    }

    /// Runs passes until no job is due; returns what they did. Tests and the CLI use it.
    ///
    /// # Errors
    /// The queue's error when it cannot be reached.
    pub async fn drain(&self) -> Result<PassOutcome, domain::error::QueueError> {
        let mut total = PassOutcome::default();
        loop {
            let pass = self.run_once().await?;
            if pass.total() == 0 {
                return Ok(total);
            }
            total.completed += pass.completed;
            total.retried += pass.retried;
            total.dead += pass.dead;
        }
    }

    async fn handle(&self, job: &Job) -> Result<(), JobError> {
        let span = tracing::info_span!("job", job_id = %job.id, kind = job.kind.name(), attempt = job.attempt, webhook_id = tracing::field::Empty);
        async {
            match &job.kind {
                JobKind::ProcessWebhook { webhook_id } => {
                    tracing::Span::current().record("webhook_id", webhook_id.0);
                    process_webhook(self.inbox.as_ref(), *webhook_id).await
                }
            }
        }
        .instrument(span)
        .await
    }
}

/// Cancels `token` on ctrl-c or SIGTERM.
pub async fn shutdown_on_signal(token: CancellationToken) {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutdown signal received");
    token.cancel();
}

/// The wait before attempt `attempt + 1`: 10 s doubling per attempt, at most 6 h.
fn backoff(attempt: u32) -> Duration {
    let secs = 10u64.saturating_mul(1u64 << attempt.saturating_sub(1).min(20));
    Duration::from_secs(secs.min(6 * 3600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_secs(10));
        assert_eq!(backoff(2), Duration::from_secs(20));
        assert_eq!(backoff(5), Duration::from_secs(160));
        assert_eq!(backoff(40), Duration::from_secs(6 * 3600));
    }
}
