//! Configuration: built-in defaults < an optional TOML file < the original deployment's
//! environment variables (`WC_WEBHOOK_SECRET`, `DATABASE_URL`, ...) < `LAZONA_*` variables
//! (`LAZONA_DATABASE__URL` sets `database.url`).
//!
//! `config/default.toml` at the repository root is the commented reference of every key; it is
//! compiled in as the defaults.

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::SecretString;
use serde::{Deserialize, Deserializer};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// The built-in defaults: the repository's `config/default.toml`.
pub const DEFAULT_TOML: &str = include_str!("../../../config/default.toml");

/// The original (Django) deployment's variables, and the key each one sets.
pub const LEGACY_ENV: &[(&str, &str)] = &[
    ("WC_WEBHOOK_SECRET", "webhook.secret"),
    ("DATABASE_URL", "database.url"),
    ("REDIS_URL", "queue.redis_url"),
    ("KOIKI_HOST", "koiki.host"),
    ("KOIKI_AUTH_TOKEN", "koiki.auth_token"),
    ("KOIKI_TRACKING_HOST", "koiki.tracking_host"),
    ("KOIKI_TRACKING_AUTH_TOKEN", "koiki.tracking_auth_token"),
    ("WCFMMP_HOST", "shop.host"),
    ("WCFMMP_USER", "shop.user"),
    ("WCFMMP_PASSWORD", "shop.password"),
    ("WP_PARTNER_ROLE", "shop.partner_role"),
    ("KOIKI_ERROR_MAIL_RECIPIENTS", "mail.admin_recipients"),
    ("EMAIL_HOST", "mail.host"),
    ("EMAIL_PORT", "mail.port"),
    ("EMAIL_HOST_USER", "mail.user"),
    ("EMAIL_HOST_PASSWORD", "mail.password"),
    ("EMAIL_USE_TLS", "mail.use_tls"),
    ("EMAIL_USE_SSL", "mail.use_ssl"),
    ("DEFAULT_FROM_EMAIL", "mail.from"),
    ("SUGARCRM_REST_URL", "crm.rest_url"),
    ("SUGARCRM_USER", "crm.user"),
    ("SUGARCRM_PASSWORD", "crm.password"),
    ("SUGARCRM_MEMBERSHIP_ROLES", "crm.membership_roles"),
    ("LOG_FORMAT", "log.format"),
    ("SENTRY_DSN", "sentry.dsn"),
];

/// The original's variables that have no meaning here (Django, Scout): accepted and
/// ignored, so its env file works unchanged.
pub const IGNORED_LEGACY_ENV: &[&str] = &[
    "SECRET_KEY",
    "DJANGO_DEBUG",
    "DATABASE_DISABLE_SSL",
    "WC_WEBHOOK_USER",
    "SECURE_SSL_REDIRECT",
    "CSRF_COOKIE_SECURE",
    "SESSION_COOKIE_SECURE",
    "SCOUT_MONITOR",
    "SCOUT_KEY",
    "SCOUT_NAME",
];

/// The whole configuration. Each part belongs to the adapter or app that uses it.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// Where `lazona-http` listens.
    pub listen: SocketAddr,
    /// `lazona-http`'s limits on its clients' connections.
    pub server: ServerConfig,
    /// Webhook intake.
    pub webhook: WebhookConfig,
    /// The SQL database (inbox and jobs).
    pub database: DatabaseConfig,
    /// The inbox writer.
    pub inbox: InboxConfig,
    /// The job queue.
    pub queue: QueueConfig,
    /// The worker.
    pub worker: WorkerConfig,
    /// Koiki, the carrier.
    pub koiki: KoikiConfig,
    /// How orders are shipped.
    pub shipping: ShippingConfig,
    /// The WordPress shop (WCFM, WooCommerce, WordPress users).
    pub shop: ShopConfig,
    /// Outgoing mail.
    pub mail: MailConfig,
    /// SugarCRM.
    pub crm: CrmConfig,
    /// Logging.
    pub log: LogConfig,
    /// Error reports to Sentry.
    pub sentry: SentryConfig,
    /// The event log (`/api/v1/events`).
    pub events: EventsConfig,
    /// The reconciliation with the shop.
    pub reconcile: ReconcileConfig,
    /// Alerts to the operators.
    pub alerts: AlertsConfig,
    /// How long personal data is kept.
    pub retention: RetentionConfig,
}

