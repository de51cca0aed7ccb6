//! The job queue on Redis Streams ([`RedisJobQueue`]), fed from the SQL `jobs` table used as an
//! outbox that keeps every job's row until the job is done.
//!
//! **SQL first, SQL last.** Webhooks and their jobs always land in SQL: the inbox inserts a `jobs`
//! row in the webhook's transaction, and [`RedisJobQueue`]'s `enqueue` and `enqueue_periodic`
//! delegate to an inner [`SqlJobQueue`], so they insert rows too. A row's `status` says where its
//! job is:
//! - `ready`: committed, not (or no longer) in Redis. The **relay** ([`RedisJobQueue::relay_once`],
//!   looped by [`RedisJobQueue::run_relay`], and also called by every `reserve`) takes the due
//!   ready rows in one transaction: `UPDATE jobs SET status = 'relayed' WHERE id IN (SELECT ...
//!   ORDER BY id LIMIT n [FOR UPDATE SKIP LOCKED]) RETURNING ...`, pushes them to the stream, and
//!   commits only once Redis has them (it rolls back when Redis fails: an outage delays jobs).
//! - `relayed`: in Redis (waiting in the stream, reserved, or waiting for a retry). `retry` also
//!   writes the retry's due time, the attempts so far and the error to the row (best effort: the
//!   row only matters again if Redis loses the job).
//! - `dead`: dead-lettered, with `attempts`, `last_error` and `updated_at` (when it failed). Dead
//!   letters live only in SQL: `dead_jobs`, `requeue_dead` (back to `ready`, attempts 0, for the
//!   relay to push) and the stats read the rows, so they survive a Redis restart. There is no
//!   dead stream in Redis: it would only duplicate the rows. `dead_letter` marks the row in a
//!   transaction that commits only once Redis has dropped the job.
//! - gone: `complete` deletes the rows (`ready` or `relayed`) *before* acknowledging in Redis,
//!   whether or not the lease was still held (the handler ran), so a completed job never comes
//!   back from SQL; a failed Redis acknowledgement can only run it again.
//!
//! Each push is guarded, in the same Lua script as its `XADD`, by a marker key `{p}:relayed:{id}`
//! holding the row's `created_at`: a row relayed twice (a crash between the push and the commit,
//! or a reconciliation that was not needed) is added once, and a different `created_at` means a
//! reused id, a new job, added. The marker lives as long as Redis holds the job: `complete` and
//! `dead_letter` delete it; it has a TTL of 7 days, refreshed by `retry` and by the
//! reconciliation, for markers leaked by completions of jobs whose lease was lost.
//!
//! **Reconciliation.** A Redis that restarts without persistence (or is flushed, or fails over to
//! a replica that missed writes) loses its jobs and their markers together. The reconciliation
//! ([`RedisJobQueue::reconcile_once`]) reads the rows `relayed` for more than
//! [`RECONCILE_GRACE`], checks their markers (one Lua script per batch), and sets the rows whose
//! marker is gone back to `ready` (only if they were not relayed again meanwhile), so the relay
//! pushes them again, with their attempts and retry time. It runs at `connect`, every
//! [`RECONCILE_EVERY`] in `run_relay`, and from `reserve` at most as often (so workers without a
//! relay task recover too). A pass checks at most [`RECONCILE_BATCH`] rows, in id order from where
//! the previous pass of this instance stopped (oldest first after `connect`, wrapping around at
//! the end); while passes find lost jobs the next one follows at once.
//!
//! **Durability.** A job is lost only if its SQL row is. A Redis outage delays jobs; a Redis that
//! comes back empty delays them by a reconciliation period more. Jobs reserved when Redis lost
//! them run again (delivery is at least once, handlers are idempotent): their holders' outcomes
//! fail with [`QueueError::LeaseLost`] or, for completions, are skipped in Redis but still delete
//! the rows. Redis needs no persistence (neither AOF nor snapshots).
//!
//! **Keys** (all under a prefix `p`, default [`DEFAULT_PREFIX`]):
//! - `{p}:jobs`: the stream of runnable jobs (fields `id`, the SQL job id, and `payload`, the
//!   JSON of the [`JobKind`](domain::model::JobKind)), read by the consumer group `workers` (created with `MKSTREAM`);
//!   each [`RedisJobQueue`] is its own consumer (process id and a nonce);
//! - `{p}:delayed`: retries, a sorted set scored by due time (ms), members the JSON of
//!   `{id, payload, attempts, error}`;
//! - `{p}:attempts`: a hash, job id to the number of reservations so far;
//! - `{p}:leases`: a sorted set of the reserved entries scored by the end of their lease (ms);
//! - `{p}:relayed:{id}`: the relay markers.
//!
//! **Reserving** is one Lua script, so it is atomic: it moves due retries from `{p}:delayed`
//! to the stream, takes over (`XCLAIM`) the entries whose lease in `{p}:leases` has ended, reads
//! new entries (`XREADGROUP ... >`), and for each counts an attempt (`HINCRBY {p}:attempts`)
//! and records the end of its lease. A job's lease token is `{entry id}/{attempt}`: an outcome
//! is recorded only while the entry is still pending for this consumer and the attempt is still
//! the latest, so a holder whose lease was taken over, even by its own consumer, gets
//! [`QueueError::LeaseLost`]. `extend` moves the end of the lease (and resets the entry's idle
//! time with `XCLAIM ... JUSTID`). When nothing is due, `reserve` waits on a dedicated
//! connection (`XREAD BLOCK` from the stream's newest id, so the multiplexed connection is never
//! blocked), in slices of at most [`POLL_SLICE`] and never past the next due retry or lease end,
//! relaying and claiming again between slices (new outbox rows, due retries and ended leases do
//! not wake an `XREAD`).
//!
//! Leases are kept per entry rather than as Redis's idle times (`XAUTOCLAIM`'s min-idle) because
//! the port promises that a job comes back when *its holder's* lease ends, whatever lease the
//! worker that takes it over asks for. [`RedisJobQueue::run_relay`] also repairs entries pending
//! with no lease recorded (only possible if keys were edited by hand) and forgets the consumers
//! of workers long gone.
//!
//! The connections are [`ConnectionManager`]s: during a Redis outage calls fail with
//! [`QueueError::Unavailable`] and, once Redis is back, they reconnect by themselves (every
//! reservation makes the consumer group again if Redis came back empty). Limitations: a job
//! waiting in Redis more than 7 days without being reserved, retried or checked by a
//! reconciliation may be relayed twice (its marker expired); entries found in Redis with no row
//! (written by hand) are run but, if dead-lettered, just dropped. Plain `redis://` URLs only:
//! `rediss://` (TLS) needs one of the crate's TLS features, left for when a deployment needs it.
//!
//! **Files.** This module holds the type, `connect` and the [`JobQueue`] impl, which hands each
//! operation to the file that does it: `relay.rs` (the outbox relay), `reserve.rs` (reservations
//! and leases), `outcome.rs` (complete, retry, dead-letter), `reconcile.rs` (the reconciliation
//! and the repairs of `run_relay`) and `stats.rs`. Each Lua script is a `.lua` file beside them,
//! its `KEYS`, `ARGV` and reply described at its top.

