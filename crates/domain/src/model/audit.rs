//! Who did what: every operator action (a replay, a retry, a forced booking, a purge, an alert
//! resolved, a token created ...) is recorded with its [`Actor`] in the audit log
//! ([`crate::ports::AuditLog`]). Unlike the event log, the audit log is a record: it is not
//! pruned with the events, and an action is recorded before it is answered as done.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Through what an actor acted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorVia {
    /// The operations API, with a token.
    Api,
    /// The command line.
    Cli,
    /// The connector itself (a periodic job, a retention pass).
    System,
}

impl ActorVia {
    /// Every way.
    pub const ALL: [ActorVia; 3] = [ActorVia::Api, ActorVia::Cli, ActorVia::System];

    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            ActorVia::Api => "api",
            ActorVia::Cli => "cli",
            ActorVia::System => "system",
        }
    }
}

impl FromStr for ActorVia {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ActorVia::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| format!("unknown actor kind {s:?}"))
    }
}

/// Who acted: an API token (its name and id), a person at the command line (the OS user and
/// host, or the name given with `--actor`), or the connector itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Actor {
    /// Through what.
    pub via: ActorVia,
    /// The token's name, `user@host`, the `--actor` given, or `connector`.
    pub name: String,
    /// The API token's id, for [`ActorVia::Api`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<i64>,
}

impl Actor {
    /// An API token.
    pub fn token(id: i64, name: impl Into<String>) -> Self {
        Actor {
            via: ActorVia::Api,
            name: name.into(),
            token_id: Some(id),
        }
    }

    /// A person at the command line.
    pub fn cli(name: impl Into<String>) -> Self {
        Actor {
            via: ActorVia::Cli,
            name: name.into(),
            token_id: None,
        }
    }

    /// The connector itself.
    pub fn system() -> Self {
        Actor {
            via: ActorVia::System,
            name: "connector".into(),
            token_id: None,
        }
    }
}

impl fmt::Display for Actor {
    /// `token ops-bot (#3)`, `cli maria@caixa`, `connector`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.via, self.token_id) {
            (ActorVia::Api, Some(id)) => write!(f, "token {} (#{id})", self.name),
            (ActorVia::Api, None) => write!(f, "token {}", self.name),
            (ActorVia::Cli, _) => write!(f, "cli {}", self.name),
            (ActorVia::System, _) => f.write_str(&self.name),
        }
    }
}

/// What an operator did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    /// A webhook replayed (`forced` when its shipments are booked again).
    Replay,
    /// A shipment's booking retried (`forced`: a second parcel).
    Retry,
    /// A shipment's tracking polled on demand.
    Track,
    /// A dead job requeued.
    Requeue,
    /// A label mailed again.
    Resend,
    /// A customer's personal data erased.
    Purge,
    /// An alert resolved by hand.
    ResolveAlert,
    /// An API token created.
    TokenCreate,
    /// An API token revoked.
    TokenRevoke,
}

impl AuditAction {
    /// Every action.
    pub const ALL: [AuditAction; 9] = [
        AuditAction::Replay,
        AuditAction::Retry,
        AuditAction::Track,
        AuditAction::Requeue,
        AuditAction::Resend,
        AuditAction::Purge,
        AuditAction::ResolveAlert,
        AuditAction::TokenCreate,
        AuditAction::TokenRevoke,
    ];

    /// The name stored and shown (`replay`, `resolve_alert`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Replay => "replay",
            AuditAction::Retry => "retry",
            AuditAction::Track => "track",
            AuditAction::Requeue => "requeue",
            AuditAction::Resend => "resend",
            AuditAction::Purge => "purge",
            AuditAction::ResolveAlert => "resolve_alert",
            AuditAction::TokenCreate => "token_create",
            AuditAction::TokenRevoke => "token_revoke",
        }
    }
}

impl fmt::Display for AuditAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AuditAction {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AuditAction::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| format!("unknown action {s:?}"))
    }
}

/// What an action concerned, as stored: `webhook:12`, `shipment:7`, `job:40`, `alert:3`,
/// `token:2`, `customer:<sha256 of the e-mail, hex>`.
pub mod subject {
    /// A webhook.
    pub fn webhook(id: i64) -> String {
        format!("webhook:{id}")
    }
    /// A shipment.
    pub fn shipment(id: i64) -> String {
        format!("shipment:{id}")
    }
    /// A job.
    pub fn job(id: i64) -> String {
        format!("job:{id}")
    }
    /// An alert.
    pub fn alert(id: i64) -> String {
        format!("alert:{id}")
    }
    /// An API token.
    pub fn token(id: i64) -> String {
        format!("token:{id}")
    }
    /// A customer, by a hash of the e-mail (never the e-mail itself).
    pub fn customer(email_hash: &str) -> String {
        format!("customer:{email_hash}")
    }
}

/// An action to record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewAuditEntry {
    /// When.
    pub at: DateTime<Utc>,
    /// Who.
    pub actor: Actor,
    /// What.
    pub action: AuditAction,
    /// On what (see [`subject`]).
    pub subject: String,
    /// Whether it was forced past a refusal (`--force`, `?force=true`).
    pub forced: bool,
    /// What came of it, in words (the job enqueued, how many rows were erased ...); never
    /// personal data.
    pub detail: Option<String>,
}

impl NewAuditEntry {
    /// `actor` did `action` on `subject` now.
    pub fn now(actor: Actor, action: AuditAction, subject: impl Into<String>) -> Self {
        NewAuditEntry {
            at: Utc::now(),
            actor,
            action,
            subject: subject.into(),
            forced: false,
            detail: None,
        }
    }

    /// Marked forced.
    #[must_use]
    pub fn forced(mut self, forced: bool) -> Self {
        self.forced = forced;
        self
    }

    /// With a detail.
    #[must_use]
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

/// A recorded action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Its id, increasing in the order actions were recorded.
    pub id: i64,
    /// The action.
    #[serde(flatten)]
    pub data: NewAuditEntry,
}

/// Which recorded actions to list, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only this actor's (its name).
    pub actor: Option<String>,
    /// Only this action.
    pub action: Option<AuditAction>,
    /// Only on this subject (`shipment:7`).
    pub subject: Option<String>,
    /// Only those at or after.
    pub since: Option<DateTime<Utc>>,
    /// Only those with an id below (the next page).
    pub before_id: Option<i64>,
    /// At most this many (0: a default of 100).
    pub limit: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actors_read_as_who_they_are() {
        assert_eq!(Actor::token(3, "ops-bot").to_string(), "token ops-bot (#3)");
        assert_eq!(Actor::cli("maria@caixa").to_string(), "cli maria@caixa");
        assert_eq!(Actor::system().to_string(), "connector");
    }

    #[test]
    fn actions_round_trip_through_their_names() {
        for a in AuditAction::ALL {
            assert_eq!(a.as_str().parse::<AuditAction>(), Ok(a));
        }
        for v in ActorVia::ALL {
            assert_eq!(v.as_str().parse::<ActorVia>(), Ok(v));
        }
        assert!("nuke".parse::<AuditAction>().is_err());
    }
}
