//! `GET /api/v1/events`: the live stream of what the connector does, as Server-Sent Events.
//!
//! The stream is fed by polling the event log (the `events` table every server and worker
//! process writes to) after the client's cursor, so it shows what every process did. Writes in
//! this process wake it at once; otherwise it looks again every [`POLL`]. A client resumes where
//! it was with `Last-Event-ID` (which browsers' `EventSource` sends by itself) or `?after=ID`;
//! without either the stream starts with what happens next (`?after=0`: everything kept).
//!
//! Event ids are taken from one sequence by concurrent transactions, which can commit out of
//! order (on Postgres): when the next id is missing the stream waits for it up to [`GAP_WAIT`]
//! before going on, so that an event committed late is not skipped.
//!
//! Each message is `event: <kind>`, `id: <event id>` and `data: <the event as JSON>`; a comment
//! every [`KEEP_ALIVE`] keeps proxies from closing an idle stream.
//!
//! The token a stream was opened with is checked again before each batch of events is sent and
//! every [`RECHECK`] while nothing happens: once it no longer authenticates (revoked), the stream
//! ends, and nothing written after the revocation is sent.

use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use domain::model::{Event, EventId};
use domain::ports::{EventLog, TokenStore};
use futures_util::Stream;
use secrecy::{ExposeSecret as _, SecretString};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How often the log is read when nothing in this process wakes the stream.
pub const POLL: Duration = Duration::from_millis(500);
/// How long a missing id is waited for before the stream goes past it.
pub const GAP_WAIT: Duration = Duration::from_secs(2);
/// Events older than this after a missing id: the id will not come (a rolled-back transaction,
/// a pruned row), no need to wait.
const GAP_OLD: Duration = Duration::from_secs(10);
/// The interval of keep-alive comments.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How often a stream with nothing to send checks that its token still authenticates.
pub const RECHECK: Duration = Duration::from_secs(2);
/// Most events read at once.
const READ_BATCH: usize = 500;

/// The query of `GET /api/v1/events`.
#[derive(Debug, Default, serde::Deserialize)]
pub struct EventsQuery {
    /// Start after this event id (`Last-Event-ID` wins when both are given).
    pub after: Option<i64>,
}

/// The token a stream was opened with, to check it again while the stream is open.
#[derive(Clone)]
pub struct Bearer {
    /// Where tokens are looked up.
    pub tokens: Arc<dyn TokenStore>,
    /// The secret the client presented.
    pub secret: SecretString,
}

/// Where a stream starts: `Last-Event-ID`, else `?after=`, else `None` (from now on).
pub fn cursor(headers: &HeaderMap, query: &EventsQuery) -> Option<EventId> {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok())
        .or(query.after)
        .map(EventId)
}

/// The SSE response: the events after `after` (from now on when `None`), only those of
/// `vendor_id` when given, while `bearer` authenticates and until `shutdown` (so that a server's
/// graceful shutdown is not held up by open streams).
///
/// # Errors
/// The log's error when it cannot be read to find where "now" is.
pub async fn sse(
    log: Arc<dyn EventLog>,
    vendor_id: Option<i64>,
    after: Option<EventId>,
    bearer: Bearer,
    shutdown: CancellationToken,
) -> Result<Response, domain::error::EventError> {
    let after = match after {
        Some(after) => after,
        None => log.last_id().await?,
    };
    let stream = stream(log, vendor_id, after, bearer, shutdown);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response())
}

struct Cursor {
    log: Arc<dyn EventLog>,
    vendor_id: Option<i64>,
    /// Every id up to this one has been looked at.
    scanned: EventId,
    /// Since when the id after `scanned` has been missing while later ones are there.
    gap_since: Option<Instant>,
    ready: VecDeque<Event>,
    bearer: Bearer,
    /// When the token last authenticated.
    checked: Instant,
    shutdown: CancellationToken,
}

impl Cursor {
    /// Whether the stream's token still authenticates. A token store that cannot answer (the
    /// database down) does not end the stream: the token is checked again next time.
    async fn still_authenticated(&mut self) -> bool {
        let secret = self.bearer.secret.expose_secret();
        match self.bearer.tokens.authenticate(secret).await {
            Ok(Some(_)) => {
                self.checked = Instant::now();
                true
            }
            Ok(None) => {
                tracing::info!("event stream ended: its token no longer authenticates");
                false
            }
            Err(e) => {
                let error = domain::error::error_chain(&e);
                tracing::warn!(%error, "cannot check an event stream's token");
                true
            }
        }
    }

