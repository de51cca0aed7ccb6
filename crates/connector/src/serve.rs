//! Serving HTTP connections with limits, so that slow or idle clients cannot hold the server.
//!
//! `axum::serve` waits for ever on a client that sends half its headers or half its body, and
//! accepts connections until the process runs out of file descriptors: a few hundred idle
//! sockets took `/healthz` and the webhooks down. [`serve`] replaces it:
//!
//! - **Headers.** A connection that has not sent a whole request head within
//!   [`Limits::header_read_timeout`] is closed. The time counts from when the server starts
//!   waiting for a head: when the connection opens, and again after each response, so a
//!   kept-alive connection left idle is closed after it too (hyper's header timeout).
//! - **Bodies.** A request whose body has not all arrived within [`Limits::body_read_timeout`]
//!   of its head is answered 408 and its connection closed. The time is for the whole body, not
//!   between chunks, so a client sending a byte now and then does not stretch it.
//! - **Connections.** At most [`Limits::max_connections`] are open at once. A connection over the
//!   cap closes the one idle longest (waiting for a request head, with no request in flight), so
//!   idle sockets cannot keep webhooks or `/healthz` out; when every connection has a request in
//!   flight, new ones wait in the listen backlog until one ends.
//!
//! [`raise_open_file_limit`] lifts the process's soft open-file limit to its hard limit at
//! start-up and [`connection_cap`] keeps the cap below it, so the server stops accepting before
//! the process runs out of file descriptors (which would also fail its database and files).
//!
//! On shutdown the server stops accepting, lets requests in flight finish and closes each
//! connection after its response.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, Request, Response, header};
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

/// File descriptors kept for everything but client connections (the database, the worker's
/// calls to Koiki, the shop and the mail server, logs), when the open-file limit allows.
const RESERVED_FILES: usize = 256;
/// How often a connection over the cap looks again for an idle one to close while every
/// connection has a request in flight.
const EVICT_RETRY: Duration = Duration::from_millis(100);

/// The limits [`serve`] applies.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How long a connection may take to send a request head, from when the server waits for
    /// it (the connection's opening, or the previous response).
    pub header_read_timeout: Duration,
    /// How long a request's body may take to arrive, from its head.
    pub body_read_timeout: Duration,
    /// The most connections open at once.
    pub max_connections: usize,
    /// The answer to a request whose body did not arrive within `body_read_timeout` (the
    /// server's own error shape; a 408).
    pub on_body_timeout: fn(Duration) -> axum::response::Response,
}

/// Raises the process's soft open-file limit (`RLIMIT_NOFILE`) to its hard limit; returns the
/// new soft limit. The common default soft limit, 1,024, is far below the usual hard limit.
///
/// # Errors
/// When the limit cannot be read or set.
pub fn raise_open_file_limit() -> std::io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

/// The connection cap to use: `max_connections`, lowered when the open-file limit would not
/// leave room for the rest of the process (256 descriptors, or half the limit when it is
/// small).
pub fn connection_cap(max_connections: usize) -> usize {
    let Ok((soft, _)) = rlimit::getrlimit(rlimit::Resource::NOFILE) else {
        return max_connections.max(1);
    };
    let soft = usize::try_from(soft).unwrap_or(usize::MAX);
    let usable = soft.saturating_sub(RESERVED_FILES).max(soft / 2).max(1);
    if max_connections > usable {
        tracing::warn!(
            max_connections,
            open_file_limit = soft,
            cap = usable,
            "server.max_connections lowered to fit the open-file limit"
        );
    }
    max_connections.clamp(1, usable)
}

/// Serves `app` on `listener` with `limits` until `shutdown` is cancelled, then waits for the
/// connections to finish what they are doing.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let cap = u32::try_from(limits.max_connections.max(1)).unwrap_or(u32::MAX);
    let permits = Arc::new(Semaphore::new(cap as usize));
    let registry = Arc::new(Registry::default());
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);

    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    accept_error(e).await;
                    continue;
                }
            },
        };
        let Some(permit) = admit(&permits, &registry, &shutdown).await else {
            break;
        };
        let (id, conn) = registry.add();
        let service = {
            let app = app.clone();
            let conn = conn.clone();
            let body_timeout = limits.body_read_timeout;
            let on_body_timeout = limits.on_body_timeout;
            hyper::service::service_fn(move |req: Request<Incoming>| {
                handle(
                    app.clone(),
                    conn.clone(),
                    (body_timeout, on_body_timeout),
                    req,
                )
            })
        };
        let connection = http.serve_connection(TokioIo::new(stream), service);
        let registry = registry.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut connection = pin!(connection);
            let mut closing = false;
            loop {
                tokio::select! {
                    result = connection.as_mut() => {
                        if let Err(e) = result {
                            tracing::debug!(error = %e, "connection ended");
                        }
                        break;
                    }
                    () = shutdown.cancelled(), if !closing => {
                        closing = true;
                        connection.as_mut().graceful_shutdown();
                    }
                    () = conn.evict.cancelled(), if !closing => {
                        // Closed for a new connection: at once when idle (a request may have
                        // started since it was chosen: then after its response).
                        if conn.in_flight.load(Ordering::Acquire) == 0 {
                            break;
                        }
                        closing = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
            }
            registry.remove(id);
            drop(permit);
        });
    }
    drop(listener);
    // Every connection holds a permit until it ends: all of them back means all are closed.
    let _ = permits.acquire_many(cap).await;
}

