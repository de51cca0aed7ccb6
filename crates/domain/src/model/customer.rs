//! A WooCommerce customer, as the customer webhook sends it (the REST API's v3 customer).

use serde::Deserialize;

/// The parts of a WooCommerce customer the connector uses. Unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Customer {
    /// The WordPress user id.
    pub id: i64,
    /// The customer's e-mail: the key to look the person up in the CRM.
    #[serde(default)]
    pub email: String,
    /// The WordPress user name.
    #[serde(default)]
    pub username: String,
    /// The WooCommerce role (`customer`, ...).
    #[serde(default)]
    pub role: String,
}
