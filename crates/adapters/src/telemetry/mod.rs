//! Tracing set-up shared by the binaries, and their error reports to Sentry.
//!
//! [`init`] installs the global subscriber: log lines on standard error ([`subscriber`]) and, when
//! `sentry.dsn` (`SENTRY_DSN`) is set, the `sentry` crate's tracing layers
//! ([`subscriber_with_sentry`]): every ERROR event becomes a Sentry event, and the INFO and WARN
//! events before it go along as its breadcrumbs (never as events of their own); DEBUG and TRACE
//! events, spans and performance data are never sent. Events leave from a background thread
//! over the workspace's reqwest client (rustls on ring); [`TelemetryGuard`], kept by `main`,
//! flushes them on exit.
//!
//! What is sent: an event's message, level, target, file and line, and its fields (Sentry's
//! `Rust Tracing Fields` context), filtered by [`scrub`]: `send_default_pii` is off; no request,
//! user or host name; a field named like a body, payload, secret, password, token,
//! authorization, signature, email, address, phone, cookie, credential or DSN is sent as
//! `[Filtered]`, whatever its level (`tracing::error!(secret = %s, body = %json, "...")` sends
//! neither); whatever follows `body=`, `args=`, `params=` or `payload=` in a message or a value
//! is cut, and URL passwords are masked. A field that is not named so is sent as logged: a dead
//! letter's `reason`, for instance, may quote the first characters of a third party's error
//! answer.

pub mod scrub;

use crate::config::SentryConfig;
use secrecy::ExposeSecret as _;
use std::ffi::OsStr;
use std::io::IsTerminal as _;
use std::sync::Arc;
use std::time::Duration;
use tracing::Level;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::{LevelFilter, filter_fn};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;

/// How long the events still queued may take to leave when the guard is dropped.
const FLUSH_ON_EXIT: Duration = Duration::from_secs(2);

/// How long one call to Sentry may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether `format` (`log.format`: `LOG_FORMAT` or `LAZONA_LOG__FORMAT`) asks for JSON lines.
pub fn is_json(format: &str) -> bool {
    format.trim().eq_ignore_ascii_case("json")
}

/// Whether text logs are coloured: only on a terminal, and never when `NO_COLOR` is set to
/// anything but an empty string (<https://no-color.org>).
pub fn colour(terminal: bool, no_color: Option<&OsStr>) -> bool {
    terminal && no_color.is_none_or(OsStr::is_empty)
}

/// The subscriber the binaries install without Sentry, writing to `writer`: one JSON object per
/// line (the event's fields flattened beside `timestamp`, `level`, `target` and `message`, and
/// the current spans) when `format` is `json`, compact text otherwise, with ANSI colours only
/// when `ansi`.
pub fn subscriber<W>(
    format: &str,
    filter: EnvFilter,
    writer: W,
    ansi: bool,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    layered(format, filter, writer, ansi, false)
}

/// [`subscriber`] with the Sentry layers: ERROR events are captured as Sentry events on the
/// current hub, INFO and WARN events added to its scope as breadcrumbs. Nothing is sent unless
/// that hub has a client ([`sentry_client`], bound by [`init`]).
pub fn subscriber_with_sentry<W>(
    format: &str,
    filter: EnvFilter,
    writer: W,
    ansi: bool,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    layered(format, filter, writer, ansi, true)
}

fn layered<W>(
    format: &str,
    filter: EnvFilter,
    writer: W,
    ansi: bool,
    sentry: bool,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    use sentry::integrations::tracing::{BreadcrumbLayer, ErrorLayer};
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi);
    let fmt = if is_json(format) {
        fmt.json().flatten_event(true).boxed()
    } else {
        fmt.compact().boxed()
    };
    let breadcrumbs = sentry.then(|| {
        BreadcrumbLayer::new().with_filter(filter_fn(|m| {
            matches!(*m.level(), Level::WARN | Level::INFO)
        }))
    });
    let errors = sentry.then(|| ErrorLayer::new().with_filter(LevelFilter::ERROR));
    Box::new(
        tracing_subscriber::registry()
            .with(filter)
            .with(fmt)
            .with(breadcrumbs)
            .with(errors),
    )
}

/// The Sentry client `config` asks for: `None` without a DSN.
///
/// The client sends from a thread of its own through the adapters' reqwest client
/// ([`crate::http::http_client`]); every event and breadcrumb goes through [`scrub`] first.
///
/// # Errors
/// A message naming what is wrong (never the DSN itself) when the DSN does not parse or the
/// HTTP client cannot be built.
pub fn sentry_client(config: &SentryConfig) -> Result<Option<Arc<sentry::Client>>, String> {
    let Some(dsn) = config.dsn.as_ref() else {
        return Ok(None);
    };
    let dsn: sentry::types::Dsn = dsn
        .expose_secret()
        .trim()
        .parse()
        .map_err(|e| format!("sentry.dsn (SENTRY_DSN) is not a Sentry DSN: {e}"))?;
    let http = crate::http::http_client(SEND_TIMEOUT)
        .map_err(|e| format!("no HTTP client for Sentry: {e}"))?;
    let rate = config.sample_rate;
    let mut options = sentry::ClientOptions::new()
        .sample_rate(if rate.is_nan() {
            1.0
        } else {
            rate.clamp(0.0, 1.0)
        })
        .send_default_pii(false)
        .max_request_body_size(sentry::MaxRequestBodySize::None)
        .max_breadcrumbs(50)
        .shutdown_timeout(FLUSH_ON_EXIT);
    options.dsn = Some(dsn);
    options.environment = Some(config.environment.clone().into());
    options.release = Some(concat!("lazona-connector@", env!("CARGO_PKG_VERSION")).into());
    options.before_send = Some(Arc::new(scrub::event));
    options.before_breadcrumb = Some(Arc::new(scrub::breadcrumb));
    options.transport = Some(Arc::new(Transport(http)));
    Ok(Some(Arc::new(sentry::Client::from(
        sentry::apply_defaults(options),
    ))))
}

