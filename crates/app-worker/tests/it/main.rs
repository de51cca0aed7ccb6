//! The worker as a real process: crash recovery (`kill -9` in the middle of jobs under load)
//! against real databases; and the connector embedded as a library.

mod crash;
mod embedding;
mod observability;