mod outcome;
mod reconcile;
mod relay;
mod reserve;
mod stats;

use crate::db::{Database, SqlJobQueue, process_nonce};
use crate::redact::{redact, url_problem};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::error::QueueError;
use domain::model::{DeadJob, Job, JobId, NewJob};
use domain::ports::{JobQueue, QueueStats};
use reconcile::Reconcile;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, Script};
use sea_orm::{DbBackend, DbErr, Statement, Value};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The key prefix used when the configuration names none.
pub const DEFAULT_PREFIX: &str = "lazona";

/// The consumer group every worker reads the stream in.
pub const GROUP: &str = "workers";

/// The longest a waiting `reserve` blocks before it relays and claims again.
pub const POLL_SLICE: Duration = Duration::from_millis(250);

/// How many outbox rows one relay pass moves at most (from `reserve` and `run_relay`).
pub const RELAY_BATCH: usize = 256;

/// How long a relay marker lives (seconds): 7 days.
const MARKER_TTL_SECS: u64 = 7 * 24 * 3600;

/// How often `run_relay`, and `reserve`, reconcile the outbox with Redis (per instance).
pub const RECONCILE_EVERY: Duration = Duration::from_secs(2);

/// How many relayed rows one reconciliation pass checks at most.
pub const RECONCILE_BATCH: usize = 2000;

