//! The job queue on Redis Streams ([`RedisJobQueue`]), fed from the SQL `jobs` table used as an
//! outbox.
//!
//! **SQL first.** Webhooks and their jobs always land in SQL: the inbox inserts a `jobs` row in
//! the webhook's transaction, and [`RedisJobQueue`]'s `enqueue` and `enqueue_periodic` delegate
//! to an inner [`SqlJobQueue`], so they insert rows too. With this backend the `jobs` table is
//! an outbox: the **relay** ([`RedisJobQueue::relay_once`], looped by
//! [`RedisJobQueue::run_relay`], and also called by every `reserve`) takes the due, committed
//! rows (`status = 'ready' AND due_at <= now`) in one transaction:
//! `DELETE ... WHERE id IN (SELECT ... ORDER BY id LIMIT n [FOR UPDATE SKIP LOCKED]) RETURNING`,
//! pushes them to the stream, and commits only once Redis has them (it rolls back when Redis
//! fails: an outage delays jobs, it never loses them). A crash between the push and the commit
//! relays a row again; each push is guarded, in the same Lua script as its `XADD`, by a marker
//! key `{p}:relayed:{id}` (TTL 7 days) holding the row's `created_at`, so a row relayed twice
//! is added once (a different `created_at` means a reused id: a new job, added).
//!
//! **Keys** (all under a prefix `p`, default [`DEFAULT_PREFIX`]):
//! - `{p}:jobs`: the stream of runnable jobs (fields `id`, the SQL job id, and `payload`, the
//!   JSON of the [`JobKind`]), read by the consumer group `workers` (created with `MKSTREAM`);
//!   each [`RedisJobQueue`] is its own consumer (process id and a nonce);
//! - `{p}:delayed`: retries, a sorted set scored by due time (ms), members the JSON of
//!   `{id, payload, attempts, error}`;
//! - `{p}:attempts`: a hash, job id to the number of reservations so far;
//! - `{p}:leases`: a sorted set of the reserved entries scored by the end of their lease (ms);
//! - `{p}:dead`: the dead letters, a stream (fields `id`, `payload`, `attempts`, `error`,
//!   `failed_at`), with `{p}:dead:index` (job id to dead entry id) for requeues.
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
//! [`QueueError::Unavailable`] and, once Redis is back, they reconnect by themselves (the consumer
//! group is made again if Redis came back empty). Jobs already relayed live only in Redis: run it
//! with the append-only file on, or a Redis that loses its data loses them (their webhooks stay
//! in the inbox). Plain `redis://` URLs only: `rediss://` (TLS) needs one of the crate's TLS
//! features, left for when a deployment needs it.

use crate::db::{Database, SqlJobQueue, from_millis, millis, process_nonce};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::error::QueueError;
use domain::model::{DeadJob, Job, JobId, JobKind, Lease, NewJob};
use domain::ports::{JobQueue, QueueStats};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, Script};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement, TransactionTrait, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The key prefix used when the configuration names none.
pub const DEFAULT_PREFIX: &str = "lazona";

/// The consumer group every worker reads the stream in.
pub const GROUP: &str = "workers";

/// The longest a waiting `reserve` blocks before it relays and claims again.
pub const POLL_SLICE: Duration = Duration::from_millis(250);

/// How many outbox rows one relay pass moves at most (from `reserve` and `run_relay`).
pub const RELAY_BATCH: usize = 256;

/// How long [`RedisJobQueue::run_relay`] sleeps when the outbox had nothing more to move.
const RELAY_IDLE: Duration = Duration::from_millis(50);

/// The longest [`RedisJobQueue::run_relay`] backs off after errors.
const RELAY_MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How often [`RedisJobQueue::run_relay`] forgets consumers of workers long gone.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// Consumers idle this long with nothing pending are forgotten by the relay, and entries pending
/// this long with no lease recorded are given back.
const PRUNE_IDLE: Duration = Duration::from_secs(3600);

/// How long a relay marker lives (seconds): 7 days.
const MARKER_TTL_SECS: u64 = 7 * 24 * 3600;

/// How many due retries one reservation moves to the stream at most.
const PROMOTE_BATCH: usize = 256;

/// How long one Redis call may take before it fails as unavailable.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long connecting to Redis may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// How many times a lost connection is retried (with backoff) before a call gives up; the next
/// call tries again.
const RECONNECT_RETRIES: usize = 2;

