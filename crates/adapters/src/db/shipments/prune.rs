//! Clearing labels and carrier requests (`domain::model::retention`): the retention's batches
//! and an erasure's shipments. The shipments and their past bookings are cleared in one short
//! transaction (on SQLite, the committer's, shared with the writes waiting).

use super::{SqlShipmentStore, unavailable};
use crate::db::millis;
use crate::db::sql::SqlBuilder;
use chrono::{DateTime, Utc};
use domain::error::StoreError;
use domain::model::PruneReason;
use sea_orm::{ConnectionTrait as _, DatabaseTransaction, DbBackend, DbErr, Value};

/// What selects the shipments to clear.
#[derive(Clone)]
enum Which {
    /// Past their retention: delivered (last changed) before the first, or never delivered and
    /// created before the second; at most `limit`.
    Expired(Option<i64>, Option<i64>, usize),
    /// These, whatever their age.
    Ids(Vec<i64>),
}

/// `UPDATE shipments SET` no label, no request, when and why, `WHERE` what follows.
fn clearing(backend: DbBackend, now: i64, why: PruneReason) -> SqlBuilder {
    let mut b = SqlBuilder::new(
        backend,
        "UPDATE shipments SET label_pdf = NULL, request = '', label_pruned_at = ".into(),
    );
    b.param(now.into());
    b.sql.push_str(", label_pruned_why = ");
    b.param(why.as_str().into());
    b
}

async fn returned_ids(txn: &DatabaseTransaction, b: SqlBuilder) -> Result<Vec<i64>, DbErr> {
    txn.query_all_raw(b.build())
        .await?
        .iter()
        .map(|r| r.try_get_by_index::<i64>(0))
        .collect()
}

/// Clears what `which` selects, and their past bookings' labels and requests; the ids cleared.
async fn clear_in(
    txn: &DatabaseTransaction,
    backend: DbBackend,
    which: &Which,
    why: PruneReason,
) -> Result<Vec<i64>, DbErr> {
    let now = millis(Utc::now());
    let mut cleared = Vec::new();
    match which {
        Which::Expired(delivered_before, booked_before, limit) => {
            for (before, delivered) in [(delivered_before, true), (booked_before, false)] {
                let Some(before) = before else { continue };
                let left = limit.saturating_sub(cleared.len());
                if left == 0 {
                    break;
                }
                let (status, column) = if delivered {
                    ("status = 'DELIVERED'", "updated_at")
                } else {
                    (
                        "status <> 'DELIVERED' AND status <> 'BOOKING'",
                        "created_at",
                    )
                };
                let mut b = clearing(backend, now, why);
                b.sql.push_str(&format!(
                    " WHERE id IN (SELECT id FROM shipments WHERE label_pruned_at IS NULL \
                     AND {status} AND {column} < "
                ));
                b.param((*before).into());
                b.sql
                    .push_str(&format!(" ORDER BY {column} LIMIT {left}) RETURNING id"));
                cleared.extend(returned_ids(txn, b).await?);
            }
        }
        Which::Ids(ids) => {
            for chunk in ids.chunks(500) {
                let mut b = clearing(backend, now, why);
                b.sql.push_str(
                    " WHERE (label_pruned_at IS NULL OR label_pdf IS NOT NULL OR request <> '') \
                     AND id IN ",
                );
                b.row(0, chunk.iter().map(|id| Value::from(*id)));
                b.sql.push_str(" RETURNING id");
                cleared.extend(returned_ids(txn, b).await?);
            }
        }
    }
    let pasts: &[i64] = match which {
        Which::Ids(ids) => ids,
        Which::Expired(..) => &cleared,
    };
    for chunk in pasts.chunks(500) {
        let mut b = SqlBuilder::new(
            backend,
            "UPDATE shipment_bookings SET label_pdf = NULL, request = '' WHERE shipment_id IN "
                .into(),
        );
        b.row(0, chunk.iter().map(|id| Value::from(*id)));
        txn.execute_raw(b.build()).await?;
    }
    Ok(cleared)
}

impl SqlShipmentStore {
    async fn clear(&self, which: Which, why: PruneReason) -> Result<u64, StoreError> {
        let backend = self.db.backend();
        let cleared = self
            .db
            .transact(move |txn| {
                let which = which.clone();
                Box::pin(async move { clear_in(txn, backend, &which, why).await })
            })
            .await
            .map_err(unavailable)?;
        Ok(cleared.len() as u64)
    }

    pub(super) async fn prune_expired(
        &self,
        delivered_before: Option<DateTime<Utc>>,
        booked_before: Option<DateTime<Utc>>,
        limit: usize,
    ) -> Result<u64, StoreError> {
        let which = Which::Expired(
            delivered_before.map(millis),
            booked_before.map(millis),
            limit.max(1),
        );
        let started = std::time::Instant::now();
        let cleared = self.clear(which, PruneReason::Retention).await;
        crate::db::pace(started).await;
        cleared
    }

    pub(super) async fn clear_ids(&self, ids: &[i64], why: PruneReason) -> Result<u64, StoreError> {
        self.clear(Which::Ids(ids.to_vec()), why).await
    }
}
