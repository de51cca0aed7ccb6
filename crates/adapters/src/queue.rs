//! Picks the job queue backend the configuration names (`queue.backend`): `sql` (the jobs table,
//! the default) or `redis` (Redis Streams fed from the jobs table as an outbox).

use crate::config::Settings;
use crate::db::{Database, SqlJobQueue};
use crate::redis_queue::RedisJobQueue;
use domain::error::QueueError;
use domain::ports::JobQueue;
use secrecy::ExposeSecret as _;
use std::sync::Arc;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The configured queue, and what it needs running beside the workers.
#[derive(Clone)]
pub struct Queue {
    /// The port the workers and the CLI use.
    pub port: Arc<dyn JobQueue>,
    redis: Option<RedisJobQueue>,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("redis", &self.redis.is_some())
            .finish_non_exhaustive()
    }
}

impl Queue {
    /// Opens the queue `settings` name on `db`. `wake` (the in-process inbox's "jobs enqueued")
    /// wakes idle SQL reservations at once.
    ///
    /// # Errors
    /// [`QueueError::Unavailable`] when Redis cannot be reached; [`QueueError::Unexpected`] for an
    /// unknown backend or a Redis backend without `queue.redis_url`.
    pub async fn open(
        settings: &Settings,
        db: &Database,
        wake: Option<Arc<Notify>>,
    ) -> Result<Self, QueueError> {
        match settings.queue.backend.as_str() {
            "sql" => {
                let mut queue = SqlJobQueue::new(db.clone());
                if let Some(wake) = wake {
                    queue = queue.wake_on(wake);
                }
                Ok(Queue {
                    port: Arc::new(queue),
                    redis: None,
                })
            }
            "redis" => {
                let url = settings.queue.redis_url.as_ref().ok_or_else(|| {
                    QueueError::Unexpected(
                        "queue.backend = \"redis\" needs queue.redis_url (REDIS_URL)".into(),
                    )
                })?;
                let queue = RedisJobQueue::connect(
                    url.expose_secret(),
                    &settings.queue.redis_prefix,
                    db.clone(),
                )
                .await?;
                Ok(Queue {
                    port: Arc::new(queue.clone()),
                    redis: Some(queue),
                })
            }
            other => Err(QueueError::Unexpected(
                format!("unknown queue.backend {other:?} (expected \"sql\" or \"redis\")").into(),
            )),
        }
    }

    /// Starts what the backend needs beside the workers (the Redis relay from the outbox) until
    /// `shutdown`.
    pub fn spawn_background(&self, shutdown: CancellationToken) {
        if let Some(redis) = self.redis.clone() {
            tokio::spawn(async move { redis.run_relay(shutdown).await });
        }
    }

    /// `sql` or `redis`.
    pub fn backend(&self) -> &'static str {
        if self.redis.is_some() { "redis" } else { "sql" }
    }
}
