//! The sandbox (feature `sandbox`): fake Koiki, WCFM, WordPress and WooCommerce endpoints on one
//! local HTTP server, and an [`SmtpSink`], so that the connector can turn an order into labels
//! without any account. `lazona sandbox` runs it; tests and the orders benchmark start it
//! in-process.
//!
//! **Nothing real is called, and nothing here is a default**: the connector talks to the sandbox
//! only when pointed at it with [`Sandbox::env`] (or [`Sandbox::config`]).
//!
//! The fakes answer on the paths the real clients ([`crate::koiki`], [`crate::wordpress`]) use,
//! with answers built from the original's test payloads (`tests/fixtures/`):
//!
//! - Koiki `POST /rekis/api/altaEnvios`: with the sandbox token, `respuesta "101"` and one envio
//!   per requested envio, in order, each with a unique `codBarras` and a small PDF label; with
//!   another token `102 TOKEN NOT FOUND` and no envios, as Koiki does.
//! - Koiki `POST /kis/api/v1/service/track/see`: an in-process status (`102`, arrived at Koiki).
//! - WCFM `GET /wp-json/wcfmmp/v1/settings/id/{id}` and WordPress
//!   `GET /wp-json/wp/v2/users/{id}?context=edit`, for any vendor id: vendor `{id}` has the e-mail
//!   `vendor{id}@sandbox.invalid`.
//! - WordPress `GET /wp-json/wp/v2/users?search=...` and `POST /wp-json/wp/v2/users/{id}`
//!   (`roles=a,b`), over users kept in memory (the customer of `tests/fixtures/customer.json` is
//!   there from the start; [`Sandbox::add_user`] adds more).
//! - WooCommerce `GET /wp-json/wc/v3/orders/{id}`: the two-vendor order fixture with that id.
//!
//! The shop endpoints want the sandbox's basic-auth credentials (401 otherwise). Every call is
//! counted ([`Sandbox::calls`]).

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt as _;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::smtp_sink::SmtpSink;

/// The webhook secret the sandbox's environment sets, to sign sample orders with.
pub const WEBHOOK_SECRET: &str = "sandbox-secret";
/// The Koiki booking token the fake expects.
pub const KOIKI_TOKEN: &str = "sandbox-koiki-token";
/// The Koiki tracking token the fake expects.
pub const TRACKING_TOKEN: &str = "sandbox-tracking-token";
/// The shop's basic-auth user.
pub const SHOP_USER: &str = "sandbox";
/// The shop's basic-auth password.
pub const SHOP_PASSWORD: &str = "sandbox-password";
/// The connector's sender address.
pub const MAIL_FROM: &str = "lazona@sandbox.invalid";
/// The admins' address (booking errors, tracking changes).
pub const ADMIN_EMAIL: &str = "admin@sandbox.invalid";
/// The fake SugarCRM's user.
pub const CRM_USER: &str = "sandbox";
/// The fake SugarCRM's password.
pub const CRM_PASSWORD: &str = "sandbox-crm-password";
/// Where the fake SugarCRM answers (v4.1 REST), under the sandbox's URL.
pub const CRM_PATH: &str = "/crm/service/v4_1/rest.php";
/// The role members get (`shop.partner_role`).
pub const PARTNER_ROLE: &str = "partner";
/// The fake CRM's members: the e-mails whose local part starts with this (`member1@...`) belong
/// to a Contact with the relationship role `^member^`; anyone else is unknown to the CRM. The
/// shop finds a `customer` WordPress user for any such e-mail.
pub const MEMBER_PREFIX: &str = "member";

/// A WooCommerce order with two Koiki vendors (6 and 7): the sample order, and the answer of
/// `GET wc/v3/orders/{id}`.
pub const SAMPLE_ORDER: &str = include_str!("../../../tests/fixtures/order_two_vendors.json");
const VENDOR_SETTINGS: &str = include_str!("../../../tests/fixtures/wcfm_settings_1.json");
const WP_USER: &str = include_str!("../../../tests/fixtures/wp_user_6.json");
const BOOKING_ANSWER: &str = include_str!("../../../tests/fixtures/koiki_alta_envios_ok.json");
const TRACKING_ANSWER: &str = include_str!("../../../tests/fixtures/koiki_track_see_ok.json");
const CUSTOMER: &str = include_str!("../../../tests/fixtures/customer.json");

