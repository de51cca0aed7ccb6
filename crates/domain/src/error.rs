//! Port errors: one enum per port, with the variants callers branch on. Every error says whether
//! trying again later may help ([`Transience`]), which is what the worker's retry policy reads.

use std::time::Duration;

/// An opaque cause kept for logs.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Whether an operation that failed may succeed if tried again later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transience {
    /// A timeout, a 5xx, a refused connection, a 429: retry later (after the hint, if any).
    Transient {
        /// The peer's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// Invalid data or a 4xx: retrying cannot help.
    Permanent,
}

/// Errors of the webhook inbox ([`crate::ports::WebhookInbox`]).
#[derive(Debug, thiserror::Error)]
pub enum InboxError {
    /// The database cannot be reached or did not answer in time. The webhook was not stored.
    #[error("inbox storage unavailable")]
    Unavailable(#[source] BoxError),
    /// The inbox is shutting down and takes no more writes.
    #[error("inbox is shutting down")]
    ShuttingDown,
    /// Anything else.
    #[error("inbox error")]
    Unexpected(#[source] BoxError),
}

/// Errors of the shipment store ([`crate::ports::ShipmentStore`]).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached.
    #[error("shipment store unavailable")]
    Unavailable(#[source] BoxError),
    /// No such shipment.
    #[error("shipment {0} not found")]
    NotFound(i64),
    /// Anything else.
    #[error("shipment store error")]
    Unexpected(#[source] BoxError),
}

/// Errors of the API token store ([`crate::ports::TokenStore`]).
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The database cannot be reached.
    #[error("token store unavailable")]
    Unavailable(#[source] BoxError),
    /// No such token.
    #[error("token {0} not found")]
    NotFound(i64),
    /// Anything else.
    #[error("token store error")]
    Unexpected(#[source] BoxError),
}

/// Errors of a job queue ([`crate::ports::JobQueue`]).
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The queue's backend cannot be reached. The message says why: it is shown where only
    /// the message is (a log line, a server that cannot start).
    #[error("job queue unavailable: {0}")]
    Unavailable(BoxError),
    /// No such job.
    #[error("job {0} not found")]
    NotFound(crate::model::JobId),
    /// The job's lease ended and another reservation took it: the caller must not record an
    /// outcome for it.
    #[error("job {0} is no longer held by this reservation")]
    LeaseLost(crate::model::JobId),
    /// A stored job could not be decoded.
    #[error("corrupt job {id}: {reason}")]
    Corrupt {
        /// The job.
        id: crate::model::JobId,
        /// What was wrong with it.
        reason: String,
    },
    /// Anything else (the message says what).
    #[error("job queue error: {0}")]
    Unexpected(BoxError),
}

/// Errors of a carrier ([`crate::ports::ShippingProvider`]).
#[derive(Debug, thiserror::Error)]
pub enum ShippingError {
    /// The carrier refused the request as a whole (a 4xx, a bad token).
    #[error("carrier rejected the request: {reason}")]
    Rejected {
        /// The carrier's words.
        reason: String,
    },
    /// The carrier could not be reached, timed out, or answered 5xx or 429.
    #[error("carrier unavailable: {reason}")]
    Unavailable {
        /// What happened.
        reason: String,
        /// The carrier's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// The carrier answered something that is not what its API promises.
    #[error("carrier answered unexpectedly: {reason}")]
    InvalidResponse {
        /// What was wrong.
        reason: String,
    },
    /// A booking was sent but its answer never came (a timeout while waiting for it, a
    /// connection broken after sending, a 5xx other than 503): the carrier may have booked.
    /// A carrier that takes no idempotency key (Koiki) could ship twice if booked again: this is
    /// not retried on its own, and the shipment is left for an operator to check with the
    /// carrier.
    #[error(
        "no answer from the carrier after the booking was sent, so it may have booked: check \
         with the carrier before booking again ({reason})"
    )]
    Indeterminate {
        /// What happened.
        reason: String,
    },
}

/// Why a carrier cannot take a parcel as it is: some of its data does not fit the carrier's
/// API (a region it does not know, ...). Retrying cannot help; the parcel is not booked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct UnshippableParcel {
    /// What does not fit, in words for the admins (recorded as the shipment's message).
    pub reason: String,
}

impl ShippingError {
    /// Whether trying again later may help.
    pub fn transience(&self) -> Transience {
        match self {
            ShippingError::Unavailable { retry_after, .. } => Transience::Transient {
                retry_after: *retry_after,
            },
            ShippingError::Rejected { .. }
            | ShippingError::InvalidResponse { .. }
            | ShippingError::Indeterminate { .. } => Transience::Permanent,
        }
    }
}

/// Errors of the CRM ([`crate::ports::Crm`]).
#[derive(Debug, thiserror::Error)]
pub enum CrmError {
    /// The CRM refused the credentials, or the user they name lacks the rights.
    #[error("crm authentication failed: {reason}")]
    Authentication {
        /// The CRM's words.
        reason: String,
    },
    /// The CRM could not be reached, timed out, or answered 5xx or 429.
    #[error("crm unavailable: {reason}")]
    Unavailable {
        /// What happened.
        reason: String,
        /// The CRM's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// The CRM answered something unexpected (not JSON, or JSON without what its API promises).
    #[error("crm answered unexpectedly: {reason}")]
    InvalidResponse {
        /// What was wrong.
        reason: String,
    },
}

impl CrmError {
    /// Whether trying again later may help: only bad credentials are permanent. A CRM answering
    /// nonsense is usually one in trouble (a maintenance page, a PHP error with status 200), and
    /// its lookups are read-only, so they are retried too.
    pub fn transience(&self) -> Transience {
        match self {
            CrmError::Unavailable { retry_after, .. } => Transience::Transient {
                retry_after: *retry_after,
            },
            CrmError::InvalidResponse { .. } => Transience::Transient { retry_after: None },
            CrmError::Authentication { .. } => Transience::Permanent,
        }
    }
}

/// Errors of the mailer ([`crate::ports::Mailer`]).
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The SMTP server refused the message for good (a 5xx reply, a bad address).
    #[error("mail rejected: {reason}")]
    Rejected {
        /// The server's words.
        reason: String,
    },
    /// The SMTP server could not be reached or answered 4xx.
    #[error("mail server unavailable: {reason}")]
    Unavailable {
        /// What happened.
        reason: String,
    },
}

/// Errors of the outbound alert webhook ([`crate::ports::AlertHook`]).
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// The receiver refused the message for good (a 4xx other than 408 and 429).
    #[error("alert webhook refused: {reason}")]
    Rejected {
        /// What it answered.
        reason: String,
    },
    /// The receiver could not be reached, or answered 5xx, 408 or 429.
    #[error("alert webhook unavailable: {reason}")]
    Unavailable {
        /// What happened.
        reason: String,
    },
}

