//! The operations API under `/api/v1/` (JSON): stored webhooks, shipments and their labels, dead
//! jobs, and the operators' actions (replay, retry, track, requeue), each enqueued as a job and
//! answered 202 with its id; and the live stream of what the connector does ([`events`], as
//! Server-Sent Events).
//!
//! Every request but the OpenAPI document needs `Authorization: Bearer <token>` ([`auth`]): an
//! admin token sees and operates everything, a vendor's token sees only that vendor's shipments
//! and labels (another vendor's is answered 404, as if it did not exist). Errors have the stable
//! shape of [`crate::ApiError`]. Listings are newest first, with cursor pagination:
//! `{"items": [...], "next_cursor": "..."}`; pass `next_cursor` back as `?cursor=` for the next
//! page (`null` on the last one).
//!
//! The routes are registered from the handlers' `#[utoipa::path]` attributes
//! ([`utoipa_axum::routes!`]), so the OpenAPI document ([`openapi`]) and the router cannot
//! disagree.

mod alerts;
mod audit;
pub mod auth;
mod dead;
pub mod events;
mod extract;
pub mod openapi;
mod purge;
pub(crate) mod schemas;
mod shipments;
mod webhooks;

pub(crate) use extract::{Id, Query};

use crate::{ApiError, AppState};
use axum::http::Uri;
use domain::model::Actor;
use domain::ports::{
    AlertStore, AuditLog, EventLog, JobQueue, MailEventStore, ShipmentStore, TokenStore,
};
use domain::service::operations::{OperationError, Operator, Refusal};
use serde::Serialize;
use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// What the operations API needs besides the inbox.
#[derive(Clone)]
pub struct ApiDeps {
    /// The shipments and their labels.
    pub shipments: Arc<dyn ShipmentStore>,
    /// Where actions enqueue their jobs, and the dead letters.
    pub queue: Arc<dyn JobQueue>,
    /// The API tokens.
    pub tokens: Arc<dyn TokenStore>,
    /// The alerts.
    pub alerts: Arc<dyn AlertStore>,
    /// The label mails' events, shown with their shipment.
    pub mail_events: Arc<dyn MailEventStore>,
    /// Who did what: every action is recorded there with its token.
    pub audit: Arc<dyn AuditLog>,
    /// Where the actions are told to the live stream.
    pub events: Arc<dyn EventLog>,
    /// The connector itself, for the actions it carries out whole (a customer's erasure).
    pub connector: connector::Connector,
}

impl ApiDeps {
    /// `actor` taking the operators' actions, recorded in the audit and event logs.
    pub(crate) fn operator<'a>(&'a self, actor: &'a Actor) -> Operator<'a> {
        Operator {
            actor,
            audit: self.audit.as_ref(),
            events: self.events.as_ref(),
        }
    }
}

impl AppState {
    /// The API's dependencies; 503 when this server was built without them.
    pub(crate) fn api(&self) -> Result<&ApiDeps, ApiError> {
        self.api.as_deref().ok_or_else(|| {
            ApiError::Unavailable("the operations API is not configured on this server".into())
        })
    }
}

/// The API's routes with their OpenAPI document (see [`openapi::ApiDoc`]).
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(<openapi::ApiDoc as utoipa::OpenApi>::openapi())
        .routes(routes!(webhooks::list))
        .routes(routes!(webhooks::show))
        .routes(routes!(webhooks::replay))
        .routes(routes!(shipments::list))
        .routes(routes!(shipments::show))
        .routes(routes!(shipments::label))
        .routes(routes!(shipments::retry))
        .routes(routes!(shipments::track))
        .routes(routes!(dead::list))
        .routes(routes!(dead::requeue))
        .routes(routes!(alerts::list))
        .routes(routes!(alerts::show))
        .routes(routes!(alerts::resolve))
        .routes(routes!(audit::list))
        .routes(routes!(purge::purge))
        .routes(routes!(events::handler))
        .routes(routes!(openapi::document))
}

/// The stable error shape of every failure.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code: `unauthorized`, `forbidden`, `not_found`,
    /// `invalid_parameter`, `refused`, `storage_unavailable`, ...
    pub code: String,
    /// For people.
    pub message: String,
    /// The parameter at fault (`invalid_parameter`).
    pub field: Option<String>,
}

