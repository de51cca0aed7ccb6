//! The webhook HTTP server (`lazona-http`): WooCommerce posts orders to `/api/deliveries/` and
//! customers to `/api/customers/`; each signed webhook is written to the inbox with its job in
//! one transaction before it is acknowledged.
//!
//! `/api/mail-events/mandrill` takes Mandrill's signed reports about the label mails
//! (delivered, bounced, ...) and maps them onto the shipments (`mail_events`).
//!
//! The operations API ([`api`], under `/api/v1/`, with bearer tokens) reads the inbox, the
//! shipments and the dead jobs and enqueues the operators' actions; `/docs` shows its OpenAPI
//! document.
//!
//! [`router`] builds the axum router from an [`AppState`] (tests drive it directly);
//! [`start`] builds the connector through its one composition root ([`connector::Connector`])
//! and serves it, with the worker in-process when configured (the embedded default), through
//! [`connector::serve`] (limits on slow and idle clients).

pub mod api;
mod assets;
mod dashboard;
mod error;
mod mail_events;
mod metrics;
mod trace;
mod webhooks;

pub use error::ApiError;
pub use mail_events::MailEventsEndpoint;

use adapters::config::Settings;
use adapters::db::{Database, SqlInbox};
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use connector::{Connector, serve};
use domain::ports::{EventLog, JobQueue, WebhookInbox};
use domain::service::signature::WebhookSecret;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// Where webhooks are written.
    pub inbox: Arc<dyn WebhookInbox>,
    /// The webhook secret; `None` answers signed webhooks 503.
    pub secret: Option<Arc<WebhookSecret>>,
    /// How long a request waits for its webhook to be committed before answering 503.
    pub commit_timeout: Duration,
    /// Bodies over this size are answered 413.
    pub max_body_bytes: usize,
    /// What the operations API needs; `None` answers it 503. (One `Arc`: the state is cloned
    /// for every request, the webhooks' included.)
    pub api: Option<Arc<api::ApiDeps>>,
    /// The event log behind `/api/v1/events`; `None` answers it 503.
    pub events: Option<Arc<dyn EventLog>>,
    /// What `/api/mail-events/mandrill` needs; `None` answers it 503.
    pub mail_events: Option<Arc<MailEventsEndpoint>>,
    /// The queue whose depth `/metrics` shows, and its backend's name (`sql`, `redis`).
    pub queue_stats: Option<(Arc<dyn JobQueue>, &'static str)>,
    /// Cancelled when the server shuts down: ends the event streams, which would hold up a
    /// graceful shutdown otherwise.
    pub shutdown: CancellationToken,
}

impl AppState {
    /// State over `inbox`, checking signatures with `secret`, with the default limits (10 s to
    /// commit, 1 MiB bodies).
    pub fn new(inbox: Arc<dyn WebhookInbox>, secret: Option<WebhookSecret>) -> Self {
        AppState {
            inbox,
            secret: secret.map(Arc::new),
            commit_timeout: Duration::from_secs(10),
            max_body_bytes: 1024 * 1024,
            api: None,
            events: None,
            mail_events: None,
            queue_stats: None,
            shutdown: CancellationToken::new(),
        }
    }
}

/// The routes: the two webhook endpoints (with and without the trailing slash), `/healthz`,
/// `/readyz`, `/metrics`, the operations API under `/api/v1/`, `/docs`, the dashboard at `/` and
/// their files under `/assets/`. Bodies over `state.max_body_bytes` are answered 413; every
/// failure, a 404 or a 405 included, has [`ApiError`]'s JSON shape. Every request has an id,
/// echoed in `X-Request-Id`, and a span with it (see the `trace` module).
pub fn router(state: AppState) -> Router {
    let max_body_bytes = state.max_body_bytes;
    let (operations, _) = api::routes().split_for_parts();
    let routes = Router::new()
        .merge(operations)
        .route("/", get(dashboard::page))
        .route("/docs", get(api::openapi::docs))
        .route("/api/deliveries/", post(webhooks::order))
        .route("/api/deliveries", post(webhooks::order))
        .route("/api/customers/", post(webhooks::customer))
        .route("/api/customers", post(webhooks::customer))
        .route(
            "/api/mail-events/mandrill",
            post(mail_events::mandrill)
                .head(mail_events::head)
                .layer(DefaultBodyLimit::max(
                    max_body_bytes.max(mail_events::MAX_BODY_BYTES),
                )),
        )
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::render))
        .merge(assets::routes())
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body_bytes));
    trace::layer(routes).with_state(state)
}

