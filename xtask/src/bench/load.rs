//! The load generator: signed webhook deliveries, pre-built, posted over `C` keep-alive HTTP/1.1
//! connections (one per task), a warm-up phase first, then the measured phase.

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use sha2::Sha256;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::Barrier;

/// Each request (connecting included) gives up after this long.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The webhook secret the benchmark signs with.
pub(crate) const SECRET: &str = "bench-secret";
const USER_AGENT: &str = "WooCommerce/8.0 Hookshot (WordPress/6.4)";

/// A delivery id as WooCommerce makes them: `wp_hash($webhook_id . strtotime('now'))` is 32
/// hexadecimal digits of an HMAC-MD5, in no order, so the inbox's unique index takes them at
/// random places as it does in production (sequential ids would make every insert an append).
fn delivery_id(run_tag: &str, id: u64) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(format!("{run_tag}-{id}"));
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// A ready-to-send delivery.
pub(crate) struct Delivery {
    body: Bytes,
    signature: String,
    delivery_id: String,
}

impl Delivery {
    /// The body's size in bytes.
    pub(crate) fn len(&self) -> usize {
        self.body.len()
    }

    /// The body.
    pub(crate) fn body(&self) -> &[u8] {
        &self.body
    }

    /// `body`, signed with [`SECRET`], to be sent with `delivery_id`.
    pub(crate) fn signed(body: Vec<u8>, delivery_id: String) -> Result<Self> {
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).context("HMAC key")?;
        mac.update(&body);
        Ok(Delivery {
            signature: BASE64.encode(mac.finalize().into_bytes()),
            body: Bytes::from(body),
            delivery_id,
        })
    }
}

/// Serializes and signs `count` orders (ids `first_id..`), before any timing starts: one
/// thread per core, each re-using one order document and changing only its id.
pub(crate) fn prepare(first_id: u64, count: usize, run_tag: &str) -> Result<Vec<Delivery>> {
    let key = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).context("HMAC key")?;
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let per_thread = count.div_ceil(threads).max(1);
    let ids: Vec<u64> = (first_id..first_id + count as u64).collect();
    std::thread::scope(|scope| {
        let workers: Vec<_> = ids
            .chunks(per_thread)
            .map(|chunk| {
                let key = key.clone();
                scope.spawn(move || -> Result<Vec<Delivery>> {
                    let mut order = super::order::template();
                    let mut out = Vec::with_capacity(chunk.len());
                    for &id in chunk {
                        super::order::set_id(&mut order, id);
                        let body = serde_json::to_vec(&order).context("serializing")?;
                        let mut mac = key.clone();
                        mac.update(&body);
                        out.push(Delivery {
                            signature: BASE64.encode(mac.finalize().into_bytes()),
                            body: Bytes::from(body),
                            delivery_id: delivery_id(run_tag, id),
                        });
                    }
                    Ok(out)
                })
            })
            .collect();
        let mut all = Vec::with_capacity(count);
        for worker in workers {
            let part = worker
                .join()
                .map_err(|_| anyhow::anyhow!("a preparing thread panicked"))?;
            all.extend(part?);
        }
        Ok(all)
    })
}

/// Where to post: the server's `host:port` and the path.
#[derive(Clone)]
pub(crate) struct Target {
    /// `host:port`, also sent as `Host`.
    pub(crate) authority: String,
    /// `/api/deliveries/`.
    pub(crate) path: String,
}

/// What one phase observed.
#[derive(Default)]
pub(crate) struct PhaseStats {
    /// 2xx answers.
    pub(crate) accepted: u64,
    /// Other answers, by status.
    pub(crate) statuses: BTreeMap<u16, u64>,
    /// Requests that got no answer (connection error or timeout).
    pub(crate) errors: u64,
    /// The first transport error, for the report.
    pub(crate) first_error: Option<String>,
    /// Latency of every answered request, in microseconds (sorted by [`PhaseStats::finish`]).
    pub(crate) latencies_us: Vec<u64>,
    /// Wall time of the phase.
    pub(crate) elapsed: Duration,
}

