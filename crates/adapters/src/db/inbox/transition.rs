//! The transition writer: the webhooks' compare-and-set status changes, group-committed with
//! their history rows (moves alike share one `UPDATE`).

use super::TransitionRequest;
use crate::db::sql::SqlBuilder;
use crate::db::{Database, millis};
use domain::error::InboxError;
use domain::model::WebhookStatus;
use sea_orm::{ConnectionTrait, DbBackend, DbErr};
use std::sync::Arc;
use tokio::sync::mpsc;

/// The transition writer task: applies the status changes waiting (up to `max_batch`) in one
/// batch, then answers each caller; it ends when the inbox is dropped.
pub(super) async fn transition_writer(
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
