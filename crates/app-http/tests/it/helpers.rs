//! Test server, databases and signed requests.

use adapters::config::Settings;
use domain::service::signature::WebhookSecret;
use sea_orm::{ConnectionTrait, Statement};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use tokio_util::sync::CancellationToken;

pub(crate) const SECRET: &str = "test-secret";

/// A database for one test: a SQLite file in a temporary folder, or a fresh Postgres database.
pub(crate) struct TestDb {
    pub(crate) url: String,
    _dir: Option<tempfile::TempDir>,
    /// The admin URL and database name of a Postgres database, dropped with the value.
    pg: Option<(String, String)>,
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((admin, name)) = self.pg.take() else {
            return;
        };
        // Drop runs inside the test's runtime: use a thread with its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async {
                if let Ok(conn) = sea_orm::Database::connect(admin.as_str()).await {
                    let _ = conn.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
                }
            });
        })
        .join();
    }
}

impl TestDb {
    pub(crate) fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("lazona.db").display());
        TestDb { url, _dir: Some(dir), pg: None }
    }

    /// A fresh database on the server of `TEST_DATABASE_URL`; `None` (and a note) when the
    /// variable is not set outside CI. In CI its absence fails the test.
    pub(crate) async fn postgres() -> Option<Self> {
        let Some(admin) = postgres_admin_url() else {
            return None;
        };
        let name = format!("lazona_test_{}", unique());
        let conn = sea_orm::Database::connect(admin.as_str()).await.expect("connect to TEST_DATABASE_URL");
        conn.execute_unprepared(&format!("CREATE DATABASE {name}")).await.expect("create database");
        let url = replace_db_name(&admin, &name);
        Some(TestDb { url, _dir: None, pg: Some((admin, name)) })
    }

    /// Every backend this run can test: SQLite always, Postgres when available.
    pub(crate) async fn all() -> Vec<(&'static str, Self)> {
        let mut dbs = vec![("sqlite", TestDb::sqlite())];
        if let Some(pg) = TestDb::postgres().await {
            dbs.push(("postgres", pg));
        }
        dbs
    }
}

pub(crate) fn postgres_admin_url() -> Option<String> {
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

pub(crate) fn replace_db_name(url: &str, name: &str) -> String {
    let (base, _) = url.rsplit_once('/').expect("database URL has a path");
    format!("{base}/{name}")
}

pub(crate) fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    format!("{}_{:x}_{}", std::process::id(), nanos, N.fetch_add(1, Ordering::Relaxed))
}

/// Settings as the binary would load them, for this database, with the test secret.
pub(crate) fn settings(db_url: &str, extra: &[(&str, &str)]) -> Settings {
    use figment::providers::Serialized;
    let mut figment = Settings::figment(None)
        .expect("figment")
        .merge(Serialized::default("database.url", db_url))
        .merge(Serialized::default("webhook.secret", SECRET))
        .merge(Serialized::default("listen", "127.0.0.1:0"));
    for (k, v) in extra {
        figment = figment.merge(Serialized::default(k, v));
    }
    figment.extract().expect("test settings")
}

/// A server running in this process on a free port.
pub(crate) struct TestApp {
    pub(crate) addr: SocketAddr,
    pub(crate) running: app_http::Running,
    pub(crate) shutdown: CancellationToken,
    pub(crate) client: reqwest::Client,
}

impl TestApp {
    pub(crate) async fn spawn(settings: &Settings) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let shutdown = CancellationToken::new();
        let running = app_http::start(settings, listener, shutdown.clone()).await.expect("server starts");
        TestApp { addr: running.addr, running, shutdown, client: reqwest::Client::new() }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub(crate) async fn post_signed(&self, path: &str, body: &str, delivery_id: Option<&str>) -> reqwest::Response {
        let mut req = self
            .client
            .post(self.url(path))
            .header("content-type", "application/json")
            .header("x-wc-webhook-signature", sign(body.as_bytes()))
            .header("x-wc-webhook-source", "https://lazona.example/")
            .body(body.to_owned());
        if let Some(id) = delivery_id {
            req = req.header("x-wc-webhook-delivery-id", id);
        }
        req.send().await.expect("request sent")
    }

    pub(crate) async fn stop(self) -> adapters::db::Database {
        self.shutdown.cancel();
        let db = self.running.db.clone();
        drop(self.running.inbox);
        self.running.task.await.expect("join").expect("server ran");
        db
    }

    pub(crate) async fn count(&self, sql: &str) -> i64 {
        count(&self.running.db, sql).await
    }
}

pub(crate) async fn count(db: &adapters::db::Database, sql: &str) -> i64 {
    let row = db
        .conn()
        .query_one_raw(Statement::from_string(db.backend(), sql.to_owned()))
        .await
        .expect("query")
        .expect("a row");
    row.try_get_by_index::<i64>(0).expect("a count")
}

pub(crate) fn sign(body: &[u8]) -> String {
    WebhookSecret::new(SECRET).sign(body)
}

pub(crate) fn fixture(name: &str) -> String {
    let path: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}
