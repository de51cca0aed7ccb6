//! The worker: reserves jobs from a [`JobQueue`], runs them through a [`JobHandler`], and
//! acknowledges, retries (with backoff and jitter, see [`RetryPolicy`]) or dead-letters each one.
//!
//! `lazona-worker` runs it as its own process; `lazona-http` runs it in-process on the embedded
//! default. Jobs run concurrently up to `concurrency`; leases of running jobs are extended in the
//! background, so a slow job is not handed to another worker while this one is alive;
//! acknowledgements are batched. On shutdown the worker stops reserving, waits for the jobs in
//! flight up to a timeout, and leaves the rest to their leases.

mod handler;
mod retry;

pub use handler::{ConnectorHandler, JobHandler};
pub use retry::RetryPolicy;

use chrono::Utc;
use domain::error::{JobError, QueueError};
use domain::model::{Job, JobId, JobKind, NewJob};
use domain::ports::JobQueue;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Jobs run at the same time.
    pub concurrency: usize,
    /// Most jobs reserved in one call.
    pub batch: usize,
    /// How long a reserved job is held; extended every third of it while the job runs.
    pub lease: Duration,
    /// How long an idle worker waits for a job before looking again (woken earlier by new jobs
    /// where the queue can).
    pub poll_interval: Duration,
    /// How long shutdown waits for jobs in flight.
    pub shutdown_timeout: Duration,
    /// When failed jobs are tried again.
    pub retry: RetryPolicy,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            concurrency: 64,
            batch: 64,
            lease: Duration::from_secs(300),
            poll_interval: Duration::from_secs(1),
            shutdown_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
        }
    }
}