/// A permit for a new connection: a free one, or one freed by closing the connection idle
/// longest; waits while every connection is busy. `None` on shutdown.
async fn admit(
    permits: &Arc<Semaphore>,
    registry: &Registry,
    shutdown: &CancellationToken,
) -> Option<OwnedSemaphorePermit> {
    loop {
        if let Ok(permit) = permits.clone().try_acquire_owned() {
            return Some(permit);
        }
        if registry.evict_idlest() {
            tracing::debug!("connection cap reached: closed the connection idle longest");
        }
        tokio::select! {
            permit = permits.clone().acquire_owned() => return permit.ok(),
            () = tokio::time::sleep(EVICT_RETRY) => {}
            () = shutdown.cancelled() => return None,
        }
    }
}

/// As `axum::serve`: a failed handshake is nothing; anything else (such as running out of file
/// descriptors) is logged and waited out.
async fn accept_error(e: std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accept failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// One request through `app`: the connection counts as busy until the response has been sent,
/// and a body that does not arrive in time gets a 408.
fn handle(
    app: Router,
    conn: Arc<Conn>,
    (body_timeout, on_body_timeout): (Duration, fn(Duration) -> axum::response::Response),
    req: Request<Incoming>,
) -> impl Future<Output = Result<Response<Tracked>, Infallible>> + Send + 'static {
    let busy = Busy::start(conn);
    let expired = (!req.body().is_end_stream()).then(|| Arc::new(AtomicBool::new(false)));
    let req = match &expired {
        Some(flag) => req.map(|body| {
            Body::new(Deadline {
                body,
                deadline: Instant::now() + body_timeout,
                sleep: None,
                expired: flag.clone(),
            })
        }),
        None => req.map(Body::new),
    };
    let call = app.oneshot(req);
    async move {
        let Ok(mut response) = call.await;
        if expired.is_some_and(|flag| flag.load(Ordering::Acquire)) {
            response = on_body_timeout(body_timeout);
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        Ok(response.map(|body| Tracked { body, _busy: busy }))
    }
}

/// The open connections, to find the one idle longest when the cap is reached.
struct Registry {
    epoch: std::time::Instant,
    next_id: AtomicU64,
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            epoch: std::time::Instant::now(),
            next_id: AtomicU64::new(0),
            conns: Mutex::new(HashMap::new()),
        }
    }
}

/// One open connection.
struct Conn {
    epoch: std::time::Instant,
    /// Requests received and not yet answered in full.
    in_flight: AtomicUsize,
    /// When it last became idle, in milliseconds since `epoch`.
    idle_since_ms: AtomicU64,
    /// Cancelled to close it for a new connection.
    evict: CancellationToken,
}

impl Conn {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

impl Registry {
    fn add(&self) -> (u64, Arc<Conn>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            epoch: self.epoch,
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
            evict: CancellationToken::new(),
        });
        conn.idle_since_ms.store(conn.now_ms(), Ordering::Relaxed);
        self.lock().insert(id, conn.clone());
        (id, conn)
    }

    fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// Closes the connection idle longest, if any is idle.
    fn evict_idlest(&self) -> bool {
        let mut conns = self.lock();
        let idlest = conns
            .iter()
            .filter(|(_, c)| c.in_flight.load(Ordering::Acquire) == 0)
            .min_by_key(|(_, c)| c.idle_since_ms.load(Ordering::Relaxed))
            .map(|(id, _)| *id);
        match idlest.and_then(|id| conns.remove(&id)) {
            Some(conn) => {
                conn.evict.cancel();
                true
            }
            None => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        self.conns
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A request in flight on a connection, until dropped.
struct Busy(Arc<Conn>);

impl Busy {
    fn start(conn: Arc<Conn>) -> Self {
        conn.in_flight.fetch_add(1, Ordering::AcqRel);
        Busy(conn)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0
            .idle_since_ms
            .store(self.0.now_ms(), Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its connection busy until it has been sent (or dropped).
struct Tracked {
    body: Body,
    _busy: Busy,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A request body that fails once its deadline has passed, and says so in `expired`.
struct Deadline {
    body: Incoming,
    deadline: Instant,
    /// Set once the body has had to wait: from then on the deadline is checked at every read.
    sleep: Option<Pin<Box<Sleep>>>,
    expired: Arc<AtomicBool>,
}

impl Deadline {
    fn expire(&self) -> Poll<Option<Result<Frame<Bytes>, axum::BoxError>>> {
        self.expired.store(true, Ordering::Release);
        Poll::Ready(Some(Err(Box::new(BodyTimedOut))))
    }
}

impl HttpBody for Deadline {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::BoxError>>> {
        let this = &mut *self;
        if let Some(sleep) = &mut this.sleep
            && sleep.as_mut().poll(cx).is_ready()
        {
            return this.expire();
        }
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let deadline = this.deadline;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.as_mut().poll(cx).is_ready() {
            return this.expire();
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The error of a request body that did not arrive in time.
#[derive(Debug)]
struct BodyTimedOut;

impl std::fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request body did not arrive in time")
    }
}

impl std::error::Error for BodyTimedOut {}