/// An action's answer (202): its job is enqueued and a worker will carry it out.
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    /// The job's id (see `GET /api/v1/dead` if it fails for good).
    pub job_id: i64,
    /// What the job does (`retry_shipment`, `track_shipment`, `process_webhook`, ...).
    pub job: String,
    /// A forced replay of an order: the jobs booking its existing shipments again.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub retry_job_ids: Vec<i64>,
}

/// Default and largest page sizes.
pub(crate) const DEFAULT_LIMIT: u64 = 50;
pub(crate) const MAX_LIMIT: u64 = 500;

/// The query string of a request, parsed field by field so that a bad value is answered 400 with
/// the field's name, and an unknown field (a typo that would silently widen a listing) too.
pub(crate) struct Params {
    pairs: BTreeMap<String, String>,
}

fn bad(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::BadParameter {
        field: field.to_owned(),
        message: message.into(),
    }
}

impl Params {
    /// The parameters of `uri`.
    pub(crate) fn of(uri: &Uri) -> Result<Self, ApiError> {
        let pairs: Vec<(String, String)> = axum::extract::Query::try_from_uri(uri)
            .map(|q| q.0)
            .map_err(|e| bad("query", format!("the query string does not parse: {e}")))?;
        let mut map = BTreeMap::new();
        for (k, v) in pairs {
            if map.contains_key(&k) {
                return Err(bad(&k, format!("`{k}` is given more than once")));
            }
            map.insert(k, v);
        }
        Ok(Params { pairs: map })
    }

    /// Takes `field` and parses it; `None` when absent.
    pub(crate) fn take<T>(&mut self, field: &str) -> Result<Option<T>, ApiError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        match self.pairs.remove(field) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|e| bad(field, format!("`{field}`: {e}"))),
        }
    }

    /// Takes `field` with `parse`; `None` when absent.
    pub(crate) fn take_with<T>(
        &mut self,
        field: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ApiError> {
        match self.pairs.remove(field) {
            None => Ok(None),
            Some(v) => parse(&v)
                .map(Some)
                .map_err(|e| bad(field, format!("`{field}`: {e}"))),
        }
    }

    /// `?force=true|false` (absent: false).
    pub(crate) fn force(&mut self) -> Result<bool, ApiError> {
        Ok(self.take::<bool>("force")?.unwrap_or(false))
    }

    /// `?limit=` (1 to 500, absent: 50).
    pub(crate) fn limit(&mut self) -> Result<u64, ApiError> {
        match self.take::<u64>("limit")? {
            None => Ok(DEFAULT_LIMIT),
            Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            Some(_) => Err(bad("limit", format!("`limit` must be 1 to {MAX_LIMIT}"))),
        }
    }

    /// `?cursor=` (a `next_cursor` of this listing) and `?before=` (an id): the rows below
    /// both (each is a bound, and bounds add up as the other filters do).
    pub(crate) fn before_id(&mut self, listing: Listing) -> Result<Option<i64>, ApiError> {
        let before = self.take::<i64>("before")?;
        let cursor = self.take_with("cursor", |c| listing.decode(c))?;
        Ok(before.into_iter().chain(cursor).min())
    }

    /// Refuses what is left: a parameter the endpoint does not know.
    pub(crate) fn finish(self) -> Result<(), ApiError> {
        match self.pairs.into_keys().next() {
            None => Ok(()),
            Some(k) => Err(bad(&k, format!("unknown parameter `{k}`"))),
        }
    }
}

/// Which listing a cursor belongs to (a cursor from one is refused by another).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Listing {
    Webhooks,
    Shipments,
    Dead,
}

impl Listing {
    fn tag(self) -> &'static str {
        match self {
            Listing::Webhooks => "webhooks",
            Listing::Shipments => "shipments",
            Listing::Dead => "dead",
        }
    }

    /// The cursor for the page after the row `id`: `<listing>-<id>` (`webhooks-42`).
    pub(crate) fn encode(self, id: i64) -> String {
        format!("{}-{id}", self.tag())
    }

    /// What [`Listing::decode`] accepts, as a regular expression (for the OpenAPI document):
    /// this listing's tag and up to 18 digits (ids stay far below 10^18; 19 digits could
    /// overflow an `i64`).
    pub(crate) fn pattern(self) -> String {
        format!("^{}-[0-9]{{1,18}}$", self.tag())
    }

    fn decode(self, cursor: &str) -> Result<i64, String> {
        cursor
            .strip_prefix(self.tag())
            .and_then(|rest| rest.strip_prefix('-'))
            .filter(|digits| (1..=18).contains(&digits.len()))
            .filter(|digits| digits.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|digits| digits.parse().ok())
            .ok_or_else(|| {
                format!(
                    "not a cursor of this listing (`{}-<id>`: pass `next_cursor` back as it is)",
                    self.tag()
                )
            })
    }
}

