//! Label mails followed to the inbox: which mail a shipment's label went in (the connector's own
//! `Message-ID`, recorded on the shipment), where it stands as the mail relay reports it
//! ([`MailState`]), and the relay's reports themselves ([`NewMailEvent`], kept in the
//! [`crate::ports::MailEventStore`]).
//!
//! A label mail carries its shipment in `X-MC-Metadata` (Mandrill's relay hands it back in every
//! event) and a `Message-ID` of the connector's own, `<lazona.shipment.{id}.{seq}@{domain}>`,
//! where `seq` is the milliseconds since the epoch when the mail was built: of two mails of one
//! shipment (a resend), the later has the greater `seq`, so a late report about the earlier one
//! is recognised as such ([`MailChange::Stale`]) and changes nothing.
//!
//! Precedence, within one mail ([`precedence`]): `sent` < `deferred` < `delivered` < `opened`,
//! a report applies when it is not below the state recorded, and a failure (`bounced`,
//! `rejected`, `spam`) is final: nothing but a newer mail (a resend) replaces it. So a
//! `delivered` arriving after a bounce does not undo it, and `opened` only upgrades.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// Where a label mail stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MailState {
    /// Handed to the mail relay by the connector.
    Sent,
    /// The recipient's server put it off; the relay keeps trying.
    Deferred,
    /// The recipient's server took it.
    Delivered,
    /// The recipient opened it (when the relay tracks opens).
    Opened,
    /// It bounced (hard or soft): the recipient's server refused it.
    Bounced,
    /// The relay refused to send it (a blacklisted or invalid address, ...).
    Rejected,
    /// The recipient reported it as spam.
    Spam,
}

impl MailState {
    /// Every state, in this order.
    pub const ALL: [MailState; 7] = [
        MailState::Sent,
        MailState::Deferred,
        MailState::Delivered,
        MailState::Opened,
        MailState::Bounced,
        MailState::Rejected,
        MailState::Spam,
    ];

    /// The state's name in storage and the API.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            MailState::Sent => "sent",
            MailState::Deferred => "deferred",
            MailState::Delivered => "delivered",
            MailState::Opened => "opened",
            MailState::Bounced => "bounced",
            MailState::Rejected => "rejected",
            MailState::Spam => "spam",
        }
    }

    /// Whether the vendor did not get the label (or refused it): a bounce, a rejection, a spam
    /// report. Raises [`crate::model::AlertKind::LabelMailBounced`].
    #[must_use]
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            MailState::Bounced | MailState::Rejected | MailState::Spam
        )
    }

    /// Its rank in [`precedence`]: a report applies when its rank is not below the recorded one.
    fn rank(self) -> u8 {
        match self {
            MailState::Sent => 0,
            MailState::Deferred => 1,
            MailState::Delivered => 2,
            MailState::Opened => 3,
            MailState::Bounced | MailState::Rejected | MailState::Spam => 4,
        }
    }
}

impl fmt::Display for MailState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MailState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MailState::ALL
            .into_iter()
            .find(|m| m.as_str() == s.trim())
            .ok_or_else(|| format!("unknown mail state {s:?}"))
    }
}

/// What became of a mail event received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MailEventStatus {
    /// Stored, not looked at yet (a batch cut short: its redelivery looks at it).
    Received,
    /// Mapped onto its shipment's label mail (which may have kept its state by precedence).
    Applied,
    /// About a label mail of its shipment older than the one recorded (a resend followed):
    /// kept, changes nothing.
    Stale,
    /// No shipment matches it (not a label mail, or an unknown shipment): kept, changes nothing.
    Unmatched,
    /// An event that says nothing about delivery (a click, an unsubscribe, a sync of the relay's
    /// lists): kept, changes nothing.
    Ignored,
    /// A delivery the connector could not read: kept for inspection, answered 400.
    Malformed,
}

impl MailEventStatus {
    /// Every status, in this order.
    pub const ALL: [MailEventStatus; 6] = [
        MailEventStatus::Received,
        MailEventStatus::Applied,
        MailEventStatus::Stale,
        MailEventStatus::Unmatched,
        MailEventStatus::Ignored,
        MailEventStatus::Malformed,
    ];

