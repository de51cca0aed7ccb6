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
//! - WooCommerce `GET /wp-json/wc/v3/orders/{id}`: the order added with that id
//!   ([`Sandbox::add_shop_order`]), or else the two-vendor order fixture with that id.
//! - WooCommerce `GET /wp-json/wc/v3/orders?modified_after=...&dates_are_gmt=true&orderby=modified&
//!   order=asc&per_page=N&page=P`: the orders added, modified after `modified_after`, by
//!   `(date_modified_gmt, id)`, one page (`per_page` 10 by default, 100 at most: above,
//!   WooCommerce's 400 `rest_invalid_param`; `page` from 1), with `X-WP-Total` and
//!   `X-WP-TotalPages`. Only `orderby=modified` is served. [`Sandbox::sample_order`] builds an
//!   order to add.
//! - WooCommerce `PUT /wp-json/wc/v3/orders/{id}` (JSON `status`, `meta_data`): recorded
//!   ([`Sandbox::order_updates`]) and applied to an added order (its modification time kept);
//!   answers the order.
//! - WooCommerce `GET` and `POST /wp-json/wc/v3/orders/{id}/notes` (JSON `note`,
//!   `customer_note`; 201 with the note and its new id): notes kept per order
//!   ([`Sandbox::order_notes`]).
//! - WooCommerce `GET /wp-json/wc/v3/webhooks` and `PUT /wp-json/wc/v3/webhooks/{id}` (JSON
//!   `status`: `active`, `paused` or `disabled`): four webhooks delivering to the connector
//!   (`http://127.0.0.1:8080` unless [`Sandbox::set_connector_url`] says otherwise):
//!   `order.created` (active) and `order.updated` (**disabled**, as WooCommerce leaves one after
//!   five failed deliveries) to `/api/deliveries/`, `customer.created` and `customer.updated`
//!   (active) to `/api/customers/` ([`Sandbox::webhooks`], [`Sandbox::set_webhook_status`]).
//!
//! The shop endpoints want the sandbox's basic-auth credentials (401 otherwise). Every call is
//! counted ([`Sandbox::calls`]).
//!
//! With [`SandboxOptions::mail_events`], a fake Mandrill (`mandrill.rs`) posts signed events
//! about the label mails the SMTP sink receives to the connector's
//! `/api/mail-events/mandrill`: delivered, but the first label mail to vendor 7, which bounces.
//!
//! This file starts the server and keeps the state the fakes share (users, orders, counters); the
//! fakes are in `koiki.rs` (Koiki), `shop.rs` (WCFM, WordPress), `woocommerce.rs` (WooCommerce)
//! and `crm.rs` (SugarCRM).

mod crm;
mod koiki;
mod mandrill;
mod shop;
mod woocommerce;

pub use koiki::label_pdf;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::serve::ListenerExt as _;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
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
use domain::model::ShopWebhook;

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
/// The key the fake Mandrill signs its events with (`mail.events_key`).
pub const MANDRILL_KEY: &str = "sandbox-mandrill-key";
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
pub const SAMPLE_ORDER: &str = include_str!("../../../../tests/fixtures/order_two_vendors.json");
const VENDOR_SETTINGS: &str = include_str!("../../../../tests/fixtures/wcfm_settings_1.json");
const WP_USER: &str = include_str!("../../../../tests/fixtures/wp_user_6.json");
const BOOKING_ANSWER: &str = include_str!("../../../../tests/fixtures/koiki_alta_envios_ok.json");
const TRACKING_ANSWER: &str = include_str!("../../../../tests/fixtures/koiki_track_see_ok.json");
const CUSTOMER: &str = include_str!("../../../../tests/fixtures/customer.json");

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
    /// Run the fake Mandrill: post, signed, what Mandrill's relay would report about each label
    /// mail the sink receives to the connector's `/api/mail-events/mandrill` (delivered, but the
    /// first label mail to vendor 7, which bounces).
    pub mail_events: bool,
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
    /// WooCommerce `orders` listings.
    pub wc_order_lists: u64,
    /// WooCommerce `orders/{id}` updates (PUT).
    pub wc_order_updates: u64,
    /// WooCommerce `orders/{id}/notes` reads.
    pub wc_note_reads: u64,
    /// WooCommerce `orders/{id}/notes` notes added.
    pub wc_note_writes: u64,
    /// WooCommerce `webhooks` listings.
    pub wc_webhook_lists: u64,
    /// WooCommerce `webhooks/{id}` updates.
    pub wc_webhook_updates: u64,
    /// SugarCRM calls (login, search, get_entry).
    pub crm_calls: u64,
    /// Requests refused for a missing or wrong token or password.
    pub refused: u64,
    /// Mail events the fake Mandrill posted and the connector took.
    pub mandrill_events: u64,
    /// Deliveries of the fake Mandrill the connector refused (4xx: a wrong key or URL).
    pub mandrill_refused: u64,
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
    wc_order_lists: AtomicU64,
    wc_order_updates: AtomicU64,
    wc_note_reads: AtomicU64,
    wc_note_writes: AtomicU64,
    wc_webhook_lists: AtomicU64,
    wc_webhook_updates: AtomicU64,
    crm_calls: AtomicU64,
    refused: AtomicU64,
    mandrill_events: AtomicU64,
    mandrill_refused: AtomicU64,
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
            wc_order_lists: get(&self.wc_order_lists),
            wc_order_updates: get(&self.wc_order_updates),
            wc_note_reads: get(&self.wc_note_reads),
            wc_note_writes: get(&self.wc_note_writes),
            wc_webhook_lists: get(&self.wc_webhook_lists),
            wc_webhook_updates: get(&self.wc_webhook_updates),
            crm_calls: get(&self.crm_calls),
            refused: get(&self.refused),
            mandrill_events: get(&self.mandrill_events),
            mandrill_refused: get(&self.mandrill_refused),
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
    /// WooCommerce's orders, notes, updates and webhooks.
    woo: Mutex<woocommerce::Store>,
    /// A prefix unique to this start, so barcodes differ from those of an earlier run.
    run: u32,
    barcodes: AtomicU64,
    shop_auth: String,
}