/// Errors of the WordPress side (WCFM, WordPress users, WooCommerce REST).
#[derive(Debug, thiserror::Error)]
pub enum ShopError {
    /// No such vendor, user or order.
    #[error("not found in the shop: {what}")]
    NotFound {
        /// What was looked up.
        what: String,
    },
    /// The shop refused the request (401, 403, other 4xx).
    #[error("shop rejected the request: {reason}")]
    Rejected {
        /// What happened.
        reason: String,
    },
    /// The shop could not be reached, timed out, or answered 5xx or 429.
    #[error("shop unavailable: {reason}")]
    Unavailable {
        /// What happened.
        reason: String,
        /// The shop's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// The shop answered something unexpected.
    #[error("shop answered unexpectedly: {reason}")]
    InvalidResponse {
        /// What was wrong.
        reason: String,
    },
}

/// Why a job handler failed: the worker retries transient failures and dead-letters permanent
/// ones.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Try again later.
    #[error("{reason}")]
    Transient {
        /// What happened.
        reason: String,
        /// Not before this long, when a peer said so.
        retry_after: Option<Duration>,
    },
    /// Retrying cannot help: dead-letter the job with this reason.
    #[error("{reason}")]
    Permanent {
        /// What happened.
        reason: String,
    },
}

impl JobError {
    /// The job error for a domain error, as its [`Classified::transience`] says.
    pub fn from_error<E: Classified>(err: &E) -> Self {
        Self::from_port(err, err.transience())
    }

