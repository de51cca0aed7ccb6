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
//!   JSON of the [`JobKind`]), read by the consumer group `workers` (created with `MKSTREAM`);
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

use crate::db::{Database, SqlJobQueue, from_millis, millis, process_nonce};
use crate::redact::{redact, url_problem};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::error::QueueError;
use domain::model::{DeadJob, Job, JobId, JobKind, Lease, NewJob};
use domain::ports::{JobQueue, QueueStats};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, Script};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement, TransactionTrait, Value};
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

/// A reconciliation refreshes the markers that would expire within this many seconds (1 day).
const MARKER_REFRESH_BELOW_SECS: u64 = 24 * 3600;

/// How often `run_relay`, and `reserve`, reconcile the outbox with Redis (per instance).
pub const RECONCILE_EVERY: Duration = Duration::from_secs(2);

/// How many relayed rows one reconciliation pass checks at most.
pub const RECONCILE_BATCH: usize = 2000;

/// Rows relayed less than this long ago are left to the next reconciliation pass.
pub const RECONCILE_GRACE: Duration = Duration::from_secs(1);

/// How many reconciliation passes `connect` runs at most (while they find lost jobs).
const CONNECT_RECONCILE_PASSES: usize = 64;

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

/// KEYS: stream, attempts, leases, then the marker of each job. ARGV: group, consumer, then per
/// job entry, job id, attempt. Acknowledges and deletes the entries still held, and their
/// markers. Returns how many.
const LUA_COMPLETE: &str = r"
local n = 0
local k = 3
for i = 3, #ARGV, 3 do
  k = k + 1
  if held(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[i], ARGV[i + 1], ARGV[i + 2]) then
    redis.call('XACK', KEYS[1], ARGV[1], ARGV[i])
    redis.call('XDEL', KEYS[1], ARGV[i])
    redis.call('HDEL', KEYS[2], ARGV[i + 1])
    redis.call('ZREM', KEYS[3], ARGV[i])
    redis.call('DEL', KEYS[k])
    n = n + 1
  end
end
return n
";

/// KEYS: stream, attempts, delayed, leases, marker. ARGV: group, consumer, entry, job id, attempt,
/// due (ms), error, marker TTL. Returns 1, or 0 when the job is no longer held.
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
redis.call('EXPIRE', KEYS[5], ARGV[8])
return 1
";

/// KEYS: stream, attempts, leases, marker. ARGV: group, consumer, entry, job id, attempt. Drops
/// the job (its row in SQL is the dead letter). Returns 1, or 0 when the job is no longer held.
const LUA_DEAD: &str = r"
local stream, attempts = KEYS[1], KEYS[2]
local group, consumer, entry, job, attempt = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if not held(stream, attempts, group, consumer, entry, job, attempt) then return 0 end
redis.call('XACK', stream, group, entry)
redis.call('XDEL', stream, entry)
redis.call('HDEL', attempts, job)
redis.call('ZREM', KEYS[3], entry)
redis.call('DEL', KEYS[4])
return 1
";

/// KEYS: stream, delayed, leases. ARGV: group, now (ms). Returns `{running, first undelivered
/// entry id or '', first delayed score or ''}`.
const LUA_STATS: &str = r"
local stream, delayed, group = KEYS[1], KEYS[2], ARGV[1]
local running = redis.call('ZCOUNT', KEYS[3], '(' .. ARGV[2], '+inf')
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
return {running, oldest, d[2] or ''}
";

/// KEYS: markers. ARGV: TTL, refresh below (s). Returns, per marker, 1 if it exists (refreshing
/// its TTL when it would expire soon) or 0.
const LUA_MARKERS: &str = r"
local out = {}
for i, key in ipairs(KEYS) do
  local ttl = redis.call('TTL', key)
  if ttl == -2 then
    out[i] = 0
  else
    out[i] = 1
    if ttl >= 0 and ttl < tonumber(ARGV[2]) then redis.call('EXPIRE', key, ARGV[1]) end
  end
