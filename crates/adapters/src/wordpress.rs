//! The WordPress shop: [`WordPressShop`] implements [`Shop`] over three REST APIs of the same
//! site (spec §6.1–§6.3), all with basic auth (`WCFMMP_USER`/`WCFMMP_PASSWORD`) and a timeout:
//!
//! - WCFM Marketplace: `GET {host}/wp-json/wcfmmp/v1/settings/id/{id}`, a vendor's store name,
//!   phone and address;
//! - WordPress users: `GET {host}/wp-json/wp/v2/users?search={email}`,
//!   `GET {host}/wp-json/wp/v2/users/{id}?context=edit` (e-mail and roles), and
//!   `POST {host}/wp-json/wp/v2/users/{id}` with the form body `roles=a,b`;
//! - WooCommerce: `GET {host}/wp-json/wc/v3/orders/{id}`;
//!   `GET {host}/wp-json/wc/v3/orders?modified_after={UTC, %Y-%m-%dT%H:%M:%S}&dates_are_gmt=true&
//!   orderby=modified&order=asc&per_page={n}&page={p}` (the reconciliation's listing);
//!   `PUT {host}/wp-json/wc/v3/orders/{id}` with JSON holding only what changes (`status`,
//!   `meta_data: [{key, value}]`); `GET` and `POST {host}/wp-json/wc/v3/orders/{id}/notes` (JSON
//!   `{note, customer_note}`); `GET {host}/wp-json/wc/v3/webhooks?per_page=100` and
//!   `PUT {host}/wp-json/wc/v3/webhooks/{id}` with JSON `{status}`.
//!
//! Answers are read leniently (WordPress sends `[]` for an empty PHP array, `null` or numbers
//! where strings are expected). 404 is [`ShopError::NotFound`]; timeouts, connection errors, 5xx
//! and 429 (with its `Retry-After`) are [`ShopError::Unavailable`]; other 4xx are
//! [`ShopError::Rejected`]; bodies that are not the expected JSON are
//! [`ShopError::InvalidResponse`]. The log lines are the original's (spec §10); the password never
//! reaches them.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::error::ShopError;
use domain::model::order::parse_gmt;
use domain::model::shipment::VendorProfile;
use domain::model::{Order, OrderNote, OrderPage, OrderUpdate, ShopOrder, ShopWebhook};
use domain::ports::{Shop, ShopUser};
use reqwest::{RequestBuilder, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use std::fmt;
use std::time::Duration;

use crate::config::ShopConfig;
use crate::http::{cut, http_client, join, retry_after};
use crate::redact::redact;

/// How many characters of an unexpected body an error message quotes.
const QUOTED_BODY_CHARS: usize = 200;

/// The WordPress shop client. Cheap to clone (the HTTP client is shared).
#[derive(Clone)]
pub struct WordPressShop {
    http: reqwest::Client,
    host: String,
    user: String,
    password: Option<SecretString>,
}

impl fmt::Debug for WordPressShop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WordPressShop")
            .field("host", &self.host)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "[REDACTED]"))
            .finish_non_exhaustive()
    }
}

impl WordPressShop {
    /// A client for the site and credentials of `cfg`, each request limited to `timeout`.
    ///
    /// # Errors
    /// The [`reqwest::Error`] when the HTTP client cannot be built.
    pub fn new(cfg: &ShopConfig, timeout: Duration) -> Result<Self, reqwest::Error> {
        Ok(Self {
            http: http_client(timeout)?,
            host: cfg.host.trim_end_matches('/').to_owned(),
            user: cfg.user.clone(),
            password: cfg.password.clone(),
        })
    }

    fn url(&self, path: &str) -> String {
        join(&self.host, path)
    }

    fn authed(&self, request: RequestBuilder) -> RequestBuilder {
        request.basic_auth(
            &self.user,
            self.password.as_ref().map(|p| p.expose_secret().to_owned()),
        )
    }

