//! The WordPress shop: [`WordPressShop`] implements [`Shop`] over three REST APIs of the same
//! site (spec §6.1–§6.3), all with basic auth (`WCFMMP_USER`/`WCFMMP_PASSWORD`) and a timeout:
//!
//! - WCFM Marketplace: `GET {host}/wp-json/wcfmmp/v1/settings/id/{id}`, a vendor's store phone and
//!   address;
//! - WordPress users: `GET {host}/wp-json/wp/v2/users?search={email}`,
//!   `GET {host}/wp-json/wp/v2/users/{id}?context=edit` (e-mail and roles), and
//!   `POST {host}/wp-json/wp/v2/users/{id}` with the form body `roles=a,b`;
//! - WooCommerce: `GET {host}/wp-json/wc/v3/orders/{id}`.
//!
//! Answers are read leniently (WordPress sends `[]` for an empty PHP array, `null` or numbers
//! where strings are expected). 404 is [`ShopError::NotFound`]; timeouts, connection errors, 5xx
//! and 429 (with its `Retry-After`) are [`ShopError::Unavailable`]; other 4xx are
//! [`ShopError::Rejected`]; bodies that are not the expected JSON are
//! [`ShopError::InvalidResponse`]. The log lines are the original's (spec §10); the password never
//! reaches them.

use async_trait::async_trait;
use domain::error::ShopError;
use domain::model::Order;
use domain::model::shipment::VendorProfile;
use domain::ports::{Shop, ShopUser};
use reqwest::{RequestBuilder, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
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
            store_name: String::new(),
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
        tracing::info!(
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
