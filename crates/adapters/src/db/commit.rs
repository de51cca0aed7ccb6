//! One commit for every write waiting, on SQLite.
//!
//! SQLite has one writer and `synchronous=FULL` makes every commit an `fsync` (about 1 ms on this
//! project's machines, several under load). The process's writers (the inbox, the status
//! changes, the shipment store, the queue, the event log) each group their own requests, but
//! each group was still its own commit. Here they hand their transaction's work to one task,
//! which runs every piece of work waiting in **one transaction**, each in a savepoint of its own
//! (a piece that fails is rolled back alone), commits once, and then answers each caller. Nothing
//! is answered before the commit, so every write is as durable as before.
//!
//! Postgres has no committer: its writers run on their own connections, and its commits are
//! grouped by the server.

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr, QueryResult, Statement,
    TransactionTrait,
};
use std::future::Future;
use std::pin::Pin;
use tokio::sync::{mpsc, oneshot};

/// The future of a piece of work in a transaction.
pub(crate) type TxFuture<'t, T> = Pin<Box<dyn Future<Output = Result<T, DbErr>> + Send + 't>>;

/// Answers a caller once the commit is known.
type Finisher = Box<dyn FnOnce(Result<(), String>) + Send>;

/// A caller's work, type-erased: whether it succeeded, and its finisher.
type Work = Box<
    dyn for<'t> FnOnce(
            &'t DatabaseTransaction,
        ) -> Pin<Box<dyn Future<Output = (bool, Finisher)> + Send + 't>>
        + Send,
>;

/// Most pieces of work in one transaction.
const MAX_BATCH: usize = 256;

/// The handle to the committer task, which stops when the last handle is dropped.
#[derive(Debug, Clone)]
pub(crate) struct Committer {
    tx: mpsc::Sender<Work>,
}

impl Committer {
    /// Starts the committer on the current tokio runtime.
    pub(crate) fn start(conn: DatabaseConnection) -> Self {
        let (tx, rx) = mpsc::channel(MAX_BATCH * 4);
        tokio::spawn(commit_loop(conn, rx));
        Committer { tx }
    }

    /// Runs `work` in the next shared transaction; its result once that is committed.
    pub(crate) async fn run<T, F>(&self, work: F) -> Result<T, DbErr>
    where
        T: Send + 'static,
        F: for<'t> FnOnce(&'t DatabaseTransaction) -> TxFuture<'t, T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel::<Result<T, DbErr>>();
        let erased: Work = Box::new(move |txn| {
            Box::pin(async move {
                let result = work(txn).await;
                let ok = result.is_ok();
                let finish: Finisher = Box::new(move |commit| {
                    let _ = reply.send(match commit {
                        Ok(()) => result,
                        Err(e) => Err(DbErr::Custom(e)),
                    });
                });
                (ok, finish)
            })
        });
        self.tx
            .send(erased)
            .await
            .map_err(|_| DbErr::Custom("the database committer has stopped".into()))?;
        answer
            .await
            .map_err(|_| DbErr::Custom("the write was not committed".into()))?
    }
}

async fn commit_loop(conn: DatabaseConnection, mut rx: mpsc::Receiver<Work>) {
    let mut batch: Vec<Work> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let mut finishers = Vec::with_capacity(batch.len());
        let committed = run_batch(&conn, &mut batch, &mut finishers).await;
        if let Err(e) = &committed {
            tracing::error!(error = %e, writes = finishers.len(), "shared write transaction not committed");
        }
        let outcome = committed.map_err(|e| e.to_string());
        for finish in finishers {
            finish(outcome.clone());
        }
        // Work never started (the transaction failed first) is dropped: its caller is told.
        batch.clear();
    }
}

async fn run_batch(
    conn: &DatabaseConnection,
    batch: &mut Vec<Work>,
    finishers: &mut Vec<Finisher>,
) -> Result<(), DbErr> {
    let txn = conn.begin().await?;
    for work in batch.drain(..) {
        let savepoint = txn.begin().await?;
        let (ok, finish) = work(&savepoint).await;
        finishers.push(finish);
        if ok {
            savepoint.commit().await?;
        } else {
            savepoint.rollback().await?;
        }
    }
    txn.commit().await
}

/// Runs one statement through `committer` when there is one, else on `conn` (its own commit);
/// the rows it returned.
pub(crate) async fn write_statement(
    committer: Option<&Committer>,
    conn: &DatabaseConnection,
    stmt: Statement,
) -> Result<Vec<QueryResult>, DbErr> {
    match committer {
        Some(c) => {
            c.run(move |txn| Box::pin(async move { txn.query_all_raw(stmt).await }))
                .await
        }
        None => conn.query_all_raw(stmt).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::DbBackend;

    fn stmt(sql: &str) -> Statement {
        Statement::from_string(DbBackend::Sqlite, sql.to_owned())
    }

    /// Writes waiting together share a transaction, but one that fails is rolled back alone: its
    /// caller gets its error, the others' rows are committed.
    #[tokio::test]
    async fn a_failing_write_is_rolled_back_alone_and_the_others_are_committed() {
        let conn = sea_orm::Database::connect("sqlite::memory:")
            .await
            .expect("sqlite");
        conn.execute_unprepared("CREATE TABLE t (x INTEGER NOT NULL)")
            .await
            .expect("table");
        let committer = Committer::start(conn.clone());
        let mut set = tokio::task::JoinSet::new();
        for i in 0..20_i64 {
            let c = committer.clone();
            set.spawn(async move {
                let r = c
                    .run(move |txn| {
                        Box::pin(async move {
                            txn.execute_unprepared(&format!("INSERT INTO t VALUES ({i})"))
                                .await?;
                            if i == 7 {
                                // Its row is written, then it fails: the row must go.
                                txn.execute_unprepared("INSERT INTO t VALUES (NULL)")
                                    .await?;
                            }
                            Ok(i)
                        })
                    })
                    .await;
                (i, r)
            });
        }
        for (i, r) in set.join_all().await {
            match r {
                Ok(v) => assert_eq!(v, i),
                Err(e) => assert_eq!(i, 7, "only 7 fails: {e}"),
            }
        }
        let rows = write_statement(None, &conn, stmt("SELECT x FROM t ORDER BY x"))
            .await
            .expect("select");
        let xs: Vec<i64> = rows
            .iter()
            .map(|r| r.try_get_by_index(0).expect("x"))
            .collect();
        assert_eq!(xs, (0..20).filter(|i| *i != 7).collect::<Vec<_>>());
    }
}