/// Users added to the sandbox get ids from here up (vendors are any id below).
const FIRST_USER_ID: i64 = 100_000;

/// The vendor e-mail the fake WordPress gives vendor `id`.
#[must_use]
pub fn vendor_email(id: i64) -> String {
    format!("vendor{id}@sandbox.invalid")
}

/// The sample order (the two-vendor fixture) with `id` as its id, as JSON text.
#[must_use]
pub fn sample_order(id: i64) -> String {
    let mut order: Value = serde_json::from_str(SAMPLE_ORDER).expect("the order fixture is JSON");
    order["id"] = json!(id);
    serde_json::to_string_pretty(&order).expect("an order serializes")
}

/// How to start a [`Sandbox`].
#[derive(Debug, Clone, Default)]
pub struct SandboxOptions {
    /// The HTTP port on 127.0.0.1 (0: any free port).
    pub port: u16,
    /// Where the SMTP sink writes each mail as `NNNNNN.eml` (none: kept in memory only).
    pub mail_dir: Option<PathBuf>,
    /// Only count the mails (keep and write nothing): for load benchmarks.
    pub count_mails_only: bool,
}

/// Calls received by the fakes, by endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Calls {
    /// `altaEnvios` calls.
    pub koiki_bookings: u64,
    /// Envios booked by those calls.
    pub koiki_envios: u64,
    /// `track/see` calls.
    pub koiki_tracking: u64,
    /// WCFM `settings/id/{id}` calls.
    pub wcfm_settings: u64,
    /// WordPress `users/{id}` reads.
    pub wp_users: u64,
    /// WordPress `users?search=` calls.
    pub wp_user_searches: u64,
    /// WordPress `users/{id}` role updates.
    pub wp_user_updates: u64,
    /// WooCommerce `orders/{id}` calls.
    pub wc_orders: u64,
    /// SugarCRM calls (login, search, get_entry).
    pub crm_calls: u64,
    /// Requests refused for a missing or wrong token or password.
    pub refused: u64,
}

#[derive(Default)]
struct Counters {
    koiki_bookings: AtomicU64,
    koiki_envios: AtomicU64,
    koiki_tracking: AtomicU64,
    wcfm_settings: AtomicU64,
    wp_users: AtomicU64,
    wp_user_searches: AtomicU64,
    wp_user_updates: AtomicU64,
    wc_orders: AtomicU64,
    crm_calls: AtomicU64,
    refused: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    fn snapshot(&self) -> Calls {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Calls {
            koiki_bookings: get(&self.koiki_bookings),
            koiki_envios: get(&self.koiki_envios),
            koiki_tracking: get(&self.koiki_tracking),
            wcfm_settings: get(&self.wcfm_settings),
            wp_users: get(&self.wp_users),
            wp_user_searches: get(&self.wp_user_searches),
            wp_user_updates: get(&self.wp_user_updates),
            wc_orders: get(&self.wc_orders),
            crm_calls: get(&self.crm_calls),
            refused: get(&self.refused),
        }
    }
}

/// A WordPress user of the fake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxUser {
    /// WordPress id.
    pub id: i64,
    /// Login name.
    pub username: String,
    /// E-mail.
    pub email: String,
    /// Roles.
    pub roles: Vec<String>,
}

