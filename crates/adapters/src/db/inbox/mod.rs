//! The webhook inbox on SQL, with a group-commit writer.
//!
//! [`SqlInbox::record`] hands its webhook to a writer task and waits. Writer tasks take every
//! webhook waiting (up to a batch size), insert them and their jobs in **one transaction**, commit,
//! and only then answer each caller. One commit (one fsync) serves a whole batch, which is what
//! makes durable acknowledgement cheap under load. On Postgres several writers run on their own
//! connections with small batches; SQLite has a single writer.
//!
//! The writer of new webhooks is in `write.rs`, the one of status changes in `transition.rs`;
//! this file holds the inbox, its reads and the batched reader of single webhooks.

mod prune;
mod transition;
mod write;

use super::entity::webhook;
use super::sql::SqlBuilder;
use super::{Database, boxed, from_millis, millis};
use crate::config::InboxConfig;
use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use domain::error::InboxError;
use domain::model::{
    NewWebhook, PruneReason, Pruned, Recorded, Resource, Webhook, WebhookEvent, WebhookFilter,
    WebhookId, WebhookStatus, WebhookSummary,
};
use domain::ports::WebhookInbox;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect,
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
            tokio::spawn(write::writer(
                db.clone(),
                rx.clone(),
                max_batch,
                jobs_ready.clone(),
            ));
        }
        // Status changes (the workers' compare-and-set moves) are group-committed too, by their
        // own writer: on SQLite one fsync then serves a whole batch of finished jobs.
        let (transitions, transitions_rx) = mpsc::channel(max_batch * 4);
        tokio::spawn(transition::transition_writer(
            db.clone(),
            transitions_rx,
            max_batch,
        ));
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

fn unavailable(e: DbErr) -> InboxError {
    InboxError::Unavailable(boxed(e))
}

/// When and why a webhook's body was cleared, from its two columns.
fn pruned(at: Option<i64>, why: Option<&str>) -> Result<Option<Pruned>, InboxError> {
    match (at, why) {
        (Some(at), Some(why)) => Ok(Some(Pruned {
            at: from_millis(at),
            why: why.parse().map_err(corrupt)?,
        })),
        _ => Ok(None),
    }
}

fn summary(m: ListRow) -> Result<WebhookSummary, InboxError> {
    Ok(WebhookSummary {
        pruned: pruned(m.pruned_at, m.pruned_why.as_deref())?,
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
        Ok(Some(stored(m)?))
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
                C::PrunedAt,
                C::PrunedWhy,
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

    async fn order_versions(
        &self,
        order_ids: &[i64],
    ) -> Result<HashMap<i64, Option<DateTime<Utc>>>, InboxError> {
        let mut versions = HashMap::with_capacity(order_ids.len());
        // A few hundred ids per statement: under every backend's parameter limit.
        for ids in order_ids.chunks(500) {
            let mut b = SqlBuilder::new(
                self.db.backend(),
                "SELECT subject_id, MAX(subject_modified) FROM webhooks \
                 WHERE resource = 'order' AND subject_id IN "
                    .into(),
            );
            b.row(0, ids.iter().map(|id| sea_orm::Value::from(*id)));
            b.sql.push_str(" GROUP BY subject_id");
            for row in self
                .db
                .reader()
                .query_all_raw(b.build())
                .await
                .map_err(unavailable)?
            {
                let id: i64 = row
                    .try_get_by_index(0)
                    .map_err(|e| corrupt(e.to_string()))?;
                let modified: Option<i64> = row
                    .try_get_by_index(1)
                    .map_err(|e| corrupt(e.to_string()))?;
                versions.insert(id, modified.map(from_millis));
            }
        }
        Ok(versions)
    }

    async fn ping(&self) -> Result<(), InboxError> {
        self.db
            .conn()
            .execute_unprepared("SELECT 1")
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    async fn prune_bodies(&self, before: DateTime<Utc>, limit: usize) -> Result<u64, InboxError> {
        self.prune_expired(before, limit).await
    }

    async fn mentioning(
        &self,
        needle: &str,
        after: WebhookId,
        limit: usize,
    ) -> Result<Vec<Webhook>, InboxError> {
        self.search(needle, after, limit).await
    }

    async fn clear_bodies(&self, ids: &[WebhookId], why: PruneReason) -> Result<u64, InboxError> {
        self.clear(ids, why).await
    }
}

/// A stored webhook from its row.
fn stored(m: webhook::Model) -> Result<Webhook, InboxError> {
    let id = WebhookId(m.id);
    let headers: Vec<(String, String)> =
        serde_json::from_str(&m.headers).map_err(|e| corrupt(e.to_string()))?;
    let resource: Resource = m.resource.parse().map_err(corrupt)?;
    let status: WebhookStatus = m.status.parse().map_err(corrupt)?;
    let delivery_id = m.delivery_id.clone();
    Ok(Webhook {
        id,
        data: NewWebhook {
            resource,
            topic: m.topic,
            event: m.event,
            delivery_id,
            wc_webhook_id: m.wc_webhook_id,
            source: m.source,
            subject_id: m.subject_id,
            subject_modified: m.subject_modified.map(from_millis),
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
        pruned: pruned(m.pruned_at, m.pruned_why.as_deref())?,
    })
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
    pruned_at: Option<i64>,
    pruned_why: Option<String>,
}
