//! Test support: throwaway databases (SQLite always; Postgres on the server named by
//! `TEST_DATABASE_URL`, required when `CI` is set, skipped with a note otherwise), the contract
//! suites of the storage ports ([`queue_conformance`] for the job queue, [`contract`] for the
//! inbox, the shipment store, the event log and the token store), and throwaway PostgreSQL and
//! Redis servers for fault tests.

pub mod contract;
pub mod queue_conformance;
mod servers;

pub use servers::{ThrowawayPostgres, ThrowawayRedis, free_port};

use sea_orm::ConnectionTrait as _;

/// A database for one test: a SQLite file in a temporary folder, or a fresh Postgres database
/// that is dropped with the value.
#[derive(Debug)]
pub struct TestDb {
    /// Its URL, for `database.url`.
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>,
}

impl TestDb {
    /// A SQLite file in a new temporary folder.
    ///
    /// # Panics
    /// When no temporary folder can be made.
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("lazona.db").display()
        );
        TestDb {
            url,
            _dir: Some(dir),
            pg: None,
        }
    }

    /// A fresh database on the server of `TEST_DATABASE_URL`; `None` (with a note) when the
    /// variable is not set outside CI.
    ///
    /// # Panics
    /// In CI without `TEST_DATABASE_URL`, or when the server refuses to create the database.
    pub async fn postgres() -> Option<Self> {
        let admin = postgres_admin_url()?;
        let name = format!("lazona_test_{}", unique());
        let conn = sea_orm::Database::connect(admin.as_str())
            .await
            .expect("connect to TEST_DATABASE_URL");
        conn.execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create database");
        let _ = conn.close().await;
        let url = replace_db_name(&admin, &name);
        Some(TestDb {
            url,
            _dir: None,
            pg: Some((admin, name)),
        })
    }

    /// Every backend this run can test, named: SQLite always, Postgres when available.
    pub async fn all() -> Vec<(&'static str, Self)> {
        let mut dbs = vec![("sqlite", TestDb::sqlite())];
        if let Some(pg) = TestDb::postgres().await {
            dbs.push(("postgres", pg));
        }
        dbs
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((admin, name)) = self.pg.take() else {
            return;
        };
        // Drop may run inside a runtime: use a thread with its own.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(conn) = sea_orm::Database::connect(admin.as_str()).await {
                    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ = conn.execute_unprepared(&sql).await;
                }
            });
        })
        .join();
    }
}

/// The configuration a binary would load (the environment included), with `database.url` set to
/// `db_url`.
///
/// # Panics
/// When the configuration does not load.
pub fn settings_for(db_url: &str) -> crate::config::Settings {
    use figment::providers::Serialized;
    crate::config::Settings::figment(None)
        .expect("figment")
        .merge(Serialized::default("database.url", db_url))
        .extract()
        .expect("test settings")
}

/// The integer in the first column of the first row of `sql` (a `COUNT(*)`).
///
/// # Panics
/// When the query fails or returns no integer.
pub async fn count(db: &crate::db::Database, sql: &str) -> i64 {
    let row = db
        .conn()
        .query_one_raw(sea_orm::Statement::from_string(
            db.backend(),
            sql.to_owned(),
        ))
        .await
        .expect("query")
        .expect("a row");
    row.try_get_by_index::<i64>(0).expect("an integer")
}

/// `TEST_DATABASE_URL`, or `None` with a note outside CI.
///
/// # Panics
/// In CI (`CI` set) when the variable is missing: Postgres tests are required there.
pub fn postgres_admin_url() -> Option<String> {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => {
            panic!("TEST_DATABASE_URL must be set in CI: Postgres tests are required there")
        }
        _ => {
            eprintln!("note: TEST_DATABASE_URL not set, Postgres variant skipped");
            None
        }
    }
}

/// The same server URL with another database name.
///
/// # Panics
/// When the URL has no path.
pub fn replace_db_name(url: &str, name: &str) -> String {
    let (base, _) = url.rsplit_once('/').expect("database URL has a path");
    format!("{base}/{name}")
}

/// A string unique to this call in this machine's recent history.
pub fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "{}_{:x}_{}",
        std::process::id(),
        nanos,
        N.fetch_add(1, Ordering::Relaxed)
    )
}