impl WorkerOptions {
    /// The options in the configuration's `[worker]` table.
    pub fn from_config(cfg: &adapters::config::WorkerConfig) -> Self {
        WorkerOptions {
            concurrency: cfg.concurrency.max(1),
            batch: cfg.batch.max(1),
            lease: cfg.lease_secs,
            poll_interval: cfg.poll_interval_ms,
            shutdown_timeout: cfg.shutdown_timeout_secs,
            retry: RetryPolicy {
                schedule: cfg
                    .retry_schedule_secs
                    .iter()
                    .map(|s| Duration::from_secs(*s))
                    .collect(),
                jitter: cfg.retry_jitter,
            },
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Jobs completed.
    pub completed: usize,
    /// Jobs put back for a later attempt.
    pub retried: usize,
    /// Jobs dead-lettered.
    pub dead: usize,
    /// Jobs whose lease was lost before their outcome was recorded.
    pub lost: usize,
}

impl Outcome {
    /// Jobs handled.
    pub fn total(&self) -> usize {
        self.completed + self.retried + self.dead + self.lost
    }

    fn add(&mut self, other: Outcome) {
        self.completed += other.completed;
        self.retried += other.retried;
        self.dead += other.dead;
        self.lost += other.lost;
    }
}

/// A job run on a schedule (for example the shipments' tracking poll).
#[derive(Debug, Clone)]
pub struct Periodic {
    /// The schedule's name: one tick per name across all workers.
    pub name: String,
    /// How often.
    pub every: Duration,
    /// The job enqueued each tick.
    pub kind: JobKind,
}

/// A worker: the queue it serves and the handler that runs its jobs.
#[derive(Clone)]
pub struct Worker {
    pub(crate) queue: Arc<dyn JobQueue>,
    pub(crate) handler: Arc<dyn JobHandler>,
    options: WorkerOptions,
    periodic: Vec<Periodic>,
}

impl Worker {
    /// A worker over `queue`, running jobs with `handler`.
    pub fn new(
        queue: Arc<dyn JobQueue>,
        handler: Arc<dyn JobHandler>,
        options: WorkerOptions,
    ) -> Self {
        Worker {
            queue,
            handler,
            options,
            periodic: Vec::new(),
        }
    }

    /// Also enqueues `periodic`'s job every `periodic.every` (one tick across all workers).
    pub fn with_periodic(mut self, periodic: Periodic) -> Self {
        self.periodic.push(periodic);
        self
    }

    /// Runs until `shutdown` is cancelled, then waits for the jobs in flight (at most
    /// `shutdown_timeout`); jobs not finished by then are left to their lease and run again
    /// elsewhere.
    pub async fn run(&self, shutdown: CancellationToken) -> Outcome {
        let opts = &self.options;
        tracing::info!(concurrency = opts.concurrency, "worker started");
        let permits = Arc::new(Semaphore::new(opts.concurrency));
        let running: Arc<Mutex<HashMap<JobId, Job>>> = Arc::default();
        let totals: Arc<Mutex<Outcome>> = Arc::default();
        let (done_tx, done_rx) = mpsc::unbounded_channel::<Job>();
        let completer = tokio::spawn(complete_in_batches(
            self.queue.clone(),
            done_rx,
            totals.clone(),
        ));
        let heartbeat_stop = CancellationToken::new();
        let heartbeat = tokio::spawn(heartbeat(
            self.queue.clone(),
            running.clone(),
            opts.lease,
            heartbeat_stop.clone(),
        ));
        let mut backoff = Duration::from_millis(100);
        let mut next_tick = Instant::now();

        // `slots` bounds the jobs held (reserved, running or waiting to run) to four times the
        // concurrency, so that a reservation can take a whole batch while earlier jobs still run:
        // short jobs would otherwise be reserved one at a time, a round trip each.
        let held_max = opts.concurrency.saturating_mul(4).max(opts.batch);
        let slots = Arc::new(Semaphore::new(held_max));
        while !shutdown.is_cancelled() {
            if Instant::now() >= next_tick {
                self.tick_periodic().await;
                next_tick = Instant::now() + Duration::from_secs(1);
            }
            let first = tokio::select! {
                p = slots.clone().acquire_owned() => p.expect("semaphore never closed"),
                () = shutdown.cancelled() => break,
            };
            let want = (slots.available_permits() + 1).min(opts.batch);
            let wait = opts.poll_interval.min(Duration::from_secs(1));
            let reserved = tokio::select! {
                r = self.queue.reserve(want, opts.lease, wait) => r,
                () = shutdown.cancelled() => break,
            };
            let jobs = match reserved {
                Ok(jobs) => {
                    backoff = Duration::from_millis(100);
                    jobs
                }
                Err(e) => {
                    tracing::error!(error = %e, retry_in = ?backoff, "job queue unavailable");
                    drop(first);
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = shutdown.cancelled() => break,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    continue;
                }
            };
            let mut first = Some(first);
            {
                let mut held = running.lock().await;
                for job in &jobs {
                    held.insert(job.id, job.clone());
                }
            }
            for job in jobs {
                let slot = match first.take() {
                    Some(p) => p,
                    None => slots
                        .clone()
                        .acquire_owned()
                        .await
                        .expect("semaphore never closed"),
                };
                let this = self.clone();
                let permits = permits.clone();
                let running = running.clone();
                let done_tx = done_tx.clone();
                let totals = totals.clone();
                tokio::spawn(async move {
                    let permit = permits
                        .acquire_owned()
                        .await
                        .expect("semaphore never closed");
                    let result = this.run_job(&job).await;
                    drop(permit);
                    running.lock().await.remove(&job.id);
                    match result {
                        Ok(()) => {
                            let _ = done_tx.send(job);
                        }
                        Err(e) => {
                            let outcome = this.settle_failure(&job, e).await;
                            totals.lock().await.add(outcome);
                        }
                    }
                    drop(slot);
                });
            }
        }

        // Shutdown: no more reservations; let the jobs in flight finish.
        let all = u32::try_from(held_max).unwrap_or(u32::MAX);
        match tokio::time::timeout(opts.shutdown_timeout, slots.acquire_many(all)).await {
            Ok(_) => tracing::info!("jobs in flight finished"),
            Err(_) => {
                let left = running.lock().await.len();
                tracing::warn!(
                    left,
                    "shutdown timeout: jobs in flight are left to their leases"
                );
            }
        }
        heartbeat_stop.cancel();
        let _ = heartbeat.await;
        drop(done_tx);
        let _ = completer.await;
        let totals = *totals.lock().await;
        tracing::info!(?totals, "worker stopped");
        totals
    }

    /// Reserves and runs due jobs until none is due; returns what it did. Tests and the CLI use
    /// it to drive the queue without sleeping.
    ///
    /// # Errors
    /// The queue's error when it cannot be reached.
    pub async fn drain(&self) -> Result<Outcome, QueueError> {
        let mut total = Outcome::default();
        loop {
            self.tick_periodic().await;
            let jobs = self
                .queue
                .reserve(self.options.batch, self.options.lease, Duration::ZERO)
                .await?;
            if jobs.is_empty() {
                return Ok(total);
            }
            let mut set = tokio::task::JoinSet::new();
            for job in jobs {
                let this = self.clone();
                set.spawn(async move {
                    let result = this.run_job(&job).await;
                    (job, result)
                });
            }
            let mut done = Vec::new();
            while let Some(joined) = set.join_next().await {
                let Ok((job, result)) = joined else {
                    continue;
                };
                match result {
                    Ok(()) => done.push(job),
                    Err(e) => total.add(self.settle_failure(&job, e).await),
                }
            }
            total.completed += done.len();
            self.queue.complete(&done).await?;
        }
    }

    async fn tick_periodic(&self) {
        for p in &self.periodic {
            let job = NewJob {
                kind: p.kind.clone(),
                run_at: None,
            };
            match self.queue.enqueue_periodic(&p.name, p.every, job).await {
                Ok(true) => tracing::info!(schedule = %p.name, "periodic job enqueued"),
                Ok(false) => {}
                Err(e) => tracing::warn!(schedule = %p.name, error = %e, "periodic tick failed"),
            }
        }
    }

    async fn run_job(&self, job: &Job) -> Result<(), JobError> {
        let span = tracing::info_span!(
            "job",
            job_id = %job.id,
            kind = job.kind.name(),
            attempt = job.attempt,
            webhook_id = tracing::field::Empty,
            // The id of the request that delivered the webhook (`X-Request-Id`), once read.
            request_id = tracing::field::Empty
        );
        let handler = self.handler.clone();
        let job_for_task = job.clone();
        // A panicking handler fails its job (transiently) instead of the worker.
        let task =
            tokio::spawn(async move { handler.handle(&job_for_task).await }.instrument(span));
        match task.await {
            Ok(result) => result,
            Err(e) => Err(JobError::Transient {
                reason: format!("handler panicked: {e}"),
                retry_after: None,
            }),
        }
    }

    /// Retries or dead-letters a failed job.
    async fn settle_failure(&self, job: &Job, error: JobError) -> Outcome {
        let mut outcome = Outcome::default();
        let (reason, delay) = match error {
            JobError::Permanent { reason } => (reason, None),
            JobError::Transient {
                reason,
                retry_after,
            } => {
                let seed = (job.id.0 as u64) ^ u64::from(job.attempt).rotate_left(32) ^ nanos();
                (
                    reason,
                    self.options.retry.delay(job.attempt, retry_after, seed),
                )
            }
        };
        let result = match delay {
            Some(delay) => {
                let at = Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
                tracing::warn!(job_id = %job.id, kind = job.kind.name(), attempt = job.attempt, %reason, retry_in = ?delay, "job failed; will retry");
                outcome.retried = 1;
                self.queue.retry(job, at, &reason).await
            }
            None => {
                tracing::error!(job_id = %job.id, kind = job.kind.name(), attempt = job.attempt, %reason, "job dead-lettered");
                outcome.dead = 1;
                let recorded = self.queue.dead_letter(job, &reason).await;
                if recorded.is_ok() {
                    self.handler.dead_lettered(job, &reason).await;
                }
                recorded
            }
        };
        match result {
            Ok(()) => outcome,
            Err(QueueError::LeaseLost(_)) => {
                tracing::warn!(job_id = %job.id, "lease lost before the outcome was recorded");
                Outcome {
                    lost: 1,
                    ..Outcome::default()
                }
            }
            Err(e) => {
                // The job stays reserved and comes back after its lease.
                tracing::error!(job_id = %job.id, error = %e, "outcome not recorded");
                Outcome {
                    lost: 1,
                    ..Outcome::default()
                }
            }
        }
    }
}

fn nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or_default()
}

/// Acknowledges completed jobs in batches: whatever is waiting when the previous batch is done.
async fn complete_in_batches(
    queue: Arc<dyn JobQueue>,
    mut done: mpsc::UnboundedReceiver<Job>,
    totals: Arc<Mutex<Outcome>>,
) {
    let mut batch = Vec::with_capacity(256);
    while let Some(job) = done.recv().await {
        batch.push(job);
        while batch.len() < 256 {
            match done.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let mut delay = Duration::from_millis(50);
        loop {
            match queue.complete(&batch).await {
                Ok(()) => break,
                Err(e) => {
                    // Not acknowledged: keep trying while the leases last; past them the jobs
                    // run again, which idempotent handlers allow.
                    tracing::error!(error = %e, jobs = batch.len(), "acknowledgement failed");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                    if delay >= Duration::from_secs(5) {
                        break;
                    }
                }
            }
        }
        totals.lock().await.completed += batch.len();
        batch.clear();
    }
}

/// Extends the leases of running jobs every third of the lease.
async fn heartbeat(
    queue: Arc<dyn JobQueue>,
    running: Arc<Mutex<HashMap<JobId, Job>>>,
    lease: Duration,
    stop: CancellationToken,
) {
    let every = (lease / 3).max(Duration::from_millis(50));
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = stop.cancelled() => return,
        }
        let jobs: Vec<Job> = running.lock().await.values().cloned().collect();
        if jobs.is_empty() {
            continue;
        }
        if let Err(e) = queue.extend(&jobs, lease).await {
            tracing::warn!(error = %e, "lease extension failed");
        }
    }
}
