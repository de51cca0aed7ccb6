//! The group-commit writer of new webhooks: each writer task takes every webhook waiting (up to
//! a batch), inserts them and the jobs of the new queued ones in one transaction (one statement
//! on Postgres), commits, and only then answers each caller.

use super::WriteRequest;
use crate::db::events::EVENT_COLUMNS;
use crate::db::sql::SqlBuilder;
use crate::db::{Database, millis};
use domain::error::InboxError;
use domain::model::{JobKind, RecordOutcome, Recorded, WebhookId, WebhookStatus};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement, Value};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{Mutex, Notify, mpsc};

/// A writer task: takes the webhooks waiting (up to `max_batch`), writes them and their jobs in
/// one batch, then answers each caller; it ends when the inbox is dropped.
pub(super) async fn writer(
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
                    crate::db::events::notify_written();
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

const INSERT_COLUMNS: &str = "dedupe_key, resource, topic, event, delivery_id, wc_webhook_id, \
     source, subject_id, subject_modified, headers, body, received_at, status, error";

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
                w.subject_modified.map(millis).into(),
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