    /// Sends a request and returns the JSON answer, or the classified error; `what` names the
    /// thing looked up in [`ShopError::NotFound`].
    async fn send(&self, request: RequestBuilder, what: &str) -> Result<Value, ShopError> {
        let response = self
            .authed(request)
            .send()
            .await
            .map_err(|e| unreachable_error(what, &e))?;
        let status = response.status();
        let retry = retry_after(&response);
        let text = response
            .text()
            .await
            .map_err(|e| unreachable_error(what, &e))?;
        if status == StatusCode::NOT_FOUND {
            return Err(ShopError::NotFound { what: what.into() });
        }
        let quoted = || cut(&text, QUOTED_BODY_CHARS);
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            tracing::error!("Shop response for {what}. status={}", status.as_u16());
            return Err(ShopError::Unavailable {
                reason: format!("{what}: status {}: {}", status.as_u16(), quoted()),
                retry_after: retry,
            });
        }
        if status.is_client_error() {
            tracing::error!("Shop response for {what}. status={}", status.as_u16());
            return Err(ShopError::Rejected {
                reason: format!("{what}: status {}: {}", status.as_u16(), quoted()),
            });
        }
        if !status.is_success() {
            return Err(ShopError::InvalidResponse {
                reason: format!("{what}: status {}: {}", status.as_u16(), quoted()),
            });
        }
        serde_json::from_str(&text).map_err(|e| ShopError::InvalidResponse {
            reason: format!(
                "{what}: status {}, body is not JSON ({e}): {}",
                status.as_u16(),
                quoted()
            ),
        })
    }

    /// `GET wp/v2/users/{id}?context=edit`, the user with e-mail and roles.
    async fn user(&self, user_id: i64) -> Result<ShopUser, ShopError> {
        let url = self.url(&format!("/wp-json/wp/v2/users/{user_id}"));
        tracing::info!(
            "WP GET request. url={}. params={{\"context\": \"edit\"}}",
            redact(&url)
        );
        let what = format!("WordPress user {user_id}");
        let body = self
            .send(self.http.get(&url).query(&[("context", "edit")]), &what)
            .await?;
        wp_user(&body, &what)
    }
}

#[async_trait]
impl Shop for WordPressShop {
    async fn vendor(&self, vendor_id: i64) -> Result<VendorProfile, ShopError> {
        let url = self.url(&format!("/wp-json/wcfmmp/v1/settings/id/{vendor_id}"));
        tracing::info!("Wcfmpp request. url={}", redact(&url));
        let what = format!("WCFM vendor {vendor_id}");
        let settings = self.send(self.http.get(&url), &what).await?;
        if !settings.is_object() {
            return Err(ShopError::InvalidResponse {
                reason: format!(
                    "{what}: the settings are not an object: {}",
                    cut(&settings.to_string(), QUOTED_BODY_CHARS)
                ),
            });
        }
        let address = settings.get("address");
        let field = |name: &str| text_of(address.and_then(|a| a.get(name)));
        let user = self.user(vendor_id).await?;
        Ok(VendorProfile {
            id: vendor_id,
            phone: text_of(settings.get("phone")),
            street: field("street_1"),
            zip: field("zip"),
            city: field("city"),
            state: field("state"),
            country: field("country"),
            email: user.email,
            store_name: text_of(settings.get("store_name")),
        })
    }

