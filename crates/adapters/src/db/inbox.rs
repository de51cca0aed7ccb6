//! The webhook inbox on SQL, with a group-commit writer.
//!
//! [`SqlInbox::record`] hands its webhook to a writer task and waits. Writer tasks take every
//! webhook waiting (up to a batch size), insert them and their jobs in **one transaction**, commit,
//! and only then answer each caller. One commit (one fsync) serves a whole batch, which is what
//! makes durable acknowledgement cheap under load. On Postgres several writers run on their own
//! connections with small batches; SQLite has a single writer.

use super::entity::webhook;
use super::events::EVENT_COLUMNS;
use super::sql::SqlBuilder;
use super::{Database, boxed, from_millis, millis};
use crate::config::InboxConfig;
use async_trait::async_trait;
use bytes::Bytes;
use domain::error::InboxError;
use domain::model::{
    JobKind, NewWebhook, RecordOutcome, Recorded, Resource, Webhook, WebhookEvent, WebhookFilter,
    WebhookId, WebhookStatus, WebhookSummary,
};
use domain::ports::WebhookInbox;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, Statement, Value,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{Mutex, Notify, mpsc, oneshot};

type Reply = oneshot::Sender<Result<Recorded, InboxError>>;

struct WriteRequest {
    key: String,
    webhook: NewWebhook,
    reply: Reply,
}

/// A status change waiting for the transition writer.
struct TransitionRequest {
    id: WebhookId,
    from: WebhookStatus,
    to: WebhookStatus,
    error: Option<String>,
    reply: oneshot::Sender<Result<bool, InboxError>>,
}

/// A read of one webhook, waiting for the reader task.
struct GetRequest {
    id: i64,
    reply: oneshot::Sender<Result<Option<webhook::Model>, InboxError>>,
}

/// Most webhooks read in one statement.
const MAX_GET_BATCH: usize = 64;

/// Reads the webhooks asked for together in one `SELECT ... WHERE id IN (...)`: under load every
/// job starts by reading its webhook, and one statement for all those waiting is one round trip
/// (and, on Postgres, one transaction) instead of one each.
async fn get_reader(db: Database, mut rx: mpsc::Receiver<GetRequest>) {
    use sea_orm::ColumnTrait as _;
    let mut batch: Vec<GetRequest> = Vec::with_capacity(MAX_GET_BATCH);
    while rx.recv_many(&mut batch, MAX_GET_BATCH).await > 0 {
        let ids: Vec<i64> = batch.iter().map(|g| g.id).collect();
        let found = webhook::Entity::find()
            .filter(webhook::Column::Id.is_in(ids))
            .all(db.reader())
            .await;
        match found {
            Ok(models) => {
                let by_id: HashMap<i64, webhook::Model> =
                    models.into_iter().map(|m| (m.id, m)).collect();
                for g in batch.drain(..) {
                    let _ = g.reply.send(Ok(by_id.get(&g.id).cloned()));
                }
            }
            Err(e) => {
                let reason = e.to_string();
                for g in batch.drain(..) {
                    let _ = g
                        .reply
                        .send(Err(InboxError::Unavailable(reason.clone().into())));
                }
            }
        }
    }
}

/// The inbox on the connector's SQL database.
#[derive(Clone)]
pub struct SqlInbox {
    db: Database,
    gets: mpsc::Sender<GetRequest>,
    tx: mpsc::Sender<WriteRequest>,
    transitions: mpsc::Sender<TransitionRequest>,
    jobs_ready: Arc<Notify>,
    local_keys: Arc<AtomicU64>,
    key_prefix: Arc<str>,
}

impl std::fmt::Debug for SqlInbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlInbox").finish_non_exhaustive()
    }
}