/// Extra time given to a blocking read beyond its `BLOCK`, before it is abandoned.
const BLOCK_GRACE: Duration = Duration::from_secs(1);

/// Lua shared by the scripts: a stream entry's field, and whether an entry is still held by a
/// reservation (pending for this consumer, and its attempt still the latest).
const LUA_HELPERS: &str = r"
local function field(fields, name)
  if type(fields) ~= 'table' then return false end
  for i = 1, #fields, 2 do
    if fields[i] == name then return fields[i + 1] end
  end
  return false
end
local function held(stream, attempts, group, consumer, entry, job, attempt)
  local p = redis.pcall('XPENDING', stream, group, entry, entry, 1, consumer)
  if type(p) ~= 'table' or p.err or #p == 0 then return false end
  return redis.call('HGET', attempts, job) == attempt
end
local function payload_of(stream, entry)
  local e = redis.call('XRANGE', stream, entry, entry)
  if #e == 0 then return '' end
  return field(e[1][2], 'payload') or ''
end
";

/// KEYS: stream, attempts, marker per row. ARGV: marker TTL, then per row id, payload,
/// attempts, created_at. Returns how many rows were added to the stream.
const LUA_RELAY: &str = r"
local added = 0
local rows = (#ARGV - 1) / 4
for i = 1, rows do
  local b = 1 + (i - 1) * 4
  local id, payload, att, stamp = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4]
  local marker = KEYS[2 + i]
  if redis.call('GET', marker) ~= stamp then
    redis.call('SET', marker, stamp, 'EX', ARGV[1])
    redis.call('XADD', KEYS[1], '*', 'id', id, 'payload', payload)
    if tonumber(att) > 0 then redis.call('HSET', KEYS[2], id, att) end
    added = added + 1
  end
end
return added
";

/// KEYS: stream, delayed, attempts, leases. ARGV: group, consumer, now (ms), lease end (ms),
/// max, promote limit. Returns `{{newest entry id, first delayed score, first lease end},
/// {{entry, job id, payload, attempt}, ...}}`.
const LUA_RESERVE: &str = r"
local stream, delayed, attempts, leases = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local group, consumer, now, lease_end = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local max = tonumber(ARGV[5])
redis.pcall('XGROUP', 'CREATE', stream, group, '0', 'MKSTREAM')
local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, tonumber(ARGV[6]))
for _, member in ipairs(due) do
  redis.call('ZREM', delayed, member)
  local ok, job = pcall(cjson.decode, member)
  if ok and type(job) == 'table' and job.id then
    redis.call('XADD', stream, '*', 'id', tostring(job.id), 'payload', tostring(job.payload or ''))
  else
    redis.log(redis.LOG_WARNING, 'lazona: undecodable delayed job dropped: ' .. member)
  end
end
local got = {}
local function take(entry)
  local id, fields = entry[1], entry[2]
  if type(fields) ~= 'table' then
    redis.call('XACK', stream, group, id)
    redis.call('ZREM', leases, id)
    return
  end
  local job = field(fields, 'id')
  local attempt = 0
  if job then
    attempt = redis.call('HINCRBY', attempts, job, 1)
    redis.call('ZADD', leases, lease_end, id)
  end
  got[#got + 1] = {id, job or '', field(fields, 'payload') or '', attempt}
end
local ended = redis.call('ZRANGEBYSCORE', leases, '-inf', now, 'LIMIT', 0, max)
for _, entry in ipairs(ended) do
  local c = redis.call('XCLAIM', stream, group, consumer, 0, entry)
  if type(c[1]) == 'table' then
    take(c[1])
  else
    redis.call('ZREM', leases, entry)
  end
end
if #got < max then
  local r = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', max - #got,
    'STREAMS', stream, '>')
  if r then
    for _, e in ipairs(r[1][2]) do take(e) end
  end
end
local newest = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
local newest_id = '0-0'
if #newest > 0 then newest_id = newest[1][1] end
local d = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
local l = redis.call('ZRANGE', leases, 0, 0, 'WITHSCORES')
return {{newest_id, d[2] or '', l[2] or ''}, got}
";

