//! Label mails followed to the inbox: the mail relay's reports (read by its adapter into
//! [`NewMailEvent`]s) stored, matched with their shipments and mapped onto each shipment's label
//! mail state (see [`crate::model::mail`] for the precedence); a bounce, a rejection or a spam
//! report raises [`AlertKind::LabelMailBounced`], which resolves itself once a later label mail of
//! the shipment is delivered.
//!
//! An event is stored first (deduplicated by its provider's key, so a redelivered batch changes
//! nothing twice), then matched with its shipment (by the shipment id of the mail's metadata,
//! else by the connector's `Message-ID`) and applied, then its status is recorded.

use super::alerts::Alerts;
use crate::error::StoreError;
use crate::model::alert::subject;
use crate::model::mail::{MailChange, apply_report};
use crate::model::{
    AlertKind, MailEventFilter, MailEventStatus, MailState, MailUpdate, NewAlert, NewMailEvent,
    RecordedMailEvent, ShipmentFilter, ShipmentRecord,
};
use crate::ports::{MailEventStore, ShipmentStore};
use chrono::Utc;
use serde::Serialize;
use std::sync::Arc;

/// How many times a compare-and-set on a shipment's mail is tried before giving up.
const ROUNDS: usize = 5;

/// What a delivery of events came to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Received {
    /// Events in the delivery.
    pub events: usize,
    /// Mapped onto their shipments.
    pub applied: usize,
    /// Stored already (a redelivery): nothing done again.
    pub duplicates: usize,
    /// About an older label mail of their shipment.
    pub stale: usize,
    /// Matching no shipment.
    pub unmatched: usize,
    /// Saying nothing about delivery.
    pub ignored: usize,
    /// Alerts raised (a bounce, a rejection, a spam report).
    pub alerts: usize,
}

/// The mail events' use case: receive, match, apply, alert. Cheap to clone.
#[derive(Clone)]
pub struct MailTracking {
    /// Where events are kept.
    pub events: Arc<dyn MailEventStore>,
    /// The shipments, whose label mail state the events change.
    pub shipments: Arc<dyn ShipmentStore>,
    /// Where bounces are raised.
    pub alerts: Alerts,
}

impl MailTracking {
    /// Stores, matches and applies a delivery of events, in order.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when a store cannot be reached: the events stored so far are
    /// kept (as `received` until looked at), and a redelivery carries on where this one stopped.
    #[tracing::instrument(skip_all, fields(events = events.len()))]
    pub async fn receive(&self, events: Vec<NewMailEvent>) -> Result<Received, StoreError> {
        let mut received = Received {
            events: events.len(),
            ..Received::default()
        };
        for event in events {
            let id = match self.events.record(&event).await? {
                RecordedMailEvent::Inserted(id) => id,
                RecordedMailEvent::Duplicate {
                    id,
                    status: MailEventStatus::Received,
                } => id,
                RecordedMailEvent::Duplicate { .. } => {
                    received.duplicates += 1;
                    continue;
                }
            };
            let (status, shipment_id, error, alerted) = self.apply(&event).await?;
            match status {
                MailEventStatus::Applied => received.applied += 1,
                MailEventStatus::Stale => received.stale += 1,
                MailEventStatus::Unmatched => received.unmatched += 1,
                _ => received.ignored += 1,
            }
            received.alerts += usize::from(alerted);
            self.events.settle(id, status, shipment_id, error).await?;
        }
        tracing::info!(
            events = received.events,
            applied = received.applied,
            duplicates = received.duplicates,
            stale = received.stale,
            unmatched = received.unmatched,
            alerts = received.alerts,
            "mail events received"
        );
        Ok(received)
    }

    /// Keeps a delivery that could not be read, for inspection; its id.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the store cannot be reached.
    pub async fn malformed(
        &self,
        provider: &str,
        raw: String,
        error: &str,
    ) -> Result<i64, StoreError> {
        let mut event = NewMailEvent::new(provider, "malformed", raw);
        event.status = MailEventStatus::Malformed;
        event.error = Some(error.to_owned());
        tracing::warn!(provider, error, "malformed mail events kept");
        match self.events.record(&event).await? {
            RecordedMailEvent::Inserted(id) | RecordedMailEvent::Duplicate { id, .. } => Ok(id),
        }
    }

