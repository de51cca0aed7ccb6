//! The connector as a library: embedded with a carrier of its own, on real databases.

mod embedding;