impl PhaseStats {
    /// Requests not answered 2xx (other statuses and transport failures).
    pub(crate) fn non_2xx(&self) -> u64 {
        self.statuses.values().sum::<u64>() + self.errors
    }

    /// Latency at quantile `q` (nearest rank), in milliseconds.
    pub(crate) fn percentile_ms(&self, q: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let rank = (q * self.latencies_us.len() as f64).ceil() as usize;
        let idx = rank.clamp(1, self.latencies_us.len()) - 1;
        self.latencies_us[idx] as f64 / 1000.0
    }

    fn merge(&mut self, other: PhaseStats) {
        self.accepted += other.accepted;
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.latencies_us.extend(other.latencies_us);
    }

    fn finish(&mut self, elapsed: Duration) {
        self.latencies_us.sort_unstable();
        self.elapsed = elapsed;
    }
}

/// Runs both phases: every task posts its warm-up share, all wait for each other, then the
/// measured phase is timed from the moment they are released until the last task is done.
pub(crate) async fn run(
    target: &Target,
    concurrency: usize,
    warmup: Vec<Delivery>,
    measured: Vec<Delivery>,
) -> Result<(PhaseStats, PhaseStats)> {
    let concurrency = concurrency.max(1);
    let barrier = Arc::new(Barrier::new(concurrency + 1));
    let shares = split(warmup, concurrency)
        .into_iter()
        .zip(split(measured, concurrency));
    let mut tasks = Vec::with_capacity(concurrency);
    for (warm, meas) in shares {
        let (target, barrier) = (target.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::new(target);
            let warm_stats = conn.post_all(warm).await;
            barrier.wait().await;
            let measured_stats = conn.post_all(meas).await;
            (warm_stats, measured_stats)
        }));
    }
    barrier.wait().await;
    let start = Instant::now();
    let (mut warm_total, mut measured_total) = (PhaseStats::default(), PhaseStats::default());
    for task in tasks {
        let (warm, meas) = task.await.context("a load task panicked")?;
        warm_total.merge(warm);
        measured_total.merge(meas);
    }
    measured_total.finish(start.elapsed());
    warm_total.finish(Duration::ZERO);
    Ok((warm_total, measured_total))
}

/// Deals `items` round-robin into `n` shares.
fn split<T>(items: Vec<T>, n: usize) -> Vec<Vec<T>> {
    let mut shares: Vec<Vec<T>> = (0..n)
        .map(|_| Vec::with_capacity(items.len() / n + 1))
        .collect();
    for (i, item) in items.into_iter().enumerate() {
        shares[i % n].push(item);
    }
    shares
}

