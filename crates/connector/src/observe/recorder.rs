//! [`EventRecorder`]: events appended to the log in batches from a task of its own; recording
//! never waits and never fails a job.

use domain::model::NewEvent;
use domain::ports::EventLog;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Events waiting to be written, at most; past that they are dropped (and counted).
pub(super) const RECORDER_CAPACITY: usize = 8192;
/// Most events per append.
pub(super) const RECORDER_BATCH: usize = 512;
/// The longest message kept in an event.
pub(super) const MESSAGE_MAX: usize = 300;

pub(super) enum Msg {
    Event(NewEvent),
    Flush(oneshot::Sender<()>),
}

/// Appends events to an [`EventLog`] in batches, best-effort, from a task of its own. Cheap to
/// clone; the task ends when the last clone is dropped, after writing what it was given.
#[derive(Clone)]
pub struct EventRecorder {
    tx: mpsc::Sender<Msg>,
}

impl std::fmt::Debug for EventRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventRecorder").finish_non_exhaustive()
    }
}

impl EventRecorder {
    /// Starts the writing task on the current tokio runtime.
    pub fn start(log: Arc<dyn EventLog>) -> Self {
        let (tx, rx) = mpsc::channel(RECORDER_CAPACITY);
        tokio::spawn(write_events(log, rx));
        EventRecorder { tx }
    }

    /// Records `event`; returns at once. Dropped (and counted) when too many are waiting.
    pub fn record(&self, mut event: NewEvent) {
        if event.message.len() > MESSAGE_MAX {
            let mut end = MESSAGE_MAX;
            while !event.message.is_char_boundary(end) {
                end -= 1;
            }
            event.message.truncate(end);
            event.message.push('…');
        }
        if self.tx.try_send(Msg::Event(event)).is_err() {
            metrics::counter!("lazona_events_dropped_total").increment(1);
        }
    }

    /// Waits until the events recorded before this call are written (or dropped): for tests and
    /// for draining.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Msg::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

pub(super) async fn write_events(log: Arc<dyn EventLog>, mut rx: mpsc::Receiver<Msg>) {
    let mut batch = Vec::with_capacity(RECORDER_BATCH);
    let mut flushes = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(msg) = next {
            match msg {
                Msg::Event(e) => batch.push(e),
                Msg::Flush(done) => flushes.push(done),
            }
            next = if batch.len() < RECORDER_BATCH {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        if !batch.is_empty() {
            match log.append(&batch).await {
                Ok(()) => {
                    metrics::counter!("lazona_events_written_total").increment(batch.len() as u64);
                }
                Err(e) => {
                    metrics::counter!("lazona_events_dropped_total").increment(batch.len() as u64);
                    tracing::warn!(error = %domain::error::error_chain(&e), events = batch.len(), "events not written");
                }
            }
            batch.clear();
        }
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
    }
}