    /// The shipment's mail events, newest first.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the store cannot be reached.
    pub async fn of_shipment(
        &self,
        shipment_id: i64,
    ) -> Result<Vec<crate::model::MailEvent>, StoreError> {
        self.events
            .list(&MailEventFilter {
                shipment_id: Some(shipment_id),
                limit: 200,
                ..MailEventFilter::default()
            })
            .await
    }

    /// The shipment an event is about: its metadata's, else the one whose latest label mail has
    /// its `Message-ID`.
    async fn shipment_of(
        &self,
        event: &NewMailEvent,
    ) -> Result<Option<ShipmentRecord>, StoreError> {
        if let Some(id) = event.shipment_id
            && let Some(s) = self.shipments.get(id).await?
        {
            return Ok(Some(s));
        }
        if let Some(message_id) = &event.message_id {
            let found = self
                .shipments
                .list(&ShipmentFilter {
                    mail_message_id: Some(message_id.clone()),
                    limit: 1,
                    ..ShipmentFilter::default()
                })
                .await?;
            return Ok(found.into_iter().next());
        }
        Ok(None)
    }

    /// Matches and applies one event: its status, its shipment, why it matched none, and
    /// whether it raised an alert.
    async fn apply(
        &self,
        event: &NewMailEvent,
    ) -> Result<(MailEventStatus, Option<i64>, Option<String>, bool), StoreError> {
        let Some(mut s) = self.shipment_of(event).await? else {
            let why = match (event.shipment_id, &event.message_id) {
                (Some(id), _) => format!("no shipment {id}"),
                (None, Some(m)) => format!("no shipment's label mail has Message-ID {m}"),
                (None, None) => "the mail names no shipment (not a label mail)".to_owned(),
            };
            return Ok((MailEventStatus::Unmatched, None, Some(why), false));
        };
        let Some(state) = event.state else {
            return Ok((MailEventStatus::Ignored, Some(s.id), None, false));
        };
        for _ in 0..ROUNDS {
            let change = apply_report(
                s.mail_message_id.as_deref(),
                s.mail_state,
                event.message_id.as_deref(),
                state,
            );
            let message_id = match change {
                MailChange::Stale => return Ok((MailEventStatus::Stale, Some(s.id), None, false)),
                MailChange::Keep => return Ok((MailEventStatus::Applied, Some(s.id), None, false)),
                MailChange::Set { message_id, .. } => message_id,
            };
            let update = MailUpdate {
                seen_message_id: s.mail_message_id.clone(),
                seen_state: s.mail_state,
                message_id,
                state: Some(state),
                at: Some(event.occurred_at.unwrap_or_else(Utc::now)),
                mailed: false,
            };
            match self.shipments.update_mail(s.id, &update).await? {
                Some(updated) => {
                    let alerted = self.alert(&updated, event, state).await?;
                    return Ok((MailEventStatus::Applied, Some(s.id), None, alerted));
                }
                None => match self.shipments.get(s.id).await? {
                    Some(again) => s = again,
                    None => break,
                },
            }
        }
        Err(StoreError::Unexpected(
            format!("shipment {}: its label mail kept changing", s.id).into(),
        ))
    }

    /// Raises the bounce's alert for a failure; resolves it once a label mail is delivered.
    async fn alert(
        &self,
        s: &ShipmentRecord,
        event: &NewMailEvent,
        state: MailState,
    ) -> Result<bool, StoreError> {
        if matches!(state, MailState::Delivered | MailState::Opened) {
            self.alerts
                .resolve(AlertKind::LabelMailBounced, &subject::shipment(s.id))
                .await?;
            return Ok(false);
        }
        if !state.is_failure() {
            return Ok(false);
        }
        Ok(self
            .alerts
            .raise(bounce_alert(s, event, state))
            .await?
            .is_some())
    }
}

