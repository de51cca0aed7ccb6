//! Slow and idle clients: the header and body timeouts and the connection cap, through raw TCP
//! connections to the real server.

use crate::helpers::{TestApp, TestDb, fixture, settings};
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::Instant;

const HALF_HEADERS: &[u8] = b"POST /api/deliveries/ HTTP/1.1\r\nHost: x\r\n";
const HALF_BODY: &[u8] = b"POST /api/deliveries/ HTTP/1.1\r\nHost: x\r\n\
    Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"id\": ";

/// What the server sent until it closed the connection; `None` when it is still open after
/// `within`.
async fn until_closed(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(String::from_utf8_lossy(&got).into_owned()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

async fn open(app: &TestApp, first: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(app.addr).await.expect("connects");
    stream.write_all(first).await.expect("writes");
    stream
}

#[tokio::test]
async fn a_connection_with_half_its_headers_or_idle_after_a_response_is_closed_in_time() {
    let db = TestDb::sqlite();
    let mut s = settings(&db.url, &[("worker.embedded", "false")]);
    s.server.header_read_timeout_secs = Duration::from_secs(1);
    let app = TestApp::spawn(&s).await;

    let started = Instant::now();
    let mut half = open(&app, HALF_HEADERS).await;
    assert!(
        until_closed(&mut half, Duration::from_secs(10))
            .await
            .is_some(),
        "a connection with half its headers is still open after 10 s"
    );
    assert!(started.elapsed() >= Duration::from_millis(900));

    // Kept alive after a response, then left idle: closed after the same time.
    let mut idle = open(
        &app,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n",
    )
    .await;
    let sent = until_closed(&mut idle, Duration::from_secs(10))
        .await
        .expect("an idle kept-alive connection is still open after 10 s");
    assert!(sent.starts_with("HTTP/1.1 200"), "{sent}");
    app.stop().await;
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_gets_408_and_nothing_is_stored() {
    let db = TestDb::sqlite();
    let mut s = settings(&db.url, &[("worker.embedded", "false")]);
    s.server.body_read_timeout_secs = Duration::from_secs(1);
    let app = TestApp::spawn(&s).await;

    let mut half = open(&app, HALF_BODY).await;
    let sent = until_closed(&mut half, Duration::from_secs(10))
        .await
        .expect("a connection with half a body is still open after 10 s");
    assert!(sent.starts_with("HTTP/1.1 408"), "{sent}");
    assert!(sent.contains("\"body_timeout\""), "{sent}");

    // A byte every 200 ms: the time is for the whole body, not between bytes.
    let (mut read, mut write) = open(&app, HALF_BODY).await.into_split();
    let trickle = tokio::spawn(async move {
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if write.write_all(b" ").await.is_err() {
                break;
            }
        }
    });
    let started = Instant::now();
    let mut got = Vec::new();
    let answer = tokio::time::timeout(Duration::from_secs(10), read.read_to_end(&mut got)).await;
    assert!(answer.is_ok(), "a trickled body is still read after 10 s");
    let sent = String::from_utf8_lossy(&got);
    assert!(sent.starts_with("HTTP/1.1 408"), "{sent}");
    assert!(started.elapsed() < Duration::from_secs(5));
    trickle.abort();

    assert_eq!(app.count("SELECT COUNT(*) FROM webhooks").await, 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_over_the_cap_keep_out_neither_webhooks_nor_healthz() {
    let db = TestDb::sqlite();
    let mut s = settings(&db.url, &[("worker.embedded", "false")]);
    // Long timeouts: here only the cap makes room.
    s.server.header_read_timeout_secs = Duration::from_secs(60);
    s.server.body_read_timeout_secs = Duration::from_secs(60);
    s.server.max_connections = 16;
    let app = TestApp::spawn(&s).await;

    // Half bodies: requests in flight, which hold their connections (until the body timeout).
    let mut busy = Vec::new();
    for _ in 0..6 {
        busy.push(open(&app, HALF_BODY).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Half headers, more than the cap: idle connections.
    let mut idle = Vec::new();
    for _ in 0..40 {
        idle.push(open(&app, HALF_HEADERS).await);
    }

    let within = Duration::from_secs(5);
    let body = fixture("order_minimal.json");
    let resp = tokio::time::timeout(within, app.post_signed("/api/deliveries/", &body, None))
        .await
        .expect("a webhook answered within 5 s");
    assert_eq!(resp.status(), 201);
    let health = tokio::time::timeout(within, app.client.get(app.url("/healthz")).send())
        .await
        .expect("/healthz answered within 5 s")
        .expect("/healthz");
    assert_eq!(health.status(), 200);

    // The oldest idle connections were closed to make room; the busy ones were kept.
    let first_idle = until_closed(&mut idle[0], Duration::from_millis(500)).await;
    assert!(first_idle.is_some(), "the oldest idle connection is open");
    for stream in &mut busy {
        assert!(
            until_closed(stream, Duration::from_millis(100))
                .await
                .is_none(),
            "a connection with a request in flight was closed"
        );
    }
    drop(idle);
    drop(busy);
    app.stop().await;
}
