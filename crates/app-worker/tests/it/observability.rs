//! `lazona-worker` as a process: its own `/metrics`, `/healthz` and `/readyz` on
//! `worker.metrics_listen`, and JSON log lines with `LOG_FORMAT=json`.

use adapters::db::{Database, SqlInbox};
use adapters::testing::{TestDb, count};
use bytes::Bytes;
use domain::model::{NewWebhook, Resource, WebhookStatus};
use domain::ports::WebhookInbox;
use std::io::{BufRead, BufReader};
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `GET path` over HTTP/1.0: the status code and the body (a blocking call: a test's moment).
fn get(addr: &str, path: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .expect("request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("answer");
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_process_serves_its_metrics_and_logs_json() {
    let db = TestDb::sqlite();
    let settings = adapters::testing::settings_for(&db.url);
    let database = Database::connect(&settings.database).await.expect("db");
    database.migrate().await.expect("migrate");
    let inbox = SqlInbox::start(database.clone(), &settings.inbox);
    for i in 0..3 {
        inbox
            .record(NewWebhook {
                resource: Resource::Order,
                topic: Some("order.created".into()),
                event: Some("created".into()),
                delivery_id: Some(format!("metrics-{i}")),
                wc_webhook_id: None,
                source: None,
                subject_id: Some(i),
                subject_modified: None,
                headers: Vec::new(),
                body: Bytes::from(format!(r#"{{"id": {i}}}"#)),
                received_at: chrono::Utc::now(),
                status: WebhookStatus::Queued,
                error: None,
            })
            .await
            .expect("recorded");
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("free port")
        .local_addr()
        .expect("addr")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_lazona-worker"))
        .env("DATABASE_URL", &db.url)
        .env("LAZONA_WORKER__METRICS_LISTEN", &addr)
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .env_remove("LAZONA_CONFIG")
        .env_remove("LAZONA_LOG__FORMAT")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("lazona-worker starts");
    let stderr = child.stderr.take().expect("stderr");
    let lines = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<String>>()
    });

    let deadline = Instant::now() + Duration::from_secs(30);
    let sql = "SELECT COUNT(*) FROM webhooks WHERE status = 'processed'";
    while count(&database, sql).await < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if count(&database, sql).await < 3 {
        child.kill().expect("kill");
        let _ = child.wait();
        panic!("the worker processed nothing: {:?}", lines.join());
    }

    let (status, body) = get(&addr, "/healthz");
    assert_eq!((status, body.as_str()), (200, "ok"));
    assert_eq!(get(&addr, "/readyz").0, 200);
    let mut metrics = String::new();
    while Instant::now() < deadline {
        metrics = get(&addr, "/metrics").1;
        if metrics.contains(r#"lazona_jobs_total{kind="process_webhook",outcome="succeeded"} 3"#) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for family in [
        r#"lazona_jobs_total{kind="process_webhook",outcome="succeeded"} 3"#,
        r#"lazona_job_duration_seconds_count{kind="process_webhook",result="ok"} 3"#,
        r#"lazona_queue_jobs{backend="sql",state="pending"} "#,
        r#"lazona_queue_jobs{backend="sql",state="dead"} 0"#,
        r#"lazona_queue_oldest_job_age_seconds{backend="sql"} "#,
    ] {
        assert!(metrics.contains(family), "{family} missing from\n{metrics}");
    }

    child.kill().expect("kill");
    let _ = child.wait();
    let lines = lines.join().expect("stderr read");
    assert!(!lines.is_empty(), "the worker logged");
    for line in &lines {
        let json: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            json["timestamp"].is_string() && json["level"].is_string(),
            "{line}"
        );
    }
}