impl SandboxUser {
    /// Vendor `id`, as the fake shows any vendor it was not told about.
    fn vendor(id: i64) -> Self {
        let template: Value = serde_json::from_str(WP_USER).expect("the user fixture is JSON");
        SandboxUser {
            id,
            username: format!("sandbox-vendor-{id}"),
            email: vendor_email(id),
            roles: template["roles"]
                .as_array()
                .map(|r| {
                    r.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// The user as `users/{id}` shows it: the fixture's shape, e-mail and roles with
    /// `context=edit` only (as WordPress).
    fn json(&self, edit: bool) -> Value {
        let mut user: Value = serde_json::from_str(WP_USER).expect("the user fixture is JSON");
        user["id"] = json!(self.id);
        user["username"] = json!(self.username);
        if edit {
            user["email"] = json!(self.email);
            user["roles"] = json!(self.roles);
        } else if let Some(user) = user.as_object_mut() {
            user.remove("email");
            user.remove("roles");
        }
        user
    }
}

struct Fakes {
    calls: Counters,
    users: Mutex<BTreeMap<i64, SandboxUser>>,
    /// A prefix unique to this start, so barcodes differ from those of an earlier run.
    run: u32,
    barcodes: AtomicU64,
    shop_auth: String,
}

impl Fakes {
    fn users(&self) -> std::sync::MutexGuard<'_, BTreeMap<i64, SandboxUser>> {
        self.users.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn user(&self, id: i64) -> SandboxUser {
        self.users()
            .get(&id)
            .cloned()
            .unwrap_or_else(|| SandboxUser::vendor(id))
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        let ok = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == self.shop_auth);
        if !ok {
            bump(&self.calls.refused);
        }
        ok
    }
}

/// The fakes, running. Dropping it stops them.
pub struct Sandbox {
    addr: SocketAddr,
    smtp: SmtpSink,
    fakes: Arc<Fakes>,
    stop: CancellationToken,
    server: JoinHandle<()>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("addr", &self.addr)
            .field("smtp", &self.smtp.addr())
            .finish_non_exhaustive()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.stop.cancel();
        self.server.abort();
    }
}

impl Sandbox {
    /// Starts the fakes' HTTP server on `127.0.0.1:{options.port}` and the SMTP sink.
    ///
    /// # Errors
    /// When the port cannot be bound.
    ///
    /// # Panics
    /// When the SMTP sink cannot bind a loopback port or create its folder.
    pub async fn start(options: SandboxOptions) -> std::io::Result<Sandbox> {
        let listener = TcpListener::bind(("127.0.0.1", options.port)).await?;
        let addr = listener.local_addr()?;
        let smtp = if options.count_mails_only {
            SmtpSink::start_counting().await
        } else {
            SmtpSink::start(options.mail_dir).await
        };
        let customer: Value = serde_json::from_str(CUSTOMER).expect("the customer fixture is JSON");
        let mut users = BTreeMap::new();
        users.insert(
            FIRST_USER_ID,
            SandboxUser {
                id: FIRST_USER_ID,
                username: customer["username"]
                    .as_str()
                    .unwrap_or("customer")
                    .to_owned(),
                email: customer["email"].as_str().unwrap_or_default().to_owned(),
                roles: vec!["customer".to_owned()],
            },
        );
        let run = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as u32);
        let fakes = Arc::new(Fakes {
            calls: Counters::default(),
            users: Mutex::new(users),
            run,
            barcodes: AtomicU64::new(0),
            shop_auth: format!(
                "Basic {}",
                BASE64.encode(format!("{SHOP_USER}:{SHOP_PASSWORD}"))
            ),
        });
        let app = Router::new()
            .route(crate::koiki::BOOKING_PATH, post(book))
            .route(crate::koiki::TRACKING_PATH, post(track))
            .route("/wp-json/wcfmmp/v1/settings/id/{id}", get(vendor_settings))
            .route("/wp-json/wp/v2/users", get(search_users))
            .route("/wp-json/wp/v2/users/{id}", get(user).post(set_roles))
            .route("/wp-json/wc/v3/orders/{id}", get(order))
            .route(CRM_PATH, post(crm))
            .fallback(not_found)
            .with_state(fakes.clone());
        let stop = CancellationToken::new();
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let server = tokio::spawn({
            let stop = stop.clone();
            async move {
                if let Err(e) = axum::serve(listener, app)
                    .with_graceful_shutdown(stop.cancelled_owned())
                    .await
                {
                    tracing::error!(error = %e, "sandbox server stopped");
                }
            }
        });
        Ok(Sandbox {
            addr,
            smtp,
            fakes,
            stop,
            server,
        })
    }

    /// The fakes' HTTP address.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The fakes' base URL, `http://127.0.0.1:{port}`: Koiki's hosts and the shop's.
    #[must_use]
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The SMTP sink the mails go to.
    #[must_use]
    pub fn smtp(&self) -> &SmtpSink {
        &self.smtp
    }

    /// The calls received so far.
    #[must_use]
    pub fn calls(&self) -> Calls {
        self.fakes.calls.snapshot()
    }

    /// Adds a WordPress user with `email` and `roles`; its id.
    pub fn add_user(&self, email: &str, roles: &[&str]) -> i64 {
        let mut users = self.fakes.users();
        let id = users
            .keys()
            .next_back()
            .map_or(FIRST_USER_ID, |last| (last + 1).max(FIRST_USER_ID));
        users.insert(
            id,
            SandboxUser {
                id,
                username: email.split('@').next().unwrap_or(email).to_owned(),
                email: email.to_owned(),
                roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            },
        );
        id
    }

    /// The WordPress user with this e-mail, if the shop has one (members appear once searched).
    #[must_use]
    pub fn user_by_email(&self, email: &str) -> Option<SandboxUser> {
        self.fakes
            .users()
            .values()
            .find(|u| u.email.eq_ignore_ascii_case(email))
            .cloned()
    }

    /// WordPress user `id` as the fake shows it now (any id is a vendor unless added).
    #[must_use]
    pub fn user(&self, id: i64) -> SandboxUser {
        self.fakes.user(id)
    }

    /// The settings that point the connector at the sandbox, as `(key, value)` with the
    /// configuration's dotted keys (`koiki.host`, ...).
    #[must_use]
    pub fn config(&self) -> Vec<(&'static str, String)> {
        let url = self.url();
        vec![
            ("webhook.secret", WEBHOOK_SECRET.to_owned()),
            ("koiki.host", url.clone()),
            ("koiki.auth_token", KOIKI_TOKEN.to_owned()),
            ("koiki.tracking_host", url.clone()),
            ("koiki.tracking_auth_token", TRACKING_TOKEN.to_owned()),
            ("shop.host", url),
            ("shop.user", SHOP_USER.to_owned()),
            ("shop.password", SHOP_PASSWORD.to_owned()),
            ("mail.host", "127.0.0.1".to_owned()),
            ("mail.port", self.smtp.port().to_string()),
            ("mail.use_tls", "false".to_owned()),
            ("mail.use_ssl", "false".to_owned()),
            ("mail.from", MAIL_FROM.to_owned()),
            ("mail.admin_recipients", ADMIN_EMAIL.to_owned()),
            ("crm.rest_url", format!("{}{CRM_PATH}", self.url())),
            ("crm.user", CRM_USER.to_owned()),
            ("crm.password", CRM_PASSWORD.to_owned()),
            ("crm.membership_roles", "^member^".to_owned()),
            ("shop.partner_role", PARTNER_ROLE.to_owned()),
        ]
    }

    /// [`Sandbox::config`] as the `LAZONA_*` environment variables that set it
    /// (`LAZONA_KOIKI__HOST`, ...).
    #[must_use]
    pub fn env(&self) -> Vec<(String, String)> {
        self.config()
            .into_iter()
            .map(|(key, value)| (env_name(key), value))
            .collect()
    }
}

/// `koiki.auth_token` → `LAZONA_KOIKI__AUTH_TOKEN`.
#[must_use]
pub fn env_name(key: &str) -> String {
    format!("LAZONA_{}", key.replace('.', "__").to_ascii_uppercase())
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({"code": "rest_no_route", "message": "No route was found (sandbox)"})),
    )
        .into_response()
}

