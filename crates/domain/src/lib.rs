//! The La Zona connector's domain: what a webhook, an order, a customer, a shipment and a job
//! are, the use cases that act on them, and the ports through which those use cases reach the
//! outside world.
//!
//! This crate does no I/O and depends on no framework (no tokio, axum, sea-orm, reqwest, redis
//! or figment): adapters implement the [`ports`], applications wire them together.

// `domain::` names this crate from inside it too, as the shared in-memory adapters' file does.
#[cfg(test)]
extern crate self as domain;

pub mod error;
/// The in-memory adapters (`adapters::memory`), for this crate's own unit tests only.
#[cfg(test)]
#[path = "../../adapters/src/memory.rs"]
#[allow(
    dead_code,
    unreachable_pub,
    reason = "adapters' public module; these tests use part of it"
)]
pub(crate) mod memory;
pub mod model;
pub mod ports;
pub mod service;

pub use error::{InboxError, QueueError};
