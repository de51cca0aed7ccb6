//! Implementations of the domain's ports, and the plumbing the binaries share.
//!
//! - [`config`]: the figment loader (defaults < TOML file < legacy env names < `LAZONA_*`).
//! - [`db`]: sea-orm storage on SQLite or Postgres: the webhook inbox with its group-commit
//!   writer, the jobs table and its queue, and the migrations.
//! - [`http`]: the reqwest client and helpers the Koiki, SugarCRM and WordPress clients share.
//! - [`koiki`]: the Koiki carrier client (booking and tracking) over HTTP.
//! - [`mail`]: the SMTP mailer (lettre, with `TCP_NODELAY` connections).
//! - [`mandrill`]: Mandrill's message-event webhooks: their signature, their events read.
//! - [`queue`]: opens the configured queue backend.
//! - [`redact`]: passwords masked in any text that may carry a URL; a URL's problem named.
//! - [`redis_queue`]: the job queue on Redis Streams, fed from the SQL jobs table as an outbox.
//! - `sandbox` (feature `sandbox`): fake third parties and an SMTP sink, for `lazona sandbox`.
//! - [`smtp_sink`]: a real SMTP server that keeps what it receives, for tests and the sandbox.
//! - [`sugarcrm`]: the SugarCRM client (members' relationship roles) over the v4.1 REST API.
//! - [`telemetry`]: tracing set-up for every binary, and error reports to Sentry (`SENTRY_DSN`).
//! - [`wordpress`]: the shop client (WCFM vendors, WooCommerce orders, WordPress users).
//! - `testing` (feature `testing`): throwaway databases for the workspace's test suites.

pub mod alert_hook;
pub mod config;
pub mod db;
pub mod http;
pub mod koiki;
pub mod mail;
pub mod mandrill;
pub mod memory;
pub mod queue;
pub mod redact;
pub mod redis_queue;
#[cfg(feature = "sandbox")]
pub mod sandbox;
pub mod smtp_sink;
pub mod sugarcrm;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod wordpress;