/// `lazona-http`'s limits on its clients' connections, so that slow or idle clients cannot hold
/// it.
#[derive(Debug, Clone, Deserialize)]
pub struct ServerConfig {
    /// How long a client may take to send a request's headers, counted from the connection's
    /// opening or from the previous response on a kept-alive connection (so an idle kept-alive
    /// connection is closed after it too).
    #[serde(deserialize_with = "seconds")]
    pub header_read_timeout_secs: Duration,
    /// How long a request's body may take to arrive in full after its headers; then it is
    /// answered 408.
    #[serde(deserialize_with = "seconds")]
    pub body_read_timeout_secs: Duration,
    /// The most client connections open at once (lowered to fit the open-file limit).
    pub max_connections: usize,
}

/// Webhook intake.
#[derive(Debug, Clone, Deserialize)]
pub struct WebhookConfig {
    /// The secret set in WooCommerce's webhook form (`WC_WEBHOOK_SECRET`).
    #[serde(default, deserialize_with = "secret_opt")]
    pub secret: Option<SecretString>,
    /// Bodies larger than this are answered 413.
    pub max_body_bytes: usize,
}

/// The SQL database.
#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseConfig {
    /// `sqlite://file.db?mode=rwc` or `postgres://...` (`DATABASE_URL`).
    #[serde(deserialize_with = "secret")]
    pub url: SecretString,
    /// Pool size (Postgres; SQLite uses what it needs).
    pub max_connections: u32,
    /// How long a request waits for a connection before the database counts as down.
    #[serde(deserialize_with = "seconds")]
    pub acquire_timeout_secs: Duration,
    /// Run the migrations when a binary starts.
    pub migrate_on_start: bool,
}

/// The inbox's group-commit writer.
#[derive(Debug, Clone, Deserialize)]
pub struct InboxConfig {
    /// Writer connections (Postgres; SQLite always has one writer).
    pub writers: usize,
    /// Most webhooks per transaction on Postgres.
    pub max_batch: usize,
    /// Most webhooks per transaction on SQLite.
    pub sqlite_max_batch: usize,
}

/// The job queue.
#[derive(Debug, Clone, Deserialize)]
pub struct QueueConfig {
    /// `sql` (the jobs table in the database) or `redis`.
    pub backend: String,
    /// Prefix of every Redis key.
    pub redis_prefix: String,
    /// Redis URL (`REDIS_URL`), for the Redis backend.
    #[serde(default, deserialize_with = "secret_opt")]
    pub redis_url: Option<SecretString>,
}

/// The worker.
#[derive(Debug, Clone, Deserialize)]
pub struct WorkerConfig {
    /// Run a worker inside `lazona-http`: `auto` (yes on SQLite), `true` or `false`.
    #[serde(deserialize_with = "auto_bool")]
    pub embedded: Option<bool>,
    /// Jobs run at the same time.
    pub concurrency: usize,
    /// Most jobs reserved in one call.
    pub batch: usize,
    /// Seconds to wait before each retry of a failed job; one more failure dead-letters it.
    pub retry_schedule_secs: Vec<u64>,
    /// Each retry wait is stretched or shrunk at random by up to this fraction.
    pub retry_jitter: f64,
    /// How long a reserved job is held before another worker may take it.
    #[serde(deserialize_with = "seconds")]
    pub lease_secs: Duration,
    /// How often an idle worker looks for jobs.
    #[serde(deserialize_with = "millis")]
    pub poll_interval_ms: Duration,
    /// How long shutdown waits for jobs in flight.
    #[serde(deserialize_with = "seconds")]
    pub shutdown_timeout_secs: Duration,
    /// Where `lazona-worker` serves `/metrics`, `/healthz` and `/readyz`; none when unset.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
}

