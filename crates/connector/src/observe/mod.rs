//! What the worker tells the world about its work: events for the live stream and Prometheus
//! metrics, both recorded by decorators around the ports, so that neither the use cases nor the
//! [`Worker`](crate::worker::Worker) loop change.
//!
//! - [`EventRecorder`] appends events to an [`EventLog`](domain::ports::EventLog) in batches from a task of its own:
//!   recording never waits and never fails a job (when the log is slow or down, events are
//!   dropped and counted in `lazona_events_dropped_total`).
//! - [`Worker::observed`](crate::worker::Worker::observed) wraps the worker's queue and handler: `job_started`, `job_succeeded`,
//!   `job_retried` and `job_dead` events, `lazona_job_duration_seconds{kind,result}` and
//!   `lazona_jobs_total{kind,outcome}`; it also schedules the events' pruning
//!   ([`JobKind::PruneEvents`](domain::model::JobKind::PruneEvents), hourly).
//! - [`shipment_jobs`] and [`customer_jobs`] wrap the carrier, the shop,
//!   the CRM and the mailer (`lazona_external_call_duration_seconds{service,call}`,
//!   `lazona_external_call_errors_total{service,call,error}`) and the shipment store, whose
//!   writes are the shipments' events: a booking recorded is `shipment_booked` (or `refused`,
//!   or `picked_up`), a shipment marked mailed is `label_mailed` (or `booking_error_mailed`), a
//!   tracking poll that changed something is `tracking_changed`; a WordPress user's roles
//!   changed is `member_upgraded` (the customer job changes roles for nothing else).

mod ports;
mod recorder;
#[cfg(test)]
mod tests;
mod worker;

pub use ports::{customer_jobs, shipment_jobs};
pub use recorder::EventRecorder;
pub use worker::PRUNE_EVERY;
