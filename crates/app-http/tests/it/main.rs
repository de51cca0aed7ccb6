//! Integration tests of `lazona-http` through real HTTP requests, on SQLite and, when
//! `TEST_DATABASE_URL` is set (always in CI), on Postgres.

mod alerts;
mod api;
mod catalogue;
mod customers;
mod dashboard;
mod document;
mod errors;
mod events;
mod helpers;
mod intake;
mod limits;
mod mail_events;
mod notifications;
mod outage;
mod request_ids;
mod sandbox;
mod sentry_reports;
mod shipping;
mod shop_loop;
mod startup;
mod web;