/// KEYS: stream, attempts, leases. ARGV: group, consumer, lease end (ms), then per job entry,
/// job id, attempt. Moves the lease end of the entries still held. Returns how many.
const LUA_EXTEND: &str = r"
local n = 0
for i = 4, #ARGV, 3 do
  if held(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[i], ARGV[i + 1], ARGV[i + 2]) then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    redis.call('ZADD', KEYS[3], ARGV[3], ARGV[i])
    n = n + 1
  end
end
return n
";

/// KEYS: stream, attempts, leases. ARGV: group, consumer, then per job entry, job id, attempt.
/// Acknowledges and deletes the entries still held. Returns how many.
const LUA_COMPLETE: &str = r"
local n = 0
for i = 3, #ARGV, 3 do
  if held(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[i], ARGV[i + 1], ARGV[i + 2]) then
    redis.call('XACK', KEYS[1], ARGV[1], ARGV[i])
    redis.call('XDEL', KEYS[1], ARGV[i])
    redis.call('HDEL', KEYS[2], ARGV[i + 1])
    redis.call('ZREM', KEYS[3], ARGV[i])
    n = n + 1
  end
end
return n
";

/// KEYS: stream, attempts, delayed, leases. ARGV: group, consumer, entry, job id, attempt, due (ms),
/// error. Returns 1, or 0 when the job is no longer held.
const LUA_RETRY: &str = r"
local stream, attempts = KEYS[1], KEYS[2]
local group, consumer, entry, job, attempt = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if not held(stream, attempts, group, consumer, entry, job, attempt) then return 0 end
local payload = payload_of(stream, entry)
redis.call('XACK', stream, group, entry)
redis.call('XDEL', stream, entry)
local member = cjson.encode({id = job, payload = payload, attempts = tonumber(attempt),
  error = ARGV[7]})
redis.call('ZADD', KEYS[3], ARGV[6], member)
redis.call('ZREM', KEYS[4], entry)
return 1
";

/// KEYS: stream, attempts, dead, dead index, leases. ARGV: group, consumer, entry, job id,
/// attempt, error, now (ms). Returns 1, or 0 when the job is no longer held.
const LUA_DEAD: &str = r"
local stream, attempts, dead, index = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local group, consumer, entry, job, attempt = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if not held(stream, attempts, group, consumer, entry, job, attempt) then return 0 end
local payload = payload_of(stream, entry)
redis.call('XACK', stream, group, entry)
redis.call('XDEL', stream, entry)
local id = redis.call('XADD', dead, '*', 'id', job, 'payload', payload, 'attempts', attempt,
  'error', ARGV[6], 'failed_at', ARGV[7])
local old = redis.call('HGET', index, job)
if old then redis.call('XDEL', dead, old) end
redis.call('HSET', index, job, id)
redis.call('HDEL', attempts, job)
redis.call('ZREM', KEYS[5], entry)
return 1
";

/// KEYS: stream, attempts, dead, dead index. ARGV: job id. Returns 1, or 0 when there is no
/// such dead job.
const LUA_REQUEUE: &str = r"
local stream, attempts, dead, index = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local job = ARGV[1]
local id = redis.call('HGET', index, job)
if not id then return 0 end
redis.call('HDEL', index, job)
local e = redis.call('XRANGE', dead, id, id)
if #e == 0 then return 0 end
local payload = field(e[1][2], 'payload') or ''
redis.call('XDEL', dead, id)
redis.call('HDEL', attempts, job)
redis.call('XADD', stream, '*', 'id', job, 'payload', payload)
return 1
";

/// KEYS: stream, delayed, dead, leases. ARGV: group, now (ms). Returns `{stream length,
/// delayed, running, dead, first undelivered entry id or '', first delayed score or ''}`.
const LUA_STATS: &str = r"
local stream, delayed, dead, group = KEYS[1], KEYS[2], KEYS[3], ARGV[1]
local running = redis.call('ZCOUNT', KEYS[4], '(' .. ARGV[2], '+inf')
local last = '0-0'
local groups = redis.pcall('XINFO', 'GROUPS', stream)
if type(groups) == 'table' and not groups.err then
  for _, g in ipairs(groups) do
    if field(g, 'name') == group then last = field(g, 'last-delivered-id') or '0-0' end
  end
end
local first = redis.call('XRANGE', stream, '(' .. last, '+', 'COUNT', 1)
local oldest = ''
if #first > 0 then oldest = first[1][1] end
local d = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
return {redis.call('XLEN', stream), redis.call('ZCARD', delayed), running,
  redis.call('XLEN', dead), oldest, d[2] or ''}
