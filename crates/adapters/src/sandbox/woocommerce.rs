//! The fake WooCommerce: orders (one by id, the listing by modification), their notes and
//! updates, and the webhook configurations, behind the sandbox's basic-auth credentials.
//!
//! Orders added with [`super::Sandbox::add_shop_order`] are kept sorted by
//! `(date_modified_gmt, id)`, so a page of the listing costs a walk to its start and no sort.
//! Any other id is the two-vendor sample order with that id, as before.

use super::{Fakes, SAMPLE_ORDER, bump};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use domain::model::ShopWebhook;
use domain::model::order::parse_gmt;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Arc;

/// Where the sandbox's webhooks deliver unless told the connector's URL.
pub(super) const DEFAULT_CONNECTOR_URL: &str = "http://127.0.0.1:8080";

/// When the sandbox's webhooks were created (WooCommerce shows it; nothing reads it).
const WEBHOOKS_CREATED: &str = "2026-01-01T00:00:00";

/// A note on an order.
#[derive(Debug, Clone)]
struct Note {
    id: i64,
    note: String,
    customer_note: bool,
    created: String,
}

impl Note {
    fn json(&self) -> Value {
        json!({
            "id": self.id,
            "author": "sandbox",
            "date_created": self.created,
            "date_created_gmt": self.created,
            "note": self.note,
            "customer_note": self.customer_note,
        })
    }
}

/// The fake WooCommerce's state.
pub(super) struct Store {
    /// Added orders by `(date_modified_gmt, id)`: the listing's order.
    orders: BTreeMap<(Option<DateTime<Utc>>, i64), Value>,
    /// Each added order's key in `orders`.
    keys: HashMap<i64, Option<DateTime<Utc>>>,
    notes: HashMap<i64, Vec<Note>>,
    last_note_id: i64,
    updates: Vec<(i64, Value)>,
    webhooks: BTreeMap<i64, ShopWebhook>,
    connector_url: String,
}

impl Default for Store {
    fn default() -> Self {
        let connector = DEFAULT_CONNECTOR_URL;
        let hook = |id: i64, name: &str, topic: &str, status: &str, path: &str| {
            (
                id,
                ShopWebhook {
                    id,
                    name: name.to_owned(),
                    topic: topic.to_owned(),
                    status: status.to_owned(),
                    delivery_url: format!("{connector}{path}"),
                },
            )
        };
        Store {
            orders: BTreeMap::new(),
            keys: HashMap::new(),
            notes: HashMap::new(),
            last_note_id: 0,
            updates: Vec::new(),
            // The connector's four webhooks; order.updated disabled, as WooCommerce leaves one
            // after five failed deliveries in a row.
            webhooks: [
                hook(
                    1,
                    "La Zona connector: order created",
                    "order.created",
                    "active",
                    "/api/deliveries/",
                ),
                hook(
                    2,
                    "La Zona connector: order updated",
                    "order.updated",
                    "disabled",
                    "/api/deliveries/",
                ),
                hook(
                    3,
                    "La Zona connector: customer created",
                    "customer.created",
                    "active",
                    "/api/customers/",
                ),
                hook(
                    4,
                    "La Zona connector: customer updated",
                    "customer.updated",
                    "active",
                    "/api/customers/",
                ),
            ]
            .into_iter()
            .collect(),
            connector_url: connector.to_owned(),
        }
    }
}

impl Store {
    /// Adds or replaces an order (by id); its id.
    pub(super) fn add_order(&mut self, order: Value) -> i64 {
        let id = int_of(order.get("id")).expect("a sandbox order has an integer id");
        let modified = order
            .get("date_modified_gmt")
            .and_then(Value::as_str)
            .and_then(parse_gmt);
        if let Some(old) = self.keys.insert(id, modified) {
            self.orders.remove(&(old, id));
        }
        self.orders.insert((modified, id), order);
        id
    }

    fn order(&self, id: i64) -> Option<&Value> {
        let modified = self.keys.get(&id)?;
        self.orders.get(&(*modified, id))
    }

    fn order_mut(&mut self, id: i64) -> Option<&mut Value> {
        let modified = self.keys.get(&id)?;
        self.orders.get_mut(&(*modified, id))
    }

