//! Schemas of the OpenAPI document that are not a handler's own type, built from what the server
//! checks and sends: the query parameters (the page sizes, each listing's cursor, the domain's
//! status names), so that the document accepts exactly what the server accepts; and the
//! messages of the event stream.

use super::{DEFAULT_LIMIT, Listing, MAX_LIMIT};
use domain::model::{EventKind, Resource, ShipmentStatus, WebhookStatus};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::{PartialSchema, ToSchema};

/// `?limit=`: the page size.
pub(crate) struct Limit;

impl PartialSchema for Limit {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .minimum(Some(1))
            .maximum(Some(MAX_LIMIT))
            .default(Some(DEFAULT_LIMIT.into()))
            .into()
    }
}

fn cursor(listing: Listing) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(listing.pattern()))
        .examples([listing.encode(42)])
        .into()
}

/// `?cursor=` of the webhook listing.
pub(crate) struct WebhooksCursor;

impl PartialSchema for WebhooksCursor {
    fn schema() -> RefOr<Schema> {
        cursor(Listing::Webhooks)
    }
}

/// `?cursor=` of the shipment listing.
pub(crate) struct ShipmentsCursor;

impl PartialSchema for ShipmentsCursor {
    fn schema() -> RefOr<Schema> {
        cursor(Listing::Shipments)
    }
}

/// `?cursor=` of the dead job listing.
pub(crate) struct DeadCursor;

impl PartialSchema for DeadCursor {
    fn schema() -> RefOr<Schema> {
        cursor(Listing::Dead)
    }
}

fn names(names: impl IntoIterator<Item = &'static str>) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(names))
        .into()
}

/// `?status=` of the webhook listing: a [`WebhookStatus`].
pub(crate) struct WebhookStatusName;

impl PartialSchema for WebhookStatusName {
    fn schema() -> RefOr<Schema> {
        names(WebhookStatus::ALL.map(WebhookStatus::as_str))
    }
}

/// `?kind=` of the alert listing: an [`domain::model::AlertKind`].
pub(crate) struct AlertKindName;

impl PartialSchema for AlertKindName {
    fn schema() -> RefOr<Schema> {
        names(domain::model::AlertKind::ALL.map(domain::model::AlertKind::as_str))
    }
}

/// `?state=` of the alert listing: `open`, `resolved` or `all`.
pub(crate) struct AlertStateName;

impl PartialSchema for AlertStateName {
    fn schema() -> RefOr<Schema> {
        names(["open", "resolved", "all"])
    }
}

/// `?resource=` of the webhook listing: a [`Resource`].
pub(crate) struct ResourceName;

impl PartialSchema for ResourceName {
    fn schema() -> RefOr<Schema> {
        names([Resource::Order, Resource::Customer].map(Resource::as_str))
    }
}

/// `?status=` of the shipment listing: a [`ShipmentStatus`] in any case (`label_sent` too), as a
/// pattern: `^(?:[Bb][Oo][Oo][Kk][Ii][Nn][Gg]|...)$`.
pub(crate) struct ShipmentStatusName;

impl ShipmentStatusName {
    fn pattern() -> String {
        let any_case = |name: &str| -> String {
            name.chars()
                .map(|c| {
                    if c.is_ascii_alphabetic() {
                        format!("[{}{}]", c.to_ascii_uppercase(), c.to_ascii_lowercase())
                    } else {
                        c.to_string()
                    }
                })
                .collect()
        };
        let names: Vec<String> = ShipmentStatus::ALL
            .iter()
            .map(|s| any_case(s.as_str()))
            .collect();
        format!("^(?:{})$", names.join("|"))
    }
}

impl PartialSchema for ShipmentStatusName {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(Self::pattern()))
            .examples(ShipmentStatus::ALL.map(ShipmentStatus::as_str))
            .into()
    }
}

/// `?action=` of the audit listing: an [`domain::model::AuditAction`].
pub(crate) struct AuditActionName;

impl PartialSchema for AuditActionName {
    fn schema() -> RefOr<Schema> {
        names(domain::model::AuditAction::ALL.map(domain::model::AuditAction::as_str))
    }
}

/// `?actor=` of the audit listing: a name of 1 to 200 characters, no control character.
pub(crate) struct ActorName;

impl ActorName {
    const PATTERN: &str = r"^[^\x00-\x1f\x7f]{1,200}$";

    /// The name, when it is one.
    pub(crate) fn check(s: &str) -> Result<String, String> {
        let ok =
            (1..=200).contains(&s.chars().count()) && !s.chars().any(|c| c < ' ' || c == '\x7f');
        ok.then(|| s.to_owned())
            .ok_or_else(|| "1 to 200 characters, no control character".to_owned())
    }
}

impl PartialSchema for ActorName {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(200))
            .pattern(Some(Self::PATTERN))
            .into()
    }
}

/// `?subject=` of the audit listing: `webhook:12`, `shipment:7`, `job:40`, `alert:3`,
/// `token:2` or `customer:<sha256, hex>`.
pub(crate) struct AuditSubject;

impl AuditSubject {
    const PATTERN: &str =
        "^(?:(?:webhook|shipment|job|alert|token):[0-9]{1,18}|customer:[0-9a-f]{64})$";

    /// The subject, when it is one.
    pub(crate) fn check(s: &str) -> Result<String, String> {
        let ok = match s.split_once(':') {
            Some(("webhook" | "shipment" | "job" | "alert" | "token", id)) => {
                (1..=18).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_digit())
            }
            Some(("customer", hash)) => {
                hash.len() == 64 && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            }
            _ => false,
        };
        ok.then(|| s.to_owned()).ok_or_else(|| {
            "`webhook:<id>`, `shipment:<id>`, `job:<id>`, `alert:<id>`, `token:<id>` or \
             `customer:<sha256, hex>`"
                .to_owned()
        })
    }
}

impl PartialSchema for AuditSubject {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(Self::PATTERN))
            .examples(["shipment:7"])
            .into()
    }
}

/// One message of `GET /api/v1/events`, as Server-Sent Events frame it (an OpenAPI 3.1
/// `text/event-stream` schema describes one event): `event`, `id` and `data`.
pub(crate) struct EventMessage;

impl PartialSchema for EventMessage {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .property(
                "event",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(EventKind::ALL.map(EventKind::as_str)))
                    .description(Some("What happened: the event's `kind`")),
            )
            .property(
                "id",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some("^[0-9]+$"))
                    .description(Some(
                        "The event's id: send it back as `Last-Event-ID` (or `?after=`) to \
                         resume after it",
                    )),
            )
            .property(
                "data",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .content_media_type("application/json")
                    .description(Some(
                        "The event as JSON: `id`, `at`, `kind`, `message`, and the ids it \
                         concerns (`webhook_id`, `job_id`, `shipment_id`, `order_id`, \
                         `vendor_id`)",
                    )),
            )
            .required("event")
            .required("id")
            .required("data")
            .into()
    }
}

impl ToSchema for EventMessage {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipment_status_pattern_is_every_name_in_any_case() {
        let pattern = ShipmentStatusName::pattern();
        assert!(pattern.starts_with("^(?:[Bb][Oo][Oo][Kk][Ii][Nn][Gg]|[Ee][Rr]"));
        assert_eq!(pattern.matches('|').count(), ShipmentStatus::ALL.len() - 1);
        assert!(pattern.contains("[Ll][Aa][Bb][Ee][Ll]_[Ss][Ee][Nn][Tt]"));
    }
}