";

/// KEYS: stream. ARGV: group, this consumer, idle (ms). Deletes the other consumers idle that
/// long with nothing pending. Returns how many.
const LUA_PRUNE: &str = r"
local r = redis.pcall('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
if type(r) ~= 'table' or r.err then return 0 end
local n = 0
for _, c in ipairs(r) do
  local name = field(c, 'name')
  if name and name ~= ARGV[2] and field(c, 'pending') == 0
      and (field(c, 'idle') or 0) >= tonumber(ARGV[3]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], name)
    n = n + 1
  end
end
return n
";

/// KEYS: stream, leases. ARGV: group, idle (ms), now (ms). Gives a lease that has ended to the
/// entries pending that long with none recorded, so that the next reservation takes them over.
/// Returns how many.
const LUA_ORPHANS: &str = r"
local p = redis.pcall('XPENDING', KEYS[1], ARGV[1], 'IDLE', ARGV[2], '-', '+', 1000)
if type(p) ~= 'table' or p.err then return 0 end
local n = 0
for _, e in ipairs(p) do
  if not redis.call('ZSCORE', KEYS[2], e[1]) then
    redis.call('ZADD', KEYS[2], ARGV[3], e[1])
    n = n + 1
  end
end
return n
";

/// The queue's key names.
#[derive(Debug)]
struct Keys {
    prefix: String,
    stream: String,
    delayed: String,
    attempts: String,
    leases: String,
    dead: String,
    dead_index: String,
}

impl Keys {
    fn new(prefix: &str) -> Self {
        Keys {
            prefix: prefix.to_owned(),
            stream: format!("{prefix}:jobs"),
            delayed: format!("{prefix}:delayed"),
            attempts: format!("{prefix}:attempts"),
            leases: format!("{prefix}:leases"),
            dead: format!("{prefix}:dead"),
            dead_index: format!("{prefix}:dead:index"),
        }
    }

    fn relayed(&self, id: i64) -> String {
        format!("{}:relayed:{id}", self.prefix)
    }
}

struct Scripts {
    relay: Script,
    reserve: Script,
    extend: Script,
    complete: Script,
    retry: Script,
    dead: Script,
    requeue: Script,
    stats: Script,
    prune: Script,
    orphans: Script,
}

impl Scripts {
    fn new() -> Self {
        let with_helpers = |body: &str| Script::new(&format!("{LUA_HELPERS}{body}"));
        Scripts {
            relay: Script::new(LUA_RELAY),
            reserve: with_helpers(LUA_RESERVE),
            extend: with_helpers(LUA_EXTEND),
            complete: with_helpers(LUA_COMPLETE),
            retry: with_helpers(LUA_RETRY),
            dead: with_helpers(LUA_DEAD),
            requeue: with_helpers(LUA_REQUEUE),
            stats: with_helpers(LUA_STATS),
            prune: with_helpers(LUA_PRUNE),
            orphans: Script::new(LUA_ORPHANS),
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

/// What a reservation pass saw, for the wait that may follow it.
struct Seen {
    /// The stream's newest entry id: a blocking read from it wakes on the next entry.
    newest: String,
    /// When the first retry becomes due or the first lease ends (ms), if any.
    next_due: Option<i64>,
}

impl RedisJobQueue {
    /// Connects to Redis at `redis_url` (`redis://[user:password@]host[:port][/db]`), with keys
    /// under `prefix` ([`DEFAULT_PREFIX`] in the default configuration), and creates the
    /// consumer group when missing. `db` is the connector's database: its `jobs` table is the
    /// outbox (the same database as the inbox's).
    ///
    /// # Errors
    /// [`QueueError::Unexpected`] for an invalid URL, [`QueueError::Unavailable`] when Redis
    /// cannot be reached.
    pub async fn connect(redis_url: &str, prefix: &str, db: Database) -> Result<Self, QueueError> {
        let client =
            redis::Client::open(redis_url).map_err(|e| QueueError::Unexpected(Box::new(e)))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(RECONNECT_RETRIES)
            .set_max_delay(Duration::from_secs(1));
        let conn = ConnectionManager::new_with_config(client.clone(), config.clone())
            .await
            .map_err(redis_err)?;
        // Blocking reads are bounded by `BLOCK` and a timeout of their own.
        let blocking =
            ConnectionManager::new_lazy_with_config(client, config.set_response_timeout(None))
                .map_err(redis_err)?;
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
            }),
        };
        queue.create_group().await?;
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

    /// Moves up to `max` due outbox rows from SQL to the stream, in one SQL transaction that
    /// commits only after Redis has them. Returns how many rows left SQL.
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
        let probe = statement(
            backend,
            &format!(
                "SELECT id FROM jobs WHERE status = 'ready' AND due_at <= {} LIMIT 1",
                placeholder(backend, 1)
            ),
            vec![now.into()],
        );
        if db
            .conn()
            .query_one_raw(probe)
            .await
            .map_err(db_unavailable)?
            .is_none()
        {
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
                "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE status = 'ready' \
                 AND due_at <= {} ORDER BY id LIMIT {}{lock}) \
                 RETURNING id, payload, attempts, created_at",
                placeholder(backend, 1),
                placeholder(backend, 2)
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
            decoded.push((id, payload, attempts, created_at));
        }
        // Relayed in id order, as the rows were returned (RETURNING promises no order).
        decoded.sort_by_key(|r| r.0);
        let keys = &self.inner.keys;
        let mut call = self.inner.scripts.relay.prepare_invoke();
        call.key(&keys.stream).key(&keys.attempts);
        call.arg(MARKER_TTL_SECS);
        for (id, payload, attempts, created_at) in &decoded {
            call.key(keys.relayed(*id));
            call.arg(id).arg(payload).arg(attempts).arg(created_at);
        }
        let pushed: Result<i64, RedisError> = call.invoke_async(&mut self.conn()).await;
        if let Err(e) = pushed {
            let _ = txn.rollback().await;
            return Err(redis_err(e));
        }
        txn.commit().await.map_err(db_unavailable)?;
        Ok(decoded.len())
    }