    /// The notes of order `id`, as `(note, customer_note)`, oldest first.
    pub(super) fn notes_of(&self, id: i64) -> Vec<(String, bool)> {
        self.notes
            .get(&id)
            .map(|notes| {
                notes
                    .iter()
                    .map(|n| (n.note.clone(), n.customer_note))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The updates received, as `(order id, JSON body)`, in order.
    pub(super) fn updates(&self) -> Vec<(i64, Value)> {
        self.updates.clone()
    }

    /// The webhook configurations, by id.
    pub(super) fn webhooks(&self) -> Vec<ShopWebhook> {
        self.webhooks.values().cloned().collect()
    }

    /// Sets webhook `id`'s status; whether there is one.
    pub(super) fn set_webhook_status(&mut self, id: i64, status: &str) -> bool {
        match self.webhooks.get_mut(&id) {
            Some(h) => {
                status.clone_into(&mut h.status);
                true
            }
            None => false,
        }
    }

    /// Where the connector listens (`http://127.0.0.1:8080` unless told).
    pub(super) fn connector_url(&self) -> String {
        self.connector_url.clone()
    }

    /// Points the webhooks that delivered to the connector's former URL at `url`.
    pub(super) fn set_connector_url(&mut self, url: &str) {
        let url = url.trim_end_matches('/').to_owned();
        for hook in self.webhooks.values_mut() {
            if let Some(path) = hook.delivery_url.strip_prefix(&self.connector_url) {
                hook.delivery_url = format!("{url}{path}");
            }
        }
        self.connector_url = url;
    }
}

/// An id, given as a number or a numeric string.
fn int_of(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The sample order (the two-vendor fixture) with this id, status and modification time, its
/// creation at the same time.
pub(super) fn sample_order(id: i64, status: &str, date_modified_gmt: &str) -> Value {
    let mut order: Value = serde_json::from_str(SAMPLE_ORDER).expect("the order fixture is JSON");
    order["id"] = json!(id);
    order["status"] = json!(status);
    for field in [
        "date_created",
        "date_created_gmt",
        "date_modified",
        "date_modified_gmt",
    ] {
        order[field] = json!(date_modified_gmt);
    }
    order
}

fn unauthorized() -> Response {
    super::shop::unauthorized()
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"code": code, "message": message, "data": {"status": status.as_u16()}})),
    )
        .into_response()
}

fn invalid_order_id() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "woocommerce_rest_shop_order_invalid_id",
        "Invalid ID.",
    )
}

/// WooCommerce's answer to a query parameter out of its range.
fn invalid_param(name: &str, why: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({
            "code": "rest_invalid_param",
            "message": format!("Invalid parameter(s): {name}"),
            "data": {"status": 400, "params": {name: why}}
        })),
    )
        .into_response()
}

/// A JSON object request body, if it is one.
fn json_body(body: &Bytes) -> Option<serde_json::Map<String, Value>> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    }
}

/// WooCommerce's 400 for a body that is not JSON.
fn invalid_json() -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "rest_invalid_json",
        "Invalid JSON body passed.",
    )
}

pub(super) async fn order(
    State(fakes): State<Arc<Fakes>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    bump(&fakes.calls.wc_orders);
    if !fakes.authorized(&headers) {
        return unauthorized();
    }
    let Ok(id) = id.parse::<i64>() else {
        return invalid_order_id();
    };
    if let Some(order) = fakes.woo().order(id) {
        return axum::Json(order).into_response();
    }
    let mut order: Value = serde_json::from_str(SAMPLE_ORDER).expect("the order fixture is JSON");
    order["id"] = json!(id);
    axum::Json(order).into_response()
}

#[derive(Deserialize)]
pub(super) struct ListQuery {
    modified_after: Option<String>,
    dates_are_gmt: Option<String>,
    orderby: Option<String>,
    order: Option<String>,
    per_page: Option<String>,
    page: Option<String>,
}

