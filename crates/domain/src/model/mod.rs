//! Domain types. Wire formats (WooCommerce, the carrier's, SugarCRM JSON) are parsed into these
//! by the adapters; the WooCommerce order and customer payloads are lenient serde models because the
//! connector stores webhooks byte for byte and parses them only when it processes them.

pub mod alert;
pub mod audit;
pub mod customer;
pub mod event;
pub mod job;
mod lenient;
pub mod mail;
pub mod order;
pub mod parcel;
pub mod payload;
pub mod retention;
pub mod shipment;
pub mod shipment_record;
pub mod shop;
pub mod token;
pub mod webhook;

pub use alert::{
    Alert, AlertChannel, AlertFilter, AlertKind, AlertState, KindCounts, NewAlert, Raised,
};
pub use audit::{Actor, ActorVia, AuditAction, AuditEntry, AuditFilter, NewAuditEntry};
pub use customer::Customer;
pub use event::{Event, EventId, EventKind, NewEvent};
pub use job::{DeadJob, HeldBooking, Job, JobId, JobKind, Lease, NewJob};
pub use mail::{
    MailEvent, MailEventFilter, MailEventStatus, MailState, MailUpdate, NewMailEvent,
    RecordedMailEvent,
};
pub use order::{Address, Billing, LineItem, MetaData, Order, ShippingLine};
pub use parcel::{Parcel, ParcelBooking, Party, TrackingReport, TrackingState};
pub use payload::PayloadError;
pub use retention::{Cutoffs, ErasureReport, PruneReason, PruneReport, Pruned, RetentionSettings};
pub use shipment::{ShipmentMethod, ShipmentStatus};
pub use shipment_record::{
    BOOKING_LEASE, BookingOutcome, BookingRecorded, Claim, PastBooking, PastBookingReason,
    ShipmentFilter, ShipmentRecord,
};
pub use shop::{OrderNote, OrderPage, OrderUpdate, ShopOrder, ShopWebhook};
pub use token::{ApiToken, Principal, TokenHash, TokenSecret};
pub use webhook::{
    NewWebhook, REQUEST_ID_HEADER, REQUEST_ID_MAX_LEN, RecordOutcome, Recorded, Resource, Webhook,
    WebhookEvent, WebhookFilter, WebhookId, WebhookStatus, WebhookSummary, is_request_id,
};