    /// Relays until `shutdown` is cancelled: again at once after a full batch, after a short
    /// sleep otherwise, backing off on errors. Every ten minutes it also forgets consumers of
    /// workers gone for an hour with nothing pending, and repairs jobs pending with no lease
    /// recorded ([`RedisJobQueue::recover_orphans`]). Not needed for correctness (`reserve`
    /// relays too), it keeps new jobs flowing while every worker is busy.
    pub async fn run_relay(&self, shutdown: CancellationToken) {
        let mut backoff = RELAY_IDLE;
        let mut next_prune = Instant::now() + PRUNE_EVERY;
        while !shutdown.is_cancelled() {
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

    /// Relays for a reservation: a failure is logged, not returned (what is in Redis can still
    /// be reserved while the database is down).
    async fn relay_quietly(&self) {
        if let Err(e) = self.relay_once(RELAY_BATCH).await {
            tracing::warn!(error = %domain::error::error_chain(&e), "job relay failed");
        }
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
                    match self.dead_letter(&job, &reason).await {
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
    fn held<'j>(&self, job: &'j Job) -> Option<(&'j str, &'j str)> {
        job.lease
            .0
            .split_once('/')
            .filter(|(entry, attempt)| !entry.is_empty() && !attempt.is_empty())
    }

    /// Runs the extend script (with the new lease end) or the complete script (without) over
    /// the jobs still held; returns how many were.
    async fn for_held(
        &self,
        script: &Script,
        lease_end: Option<i64>,
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
                any = true;
            }
        }
        if !any {
            return Ok(0);
        }
        call.invoke_async(&mut self.conn()).await.map_err(redis_err)
    }
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

/// The millisecond timestamp in a stream entry id (`<ms>-<seq>`).
fn entry_millis(entry: &str) -> Option<i64> {
    entry.split_once('-').and_then(|(ms, _)| ms.parse().ok())
}

fn field<'m>(map: &'m HashMap<String, String>, name: &str) -> &'m str {
    map.get(name).map_or("", String::as_str)
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
        if max == 0 {
            return Ok(Vec::new());
        }
        let deadline = Instant::now() + wait;
        loop {
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

    async fn extend(&self, jobs: &[Job], lease: Duration) -> Result<(), QueueError> {
        let end = lease_end(millis(Utc::now()), lease);
        let n = self
            .for_held(&self.inner.scripts.extend, Some(end), jobs)
            .await?;
        if n < jobs.len() {
            tracing::debug!(lost = jobs.len() - n, "leases lost, not extended");
        }
        Ok(())
    }

    async fn complete(&self, jobs: &[Job]) -> Result<(), QueueError> {
        let n = self
            .for_held(&self.inner.scripts.complete, None, jobs)
            .await?;
        if n < jobs.len() {
            tracing::debug!(lost = jobs.len() - n, "leases lost, completion skipped");
        }
        Ok(())
    }

    async fn retry(&self, job: &Job, at: DateTime<Utc>, error: &str) -> Result<(), QueueError> {
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
            .arg(GROUP)
            .arg(&self.inner.consumer)
            .arg(entry)
            .arg(job.id.0)
            .arg(attempt)
            .arg(millis(at))
            .arg(error)
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        match done {
            0 => Err(QueueError::LeaseLost(job.id)),
            _ => Ok(()),
        }
    }

    async fn dead_letter(&self, job: &Job, error: &str) -> Result<(), QueueError> {
        let Some((entry, attempt)) = self.held(job) else {
            return Err(QueueError::LeaseLost(job.id));
        };
        let keys = &self.inner.keys;
        let done: i64 = self
            .inner
            .scripts
            .dead
            .key(&keys.stream)
            .key(&keys.attempts)
            .key(&keys.dead)
            .key(&keys.dead_index)
            .key(&keys.leases)
            .arg(GROUP)
            .arg(&self.inner.consumer)
            .arg(entry)
            .arg(job.id.0)
            .arg(attempt)
            .arg(error)
            .arg(millis(Utc::now()))
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        match done {
            0 => Err(QueueError::LeaseLost(job.id)),
            _ => Ok(()),
        }
    }

    async fn dead_jobs(&self, limit: usize) -> Result<Vec<DeadJob>, QueueError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let entries: Vec<(String, HashMap<String, String>)> = redis::cmd("XREVRANGE")
            .arg(&self.inner.keys.dead)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(limit)
            .query_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        let mut dead = Vec::with_capacity(entries.len());
        for (entry, map) in entries {
            let id = field(&map, "id").parse().map(JobId).map_err(|_| {
                QueueError::Unexpected(format!("dead entry {entry} has no job id").into())
            })?;
            let kind =
                serde_json::from_str(field(&map, "payload")).map_err(|e| QueueError::Corrupt {
                    id,
                    reason: e.to_string(),
                })?;
            let failed_at = field(&map, "failed_at")
                .parse()
                .ok()
                .or_else(|| entry_millis(&entry))
                .map(from_millis)
                .unwrap_or_default();
            dead.push(DeadJob {
                id,
                kind,
                attempts: field(&map, "attempts").parse().unwrap_or(0),
                error: field(&map, "error").to_owned(),
                failed_at,
            });
        }
        Ok(dead)
    }

