//! What the connector reads from and writes to the shop besides vendors and users: its order
//! listing (for the reconciliation), its webhook configurations, and an order's notes and
//! fields (the tracking written back).

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

/// An order as the shop lists it (`GET wc/v3/orders`): enough to decide whether the inbox has
/// seen it, and its JSON exactly as listed, which is stored like a webhook's body.
#[derive(Clone, PartialEq)]
pub struct ShopOrder {
    /// The order id.
    pub id: i64,
    /// Its status (`processing`, `pending`, ...).
    pub status: String,
    /// When it was last modified (`date_modified_gmt`), when the shop says.
    pub modified: Option<DateTime<Utc>>,
    /// The order's JSON object as the shop sent it (the same shape as an order webhook's body).
    pub body: Bytes,
}

impl std::fmt::Debug for ShopOrder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The body holds personal data: only its size is printed.
        f.debug_struct("ShopOrder")
            .field("id", &self.id)
            .field("status", &self.status)
            .field("modified", &self.modified)
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// One page of the shop's orders modified after a time, oldest modification first.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderPage {
    /// The orders of the page.
    pub orders: Vec<ShopOrder>,
    /// The page size asked for: a page with fewer orders is the last.
    pub per_page: usize,
}

/// A WooCommerce webhook configuration (`GET wc/v3/webhooks`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShopWebhook {
    /// WooCommerce's id.
    pub id: i64,
    /// The name typed in WooCommerce.
    pub name: String,
    /// `order.created`, ...
    pub topic: String,
    /// `active`, `paused` or `disabled`.
    pub status: String,
    /// Where WooCommerce delivers it.
    pub delivery_url: String,
}

impl ShopWebhook {
    /// Whether WooCommerce delivers it.
    pub fn is_active(&self) -> bool {
        self.status == "active"
    }
}

/// A note on an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderNote {
    /// WooCommerce's id.
    pub id: i64,
    /// The text.
    pub note: String,
    /// Whether the customer sees it (and is mailed it).
    pub customer_note: bool,
}

/// A change to an order (`PUT wc/v3/orders/{id}`): only what is set is sent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OrderUpdate {
    /// A new status (`completed`).
    pub status: Option<String>,
    /// Meta entries to set, by key (each replaces the entry with its key).
    pub meta_data: Vec<(String, Value)>,
}
