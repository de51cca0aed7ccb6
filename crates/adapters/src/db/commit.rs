//! One commit for every write waiting, on SQLite.
//!
//! SQLite has one writer and `synchronous=FULL` makes every commit an `fsync` (about 1 ms on this
//! project's machines, several under load). The process's writers (the inbox, the status
//! changes, the shipment store, the queue, the event log) each group their own requests, but
//! each group was still its own commit. Here they hand their transaction's work to one task,
//! which runs every piece of work waiting in **one transaction**, commits once, and then answers
//! each caller. Nothing is answered before the commit, so every write is as durable as before.
//!
//! When a piece of work fails, the whole transaction is rolled back and every piece is run again
//! alone, in a transaction of its own: the failing one gets its error, the others are written.
//! A piece of work is therefore a function that can run twice (`Fn`), writing only through the
//! transaction it is given.
//!
//! Postgres has no committer: its writers run on their own connections, and its commits are
//! grouped by the server.

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr, QueryResult, Statement,
    TransactionTrait,
};
use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use tokio::sync::{mpsc, oneshot};

/// The future of a piece of work in a transaction.
pub(crate) type TxFuture<'t, T> = Pin<Box<dyn Future<Output = Result<T, DbErr>> + Send + 't>>;

type Output = Box<dyn Any + Send>;

/// A piece of work, type-erased.
type Run = Box<dyn for<'t> Fn(&'t DatabaseTransaction) -> TxFuture<'t, Output> + Send + Sync>;

/// A caller's work, type-erased: what it runs, and how its result reaches the caller.
struct Work {
    run: Run,
    deliver: Box<dyn FnOnce(Result<Output, DbErr>) + Send + Sync>,
}

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
        F: for<'t> Fn(&'t DatabaseTransaction) -> TxFuture<'t, T> + Send + Sync + 'static,
    {
        let (reply, answer) = oneshot::channel::<Result<T, DbErr>>();
        let run: Run = Box::new(move |txn| {
            let fut = work(txn);
            Box::pin(async move { fut.await.map(|t| Box::new(t) as Output) })
        });
        let deliver = Box::new(move |result: Result<Output, DbErr>| {
            let typed = result.and_then(|out| {
                out.downcast::<T>()
                    .map(|t| *t)
                    .map_err(|_| DbErr::Custom("a write's result has the wrong type".into()))
            });
            let _ = reply.send(typed);
        });
        self.tx
            .send(Work { run, deliver })
            .await
            .map_err(|_| DbErr::Custom("the database committer has stopped".into()))?;
        answer
            .await
            .map_err(|_| DbErr::Custom("the write was not committed".into()))?
    }
}

async fn commit_loop(conn: DatabaseConnection, mut rx: mpsc::Receiver<Work>) {
    let mut batch: Vec<Work> = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        match run_together(&conn, &batch).await {
            Ok(outputs) => {
                for (work, out) in batch.drain(..).zip(outputs) {
                    (work.deliver)(Ok(out));
                }
            }
            Err(e) if batch.len() == 1 => {
                if let Some(work) = batch.pop() {
                    (work.deliver)(Err(e));
                }
            }
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    writes = batch.len(),
                    "shared write transaction failed; writing each alone"
                );
                for work in batch.drain(..) {
                    let out = run_alone(&conn, &work).await;
                    (work.deliver)(out);
                }
            }
        }
    }
}

/// Runs every piece of work in one transaction and commits it.
async fn run_together(conn: &DatabaseConnection, batch: &[Work]) -> Result<Vec<Output>, DbErr> {
    let txn = conn.begin().await?;
    let mut outputs = Vec::with_capacity(batch.len());
    for work in batch {
        match (work.run)(&txn).await {
            Ok(out) => outputs.push(out),
            Err(e) => {
                let _ = txn.rollback().await;
                return Err(e);
            }
        }
    }
    txn.commit().await?;
    Ok(outputs)
}

/// Runs one piece of work in a transaction of its own.
async fn run_alone(conn: &DatabaseConnection, work: &Work) -> Result<Output, DbErr> {
    let txn = conn.begin().await?;
    match (work.run)(&txn).await {
        Ok(out) => {
            txn.commit().await?;
            Ok(out)
        }
        Err(e) => {
            let _ = txn.rollback().await;
            Err(e)
        }
    }
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
            c.run(move |txn| {
                let stmt = stmt.clone();
                Box::pin(async move { txn.query_all_raw(stmt).await })
            })
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

    /// Writes waiting together share a transaction, but one that fails is rolled back: its caller
    /// gets its error, the others' rows are committed (written again alone).
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
        let c = committer.clone();
        let conn2 = conn.clone();
        set.spawn(async move {
            let r = write_statement(Some(&c), &conn2, stmt("INSERT INTO t VALUES (NULL)")).await;
            (-1, r.map(|_| -1))
        });
        for (i, r) in set.join_all().await {
            match r {
                Ok(v) => assert_eq!(v, i),
                Err(e) => assert!(i == 7 || i == -1, "only 7 and the NULL fail: {e}"),
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