/// An operation's failure as an answer: 404, 409 (with how to insist, where one can) or 503.
pub(crate) fn operation_error(e: OperationError) -> ApiError {
    match e {
        OperationError::NoShipment(id) => ApiError::Missing(format!("no shipment {id}")),
        OperationError::NoWebhook(id) => ApiError::Missing(format!("no webhook {id}")),
        OperationError::NoDeadJob(id) => ApiError::Missing(format!("no dead job {id}")),
        OperationError::NoAlert(id) => ApiError::Missing(format!("no alert {id}")),
        OperationError::NoToken(id) => ApiError::Missing(format!("no token {id}")),
        e @ OperationError::NotRecorded { .. } => {
            ApiError::NotRecorded(domain::error::error_chain(&e))
        }
        OperationError::Refused(refusal) => {
            let hint = match refusal {
                Refusal::NeedsForce { .. } => {
                    "; to book a second parcel anyway, call again with ?force=true"
                }
                _ => "",
            };
            ApiError::Refused(format!("{refusal}{hint}"))
        }
        OperationError::Unavailable(e) => ApiError::Unavailable(domain::error::error_chain(&*e)),
    }
}

/// Storage failures: 503, nothing changed.
pub(crate) fn unavailable(e: impl std::error::Error) -> ApiError {
    ApiError::Unavailable(domain::error::error_chain(&e))
}

/// Cuts a page fetched with one row more than `limit`: the items, and the cursor of the next
/// page when there is one.
pub(crate) fn page<T>(
    mut rows: Vec<T>,
    limit: u64,
    listing: Listing,
    id: impl Fn(&T) -> i64,
) -> (Vec<T>, Option<String>) {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    if rows.len() > limit {
        rows.truncate(limit);
        let next = rows.last().map(|r| listing.encode(id(r)));
        (rows, next)
    } else {
        (rows, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_belong_to_their_listing() {
        let c = Listing::Webhooks.encode(42);
        assert_eq!(Listing::Webhooks.decode(&c), Ok(42));
        assert!(Listing::Shipments.decode(&c).is_err());
        assert!(Listing::Webhooks.decode("nonsense!").is_err());
        for listing in [Listing::Webhooks, Listing::Shipments, Listing::Dead] {
            let biggest = 999_999_999_999_999_999;
            assert_eq!(listing.decode(&listing.encode(biggest)), Ok(biggest));
            // Exactly what the documented pattern says: digits only, 1 to 18 of them.
            let tag = listing.tag();
            for refused in [
                "",
                "--1",
                "-+1",
                "- 1",
                "-1.0",
                "-1x",
                "-0000000000000000000",
            ] {
                assert!(
                    listing.decode(&format!("{tag}{refused}")).is_err(),
                    "{tag}{refused}"
                );
            }
            assert_eq!(listing.decode(&format!("{tag}-007")), Ok(7));
            assert_eq!(listing.pattern(), format!("^{tag}-[0-9]{{1,18}}$"));
        }
    }

    #[test]
    fn params_are_parsed_with_their_field_named() {
        let uri: Uri = "/x?limit=0&vendor=6".parse().expect("uri");
        let mut p = Params::of(&uri).expect("params");
        let Err(ApiError::BadParameter { field, .. }) = p.limit() else {
            panic!("limit 0 refused")
        };
        assert_eq!(field, "limit");
        let uri: Uri = "/x?vendor=six".parse().expect("uri");
        let mut p = Params::of(&uri).expect("params");
        assert!(
            matches!(p.take::<i64>("vendor"), Err(ApiError::BadParameter { field, .. }) if field == "vendor")
        );
        let below = |query: &str| {
            let uri: Uri = format!("/x?{query}").parse().expect("uri");
            Params::of(&uri)
                .expect("params")
                .before_id(Listing::Webhooks)
                .expect("parses")
        };
        assert_eq!(below("before=5&cursor=webhooks-9"), Some(5));
        assert_eq!(below("cursor=webhooks-3&before=5"), Some(3));
        assert_eq!(below("limit=2"), None);
        let uri: Uri = "/x?stauts=queued".parse().expect("uri");
        let p = Params::of(&uri).expect("params");
        assert!(
            matches!(p.finish(), Err(ApiError::BadParameter { field, .. }) if field == "stauts")
        );
    }
}
