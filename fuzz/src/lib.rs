//! What the fuzz targets share: the parsers processing runs on a stored webhook body, named once
//! so that the targets follow processing when it changes parser.
//!
//! The targets themselves are in `fuzz_targets/` (`cargo xtask fuzz`, or
//! `cargo +nightly fuzz run <target>` from the repository root); their seeds in `seeds/<target>/`.

use domain::model::payload::{self, PayloadError};
use domain::model::{Customer, Order};

/// The order parser processing runs (`ShipmentJobs::process_order`, `process_webhook`).
pub fn processing_order(body: &[u8]) -> Result<Order, PayloadError> {
    payload::order(body)
}

/// The customer parser processing runs (`CustomerJobs`, `process_webhook`).
pub fn processing_customer(body: &[u8]) -> Result<Customer, PayloadError> {
    payload::customer(body)
}
