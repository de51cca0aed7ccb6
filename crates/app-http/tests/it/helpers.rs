//! Test server, databases and signed requests.

use adapters::config::Settings;
use domain::service::signature::WebhookSecret;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use tokio_util::sync::CancellationToken;

pub(crate) const SECRET: &str = "test-secret";

pub(crate) use adapters::testing::{TestDb, unique};

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
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let shutdown = CancellationToken::new();
        let running = app_http::start(settings, listener, shutdown.clone())
            .await
            .expect("server starts");
        TestApp {
            addr: running.addr,
            running,
            shutdown,
            client: adapters::http::http_client(std::time::Duration::from_secs(30))
                .expect("http client"),
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub(crate) async fn post_signed(
        &self,
        path: &str,
        body: &str,
        delivery_id: Option<&str>,
    ) -> reqwest::Response {
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
        adapters::testing::count(&self.running.db, sql).await
    }

    /// Waits until `sql` counts `want` or more (20 s at most); the last count.
    pub(crate) async fn wait_count(&self, sql: &str, want: i64) -> i64 {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let n = self.count(sql).await;
            if n >= want || tokio::time::Instant::now() > deadline {
                return n;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

pub(crate) fn sign(body: &[u8]) -> String {
    WebhookSecret::new(SECRET).sign(body)
}

pub(crate) fn fixture(name: &str) -> String {
    let path: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}