/// Koiki's answer when nothing can be booked.
fn koiki_refusal(message: &str) -> Response {
    axum::Json(json!({"respuesta": "102", "mensaje": message, "envios": []})).into_response()
}

async fn book(State(fakes): State<Arc<Fakes>>, body: Bytes) -> Response {
    bump(&fakes.calls.koiki_bookings);
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "Bad Request"})),
        )
            .into_response();
    };
    if request["token"].as_str() != Some(KOIKI_TOKEN) {
        bump(&fakes.calls.refused);
        return koiki_refusal("TOKEN NOT FOUND");
    }
    let Some(requested) = request["envios"].as_array().filter(|e| !e.is_empty()) else {
        return koiki_refusal("ERROR IN THE RECEIVED DATA");
    };
    let mut answer: Value =
        serde_json::from_str(BOOKING_ANSWER).expect("the answer fixture is JSON");
    let template = answer["envios"][0].clone();
    let envios: Vec<Value> = requested
        .iter()
        .map(|envio| {
            let n = fakes.barcodes.fetch_add(1, Ordering::Relaxed) + 1;
            let barcode = format!("SBX{:08X}{n:07}", fakes.run);
            let text = |k: &str| envio[k].as_str().unwrap_or_default();
            let label = label_pdf(&[
                "SANDBOX - NOT A REAL LABEL".to_owned(),
                format!("Koiki barcode: {barcode}"),
                format!("Order: {}", text("numPedido")),
                format!("To: {} {}", text("nombreDesti"), text("apellidoDesti")),
                format!("{} {}", text("direccionDesti"), text("numeroCalleDesti")),
                format!("{} {}", text("codPostalDesti"), text("poblacionDesti")),
                format!("From: {} {}", text("nombreRemi"), text("emailRemi")),
            ]);
            let mut out = template.clone();
            out["numPedido"] = envio["numPedido"].clone();
            out["codBarras"] = json!(barcode);
            out["etiqueta"] = json!(BASE64.encode(label));
            out
        })
        .collect();
    fakes
        .calls
        .koiki_envios
        .fetch_add(envios.len() as u64, Ordering::Relaxed);
    answer["envios"] = Value::Array(envios);
    axum::Json(answer).into_response()
}

