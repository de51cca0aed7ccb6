//! Use cases: pure decisions and orchestration over the ports.

pub mod intake;
pub mod process;
pub mod signature;