    /// Reads what follows `scanned`: contiguous ids are taken; past a missing id, only once it
    /// has been missing for [`GAP_WAIT`] or the events after it are old.
    async fn fill(&mut self) -> Result<(), domain::error::EventError> {
        let rows = self.log.read(self.scanned, None, READ_BATCH).await?;
        let now = chrono::Utc::now();
        for event in rows {
            if event.id.0 != self.scanned.0 + 1 {
                let since = *self.gap_since.get_or_insert_with(Instant::now);
                let old = (now - event.data.at).to_std().unwrap_or_default() > GAP_OLD;
                if !old && since.elapsed() < GAP_WAIT {
                    break;
                }
            }
            self.gap_since = None;
            self.scanned = event.id;
            if self.vendor_id.is_none() || event.data.vendor_id == self.vendor_id {
                self.ready.push_back(event);
            }
        }
        Ok(())
    }
}

/// The events after `after` as SSE messages, while `bearer` authenticates and until
/// `shutdown`.
pub fn stream(
    log: Arc<dyn EventLog>,
    vendor_id: Option<i64>,
    after: EventId,
    bearer: Bearer,
    shutdown: CancellationToken,
) -> impl Stream<Item = Result<SseEvent, Infallible>> + Send + 'static {
    let cursor = Cursor {
        log,
        vendor_id,
        scanned: after,
        gap_since: None,
        ready: VecDeque::new(),
        bearer,
        checked: Instant::now(),
        shutdown,
    };
    futures_util::stream::unfold(cursor, |mut c| async move {
        loop {
            if c.shutdown.is_cancelled() {
                return None;
            }
            if let Some(event) = c.ready.pop_front() {
                let message = SseEvent::default()
                    .id(event.id.to_string())
                    .event(event.data.kind.as_str())
                    .json_data(&event)
                    .unwrap_or_else(|_| SseEvent::default().comment("unserialisable event"));
                return Some((Ok(message), c));
            }
            if c.checked.elapsed() >= RECHECK && !c.still_authenticated().await {
                return None;
            }
            let before = c.scanned;
            if let Err(e) = c.fill().await {
                tracing::warn!(error = %domain::error::error_chain(&e), "event log unavailable");
            }
            // Nothing is sent for a token revoked since the last check.
            if !c.ready.is_empty() && !c.still_authenticated().await {
                return None;
            }
            if c.ready.is_empty() {
                let wait = if c.gap_since.is_some() || c.scanned == before {
                    POLL
                } else {
                    Duration::ZERO
                };
                if !wait.is_zero() {
                    tokio::select! {
                        () = c.log.wait(wait) => {}
                        () = c.shutdown.cancelled() => return None,
                    }
                }
            }
        }
    })
}

/// `GET /api/v1/events`: an admin's token sees every event, a vendor's only its own.
#[utoipa::path(
    get,
    path = "/api/v1/events",
    operation_id = "events_stream",
    tag = "events",
    params(
        ("after" = Option<i64>, Query, description = "Resume after this event id (or send Last-Event-ID); without either, events from now on"),
        ("Last-Event-ID" = Option<String>, Header, description = "The id of the last event received, as EventSource sends it on reconnection")
    ),
    responses(
        (status = 200, description = "Server-Sent Events: each event's `data` is its JSON (kind, at, webhook, job, shipment, order and vendor ids, message), its `id` the cursor to resume from; keep-alive comments in between", content_type = "text/event-stream", body = inline(crate::api::schemas::EventMessage)),
        (status = 400, description = "`after` is not an integer", body = crate::api::ErrorBody),
        (status = 401, description = "No token, or an unknown or revoked one (an open stream ends once its token is revoked)", body = crate::api::ErrorBody),
        (status = 503, description = "The event log is not configured", body = crate::api::ErrorBody),
    )
)]
pub(crate) async fn handler(
    principal: domain::model::Principal,
    axum::extract::State(state): axum::extract::State<crate::AppState>,
    headers: HeaderMap,
    crate::api::Query(query): crate::api::Query<EventsQuery>,
) -> Result<Response, crate::ApiError> {
    let Some(log) = state.events.clone() else {
        return Err(crate::ApiError::Unavailable(
            "the event log is not configured".into(),
        ));
    };
    let vendor_id = match principal {
        domain::model::Principal::Admin => None,
        domain::model::Principal::Vendor { vendor_id } => Some(vendor_id),
    };
    let bearer = Bearer {
        tokens: state.api()?.tokens.clone(),
        secret: crate::api::auth::bearer(&headers)?.into(),
    };
    sse(
        log,
        vendor_id,
        cursor(&headers, &query),
        bearer,
        state.shutdown.clone(),
    )
    .await
    .map_err(|e| crate::ApiError::Unavailable(domain::error::error_chain(&e)))
}
