//! Use cases: pure decisions and orchestration over the ports.

pub mod alerts;
pub mod customers;
pub mod fulfilment;
pub mod intake;
pub mod mail_events;
pub mod mails;
pub mod operations;
pub mod process;
pub mod reconcile;
pub mod retention;
pub mod shipment_jobs;
pub mod shipping;
pub mod shop_sync;
pub mod signature;