    async fn order(&self, order_id: i64) -> Result<Order, ShopError> {
        let url = self.url(&format!("/wp-json/wc/v3/orders/{order_id}"));
        tracing::info!("Woocommerce request. url={}", redact(&url));
        let what = format!("WooCommerce order {order_id}");
        let body = self.send(self.http.get(&url), &what).await?;
        serde_json::from_value(body).map_err(|e| ShopError::InvalidResponse {
            reason: format!("{what}: not an order: {e}"),
        })
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<ShopUser>, ShopError> {
        let url = self.url("/wp-json/wp/v2/users");
        // The customer's e-mail: DEBUG only.
        tracing::info!(
            "WP GET request. url={}. params={{\"search\": ...}}",
            redact(&url)
        );
        tracing::debug!(
            "WP GET request. url={}. params={{\"search\": {email:?}}}",
            redact(&url)
        );
        let what = format!("WordPress users matching {email}");
        let found = self
            .send(self.http.get(&url).query(&[("search", email)]), &what)
            .await?;
        let Value::Array(candidates) = found else {
            return Err(ShopError::InvalidResponse {
                reason: format!(
                    "{what}: not a list: {}",
                    cut(&found.to_string(), QUOTED_BODY_CHARS)
                ),
            });
        };
        // WordPress's `search` also matches logins, names and parts of addresses: keep the user
        // whose e-mail is this one (the original took the first match, whoever it was).
        for candidate in &candidates {
            let Some(id) = int_of(candidate.get("id")) else {
                return Err(ShopError::InvalidResponse {
                    reason: format!(
                        "{what}: a user without an id: {}",
                        cut(&candidate.to_string(), QUOTED_BODY_CHARS)
                    ),
                });
            };
            match self.user(id).await {
                Ok(user) if user.email.trim().eq_ignore_ascii_case(email.trim()) => {
                    return Ok(Some(user));
                }
                Ok(_) | Err(ShopError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    async fn set_user_roles(&self, user_id: i64, roles: &[String]) -> Result<ShopUser, ShopError> {
        let url = self.url(&format!("/wp-json/wp/v2/users/{user_id}"));
        let data = roles.join(",");
        tracing::info!(
            "WP POST request. url={}. data={{\"roles\": {data:?}}}",
            redact(&url)
        );
        let what = format!("WordPress user {user_id}");
        let body = self
            .send(self.http.post(&url).form(&[("roles", &data)]), &what)
            .await?;
        wp_user(&body, &what)
    }

    async fn orders_modified_after(
        &self,
        after: DateTime<Utc>,
        page: u32,
        per_page: u32,
    ) -> Result<OrderPage, ShopError> {
        let url = self.url("/wp-json/wc/v3/orders");
        let modified_after = after.format("%Y-%m-%dT%H:%M:%S").to_string();
        let (page_text, per_page_text) = (page.to_string(), per_page.to_string());
        let params = [
            ("modified_after", modified_after.as_str()),
            ("dates_are_gmt", "true"),
            ("orderby", "modified"),
            ("order", "asc"),
            ("per_page", per_page_text.as_str()),
            ("page", page_text.as_str()),
        ];
        tracing::info!(
            "Woocommerce request. url={}. params={{\"modified_after\": {modified_after:?}, \
             \"page\": {page}, \"per_page\": {per_page}}}",
            redact(&url)
        );
        let what = format!("WooCommerce orders modified after {modified_after} (page {page})");
        let listed = self.send(self.http.get(&url).query(&params), &what).await?;
        let Value::Array(items) = listed else {
            return Err(ShopError::InvalidResponse {
                reason: format!(
                    "{what}: not a list: {}",
                    cut(&listed.to_string(), QUOTED_BODY_CHARS)
                ),
            });
        };
        let orders = items
            .iter()
            .map(|item| shop_order(item, &what))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(OrderPage {
            orders,
            per_page: per_page as usize,
        })
    }

    async fn webhooks(&self) -> Result<Vec<ShopWebhook>, ShopError> {
        let url = self.url("/wp-json/wc/v3/webhooks");
        tracing::info!(
            "Woocommerce request. url={}. params={{\"per_page\": 100}}",
            redact(&url)
        );
        let what = "WooCommerce webhooks";
        let listed = self
            .send(self.http.get(&url).query(&[("per_page", "100")]), what)
            .await?;
        let Value::Array(items) = listed else {
            return Err(ShopError::InvalidResponse {
                reason: format!(
                    "{what}: not a list: {}",
                    cut(&listed.to_string(), QUOTED_BODY_CHARS)
                ),
            });
        };
        items.iter().map(|item| shop_webhook(item, what)).collect()
    }

    async fn set_webhook_status(&self, id: i64, status: &str) -> Result<ShopWebhook, ShopError> {
        let url = self.url(&format!("/wp-json/wc/v3/webhooks/{id}"));
        tracing::info!(
            "Woocommerce PUT request. url={}. data={{\"status\": {status:?}}}",
            redact(&url)
        );
        let what = format!("WooCommerce webhook {id}");
        let body = self
            .send(self.http.put(&url).json(&json!({"status": status})), &what)
            .await?;
        shop_webhook(&body, &what)
    }

    async fn order_notes(&self, order_id: i64) -> Result<Vec<OrderNote>, ShopError> {
        let url = self.url(&format!("/wp-json/wc/v3/orders/{order_id}/notes"));
        tracing::info!("Woocommerce request. url={}", redact(&url));
        let what = format!("notes of WooCommerce order {order_id}");
        let listed = self.send(self.http.get(&url), &what).await?;
        let Value::Array(items) = listed else {
            return Err(ShopError::InvalidResponse {
                reason: format!(
                    "{what}: not a list: {}",
                    cut(&listed.to_string(), QUOTED_BODY_CHARS)
                ),
            });
        };
        items.iter().map(|item| order_note(item, &what)).collect()
    }

    async fn add_order_note(
        &self,
        order_id: i64,
        note: &str,
        customer_note: bool,
    ) -> Result<OrderNote, ShopError> {
        let url = self.url(&format!("/wp-json/wc/v3/orders/{order_id}/notes"));
        // The note's text may hold personal data: only its length is logged.
        tracing::info!(
            "Woocommerce POST request. url={}. data={{\"note\": <{} chars>, \"customer_note\": \
             {customer_note}}}",
            redact(&url),
            note.chars().count()
        );
        let what = format!("notes of WooCommerce order {order_id}");
        let body = self
            .send(
                self.http
                    .post(&url)
                    .json(&json!({"note": note, "customer_note": customer_note})),
                &what,
            )
            .await?;
        order_note(&body, &what)
    }

    async fn update_order(&self, order_id: i64, update: &OrderUpdate) -> Result<(), ShopError> {
        let url = self.url(&format!("/wp-json/wc/v3/orders/{order_id}"));
        let mut data = serde_json::Map::new();
        if let Some(status) = &update.status {
            data.insert("status".into(), json!(status));
        }
        if !update.meta_data.is_empty() {
            let meta: Vec<Value> = update
                .meta_data
                .iter()
                .map(|(key, value)| json!({"key": key, "value": value}))
                .collect();
            data.insert("meta_data".into(), Value::Array(meta));
        }
        let keys: Vec<&str> = update.meta_data.iter().map(|(k, _)| k.as_str()).collect();
        tracing::info!(
            "Woocommerce PUT request. url={}. status={:?}. meta_data keys={keys:?}",
            redact(&url),
            update.status
        );
        let what = format!("WooCommerce order {order_id}");
        self.send(self.http.put(&url).json(&Value::Object(data)), &what)
            .await?;
        Ok(())
    }
}

/// One element of the orders' listing, as the domain's [`ShopOrder`]: its id, status and
/// modification, and the element itself as compact JSON (the body stored like a webhook's).
fn shop_order(item: &Value, what: &str) -> Result<ShopOrder, ShopError> {
    let id = int_of(item.get("id")).ok_or_else(|| ShopError::InvalidResponse {
        reason: format!(
            "{what}: an order without an id: {}",
            cut(&item.to_string(), QUOTED_BODY_CHARS)
        ),
    })?;
    let body = serde_json::to_vec(item).map_err(|e| ShopError::InvalidResponse {
        reason: format!("{what}: order {id} cannot be serialized: {e}"),
    })?;
    Ok(ShopOrder {
        id,
        status: text_of(item.get("status")),
        modified: parse_gmt(&text_of(item.get("date_modified_gmt"))),
        body: body.into(),
    })
}

/// A WooCommerce webhook configuration (an element of `webhooks`, or a PUT's answer).
fn shop_webhook(item: &Value, what: &str) -> Result<ShopWebhook, ShopError> {
    let id = int_of(item.get("id")).ok_or_else(|| ShopError::InvalidResponse {
        reason: format!(
            "{what}: a webhook without an id: {}",
            cut(&item.to_string(), QUOTED_BODY_CHARS)
        ),
    })?;
    Ok(ShopWebhook {
        id,
        name: text_of(item.get("name")),
        topic: text_of(item.get("topic")),
        status: text_of(item.get("status")),
        delivery_url: text_of(item.get("delivery_url")),
    })
}

/// An order note (an element of `orders/{id}/notes`, or a POST's answer).
fn order_note(item: &Value, what: &str) -> Result<OrderNote, ShopError> {
    let id = int_of(item.get("id")).ok_or_else(|| ShopError::InvalidResponse {
        reason: format!(
            "{what}: a note without an id: {}",
            cut(&item.to_string(), QUOTED_BODY_CHARS)
        ),
    })?;
    Ok(OrderNote {
        id,
        note: text_of(item.get("note")),
        customer_note: bool_of(item.get("customer_note")),
    })
}

/// A WordPress user as `users/{id}?context=edit` (or the POST's answer) shows it, as the
/// domain's [`ShopUser`].
fn wp_user(body: &Value, what: &str) -> Result<ShopUser, ShopError> {
    let id = int_of(body.get("id")).ok_or_else(|| ShopError::InvalidResponse {
        reason: format!(
            "{what}: no user id in the answer: {}",
            cut(&body.to_string(), QUOTED_BODY_CHARS)
        ),
    })?;
    let roles = match body.get("roles") {
        Some(Value::Array(roles)) => roles.iter().map(|r| text_of(Some(r))).collect(),
        // An object when PHP's role array lost its order (`{"1": "role"}`).
        Some(Value::Object(roles)) => roles.values().map(|r| text_of(Some(r))).collect(),
        _ => Vec::new(),
    };
    Ok(ShopUser {
        id,
        email: text_of(body.get("email")),
        roles,
    })
}

/// A string field as text: strings as they are, numbers and booleans as JSON, anything else
/// (missing, null, `false`, `[]`) as "".
fn text_of(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(true)) => "true".into(),
        _ => String::new(),
    }
}

/// A flag: `true`, a non-zero number, or `"true"`, `"yes"` or `"1"`; anything else is false.
fn bool_of(value: Option<&Value>) -> bool {
    match value {
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|n| n != 0.0),
        Some(Value::String(s)) => matches!(s.trim(), "true" | "yes" | "1"),
        _ => false,
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

/// The error for a request that got no answer.
fn unreachable_error(what: &str, e: &reqwest::Error) -> ShopError {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    tracing::error!("Shop request for {what} {kind}: {}", redact(&e.to_string()));
    ShopError::Unavailable {
        reason: redact(&format!(
            "{what}: {kind}: {}",
            domain::error::error_chain(e)
        )),
        retry_after: None,
    }
}