    /// Builds the job error for a port error, from its [`Transience`].
    pub fn from_port(err: &dyn std::error::Error, transience: Transience) -> Self {
        Self::classified(transience, error_chain(err))
    }

    /// The job error with `reason`, retried or not as `transience` says (the use case's own
    /// words for a port error, classified as the port error is).
    pub fn classified(transience: Transience, reason: String) -> Self {
        match transience {
            Transience::Transient { retry_after } => JobError::Transient {
                reason,
                retry_after,
            },
            Transience::Permanent => JobError::Permanent { reason },
        }
    }
}

/// The error and its sources, joined with `: `.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

impl From<StoreError> for JobError {
    fn from(e: StoreError) -> Self {
        JobError::from_error(&e)
    }
}

impl From<InboxError> for JobError {
    fn from(e: InboxError) -> Self {
        JobError::from_error(&e)
    }
}

/// Errors of the event log ([`crate::ports::EventLog`]).
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// The database cannot be reached.
    #[error("event log unavailable")]
    Unavailable(#[source] BoxError),
    /// Anything else (a row that does not decode).
    #[error("event log error")]
    Unexpected(#[source] BoxError),
}

/// What every error of the domain says about itself, said once: a stable machine-readable
/// [`kind`](Classified::kind) (the `error` label of metrics, what events and the API show) and its
/// [`transience`](Classified::transience) (what the retry policy reads, through
/// [`JobError::from_error`]).
pub trait Classified: std::error::Error {
    /// A short stable name of the variant: `unavailable`, `rejected`, `not_found`, ...
    fn kind(&self) -> &'static str;
    /// Whether trying again later may help.
    fn transience(&self) -> Transience;
}

/// Retry later, without a peer's `Retry-After`.
const RETRY: Transience = Transience::Transient { retry_after: None };

impl Classified for InboxError {
    fn kind(&self) -> &'static str {
        match self {
            InboxError::Unavailable(_) => "unavailable",
            InboxError::ShuttingDown => "shutting_down",
            InboxError::Unexpected(_) => "unexpected",
        }
    }
    /// The inbox is the connector's own database: whatever failed, a later try may succeed.
    fn transience(&self) -> Transience {
        RETRY
    }
}

impl Classified for StoreError {
    fn kind(&self) -> &'static str {
        match self {
            StoreError::Unavailable(_) => "unavailable",
            StoreError::NotFound(_) => "not_found",
            StoreError::Unexpected(_) => "unexpected",
        }
    }
    /// As the inbox: the connector's own database.
    fn transience(&self) -> Transience {
        RETRY
    }
}

impl Classified for TokenError {
    fn kind(&self) -> &'static str {
        match self {
            TokenError::Unavailable(_) => "unavailable",
            TokenError::NotFound(_) => "not_found",
            TokenError::Unexpected(_) => "unexpected",
        }
    }
    fn transience(&self) -> Transience {
        match self {
            TokenError::NotFound(_) => Transience::Permanent,
            TokenError::Unavailable(_) | TokenError::Unexpected(_) => RETRY,
        }
    }
}

impl Classified for QueueError {
    fn kind(&self) -> &'static str {
        match self {
            QueueError::Unavailable(_) => "unavailable",
            QueueError::NotFound(_) => "not_found",
            QueueError::LeaseLost(_) => "lease_lost",
            QueueError::Corrupt { .. } => "corrupt",
            QueueError::Unexpected(_) => "unexpected",
        }
    }
    fn transience(&self) -> Transience {
        match self {
            QueueError::NotFound(_) | QueueError::Corrupt { .. } => Transience::Permanent,
            QueueError::Unavailable(_) | QueueError::LeaseLost(_) | QueueError::Unexpected(_) => {
                RETRY
            }
        }
    }
}

