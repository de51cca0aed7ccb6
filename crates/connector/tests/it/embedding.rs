//! The connector embedded as a library ([`connector::Connector`]) with a carrier of its own,
//! on SQLite, Postgres and the Redis queue: signed orders booked through the custom carrier once, repeated
//! deliveries deduplicated, bad signatures refused, malformed bodies kept as rejected.

use adapters::config::Settings;
use adapters::memory::{MemoryMailer, MemoryShop};
use adapters::redis_queue::RedisJobQueue;
use adapters::testing::{TestDb, count, unique};
use async_trait::async_trait;
use connector::{Connector, IngestError, IngestOutcome};
use domain::error::ShippingError;
use domain::model::shipment::VendorProfile;
use domain::model::{Parcel, ParcelBooking, TrackingReport};
use domain::model::{Resource, ShipmentStatus, WebhookStatus};
use domain::service::signature::WebhookSecret;
use secrecy::ExposeSecret as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const SECRET: &str = "embedding-test-secret";
const ORDER: &[u8] = include_bytes!("../../../../tests/fixtures/order_minimal.json");
const ORDER_ID: i64 = 33;

/// A carrier that books every parcel and counts its calls.
#[derive(Default)]
struct CountingCarrier {
    bookings: AtomicUsize,
    parcels: AtomicUsize,
}

#[async_trait]
impl domain::ports::ShippingProvider for CountingCarrier {
    async fn book(&self, parcels: &[Parcel]) -> Result<Vec<ParcelBooking>, ShippingError> {
        self.bookings.fetch_add(1, Ordering::SeqCst);
        self.parcels.fetch_add(parcels.len(), Ordering::SeqCst);
        Ok(parcels
            .iter()
            .map(|p| ParcelBooking::Booked {
                message: "booked".into(),
                barcode: format!("OWN-{}", p.order_reference),
                reference: p.order_reference.clone(),
                label_pdf: b"%PDF-1.4 own label".to_vec(),
            })
            .collect())
    }

    async fn track(&self, _barcode: &str) -> Result<TrackingReport, ShippingError> {
        Err(ShippingError::Unavailable {
            reason: "no tracking in this test".into(),
            retry_after: None,
        })
    }
}

struct Embedded {
    connector: Connector,
    carrier: Arc<CountingCarrier>,
    mailer: Arc<MemoryMailer>,
}

/// SQLite; Postgres with `TEST_DATABASE_URL`; the Redis queue (on Postgres when there is one)
/// with `TEST_REDIS_URL`, under a prefix of its own: `(name, database, extra TOML)`.
async fn backends() -> Vec<(&'static str, TestDb, String)> {
    let mut out: Vec<_> = TestDb::all()
        .await
        .into_iter()
        .map(|(name, db)| (name, db, String::new()))
        .collect();
    match std::env::var("TEST_REDIS_URL") {
        Ok(url) if !url.is_empty() => {
            let db = match TestDb::postgres().await {
                Some(db) => db,
                None => TestDb::sqlite(),
            };
            let prefix = format!("lazona-test-embed-{}", unique());
            let toml = format!(
                "queue.backend = \"redis\"\nqueue.redis_url = \"{url}\"\nqueue.redis_prefix = \"{prefix}\""
            );
            out.push(("redis", db, toml));
        }
        _ if std::env::var_os("CI").is_some() => {
            panic!("TEST_REDIS_URL must be set in CI: Redis tests are required there")
        }
        _ => eprintln!("note: TEST_REDIS_URL not set, the Redis backend is skipped"),
    }
    out
}

async fn embed(db: &TestDb, extra: &str) -> Embedded {
    let settings = Settings::from_toml(&format!(
        r#"
        webhook.secret = "{SECRET}"
        database.url = "{}"
        worker.poll_interval_ms = 50
        {extra}
        "#,
        db.url
    ))
    .expect("settings");
    let carrier = Arc::new(CountingCarrier::default());
    let mailer = Arc::new(MemoryMailer::new());
    let vendor = VendorProfile {
        id: 6,
        city: "Barcelona".into(),
        state: "B".into(),
        email: "vendor6@example.com".into(),
        store_name: String::new(),
        ..VendorProfile::default()
    };
    let connector = Connector::builder(settings)
        .carrier(carrier.clone())
        .shop(Arc::new(MemoryShop::new().with_vendor(vendor)))
        .mailer(mailer.clone())
        .build()
        .await
        .expect("the connector builds");
    assert!(connector.fulfils_orders());
    assert!(!connector.handles_customers());
    Embedded {
        connector,
        carrier,
        mailer,
    }
}