/// Koiki.
#[derive(Debug, Clone, Deserialize)]
pub struct KoikiConfig {
    /// `KOIKI_HOST`, e.g. `https://rekistest.koiki.es/services`.
    pub host: String,
    /// `KOIKI_AUTH_TOKEN`.
    #[serde(default, deserialize_with = "secret_opt")]
    pub auth_token: Option<SecretString>,
    /// `KOIKI_TRACKING_HOST`.
    pub tracking_host: String,
    /// `KOIKI_TRACKING_AUTH_TOKEN`.
    #[serde(default, deserialize_with = "secret_opt")]
    pub tracking_auth_token: Option<SecretString>,
    /// The public tracking page of a parcel, `{barcode}` replaced (in the order note).
    pub tracking_url: String,
}

/// How orders are shipped.
#[derive(Debug, Clone, Deserialize)]
pub struct ShippingConfig {
    /// Shipping method ids booked with Koiki.
    #[serde(deserialize_with = "string_list")]
    pub koiki_methods: Vec<String>,
    /// Shipping method ids picked up at the shop (recorded as delivered).
    #[serde(deserialize_with = "string_list")]
    pub local_pickup_methods: Vec<String>,
    /// How often the tracking of undelivered shipments is polled.
    #[serde(deserialize_with = "seconds")]
    pub tracking_every_secs: Duration,
    /// Timeout of every call to Koiki and to the shop.
    #[serde(deserialize_with = "seconds")]
    pub http_timeout_secs: Duration,
    /// The order statuses booked (`any`: every status, as the original).
    #[serde(deserialize_with = "string_list")]
    pub book_statuses: Vec<String>,
}

/// The WordPress shop.
#[derive(Debug, Clone, Deserialize)]
pub struct ShopConfig {
    /// `WCFMMP_HOST`: the site's base URL.
    pub host: String,
    /// `WCFMMP_USER`.
    pub user: String,
    /// `WCFMMP_PASSWORD`.
    #[serde(default, deserialize_with = "secret_opt")]
    pub password: Option<SecretString>,
    /// `WP_PARTNER_ROLE`.
    pub partner_role: String,
    /// Write the tracking note and the shipments meta on the order.
    #[serde(deserialize_with = "flexible_bool")]
    pub write_back: bool,
    /// Set an order `completed` once all its Koiki shipments are delivered.
    #[serde(deserialize_with = "flexible_bool")]
    pub complete_on_delivery: bool,
}

/// Outgoing mail.
#[derive(Debug, Clone, Deserialize)]
pub struct MailConfig {
    /// `EMAIL_HOST`.
    pub host: String,
    /// `EMAIL_PORT`.
    #[serde(deserialize_with = "flexible_u16")]
    pub port: u16,
    /// `EMAIL_HOST_USER`.
    pub user: String,
    /// `EMAIL_HOST_PASSWORD`.
    #[serde(default, deserialize_with = "secret_opt")]
    pub password: Option<SecretString>,
    /// `EMAIL_USE_TLS` (STARTTLS).
    #[serde(deserialize_with = "flexible_bool")]
    pub use_tls: bool,
    /// `EMAIL_USE_SSL` (implicit TLS).
    #[serde(deserialize_with = "flexible_bool")]
    pub use_ssl: bool,
    /// `DEFAULT_FROM_EMAIL`.
    pub from: String,
    /// `KOIKI_ERROR_MAIL_RECIPIENTS`: the admins.
    #[serde(deserialize_with = "string_list")]
    pub admin_recipients: Vec<String>,
    /// The most connections open to the SMTP server at once; they are kept open between sends.
    pub max_connections: usize,
    /// The key of the mail relay's event webhook (Mandrill's, shown once the webhook is added);
    /// unset, `POST /api/mail-events/mandrill` answers 503.
    #[serde(default, deserialize_with = "secret_opt")]
    pub events_key: Option<SecretString>,
    /// The event webhook's URL exactly as registered with the relay (what Mandrill signs); empty:
    /// the request's own scheme (`X-Forwarded-Proto` when a proxy sets it), `Host` and path.
    #[serde(default)]
    pub events_url: String,
}