async fn track(State(fakes): State<Arc<Fakes>>, body: Bytes) -> Response {
    bump(&fakes.calls.koiki_tracking);
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if request["token"].as_str() != Some(TRACKING_TOKEN) {
        bump(&fakes.calls.refused);
        return axum::Json(json!({"error": {"code": 102, "message": "TOKEN NOT FOUND"}}))
            .into_response();
    }
    let code = request["code"].as_str().unwrap_or_default();
    if code.is_empty() {
        return axum::Json(json!({"error": {"code": 101, "message": "CODE NOT FOUND"}}))
            .into_response();
    }
    // The fixture's shape (newest event first), at an in-process step: 102 LLEGADA A KOIKI.
    let mut answer: Value =
        serde_json::from_str(TRACKING_ANSWER).expect("the tracking fixture is JSON");
    let now = chrono::Utc::now();
    let date = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%S%z").to_string();
    let steps = [
        (102, "Llegada a Koiki", now),
        (
            100,
            "Envío pendiente llegada",
            now - chrono::Duration::hours(2),
        ),
    ];
    if let Some(events) = answer["result"].as_array_mut() {
        for (event, (step, description, at)) in events.iter_mut().zip(steps) {
            event["servicio"] = json!(code);
            event["codEstado"] = json!(description);
            event["date"] = json!(date(at));
            event["code"] = json!(step);
        }
    }
    axum::Json(answer).into_response()
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        axum::Json(json!({
            "code": "rest_not_logged_in",
            "message": "You are not currently logged in.",
            "data": {"status": 401}
        })),
    )
        .into_response()
}

fn invalid_id() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(
            json!({"code": "rest_invalid_id", "message": "Invalid ID.", "data": {"status": 404}}),
        ),
    )
        .into_response()
}

async fn vendor_settings(
    State(fakes): State<Arc<Fakes>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    bump(&fakes.calls.wcfm_settings);
    if !fakes.authorized(&headers) {
        return unauthorized();
    }
    if id.parse::<i64>().is_err() {
        return invalid_id();
    }
    let settings: Value =
        serde_json::from_str(VENDOR_SETTINGS).expect("the settings fixture is JSON");
    axum::Json(settings).into_response()
}

#[derive(Deserialize)]
struct UserQuery {
    context: Option<String>,
    search: Option<String>,
}

async fn user(
    State(fakes): State<Arc<Fakes>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<UserQuery>,
) -> Response {
    bump(&fakes.calls.wp_users);
    if !fakes.authorized(&headers) {
        return unauthorized();
    }
    let Ok(id) = id.parse::<i64>() else {
        return invalid_id();
    };
    let edit = query.context.as_deref() == Some("edit");
    axum::Json(fakes.user(id).json(edit)).into_response()
}