impl SqlInbox {
    /// Starts the writer tasks (on the current tokio runtime). They stop when the last clone of
    /// the inbox is dropped, after writing what they were given.
    pub fn start(db: Database, cfg: &InboxConfig) -> Self {
        let sqlite = db.backend() == DbBackend::Sqlite;
        let (writers, max_batch) = if sqlite {
            (1, cfg.sqlite_max_batch.max(1))
        } else {
            (cfg.writers.max(1), cfg.max_batch.max(1))
        };
        let (tx, rx) = mpsc::channel::<WriteRequest>(writers * max_batch * 4);
        let rx = Arc::new(Mutex::new(rx));
        let jobs_ready = Arc::new(Notify::new());
        for _ in 0..writers {
            tokio::spawn(writer(
                db.clone(),
                rx.clone(),
                max_batch,
                jobs_ready.clone(),
            ));
        }
        // Status changes (the workers' compare-and-set moves) are group-committed too, by their
        // own writer: on SQLite one fsync then serves a whole batch of finished jobs.
        let (transitions, transitions_rx) = mpsc::channel(max_batch * 4);
        tokio::spawn(transition_writer(db.clone(), transitions_rx, max_batch));
        let (gets, gets_rx) = mpsc::channel(MAX_GET_BATCH * 4);
        tokio::spawn(get_reader(db.clone(), gets_rx));
        let nonce = super::process_nonce();
        SqlInbox {
            db,
            gets,
            tx,
            transitions,
            jobs_ready,
            local_keys: Arc::new(AtomicU64::new(0)),
            key_prefix: format!("local-{nonce}-").into(),
        }
    }

    /// Notified after each commit that enqueued jobs: an in-process worker waits on it instead of
    /// polling.
    pub fn jobs_ready(&self) -> Arc<Notify> {
        self.jobs_ready.clone()
    }

    /// [`NewWebhook::dedupe_key`] (delivery id and body), or a key of this process's own, unique,
    /// when WooCommerce sent no delivery id.
    fn dedupe_key(&self, webhook: &NewWebhook) -> String {
        match webhook.dedupe_key() {
            Some(key) => key,
            None => {
                let n = self.local_keys.fetch_add(1, Ordering::Relaxed);
                format!("{}{n}", self.key_prefix)
            }
        }
    }
}

async fn writer(
    db: Database,
    rx: Arc<Mutex<mpsc::Receiver<WriteRequest>>>,
    max_batch: usize,
    jobs_ready: Arc<Notify>,
) {
    let mut batch = Vec::with_capacity(max_batch);
    loop {
        if rx.lock().await.recv_many(&mut batch, max_batch).await == 0 {
            return;
        }
        match write_batch(&db, &batch).await {
            Ok((recorded, queued)) => {
                if recorded.iter().any(|r| r.outcome == RecordOutcome::Stored) {
                    super::events::notify_written();
                }
                for (req, rec) in batch.drain(..).zip(recorded) {
                    let _ = req.reply.send(Ok(rec));
                }
                if queued {
                    jobs_ready.notify_waiters();
                    jobs_ready.notify_one();
                }
            }
            Err(e) => {
                tracing::error!(error = ?e, rows = batch.len(), "inbox batch not committed");
                let reason = e.to_string();
                for req in batch.drain(..) {
                    let err = InboxError::Unavailable(reason.clone().into());
                    let _ = req.reply.send(Err(err));
                }
            }
        }
    }
}

async fn transition_writer(
    db: Database,
    mut rx: mpsc::Receiver<TransitionRequest>,
    max_batch: usize,
) {
    let mut batch = Vec::with_capacity(max_batch);
    while rx.recv_many(&mut batch, max_batch).await > 0 {
        match apply_transitions(&db, &batch).await {
            Ok(moved) => {
                for (req, moved) in batch.drain(..).zip(moved) {
                    let _ = req.reply.send(Ok(moved));
                }
            }
            Err(e) => {
                tracing::error!(error = ?e, rows = batch.len(), "status changes not committed");
                let reason = e.to_string();
                for req in batch.drain(..) {
                    let _ = req
                        .reply
                        .send(Err(InboxError::Unavailable(reason.clone().into())));
                }
            }
        }
    }
}

