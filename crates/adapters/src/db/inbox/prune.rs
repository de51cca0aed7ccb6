//! Clearing webhook bodies: the retention's batches, an erasure's search and its clearing
//! (`domain::model::retention`). Each clearing is one statement, committed with the writes
//! waiting (SQLite's committer) or on its own (Postgres): a batch holds the writer for as long
//! as it takes to rewrite `retention.batch` rows, a few milliseconds.

use super::{SqlInbox, stored, unavailable};
use crate::db::entity::webhook;
use crate::db::sql::SqlBuilder;
use crate::db::{Database, millis};
use chrono::{DateTime, Utc};
use domain::error::InboxError;
use domain::model::{PruneReason, Webhook, WebhookId};
use sea_orm::{ConnectionTrait as _, DbBackend, FromQueryResult as _};

/// `UPDATE webhooks SET` the cleared body and headers, when and why, `WHERE` what follows.
fn clearing(db: &Database, why: PruneReason) -> SqlBuilder {
    let mut b = SqlBuilder::new(db.backend(), "UPDATE webhooks SET body = ".into());
    b.param(Vec::<u8>::new().into());
    b.sql.push_str(", headers = '[]', pruned_at = ");
    b.param(millis(Utc::now()).into());
    b.sql.push_str(", pruned_why = ");
    b.param(why.as_str().into());
    b.sql.push_str(" WHERE pruned_at IS NULL AND id IN ");
    b
}

/// `needle` as a `LIKE` pattern matching it anywhere, its wildcards escaped (with `!`).
pub(super) fn contains_pattern(needle: &str) -> String {
    let mut p = String::with_capacity(needle.len() + 2);
    p.push('%');
    for c in needle.chars() {
        if matches!(c, '%' | '_' | '!') {
            p.push('!');
        }
        p.push(c);
    }
    p.push('%');
    p
}

impl SqlInbox {
    pub(super) async fn prune_expired(
        &self,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<u64, InboxError> {
        let mut b = clearing(&self.db, PruneReason::Retention);
        b.sql
            .push_str("(SELECT id FROM webhooks WHERE pruned_at IS NULL AND received_at < ");
        b.param(millis(before).into());
        b.sql.push_str(&format!(
            " ORDER BY received_at LIMIT {}) RETURNING id",
            limit.max(1)
        ));
        let started = std::time::Instant::now();
        let rows = self.db.write(b.build()).await.map_err(unavailable)?;
        crate::db::pace(started).await;
        Ok(rows.len() as u64)
    }

    pub(super) async fn clear(
        &self,
        ids: &[WebhookId],
        why: PruneReason,
    ) -> Result<u64, InboxError> {
        let mut n = 0;
        for chunk in ids.chunks(500) {
            let mut b = clearing(&self.db, why);
            b.row(0, chunk.iter().map(|id| sea_orm::Value::from(id.0)));
            b.sql.push_str(" RETURNING id");
            n += self.db.write(b.build()).await.map_err(unavailable)?.len() as u64;
        }
        Ok(n)
    }

    pub(super) async fn search(
        &self,
        needle: &str,
        after: WebhookId,
        limit: usize,
    ) -> Result<Vec<Webhook>, InboxError> {
        let pattern = contains_pattern(&needle.to_lowercase());
        // SQLite's LIKE ignores ASCII case; Postgres's bytea is searched through its escaped
        // text (ASCII as is, other bytes as octal escapes), which reads any body, UTF-8 or not.
        let matches = match self.db.backend() {
            DbBackend::Postgres => "encode(body, 'escape') ILIKE ",
            _ => "CAST(body AS TEXT) LIKE ",
        };
        let mut b = SqlBuilder::new(
            self.db.backend(),
            "SELECT * FROM webhooks WHERE pruned_at IS NULL AND id > ".into(),
        );
        b.param(after.0.into());
        b.sql.push_str(" AND ");
        b.sql.push_str(matches);
        b.param(pattern.into());
        b.sql
            .push_str(&format!(" ESCAPE '!' ORDER BY id LIMIT {}", limit.max(1)));
        let rows = self
            .db
            .reader()
            .query_all_raw(b.build())
            .await
            .map_err(unavailable)?
            .iter()
            .map(|row| webhook::Model::from_query_result(row, ""))
            .collect::<Result<Vec<_>, _>>()
            .map_err(unavailable)?;
        rows.into_iter().map(stored).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::contains_pattern;

    #[test]
    fn wildcards_in_the_needle_are_matched_as_themselves() {
        assert_eq!(contains_pattern("a_b%c!@d.e"), "%a!_b!%c!!@d.e%");
    }
}
