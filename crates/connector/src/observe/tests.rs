//! The decorators' tests.

use super::ports::*;
use super::recorder::*;
use crate::worker::{JobHandler, Worker};
use adapters::memory::MemoryShipmentStore;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::error::EventError;
use domain::error::JobError;
use domain::model::{
    BookingOutcome, Claim, EventKind, Job, JobKind, NewEvent, NewJob, ShipmentMethod,
    ShipmentStatus,
};
use domain::model::{Event, EventId};
use domain::ports::{EventLog, JobQueue, ShipmentStore};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

/// A log in memory.
#[derive(Default)]
struct Log {
    events: Mutex<Vec<NewEvent>>,
    appends: Mutex<usize>,
}

impl Log {
    fn kinds(&self) -> Vec<EventKind> {
        self.events
            .lock()
            .expect("lock")
            .iter()
            .map(|e| e.kind)
            .collect()
    }
}

#[async_trait]
impl EventLog for Log {
    async fn append(&self, events: &[NewEvent]) -> Result<(), EventError> {
        *self.appends.lock().expect("lock") += 1;
        self.events.lock().expect("lock").extend_from_slice(events);
        Ok(())
    }
    async fn read(&self, _: EventId, _: Option<i64>, _: usize) -> Result<Vec<Event>, EventError> {
        Ok(Vec::new())
    }
    async fn last_id(&self) -> Result<EventId, EventError> {
        Ok(EventId(0))
    }
    async fn prune(&self, _: DateTime<Utc>) -> Result<u64, EventError> {
        Ok(0)
    }
    async fn wait(&self, _: Duration) {}
}

/// A log that is down.
struct Down;

#[async_trait]
impl EventLog for Down {
    async fn append(&self, _: &[NewEvent]) -> Result<(), EventError> {
        Err(EventError::Unavailable("down".into()))
    }
    async fn read(&self, _: EventId, _: Option<i64>, _: usize) -> Result<Vec<Event>, EventError> {
        Err(EventError::Unavailable("down".into()))
    }
    async fn last_id(&self) -> Result<EventId, EventError> {
        Err(EventError::Unavailable("down".into()))
    }
    async fn prune(&self, _: DateTime<Utc>) -> Result<u64, EventError> {
        Err(EventError::Unavailable("down".into()))
    }
    async fn wait(&self, _: Duration) {}
}

#[tokio::test]
async fn events_are_written_in_batches_and_a_log_that_is_down_fails_nothing() {
    let log = Arc::new(Log::default());
    let recorder = EventRecorder::start(log.clone());
    for n in 0..1000 {
        recorder.record(NewEvent::now(EventKind::JobStarted, format!("job {n}")));
    }
    recorder.flush().await;
    assert_eq!(log.events.lock().expect("lock").len(), 1000);
    let appends = *log.appends.lock().expect("lock");
    assert!(appends <= 10, "batched: {appends} appends");

    let down = EventRecorder::start(Arc::new(Down));
    down.record(NewEvent::now(EventKind::JobDead, "x".repeat(10_000)));
    down.flush().await; // returns: the event is dropped, nothing fails
}

#[tokio::test]
async fn shipment_writes_become_events_with_their_vendor() {
    let log = Arc::new(Log::default());
    let events = EventRecorder::start(log.clone());
    let store = ObservedStore {
        inner: Arc::new(MemoryShipmentStore::new()),
        events: events.clone(),
    };
    let Claim::Claimed(s) = store
        .claim(33, 6, ShipmentMethod::Koiki)
        .await
        .expect("claim")
    else {
        panic!("new")
    };
    let booked = BookingOutcome {
        status: ShipmentStatus::LabelSent,
        delivery_id: "B1".into(),
        request: String::new(),
        message: "OK".into(),
        label_pdf: Some(b"%PDF".to_vec()),
    };
    store
        .record_booking(s.id, 0, &booked)
        .await
        .expect("booked");
    store.mark_mailed(s.id).await.expect("mailed");
    store
        .record_tracking(s.id, ShipmentStatus::InProcess, "on its way", "", None)
        .await
        .expect("tracked");
    // The same poll again: nothing changed, no event.
    store
        .record_tracking(s.id, ShipmentStatus::InProcess, "on its way", "", None)
        .await
        .expect("tracked");
    let Claim::Claimed(r) = store
        .claim(33, 7, ShipmentMethod::Koiki)
        .await
        .expect("claim")
    else {
        panic!("new")
    };
    let refused = BookingOutcome {
        status: ShipmentStatus::ErrorFromBody,
        delivery_id: String::new(),
        request: String::new(),
        message: "bad zip".into(),
        label_pdf: None,
    };
    store
        .record_booking(r.id, 0, &refused)
        .await
        .expect("refused");
    events.flush().await;

    assert_eq!(
        log.kinds(),
        [
            EventKind::ShipmentBooked,
            EventKind::LabelMailed,
            EventKind::TrackingChanged,
            EventKind::ShipmentRefused,
        ]
    );
    let written = log.events.lock().expect("lock").clone();
    assert_eq!(
        written.iter().map(|e| e.vendor_id).collect::<Vec<_>>(),
        [Some(6), Some(6), Some(6), Some(7)]
    );
    assert!(written.iter().all(|e| e.order_id == Some(33)));
    assert!(written[3].message.contains("bad zip"), "{:?}", written[3]);
}

struct Fails;

#[async_trait]
impl JobHandler for Fails {
    async fn handle(&self, job: &Job) -> Result<(), JobError> {
        match job.kind {
            JobKind::Noop { tag: 1 } => Ok(()),
            JobKind::Noop { tag: 2 } => Err(JobError::Transient {
                reason: "later".into(),
                retry_after: None,
            }),
            _ => Err(JobError::Permanent {
                reason: "never".into(),
            }),
        }
    }
}

#[tokio::test]
async fn an_observed_worker_records_each_jobs_start_and_outcome() {
    let db_settings = adapters::config::Settings::from_toml("database.url = \"sqlite::memory:\"")
        .expect("settings");
    let db = adapters::db::Database::connect(&db_settings.database)
        .await
        .expect("db");
    db.migrate().await.expect("migrate");
    let queue: Arc<dyn JobQueue> = Arc::new(adapters::db::SqlJobQueue::new(db.clone()));
    for tag in [1, 2, 3] {
        queue
            .enqueue(NewJob {
                kind: JobKind::Noop { tag },
                run_at: None,
            })
            .await
            .expect("enqueue");
    }
    let log = Arc::new(Log::default());
    let events = EventRecorder::start(log.clone());
    let options = crate::worker::WorkerOptions {
        retry: crate::worker::RetryPolicy {
            schedule: vec![Duration::from_secs(60)],
            jitter: 0.0,
        },
        ..crate::worker::WorkerOptions::default()
    };
    let worker = Worker::new(queue, Arc::new(Fails), options).observed(Some(events.clone()), None);
    let outcome = worker.drain().await.expect("drained");
    assert_eq!(
        (outcome.completed, outcome.retried, outcome.dead),
        (1, 1, 1)
    );
    events.flush().await;
    let mut kinds = log.kinds();
    kinds.sort_by_key(|k| k.as_str());
    assert_eq!(
        kinds,
        [
            EventKind::JobDead,
            EventKind::JobRetried,
            EventKind::JobStarted,
            EventKind::JobStarted,
            EventKind::JobStarted,
            EventKind::JobSucceeded,
        ]
    );
    assert!(
        log.events
            .lock()
            .expect("lock")
            .iter()
            .all(|e| e.job_id.is_some())
    );
}