/// SugarCRM.
#[derive(Debug, Clone, Deserialize)]
pub struct CrmConfig {
    /// `SUGARCRM_REST_URL`.
    pub rest_url: String,
    /// `SUGARCRM_USER`.
    pub user: String,
    /// `SUGARCRM_PASSWORD`.
    #[serde(default, deserialize_with = "secret_opt")]
    pub password: Option<SecretString>,
    /// `SUGARCRM_MEMBERSHIP_ROLES`.
    #[serde(deserialize_with = "string_list")]
    pub membership_roles: Vec<String>,
}

/// Logging.
#[derive(Debug, Clone, Deserialize)]
pub struct LogConfig {
    /// `text` or `json` (`LOG_FORMAT`).
    pub format: String,
}

/// Error reports to Sentry (`adapters::telemetry`).
#[derive(Debug, Clone, Deserialize)]
pub struct SentryConfig {
    /// The project's DSN (`SENTRY_DSN`); unset or empty, nothing is reported.
    #[serde(default, deserialize_with = "secret_opt")]
    pub dsn: Option<SecretString>,
    /// The environment the events are filed under.
    pub environment: String,
    /// The share of error events sent, from 0 to 1.
    pub sample_rate: f32,
}

/// The event log.
#[derive(Debug, Clone, Deserialize)]
pub struct EventsConfig {
    /// Days events are kept; older ones are pruned every hour.
    pub retention_days: u64,
}

impl EventsConfig {
    /// How long events are kept.
    pub fn retention(&self) -> Duration {
        Duration::from_secs(self.retention_days.max(1).saturating_mul(86_400))
    }
}

/// How long personal data is kept (`domain::model::retention`); `0` days keeps for ever.
#[derive(Debug, Clone, Deserialize)]
pub struct RetentionConfig {
    /// Days a webhook's body and headers are kept.
    pub webhook_body_days: u32,
    /// Days a delivered shipment's label and carrier request are kept after its delivery.
    pub label_days: u32,
    /// Days the label of a shipment never delivered is kept after its booking.
    pub label_undelivered_days: u32,
    /// Days a dead job is kept.
    pub dead_job_days: u32,
    /// Most rows cleared in one transaction.
    pub batch: usize,
    /// How often the pruning runs.
    #[serde(deserialize_with = "seconds")]
    pub interval_secs: Duration,
}

impl RetentionConfig {
    /// The domain's policy.
    pub fn settings(&self) -> domain::model::RetentionSettings {
        domain::model::RetentionSettings {
            webhook_body_days: self.webhook_body_days,
            label_days: self.label_days,
            label_undelivered_days: self.label_undelivered_days,
            dead_job_days: self.dead_job_days,
            batch: self.batch.max(1),
        }
    }
}

/// The reconciliation with the shop: orders never delivered as webhooks, and the shop's
/// webhook configurations.
#[derive(Debug, Clone, Deserialize)]
pub struct ReconcileConfig {
    /// `auto` (on when the shop is configured), `true` or `false`.
    #[serde(deserialize_with = "auto_bool")]
    pub enabled: Option<bool>,
    /// How often a pass runs.
    #[serde(deserialize_with = "seconds")]
    pub interval_secs: Duration,
    /// How far before the last pass's latest order a pass starts.
    #[serde(deserialize_with = "seconds")]
    pub overlap_secs: Duration,
    /// How far back the first pass looks.
    #[serde(deserialize_with = "seconds")]
    pub initial_lookback_secs: Duration,
    /// Set a paused or disabled webhook of the connector back to active.
    #[serde(deserialize_with = "flexible_bool")]
    pub reactivate_webhooks: bool,
}

