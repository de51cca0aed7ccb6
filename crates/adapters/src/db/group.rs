//! Group commit for small writes from many tasks.
//!
//! A caller hands its statements to [`GroupWriter::run`] and waits. A writer task takes every
//! request waiting (up to a batch size), runs them all in **one transaction**, commits, and only
//! then answers each caller with the rows its statements returned. Under load one commit (one
//! `fsync` on SQLite, one WAL flush on Postgres) serves many jobs' writes instead of one each;
//! alone, a request runs as it would have without the writer.
//!
//! A batch that fails is run again request by request, each in its own transaction, so that one
//! bad request fails alone and its neighbours are written.

use super::Database;
use sea_orm::TransactionTrait;
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, QueryResult, Statement};
use std::sync::Arc;
use tokio::sync::{Mutex, mpsc, oneshot};

/// The rows each statement of a request returned, in order.
pub(crate) type Rows = Vec<Vec<QueryResult>>;

struct Request {
    statements: Vec<Statement>,
    reply: oneshot::Sender<Result<Rows, DbErr>>,
}

/// The handle to the writer tasks; they stop when the last handle is dropped, after writing what
/// they were given.
#[derive(Debug, Clone)]
pub(crate) struct GroupWriter {
    tx: mpsc::Sender<Request>,
}

impl GroupWriter {
    /// Starts the writers on the current tokio runtime: one on SQLite (it has a single writer),
    /// a few on Postgres, each on its own pooled connection while it writes.
    pub(crate) fn start(db: Database) -> Self {
        let (writers, max_batch) = match db.backend() {
            DbBackend::Sqlite => (1, 64),
            _ => (4, 32),
        };
        let (tx, rx) = mpsc::channel::<Request>(writers * max_batch * 4);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..writers {
            tokio::spawn(writer(db.clone(), rx.clone(), max_batch));
        }
        GroupWriter { tx }
    }

    /// Runs `statements` (in one transaction with other callers' statements) and returns the rows
    /// each returned, once committed.
    ///
    /// # Errors
    /// The database's error when the request could not be committed.
    pub(crate) async fn run(&self, statements: Vec<Statement>) -> Result<Rows, DbErr> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Request { statements, reply })
            .await
            .map_err(|_| DbErr::Custom("the database writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| DbErr::Custom("the database writer has stopped".into()))?
    }
}

async fn writer(db: Database, rx: Arc<Mutex<mpsc::Receiver<Request>>>, max_batch: usize) {
    let mut batch: Vec<Request> = Vec::with_capacity(max_batch);
    loop {
        {
            let mut rx = rx.lock().await;
            match rx.recv().await {
                Some(first) => batch.push(first),
                None => return,
            }
            while batch.len() < max_batch {
                match rx.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
        }
        if batch.len() > 1 {
            match run_batch(&db, &batch).await {
                Ok(rows) => {
                    for (req, rows) in batch.drain(..).zip(rows) {
                        let _ = req.reply.send(Ok(rows));
                    }
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, requests = batch.len(), "write batch failed; writing its requests one by one");
                }
            }
        }
        for req in batch.drain(..) {
            let rows = run_alone(&db, &req.statements).await;
            let _ = req.reply.send(rows);
        }
    }
}

async fn run_batch(db: &Database, batch: &[Request]) -> Result<Vec<Rows>, DbErr> {
    let txn = db.conn().begin().await?;
    let mut out = Vec::with_capacity(batch.len());
    for req in batch {
        out.push(run_all(&txn, &req.statements).await?);
    }
    txn.commit().await?;
    Ok(out)
}

async fn run_all(txn: &DatabaseTransaction, statements: &[Statement]) -> Result<Rows, DbErr> {
    let mut rows = Vec::with_capacity(statements.len());
    for stmt in statements {
        rows.push(txn.query_all_raw(stmt.clone()).await?);
    }
    Ok(rows)
}

async fn run_alone(db: &Database, statements: &[Statement]) -> Result<Rows, DbErr> {
    if let [stmt] = statements {
        return Ok(vec![db.conn().query_all_raw(stmt.clone()).await?]);
    }
    let txn = db.conn().begin().await?;
    let rows = run_all(&txn, statements).await?;
    txn.commit().await?;
    Ok(rows)
}
