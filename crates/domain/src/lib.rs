//! The La Zona connector's domain: what a webhook, an order, a customer, a shipment and a job
//! are, the use cases that act on them, and the ports through which those use cases reach the
//! outside world.
//!
//! This crate does no I/O and depends on no framework (no tokio, axum, sea-orm, reqwest, redis
//! or figment): adapters implement the [`ports`], applications wire them together.

pub mod error;
pub mod memory;
pub mod model;
pub mod ports;
pub mod service;

pub use error::{InboxError, QueueError};