/// A status change asked for, without its reply.
#[derive(Clone)]
struct Move {
    id: i64,
    from: WebhookStatus,
    to: WebhookStatus,
    error: Option<String>,
}

/// The moves of `batch` with the same `from`, `to` and error, in order of first appearance: each
/// group is one `UPDATE`.
fn move_groups(batch: &[Move]) -> Vec<(&Move, Vec<usize>)> {
    let mut groups: Vec<(&Move, Vec<usize>)> = Vec::new();
    for (i, t) in batch.iter().enumerate() {
        match groups
            .iter_mut()
            .find(|(g, _)| (g.from, g.to, &g.error) == (t.from, t.to, &t.error))
        {
            Some((_, members)) => members.push(i),
            None => groups.push((t, vec![i])),
        }
    }
    groups
}

/// Applies each compare-and-set move, with its history row when it moved, atomically. Moves with
/// the same `from`, `to` and error (most of a busy batch: "processed" with the same summary)
/// share one `UPDATE ... WHERE id IN (...) RETURNING id`. On Postgres each group's history rows
/// are inserted by the same statement (a data-modifying CTE), so a batch of one group is one
/// statement, committed by itself without `BEGIN` and `COMMIT`.
async fn apply_transitions(db: &Database, batch: &[TransitionRequest]) -> Result<Vec<bool>, DbErr> {
    let moves: Vec<Move> = batch
        .iter()
        .map(|t| Move {
            id: t.id.0,
            from: t.from,
            to: t.to,
            error: t.error.clone(),
        })
        .collect();
    let backend = db.backend();
    if backend == DbBackend::Postgres && move_groups(&moves).len() == 1 {
        return apply_moves(db.conn(), backend, &moves).await;
    }
    let moves: Arc<[Move]> = moves.into();
    db.transact(move |txn| {
        let moves = moves.clone();
        Box::pin(async move { apply_moves(txn, backend, &moves).await })
    })
    .await
}

/// The statements of [`apply_transitions`], on `conn`: one per group on Postgres, one per group
/// and one for all the history rows on SQLite.
async fn apply_moves<C: ConnectionTrait>(
    conn: &C,
    backend: DbBackend,
    batch: &[Move],
) -> Result<Vec<bool>, DbErr> {
    let now = millis(chrono::Utc::now());
    let mut moved = vec![false; batch.len()];
    let mut events = SqlBuilder::new(
        backend,
        "INSERT INTO webhook_events (webhook_id, at, status, detail) VALUES ".into(),
    );
    let mut n_events = 0;
    let together = backend == DbBackend::Postgres;
    for (t, members) in move_groups(batch) {
        let done = matches!(t.to, WebhookStatus::Processed | WebhookStatus::Failed);
        let mut update = SqlBuilder::new(
            backend,
            if together { "WITH moved AS (" } else { "" }.to_owned()
                + "UPDATE webhooks SET status = ",
        );
        update.param(t.to.as_str().into());
        update.sql.push_str(", error = ");
        update.param(t.error.clone().into());
        update.sql.push_str(", processed_at = ");
        update.param(done.then_some(now).into());
        update.sql.push_str(" WHERE status = ");
        update.param(t.from.as_str().into());
        update.sql.push_str(" AND id IN ");
        update.row(0, members.iter().map(|i| batch[*i].id.into()));
        update.sql.push_str(" RETURNING id");
        if together {
            update.sql.push_str(
                "), history AS (INSERT INTO webhook_events (webhook_id, at, status, detail) \
                 SELECT id, ",
            );
            update.param(now.into());
            update.sql.push_str(", ");
            update.param(t.to.as_str().into());
            update.sql.push_str(", ");
            update.param(t.error.clone().into());
            update.sql.push_str(" FROM moved) SELECT id FROM moved");
        }
        let rows = conn.query_all_raw(update.build()).await?;
        let mut ids = std::collections::HashSet::with_capacity(rows.len());
        for row in rows {
            ids.insert(row.try_get_by_index::<i64>(0)?);
        }
        for i in members {
            // A webhook named twice in the batch moves once: the first request gets it.
            if ids.remove(&batch[i].id) {
                moved[i] = true;
                if !together {
                    events.row(
                        n_events,
                        [
                            batch[i].id.into(),
                            now.into(),
                            t.to.as_str().into(),
                            t.error.clone().into(),
                        ],
                    );
                    n_events += 1;
                }
            }
        }
    }
    if n_events > 0 {
        conn.execute_raw(events.build()).await?;
    }
    Ok(moved)
}

