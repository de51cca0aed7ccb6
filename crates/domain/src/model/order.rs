//! A WooCommerce order (REST API v3 shape), lenient: every field the connector does not need may
//! be missing, and meta values may be any JSON (WooCommerce sends arrays and objects there).

use super::lenient;
use serde::Deserialize;
use serde_json::Value;

/// The parts of a WooCommerce order the connector uses. Unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Order {
    /// The order id (a string holding an integer is read as one).
    #[serde(deserialize_with = "lenient::int")]
    pub id: i64,
    /// The order key (`wc_order_...`), sent to Koiki as `numPedido`.
    #[serde(default, deserialize_with = "lenient::string")]
    pub order_key: String,
    /// The WooCommerce order status (`processing`, ...).
    #[serde(default, deserialize_with = "lenient::string")]
    pub status: String,
    /// When the order was last modified, in UTC (`2024-05-02T10:11:12`, WooCommerce's
    /// `date_modified_gmt`); empty when the payload has none.
    #[serde(default, deserialize_with = "lenient::string")]
    pub date_modified_gmt: String,
    /// The customer's note, sent to Koiki as `observaciones`.
    #[serde(default, deserialize_with = "lenient::string")]
    pub customer_note: String,
    /// Where the parcel goes.
    #[serde(default, deserialize_with = "lenient::or_default")]
    pub shipping: Address,
    /// The customer's contact data.
    #[serde(default, deserialize_with = "lenient::or_default")]
    pub billing: Billing,
    /// The products, each with its vendor in `_vendor_id` meta.
    #[serde(default, deserialize_with = "lenient::or_default")]
    pub line_items: Vec<LineItem>,
    /// The shipping methods, each with its vendor in `vendor_id` meta (WCFM).
    #[serde(default, deserialize_with = "lenient::or_default")]
    pub shipping_lines: Vec<ShippingLine>,
}

impl Order {
    /// When the order was last modified ([`Order::date_modified_gmt`]), if it reads as a date.
    pub fn modified(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        parse_gmt(&self.date_modified_gmt)
    }
}

/// A WooCommerce `*_gmt` date (`2024-05-02T10:11:12`, UTC without an offset; one with an offset
/// or a `Z` is read too).
pub fn parse_gmt(text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if let Ok(d) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(d.with_timezone(&chrono::Utc));
    }
    chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|d| d.and_utc())
}

/// A postal address (the order's `shipping`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Address {
    /// First name.
    #[serde(deserialize_with = "lenient::string")]
    pub first_name: String,
    /// Last name.
    #[serde(deserialize_with = "lenient::string")]
    pub last_name: String,
    /// Street and number.
    #[serde(deserialize_with = "lenient::string")]
    pub address_1: String,
    /// More address.
    #[serde(deserialize_with = "lenient::string")]
    pub address_2: String,
    /// Postcode.
    #[serde(deserialize_with = "lenient::string")]
    pub postcode: String,
    /// City.
    #[serde(deserialize_with = "lenient::string")]
    pub city: String,
    /// State or province (a WooCommerce code such as `B`).
    #[serde(deserialize_with = "lenient::string")]
    pub state: String,
    /// ISO 3166 alpha-2 country.
    #[serde(deserialize_with = "lenient::string")]
    pub country: String,
}

/// The order's `billing` contact data.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Billing {
    /// Phone, as typed by the customer.
    #[serde(deserialize_with = "lenient::string")]
    pub phone: String,
    /// E-mail.
    #[serde(deserialize_with = "lenient::string")]
    pub email: String,
}

/// A product line.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct LineItem {
    /// The line id.
    #[serde(default, deserialize_with = "lenient::int_or_zero")]
    pub id: i64,
    /// The product name.
    #[serde(default, deserialize_with = "lenient::string")]
    pub name: String,
    /// How many.
    #[serde(default, deserialize_with = "lenient::int_or_zero")]
    pub quantity: i64,
    /// Meta entries (WCFM puts the vendor in `_vendor_id`).
    #[serde(default, deserialize_with = "lenient::or_default")]
    pub meta_data: Vec<MetaData>,
}

/// A shipping line.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ShippingLine {
    /// The line id.
    #[serde(default, deserialize_with = "lenient::int_or_zero")]
    pub id: i64,
    /// The method's title, for people.
    #[serde(default, deserialize_with = "lenient::string")]
    pub method_title: String,
    /// The method's id (`flat_rate`, `local_pickup`, ...).
    #[serde(default, deserialize_with = "lenient::string")]
    pub method_id: String,
    /// Meta entries (WCFM puts the vendor in `vendor_id`).
    #[serde(default, deserialize_with = "lenient::or_default")]
    pub meta_data: Vec<MetaData>,
}

/// A meta entry. The value may be any JSON.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MetaData {
    /// The entry id.
    #[serde(default, deserialize_with = "lenient::int_or_zero")]
    pub id: i64,
    /// The key (`_vendor_id`, `vendor_id`, ...).
    #[serde(default, deserialize_with = "lenient::string")]
    pub key: String,
    /// The value, any JSON.
    #[serde(default)]
    pub value: Value,
    /// The key for people.
    #[serde(default, deserialize_with = "lenient::string")]
    pub display_key: String,
    /// The value for people (for `_vendor_id`, the store name).
    #[serde(default, deserialize_with = "display_value")]
    pub display_value: String,
}

/// `display_value` is usually a string but WooCommerce sends whatever the value was.
fn display_value<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => s,
        Value::Null => String::new(),
        other => other.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_accepts_what_the_original_rejected() {
        let body = r#"{"id": 7, "customer_note": null, "shipping": {"postcode": "1234567"},
            "line_items": [{"id": 1, "meta_data": [{"id": 1, "key": "_vendor_id", "value": ["a", 1],
              "display_key": "Store", "display_value": ""}]}], "extra": {"x": [1, 2]}}"#;
        let order: Order = serde_json::from_str(body).expect("lenient order");
        assert_eq!(order.id, 7);
        assert_eq!(order.shipping.postcode, "1234567");
        assert!(order.line_items[0].meta_data[0].value.is_array());
    }
}