    /// The status's name in storage and the API.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            MailEventStatus::Received => "received",
            MailEventStatus::Applied => "applied",
            MailEventStatus::Stale => "stale",
            MailEventStatus::Unmatched => "unmatched",
            MailEventStatus::Ignored => "ignored",
            MailEventStatus::Malformed => "malformed",
        }
    }
}

impl fmt::Display for MailEventStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MailEventStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MailEventStatus::ALL
            .into_iter()
            .find(|m| m.as_str() == s.trim())
            .ok_or_else(|| {
                let names: Vec<&str> = MailEventStatus::ALL.iter().map(|k| k.as_str()).collect();
                format!(
                    "unknown mail event status {s:?} (one of {})",
                    names.join(", ")
                )
            })
    }
}

/// A mail event to store: a relay's report about one mail, as its adapter read it, or the
/// connector's own record of a label mailed again (provider `lazona`, event `resent`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewMailEvent {
    /// Who reported it: `mandrill`, or `lazona` for the connector's own records.
    pub provider: String,
    /// The event as the provider names it (`hard_bounce`, `send`, `open`, ...).
    pub event: String,
    /// What it means for the mail; `None` for an event that says nothing about delivery.
    pub state: Option<MailState>,
    /// The recipient.
    pub email: Option<String>,
    /// The connector's `Message-ID` of the mail, when the event carries it.
    pub message_id: Option<String>,
    /// The shipment the mail says it is about (its metadata), before matching; after matching,
    /// the shipment it was matched with.
    pub shipment_id: Option<i64>,
    /// The relay's own id of the mail.
    pub provider_id: Option<String>,
    /// Why, for a failure: the bounce's description and the server's answer, or the reject's
    /// reason.
    pub detail: Option<String>,
    /// When it happened, as the relay says.
    pub occurred_at: Option<DateTime<Utc>>,
    /// What makes a redelivery of the same event a duplicate (per provider); `None`: never one.
    pub dedupe_key: Option<String>,
    /// The event as received (JSON), or the whole delivery when it is malformed.
    pub raw: String,
    /// What became of it.
    pub status: MailEventStatus,
    /// Why it is malformed or unmatched.
    pub error: Option<String>,
}

impl NewMailEvent {
    /// An event of `provider` called `event`, received now, about nothing yet.
    #[must_use]
    pub fn new(provider: &str, event: &str, raw: String) -> Self {
        NewMailEvent {
            provider: provider.to_owned(),
            event: event.to_owned(),
            state: None,
            email: None,
            message_id: None,
            shipment_id: None,
            provider_id: None,
            detail: None,
            occurred_at: None,
            dedupe_key: None,
            raw,
            status: MailEventStatus::Received,
            error: None,
        }
    }
}

/// A stored mail event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailEvent {
    /// Its id.
    pub id: i64,
    /// When the connector received it.
    pub received_at: DateTime<Utc>,
    /// What it says.
    #[serde(flatten)]
    pub data: NewMailEvent,
}

/// What [`crate::ports::MailEventStore::record`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordedMailEvent {
    /// Stored with this id.
    Inserted(i64),
    /// The same event (its provider and dedupe key) is stored already, with this id and status.
    Duplicate {
        /// The stored one's id.
        id: i64,
        /// The stored one's status.
        status: MailEventStatus,
    },
}

/// Which mail events to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailEventFilter {
    /// Only those of this shipment.
    pub shipment_id: Option<i64>,
    /// Only those with this status.
    pub status: Option<MailEventStatus>,
    /// Only ids below this one (the next page).
    pub before_id: Option<i64>,
    /// At most this many (0: 100).
    pub limit: usize,
}

/// A compare-and-set of a shipment's label mail ([`crate::ports::ShipmentStore::update_mail`]):
/// applies only while the shipment's mail is still as `seen_*` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailUpdate {
    /// The `mail_message_id` the caller read.
    pub seen_message_id: Option<String>,
    /// The `mail_state` the caller read.
    pub seen_state: Option<MailState>,
    /// The new `mail_message_id`.
    pub message_id: Option<String>,
    /// The new `mail_state`.
    pub state: Option<MailState>,
    /// The new `mail_state_at`.
    pub at: Option<DateTime<Utc>>,
    /// The label was mailed now: `mailed_at` is set too.
    pub mailed: bool,
}