/// Alerts to the operators (`[alerts]`).
#[derive(Debug, Clone, Deserialize)]
pub struct AlertsConfig {
    /// Kinds not raised (`job_dead`, `booking_stuck`, ...).
    #[serde(deserialize_with = "string_list")]
    pub off: Vec<String>,
    /// A shipment `BOOKING` longer than this raises an alert (0: never).
    #[serde(deserialize_with = "seconds")]
    pub booking_stuck_secs: Duration,
    /// Hours without an order webhook before an alert (0: never; fractions allowed).
    #[serde(deserialize_with = "fraction")]
    pub silence_hours: f64,
    /// More alerts than this at once are told as a digest.
    pub digest_threshold: u64,
    /// At most one digest per this window.
    #[serde(deserialize_with = "seconds")]
    pub digest_window_secs: Duration,
    /// Seconds between alert checks.
    #[serde(deserialize_with = "seconds")]
    pub check_interval_secs: Duration,
    /// The outbound webhook (empty: none).
    pub webhook_url: String,
    /// The outbound webhook's signing secret.
    #[serde(default, deserialize_with = "secret_opt")]
    pub webhook_secret: Option<SecretString>,
    /// The alerts list's address, for the mails.
    pub list_url: String,
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value is missing or has the wrong type.
    #[error("invalid configuration: {0}")]
    Invalid(#[from] Box<figment::Error>),
    /// The `--config` file does not exist.
    #[error("configuration file {0} not found")]
    MissingFile(String),
}

impl Settings {
    /// Loads the configuration from the process environment and an optional TOML file.
    ///
    /// # Errors
    /// [`ConfigError`] when the file is missing or a value is invalid.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::figment(file)?
            .extract()
            .map_err(|e| ConfigError::Invalid(Box::new(e)))
    }

    /// The built-in defaults with `toml` on top, and nothing from the environment or a file: a
    /// configuration that does not depend on the process's variables, for embedders and tests.
    /// `""` gives the defaults.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] when `toml` does not parse or a value has the wrong type.
    pub fn from_toml(toml: &str) -> Result<Self, ConfigError> {
        Figment::new()
            .merge(Toml::string(DEFAULT_TOML))
            .merge(Toml::string(toml))
            .extract()
            .map_err(|e| ConfigError::Invalid(Box::new(e)))
    }

    /// The figment behind [`Settings::load`], for callers that add their own layers.
    ///
    /// # Errors
    /// [`ConfigError::MissingFile`] when `file` does not exist.
    pub fn figment(file: Option<&Path>) -> Result<Figment, ConfigError> {
        let mut figment = Figment::new().merge(Toml::string(DEFAULT_TOML));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::MissingFile(path.display().to_string()));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        // The legacy names keep their values as strings (figment's `Env` would parse a secret
        // such as `0123` as a number).
        for (var, key) in LEGACY_ENV {
            if let Ok(value) = std::env::var(var) {
                figment = figment.merge(Serialized::default(key, value));
            }
        }
        Ok(figment.merge(Env::prefixed("LAZONA_").split("__")))
    }

    /// Whether `lazona-http` runs a worker in-process: `worker.embedded`, or on `auto` when the
    /// database is SQLite.
    pub fn embedded_worker(&self) -> bool {
        self.worker
            .embedded
            .unwrap_or_else(|| self.database.is_sqlite())
    }
}

impl DatabaseConfig {
    /// Whether the URL names a SQLite database.
    pub fn is_sqlite(&self) -> bool {
        use secrecy::ExposeSecret;
        self.url.expose_secret().starts_with("sqlite:")
    }
}