/// `GET wc/v3/orders`: the added orders modified after `modified_after`, by
/// `(date_modified_gmt, id)`, one page, with WooCommerce's `X-WP-Total` and `X-WP-TotalPages`.
/// Only `orderby=modified` is served (the reconciliation's); `dates_are_gmt` changes nothing
/// (the sandbox's site is on UTC).
pub(super) async fn list_orders(
    State(fakes): State<Arc<Fakes>>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Response {
    bump(&fakes.calls.wc_order_lists);
    if !fakes.authorized(&headers) {
        return unauthorized();
    }
    let per_page = match query.per_page.as_deref().map(str::parse::<usize>) {
        None => 10,
        Some(Ok(n)) if (1..=100).contains(&n) => n,
        Some(_) => {
            return invalid_param(
                "per_page",
                "per_page must be between 1 (inclusive) and 100 (inclusive)",
            );
        }
    };
    let page = match query.page.as_deref().map(str::parse::<usize>) {
        None => 1,
        Some(Ok(n)) if n >= 1 => n,
        Some(_) => return invalid_param("page", "page must be greater than or equal to 1"),
    };
    let after = match query.modified_after.as_deref() {
        None => None,
        Some(text) => match parse_gmt(text) {
            Some(after) => Some(after),
            None => return invalid_param("modified_after", "Invalid date."),
        },
    };
    if let Some(flag) = query.dates_are_gmt.as_deref()
        && !matches!(flag, "true" | "false" | "1" | "0")
    {
        return invalid_param("dates_are_gmt", "dates_are_gmt is not of type boolean.");
    }
    if query.orderby.as_deref() != Some("modified") {
        return error(
            StatusCode::BAD_REQUEST,
            "sandbox_unsupported_param",
            "The sandbox lists orders only with orderby=modified.",
        );
    }
    let descending = match query.order.as_deref() {
        Some("asc") => false,
        None | Some("desc") => true,
        Some(_) => return invalid_param("order", "order is not one of asc and desc."),
    };
    let (body, total) = {
        let woo = fakes.woo();
        // Orders without a modification time sort first: listed only without `modified_after`.
        let start = match after {
            Some(after) => Bound::Excluded((Some(after), i64::MAX)),
            None => Bound::Unbounded,
        };
        let range = woo.orders.range((start, Bound::Unbounded));
        let total = range.clone().count();
        let skip = (page - 1).saturating_mul(per_page);
        let listed: Vec<&Value> = if descending {
            range
                .rev()
                .skip(skip)
                .take(per_page)
                .map(|(_, o)| o)
                .collect()
        } else {
            range.skip(skip).take(per_page).map(|(_, o)| o).collect()
        };
        (
            serde_json::to_vec(&listed).expect("orders serialize"),
            total,
        )
    };
    let mut response = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert("x-wp-total", HeaderValue::from(total));
    headers.insert(
        "x-wp-totalpages",
        HeaderValue::from(total.div_ceil(per_page)),
    );
    response
}

/// `PUT wc/v3/orders/{id}`: the body is recorded; an added order takes its `status` and
/// `meta_data` entries (its `date_modified_gmt` is left as it was, unlike WooCommerce, so that
/// writing back does not bring it back into the listing). Answers the order.
pub(super) async fn update_order(
    State(fakes): State<Arc<Fakes>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    bump(&fakes.calls.wc_order_updates);
    if !fakes.authorized(&headers) {
        return unauthorized();
    }
    let Ok(id) = id.parse::<i64>() else {
        return invalid_order_id();
    };
    let Some(update) = json_body(&body) else {
        return invalid_json();
    };
    let mut woo = fakes.woo();
    woo.updates.push((id, Value::Object(update.clone())));
    let mut sample: Value;
    let order = match woo.order_mut(id) {
        Some(order) => order,
        None => {
            sample = serde_json::from_str(SAMPLE_ORDER).expect("the order fixture is JSON");
            sample["id"] = json!(id);
            &mut sample
        }
    };
    apply(order, &update);
    axum::Json(order.clone()).into_response()
}

/// An update's `status` and `meta_data` entries applied to an order (each entry replaces the
/// one with its key, or is added).
fn apply(order: &mut Value, update: &serde_json::Map<String, Value>) {
    if let Some(status) = update.get("status") {
        order["status"] = status.clone();
    }
    let Some(Value::Array(entries)) = update.get("meta_data") else {
        return;
    };
    if !order.get("meta_data").is_some_and(Value::is_array) {
        order["meta_data"] = json!([]);
    }
    let Some(Value::Array(meta)) = order.get_mut("meta_data") else {
        return;
    };
    for entry in entries {
        let key = entry.get("key").and_then(Value::as_str).unwrap_or_default();
        let value = entry.get("value").cloned().unwrap_or(Value::Null);
        match meta
            .iter_mut()
            .find(|m| m.get("key").and_then(Value::as_str) == Some(key))
        {
            Some(existing) => existing["value"] = value,
            None => meta.push(json!({"key": key, "value": value})),
        }
    }
}

/// `GET wc/v3/orders/{id}/notes`: the notes added, newest first (as WooCommerce lists them).
pub(super) async fn order_notes(
    State(fakes): State<Arc<Fakes>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    bump(&fakes.calls.wc_note_reads);
    if !fakes.authorized(&headers) {
        return unauthorized();
    }
    let Ok(id) = id.parse::<i64>() else {
        return invalid_order_id();
    };
    let notes: Vec<Value> = fakes
        .woo()
        .notes
        .get(&id)
        .map(|notes| notes.iter().rev().map(Note::json).collect())
        .unwrap_or_default();
    axum::Json(notes).into_response()
}

/// `POST wc/v3/orders/{id}/notes` (`{note, customer_note}`): 201 and the note, with its new id.
pub(super) async fn add_order_note(
    State(fakes): State<Arc<Fakes>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    bump(&fakes.calls.wc_note_writes);
    if !fakes.authorized(&headers) {
        return unauthorized();
    }
    let Ok(id) = id.parse::<i64>() else {
        return invalid_order_id();
    };
    let Some(request) = json_body(&body) else {
        return invalid_json();
    };
    let note = match request.get("note").and_then(Value::as_str) {
        Some(note) if !note.is_empty() => note.to_owned(),
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "rest_missing_callback_param",
                "Missing parameter(s): note",
            );
        }
    };
    let customer_note = match request.get("customer_note") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => matches!(s.as_str(), "true" | "1"),
        Some(Value::Number(n)) => n.as_i64().is_some_and(|n| n != 0),
        _ => false,
    };
    let mut woo = fakes.woo();
    woo.last_note_id += 1;
    let note = Note {
        id: woo.last_note_id,
        note,
        customer_note,
        created: Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string(),
    };
    let answer = note.json();
    woo.notes.entry(id).or_default().push(note);
    (StatusCode::CREATED, axum::Json(answer)).into_response()
}