/// The `Message-ID` of a label mail: `<lazona.shipment.{shipment_id}.{seq}@{domain}>`.
#[must_use]
pub fn label_message_id(shipment_id: i64, seq: i64, domain: &str) -> String {
    format!("<lazona.shipment.{shipment_id}.{seq}@{domain}>")
}

/// The shipment and the sequence number of a [`label_message_id`]; `None` for another id.
#[must_use]
pub fn parse_label_message_id(message_id: &str) -> Option<(i64, i64)> {
    let inner = message_id.trim().strip_prefix('<')?.strip_suffix('>')?;
    let (local, _) = inner.split_once('@')?;
    let rest = local.strip_prefix("lazona.shipment.")?;
    let (shipment, seq) = rest.split_once('.')?;
    Some((shipment.parse().ok()?, seq.parse().ok()?))
}

/// The domain of the label mails' `Message-ID`s: that of the sender's address (`mail.from`,
/// `La Zona <lazona@lazona.coop>` gives `lazona.coop`), `localhost` when it has none.
#[must_use]
pub fn message_id_domain(from: &str) -> String {
    let address = match (from.rfind('<'), from.rfind('>')) {
        (Some(start), Some(end)) if start < end => &from[start + 1..end],
        _ => from,
    };
    let domain = address.rsplit_once('@').map_or("", |(_, d)| d.trim());
    if !domain.is_empty()
        && domain
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
    {
        domain.to_ascii_lowercase()
    } else {
        "localhost".to_owned()
    }
}

/// How two `Message-ID`s of the same shipment compare: by their sequence number when both are
/// the connector's, `None` when they differ and cannot be ordered.
fn age(a: &str, b: &str) -> Option<Ordering> {
    if a == b {
        return Some(Ordering::Equal);
    }
    match (parse_label_message_id(a), parse_label_message_id(b)) {
        (Some((_, x)), Some((_, y))) => Some(x.cmp(&y).then_with(|| a.cmp(b))),
        _ => None,
    }
}

/// Whether a report of `new` replaces the recorded state `current` of the same mail (see the
/// module's documentation).
#[must_use]
pub fn precedence(current: Option<MailState>, new: MailState) -> bool {
    match current {
        None => true,
        Some(current) if current.is_failure() => false,
        Some(current) => new.rank() >= current.rank(),
    }
}

/// What a report does to a shipment's label mail as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailChange {
    /// The mail is now `message_id`, in `state`.
    Set {
        /// The mail reported on (the recorded one, or a newer one not recorded yet).
        message_id: Option<String>,
        /// Its state now.
        state: MailState,
    },
    /// The recorded state stands (by [`precedence`]).
    Keep,
    /// The report is about an older mail than the one recorded.
    Stale,
}

/// What a report in `state` about the mail `reported` (its `Message-ID`, when the report
/// carries it) does to a shipment whose label mail is `recorded`, in `current`.
///
/// A report about a mail newer than the one recorded (the relay was quicker than the
/// connector's own record of the sending) sets both; about the recorded one, or about no mail
/// in particular, [`precedence`] decides; about an older one, it is stale.
#[must_use]
pub fn apply_report(
    recorded: Option<&str>,
    current: Option<MailState>,
    reported: Option<&str>,
    state: MailState,
) -> MailChange {
    let keep_or_set = |message_id: Option<&str>| {
        if precedence(current, state) {
            MailChange::Set {
                message_id: message_id.map(str::to_owned),
                state,
            }
        } else {
            MailChange::Keep
        }
    };
    match (recorded, reported) {
        (_, None) => keep_or_set(recorded),
        (None, Some(reported)) => MailChange::Set {
            message_id: Some(reported.to_owned()),
            state,
        },
        (Some(recorded), Some(reported)) => match age(reported, recorded) {
            Some(Ordering::Equal) | None => keep_or_set(Some(recorded)),
            Some(Ordering::Greater) => MailChange::Set {
                message_id: Some(reported.to_owned()),
                state,
            },
            Some(Ordering::Less) => MailChange::Stale,
        },
    }
}

