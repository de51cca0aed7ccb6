//! Use cases: pure decisions and orchestration over the ports.

pub mod fulfilment;
pub mod intake;
pub mod process;
pub mod shipping;
pub mod signature;
