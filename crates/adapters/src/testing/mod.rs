//! Test support: throwaway databases (SQLite always; Postgres on the server named by
//! `TEST_DATABASE_URL`, required when `CI` is set, skipped with a note otherwise), the contract
//! suites of the storage ports ([`queue_conformance`] for the job queue, [`contract`] for the
//! inbox, the shipment store, the event log and the token store), and throwaway PostgreSQL and
//! Redis servers for fault tests.

pub mod contract;
pub mod queue_conformance;

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

/// A free TCP port on 127.0.0.1 (free when asked; bind it soon).
///
/// # Panics
/// When no port can be bound.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn wait_for_port(port: u16, up: bool, timeout: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        let open = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
        if open == up {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    false
}

/// A PostgreSQL server of the test's own: `initdb` into a temporary folder, on a free port. Fault
/// tests stop and start it at will; the machine's shared server is never touched. Stopped when
/// dropped.
#[derive(Debug)]
pub struct ThrowawayPostgres {
    dir: tempfile::TempDir,
    port: u16,
    bindir: std::path::PathBuf,
}

impl ThrowawayPostgres {
    /// Creates and starts the server.
    ///
    /// # Panics
    /// When PostgreSQL's binaries are missing or the server does not start.
    pub fn start() -> Self {
        let bindir = std::process::Command::new("pg_config")
            .arg("--bindir")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| std::path::PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
            .expect("pg_config --bindir (PostgreSQL's server binaries are needed)");
        let dir = tempfile::Builder::new()
            .prefix("lazona-pg-")
            .tempdir_in(std::env::temp_dir())
            .expect("tempdir");
        let pg = ThrowawayPostgres {
            dir,
            port: free_port(),
            bindir,
        };
        if pg.as_root() {
            let status = std::process::Command::new("chown")
                .args(["postgres:postgres"])
                .arg(pg.dir.path())
                .status()
                .expect("chown");
            assert!(status.success(), "chown the data folder to postgres");
        }
        let data = pg.dir.path().join("data");
        let ok = pg
            .pg_command("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"])
            .stdout(std::process::Stdio::null())
            .status()
            .expect("initdb runs")
            .success();
        assert!(ok, "initdb failed");
        pg.start_again();
        pg
    }

    fn running_as_root() -> bool {
        std::process::Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false)
    }

    fn as_root(&self) -> bool {
        Self::running_as_root()
    }

    fn pg_command(&self, tool: &str) -> std::process::Command {
        let bin = self.bindir.join(tool);
        if self.as_root() {
            // PostgreSQL refuses to run as root.
            let mut cmd = std::process::Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(bin);
            cmd
        } else {
            std::process::Command::new(bin)
        }
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server at once, as a crash would (`pg_ctl stop -m immediate`).
    ///
    /// # Panics
    /// When it does not stop.
    pub fn stop(&self) {
        self.stop_immediately();
        assert!(
            wait_for_port(self.port, false, std::time::Duration::from_secs(10)),
            "postgres stops"
        );
    }

    /// `pg_ctl stop -m immediate`, ignoring failures (the server may be stopped already).
    fn stop_immediately(&self) {
        let _ = self
            .pg_command("pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }

    /// Starts the (stopped) server again on the same port and data.
    ///
    /// # Panics
    /// When it does not start.
    pub fn start_again(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=100",
            self.port,
            self.dir.path().display()
        );
        let ok = self
            .pg_command("pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-o", &opts, "-l"])
            .arg(self.dir.path().join("log"))
            .args(["-w", "start"])
            .stdout(std::process::Stdio::null())
            .status()
            .expect("pg_ctl runs")
            .success();
        assert!(ok, "postgres starts");
        assert!(
            wait_for_port(self.port, true, std::time::Duration::from_secs(10)),
            "postgres listens"
        );
    }
}

impl Drop for ThrowawayPostgres {
    fn drop(&mut self) {
        self.stop_immediately();
    }
}

/// A Redis server of the test's own, on a free port, keeping nothing on disk (as the machine's
/// and many hosted ones do). Killed when dropped.
#[derive(Debug)]
pub struct ThrowawayRedis {
    port: u16,
    dir: tempfile::TempDir,
    child: std::sync::Mutex<Option<std::process::Child>>,
}

impl ThrowawayRedis {
    /// Starts the server.
    ///
    /// # Panics
    /// When `redis-server` is missing or does not start.
    pub fn start() -> Self {
        let redis = ThrowawayRedis {
            port: free_port(),
            dir: tempfile::tempdir().expect("tempdir"),
            child: std::sync::Mutex::new(None),
        };
        redis.start_again();
        redis
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL): everything it held is gone.
    ///
    /// # Panics
    /// When it does not stop.
    pub fn kill(&self) {
        if let Some(mut child) = self.child.lock().expect("lock").take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        assert!(
            wait_for_port(self.port, false, std::time::Duration::from_secs(10)),
            "redis stops"
        );
    }

    /// Starts the server again on the same port, empty.
    ///
    /// # Panics
    /// When it does not start.
    pub fn start_again(&self) {
        let child = std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(self.dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server runs");
        *self.child.lock().expect("lock") = Some(child);
        assert!(
            wait_for_port(self.port, true, std::time::Duration::from_secs(10)),
            "redis listens"
        );
    }
}

impl Drop for ThrowawayRedis {
    fn drop(&mut self) {
        if let Ok(mut guard) = self.child.lock()
            && let Some(mut child) = guard.take()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
