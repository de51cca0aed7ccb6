//! The connector embedded in an application of your own, with a carrier of your own.
//!
//! A signed WooCommerce order (`tests/fixtures/order_minimal.json`) is ingested in-process, the
//! worker runs in the background of this program's tokio runtime, the custom carrier books the
//! vendor's parcel, and the label is "mailed" by a mailer that prints. No network, no services:
//! the database is SQLite in memory, the shop is `adapters::memory::MemoryShop`.
//!
//! ```sh
//! cargo run -p connector --example embed
//! ```

#![allow(
    clippy::print_stdout,
    reason = "an example shows what it did on standard output"
)]

use anyhow::{Context as _, bail};
use async_trait::async_trait;
use connector::adapters::config::Settings;
use connector::adapters::memory::MemoryShop;
use connector::domain::error::{MailError, ShippingError, UnshippableParcel};
use connector::domain::model::shipment::VendorProfile;
use connector::domain::model::{
    Parcel, ParcelBooking, Resource, ShipmentStatus, TrackingReport, TrackingState, WebhookStatus,
};
use connector::domain::ports::{Email, Mailer, ShippingProvider};
use connector::domain::service::signature::WebhookSecret;
use connector::{Connector, IngestOutcome};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The signed order: the original connector's test payload (one vendor, 6, shipping by zone).
const ORDER: &[u8] = include_bytes!("../../../tests/fixtures/order_minimal.json");
const SECRET: &str = "embedding-example-secret";

/// A carrier of your own: every parcel booked, with a tiny label. The port speaks of parcels,
/// senders and recipients; what ParcelCo's own API would be sent is `request_for`'s business
/// (kept on each shipment for the operators; the default is the parcel as JSON).
#[derive(Default)]
struct ParcelCo {
    bookings: AtomicUsize,
}

#[async_trait]
impl ShippingProvider for ParcelCo {
    fn request_for(&self, parcel: &Parcel) -> Result<String, UnshippableParcel> {
        if parcel.recipient.postcode.is_empty() {
            return Err(UnshippableParcel {
                reason: "ParcelCo needs the recipient's postcode".into(),
            });
        }
        Ok(format!(
            "ParcelCo: {} package(s) of order {} from {}, {} to {} {}, {} {}",
            parcel.packages,
            parcel.order_reference,
            parcel.sender.name,
            parcel.sender.city,
            parcel.recipient.name,
            parcel.recipient.surname,
            parcel.recipient.postcode,
            parcel.recipient.city
        ))
    }

    async fn book(&self, parcels: &[Parcel]) -> Result<Vec<ParcelBooking>, ShippingError> {
        self.bookings.fetch_add(1, Ordering::SeqCst);
        Ok(parcels
            .iter()
            .enumerate()
            .map(|(i, parcel)| ParcelBooking::Booked {
                barcode: format!("PARCELCO-{}-{i}", parcel.order_reference),
                reference: parcel.order_reference.clone(),
                message: format!("booked for {}", parcel.recipient.name),
                label_pdf: b"%PDF-1.4 a ParcelCo label".to_vec(),
            })
            .collect())
    }

    async fn track(&self, barcode: &str) -> Result<TrackingReport, ShippingError> {
        Ok(TrackingReport::Event {
            state: TrackingState::InTransit,
            description: format!("{barcode} is on its way"),
            date: None,
            notes: String::new(),
        })
    }
}

/// A mailer that prints instead of sending.
struct PrintMailer;

#[async_trait]
impl Mailer for PrintMailer {
    async fn send(&self, email: &Email) -> Result<(), MailError> {
        println!("mail to {}: {}", email.to.join(", "), email.subject);
        for a in &email.attachments {
            println!("  attached {} ({} bytes)", a.filename, a.content.len());
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // The configuration, independent of the environment: the defaults and these keys.
    let settings = Settings::from_toml(&format!(
        r#"
        webhook.secret = "{SECRET}"
        database.url = "sqlite::memory:"
        shop.host = "https://shop.example"
        worker.poll_interval_ms = 50
        "#
    ))?;
    let vendor = VendorProfile {
        id: 6,
        phone: "931234567".into(),
        street: "Carrer de la Cooperativa 1".into(),
        zip: "08001".into(),
        city: "Barcelona".into(),
        state: "B".into(),
        country: "ES".into(),
        email: "queviure@example.com".into(),
        store_name: String::new(),
    };
    let carrier = Arc::new(ParcelCo::default());
    let connector = Connector::builder(settings)
        .carrier(carrier.clone())
        .shop(Arc::new(MemoryShop::new().with_vendor(vendor)))
        .mailer(Arc::new(PrintMailer))
        .build()
        .await?;
    println!("{connector:?}");

    // The worker, in this runtime, until we are done.
    let shutdown = CancellationToken::new();
    let worker = connector.spawn_worker(shutdown.clone());

    // A webhook as WooCommerce sends it: the body bytes and their signature.
    let signature = WebhookSecret::new(SECRET).sign(ORDER);
    let headers = [
        ("X-WC-Webhook-Signature", signature.as_str()),
        ("X-WC-Webhook-Topic", "order.created"),
        ("X-WC-Webhook-Resource", "order"),
        ("X-WC-Webhook-Event", "created"),
        ("X-WC-Webhook-Delivery-ID", "example-delivery-1"),
    ];
    let outcome = connector.ingest(Resource::Order, headers, ORDER).await?;
    println!("ingested: {outcome:?}");
    let IngestOutcome::Stored { webhook_id, .. } = outcome else {
        bail!("the order was not stored: {outcome:?}");
    };

    // Wait until the vendor's shipment is booked and its label mailed, and the webhook
    // processed.
    let order_id = 33;
    let deadline = Instant::now() + Duration::from_secs(30);
    let (shipment, webhook) = loop {
        let shipment = connector
            .shipments()
            .of_order(order_id)
            .await?
            .into_iter()
            .find(|s| s.status == ShipmentStatus::LabelSent && s.mailed_at.is_some());
        let webhook = connector
            .inbox()
            .get(webhook_id)
            .await?
            .context("the webhook is stored")?;
        if let Some(shipment) = shipment
            && webhook.data.status == WebhookStatus::Processed
        {
            break (shipment, webhook);
        }
        if Instant::now() > deadline {
            bail!("order {order_id} was not booked, mailed and processed in time");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    println!(
        "order {order_id}: shipment {} for vendor {} is {:?}, barcode {}, label mailed at {}",
        shipment.id,
        shipment.vendor_id,
        shipment.status,
        shipment.delivery_id,
        shipment
            .mailed_at
            .map(|t| t.to_rfc3339())
            .unwrap_or_default()
    );
    println!("the request kept on it: {}", shipment.request);
    println!(
        "webhook {webhook_id}: {}; carrier called {} time(s)",
        webhook.data.status,
        carrier.bookings.load(Ordering::SeqCst)
    );

    shutdown.cancel();
    let done = worker.await?;
    println!("worker stopped: {done:?}");
    Ok(())
}
