//! The [`EventLog`] contract: appended events read back as written, in id order, after a cursor
//! and up to a limit, all or one vendor's; ids increase in the order events were written, across
//! writers; `last_id` is where a stream starting now begins; `prune` deletes the events older
//! than the retention and says how many; `wait` returns by its timeout.

use super::{Checks, check, run_checks};
use chrono::{DateTime, TimeDelta, Utc};
use domain::model::{EventId, EventKind, NewEvent};
use domain::ports::EventLog;
use std::any::Any;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A fresh, empty log and what keeps its storage alive.
pub type Fresh = (Arc<dyn EventLog>, Box<dyn Any + Send>);

const CHECKS: Checks<Fresh> = &[
    check!(Fresh, an_empty_log_starts_at_zero),
    check!(Fresh, appended_events_read_back_as_written_in_order),
    check!(Fresh, reads_resume_after_the_cursor_up_to_the_limit),
    check!(Fresh, a_vendor_reads_only_its_own_events),
    check!(Fresh, pruning_deletes_only_what_is_older_than_the_retention),
    check!(Fresh, concurrent_writers_each_get_distinct_ids),
    check!(Fresh, wait_returns_by_its_timeout),
];

/// The names of the checks, in the order they run.
pub fn checks() -> Vec<&'static str> {
    super::names(CHECKS)
}

/// Runs every check, each on a fresh log from `make`.
///
/// # Panics
/// On the first broken promise, naming the backend and the check.
pub async fn run_all<F, Fut>(backend: &str, make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Fresh>,
{
    run_checks(backend, make, CHECKS, &[]).await;
}

/// Runs every check but those in `known_divergent` (names from [`checks`]).
///
/// # Panics
/// On the first broken promise, or for a name that is not a check.
pub async fn run_except<F, Fut>(backend: &str, make: F, known_divergent: &[&str])
where
    F: Fn() -> Fut,
    Fut: Future<Output = Fresh>,
{
    run_checks(backend, make, CHECKS, known_divergent).await;
}

/// Now, to the millisecond (what every backend keeps), `offset` later.
fn now_ms(offset: TimeDelta) -> DateTime<Utc> {
    DateTime::from_timestamp_millis((Utc::now() + offset).timestamp_millis()).expect("time")
}

fn event(kind: EventKind, message: &str) -> NewEvent {
    let mut e = NewEvent::now(kind, message);
    e.at = now_ms(TimeDelta::zero());
    e
}

async fn read_all(log: &dyn EventLog) -> Vec<domain::model::Event> {
    log.read(EventId(0), None, 10_000).await.expect("read")
}

async fn an_empty_log_starts_at_zero(backend: String, (log, _guard): Fresh) {
    assert_eq!(log.last_id().await.expect("last"), EventId(0), "{backend}");
    assert!(read_all(log.as_ref()).await.is_empty(), "{backend}");
    log.append(&[]).await.expect("appending nothing");
    assert_eq!(
        log.last_id().await.expect("last"),
        EventId(0),
        "{backend}: still empty"
    );
    assert_eq!(
        log.prune(Utc::now()).await.expect("prune"),
        0,
        "{backend}: nothing to prune"
    );
}

async fn appended_events_read_back_as_written_in_order(backend: String, (log, _guard): Fresh) {
    let written = vec![
        event(EventKind::WebhookReceived, "order.created queued")
            .webhook(11)
            .order(33),
        event(EventKind::JobStarted, "process webhook 11").job(4),
        event(EventKind::ShipmentBooked, "booked «B1»").shipment(2, 33, 6),
        event(EventKind::MemberUpgraded, ""),
    ];
    log.append(&written).await.expect("append");
    let read = read_all(log.as_ref()).await;
    assert_eq!(
        read.iter().map(|e| e.data.clone()).collect::<Vec<_>>(),
        written,
        "{backend}: every field, in the order appended"
    );
    assert!(
        read.windows(2).all(|w| w[0].id < w[1].id),
        "{backend}: ids increase: {read:?}"
    );
    assert!(read[0].id > EventId(0), "{backend}: ids start above 0");
    assert_eq!(
        log.last_id().await.expect("last"),
        read[3].id,
        "{backend}: the latest id"
    );
    let more = event(EventKind::LabelMailed, "mailed").shipment(2, 33, 6);
    log.append(std::slice::from_ref(&more))
        .await
        .expect("append");
    let after = log.read(read[3].id, None, 10).await.expect("read");
    assert_eq!(after.len(), 1, "{backend}");
    assert!(
        after[0].id > read[3].id,
        "{backend}: a later append, a higher id"
    );
    assert_eq!(after[0].data, more, "{backend}");
    assert_eq!(log.last_id().await.expect("last"), after[0].id, "{backend}");
}

async fn reads_resume_after_the_cursor_up_to_the_limit(backend: String, (log, _guard): Fresh) {
    let written: Vec<NewEvent> = (0..7)
        .map(|n| event(EventKind::JobSucceeded, &format!("job {n}")).job(n))
        .collect();
    log.append(&written).await.expect("append");
    let all = read_all(log.as_ref()).await;
    assert_eq!(all.len(), 7, "{backend}");
    let mut cursor = EventId(0);
    let mut pages = Vec::new();
    loop {
        let page = log.read(cursor, None, 3).await.expect("read");
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 3, "{backend}: at most the limit");
        assert!(
            page.iter().all(|e| e.id > cursor),
            "{backend}: only after the cursor"
        );
        cursor = page[page.len() - 1].id;
        pages.push(page.len());
        assert!(pages.len() <= 10, "{backend}: reading never ends");
    }
    assert_eq!(pages, [3, 3, 1], "{backend}: pages of the limit");
    assert_eq!(cursor, all[6].id, "{backend}");
    assert_eq!(
        log.read(all[2].id, None, 2)
            .await
            .expect("read")
            .iter()
            .map(|e| e.id)
            .collect::<Vec<_>>(),
        [all[3].id, all[4].id],
        "{backend}: the next ones, in id order"
    );
    assert!(
        log.read(log.last_id().await.expect("last"), None, 10)
            .await
            .expect("read")
            .is_empty(),
        "{backend}: nothing after the latest"
    );
}

