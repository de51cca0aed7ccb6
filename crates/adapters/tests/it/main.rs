//! Integration tests of the SQL adapters against real SQLite and (with `TEST_DATABASE_URL`)
//! Postgres databases.

mod alerts;
mod audit;
mod config_file;
mod contract;
mod events;
mod helpers;
mod http_clients;
mod inbox;
mod mail;
mod mail_events;
mod queue;
mod redis_queue;
mod retention;
mod sandbox;
mod sentry_reports;
mod shipments;
mod shop_writes;
mod state;
mod sugarcrm;
mod tokens;
