//! What the fuzz targets share: the parsers processing runs on a stored webhook body, named once
//! so that the targets follow processing when it changes parser.
//!
//! The targets themselves are in `fuzz_targets/` (`cargo xtask fuzz`, or
//! `cargo +nightly fuzz run <target>` from the repository root); their seeds in `seeds/<target>/`.

use domain::model::{Customer, Order};

/// The order parser processing runs (`process_webhook`, `ShipmentJobs::process_order`).
pub fn processing_order(body: &[u8]) -> Result<Order, serde_json::Error> {
    serde_json::from_slice::<Order>(body)
}

/// The customer parser processing runs (`process_webhook`, `CustomerJobs`).
pub fn processing_customer(body: &[u8]) -> Result<Customer, serde_json::Error> {
    serde_json::from_slice::<Customer>(body)
}
