//! Database outages: while Postgres cannot be reached the server answers 503, never 2xx, and it
//! recovers by itself. The outage is made by a TCP proxy between the server and Postgres that the
//! test stops and restarts; the machine's Postgres itself is never touched.

use crate::helpers::{TestApp, TestDb, fixture, settings, unique};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// A TCP proxy that can be cut (every connection dropped, no new ones) and restored.
struct Proxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    stop: CancellationToken,
}

impl Proxy {
    async fn start(addr: SocketAddr, upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind(addr).await.expect("proxy binds");
        let addr = listener.local_addr().expect("addr");
        let stop = CancellationToken::new();
        let token = stop.clone();
        tokio::spawn(async move {
            loop {
                let (mut inbound, _) = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok(conn) => conn,
                        Err(_) => continue,
                    },
                    () = token.cancelled() => return,
                };
                let token = token.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        () = token.cancelled() => {}
                    }
                });
            }
        });
        Proxy {
            addr,
            upstream,
            stop,
        }
    }

    fn cut(&self) {
        self.stop.cancel();
    }

    async fn restore(&self) -> Self {
        Proxy::start(self.addr, self.upstream).await
    }
}

/// `postgres://user@host:port/db` → the `host:port` part and the URL with another `host:port`.
fn split_host(url: &str) -> (SocketAddr, impl Fn(SocketAddr) -> String + '_) {
    let after_scheme = url.find("://").map(|i| i + 3).expect("scheme");
    let start = url[after_scheme..]
        .find('@')
        .map(|i| after_scheme + i + 1)
        .unwrap_or(after_scheme);
    let end = url[start..]
        .find('/')
        .map(|i| start + i)
        .unwrap_or(url.len());
    let host = &url[start..end];
    let host = if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:5432")
    };
    let addr = host
        .replace("localhost", "127.0.0.1")
        .parse()
        .expect("host:port");
    (addr, move |a: SocketAddr| {
        format!("{}{a}{}", &url[..start], &url[end..])
    })
}

#[tokio::test]
async fn postgres_down_means_503_never_2xx_and_the_server_recovers() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let (upstream, with_host) = split_host(&db.url);
    let proxy = Proxy::start("127.0.0.1:0".parse().expect("addr"), upstream).await;
    let mut s = settings(&with_host(proxy.addr), &[("worker.embedded", "false")]);
    s.database.acquire_timeout_secs = Duration::from_secs(1);
    let app = TestApp::spawn(&s).await;
    let body = fixture("order_minimal.json");
    let mut acknowledged = 0;

    let resp = app
        .post_signed("/api/deliveries/", &body, Some(&unique()))
        .await;
    assert_eq!(resp.status(), 201);
    acknowledged += 1;

    proxy.cut();
    for _ in 0..5 {
        let resp = app
            .post_signed("/api/deliveries/", &body, Some(&unique()))
            .await;
        assert_eq!(resp.status(), 503, "database down: never a 2xx");
        assert!(resp.headers().contains_key("retry-after"));
    }
    let ready = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("sent");
    assert_eq!(ready.status(), 503);

    let proxy = proxy.restore().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let resp = app
            .post_signed("/api/deliveries/", &body, Some(&unique()))
            .await;
        match resp.status().as_u16() {
            201 => {
                acknowledged += 1;
                break;
            }
            503 if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            other => panic!("after the database came back: {other}"),
        }
    }
    // Every acknowledged webhook, and nothing else, is in the inbox.
    assert_eq!(
        app.count("SELECT COUNT(*) FROM webhooks").await,
        acknowledged
    );
    app.stop().await;
    proxy.cut();
}

/// Postgres itself (a throwaway server of this test's own) crashes and restarts while webhooks
/// pour in: the server never answers 2xx for something it did not commit, answers 503 while the
/// database is away, and recovers by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_during_ingestion_loses_no_acknowledged_webhook() {
    if adapters::testing::postgres_admin_url().is_none() {
        return;
    }
    let pg = adapters::testing::ThrowawayPostgres::start();
    let mut s = settings(&pg.url(), &[("worker.embedded", "false")]);
    s.database.acquire_timeout_secs = Duration::from_secs(1);
    let app = TestApp::spawn(&s).await;
    let body = fixture("order_minimal.json");

    let started = Instant::now();
    let mut senders = tokio::task::JoinSet::new();
    for sender in 0..8 {
        let client = app.client.clone();
        let url = app.url("/api/deliveries/");
        let body = body.clone();
        senders.spawn(async move {
            let mut answers = Vec::new();
            let mut n = 0;
            while started.elapsed() < Duration::from_secs(7) {
                let id = format!("pg-{sender}-{n}");
                n += 1;
                let resp = client
                    .post(&url)
                    .header(
                        "x-wc-webhook-signature",
                        crate::helpers::sign(body.as_bytes()),
                    )
                    .header("x-wc-webhook-delivery-id", &id)
                    .body(body.clone())
                    .send()
                    .await
                    .expect("the server answers");
                let status = resp.status().as_u16();
                if status == 503 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                answers.push((id, status));
            }
            answers
        });
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    pg.stop();
    tokio::time::sleep(Duration::from_secs(2)).await;
    pg.start_again();
    let answers: Vec<(String, u16)> = senders.join_all().await.into_iter().flatten().collect();

    let statuses: std::collections::BTreeMap<u16, usize> =
        answers.iter().fold(Default::default(), |mut m, (_, s)| {
            *m.entry(*s).or_default() += 1;
            m
        });
    assert!(
        statuses.keys().all(|s| *s == 201 || *s == 503),
        "only 201 or 503: {statuses:?}"
    );
    assert!(
        statuses.get(&503).copied().unwrap_or(0) > 0,
        "the outage was seen: {statuses:?}"
    );
    let last_per_sender_ok = answers.iter().rev().take(8).any(|(_, s)| *s == 201);
    assert!(last_per_sender_ok, "recovered by itself: {statuses:?}");

    let stored: std::collections::HashSet<String> = {
        use sea_orm::{ConnectionTrait, Statement};
        let db = &app.running.db;
        db.conn()
            .query_all_raw(Statement::from_string(
                db.backend(),
                "SELECT delivery_id FROM webhooks".to_owned(),
            ))
            .await
            .expect("query")
            .into_iter()
            .map(|r| r.try_get_by_index::<String>(0).expect("delivery id"))
            .collect()
    };
    for (id, status) in &answers {
        if *status == 201 {
            assert!(stored.contains(id), "acknowledged {id} is stored");
        }
    }
    app.stop().await;
}
