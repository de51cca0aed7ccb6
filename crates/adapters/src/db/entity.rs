//! sea-orm entities of the connector's tables.

/// `webhooks`: the inbox.
pub mod webhook {
    use sea_orm::entity::prelude::*;

    /// A stored webhook.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "webhooks")]
    pub struct Model {
        /// Inbox id.
        #[sea_orm(primary_key)]
        pub id: i64,
        /// The delivery id, or a generated unique key when WooCommerce sent none.
        #[sea_orm(unique)]
        pub dedupe_key: String,
        /// `order` or `customer`.
        pub resource: String,
        /// `X-WC-Webhook-Topic`.
        pub topic: Option<String>,
        /// `X-WC-Webhook-Event`.
        pub event: Option<String>,
        /// `X-WC-Webhook-Delivery-ID`.
        pub delivery_id: Option<String>,
        /// `X-WC-Webhook-ID`.
        pub wc_webhook_id: Option<i64>,
        /// `X-WC-Webhook-Source`.
        pub source: Option<String>,
        /// The order or customer id.
        pub subject_id: Option<i64>,
        /// An order's `date_modified_gmt`, milliseconds since the epoch.
        pub subject_modified: Option<i64>,
        /// The kept headers, as a JSON array of `[name, value]` pairs.
        pub headers: String,
        /// The body, byte for byte.
        pub body: Vec<u8>,
        /// Milliseconds since the epoch.
        pub received_at: i64,
        /// `queued`, `processed`, `failed`, `rejected` or `ignored`.
        pub status: String,
        /// The rejection reason or the last processing error.
        pub error: Option<String>,
        /// Milliseconds since the epoch.
        pub processed_at: Option<i64>,
        /// When the body and headers were cleared (milliseconds since the epoch).
        pub pruned_at: Option<i64>,
        /// Why: `retention` or `erasure`.
        pub pruned_why: Option<String>,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `jobs`: the queue (and the outbox other queue backends relay from).
pub mod job {
    use sea_orm::entity::prelude::*;

    /// A job.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "jobs")]
    pub struct Model {
        /// Job id.
        #[sea_orm(primary_key)]
        pub id: i64,
        /// The job kind's name.
        pub kind: String,
        /// The job, as JSON.
        pub payload: String,
        /// `ready`, `running` or `dead`.
        pub status: String,
        /// Reservations so far.
        pub attempts: i32,
        /// When it is next due: its run time when ready, its lease end when running.
        pub due_at: i64,
        /// The last error.
        pub last_error: Option<String>,
        /// The current reservation's token.
        pub lease_token: Option<String>,
        /// Milliseconds since the epoch.
        pub created_at: i64,
        /// Milliseconds since the epoch.
        pub updated_at: i64,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