    async fn requeue_dead(&self, id: JobId) -> Result<(), QueueError> {
        let keys = &self.inner.keys;
        let done: i64 = self
            .inner
            .scripts
            .requeue
            .key(&keys.stream)
            .key(&keys.attempts)
            .key(&keys.dead)
            .key(&keys.dead_index)
            .arg(id.0)
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        match done {
            0 => Err(QueueError::NotFound(id)),
            _ => Ok(()),
        }
    }

    async fn stats(&self) -> Result<QueueStats, QueueError> {
        let keys = &self.inner.keys;
        let (stream, delayed, running, dead, oldest, first_delayed): (
            u64,
            u64,
            u64,
            u64,
            String,
            String,
        ) = self
            .inner
            .scripts
            .stats
            .key(&keys.stream)
            .key(&keys.delayed)
            .key(&keys.dead)
            .key(&keys.leases)
            .arg(GROUP)
            .arg(millis(Utc::now()))
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        let backend = self.inner.db.backend();
        let outbox = statement(
            backend,
            "SELECT COALESCE(SUM(CASE WHEN status <> 'dead' THEN 1 ELSE 0 END), 0), \
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
        let waiting: i64 = row.try_get_by_index(0).map_err(db_unavailable)?;
        let outbox_due: Option<i64> = row.try_get_by_index(1).map_err(db_unavailable)?;
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
            pending: stream + delayed + u64::try_from(waiting).unwrap_or(0),
            running,
            dead,
            oldest_due,
        })
    }
}