async fn search_users(
    State(fakes): State<Arc<Fakes>>,
    headers: HeaderMap,
    Query(query): Query<UserQuery>,
) -> Response {
    bump(&fakes.calls.wp_user_searches);
    if !fakes.authorized(&headers) {
        return unauthorized();
    }
    let needle = query.search.unwrap_or_default().trim().to_lowercase();
    let mut found: Vec<SandboxUser> = fakes
        .users()
        .values()
        .filter(|u| {
            !needle.is_empty()
                && (u.email.to_lowercase().contains(&needle)
                    || u.username.to_lowercase().contains(&needle))
        })
        .cloned()
        .collect();
    // A member of the fake CRM is a customer of the shop (created on first search).
    if found.is_empty() && is_member(&needle) {
        drop(found);
        let mut users = fakes.users();
        let id = users
            .keys()
            .next_back()
            .map_or(FIRST_USER_ID, |last| (last + 1).max(FIRST_USER_ID));
        let user = SandboxUser {
            id,
            username: needle.split('@').next().unwrap_or(&needle).to_owned(),
            email: needle.clone(),
            roles: vec!["customer".to_owned()],
        };
        users.insert(id, user.clone());
        found = vec![user];
    }
    // Vendors exist for any id: `vendor{id}@sandbox.invalid` finds vendor `id`.
    if let Some(id) = needle
        .strip_prefix("vendor")
        .and_then(|rest| rest.strip_suffix("@sandbox.invalid"))
        .and_then(|id| id.parse::<i64>().ok())
        && !found.iter().any(|u| u.id == id)
    {
        found.push(fakes.user(id));
    }
    // WordPress's search answer in the default `view` context: no e-mail, no roles.
    let answer: Vec<Value> = found.iter().map(|u| u.json(false)).collect();
    axum::Json(answer).into_response()
}

#[derive(Deserialize)]
struct RolesForm {
    roles: Option<String>,
}

async fn set_roles(
    State(fakes): State<Arc<Fakes>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<RolesForm>,
) -> Response {
    bump(&fakes.calls.wp_user_updates);
    if !fakes.authorized(&headers) {
        return unauthorized();
    }
    let Ok(id) = id.parse::<i64>() else {
        return invalid_id();
    };
    let mut users = fakes.users();
    let user = users.entry(id).or_insert_with(|| SandboxUser::vendor(id));
    if let Some(roles) = form.roles {
        user.roles = roles
            .split(',')
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(str::to_owned)
            .collect();
    }
    axum::Json(user.json(true)).into_response()
}

async fn order(
    State(fakes): State<Arc<Fakes>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    bump(&fakes.calls.wc_orders);
    if !fakes.authorized(&headers) {
        return unauthorized();
    }
    let Ok(id) = id.parse::<i64>() else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"code": "woocommerce_rest_shop_order_invalid_id", "message": "Invalid ID.", "data": {"status": 404}})),
        )
            .into_response();
    };
    let mut order: Value = serde_json::from_str(SAMPLE_ORDER).expect("the order fixture is JSON");
    order["id"] = json!(id);
    axum::Json(order).into_response()
}

/// A one-page PDF (A6) showing `lines` in Helvetica: a small, valid label for the sandbox.
/// Characters outside printable ASCII are shown as `?`.
#[must_use]
pub fn label_pdf(lines: &[String]) -> Vec<u8> {
    let mut content = String::from("0.5 w 10 10 278 400 re S\nBT /F1 11 Tf 20 380 Td 14 TL\n");
    for line in lines {
        let escaped: String = line
            .chars()
            .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
            .flat_map(|c| match c {
                '(' | ')' | '\\' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        content.push_str(&format!("({escaped}) Tj T*\n"));
    }
    content.push_str("ET");
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_owned(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 298 420] /Contents 4 0 R \
         /Resources << /Font << /F1 5 0 R >> >> >>"
            .to_owned(),
        format!(
            "<< /Length {} >>\nstream\n{content}\nendstream",
            content.len()
        ),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_owned(),
    ];
    let mut pdf = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::with_capacity(objects.len());
    for (i, object) in objects.iter().enumerate() {
        offsets.push(pdf.len());
        pdf.extend_from_slice(format!("{} 0 obj\n{object}\nendobj\n", i + 1).as_bytes());
    }
    let xref = pdf.len();
    let mut tail = format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1);
    for offset in offsets {
        tail.push_str(&format!("{offset:010} 00000 n \n"));
    }
    tail.push_str(&format!(
        "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
        objects.len() + 1
    ));
    pdf.extend_from_slice(tail.as_bytes());
    pdf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_label_is_a_pdf_whose_xref_points_at_its_objects() {
        let pdf = label_pdf(&["SANDBOX (test) \\ àé".to_owned(), "line 2".to_owned()]);
        let text = String::from_utf8(pdf.clone()).expect("ASCII");
        assert!(text.starts_with("%PDF-1.4\n"));
        assert!(text.ends_with("%%EOF\n"));
        assert!(text.contains(r"(SANDBOX \(test\) \\ ??) Tj"), "{text}");
        let startxref: usize = text
            .rsplit("startxref\n")
            .next()
            .and_then(|t| t.lines().next())
            .and_then(|n| n.parse().ok())
            .expect("startxref");
        assert!(text[startxref..].starts_with("xref\n0 6\n"));
        for (i, entry) in text[startxref..].lines().skip(3).take(5).enumerate() {
            let offset: usize = entry[..10].parse().expect("offset");
            assert!(
                text[offset..].starts_with(&format!("{} 0 obj", i + 1)),
                "object {}",
                i + 1
            );
        }
        let length: usize = text
            .split("/Length ")
            .nth(1)
            .and_then(|t| t.split(' ').next())
            .and_then(|n| n.parse().ok())
            .expect("length");
        let data = text.find(">>\nstream\n").expect("stream") + ">>\nstream\n".len();
        assert!(text[data..data + length].ends_with("ET"));
        assert!(text[data + length..].starts_with("\nendstream"));
    }

    #[test]
    fn env_names_follow_the_configuration_keys() {
        assert_eq!(env_name("koiki.auth_token"), "LAZONA_KOIKI__AUTH_TOKEN");
        assert_eq!(
            env_name("mail.admin_recipients"),
            "LAZONA_MAIL__ADMIN_RECIPIENTS"
        );
    }

    #[test]
    fn the_sample_order_takes_the_id() {
        let order: Value = serde_json::from_str(&sample_order(4242)).expect("JSON");
        assert_eq!(order["id"], 4242);
        assert_eq!(order["shipping_lines"].as_array().map(Vec::len), Some(2));
    }
}

