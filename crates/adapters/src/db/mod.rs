//! SQL storage through sea-orm, on SQLite (the embedded default) or Postgres: the webhook inbox
//! ([`SqlInbox`]), the jobs table and its queue ([`SqlJobQueue`]), and the migrations
//! ([`migration::Migrator`]), the shipments ([`SqlShipmentStore`]) and the API tokens
//! ([`SqlTokenStore`]).

mod alerts;
mod audit;
mod commit;
pub mod entity;
mod events;
mod group;
mod import;
mod inbox;
mod mail_events;
pub mod migration;
mod queue;
mod shipments;
mod sql;
mod state;
mod tokens;

pub use alerts::SqlAlertStore;
pub use audit::SqlAuditLog;
pub use events::SqlEventLog;
pub use import::{ImportError, ImportReport, import_django_shipments};
pub use inbox::SqlInbox;
pub use mail_events::SqlMailEventStore;
pub use queue::{NOTIFY_CHANNEL, SqlJobQueue};
pub use shipments::SqlShipmentStore;
pub use state::SqlStateStore;
pub use tokens::SqlTokenStore;

use crate::config::DatabaseConfig;
use crate::redact::{self, redact};
use domain::error::BoxError;
use sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait as _, DatabaseConnection, DbBackend, DbErr,
    TransactionTrait as _,
};
use sea_orm_migration::MigratorTrait;
use secrecy::ExposeSecret;
use std::str::FromStr as _;
use std::time::Duration;

/// The advisory lock key that serialises migrations across processes ("lazona" in ASCII).
const MIGRATION_LOCK: i64 = 0x6c61_7a6f_6e61;

/// A connection pool to the connector's database.
#[derive(Debug, Clone)]
pub struct Database {
    conn: DatabaseConnection,
    /// Read-only work on a SQLite file: connections of their own, so that reads neither wait for
    /// the single writing connection nor hold it (WAL lets them run beside the writer).
    readers: Option<DatabaseConnection>,
    /// On SQLite, the task that commits every waiting write in one transaction.
    committer: Option<commit::Committer>,
}

/// Connections for reads beside the writer on a SQLite file.
const SQLITE_READERS: u32 = 4;

/// Why [`Database::connect`] failed. The messages hold the URL with its password masked, never
/// the URL as given.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// `database.url` is not a URL the connector can use.
    #[error("the database URL {url} is not valid: {problem}")]
    InvalidUrl {
        /// The URL, its password masked.
        url: String,
        /// What is wrong with it (the scheme, an unencoded character, the port, the host).
        problem: String,
    },
    /// [`Database::connect_existing`] on a SQLite file that does not exist.
    #[error("there is no database at {}", .0.display())]
    Missing(std::path::PathBuf),
    /// The URL is valid, but the database cannot be reached or opened.
    #[error("cannot connect to {url}: {cause}")]
    Failed {
        /// The URL, its password masked.
        url: String,
        /// The driver's error, any URL in it masked.
        cause: String,
    },
}

impl ConnectError {
    pub(crate) fn failed(url: &str, e: &DbErr) -> Self {
        // `Conn` repeats its cause in its own message: the cause alone.
        let cause = match e {
            DbErr::Conn(inner) => inner.to_string(),
            other => other.to_string(),
        };
        ConnectError::Failed {
            url: redact(url),
            cause: redact(&cause),
        }
    }
}

/// Where a database's schema stands ([`Database::schema`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    /// No migration has run: the database has no tables.
    Empty,
    /// Some migrations have run; this many have not.
    Behind(usize),
    /// Every migration has run.
    Current,
}

/// The schemes [`Database::connect`] takes.
pub(crate) const SCHEMES: &[&str] = &["postgres", "postgresql", "sqlite"];

impl Database {
    /// Connects. SQLite files are created when missing and opened in WAL mode with
    /// `synchronous=FULL`: a committed webhook survives a power cut.
    ///
    /// # Errors
    /// [`ConnectError::InvalidUrl`] when the URL is invalid (said without its password),
    /// [`ConnectError::Failed`] when the server cannot be reached.
    pub async fn connect(cfg: &DatabaseConfig) -> Result<Self, ConnectError> {
        Self::open(cfg, true).await
    }