/// Rows relayed less than this long ago are left to the next reconciliation pass.
pub const RECONCILE_GRACE: Duration = Duration::from_secs(1);

/// How long one Redis call may take before it fails as unavailable.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long connecting to Redis may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// How many times a lost connection is retried (with backoff) before a call gives up; the next
/// call tries again.
const RECONNECT_RETRIES: usize = 2;

/// The queue's key names.
#[derive(Debug)]
struct Keys {
    prefix: String,
    stream: String,
    delayed: String,
    attempts: String,
    leases: String,
}

impl Keys {
    fn new(prefix: &str) -> Self {
        Keys {
            prefix: prefix.to_owned(),
            stream: format!("{prefix}:jobs"),
            delayed: format!("{prefix}:delayed"),
            attempts: format!("{prefix}:attempts"),
            leases: format!("{prefix}:leases"),
        }
    }

    fn relayed(&self, id: i64) -> String {
        format!("{}:relayed:{id}", self.prefix)
    }
}

/// The Lua scripts, each in its `.lua` file beside this one (which says its `KEYS`, `ARGV` and
/// reply). All but `relay`, `orphans` and `markers` start with `helpers.lua`.
struct Scripts {
    relay: Script,
    reserve: Script,
    extend: Script,
    complete: Script,
    retry: Script,
    dead: Script,
    stats: Script,
    prune: Script,
    orphans: Script,
    markers: Script,
}

impl Scripts {
    fn new() -> Self {
        let with_helpers =
            |body: &str| Script::new(&format!("{}{body}", include_str!("helpers.lua")));
        Scripts {
            relay: Script::new(include_str!("relay.lua")),
            reserve: with_helpers(include_str!("reserve.lua")),
            extend: with_helpers(include_str!("extend.lua")),
            complete: with_helpers(include_str!("complete.lua")),
            retry: with_helpers(include_str!("retry.lua")),
            dead: with_helpers(include_str!("dead.lua")),
            stats: with_helpers(include_str!("stats.lua")),
            prune: with_helpers(include_str!("prune.lua")),
            orphans: Script::new(include_str!("orphans.lua")),
            markers: Script::new(include_str!("markers.lua")),
        }
    }
}

struct Inner {
    conn: ConnectionManager,
    /// For blocking reads only: a blocked connection delays every command queued behind it.
    blocking: tokio::sync::Mutex<ConnectionManager>,
    db: Database,
    sql: SqlJobQueue,
    keys: Keys,
    consumer: String,
    scripts: Scripts,
    reconcile: tokio::sync::Mutex<Reconcile>,
}

/// The job queue on Redis Streams, with the SQL `jobs` table as its outbox (see the module
/// doc). Clones share the connections and the consumer.
#[derive(Clone)]
pub struct RedisJobQueue {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RedisJobQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisJobQueue")
            .field("prefix", &self.inner.keys.prefix)
            .field("consumer", &self.inner.consumer)
            .finish_non_exhaustive()
    }
}