impl Classified for ShippingError {
    fn kind(&self) -> &'static str {
        match self {
            ShippingError::Rejected { .. } => "rejected",
            ShippingError::Unavailable { .. } => "unavailable",
            ShippingError::InvalidResponse { .. } => "invalid_response",
            ShippingError::Indeterminate { .. } => "indeterminate",
        }
    }
    fn transience(&self) -> Transience {
        ShippingError::transience(self)
    }
}

impl Classified for CrmError {
    fn kind(&self) -> &'static str {
        match self {
            CrmError::Authentication { .. } => "authentication",
            CrmError::Unavailable { .. } => "unavailable",
            CrmError::InvalidResponse { .. } => "invalid_response",
        }
    }
    fn transience(&self) -> Transience {
        CrmError::transience(self)
    }
}

impl Classified for MailError {
    fn kind(&self) -> &'static str {
        match self {
            MailError::Rejected { .. } => "rejected",
            MailError::Unavailable { .. } => "unavailable",
        }
    }
    /// A refused mail is refused again; an unreachable server may answer later.
    fn transience(&self) -> Transience {
        match self {
            MailError::Rejected { .. } => Transience::Permanent,
            MailError::Unavailable { .. } => RETRY,
        }
    }
}

impl Classified for HookError {
    fn kind(&self) -> &'static str {
        match self {
            HookError::Rejected { .. } => "rejected",
            HookError::Unavailable { .. } => "unavailable",
        }
    }
    fn transience(&self) -> Transience {
        match self {
            HookError::Rejected { .. } => Transience::Permanent,
            HookError::Unavailable { .. } => RETRY,
        }
    }
}

impl Classified for ShopError {
    fn kind(&self) -> &'static str {
        match self {
            ShopError::NotFound { .. } => "not_found",
            ShopError::Rejected { .. } => "rejected",
            ShopError::Unavailable { .. } => "unavailable",
            ShopError::InvalidResponse { .. } => "invalid_response",
        }
    }
    /// A shop answering nonsense is usually one in trouble (a maintenance page): retried.
    fn transience(&self) -> Transience {
        match self {
            ShopError::Unavailable { retry_after, .. } => Transience::Transient {
                retry_after: *retry_after,
            },
            ShopError::InvalidResponse { .. } => RETRY,
            ShopError::NotFound { .. } | ShopError::Rejected { .. } => Transience::Permanent,
        }
    }
}

impl Classified for EventError {
    fn kind(&self) -> &'static str {
        match self {
            EventError::Unavailable(_) => "unavailable",
            EventError::Unexpected(_) => "unexpected",
        }
    }
    fn transience(&self) -> Transience {
        RETRY
    }
}

impl Classified for JobError {
    fn kind(&self) -> &'static str {
        match self {
            JobError::Transient { .. } => "transient",
            JobError::Permanent { .. } => "permanent",
        }
    }
    fn transience(&self) -> Transience {
        match self {
            JobError::Transient { retry_after, .. } => Transience::Transient {
                retry_after: *retry_after,
            },
            JobError::Permanent { .. } => Transience::Permanent,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_errors_say_why_in_their_message() {
        let e = QueueError::Unavailable("cannot connect to redis://r:6379: refused".into());
        assert_eq!(
            e.to_string(),
            "job queue unavailable: cannot connect to redis://r:6379: refused"
        );
        // Said once: a chain printer does not repeat the cause.
        assert_eq!(error_chain(&e), e.to_string());
        let e = QueueError::Unexpected("unknown backend".into());
        assert_eq!(e.to_string(), "job queue error: unknown backend");
    }
}