end
return out
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
        let with_helpers = |body: &str| Script::new(&format!("{LUA_HELPERS}{body}"));
        Scripts {
            relay: Script::new(LUA_RELAY),
            reserve: with_helpers(LUA_RESERVE),
            extend: with_helpers(LUA_EXTEND),
            complete: with_helpers(LUA_COMPLETE),
            retry: with_helpers(LUA_RETRY),
            dead: with_helpers(LUA_DEAD),
            stats: with_helpers(LUA_STATS),
            prune: with_helpers(LUA_PRUNE),
            orphans: Script::new(LUA_ORPHANS),
            markers: Script::new(LUA_MARKERS),
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

/// Where this instance's reconciliation stands.
struct Reconcile {
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
                reconcile: tokio::sync::Mutex::new(Reconcile {
                    cursor: 0,
                    next: None,
                }),
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
    /// sleep otherwise, backing off on errors. Every [`RECONCILE_EVERY`] it reconciles the
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
    async fn reconcile_at_start(&self) {
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
    async fn reconcile_if_due(&self) {
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
        let db = &self.inner.db;
        let backend = db.backend();
        let now = millis(Utc::now());
        let settled = now - i64::try_from(RECONCILE_GRACE.as_millis()).unwrap_or(0);
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
                (*cursor).into(),
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
        let keys = &self.inner.keys;
        let mut call = self.inner.scripts.markers.prepare_invoke();
        for id in &ids {
            call.key(keys.relayed(*id));
        }
        call.arg(MARKER_TTL_SECS).arg(MARKER_REFRESH_BELOW_SECS);
        let present: Vec<i64> = call
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        let lost: Vec<i64> = ids
            .iter()
            .zip(present.iter().chain(std::iter::repeat(&1)))
            .filter(|(_, present)| **present == 0)
            .map(|(id, _)| *id)
            .collect();
        let mut reset = 0;
        if !lost.is_empty() {
            // Only rows not relayed again since they were read (their `updated_at` moved).
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
            reset = usize::try_from(done.rows_affected()).unwrap_or(usize::MAX);
        }
        *cursor = next_cursor;
        Ok(Pass {
            checked: ids.len(),
            reset,
            wrapped,
        })
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

    /// Runs the extend script (with the new lease end) or the complete script (without, and with
    /// the jobs' markers) over the jobs still held; returns how many were.
    async fn for_held(
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

    /// Deletes the rows of completed jobs (`ready` or `relayed`: not dead letters).
    async fn delete_rows(&self, jobs: &[Job]) -> Result<(), QueueError> {
        let backend = self.inner.db.backend();
        for chunk in jobs.chunks(RELAY_BATCH) {
            let values: Vec<Value> = chunk.iter().map(|j| Value::from(j.id.0)).collect();
            let delete = statement(
                backend,
                &format!(
                    "DELETE FROM jobs WHERE status IN ('ready', 'relayed') AND id IN {}",
                    id_list(backend, 1, values.len())
                ),
                values,
            );
            self.inner
                .db
                .conn()
                .execute_raw(delete)
                .await
                .map_err(db_unavailable)?;
        }
        Ok(())
    }

    /// Writes a retry to the job's row, so that it survives Redis losing the job (best effort:
    /// Redis has it already).
    async fn record_retry(&self, job: &Job, attempt: &str, at: DateTime<Utc>, error: &str) {
        let backend = self.inner.db.backend();
        let p = |n| placeholder(backend, n);
        let update = statement(
            backend,
            &format!(
                "UPDATE jobs SET due_at = {}, last_error = {}, attempts = {}, updated_at = {} \
                 WHERE id = {} AND status = 'relayed'",
                p(1),
                p(2),
                p(3),
                p(4),
                p(5)
            ),
            vec![
                millis(at).into(),
                error.into(),
                attempt.parse::<i32>().unwrap_or(0).into(),
                millis(Utc::now()).into(),
                job.id.0.into(),
            ],
        );
        if let Err(e) = self.inner.db.conn().execute_raw(update).await {
            tracing::warn!(job_id = %job.id, error = %e,
                "retry not written to the outbox row (only matters if Redis loses the job)");
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

/// The millisecond timestamp in a stream entry id (`<ms>-<seq>`).
fn entry_millis(entry: &str) -> Option<i64> {
    entry.split_once('-').and_then(|(ms, _)| ms.parse().ok())
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

    async fn extend(&self, jobs: &[Job], lease: Duration) -> Result<(), QueueError> {
        let end = lease_end(millis(Utc::now()), lease);
        let n = self
            .for_held(&self.inner.scripts.extend, Some(end), false, jobs)
            .await?;
        if n < jobs.len() {
            tracing::debug!(lost = jobs.len() - n, "leases lost, not extended");
        }
        Ok(())
    }

    async fn complete(&self, jobs: &[Job]) -> Result<(), QueueError> {
        if jobs.is_empty() {
            return Ok(());
        }
        // The rows first, held or not (the handlers ran): once they are gone no reconciliation
        // brings the jobs back. Redis is acknowledged whatever became of them.
        let deleted = self.delete_rows(jobs).await;
        let acked = self
            .for_held(&self.inner.scripts.complete, None, true, jobs)
            .await;
        deleted?;
        let n = acked?;
        if n < jobs.len() {
            tracing::debug!(
                lost = jobs.len() - n,
                "leases lost, completion skipped in Redis"
            );
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
            .key(keys.relayed(job.id.0))
            .arg(GROUP)
            .arg(&self.inner.consumer)
            .arg(entry)
            .arg(job.id.0)
            .arg(attempt)
            .arg(millis(at))
            .arg(error)
            .arg(MARKER_TTL_SECS)
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_err)?;
        if done == 0 {
            return Err(QueueError::LeaseLost(job.id));
        }
        self.record_retry(job, attempt, at, error).await;
        Ok(())
    }

    async fn dead_letter(&self, job: &Job, error: &str) -> Result<(), QueueError> {
        let Some((entry, attempt)) = self.held(job) else {
            return Err(QueueError::LeaseLost(job.id));
        };
        // The row becomes the dead letter in a transaction that commits once Redis has dropped
        // the job (and its marker): the row is locked meanwhile, so no reconciliation sees a
        // relayed row without a marker.
        let db = &self.inner.db;
        let backend = db.backend();
        let p = |n| placeholder(backend, n);
        let now = millis(Utc::now());
        let mark = statement(
            backend,
            &format!(
                "UPDATE jobs SET status = 'dead', attempts = {}, last_error = {}, updated_at = {}, \
                 due_at = {} WHERE id = {} AND status IN ('ready', 'relayed')",
                p(1),
                p(2),
                p(3),
                p(3),
                p(4)
            ),
            vec![
                attempt.parse::<i32>().unwrap_or(0).into(),
                error.into(),
                now.into(),
                job.id.0.into(),
            ],
        );
        let txn = db.conn().begin().await.map_err(db_unavailable)?;
        let marked = txn
            .execute_raw(mark)
            .await
            .map_err(db_unavailable)?
            .rows_affected();
        let keys = &self.inner.keys;
        let done: Result<i64, RedisError> = self
            .inner
            .scripts
            .dead
            .key(&keys.stream)
            .key(&keys.attempts)
            .key(&keys.leases)
            .key(keys.relayed(job.id.0))
            .arg(GROUP)
            .arg(&self.inner.consumer)
            .arg(entry)
            .arg(job.id.0)
            .arg(attempt)
            .invoke_async(&mut self.conn())
            .await;
        match done {
            Ok(0) => {
                let _ = txn.rollback().await;
                Err(QueueError::LeaseLost(job.id))
            }
            Ok(_) => {
                txn.commit().await.map_err(db_unavailable)?;
                if marked == 0 {
                    tracing::warn!(job_id = %job.id,
                        "dead-lettered job has no outbox row (completed already?): dropped");
                }
                Ok(())
            }
            Err(e) => {
                let _ = txn.rollback().await;
                Err(redis_err(e))
            }
        }
    }

    async fn dead_jobs(&self, limit: usize) -> Result<Vec<DeadJob>, QueueError> {
        // Dead letters are rows: the SQL queue reads them alike.
        self.inner.sql.dead_jobs(limit).await
    }

    async fn requeue_dead(&self, id: JobId) -> Result<(), QueueError> {
        // Back to `ready`, attempts 0: the relay pushes it (its marker went when it died).
        self.inner.sql.requeue_dead(id).await
    }

    async fn stats(&self) -> Result<QueueStats, QueueError> {
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