/// Seconds: a number, or a string holding one (`"900"`, as a provider that keeps strings
/// gives it).
fn seconds<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumberOrString {
        Number(f64),
        Str(String),
    }
    let secs = match NumberOrString::deserialize(d)? {
        NumberOrString::Number(n) => n,
        NumberOrString::Str(s) => s.trim().parse().map_err(|_| {
            serde::de::Error::custom(format!("expected a number of seconds, got {s:?}"))
        })?,
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(serde::de::Error::custom(format!(
            "expected a number of seconds, got {secs}"
        )));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A number, given as a number or as a string holding one (`LAZONA_ALERTS__SILENCE_HOURS=0.5`).
fn fraction<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Num {
        F(f64),
        S(String),
    }
    let n = match Num::deserialize(d)? {
        Num::F(f) => f,
        Num::S(s) => s.trim().parse().map_err(serde::de::Error::custom)?,
    };
    if n.is_finite() && n >= 0.0 {
        Ok(n)
    } else {
        Err(serde::de::Error::custom(format!(
            "expected a number of hours, got {n}"
        )))
    }
}

fn millis<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    Ok(Duration::from_millis(u64::deserialize(d)?))
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Flexible {
    Bool(bool),
    Int(i64),
    Str(String),
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" | "" => Some(false),
        _ => None,
    }
}

/// A secret given as a string, or as a number figment parsed from an environment variable.
fn secret<'de, D: Deserializer<'de>>(d: D) -> Result<SecretString, D::Error> {
    Ok(SecretString::from(match Flexible::deserialize(d)? {
        Flexible::Str(s) => s,
        Flexible::Int(i) => i.to_string(),
        Flexible::Bool(b) => b.to_string(),
    }))
}

/// An optional [`secret`]; an empty string counts as unset.
fn secret_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SecretString>, D::Error> {
    use secrecy::ExposeSecret;
    let s = secret(d)?;
    Ok((!s.expose_secret().is_empty()).then_some(s))
}

/// A port given as a number or a string (the original's `EMAIL_PORT=587`).
fn flexible_u16<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    match Flexible::deserialize(d)? {
        Flexible::Int(i) => u16::try_from(i).map_err(serde::de::Error::custom),
        Flexible::Str(s) => s.trim().parse().map_err(serde::de::Error::custom),
        Flexible::Bool(b) => Err(serde::de::Error::custom(format!(
            "expected a port, got {b}"
        ))),
    }
}

/// `true`/`false`, `1`/`0` (the original's `EMAIL_USE_TLS=1`), `yes`/`no`.
fn flexible_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match Flexible::deserialize(d)? {
        Flexible::Bool(b) => Ok(b),
        Flexible::Int(i) => Ok(i != 0),
        Flexible::Str(s) => parse_bool(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("expected a boolean, got {s:?}"))),
    }
}

/// `auto` (None) or a boolean.
fn auto_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    match Flexible::deserialize(d)? {
        Flexible::Str(s) if s.trim().eq_ignore_ascii_case("auto") => Ok(None),
        Flexible::Bool(b) => Ok(Some(b)),
        Flexible::Int(i) => Ok(Some(i != 0)),
        Flexible::Str(s) => parse_bool(&s).map(Some).ok_or_else(|| {
            serde::de::Error::custom(format!("expected auto, true or false, got {s:?}"))
        }),
    }
}

/// A TOML list, or a comma-separated string (the original's env format); blanks are dropped.
fn string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrString {
        List(Vec<String>),
        Str(String),
    }
    let items = match ListOrString::deserialize(d)? {
        ListOrString::List(items) => items,
        ListOrString::Str(s) => s.split(',').map(str::to_owned).collect(),
    };
    Ok(items
        .into_iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect())
}

#[cfg(test)]
#[allow(
    clippy::result_large_err,
    reason = "figment::Jail's closures return figment::Error"
)]
mod tests {
    use super::*;
    use figment::Jail;
    use secrecy::ExposeSecret;