/// The alert of a label mail that bounced, was rejected or reported as spam: the vendor and the
/// address in its summary, what to do in its detail.
#[must_use]
pub fn bounce_alert(s: &ShipmentRecord, event: &NewMailEvent, state: MailState) -> NewAlert {
    let email = event
        .email
        .as_deref()
        .filter(|e| !e.trim().is_empty())
        .unwrap_or("(adreça desconeguda)");
    let (short, long) = match state {
        MailState::Rejected => (
            "rebutjat",
            "no s'ha enviat: el servei de correu l'ha rebutjat",
        ),
        MailState::Spam => (
            "marcat com a brossa",
            "ha estat marcat com a correu brossa per la destinatària",
        ),
        _ => (
            "retornat",
            "ha estat retornat: el servidor de la destinatària no l'ha acceptat",
        ),
    };
    let why = match &event.detail {
        Some(d) if !d.trim().is_empty() => format!("{}: {}", event.event, d.trim()),
        _ => event.event.clone(),
    };
    NewAlert {
        kind: AlertKind::LabelMailBounced,
        subject: subject::shipment(s.id),
        summary: format!(
            "Correu d'etiqueta {short}: venedora {vendor}, {email} (comanda {order})",
            vendor = s.vendor_id,
            order = s.order_id,
        ),
        detail: format!(
            "El correu amb l'etiqueta de l'enviament {id} (comanda {order}, venedora {vendor}) \
             a {email} {long} ({why}).\n\nLa venedora no té l'etiqueta per enganxar al paquet. \
             Comproveu la seva adreça a la botiga i torneu-li a enviar l'etiqueta amb `lazona \
             labels resend {id}` (o amb `--to ADREÇA` a una altra adreça). `lazona shipments \
             show {id}` en mostra l'historial de correu. L'alerta es tanca sola quan un correu \
             d'etiqueta posterior arriba.",
            id = s.id,
            order = s.order_id,
            vendor = s.vendor_id,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{MemoryMailEventStore, MemoryShipmentStore};
    use crate::model::mail::label_message_id;
    use crate::model::{
        AlertFilter, AlertState, BookingOutcome, Claim, ShipmentMethod, ShipmentStatus,
    };

    struct Fixture {
        tracking: MailTracking,
        events: Arc<MemoryMailEventStore>,
        store: Arc<MemoryShipmentStore>,
        id: i64,
        mail: String,
    }

    /// A booked shipment (order 33, vendor 6) whose label mail was sent.
    async fn fixture() -> Fixture {
        let store = Arc::new(MemoryShipmentStore::new());
        let Claim::Claimed(s) = store
            .claim(33, 6, ShipmentMethod::Koiki)
            .await
            .expect("claim")
        else {
            panic!("new")
        };
        store
            .record_booking(
                s.id,
                0,
                &BookingOutcome {
                    status: ShipmentStatus::LabelSent,
                    delivery_id: "B1".into(),
                    request: String::new(),
                    message: String::new(),
                    label_pdf: Some(b"%PDF".to_vec()),
                },
            )
            .await
            .expect("booked");
        let mail = label_message_id(s.id, 100, "lazona.test");
        store
            .update_mail(
                s.id,
                &MailUpdate {
                    seen_message_id: None,
                    seen_state: None,
                    message_id: Some(mail.clone()),
                    state: Some(MailState::Sent),
                    at: Some(Utc::now()),
                    mailed: true,
                },
            )
            .await
            .expect("mailed")
            .expect("as seen");
        let events = Arc::new(MemoryMailEventStore::new());
        Fixture {
            tracking: MailTracking {
                events: events.clone(),
                shipments: store.clone(),
                alerts: Alerts::memory(),
            },
            events,
            store,
            id: s.id,
            mail,
        }
    }

    fn report(f: &Fixture, event: &str, state: Option<MailState>, key: &str) -> NewMailEvent {
        let mut e = NewMailEvent::new("mandrill", event, format!("{{\"event\":\"{event}\"}}"));
        e.state = state;
        e.email = Some("vendor6@example.coop".into());
        e.shipment_id = Some(f.id);
        e.message_id = Some(f.mail.clone());
        e.detail = Some("bad_mailbox: smtp;550 5.1.1 no such user".into());
        e.dedupe_key = Some(key.into());
        e
    }

    async fn state(f: &Fixture) -> Option<MailState> {
        f.store
            .get(f.id)
            .await
            .expect("get")
            .expect("there")
            .mail_state
    }

    async fn open_alerts(f: &Fixture) -> Vec<crate::model::Alert> {
        f.tracking
            .alerts
            .store()
            .list(&AlertFilter {
                state: Some(AlertState::Open),
                ..AlertFilter::default()
            })
            .await
            .expect("alerts")
    }

    #[tokio::test]
    async fn a_bounce_raises_an_alert_naming_the_vendor_and_the_address_and_a_late_delivery_does_not_undo_it()
     {
        let f = fixture().await;
        let got = f
            .tracking
            .receive(vec![
                report(&f, "hard_bounce", Some(MailState::Bounced), "a"),
                report(&f, "send", Some(MailState::Delivered), "b"),
            ])
            .await
            .expect("received");
        assert_eq!((got.applied, got.alerts), (2, 1));
        assert_eq!(state(&f).await, Some(MailState::Bounced));
        let alerts = open_alerts(&f).await;
        assert_eq!(alerts.len(), 1);
        let a = &alerts[0];
        assert_eq!(a.kind, AlertKind::LabelMailBounced);
        assert_eq!(a.subject, subject::shipment(f.id));
        assert!(a.summary.contains("venedora 6"), "{}", a.summary);
        assert!(a.summary.contains("vendor6@example.coop"), "{}", a.summary);
        assert!(a.detail.contains("lazona labels resend"), "{}", a.detail);
        assert!(a.detail.contains("no such user"), "{}", a.detail);

        // The same batch again: duplicates, nothing done twice.
        let again = f
            .tracking
            .receive(vec![report(
                &f,
                "hard_bounce",
                Some(MailState::Bounced),
                "a",
            )])
            .await
            .expect("received");
        assert_eq!((again.duplicates, again.applied), (1, 0));
        assert_eq!(open_alerts(&f).await[0].count, 1);
        let stored = f.events.all();
        assert_eq!(stored.len(), 2);
        assert!(
            stored
                .iter()
                .all(|e| e.data.status == MailEventStatus::Applied)
        );
        assert!(stored.iter().all(|e| e.data.shipment_id == Some(f.id)));
    }

    #[tokio::test]
    async fn a_newer_mails_delivery_resolves_the_alert_and_the_older_ones_reports_are_stale() {
        let f = fixture().await;
        f.tracking
            .receive(vec![report(
                &f,
                "hard_bounce",
                Some(MailState::Bounced),
                "a",
            )])
            .await
            .expect("received");
        // A resend: a newer mail, recorded as sent.
        let newer = label_message_id(f.id, 200, "lazona.test");
        f.store
            .update_mail(
                f.id,
                &MailUpdate {
                    seen_message_id: Some(f.mail.clone()),
                    seen_state: Some(MailState::Bounced),
                    message_id: Some(newer.clone()),
                    state: Some(MailState::Sent),
                    at: Some(Utc::now()),
                    mailed: true,
                },
            )
            .await
            .expect("update")
            .expect("as seen");
        let mut late = report(&f, "soft_bounce", Some(MailState::Bounced), "late");
        late.message_id = Some(f.mail.clone());
        let mut delivered = report(&f, "send", Some(MailState::Delivered), "new");
        delivered.message_id = Some(newer);
        let got = f
            .tracking
            .receive(vec![late, delivered])
            .await
            .expect("received");
        assert_eq!((got.stale, got.applied), (1, 1));
        assert_eq!(state(&f).await, Some(MailState::Delivered));
        assert!(open_alerts(&f).await.is_empty(), "resolved by the delivery");
    }

    #[tokio::test]
    async fn events_of_no_shipment_or_about_nothing_are_kept_and_change_nothing() {
        let f = fixture().await;
        let mut unknown = report(&f, "hard_bounce", Some(MailState::Bounced), "u");
        unknown.shipment_id = Some(999);
        unknown.message_id = None;
        let click = report(&f, "click", None, "c");
        let got = f
            .tracking
            .receive(vec![unknown, click])
            .await
            .expect("received");
        assert_eq!((got.unmatched, got.ignored, got.alerts), (1, 1, 0));
        assert_eq!(state(&f).await, Some(MailState::Sent));
        let stored = f.events.all();
        assert_eq!(stored[0].data.status, MailEventStatus::Unmatched);
        assert_eq!(stored[0].data.error.as_deref(), Some("no shipment 999"));
        assert_eq!(stored[1].data.status, MailEventStatus::Ignored);
        assert_eq!(stored[1].data.shipment_id, Some(f.id));
        let id = f
            .tracking
            .malformed("mandrill", "not json".into(), "expected value")
            .await
            .expect("kept");
        let kept = f.events.get(id).await.expect("get").expect("there");
        assert_eq!(kept.data.status, MailEventStatus::Malformed);
        assert_eq!(kept.data.raw, "not json");
    }

    #[tokio::test]
    async fn an_event_found_by_its_message_id_alone_applies() {
        let f = fixture().await;
        let mut e = report(&f, "reject", Some(MailState::Rejected), "r");
        e.shipment_id = None;
        let got = f.tracking.receive(vec![e]).await.expect("received");
        assert_eq!((got.applied, got.alerts), (1, 1));
        assert_eq!(state(&f).await, Some(MailState::Rejected));
        assert!(open_alerts(&f).await[0].summary.contains("rebutjat"));
    }
}