impl RedisJobQueue {
    /// Connects to Redis at `redis_url` (`redis://[user:password@]host[:port][/db]`), with keys
    /// under `prefix` ([`DEFAULT_PREFIX`] in the default configuration), creates the consumer
    /// group when missing, and reconciles the outbox with Redis (jobs Redis lost are relayed
    /// again; a failure there is logged, the next passes retry). `db` is the connector's
    /// database: its `jobs` table is the outbox (the same database as the inbox's).
    ///
    /// # Errors
    /// [`QueueError::Unexpected`] for an invalid URL, [`QueueError::Unavailable`] when Redis
    /// cannot be reached.
    pub async fn connect(redis_url: &str, prefix: &str, db: Database) -> Result<Self, QueueError> {
        let target = redact(redis_url);
        let invalid = |problem: String| {
            QueueError::Unexpected(format!("the Redis URL {target} is not valid: {problem}").into())
        };
        if let Some(problem) = url_problem(redis_url, REDIS_SCHEMES) {
            return Err(invalid(problem));
        }
        let client = redis::Client::open(redis_url).map_err(|e| invalid(redact(&e.to_string())))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(RECONNECT_RETRIES)
            .set_max_delay(Duration::from_secs(1));
        let conn = ConnectionManager::new_with_config(client.clone(), config.clone())
            .await
            .map_err(|e| connect_err(&target, e))?;
        // Blocking reads are bounded by `BLOCK` and a timeout of their own.
        let blocking =
            ConnectionManager::new_lazy_with_config(client, config.set_response_timeout(None))
                .map_err(|e| connect_err(&target, e))?;
        static INSTANCES: AtomicU64 = AtomicU64::new(0);
        let consumer = format!(
            "{}-{}",
            process_nonce(),
            INSTANCES.fetch_add(1, Ordering::Relaxed)
        );
        let queue = RedisJobQueue {
            inner: Arc::new(Inner {
                conn,
                blocking: tokio::sync::Mutex::new(blocking),
                sql: SqlJobQueue::new(db.clone()),
                db,
                keys: Keys::new(prefix),
                consumer,
                scripts: Scripts::new(),
                reconcile: tokio::sync::Mutex::new(Reconcile::new()),
            }),
        };
        queue.create_group().await?;
        queue.reconcile_at_start().await;
        Ok(queue)
    }

    /// This instance's consumer name in the group.
    pub fn consumer(&self) -> &str {
        &self.inner.consumer
    }

    fn conn(&self) -> ConnectionManager {
        self.inner.conn.clone()
    }

    async fn create_group(&self) -> Result<(), QueueError> {
        let res: Result<(), RedisError> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.inner.keys.stream)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut self.conn())
            .await;
        match res {
            Err(e) if e.code() != Some("BUSYGROUP") => Err(redis_err(e)),
            _ => Ok(()),
        }
    }

    /// Deletes every key under this queue's prefix (its stream, retries, leases, markers): for
    /// benchmarks and tests that own their prefix. Returns how many keys went.
    ///
    /// # Errors
    /// [`QueueError::Unavailable`] when Redis cannot be reached.
    pub async fn purge(&self) -> Result<usize, QueueError> {
        let mut conn = self.conn();
        let pattern = format!("{}:*", self.inner.keys.prefix);
        let mut cursor = 0u64;
        let mut deleted = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .map_err(redis_err)?;
            if !keys.is_empty() {
                let n: usize = redis::cmd("DEL")
                    .arg(&keys)
                    .query_async(&mut conn)
                    .await
                    .map_err(redis_err)?;
                deleted += n;
            }
            if next == 0 {
                return Ok(deleted);
            }
            cursor = next;
        }
    }
}

/// `(p, p, ...)`: `n` placeholders numbered from `first`.
fn id_list(backend: DbBackend, first: usize, n: usize) -> String {
    let list: Vec<String> = (first..first + n)
        .map(|i| placeholder(backend, i))
        .collect();
    format!("({})", list.join(", "))
}

/// `$n` on Postgres, `?n` on SQLite.
fn placeholder(backend: DbBackend, n: usize) -> String {
    match backend {
        DbBackend::Postgres => format!("${n}"),
        _ => format!("?{n}"),
    }
}

fn statement(backend: DbBackend, sql: &str, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(backend, sql, values)
}