impl Fakes {
    fn users(&self) -> std::sync::MutexGuard<'_, BTreeMap<i64, SandboxUser>> {
        self.users.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn woo(&self) -> std::sync::MutexGuard<'_, woocommerce::Store> {
        self.woo.lock().unwrap_or_else(PoisonError::into_inner)
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
    smtp: Arc<SmtpSink>,
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
        let smtp = Arc::new(if options.count_mails_only {
            SmtpSink::start_counting().await
        } else {
            SmtpSink::start(options.mail_dir).await
        });
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
            woo: Mutex::new(woocommerce::Store::default()),
            run,
            barcodes: AtomicU64::new(0),
            shop_auth: format!(
                "Basic {}",
                BASE64.encode(format!("{SHOP_USER}:{SHOP_PASSWORD}"))
            ),
        });
        let app = Router::new()
            .route(crate::koiki::BOOKING_PATH, post(koiki::book))
            .route(crate::koiki::TRACKING_PATH, post(koiki::track))
            .route(
                "/wp-json/wcfmmp/v1/settings/id/{id}",
                get(shop::vendor_settings),
            )
            .route("/wp-json/wp/v2/users", get(shop::search_users))
            .route(
                "/wp-json/wp/v2/users/{id}",
                get(shop::user).post(shop::set_roles),
            )
            .route("/wp-json/wc/v3/orders", get(woocommerce::list_orders))
            .route(
                "/wp-json/wc/v3/orders/{id}",
                get(woocommerce::order).put(woocommerce::update_order),
            )
            .route(
                "/wp-json/wc/v3/orders/{id}/notes",
                get(woocommerce::order_notes).post(woocommerce::add_order_note),
            )
            .route("/wp-json/wc/v3/webhooks", get(woocommerce::webhooks))
            .route(
                "/wp-json/wc/v3/webhooks/{id}",
                put(woocommerce::set_webhook),
            )
            .route(CRM_PATH, post(crm::crm))
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
        if options.mail_events {
            tokio::spawn(mandrill::run(fakes.clone(), smtp.clone(), stop.clone()));
        }
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

    /// The sample order (the two-vendor fixture, as [`sample_order`]) with this id, `status` and
    /// `date_modified_gmt` (WooCommerce's `2026-12-07T08:00:00`, UTC without an offset; its
    /// creation and local times are the same), as JSON: an order to [`Sandbox::add_shop_order`]
    /// that books like the sample webhook.
    #[must_use]
    pub fn sample_order(id: i64, status: &str, date_modified_gmt: &str) -> Value {
        woocommerce::sample_order(id, status, date_modified_gmt)
    }

    /// Adds an order to the fake WooCommerce (replacing the one with its id): listed by
    /// `GET wc/v3/orders` after its `date_modified_gmt`, answered by `GET wc/v3/orders/{id}`.
    /// Returns its id. Cheap: the orders are kept sorted as they are added.
    ///
    /// # Panics
    /// When `order` has no integer `id` (a number or a numeric string).
    pub fn add_shop_order(&self, order: Value) -> i64 {
        self.fakes.woo().add_order(order)
    }

    /// [`Sandbox::add_shop_order`] for many orders, under one lock.
    ///
    /// # Panics
    /// As [`Sandbox::add_shop_order`].
    pub fn add_shop_orders(&self, orders: impl IntoIterator<Item = Value>) {
        let mut woo = self.fakes.woo();
        for order in orders {
            woo.add_order(order);
        }
    }

    /// The notes added to order `id` through `POST wc/v3/orders/{id}/notes`, as
    /// `(note, customer_note)`, oldest first.
    #[must_use]
    pub fn order_notes(&self, id: i64) -> Vec<(String, bool)> {
        self.fakes.woo().notes_of(id)
    }

    /// The bodies of the `PUT wc/v3/orders/{id}` received, as `(order id, JSON body)`, oldest
    /// first.
    #[must_use]
    pub fn order_updates(&self) -> Vec<(i64, Value)> {
        self.fakes.woo().updates()
    }

    /// The fake WooCommerce's webhook configurations, by id.
    #[must_use]
    pub fn webhooks(&self) -> Vec<ShopWebhook> {
        self.fakes.woo().webhooks()
    }

    /// Sets webhook `id`'s status (`active`, `paused`, `disabled`); whether there is one.
    pub fn set_webhook_status(&self, id: i64, status: &str) -> bool {
        self.fakes.woo().set_webhook_status(id, status)
    }

    /// Where the connector listens (`http://127.0.0.1:8080` unless told): the webhooks that
    /// delivered to the former URL deliver under this one.
    pub fn set_connector_url(&self, url: &str) {
        self.fakes.woo().set_connector_url(url);
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
            ("mail.events_key", MANDRILL_KEY.to_owned()),
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

#[cfg(test)]
mod tests {
    use super::*;

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
