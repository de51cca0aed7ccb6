//! Parsing a stored webhook's body into its resource: one function, used by intake (which
//! refuses at the door what it cannot parse) and by processing (which then never meets a body
//! it cannot parse), so the two cannot disagree.

use super::{Customer, Order, Resource};
use serde::de::DeserializeOwned;
use std::fmt;

/// Why a body is not a usable order or customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadError {
    /// The field at fault as a path (`id`, `line_items[0].quantity`), when there is one.
    pub field: Option<String>,
    /// What is wrong, for the sender and the operator.
    pub message: String,
}

impl fmt::Display for PayloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{field}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for PayloadError {}

/// Parses `body` as the resource the endpoint receives (a UTF-8 JSON object with an integer
/// `id`, a string holding one being an id; a customer also needs a non-empty `email`) and
/// returns its id.
///
/// # Errors
/// [`PayloadError`] naming the field at fault, when there is one.
pub fn parse(resource: Resource, body: &[u8]) -> Result<i64, PayloadError> {
    match resource {
        Resource::Order => order(body).map(|o| o.id),
        Resource::Customer => customer(body).map(|c| c.id),
    }
}

/// What intake keeps of a parsed body: its id and, for an order, when it was last modified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subject {
    /// The order's or customer's id.
    pub id: i64,
    /// The order's `date_modified_gmt`, when it has one (`None` for a customer).
    pub modified: Option<chrono::DateTime<chrono::Utc>>,
}

/// Parses `body` as [`parse`] does and returns its [`Subject`].
///
/// # Errors
/// As [`parse`].
pub fn subject(resource: Resource, body: &[u8]) -> Result<Subject, PayloadError> {
    match resource {
        Resource::Order => order(body).map(|o| Subject {
            id: o.id,
            modified: o.modified(),
        }),
        Resource::Customer => customer(body).map(|c| Subject {
            id: c.id,
            modified: None,
        }),
    }
}

/// Parses an order webhook's body (see [`parse`]).
///
/// # Errors
/// [`PayloadError`] naming the field at fault, when there is one.
pub fn order(body: &[u8]) -> Result<Order, PayloadError> {
    parse_as(body)
}

/// Parses a customer webhook's body (see [`parse`]): its `email` must not be empty.
///
/// # Errors
/// [`PayloadError`] naming the field at fault, when there is one.
pub fn customer(body: &[u8]) -> Result<Customer, PayloadError> {
    let customer: Customer = parse_as(body)?;
    if customer.email.trim().is_empty() {
        return Err(PayloadError {
            field: Some("email".into()),
            message: "this field is required and must be a non-empty string".into(),
        });
    }
    Ok(customer)
}

/// Parses `body` as a `T`, with the path of the field at fault in the error.
///
/// # Errors
/// [`PayloadError`] when `body` is not UTF-8 JSON of `T`'s shape.
pub fn parse_as<T: DeserializeOwned>(body: &[u8]) -> Result<T, PayloadError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        let message = if first.is_none() {
            "the body is empty; a JSON object was expected"
        } else if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() {
            "the body is JSON but not an object"
        } else {
            "the body is not JSON"
        };
        return Err(PayloadError {
            field: None,
            message: message.into(),
        });
    }
    // JSON is UTF-8 (RFC 8259); serde_json does not check the strings it skips.
    if let Err(e) = std::str::from_utf8(body) {
        return Err(PayloadError {
            field: None,
            message: format!("the body is not valid UTF-8 (at byte {})", e.valid_up_to()),
        });
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.to_string();
        // serde says "missing field `id` at line 1 column 9": say it as the other rejections.
        if let Some(rest) = message.strip_prefix("missing field `") {
            let name = rest.split('`').next().unwrap_or_default();
            let field = if path == "." {
                name.to_owned()
            } else {
                format!("{path}.{name}")
            };
            return PayloadError {
                field: Some(field),
                message: "this field is required".into(),
            };
        }
        if inner.is_syntax() || inner.is_eof() {
            return not_json(&inner);
        }
        PayloadError {
            field: (path != ".").then_some(path),
            message: strip_position(&message).to_owned(),
        }
    })?;
    de.end().map_err(|e| not_json(&e))?;
    Ok(value)
}

fn not_json(e: &serde_json::Error) -> PayloadError {
    PayloadError {
        field: None,
        message: format!("the body is not valid JSON: {e}"),
    }
}

/// "invalid type: ... at line 1 column 30" without the position (the path says where).
fn strip_position(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(i) => &message[..i],
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(body: &str) -> Result<Order, PayloadError> {
        super::order(body.as_bytes())
    }

    #[test]
    fn a_numeric_string_id_is_an_id() {
        assert_eq!(order(r#"{"id":"5003"}"#).expect("parses").id, 5003);
        assert_eq!(order(r#"{"id":" 7 "}"#).expect("parses").id, 7);
        assert_eq!(order(r#"{"id":8.0}"#).expect("parses").id, 8);
    }

    #[test]
    fn what_a_shop_plausibly_sends_is_read() {
        let o = order(
            r#"{"id":1,"order_key":null,"status":null,"shipping":null,"billing":null,
               "line_items":[{"id":"2","quantity":"3","name":12,"meta_data":null}],
               "shipping_lines":null}"#,
        )
        .expect("parses");
        assert_eq!(o.line_items[0].quantity, 3);
        assert_eq!(o.line_items[0].name, "12");
        assert!(o.shipping_lines.is_empty());
    }

    #[test]
    fn what_cannot_be_read_names_its_field() {
        let cases = [
            (r#"{"id":"abc"}"#, Some("id"), "integer"),
            (r#"{"id":null}"#, Some("id"), "integer"),
            (r#"{"id":[1]}"#, Some("id"), "integer"),
            (r#"{"order_key":"x"}"#, Some("id"), "required"),
            (
                r#"{"id":1,"line_items":"x"}"#,
                Some("line_items"),
                "invalid type",
            ),
            (
                r#"{"id":1,"line_items":[{"quantity":"two"}]}"#,
                Some("line_items[0].quantity"),
                "integer",
            ),
            (
                r#"{"id":1,"shipping":{"city":["B"]}}"#,
                Some("shipping.city"),
                "string",
            ),
            (r#"{"id":1} x"#, None, "not valid JSON"),
            (r#"{"id": 1"#, None, "not valid JSON"),
            ("[1]", None, "not an object"),
            ("nope", None, "not JSON"),
            ("  ", None, "empty"),
        ];
        for (body, field, words) in cases {
            let e = order(body).expect_err(body);
            assert_eq!(e.field.as_deref(), field, "{body}: {e}");
            assert!(e.message.contains(words), "{body}: {e}");
        }
    }

    #[test]
    fn invalid_utf8_anywhere_is_refused() {
        let mut body = br#"{"id":1,"unknown":""#.to_vec();
        body.extend_from_slice(&[0xff, 0xfe]);
        body.extend_from_slice(br#""}"#);
        let e = parse(Resource::Order, &body).expect_err("refused");
        assert!(e.message.contains("UTF-8"), "{e}");
    }

    #[test]
    fn a_customer_needs_an_email() {
        let e = parse(Resource::Customer, br#"{"id":1,"email":"  "}"#).expect_err("refused");
        assert_eq!(e.field.as_deref(), Some("email"));
        let ok = parse(Resource::Customer, br#"{"id":"4","email":"a@b.c"}"#).expect("parses");
        assert_eq!(ok, 4);
    }
}