async fn a_vendor_reads_only_its_own_events(backend: String, (log, _guard): Fresh) {
    log.append(&[
        event(EventKind::WebhookReceived, "no vendor").order(33),
        event(EventKind::ShipmentBooked, "six").shipment(1, 33, 6),
        event(EventKind::ShipmentBooked, "seven").shipment(2, 33, 7),
        event(EventKind::LabelMailed, "six mailed").shipment(1, 33, 6),
        event(EventKind::LabelMailed, "seven mailed").shipment(2, 33, 7),
    ])
    .await
    .expect("append");
    let messages = |events: Vec<domain::model::Event>| {
        events
            .into_iter()
            .map(|e| e.data.message)
            .collect::<Vec<_>>()
    };
    let six = log.read(EventId(0), Some(6), 100).await.expect("read");
    let first_six = six[0].id;
    assert_eq!(messages(six), ["six", "six mailed"], "{backend}");
    assert_eq!(
        messages(log.read(first_six, Some(6), 100).await.expect("read")),
        ["six mailed"],
        "{backend}: after the cursor too"
    );
    assert_eq!(
        messages(log.read(EventId(0), Some(7), 1).await.expect("read")),
        ["seven"],
        "{backend}: the limit counts the vendor's events"
    );
    assert!(
        log.read(EventId(0), Some(8), 100)
            .await
            .expect("read")
            .is_empty(),
        "{backend}: none of another vendor"
    );
    assert_eq!(
        log.read(EventId(0), None, 100).await.expect("read").len(),
        5,
        "{backend}: all, with no vendor"
    );
}

async fn pruning_deletes_only_what_is_older_than_the_retention(
    backend: String,
    (log, _guard): Fresh,
) {
    let cutoff = now_ms(-TimeDelta::days(7));
    let mut old = event(EventKind::JobDead, "old").job(1);
    old.at = cutoff - TimeDelta::milliseconds(1);
    let mut older = event(EventKind::JobDead, "older").job(2);
    older.at = cutoff - TimeDelta::days(30);
    let mut boundary = event(EventKind::JobRetried, "at the cutoff").job(3);
    boundary.at = cutoff;
    let recent = event(EventKind::JobSucceeded, "recent").job(4);
    log.append(&[old, boundary, older, recent])
        .await
        .expect("append");
    let last = log.last_id().await.expect("last");
    assert_eq!(
        log.prune(cutoff).await.expect("prune"),
        2,
        "{backend}: the two before the cutoff"
    );
    assert_eq!(
        read_all(log.as_ref())
            .await
            .into_iter()
            .map(|e| e.data.message)
            .collect::<Vec<_>>(),
        ["at the cutoff", "recent"],
        "{backend}: an event at the cutoff is kept"
    );
    assert_eq!(log.prune(cutoff).await.expect("prune"), 0, "{backend}");
    assert_eq!(
        log.last_id().await.expect("last"),
        last,
        "{backend}: the latest id stays"
    );
    log.append(&[event(EventKind::JobStarted, "after")])
        .await
        .expect("append");
    assert!(
        log.last_id().await.expect("last") > last,
        "{backend}: ids keep increasing after a prune"
    );
}

async fn concurrent_writers_each_get_distinct_ids(backend: String, (log, _guard): Fresh) {
    let mut set = tokio::task::JoinSet::new();
    for writer in 0..4_i64 {
        let log = log.clone();
        set.spawn(async move {
            for n in 0..5_i64 {
                let events = [
                    event(EventKind::JobStarted, &format!("{writer}/{n}/a")).job(writer),
                    event(EventKind::JobSucceeded, &format!("{writer}/{n}/b")).job(writer),
                ];
                log.append(&events).await.expect("append");
            }
        });
    }
    set.join_all().await;
    let all = read_all(log.as_ref()).await;
    assert_eq!(all.len(), 40, "{backend}: every event kept");
    assert!(
        all.windows(2).all(|w| w[0].id < w[1].id),
        "{backend}: distinct ids, in order"
    );
    for writer in 0..4_i64 {
        let mine: Vec<&str> = all
            .iter()
            .filter(|e| e.data.job_id == Some(writer))
            .map(|e| e.data.message.as_str())
            .collect();
        let expected: Vec<String> = (0..5)
            .flat_map(|n| [format!("{writer}/{n}/a"), format!("{writer}/{n}/b")])
            .collect();
        assert_eq!(mine, expected, "{backend}: a writer's events in its order");
    }
}

async fn wait_returns_by_its_timeout(backend: String, (log, _guard): Fresh) {
    let started = Instant::now();
    log.wait(Duration::from_millis(200)).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{backend}: wait outlived its timeout: {:?}",
        started.elapsed()
    );
    // Appending while a reader waits: the reader then reads the event.
    let waiter = {
        let log = log.clone();
        tokio::spawn(async move {
            log.wait(Duration::from_secs(2)).await;
            log.read(EventId(0), None, 10).await.expect("read")
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    log.append(&[event(EventKind::JobStarted, "wake")])
        .await
        .expect("append");
    let mut seen = waiter.await.expect("waiter");
    if seen.is_empty() {
        // Woken before the event was visible, or not woken at all: it reads it next time.
        seen = read_all(log.as_ref()).await;
    }
    assert_eq!(seen.len(), 1, "{backend}");
}