async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({ "status": "ok" }))
}

async fn readyz(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    match tokio::time::timeout(Duration::from_secs(5), state.inbox.ping()).await {
        Ok(Ok(())) => Ok(axum::Json(serde_json::json!({ "status": "ready" }))),
        Ok(Err(e)) => Err(ApiError::Unavailable(domain::error::error_chain(&e))),
        Err(_) => Err(ApiError::Unavailable(
            "database did not answer in time".into(),
        )),
    }
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// A running server.
pub struct Running {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// Its database.
    pub db: Database,
    /// Its inbox.
    pub inbox: Arc<SqlInbox>,
    /// Ends when the server has stopped (after `shutdown` is cancelled).
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// The router over `connector`: the webhooks stored through its intake, the operations API over
/// its stores.
pub fn state(connector: &Connector, settings: &Settings, shutdown: CancellationToken) -> AppState {
    let mut state = AppState::new(connector.inbox(), None);
    state.secret = connector.secret();
    state.max_body_bytes = settings.webhook.max_body_bytes;
    state.api = Some(Arc::new(api::ApiDeps {
        shipments: connector.shipments(),
        queue: connector.queue(),
        tokens: connector.tokens(),
        alerts: connector.alerts().store().clone(),
        mail_events: connector.mail_events(),
        audit: connector.audit(),
        events: connector.events(),
        connector: connector.clone(),
    }));
    state.events = Some(connector.events());
    state.mail_events = Some(Arc::new(MailEventsEndpoint {
        tracking: connector.mail_tracking(),
        key: settings.mail.events_key.clone(),
        url: Some(settings.mail.events_url.trim().to_owned()).filter(|u| !u.is_empty()),
    }));
    state.queue_stats = connector.queue_stats();
    state.shutdown = shutdown;
    state
}

/// Builds the connector ([`connector::ConnectorBuilder`]: the database, its migrations unless
/// disabled, the inbox, the queue), and serves on `listener` until `shutdown` is cancelled, with
/// the worker in-process when [`Settings::embedded_worker`] says so. Returns once the server
/// accepts requests.
///
/// # Errors
/// When the database cannot be reached or migrated, or the queue opened.
pub async fn start(
    settings: &Settings,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<Running> {
    let mut builder = Connector::builder(settings.clone());
    if !settings.embedded_worker() {
        builder = builder.without_worker();
    }
    let connector = builder.build().await?;
    // The process's Prometheus recorder, before anything records.
    connector::prometheus();
    let app = router(state(&connector, settings, shutdown.clone()));
    let addr = listener.local_addr()?;
    let worker = connector
        .worker()
        .is_some()
        .then(|| connector.spawn_worker(shutdown.clone()));
    let limits = serve::Limits {
        header_read_timeout: settings.server.header_read_timeout_secs,
        body_read_timeout: settings.server.body_read_timeout_secs,
        max_connections: serve::connection_cap(settings.server.max_connections),
        on_body_timeout: |allowed| {
            ApiError::BodyTimeout {
                secs: allowed.as_secs(),
            }
            .into_response()
        },
    };
    let task = tokio::spawn(async move {
        tracing::info!(%addr, max_connections = limits.max_connections, "listening");
        serve::serve(listener, app, limits, shutdown).await;
        if let Some(worker) = worker {
            let _ = worker.await;
        }
        tracing::info!("server stopped");
        Ok(())
    });
    Ok(Running {
        addr,
        db: connector.database().clone(),
        inbox: connector.sql_inbox(),
        task,
    })
}