fn is_member(email: &str) -> bool {
    email.trim().to_lowercase().starts_with(MEMBER_PREFIX) && email.contains('@')
}

#[derive(Deserialize)]
struct CrmForm {
    method: String,
    rest_data: String,
}

/// SugarCRM v4.1's REST endpoint, as far as the connector uses it: `login` (user and md5 of the
/// password), `search_by_module` (Accounts, Contacts by e-mail) and `get_entry` (the
/// relationship roles).
async fn crm(State(fakes): State<Arc<Fakes>>, Form(form): Form<CrmForm>) -> Response {
    bump(&fakes.calls.crm_calls);
    let args: Value = serde_json::from_str(&form.rest_data).unwrap_or(Value::Null);
    let fault = |number: &str, name: &str| {
        axum::Json(json!({"name": name, "number": number, "description": name})).into_response()
    };
    const SESSION: &str = "sandbox-crm-session";
    if form.method == "login" {
        let auth = &args["user_auth"];
        let expected = crate::sugarcrm::md5_hex(CRM_PASSWORD);
        if auth["user_name"] != CRM_USER || auth["password"] != expected.as_str() {
            return fault("10", "Invalid Login");
        }
        return axum::Json(json!({"id": SESSION, "module_name": "Users"})).into_response();
    }
    if args.get(0).and_then(Value::as_str) != Some(SESSION) {
        return fault("11", "Invalid Session ID");
    }
    match form.method.as_str() {
        "search_by_module" => {
            let email = args.get(1).and_then(Value::as_str).unwrap_or_default();
            let contacts: Vec<Value> = if is_member(email) {
                vec![
                    json!({"id": {"name": "id", "value": format!("contact-{}", email.to_lowercase())}}),
                ]
            } else {
                Vec::new()
            };
            axum::Json(json!({"entry_list": [
                {"name": "Accounts", "records": []},
                {"name": "Contacts", "records": contacts},
            ]}))
            .into_response()
        }
        "get_entry" => {
            let module = args.get(1).and_then(Value::as_str).unwrap_or_default();
            let id = args.get(2).and_then(Value::as_str).unwrap_or_default();
            let roles = if id.starts_with("contact-member") {
                "^member^"
            } else {
                ""
            };
            axum::Json(json!({"entry_list": [{
                "id": id,
                "module_name": module,
                "name_value_list": {
                    "stic_relationship_type_c": {"name": "stic_relationship_type_c", "value": roles}
                }
            }]}))
            .into_response()
        }
        other => fault("1000", &format!("unknown method {other}")),
    }
}