    /// Connects like [`Database::connect`], but never creates a SQLite file: for a look into a
    /// database that should already be there.
    ///
    /// # Errors
    /// As [`Database::connect`], and [`ConnectError::Missing`] when the SQLite file does not
    /// exist.
    pub async fn connect_existing(cfg: &DatabaseConfig) -> Result<Self, ConnectError> {
        Self::open(cfg, false).await
    }

    async fn open(cfg: &DatabaseConfig, create: bool) -> Result<Self, ConnectError> {
        let url = cfg.url.expose_secret();
        if let Some(problem) = redact::url_problem(url, SCHEMES) {
            return Err(ConnectError::InvalidUrl {
                url: redact(url),
                problem,
            });
        }
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        if cfg.is_sqlite() && !create && !in_memory {
            let file = SqliteConnectOptions::from_str(url)
                .map_err(|e| ConnectError::failed(url, &DbErr::Custom(e.to_string())))?;
            if !file.get_filename().exists() {
                return Err(ConnectError::Missing(file.get_filename().to_owned()));
            }
        }
        let mut opts = ConnectOptions::new(url.to_owned());
        opts.sqlx_logging(false)
            .acquire_timeout(cfg.acquire_timeout_secs)
            .connect_timeout(cfg.acquire_timeout_secs);
        let mut readers = None;
        if cfg.is_sqlite() {
            // One connection: SQLite has one write lock, and writers that contend for it on
            // several connections wait in SQLite's busy handler, which sleeps up to 100 ms at a
            // time (measured: webhook-to-job-done p50 of 0.8 s at 900 webhooks/s with 4
            // connections, 10 ms with 1). With one connection the pool's queue orders the
            // inbox writer, the workers and the readers fairly, without sleeping. (It also keeps
            // `sqlite::memory:`, one database per connection, whole.)
            opts.max_connections(1).min_connections(1);
            opts.map_sqlx_sqlite_opts(move |o| {
                o.journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full)
                    // Deleted and overwritten content is zeroed, not left in free pages: a body
                    // or label cleared (retention, erasure) leaves the file, not only the
                    // query results (README, "Personal data").
                    .pragma("secure_delete", "on")
                    .busy_timeout(Duration::from_secs(10))
                    .create_if_missing(create)
            });
            // Readers on a file (an in-memory database is one per connection: it has none).
            if !in_memory {
                let mut read = opts.clone();
                read.max_connections(SQLITE_READERS).min_connections(0);
                readers = Some(read);
            }
        } else {
            opts.max_connections(cfg.max_connections.max(2))
                .min_connections(1);
        }
        let conn = sea_orm::Database::connect(opts)
            .await
            .map_err(|e| ConnectError::failed(url, &e))?;
        let readers = match readers {
            Some(opts) => Some(
                sea_orm::Database::connect(opts)
                    .await
                    .map_err(|e| ConnectError::failed(url, &e))?,
            ),
            None => None,
        };
        let committer = (conn.get_database_backend() == DbBackend::Sqlite)
            .then(|| commit::Committer::start(conn.clone()));
        Ok(Database {
            conn,
            readers,
            committer,
        })
    }

    /// Applies the pending migrations.
    ///
    /// # Errors
    /// The driver's error.
    pub async fn migrate(&self) -> Result<(), DbErr> {
        if self.backend() != DbBackend::Postgres {
            return migration::Migrator::up(&self.conn, None).await;
        }
        // Several servers and workers may start at once: one migrates, the others wait on a
        // transaction-scoped advisory lock, then find nothing left to do.
        let lock = self.conn.begin().await?;
        lock.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
            .await?;
        let result = migration::Migrator::up(&self.conn, None).await;
        lock.commit().await?;
        result
    }

    /// Whether the migrations have run, read without writing anything (the migrations' own
    /// table is not created).
    ///
    /// # Errors
    /// The driver's error.
    pub async fn schema(&self) -> Result<Schema, DbErr> {
        let pending = migration::Migrator::get_pending_migrations_read_only(&self.conn)
            .await?
            .len();
        Ok(if pending == 0 {
            Schema::Current
        } else if pending == migration::Migrator::migrations().len() {
            Schema::Empty
        } else {
            Schema::Behind(pending)
        })
    }

    /// Lets go of the bytes of rows just cleared (an erasure), so that they leave the
    /// database's files and not only its query results. On SQLite (whose connections zero
    /// what is deleted: `secure_delete`) the write-ahead log is checkpointed into the file and
    /// truncated, so no copy of the pages from before is left in it. On Postgres `VACUUM` of
    /// `tables` removes the rows' old versions (run outside any transaction; the space is
    /// reused, and `VACUUM FULL` in a quiet moment rewrites the files).
    ///
    /// # Errors
    /// The driver's error; a checkpoint that readers keep from finishing after a few tries.
    pub async fn reclaim(&self, tables: &[&str]) -> Result<(), DbErr> {
        if self.backend() == DbBackend::Postgres {
            return self
                .conn
                .execute_unprepared(&format!("VACUUM {}", tables.join(", ")))
                .await
                .map(|_| ());
        }
        for _ in 0..20 {
            let row = self
                .conn
                .query_one_raw(sea_orm::Statement::from_string(
                    DbBackend::Sqlite,
                    "PRAGMA wal_checkpoint(TRUNCATE)",
                ))
                .await?;
            let busy: i64 = match row {
                Some(r) => r.try_get_by_index(0)?,
                None => 0,
            };
            if busy == 0 {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(DbErr::Custom(
            "the write-ahead log could not be checkpointed: readers kept it busy".into(),
        ))
    }

    /// The sea-orm connection, for adapters that share the database.
    pub fn conn(&self) -> &DatabaseConnection {
        &self.conn
    }

    /// The connections for reads that need not see uncommitted writes: the SQLite file's
    /// readers, else the pool itself.
    pub fn reader(&self) -> &DatabaseConnection {
        self.readers.as_ref().unwrap_or(&self.conn)
    }

    /// Runs `work` in a transaction and commits it; on SQLite, in the one transaction of every
    /// write waiting (see [`commit`]). `work` must write only through the transaction it is
    /// given, and may be run twice (the first run rolled back).
    pub(crate) async fn transact<T, F>(&self, work: F) -> Result<T, DbErr>
    where
        T: Send + 'static,
        F: for<'t> Fn(&'t sea_orm::DatabaseTransaction) -> commit::TxFuture<'t, T>
            + Send
            + Sync
            + 'static,
    {
        match &self.committer {
            Some(c) => c.run(work).await,
            None => {
                let txn = self.conn.begin().await?;
                let out = work(&txn).await?;
                txn.commit().await?;
                Ok(out)
            }
        }
    }

    /// Runs one write statement (committed with the others waiting, on SQLite); the rows it
    /// returned.
    pub(crate) async fn write(
        &self,
        stmt: sea_orm::Statement,
    ) -> Result<Vec<sea_orm::QueryResult>, DbErr> {
        commit::write_statement(self.committer.as_ref(), &self.conn, stmt).await
    }

    /// SQLite or Postgres.
    pub fn backend(&self) -> DbBackend {
        self.conn.get_database_backend()
    }

    /// Closes the pool.
    ///
    /// # Errors
    /// The driver's error.
    pub async fn close(self) -> Result<(), DbErr> {
        if let Some(readers) = self.readers {
            readers.close().await?;
        }
        self.conn.close().await
    }
}

/// Milliseconds since the Unix epoch: how the jobs table stores times.
/// The share of the time a retention pass spends writing. After each batch it pauses for
/// `1 / PRUNE_DUTY - 1` times as long as the batch took, so intake's writes wait behind at most
/// one batch and have the writer the rest of the time (`cargo xtask bench retention`: back to
/// back, batches took 69% of SQLite's intake throughput).
pub(crate) const PRUNE_DUTY: f64 = 0.05;

/// Pauses after a retention batch that started at `started` (see [`PRUNE_DUTY`]).
pub(crate) async fn pace(started: std::time::Instant) {
    tokio::time::sleep(started.elapsed().mul_f64(1.0 / PRUNE_DUTY - 1.0)).await;
}

pub(crate) fn millis(t: chrono::DateTime<chrono::Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn from_millis(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// A string unique to this process (for keys and lease tokens).
pub(crate) fn process_nonce() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{:x}{:x}", std::process::id(), nanos)
}

pub(crate) fn boxed(e: DbErr) -> BoxError {
    Box::new(e)
}