fn db_unavailable(e: DbErr) -> QueueError {
    QueueError::Unavailable(Box::new(e))
}

/// The schemes the Redis client takes.
const REDIS_SCHEMES: &[&str] = &[
    "redis",
    "rediss",
    "valkey",
    "valkeys",
    "redis+unix",
    "valkey+unix",
    "unix",
];

/// A failed connection to the Redis at `target` (its password masked), classified as
/// [`redis_err`] does, saying where and why, with any URL in the cause masked too.
fn connect_err(target: &str, e: RedisError) -> QueueError {
    let cause = format!("cannot connect to {target}: {}", redact(&e.to_string()));
    match redis_err(e) {
        QueueError::Unavailable(_) => QueueError::Unavailable(cause.into()),
        _ => QueueError::Unexpected(cause.into()),
    }
}

/// Errors that are the queue's bug or corrupt data are unexpected; the rest (connection lost,
/// timeouts, Redis loading or read-only, ...) are outages.
fn redis_err(e: RedisError) -> QueueError {
    use redis::ErrorKind;
    match e.kind() {
        ErrorKind::Parse | ErrorKind::UnexpectedReturnType | ErrorKind::InvalidClientConfig => {
            QueueError::Unexpected(Box::new(e))
        }
        _ => QueueError::Unavailable(Box::new(e)),
    }
}

/// The end of a lease of `lease` from `now` (ms).
fn lease_end(now: i64, lease: Duration) -> i64 {
    now.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2))
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 2)
}

fn parse_score(s: &str) -> Option<i64> {
    // Scores are written as integers but Redis may answer `1.7e12`-style for large ones.
    s.parse::<i64>()
        .ok()
        .or_else(|| s.parse::<f64>().ok().map(|f| f as i64))
}

#[async_trait]
impl JobQueue for RedisJobQueue {
    async fn enqueue(&self, job: NewJob) -> Result<JobId, QueueError> {
        self.inner.sql.enqueue(job).await
    }

    async fn enqueue_periodic(
        &self,
        name: &str,
        every: Duration,
        job: NewJob,
    ) -> Result<bool, QueueError> {
        self.inner.sql.enqueue_periodic(name, every, job).await
    }

    async fn reserve(
        &self,
        max: usize,
        lease: Duration,
        wait: Duration,
    ) -> Result<Vec<Job>, QueueError> {
        self.reserve_jobs(max, lease, wait).await
    }

    async fn extend(&self, jobs: &[Job], lease: Duration) -> Result<(), QueueError> {
        self.extend_leases(jobs, lease).await
    }

    async fn complete(&self, jobs: &[Job]) -> Result<(), QueueError> {
        self.complete_jobs(jobs).await
    }

    async fn retry(&self, job: &Job, at: DateTime<Utc>, error: &str) -> Result<(), QueueError> {
        self.retry_job(job, at, error).await
    }

    async fn dead_letter(&self, job: &Job, error: &str) -> Result<(), QueueError> {
        self.dead_letter_job(job, error).await
    }

    async fn dead_jobs(&self, limit: usize) -> Result<Vec<DeadJob>, QueueError> {
        // Dead letters are rows: the SQL queue reads them alike.
        self.inner.sql.dead_jobs(limit).await
    }

    async fn requeue_dead(&self, id: JobId) -> Result<(), QueueError> {
        // Back to `ready`, attempts 0: the relay pushes it (its marker went when it died).
        self.inner.sql.requeue_dead(id).await
    }

    async fn prune_dead(&self, before: DateTime<Utc>, limit: usize) -> Result<u64, QueueError> {
        // The dead letters are the SQL rows: nothing of them is in Redis.
        self.inner.sql.prune_dead(before, limit).await
    }

    async fn stats(&self) -> Result<QueueStats, QueueError> {
        self.queue_stats().await
    }

    async fn holds(&self, id: JobId) -> Result<bool, QueueError> {
        // Every job keeps its SQL row until it is done.
        self.inner.sql.holds(id).await
    }
}