    #[test]
    fn defaults_need_no_configuration() {
        Jail::expect_with(|_| {
            let s = Settings::load(None).expect("defaults load");
            assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
            assert!(s.database.is_sqlite());
            assert!(s.embedded_worker());
            assert!(s.webhook.secret.is_none());
            assert_eq!(s.webhook.max_body_bytes, 1024 * 1024);
            assert_eq!(s.server.header_read_timeout_secs, Duration::from_secs(10));
            assert_eq!(s.server.body_read_timeout_secs, Duration::from_secs(30));
            assert_eq!(s.server.max_connections, 1024);
            Ok(())
        });
    }

    #[test]
    fn the_original_env_file_works_unchanged() {
        Jail::expect_with(|jail| {
            jail.set_env("WC_WEBHOOK_SECRET", "0123");
            jail.set_env("DATABASE_URL", "postgres://u:p@db/lazona");
            jail.set_env("KOIKI_HOST", "https://rekistest.koiki.es/services");
            jail.set_env("KOIKI_ERROR_MAIL_RECIPIENTS", "a@x.coop, b@x.coop,");
            jail.set_env("EMAIL_USE_TLS", "1");
            jail.set_env("EMAIL_PORT", "587");
            jail.set_env("SUGARCRM_MEMBERSHIP_ROLES", "^member^,^is_partner^");
            jail.set_env("SECRET_KEY", "django");
            let s = Settings::load(None).expect("legacy env loads");
            assert_eq!(
                s.webhook.secret.as_ref().map(|x| x.expose_secret()),
                Some("0123")
            );
            assert!(!s.database.is_sqlite());
            assert!(!s.embedded_worker());
            assert_eq!(s.koiki.host, "https://rekistest.koiki.es/services");
            assert_eq!(s.mail.admin_recipients, ["a@x.coop", "b@x.coop"]);
            assert!(s.mail.use_tls);
            assert_eq!(s.mail.port, 587);
            assert_eq!(s.crm.membership_roles, ["^member^", "^is_partner^"]);
            Ok(())
        });
    }