const INSERT_COLUMNS: &str = "dedupe_key, resource, topic, event, delivery_id, wc_webhook_id, \
     source, subject_id, headers, body, received_at, status, error";

/// Inserts the batch and the jobs of its new queued webhooks atomically. Returns each request's
/// outcome, in order, and whether any job was enqueued.
async fn write_batch(
    db: &Database,
    batch: &[WriteRequest],
) -> Result<(Vec<Recorded>, bool), DbErr> {
    let backend = db.backend();
    let inserted = match backend {
        DbBackend::Postgres => insert_postgres(db, batch).await?,
        _ => insert_in_transaction(db, batch).await?,
    };

    // Keys stored before this batch (repeated deliveries): look their ids up.
    let earlier: Vec<&str> = batch
        .iter()
        .map(|r| r.key.as_str())
        .filter(|k| !inserted.contains_key(*k))
        .collect();
    let mut existing: HashMap<String, i64> = HashMap::new();
    if !earlier.is_empty() {
        let mut select = SqlBuilder::new(
            backend,
            "SELECT id, dedupe_key FROM webhooks WHERE dedupe_key IN ".into(),
        );
        select.row(0, earlier.iter().map(|k| Value::from(k.to_string())));
        for row in db.conn().query_all_raw(select.build()).await? {
            existing.insert(row.try_get_by_index(1)?, row.try_get_by_index(0)?);
        }
    }

    let mut recorded = Vec::with_capacity(batch.len());
    let mut queued = false;
    let mut inserted = inserted;
    for req in batch {
        if let Some(id) = inserted.remove(&req.key) {
            // A later copy of the same delivery in this batch is its duplicate.
            existing.insert(req.key.clone(), id);
            queued |= req.webhook.status == WebhookStatus::Queued;
            recorded.push(Recorded {
                id: WebhookId(id),
                outcome: RecordOutcome::Stored,
            });
        } else {
            let id = existing.get(&req.key).copied().ok_or_else(|| {
                DbErr::Custom(format!("webhook {:?} neither inserted nor found", req.key))
            })?;
            recorded.push(Recorded {
                id: WebhookId(id),
                outcome: RecordOutcome::Duplicate,
            });
        }
    }
    Ok((recorded, queued))
}

/// `INSERT INTO webhooks ... VALUES (...), (...) ON CONFLICT DO NOTHING RETURNING id, dedupe_key,
/// status` for the batch.
fn insert_webhooks(backend: DbBackend, batch: &[WriteRequest]) -> SqlBuilder {
    let mut insert = SqlBuilder::new(
        backend,
        format!("INSERT INTO webhooks ({INSERT_COLUMNS}) VALUES "),
    );
    for (i, req) in batch.iter().enumerate() {
        let w = &req.webhook;
        insert.row(
            i,
            [
                req.key.clone().into(),
                w.resource.as_str().into(),
                w.topic.clone().into(),
                w.event.clone().into(),
                w.delivery_id.clone().into(),
                w.wc_webhook_id.into(),
                w.source.clone().into(),
                w.subject_id.into(),
                headers_json(&w.headers).into(),
                Value::Bytes(Some(w.body.to_vec())),
                millis(w.received_at).into(),
                w.status.as_str().into(),
                w.error.clone().into(),
            ],
        );
    }
    insert
        .sql
        .push_str(" ON CONFLICT (dedupe_key) DO NOTHING RETURNING id, dedupe_key, status");
    insert
}

