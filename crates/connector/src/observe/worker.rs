//! [`Worker::observed`]: the worker's queue and handler decorated with the jobs' events and
//! metrics, and the events' pruning scheduled.

use super::EventRecorder;
use crate::worker::{JobHandler, Periodic, Worker};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::error::{JobError, QueueError};
use domain::model::{DeadJob, EventKind, Job, JobId, JobKind, NewEvent, NewJob};
use domain::ports::{EventLog, JobQueue, QueueStats};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the events older than the retention are pruned.
pub const PRUNE_EVERY: Duration = Duration::from_secs(3600);

impl Worker {
    /// This worker with its jobs observed: events through `events` (when given), metrics
    /// always, and the hourly pruning of events older than `retention` from `log` (when given).
    #[must_use]
    pub fn observed(
        mut self,
        events: Option<EventRecorder>,
        log: Option<(Arc<dyn EventLog>, Duration)>,
    ) -> Self {
        let prunes = log.is_some();
        self.queue = Arc::new(ObservedQueue {
            inner: self.queue,
            events: events.clone(),
        });
        self.handler = Arc::new(ObservedHandler {
            inner: self.handler,
            events,
            log,
        });
        if prunes {
            self = self.with_periodic(Periodic {
                name: "prune_events".into(),
                every: PRUNE_EVERY,
                kind: JobKind::PruneEvents,
            });
        }
        self
    }
}

pub(super) fn job_event(kind: EventKind, job: &Job, message: String) -> NewEvent {
    let mut e = NewEvent::now(kind, message).job(job.id.0);
    match &job.kind {
        JobKind::ProcessWebhook { webhook_id } => e.webhook_id = Some(webhook_id.0),
        JobKind::SendLabelMail { shipment_id }
        | JobKind::ResendLabel { shipment_id, .. }
        | JobKind::SendBookingErrorMail { shipment_id }
        | JobKind::TrackShipment { shipment_id }
        | JobKind::RetryShipment { shipment_id, .. } => e.shipment_id = Some(*shipment_id),
        _ => {}
    }
    e
}

/// The handler, timed, with `job_started` events and the events' pruning.
pub(super) struct ObservedHandler {
    inner: Arc<dyn JobHandler>,
    events: Option<EventRecorder>,
    log: Option<(Arc<dyn EventLog>, Duration)>,
}

#[async_trait]
impl JobHandler for ObservedHandler {
    async fn dead_lettered(&self, job: &Job, reason: &str) {
        self.inner.dead_lettered(job, reason).await;
    }

    async fn handle(&self, job: &Job) -> Result<(), JobError> {
        let kind = job.kind.name();
        let started = Instant::now();
        let result = match (&job.kind, &self.log) {
            (JobKind::PruneEvents, Some((log, retention))) => {
                let before =
                    Utc::now() - chrono::Duration::from_std(*retention).unwrap_or_default();
                match log.prune(before).await {
                    Ok(n) => {
                        tracing::info!(pruned = n, %before, "events pruned");
                        Ok(())
                    }
                    Err(e) => Err(JobError::Transient {
                        reason: domain::error::error_chain(&e),
                        retry_after: None,
                    }),
                }
            }
            _ => {
                if let Some(events) = &self.events {
                    events.record(job_event(
                        EventKind::JobStarted,
                        job,
                        format!("{kind} started (attempt {})", job.attempt),
                    ));
                }
                self.inner.handle(job).await
            }
        };
        let result_label = match &result {
            Ok(()) => "ok",
            Err(JobError::Transient { .. }) => "transient",
            Err(JobError::Permanent { .. }) => "permanent",
        };
        metrics::histogram!("lazona_job_duration_seconds", "kind" => kind, "result" => result_label)
            .record(started.elapsed().as_secs_f64());
        result
    }
}

/// The queue, with the jobs' outcomes counted and recorded as events.
pub(super) struct ObservedQueue {
    inner: Arc<dyn JobQueue>,
    events: Option<EventRecorder>,
}

impl ObservedQueue {
    fn outcome(&self, job: &Job, outcome: &'static str, kind: EventKind, message: String) {
        metrics::counter!("lazona_jobs_total", "kind" => job.kind.name(), "outcome" => outcome)
            .increment(1);
        if let Some(events) = &self.events {
            events.record(job_event(kind, job, message));
        }
    }
}

#[async_trait]
impl JobQueue for ObservedQueue {
    async fn enqueue(&self, job: NewJob) -> Result<JobId, QueueError> {
        self.inner.enqueue(job).await
    }

    async fn enqueue_periodic(
        &self,
        name: &str,
        every: Duration,
        job: NewJob,
    ) -> Result<bool, QueueError> {
        self.inner.enqueue_periodic(name, every, job).await
    }

    async fn reserve(
        &self,
        max: usize,
        lease: Duration,
        wait: Duration,
    ) -> Result<Vec<Job>, QueueError> {
        self.inner.reserve(max, lease, wait).await
    }

    async fn extend(&self, jobs: &[Job], lease: Duration) -> Result<(), QueueError> {
        self.inner.extend(jobs, lease).await
    }

    async fn holds(&self, id: JobId) -> Result<bool, QueueError> {
        self.inner.holds(id).await
    }

    async fn complete(&self, jobs: &[Job]) -> Result<(), QueueError> {
        self.inner.complete(jobs).await?;
        for job in jobs {
            self.outcome(
                job,
                "succeeded",
                EventKind::JobSucceeded,
                format!("{} done", job.kind.name()),
            );
        }
        Ok(())
    }

    async fn retry(&self, job: &Job, at: DateTime<Utc>, error: &str) -> Result<(), QueueError> {
        self.inner.retry(job, at, error).await?;
        self.outcome(
            job,
            "retried",
            EventKind::JobRetried,
            format!(
                "{} failed (attempt {}), retried at {}: {error}",
                job.kind.name(),
                job.attempt,
                at.format("%Y-%m-%d %H:%M:%S UTC")
            ),
        );
        Ok(())
    }

    async fn dead_letter(&self, job: &Job, error: &str) -> Result<(), QueueError> {
        self.inner.dead_letter(job, error).await?;
        self.outcome(
            job,
            "dead",
            EventKind::JobDead,
            format!(
                "{} dead-lettered (attempt {}): {error}",
                job.kind.name(),
                job.attempt
            ),
        );
        Ok(())
    }

    async fn dead_jobs(&self, limit: usize) -> Result<Vec<DeadJob>, QueueError> {
        self.inner.dead_jobs(limit).await
    }

    async fn requeue_dead(&self, id: JobId) -> Result<(), QueueError> {
        self.inner.requeue_dead(id).await
    }

    async fn stats(&self) -> Result<QueueStats, QueueError> {
        self.inner.stats().await
    }

    async fn prune_dead(&self, before: DateTime<Utc>, limit: usize) -> Result<u64, QueueError> {
        self.inner.prune_dead(before, limit).await
    }
}