fn webhook_json(hook: &ShopWebhook) -> Value {
    let (resource, event) = hook.topic.split_once('.').unwrap_or((&hook.topic, ""));
    json!({
        "id": hook.id,
        "name": hook.name,
        "status": hook.status,
        "topic": hook.topic,
        "resource": resource,
        "event": event,
        "hooks": [format!("woocommerce_{}_{}", resource, event)],
        "delivery_url": hook.delivery_url,
        "date_created": WEBHOOKS_CREATED,
        "date_created_gmt": WEBHOOKS_CREATED,
        "date_modified": WEBHOOKS_CREATED,
        "date_modified_gmt": WEBHOOKS_CREATED,
    })
}

/// `GET wc/v3/webhooks`: every configuration, by id (the sandbox has fewer than a page).
pub(super) async fn webhooks(State(fakes): State<Arc<Fakes>>, headers: HeaderMap) -> Response {
    bump(&fakes.calls.wc_webhook_lists);
    if !fakes.authorized(&headers) {
        return unauthorized();
    }
    let hooks: Vec<Value> = fakes.woo().webhooks.values().map(webhook_json).collect();
    axum::Json(hooks).into_response()
}

/// `PUT wc/v3/webhooks/{id}` (`{status}`): the configuration as it now is.
pub(super) async fn set_webhook(
    State(fakes): State<Arc<Fakes>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    bump(&fakes.calls.wc_webhook_updates);
    if !fakes.authorized(&headers) {
        return unauthorized();
    }
    let invalid_id = || {
        error(
            StatusCode::NOT_FOUND,
            "woocommerce_rest_webhook_invalid_id",
            "Invalid ID.",
        )
    };
    let Ok(id) = id.parse::<i64>() else {
        return invalid_id();
    };
    let Some(request) = json_body(&body) else {
        return invalid_json();
    };
    let status = match request.get("status") {
        None => None,
        Some(Value::String(s)) if matches!(s.as_str(), "active" | "paused" | "disabled") => {
            Some(s.clone())
        }
        Some(_) => {
            return invalid_param(
                "status",
                "status is not one of active, paused, and disabled.",
            );
        }
    };
    let mut woo = fakes.woo();
    let Some(hook) = woo.webhooks.get_mut(&id) else {
        return invalid_id();
    };
    if let Some(status) = status {
        hook.status = status;
    }
    axum::Json(webhook_json(hook)).into_response()
}