/// The label mail `sent` was handed to the relay: what the shipment's mail becomes, `None` when
/// it stays as recorded (a report about `sent` came first, or a newer mail is recorded).
#[must_use]
pub fn on_sent(
    recorded: Option<&str>,
    current: Option<MailState>,
    sent: &str,
) -> Option<(String, MailState)> {
    match recorded {
        None => Some((sent.to_owned(), MailState::Sent)),
        Some(recorded) => match age(sent, recorded) {
            Some(Ordering::Equal) if current.is_some() => None,
            Some(Ordering::Less) => None,
            _ => Some((sent.to_owned(), MailState::Sent)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_and_statuses_parse_back_from_their_names() {
        for s in MailState::ALL {
            assert_eq!(s.as_str().parse::<MailState>(), Ok(s));
        }
        for s in MailEventStatus::ALL {
            assert_eq!(s.as_str().parse::<MailEventStatus>(), Ok(s));
        }
        assert!("nope".parse::<MailState>().is_err());
    }

    #[test]
    fn label_message_ids_carry_their_shipment_and_sequence() {
        let id = label_message_id(12, 1_700_000_000_123, "lazona.coop");
        assert_eq!(id, "<lazona.shipment.12.1700000000123@lazona.coop>");
        assert_eq!(parse_label_message_id(&id), Some((12, 1_700_000_000_123)));
        assert_eq!(parse_label_message_id("<abc@example.com>"), None);
        assert_eq!(
            message_id_domain("La Zona <Lazona@LaZona.coop>"),
            "lazona.coop"
        );
        assert_eq!(
            message_id_domain("lazona@sandbox.invalid"),
            "sandbox.invalid"
        );
        assert_eq!(message_id_domain(""), "localhost");
        assert_eq!(message_id_domain("no-at-sign"), "localhost");
    }

    #[test]
    fn a_delivery_after_a_bounce_does_not_undo_it_and_opened_only_upgrades() {
        use MailState::*;
        assert!(precedence(None, Deferred));
        assert!(precedence(Some(Sent), Delivered));
        assert!(precedence(Some(Deferred), Deferred));
        assert!(precedence(Some(Delivered), Opened));
        assert!(!precedence(Some(Opened), Delivered));
        assert!(!precedence(Some(Delivered), Deferred));
        assert!(precedence(Some(Opened), Bounced));
        assert!(!precedence(Some(Bounced), Delivered));
        assert!(!precedence(Some(Bounced), Opened));
        assert!(!precedence(Some(Bounced), Spam), "the first failure stands");
    }

    #[test]
    fn reports_about_an_older_mail_are_stale_and_about_a_newer_one_set_it() {
        let old = label_message_id(3, 100, "x");
        let new = label_message_id(3, 200, "x");
        assert_eq!(
            apply_report(
                Some(&new),
                Some(MailState::Sent),
                Some(&old),
                MailState::Bounced
            ),
            MailChange::Stale
        );
        assert_eq!(
            apply_report(
                Some(&old),
                Some(MailState::Bounced),
                Some(&new),
                MailState::Delivered
            ),
            MailChange::Set {
                message_id: Some(new.clone()),
                state: MailState::Delivered
            }
        );
        assert_eq!(
            apply_report(
                Some(&new),
                Some(MailState::Bounced),
                Some(&new),
                MailState::Delivered
            ),
            MailChange::Keep
        );
        assert_eq!(
            apply_report(None, None, Some(&new), MailState::Bounced),
            MailChange::Set {
                message_id: Some(new.clone()),
                state: MailState::Bounced
            }
        );
        assert_eq!(
            apply_report(
                Some(&new),
                Some(MailState::Sent),
                None,
                MailState::Delivered
            ),
            MailChange::Set {
                message_id: Some(new.clone()),
                state: MailState::Delivered
            }
        );
    }

    #[test]
    fn sending_resets_the_state_unless_the_relay_reported_on_that_mail_first() {
        let old = label_message_id(3, 100, "x");
        let new = label_message_id(3, 200, "x");
        assert_eq!(
            on_sent(None, None, &new),
            Some((new.clone(), MailState::Sent))
        );
        assert_eq!(
            on_sent(Some(&old), Some(MailState::Bounced), &new),
            Some((new.clone(), MailState::Sent))
        );
        assert_eq!(on_sent(Some(&new), Some(MailState::Bounced), &new), None);
        assert_eq!(on_sent(Some(&new), Some(MailState::Sent), &old), None);
    }
}