fn signed(body: &[u8], delivery_id: &str, topic: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "X-WC-Webhook-Signature",
            WebhookSecret::new(SECRET).sign(body),
        ),
        ("X-WC-Webhook-Topic", topic.to_owned()),
        ("X-WC-Webhook-Delivery-ID", delivery_id.to_owned()),
    ]
}

async fn stored_webhooks(c: &Connector) -> u64 {
    c.inbox().count().await.expect("count")
}

#[tokio::test]
async fn a_signed_order_is_booked_once_through_a_custom_carrier_and_repeats_are_duplicates() {
    for (backend, db, extra) in backends().await {
        let e = embed(&db, &extra).await;
        let c = &e.connector;
        let shutdown = CancellationToken::new();
        let worker = c.spawn_worker(shutdown.clone());

        let outcome = c
            .ingest(
                Resource::Order,
                signed(ORDER, "delivery-1", "order.created"),
                ORDER,
            )
            .await
            .expect("ingested");
        let IngestOutcome::Stored { webhook_id, status } = outcome else {
            panic!("{backend}: {outcome:?}");
        };
        assert_eq!(status, WebhookStatus::Queued, "{backend}");

        // The worker, in this runtime: booked through the custom carrier, label mailed.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let shipments = c.shipments().of_order(ORDER_ID).await.expect("shipments");
            let webhook = c
                .inbox()
                .get(webhook_id)
                .await
                .expect("get")
                .expect("stored");
            if shipments.first().is_some_and(|s| s.mailed_at.is_some())
                && webhook.data.status == WebhookStatus::Processed
            {
                break;
            }
            assert!(Instant::now() < deadline, "{backend}: not done in time");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let shipments = c.shipments().of_order(ORDER_ID).await.expect("shipments");
        assert_eq!(shipments.len(), 1, "{backend}");
        assert_eq!(shipments[0].status, ShipmentStatus::LabelSent, "{backend}");
        assert_eq!(shipments[0].vendor_id, 6, "{backend}");
        assert_eq!(shipments[0].delivery_id, "OWN-xxx", "{backend}");
        assert_eq!(
            c.shipments().label(shipments[0].id).await.expect("label"),
            Some(b"%PDF-1.4 own label".to_vec()),
            "{backend}"
        );
        let mails = e.mailer.sent();
        assert_eq!(mails.len(), 1, "{backend}");
        assert_eq!(mails[0].to, ["vendor6@example.com"], "{backend}");
        assert_eq!(mails[0].attachments[0].filename, "OWN-xxx.pdf", "{backend}");

        // The same delivery again: a duplicate of the first webhook, no second job.
        let again = c
            .ingest(
                Resource::Order,
                signed(ORDER, "delivery-1", "order.created"),
                ORDER,
            )
            .await
            .expect("ingested");
        assert_eq!(again, IngestOutcome::Duplicate { webhook_id }, "{backend}");
        assert_eq!(stored_webhooks(c).await, 1, "{backend}");

        // Another delivery of the same order (an update) is stored and processed, and books
        // nothing more.
        let update = c
            .ingest(
                Resource::Order,
                signed(ORDER, "delivery-2", "order.updated"),
                ORDER,
            )
            .await
            .expect("ingested");
        let IngestOutcome::Stored {
            webhook_id: update_id,
            ..
        } = update
        else {
            panic!("{backend}: {update:?}");
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while c
            .inbox()
            .get(update_id)
            .await
            .expect("get")
            .expect("stored")
            .data
            .status
            != WebhookStatus::Processed
        {
            assert!(Instant::now() < deadline, "{backend}: update not processed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        shutdown.cancel();
        let done = worker.await.expect("worker");
        assert_eq!(done.dead, 0, "{backend}: {done:?}");
        assert_eq!(e.carrier.bookings.load(Ordering::SeqCst), 1, "{backend}");
        assert_eq!(e.carrier.parcels.load(Ordering::SeqCst), 1, "{backend}");
        assert_eq!(e.mailer.sent().len(), 1, "{backend}: one label mail");
        assert_eq!(
            c.shipments()
                .of_order(ORDER_ID)
                .await
                .expect("shipments")
                .len(),
            1,
            "{backend}"
        );
        purge_redis(c).await;
    }
}

/// Deletes the Redis keys of the connector's prefix, when its queue is on Redis.
async fn purge_redis(c: &Connector) {
    let q = &c.settings().queue;
    if let (Some(url), "redis") = (&q.redis_url, q.backend.as_str()) {
        let queue =
            RedisJobQueue::connect(url.expose_secret(), &q.redis_prefix, c.database().clone())
                .await
                .expect("redis");
        let _ = queue.purge().await;
    }
}

#[tokio::test]
async fn bad_or_missing_signatures_are_refused_and_nothing_is_stored() {
    for (backend, db) in TestDb::all().await {
        let e = embed(&db, "").await;
        let c = &e.connector;
        let mut forged = signed(ORDER, "forged-1", "order.created");
        forged[0].1 = WebhookSecret::new("not the secret").sign(ORDER);
        let refused = c.ingest(Resource::Order, forged, ORDER).await;
        assert!(
            matches!(refused, Err(IngestError::InvalidSignature)),
            "{backend}: {refused:?}"
        );

        let tampered = signed(ORDER, "tampered-1", "order.created");
        let body = [ORDER, b" "].concat();
        let refused = c.ingest(Resource::Order, tampered, body).await;
        assert!(
            matches!(refused, Err(IngestError::InvalidSignature)),
            "{backend}: a body changed after signing: {refused:?}"
        );

        let unsigned = [("X-WC-Webhook-Topic", "order.created")];
        let refused = c.ingest(Resource::Order, unsigned, ORDER).await;
        assert!(
            matches!(refused, Err(IngestError::MissingSignature)),
            "{backend}: {refused:?}"
        );

        // Header names are matched without regard to case, as over HTTP.
        let lower: Vec<(String, String)> = signed(ORDER, "lower-1", "order.created")
            .into_iter()
            .map(|(k, v)| (k.to_lowercase(), v))
            .collect();
        let accepted = c.ingest(Resource::Order, lower, ORDER).await;
        assert!(
            matches!(accepted, Ok(IngestOutcome::Stored { .. })),
            "{backend}: {accepted:?}"
        );

        assert_eq!(
            stored_webhooks(c).await,
            1,
            "{backend}: only the signed one"
        );
        c.drain().await.expect("drain");
        assert_eq!(e.carrier.bookings.load(Ordering::SeqCst), 1, "{backend}");
    }
}

#[tokio::test]
async fn a_malformed_body_is_kept_as_rejected_with_a_clear_error() {
    for (backend, db) in TestDb::all().await {
        let e = embed(&db, "").await;
        let c = &e.connector;
        for (delivery, body, field) in [
            ("bad-1", &b"this is not json"[..], None),
            ("bad-2", &br#"{"id": "thirty"}"#[..], Some("id")),
        ] {
            let outcome = c
                .ingest(
                    Resource::Order,
                    signed(body, delivery, "order.created"),
                    body,
                )
                .await
                .expect("stored, not refused");
            let IngestOutcome::Rejected {
                webhook_id,
                field: got,
                message,
            } = outcome
            else {
                panic!("{backend} {delivery}: {outcome:?}");
            };
            assert_eq!(got.as_deref(), field, "{backend} {delivery}");
            assert!(!message.is_empty(), "{backend} {delivery}");
            let kept = c.inbox().get(webhook_id).await.expect("get").expect("kept");
            assert_eq!(kept.data.status, WebhookStatus::Rejected, "{backend}");
            assert_eq!(kept.data.body.as_ref(), body, "{backend}: the exact bytes");
            let error = kept.data.error.unwrap_or_default();
            assert!(error.contains(&message), "{backend}: {error}");
        }
        assert_eq!(
            count(c.database(), "SELECT COUNT(*) FROM jobs").await,
            0,
            "{backend}: no job for a rejection"
        );
        c.drain().await.expect("drain");
        assert_eq!(e.carrier.bookings.load(Ordering::SeqCst), 0, "{backend}");
    }
}

#[tokio::test]
async fn from_configuration_alone_orders_are_recorded_and_a_missing_secret_refuses() {
    let db = TestDb::sqlite();
    let settings =
        Settings::from_toml(&format!("database.url = \"{}\"", db.url)).expect("settings");
    let c = Connector::builder(settings).build().await.expect("builds");
    assert!(!c.fulfils_orders(), "no carrier and no shop configured");
    let refused = c
        .ingest(
            Resource::Order,
            signed(ORDER, "no-secret-1", "order.created"),
            ORDER,
        )
        .await;
    assert!(
        matches!(refused, Err(IngestError::Unconfigured)),
        "{refused:?}"
    );
    assert_eq!(stored_webhooks(&c).await, 0);
    let ping = c
        .ingest(
            Resource::Order,
            [("Content-Type", "application/x-www-form-urlencoded")],
            &b"webhook_id=7"[..],
        )
        .await
        .expect("a ping");
    assert_eq!(ping, IngestOutcome::Ping { wc_webhook_id: 7 });
}

/// A carrier that can never be reached.
struct DownCarrier;

#[async_trait]
impl domain::ports::ShippingProvider for DownCarrier {
    async fn book(&self, _: &[Parcel]) -> Result<Vec<ParcelBooking>, ShippingError> {
        Err(ShippingError::Unavailable {
            reason: "the carrier is down".into(),
            retry_after: None,
        })
    }

    async fn track(&self, _barcode: &str) -> Result<TrackingReport, ShippingError> {
        Err(ShippingError::Unavailable {
            reason: "the carrier is down".into(),
            retry_after: None,
        })
    }
}

#[tokio::test]
async fn a_webhook_whose_retries_run_out_is_failed_with_the_reason_not_left_queued() {
    let db = TestDb::sqlite();
    let settings = Settings::from_toml(&format!(
        r#"
        webhook.secret = "{SECRET}"
        database.url = "{}"
        worker.retry_schedule_secs = []
        "#,
        db.url
    ))
    .expect("settings");
    let vendor = VendorProfile {
        id: 6,
        city: "Barcelona".into(),
        state: "B".into(),
        email: "vendor6@example.com".into(),
        store_name: String::new(),
        ..VendorProfile::default()
    };
    let c = Connector::builder(settings)
        .carrier(Arc::new(DownCarrier))
        .shop(Arc::new(MemoryShop::new().with_vendor(vendor)))
        .mailer(Arc::new(MemoryMailer::new()))
        .build()
        .await
        .expect("builds");
    let outcome = c
        .ingest(
            Resource::Order,
            signed(ORDER, "down-1", "order.created"),
            ORDER,
        )
        .await
        .expect("ingested");
    let webhook_id = outcome.webhook_id().expect("stored");
    let drained = c.drain().await.expect("drain");
    assert_eq!(drained.dead, 1, "no retry left: dead-lettered at once");
    let webhook = c.inbox().get(webhook_id).await.expect("get").expect("row");
    assert_eq!(webhook.data.status, WebhookStatus::Failed);
    let error = webhook.last_error.unwrap_or_default();
    assert!(
        error.contains("given up after 1 attempt") && error.contains("the carrier is down"),
        "{error}"
    );
    assert!(
        c.shipments()
            .of_order(ORDER_ID)
            .await
            .expect("rows")
            .is_empty(),
        "the claim was released: a replay can book"
    );
}

/// The periodic retention job: a worker's `prune` clears a webhook's body past
/// `retention.webhook_body_days`, keeps a fresh one, and records a `data_pruned` event.
#[tokio::test]
async fn the_prune_job_clears_expired_bodies_and_records_an_event() {
    let db = TestDb::sqlite();
    let settings = Settings::from_toml(&format!(
        "database.url = \"{}\"\nwebhook.secret = \"{SECRET}\"\nretention.webhook_body_days = 30",
        db.url
    ))
    .expect("settings");
    let c = Connector::builder(settings).build().await.expect("builds");
    for delivery in ["old-1", "fresh-1"] {
        c.ingest(
            Resource::Order,
            signed(ORDER, delivery, "order.created"),
            ORDER,
        )
        .await
        .expect("stored");
    }
    c.drain().await.expect("drain");
    let long_ago = (chrono::Utc::now() - chrono::TimeDelta::days(31)).timestamp_millis();
    // (An UPDATE returning the one row it changed.)
    let aged = count(
        c.database(),
        &format!(
            "UPDATE webhooks SET received_at = {long_ago} WHERE delivery_id = 'old-1' RETURNING 1"
        ),
    )
    .await;
    assert_eq!(aged, 1);
    c.queue()
        .enqueue(domain::model::NewJob {
            kind: domain::model::JobKind::Prune,
            run_at: None,
        })
        .await
        .expect("enqueued");
    c.drain().await.expect("drain");
    let listed = c
        .inbox()
        .list(&domain::model::WebhookFilter::default())
        .await
        .expect("list");
    assert_eq!(listed.len(), 2, "the rows stay");
    for w in listed {
        let old = w.delivery_id.as_deref() == Some("old-1");
        assert_eq!(w.pruned.is_some(), old, "{w:?}");
    }
    let events = c
        .events()
        .read(domain::model::EventId(0), None, 1000)
        .await
        .expect("events");
    assert!(
        events
            .iter()
            .any(|e| e.data.kind == domain::model::EventKind::DataPruned
                && e.data.message.contains("1 webhook bodies")),
        "{events:?}"
    );
}