/// Postgres: one statement inserts the webhooks and, through a data-modifying CTE, the jobs of
/// the queued ones. A single statement is atomic, so this is one round trip and one commit instead
/// of BEGIN, two INSERTs and COMMIT. The job payload is built in SQL in exactly the JSON serde
/// writes for `JobKind::ProcessWebhook`.
async fn insert_postgres(
    db: &Database,
    batch: &[WriteRequest],
) -> Result<HashMap<String, i64>, DbErr> {
    let mut insert = insert_webhooks(DbBackend::Postgres, batch);
    insert.sql.push_str(", resource, topic, subject_id");
    let now = millis(chrono::Utc::now());
    insert.sql.insert_str(0, "WITH ins AS (");
    insert.sql.push_str(
        "), jobs AS (INSERT INTO jobs (kind, payload, status, attempts, due_at, created_at, updated_at) \
         SELECT 'process_webhook', '{\"kind\":\"process_webhook\",\"webhook_id\":' || id || '}', \
         'ready', 0, ",
    );
    insert.param(now.into());
    insert.sql.push_str(", ");
    insert.param(now.into());
    insert.sql.push_str(", ");
    insert.param(now.into());
    // The `webhook_received` events, as `received_event` writes them on SQLite.
    insert.sql.push_str(&format!(
        " FROM ins WHERE status = 'queued'), \
         ev AS (INSERT INTO events ({EVENT_COLUMNS}) SELECT "
    ));
    insert.param(now.into());
    insert.sql.push_str(
        ", 'webhook_received', id, NULL, NULL, \
         CASE WHEN resource = 'order' THEN subject_id END, NULL, \
         COALESCE(topic, resource) || ' ' || status FROM ins)",
    );
    // The notification wakes idle workers (`LISTEN lazona_jobs`) once the statement commits.
    insert
        .sql
        .push_str(" SELECT id, dedupe_key, (SELECT pg_notify('lazona_jobs', '')) IS NULL FROM ins");
    let mut inserted = HashMap::with_capacity(batch.len());
    for row in db.conn().query_all_raw(insert.build()).await? {
        inserted.insert(row.try_get_by_index(1)?, row.try_get_by_index(0)?);
    }
    Ok(inserted)
}

/// SQLite (no data-modifying CTEs): the webhooks, then their jobs, in one transaction.
async fn insert_in_transaction(
    db: &Database,
    batch: &[WriteRequest],
) -> Result<HashMap<String, i64>, DbErr> {
    let backend = db.backend();
    let insert = insert_webhooks(backend, batch).build();
    db.transact(move |txn| Box::pin(insert_webhooks_and_jobs(txn, backend, insert.clone())))
        .await
}