/// One keep-alive connection, re-opened after a failure.
struct Conn {
    target: Target,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Conn {
    fn new(target: Target) -> Self {
        Conn {
            target,
            sender: None,
        }
    }

    /// Posts every delivery in turn (a bounded loop: one attempt each).
    async fn post_all(&mut self, deliveries: Vec<Delivery>) -> PhaseStats {
        let mut stats = PhaseStats {
            latencies_us: Vec::with_capacity(deliveries.len()),
            ..Default::default()
        };
        for delivery in deliveries {
            let start = Instant::now();
            match tokio::time::timeout(REQUEST_TIMEOUT, self.post(delivery)).await {
                Ok(Ok(status)) => {
                    stats.latencies_us.push(start.elapsed().as_micros() as u64);
                    if status.is_success() {
                        stats.accepted += 1;
                    } else {
                        *stats.statuses.entry(status.as_u16()).or_default() += 1;
                    }
                }
                outcome => {
                    self.sender = None;
                    stats.errors += 1;
                    if stats.first_error.is_none() {
                        stats.first_error = Some(match outcome {
                            Ok(Err(e)) => format!("{e:#}"),
                            _ => format!("no answer within {}s", REQUEST_TIMEOUT.as_secs()),
                        });
                    }
                }
            }
        }
        stats
    }

    async fn post(&mut self, d: Delivery) -> Result<StatusCode> {
        let sender = match &mut self.sender {
            Some(s) if !s.is_closed() => s,
            slot => slot.insert(connect(&self.target.authority).await?),
        };
        sender.ready().await.context("connection closed")?;
        let req = Request::post(self.target.path.as_str())
            .header(header::HOST, self.target.authority.as_str())
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::USER_AGENT, USER_AGENT)
            .header("X-WC-Webhook-Source", "https://lazona.example/")
            .header("X-WC-Webhook-Topic", "order.created")
            .header("X-WC-Webhook-Resource", "order")
            .header("X-WC-Webhook-Event", "created")
            .header("X-WC-Webhook-Signature", d.signature)
            .header("X-WC-Webhook-ID", "1")
            .header("X-WC-Webhook-Delivery-ID", d.delivery_id)
            .body(Full::new(d.body))
            .context("building the request")?;
        let resp = sender.send_request(req).await.context("sending")?;
        let status = resp.status();
        resp.into_body()
            .collect()
            .await
            .context("reading the answer")?;
        Ok(status)
    }
}

/// Opens an HTTP/1.1 connection; its driver runs as its own task.
async fn connect(authority: &str) -> Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(authority)
        .await
        .with_context(|| format!("connecting to {authority}"))?;
    stream.set_nodelay(true)?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .context("HTTP handshake")?;
    tokio::spawn(async move {
        // Ends when the peer closes or the sender is dropped; errors surface on the sender.
        let _ = conn.await;
    });
    Ok(sender)
}

/// `GET path` on a fresh connection: the status, or an error when the server does not answer.
pub(crate) async fn get_status(authority: &str, path: &str) -> Result<StatusCode> {
    let fut = async {
        let mut sender = connect(authority).await?;
        let req = Request::get(path)
            .header(header::HOST, authority)
            .body(Full::new(Bytes::new()))
            .context("building the request")?;
        let resp = sender.send_request(req).await.context("sending")?;
        let status = resp.status();
        resp.into_body()
            .collect()
            .await
            .context("reading the answer")?;
        Ok(status)
    };
    match tokio::time::timeout(Duration::from_secs(5), fut).await {
        Ok(r) => r,
        Err(_) => bail!("GET {path}: no answer within 5s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliveries_are_signed_over_the_exact_body() {
        let d = prepare(7, 5, "t").expect("prepared");
        assert_eq!(d.len(), 5);
        assert_eq!(d[4].delivery_id, delivery_id("t", 11));
        assert_eq!(d[4].delivery_id.len(), 32);
        assert!(d[4].delivery_id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(d[4].delivery_id, d[3].delivery_id);
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("key");
        mac.update(&d[1].body);
        assert_eq!(d[1].signature, BASE64.encode(mac.finalize().into_bytes()));
        assert_eq!(d[1].delivery_id, delivery_id("t", 8));
        let v: serde_json::Value = serde_json::from_slice(&d[1].body).expect("json");
        assert_eq!(v["id"], 8);
    }

    #[test]
    fn shares_and_percentiles() {
        let shares = split((0..10).collect(), 3);
        assert_eq!(shares.iter().map(Vec::len).collect::<Vec<_>>(), [4, 3, 3]);
        let mut s = PhaseStats {
            latencies_us: (1..=100).rev().map(|ms| ms * 1000).collect(),
            ..Default::default()
        };
        s.finish(Duration::from_secs(1));
        assert_eq!(s.percentile_ms(0.5), 50.0);
        assert_eq!(s.percentile_ms(0.99), 99.0);
        assert_eq!(s.percentile_ms(1.0), 100.0);
    }
}
