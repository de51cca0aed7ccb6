//! The worker as a real process: crash recovery (`kill -9` in the middle of jobs under load)
//! against real databases.

mod crash;
mod observability;