async fn insert_webhooks_and_jobs(
    txn: &sea_orm::DatabaseTransaction,
    backend: DbBackend,
    insert: Statement,
) -> Result<HashMap<String, i64>, DbErr> {
    let mut inserted: HashMap<String, i64> = HashMap::new();
    let mut jobs = Vec::new();
    for row in txn.query_all_raw(insert).await? {
        let id: i64 = row.try_get_by_index(0)?;
        let status: String = row.try_get_by_index(2)?;
        if status == WebhookStatus::Queued.as_str() {
            jobs.push(id);
        }
        inserted.insert(row.try_get_by_index(1)?, id);
    }
    if !jobs.is_empty() {
        let now = millis(chrono::Utc::now());
        let mut insert = SqlBuilder::new(
            backend,
            "INSERT INTO jobs (kind, payload, status, attempts, due_at, created_at, updated_at) VALUES "
                .into(),
        );
        for (i, id) in jobs.iter().enumerate() {
            let kind = JobKind::ProcessWebhook {
                webhook_id: WebhookId(*id),
            };
            let payload = serde_json::to_string(&kind).map_err(|e| DbErr::Custom(e.to_string()))?;
            insert.row(
                i,
                [
                    kind.name().into(),
                    payload.into(),
                    "ready".into(),
                    0i32.into(),
                    now.into(),
                    now.into(),
                    now.into(),
                ],
            );
        }
        txn.execute_raw(insert.build()).await?;
    }
    // The `webhook_received` events, as the Postgres statement writes them. The rows just
    // inserted have the ids from the lowest to the highest returned: SQLite has one writer, and
    // the write lock is held until the commit.
    if let (Some(first), Some(last)) = (inserted.values().min(), inserted.values().max()) {
        let mut events = SqlBuilder::new(
            backend,
            format!("INSERT INTO events ({EVENT_COLUMNS}) SELECT "),
        );
        events.param(millis(chrono::Utc::now()).into());
        events.sql.push_str(
            ", 'webhook_received', id, NULL, NULL, \
             CASE WHEN resource = 'order' THEN subject_id END, NULL, \
             COALESCE(topic, resource) || ' ' || status FROM webhooks WHERE id BETWEEN ",
        );
        events.param((*first).into());
        events.sql.push_str(" AND ");
        events.param((*last).into());
        txn.execute_raw(events.build()).await?;
    }
    Ok(inserted)
}

fn headers_json(headers: &[(String, String)]) -> String {
    serde_json::to_string(headers).unwrap_or_else(|_| "[]".to_owned())
}

fn unavailable(e: DbErr) -> InboxError {
    InboxError::Unavailable(boxed(e))
}

fn summary(m: ListRow) -> Result<WebhookSummary, InboxError> {
    Ok(WebhookSummary {
        id: WebhookId(m.id),
        resource: m.resource.parse().map_err(corrupt)?,
        topic: m.topic,
        delivery_id: m.delivery_id,
        subject_id: m.subject_id,
        status: m.status.parse().map_err(corrupt)?,
        received_at: from_millis(m.received_at),
        error: m.error,
    })
}

fn corrupt(reason: String) -> InboxError {
    InboxError::Unexpected(reason.into())
}

#[async_trait]
impl WebhookInbox for SqlInbox {
    async fn record(&self, webhook: NewWebhook) -> Result<Recorded, InboxError> {
        let (reply, answer) = oneshot::channel();
        let key = self.dedupe_key(&webhook);
        self.tx
            .send(WriteRequest {
                key,
                webhook,
                reply,
            })
            .await
            .map_err(|_| InboxError::ShuttingDown)?;
        answer.await.map_err(|_| InboxError::ShuttingDown)?
    }

    async fn get(&self, id: WebhookId) -> Result<Option<Webhook>, InboxError> {
        let (reply, answer) = oneshot::channel();
        self.gets
            .send(GetRequest { id: id.0, reply })
            .await
            .map_err(|_| InboxError::ShuttingDown)?;
        let Some(m) = answer.await.map_err(|_| InboxError::ShuttingDown)?? else {
            return Ok(None);
        };
        let headers: Vec<(String, String)> =
            serde_json::from_str(&m.headers).map_err(|e| corrupt(e.to_string()))?;
        let resource: Resource = m.resource.parse().map_err(corrupt)?;
        let status: WebhookStatus = m.status.parse().map_err(corrupt)?;
        let delivery_id = m.delivery_id.clone();
        Ok(Some(Webhook {
            id,
            data: NewWebhook {
                resource,
                topic: m.topic,
                event: m.event,
                delivery_id,
                wc_webhook_id: m.wc_webhook_id,
                source: m.source,
                subject_id: m.subject_id,
                headers,
                body: Bytes::from(m.body),
                received_at: from_millis(m.received_at),
                status,
                error: if matches!(status, WebhookStatus::Rejected | WebhookStatus::Ignored) {
                    m.error.clone()
                } else {
                    None
                },
            },
            last_error: m.error,
            processed_at: m.processed_at.map(from_millis),
        }))
    }