/// Sentry's reqwest transport over the adapters' own client, so that the workspace keeps one
/// reqwest and one TLS set-up.
struct Transport(reqwest::Client);

impl sentry::TransportFactory for Transport {
    fn create_transport_with_options(
        &self,
        options: sentry::TransportOptions,
    ) -> Arc<dyn sentry::Transport> {
        Arc::new(
            sentry::transports::ReqwestHttpTransportOptions::from(options)
                .with_client(self.0.clone())
                .build(),
        )
    }
}

/// Keeps the Sentry client of [`init`]: dropped, it sends what is still queued (for up to two
/// seconds) and closes the client. Keep it in `main` for the process's life.
#[must_use = "dropping the guard stops the error reports"]
#[derive(Default)]
pub struct TelemetryGuard {
    sentry: Option<Arc<sentry::Client>>,
}

impl TelemetryGuard {
    /// Whether errors are reported to Sentry.
    pub fn reporting(&self) -> bool {
        self.sentry.is_some()
    }

    /// Waits up to `timeout` for the queued events to be sent; whether they were (true when
    /// nothing is reported).
    pub fn flush(&self, timeout: Duration) -> bool {
        self.sentry
            .as_ref()
            .is_none_or(|client| client.flush(Some(timeout)))
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(client) = self.sentry.take() {
            client.close(Some(FLUSH_ON_EXIT));
        }
    }
}

impl std::fmt::Debug for TelemetryGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelemetryGuard")
            .field("reporting", &self.reporting())
            .finish()
    }
}

/// Installs the global subscriber: `RUST_LOG` filters (default `info`), `format` is `json` or
/// anything else for compact text, on standard error, coloured only when standard error is a
/// terminal and `NO_COLOR` is not set; with `sentry.dsn`, errors are reported to Sentry (see the
/// module doc). A DSN that does not parse is logged as an error and nothing is reported. Call
/// once, from `main`, and keep the guard.
pub fn init(format: &str, sentry: &SentryConfig) -> TelemetryGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let (client, problem) = match sentry_client(sentry) {
        Ok(client) => (client, None),
        Err(problem) => (None, Some(problem)),
    };
    let subscriber = match client {
        Some(_) => subscriber_with_sentry(format, filter, std::io::stderr, ansi),
        None => subscriber(format, filter, std::io::stderr, ansi),
    };
    let _ = tracing::subscriber::set_global_default(subscriber);
    if let Some(problem) = problem {
        tracing::error!("{problem}; errors are not reported to Sentry");
    }
    if let Some(client) = &client {
        // The process's hub: every thread's hub starts from it.
        sentry::Hub::main().bind_client(Some(client.clone()));
        tracing::info!(
            environment = %sentry.environment,
            "errors are reported to Sentry"
        );
    }
    TelemetryGuard { sentry: client }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged(format: &str) -> String {
        logged_with(format, false)
    }

    fn logged_with(format: &str, ansi: bool) -> String {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let sub = subscriber(format, EnvFilter::new("info"), move || writer.clone(), ansi);
        tracing::subscriber::with_default(sub, || {
            let span = tracing::info_span!("job", job_id = 7);
            let _entered = span.enter();
            tracing::info!(webhook_id = 42, "webhook stored");
        });
        let bytes = buffer.0.lock().expect("lock").clone();
        String::from_utf8(bytes).expect("utf-8")
    }

    #[test]
    fn json_format_writes_one_json_object_per_line_with_the_fields() {
        for format in ["json", "JSON", " json "] {
            let out = logged(format);
            let lines: Vec<&str> = out.lines().collect();
            assert_eq!(lines.len(), 1, "{out}");
            let line: serde_json::Value = serde_json::from_str(lines[0]).expect("a JSON line");
            assert_eq!(line["message"], "webhook stored");
            assert_eq!(line["webhook_id"], 42);
            assert_eq!(line["level"], "INFO");
            assert_eq!(line["span"]["job_id"], 7, "{line}");
        }
    }

    #[test]
    fn other_formats_write_text() {
        let out = logged("text");
        assert!(out.contains("webhook stored"), "{out}");
        assert!(serde_json::from_str::<serde_json::Value>(out.trim()).is_err());
    }

    #[test]
    fn text_is_coloured_only_when_asked() {
        assert!(!logged_with("text", false).contains('\x1b'));
        assert!(logged_with("text", true).contains('\x1b'));
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        let set = OsStr::new("1");
        assert!(colour(true, None));
        assert!(
            colour(true, Some(OsStr::new(""))),
            "an empty NO_COLOR is not set"
        );
        assert!(!colour(true, Some(set)));
        assert!(!colour(false, None));
        assert!(!colour(false, Some(set)));
    }
}
