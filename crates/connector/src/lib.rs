//! The connector as a library, and its worker.
//!
//! # Embedding the connector
//!
//! [`Connector`] is the whole connector inside your own tokio application, without the
//! binaries: build it from the configuration, replacing any adapter with your own (a carrier,
//! the shop, the mailer, the CRM, the shipment store); [`Connector::ingest`] a webhook from its
//! headers and body bytes (the same signature check, deduplication and storage as
//! `lazona-http`); and run the worker with [`Connector::run_worker`] or
//! [`Connector::spawn_worker`] (or [`Connector::drain`] in tests). Here a carrier of your own
//! books a signed order, in memory:
//!
//! ```
//! use connector::adapters::config::Settings;
//! use connector::domain::error::ShippingError;
//! use connector::adapters::memory::{MemoryMailer, MemoryShop};
//! use connector::domain::model::shipment::VendorProfile;
//! use connector::domain::model::{
//!     Parcel, ParcelBooking, Resource, ShipmentStatus, TrackingReport,
//! };
//! use connector::domain::ports::ShippingProvider;
//! use connector::domain::service::signature::WebhookSecret;
//! use connector::{Connector, IngestOutcome};
//! use std::sync::Arc;
//!
//! /// Your carrier: books every parcel.
//! struct MyCarrier;
//!
//! #[async_trait::async_trait]
//! impl ShippingProvider for MyCarrier {
//!     async fn book(&self, parcels: &[Parcel]) -> Result<Vec<ParcelBooking>, ShippingError> {
//!         let booked = |n: usize| ParcelBooking::Booked {
//!             barcode: format!("MY-{n}"),
//!             reference: String::new(),
//!             message: "ok".into(),
//!             label_pdf: b"%PDF-1.4".to_vec(),
//!         };
//!         Ok((0..parcels.len()).map(booked).collect())
//!     }
//!     async fn track(&self, _barcode: &str) -> Result<TrackingReport, ShippingError> {
//!         Err(ShippingError::Rejected { reason: "no tracking yet".into() })
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> anyhow::Result<()> {
//! let settings = Settings::from_toml(
//!     r#"
//!     webhook.secret = "s3cret"
//!     database.url = "sqlite::memory:"
//!     "#,
//! )?;
//! let vendor = VendorProfile { id: 6, email: "vendor@example.com".into(), ..Default::default() };
//! let mailer = Arc::new(MemoryMailer::new());
//! let connector = Connector::builder(settings)
//!     .carrier(Arc::new(MyCarrier))
//!     .shop(Arc::new(MemoryShop::new().with_vendor(vendor)))
//!     .mailer(mailer.clone())
//!     .build()
//!     .await?;
//!
//! let order = br#"{"id": 33, "order_key": "wc_order_33",
//!     "shipping_lines": [{"id": 1, "method_id": "flat_rate",
//!                         "meta_data": [{"key": "vendor_id", "value": "6"}]}],
//!     "line_items": [{"id": 1, "quantity": 1, "name": "Juice",
//!                     "meta_data": [{"key": "_vendor_id", "value": "6"}]}]}"#;
//! let headers = [
//!     ("X-WC-Webhook-Signature", WebhookSecret::new("s3cret").sign(order)),
//!     ("X-WC-Webhook-Topic", "order.created".into()),
//!     ("X-WC-Webhook-Delivery-ID", "delivery-1".into()),
//! ];
//! let outcome = connector.ingest(Resource::Order, headers, &order[..]).await?;
//! assert!(matches!(outcome, IngestOutcome::Stored { .. }));
//!
//! connector.drain().await?; // a long-running app: connector.spawn_worker(shutdown)
//! let shipments = connector.shipments().of_order(33).await?;
//! assert_eq!(shipments[0].status, ShipmentStatus::LabelSent);
//! assert_eq!(mailer.sent()[0].to, ["vendor@example.com"]);
//! # Ok(())
//! # }
//! ```
//!
//! `examples/embed.rs` does the same with a worker running in the background.
//!
//! # What is in here
//!
//! - [`builder`]: [`ConnectorBuilder`], the one composition root. `lazona-http`,
//!   `lazona-worker`, the `lazona` CLI, the benchmarks and embedders all build the connector
//!   through it: nothing else wires adapters to use cases.
//! - [`ingest()`]: a webhook request verified and stored with its job (the intake use case);
//!   [`answer`]: what every front answers it.
//! - [`worker`]: the worker loop, the job handler routing jobs to use cases, the retry policy.
//! - [`observe`]: the ports decorated with events and metrics; [`prometheus`](mod@prometheus): rendering them.
//! - [`serve`]: the HTTP accept loop with limits on slow and idle clients.
//! - [`shutdown_on_signal`].

pub mod answer;
pub mod builder;
mod ingest;
pub mod observe;
pub mod prometheus;
pub mod serve;
mod signal;
pub mod worker;

/// The adapters: the configuration ([`adapters::config::Settings`]), SQL storage, the clients.
pub use adapters;
pub use builder::{Connector, ConnectorBuilder};
/// The domain: models, ports (to implement your own adapters) and use cases.
pub use domain;
pub use ingest::{IngestError, IngestOutcome, count, count_too_large, ingest};
pub use observe::{EventRecorder, PRUNE_EVERY};
pub use prometheus::{prometheus, render as render_metrics, sample_queue, serve_metrics};
pub use signal::shutdown_on_signal;
pub use worker::{
    ConnectorHandler, JobHandler, Outcome, Periodic, RetryPolicy, Worker, WorkerOptions,
};