    async fn list(&self, f: &WebhookFilter) -> Result<Vec<WebhookSummary>, InboxError> {
        use webhook::Column as C;
        let mut q = webhook::Entity::find();
        if let Some(r) = f.resource {
            q = q.filter(C::Resource.eq(r.as_str()));
        }
        if let Some(t) = &f.topic {
            q = q.filter(C::Topic.eq(t.as_str()));
        }
        if let Some(s) = f.status {
            q = q.filter(C::Status.eq(s.as_str()));
        }
        if let Some(id) = f.subject_id {
            q = q.filter(C::SubjectId.eq(id));
        }
        if let Some(d) = &f.delivery_id {
            q = q.filter(C::DeliveryId.eq(d.as_str()));
        }
        if let Some(t) = f.since {
            q = q.filter(C::ReceivedAt.gte(millis(t)));
        }
        if let Some(t) = f.until {
            q = q.filter(C::ReceivedAt.lt(millis(t)));
        }
        if let Some(id) = f.before_id {
            q = q.filter(C::Id.lt(id.0));
        }
        let limit = if f.limit == 0 { 100 } else { f.limit };
        let rows = q
            .select_only()
            .columns([
                C::Id,
                C::Resource,
                C::Topic,
                C::DeliveryId,
                C::SubjectId,
                C::ReceivedAt,
                C::Status,
                C::Error,
            ])
            .order_by_desc(C::Id)
            .limit(limit)
            .into_model::<ListRow>()
            .all(self.db.reader())
            .await
            .map_err(unavailable)?;
        rows.into_iter().map(summary).collect()
    }

    async fn transition(
        &self,
        id: WebhookId,
        from: WebhookStatus,
        to: WebhookStatus,
        error: Option<String>,
    ) -> Result<bool, InboxError> {
        let (reply, answer) = oneshot::channel();
        self.transitions
            .send(TransitionRequest {
                id,
                from,
                to,
                error,
                reply,
            })
            .await
            .map_err(|_| InboxError::ShuttingDown)?;
        answer.await.map_err(|_| InboxError::ShuttingDown)?
    }

    async fn history(&self, id: WebhookId) -> Result<Vec<WebhookEvent>, InboxError> {
        let mut select = SqlBuilder::new(
            self.db.backend(),
            "SELECT at, status, detail FROM webhook_events WHERE webhook_id = ".into(),
        );
        select.param(id.0.into());
        select.sql.push_str(" ORDER BY id");
        let rows = self
            .db
            .reader()
            .query_all_raw(select.build())
            .await
            .map_err(unavailable)?;
        rows.into_iter()
            .map(|row| {
                let at: i64 = row.try_get_by_index(0).map_err(unavailable)?;
                let status: String = row.try_get_by_index(1).map_err(unavailable)?;
                Ok(WebhookEvent {
                    at: from_millis(at),
                    status: status.parse().map_err(corrupt)?,
                    detail: row.try_get_by_index(2).map_err(unavailable)?,
                })
            })
            .collect()
    }

    async fn count(&self) -> Result<u64, InboxError> {
        webhook::Entity::find()
            .count(self.db.reader())
            .await
            .map_err(unavailable)
    }

    async fn ping(&self) -> Result<(), InboxError> {
        self.db
            .conn()
            .execute_unprepared("SELECT 1")
            .await
            .map(|_| ())
            .map_err(unavailable)
    }
}

/// A listing row: the columns a summary shows.
#[derive(Debug, sea_orm::FromQueryResult)]
struct ListRow {
    id: i64,
    resource: String,
    topic: Option<String>,
    delivery_id: Option<String>,
    subject_id: Option<i64>,
    received_at: i64,
    status: String,
    error: Option<String>,
}