    #[test]
    fn lazona_variables_win_over_the_file_and_the_legacy_names() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "c.toml",
                "listen = \"0.0.0.0:9000\"\n[webhook]\nsecret = \"from-file\"\n[worker]\nembedded = false\n",
            )?;
            jail.set_env("WC_WEBHOOK_SECRET", "legacy");
            jail.set_env("LAZONA_WEBHOOK__SECRET", "987");
            jail.set_env("LAZONA_LISTEN", "127.0.0.1:9999");
            let s = Settings::load(Some(Path::new("c.toml"))).expect("loads");
            assert_eq!(
                s.webhook.secret.as_ref().map(|x| x.expose_secret()),
                Some("987")
            );
            assert_eq!(s.listen.to_string(), "127.0.0.1:9999");
            assert!(!s.embedded_worker());
            Ok(())
        });
    }

    #[test]
    fn json_logs_come_from_log_format_or_lazona_log_format() {
        Jail::expect_with(|jail| {
            assert_eq!(Settings::load(None).expect("defaults").log.format, "text");
            jail.set_env("LOG_FORMAT", "json");
            let s = Settings::load(None).expect("legacy name");
            assert!(crate::telemetry::is_json(&s.log.format));
            jail.set_env("LAZONA_LOG__FORMAT", "text");
            let s = Settings::load(None).expect("both");
            assert_eq!(s.log.format, "text", "LAZONA_ wins over the legacy name");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("LAZONA_LOG__FORMAT", "JSON");
            let s = Settings::load(None).expect("LAZONA_ name");
            assert!(crate::telemetry::is_json(&s.log.format));
            Ok(())
        });
    }

    #[test]
    fn sentry_dsn_comes_from_sentry_dsn_or_lazona_sentry_dsn() {
        Jail::expect_with(|jail| {
            let s = Settings::load(None).expect("defaults");
            assert!(s.sentry.dsn.is_none(), "off by default");
            assert_eq!(s.sentry.environment, "production");
            assert!((s.sentry.sample_rate - 1.0).abs() < f32::EPSILON);
            jail.set_env("SENTRY_DSN", "https://legacy@o1.ingest.sentry.io/2");
            let s = Settings::load(None).expect("legacy name");
            assert_eq!(
                s.sentry.dsn.as_ref().map(|x| x.expose_secret()),
                Some("https://legacy@o1.ingest.sentry.io/2")
            );
            assert!(!IGNORED_LEGACY_ENV.contains(&"SENTRY_DSN"));
            jail.set_env("LAZONA_SENTRY__DSN", "https://lazona@o1.ingest.sentry.io/3");
            jail.set_env("LAZONA_SENTRY__ENVIRONMENT", "staging");
            let s = Settings::load(None).expect("both");
            assert_eq!(
                s.sentry.dsn.as_ref().map(|x| x.expose_secret()),
                Some("https://lazona@o1.ingest.sentry.io/3"),
                "LAZONA_ wins over the legacy name"
            );
            assert_eq!(s.sentry.environment, "staging");
            jail.set_env("LAZONA_SENTRY__DSN", "");
            assert!(Settings::load(None).expect("empty").sentry.dsn.is_none());
            Ok(())
        });
    }

    #[test]
    fn events_retention_and_the_worker_metrics_address_are_settings() {
        Jail::expect_with(|jail| {
            let s = Settings::load(None).expect("defaults");
            assert_eq!(s.events.retention(), Duration::from_secs(7 * 86_400));
            assert_eq!(s.worker.metrics_listen, None);
            jail.set_env("LAZONA_EVENTS__RETENTION_DAYS", "2");
            jail.set_env("LAZONA_WORKER__METRICS_LISTEN", "127.0.0.1:9091");
            let s = Settings::load(None).expect("set");
            assert_eq!(s.events.retention(), Duration::from_secs(2 * 86_400));
            assert_eq!(
                s.worker.metrics_listen.map(|a| a.to_string()).as_deref(),
                Some("127.0.0.1:9091")
            );
            Ok(())
        });
    }

    #[test]
    fn the_retention_is_a_setting_and_zero_keeps_for_ever() {
        Jail::expect_with(|jail| {
            let r = Settings::load(None).expect("defaults").retention;
            assert_eq!(r.settings(), domain::model::RetentionSettings::default());
            assert_eq!(r.interval_secs, Duration::from_secs(3600));
            jail.set_env("LAZONA_RETENTION__WEBHOOK_BODY_DAYS", "0");
            jail.set_env("LAZONA_RETENTION__LABEL_DAYS", "30");
            jail.set_env("LAZONA_RETENTION__BATCH", "100");
            let r = Settings::load(None).expect("set").retention.settings();
            assert_eq!((r.webhook_body_days, r.label_days, r.batch), (0, 30, 100));
            assert!(r.cutoffs(chrono::Utc::now()).webhook_bodies.is_none());
            Ok(())
        });
    }

    #[test]
    fn a_missing_file_and_a_bad_value_are_clear_errors() {
        Jail::expect_with(|jail| {
            let err = Settings::load(Some(Path::new("nope.toml"))).unwrap_err();
            assert!(err.to_string().contains("nope.toml"), "{err}");
            jail.set_env("LAZONA_LISTEN", "not an address");
            let err = Settings::load(None).unwrap_err();
            assert!(err.to_string().to_lowercase().contains("listen"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn secrets_never_show_in_debug() {
        Jail::expect_with(|jail| {
            jail.set_env("WC_WEBHOOK_SECRET", "hunter2-webhook");
            jail.set_env("KOIKI_AUTH_TOKEN", "hunter2-koiki");
            jail.set_env("DATABASE_URL", "postgres://u:hunter2-db@h/d");
            jail.set_env("SENTRY_DSN", "https://hunter2-sentry@o1.ingest.sentry.io/2");
            let s = Settings::load(None).expect("loads");
            let debug = format!("{s:?}");
            assert!(!debug.contains("hunter2"), "{debug}");
            Ok(())
        });
    }
}
