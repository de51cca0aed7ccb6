//! A WooCommerce customer, as the customer webhook sends it (the REST API's v3 customer).

use super::lenient;
use serde::Deserialize;

/// The parts of a WooCommerce customer the connector uses. Unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Customer {
    /// The WordPress user id (a string holding an integer is read as one).
    #[serde(deserialize_with = "lenient::int")]
    pub id: i64,
    /// The customer's e-mail: the key to look the person up in the CRM.
    #[serde(default, deserialize_with = "lenient::string")]
    pub email: String,
    /// The WordPress user name.
    #[serde(default, deserialize_with = "lenient::string")]
    pub username: String,
    /// The WooCommerce role (`customer`, ...).
    #[serde(default, deserialize_with = "lenient::string")]
    pub role: String,
}
