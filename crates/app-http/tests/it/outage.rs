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
