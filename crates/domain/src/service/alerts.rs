//! Telling a person: alerts raised by the use cases and by a periodic check, delivered by mail
//! to the admins and to an outbound webhook, without storms.
//!
//! - [`Alerts`] raises and resolves. Raising is one write: the alert row, due on every channel,
//!   is the outbox of its delivery (a mail that fails stays due). A repeat of an open alert is
//!   counted, not told again. A new alert logs at ERROR (which `SENTRY_DSN` reports) and nudges
//!   the delivery job (at most one per [`NUDGE_EVERY`] across all processes).
//! - [`AlertDelivery`] ([`crate::model::JobKind::DeliverAlerts`]) tells what is due, channel by
//!   channel: each alert on its own, or, when more than `digest_threshold` are due or were opened
//!   within `digest_window`, one digest per window that counts them by kind and links the list.
//! - [`AlertCheck`] ([`crate::model::JobKind::CheckAlerts`], periodic) raises what only time
//!   shows (a booking stuck, a silent shop), resolves alerts whose condition ended, and delivers.

use crate::error::{Classified, JobError, StoreError, error_chain};
use crate::model::alert::subject;
use crate::model::{
    Alert, AlertChannel, AlertKind, AlertState, JobId, JobKind, NewAlert, NewJob, Raised, Resource,
    ShipmentFilter, ShipmentStatus, WebhookFilter,
};
use crate::ports::{
    AlertHook, AlertStore, Email, JobQueue, Mailer, ShipmentStore, StateStore, WebhookInbox,
};
use chrono::{DateTime, Utc};
use serde_json::json;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

/// Who resolves an alert whose condition ended.
pub const AUTO: &str = "auto";

/// The delivery job is nudged at most this often by new alerts (the periodic check delivers too).
pub const NUDGE_EVERY: Duration = Duration::from_secs(5);

/// How alerts are raised and told (`[alerts]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertSettings {
    /// Kinds switched off: logged, neither stored nor told.
    pub off: Vec<AlertKind>,
    /// A shipment `BOOKING` longer than this raises [`AlertKind::BookingStuck`] (zero: never).
    pub booking_stuck: Duration,
    /// No order webhook for this long raises [`AlertKind::ShopSilent`] (zero: never).
    pub silence: Duration,
    /// More alerts than this due, or opened within `digest_window`, are told as one digest.
    pub digest_threshold: u64,
    /// At most one digest per channel per window.
    pub digest_window: Duration,
    /// Where operators see the list (the dashboard's address), for the mails' links.
    pub list_url: Option<String>,
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            off: Vec::new(),
            booking_stuck: Duration::from_secs(900),
            silence: Duration::ZERO,
            digest_threshold: 10,
            digest_window: Duration::from_secs(300),
            list_url: None,
        }
    }
}

impl AlertSettings {
    /// Where to see the alerts, in words.
    fn where_to_look(&self) -> String {
        match &self.list_url {
            Some(url) => format!("{url} (o `lazona alerts list`)"),
            None => "`lazona alerts list`".to_owned(),
        }
    }
}

/// Raises and resolves alerts. Cheap to clone (clones share the storm's counters).
///
/// **Storms.** This process counts the alerts it opened of each kind within `digest_window`.
/// Beyond `digest_threshold` of a kind, the next raises of that kind are folded into one alert
/// (subject [`subject::STORM`]) counted in memory and written at most once a second (and at each
/// check): a storm of ten thousand dead jobs costs a few dozen writes, not ten thousand. What a
/// crash loses then is only the storm alert's exact count; each dead job stays in the dead
/// letters (`lazona dead list`).
#[derive(Clone)]
pub struct Alerts {
    store: Arc<dyn AlertStore>,
    queue: Option<Arc<dyn JobQueue>>,
    settings: Arc<AlertSettings>,
    storm: Arc<std::sync::Mutex<Storm>>,
}

/// This process's recent raises, per kind.
#[derive(Debug, Default)]
struct Storm {
    /// Per kind: when its current window began, and how many alerts it opened in it.
    opened: std::collections::HashMap<AlertKind, (std::time::Instant, u64)>,
    /// Per kind: raises folded and not written yet.
    folded: std::collections::HashMap<AlertKind, u64>,
    /// When the folded raises were last written.
    flushed: Option<std::time::Instant>,
    /// When the delivery job was last nudged by this process.
    nudged: Option<std::time::Instant>,
}

/// The state key of the delivery lease.
const DELIVERY_LEASE: &str = "alerts.delivery";

/// How long a delivery may hold the lease (then another may take it: its holder died).
const LEASE: chrono::TimeDelta = chrono::TimeDelta::seconds(120);

/// How often folded raises are written.
const FOLD_FLUSH: Duration = Duration::from_secs(1);

impl Alerts {
    /// Alerts kept in `store`; nothing nudges their delivery until [`Alerts::with_queue`] (the
    /// periodic check still delivers them).
    pub fn new(store: Arc<dyn AlertStore>, settings: AlertSettings) -> Self {
        Alerts {
            store,
            queue: None,
            settings: Arc::new(settings),
            storm: Arc::default(),
        }
    }

    /// Alerts in memory with the default settings, for this crate's unit tests.
    #[cfg(test)]
    pub(crate) fn memory() -> Self {
        Alerts::new(
            Arc::new(crate::memory::MemoryAlertStore::new()),
            AlertSettings::default(),
        )
    }

    /// Nudges the delivery job on `queue` when an alert opens.
    #[must_use]
    pub fn with_queue(mut self, queue: Arc<dyn JobQueue>) -> Self {
        self.queue = Some(queue);
        self
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn AlertStore> {
        &self.store
    }

    /// The settings.
    pub fn settings(&self) -> &AlertSettings {
        &self.settings
    }

    /// Raises `alert`: `None` when its kind is switched off.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the store cannot be reached: the caller's job is retried,
    /// so the alert is raised by the retry.
    pub async fn raise(&self, alert: NewAlert) -> Result<Option<Raised>, StoreError> {
        if self.settings.off.contains(&alert.kind) {
            tracing::info!(alert_kind = %alert.kind, subject = %alert.subject, "alert kind off: {}", alert.summary);
            return Ok(None);
        }
        if self.fold(alert.kind) {
            self.flush_folded(false).await?;
            return Ok(None);
        }
        let raised = self.store.raise(&alert).await?;
        if let Raised::Opened(a) = &raised {
            self.count_opened(a.kind);
            tracing::error!(
                alert_id = a.id,
                alert_kind = %a.kind,
                alert_subject = %a.subject,
                "alert: {}",
                a.summary
            );
            self.nudge().await;
        }
        Ok(Some(raised))
    }

    fn lock_storm(&self) -> std::sync::MutexGuard<'_, Storm> {
        self.storm
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a raise of `kind` is folded into its storm alert (this process opened more than
    /// the threshold of that kind within the window); counts it if so.
    fn fold(&self, kind: AlertKind) -> bool {
        let mut storm = self.lock_storm();
        let window = self.settings.digest_window;
        let storming = storm.opened.get(&kind).is_some_and(|(since, n)| {
            since.elapsed() < window && *n >= self.settings.digest_threshold
        });
        if storming {
            *storm.folded.entry(kind).or_default() += 1;
        }
        storming
    }

    fn count_opened(&self, kind: AlertKind) {
        let mut storm = self.lock_storm();
        let window = self.settings.digest_window;
        let entry = storm
            .opened
            .entry(kind)
            .or_insert((std::time::Instant::now(), 0));
        if entry.0.elapsed() >= window {
            *entry = (std::time::Instant::now(), 0);
        }
        entry.1 += 1;
    }

    /// Writes the folded raises to their storm alerts, if a second passed since the last write
    /// (or whatever the time with `now`).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the store cannot be reached: the counts are kept for the
    /// next write.
    pub async fn flush_folded(&self, now: bool) -> Result<(), StoreError> {
        let folded: Vec<(AlertKind, u64)> = {
            let mut storm = self.lock_storm();
            if storm.folded.is_empty()
                || (!now && storm.flushed.is_some_and(|t| t.elapsed() < FOLD_FLUSH))
            {
                return Ok(());
            }
            storm.flushed = Some(std::time::Instant::now());
            storm.folded.drain().collect()
        };
        for (i, (kind, n)) in folded.iter().enumerate() {
            let alert = storm_alert(*kind, *n, &self.settings);
            match self.store.raise_times(&alert, *n).await {
                Ok(Raised::Opened(a)) => {
                    tracing::error!(alert_id = a.id, alert_kind = %kind, "alert: {}", a.summary);
                    self.nudge().await;
                }
                Ok(Raised::Repeated(_)) => {}
                Err(e) => {
                    // Kept for the next write.
                    let mut storm = self.lock_storm();
                    for (kind, n) in &folded[i..] {
                        *storm.folded.entry(*kind).or_default() += n;
                    }
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Resolves the open alert of (`kind`, `subject`) because its condition ended.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the store cannot be reached.
    pub async fn resolve(
        &self,
        kind: AlertKind,
        subject: &str,
    ) -> Result<Option<Alert>, StoreError> {
        let resolved = self.store.resolve(kind, subject, AUTO).await?;
        if let Some(a) = &resolved {
            tracing::info!(alert_id = a.id, alert_kind = %kind, %subject, "alert resolved: its condition ended");
        }
        Ok(resolved)
    }

    async fn nudge(&self) {
        let Some(queue) = &self.queue else { return };
        {
            // Across processes the schedule lets one nudge through per tick; within this one,
            // calls in between would only be refused by the database.
            let mut storm = self.lock_storm();
            if storm.nudged.is_some_and(|t| t.elapsed() < NUDGE_EVERY) {
                return;
            }
            storm.nudged = Some(std::time::Instant::now());
        }
        let job = NewJob {
            kind: JobKind::DeliverAlerts,
            run_at: None,
        };
        if let Err(e) = queue
            .enqueue_periodic("alerts.deliver", NUDGE_EVERY, job)
            .await
        {
            // The periodic check delivers it.
            tracing::warn!(error = %e, "alert delivery not nudged");
        }
    }
}

/// The alert a storm of `kind` is folded into.
fn storm_alert(kind: AlertKind, n: u64, settings: &AlertSettings) -> NewAlert {
    NewAlert {
        kind,
        subject: subject::STORM.to_owned(),
        summary: format!("Allau d'alertes: {}", kind.label_ca()),
        detail: format!(
            "Més de {threshold} alertes «{label}» ({kind}) en {mins} minuts: les següents es \
             compten en aquesta alerta en lloc d'obrir-ne una per cada una (darrer recompte: \
             {n} més).\n\nLes tasques abandonades: `lazona dead list`; les alertes: {list}. \
             Aquesta alerta es tanca a mà (`lazona alerts resolve`) quan la causa estigui \
             resolta.",
            threshold = settings.digest_threshold,
            label = kind.label_ca(),
            mins = settings.digest_window.as_secs().div_ceil(60),
            list = settings.where_to_look(),
        ),
    }
}

/// The footer of an alert's mail: what it is and where to close it.
fn footer(a: &Alert, settings: &AlertSettings) -> String {
    format!(
        "\n\n--\nAlerta {id} ({kind}, {subject}). Totes les alertes: {list}.\nEs tanca sola quan \
         la situació s'acaba, o a mà amb `lazona alerts resolve {id}`.\n",
        id = a.id,
        kind = a.kind,
        subject = a.subject,
        list = settings.where_to_look(),
    )
}

/// The mail of one alert to the admins. A refused booking keeps the original's error mail word
/// for word.
#[must_use]
pub fn alert_mail(admins: &[String], a: &Alert, settings: &AlertSettings) -> Email {
    let body = match a.kind {
        AlertKind::BookingRefused => a.detail.clone(),
        _ => format!("{}{}", a.detail.trim_end(), footer(a, settings)),
    };
    Email {
        to: admins.to_vec(),
        subject: a.summary.clone(),
        body,
        attachments: Vec::new(),
        ..Email::default()
    }
}

/// The digest's lines: how many of each kind.
fn digest_lines(counts: &[(AlertKind, u64)]) -> String {
    let mut lines = String::new();
    for (kind, n) in counts {
        let _ = writeln!(lines, "  - {n} {} ({kind})", kind.label_ca());
    }
    lines
}

/// The digest mail: `total` alerts told at once, counted by kind.
#[must_use]
pub fn digest_mail(
    admins: &[String],
    counts: &[(AlertKind, u64)],
    total: u64,
    settings: &AlertSettings,
) -> Email {
    Email {
        to: admins.to_vec(),
        subject: format!("Connector La Zona: {total} alertes noves"),
        body: format!(
            "S'han obert moltes alertes en poc temps. En lloc d'un correu per alerta, aquest \
             resum:\n\n{lines}\nLes alertes, una per una: {list}.\nUna alerta que es repeteix \
             només es compta; no s'envia cap altre resum fins d'aquí a {mins} minuts.\n",
            lines = digest_lines(counts),
            list = settings.where_to_look(),
            mins = settings.digest_window.as_secs().div_ceil(60),
        ),
        attachments: Vec::new(),
        ..Email::default()
    }
}

/// The outbound webhook's document for one alert.
#[must_use]
pub fn alert_message(a: &Alert, settings: &AlertSettings) -> serde_json::Value {
    json!({
        "type": "alert.opened",
        "text": format!("[lazona] {}", a.summary),
        "alert": a,
        "list_url": settings.list_url,
    })
}

/// The outbound webhook's document for a digest.
#[must_use]
pub fn digest_message(
    counts: &[(AlertKind, u64)],
    total: u64,
    settings: &AlertSettings,
) -> serde_json::Value {
    let by_kind: serde_json::Map<String, serde_json::Value> = counts
        .iter()
        .map(|(k, n)| (k.as_str().to_owned(), json!(n)))
        .collect();
    let parts: Vec<String> = counts
        .iter()
        .map(|(k, n)| format!("{n} {}", k.label_ca()))
        .collect();
    json!({
        "type": "alert.digest",
        "text": format!("[lazona] {total} alertes noves: {}", parts.join(", ")),
        "total": total,
        "counts": by_kind,
        "list_url": settings.list_url,
    })
}

/// What a delivery did on one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChannelReport {
    /// Alerts told one by one.
    pub sent: u64,
    /// Digests sent.
    pub digests: u64,
    /// Alerts told by a digest.
    pub digested: u64,
    /// Alerts resolved before they were told (not told).
    pub skipped: u64,
    /// Alerts left due: a digest was sent within the window.
    pub held: u64,
}

/// Tells the alerts that are due ([`JobKind::DeliverAlerts`]).
#[derive(Clone)]
pub struct AlertDelivery {
    /// The alerts.
    pub alerts: Alerts,
    /// Mail to the admins.
    pub mailer: Arc<dyn Mailer>,
    /// The admins (`mail.admin_recipients`); none: the mail channel is off.
    pub admins: Vec<String>,
    /// The outbound webhook, if configured.
    pub hook: Option<Arc<dyn AlertHook>>,
    /// When each channel last sent a digest.
    pub state: Arc<dyn StateStore>,
}

impl AlertDelivery {
    /// Tells what is due on each channel (a channel that is off just marks it told).
    ///
    /// # Errors
    /// [`JobError::Transient`] when a channel or the store could not be reached: what was not
    /// told stays due, and the job's retry (or the next check) tells it.
    pub async fn deliver(&self) -> Result<(ChannelReport, ChannelReport), JobError> {
        // One delivery at a time across every worker: two would both read an alert as due and
        // both tell it. One that finds the lease taken while something is due runs again in a
        // moment: its holder may have read what is due before this one's alert was written.
        let Some(lease) = self.take_lease().await? else {
            if self.anything_due().await? {
                return Err(JobError::Transient {
                    reason: "another alert delivery is running: this one runs again after it"
                        .into(),
                    retry_after: Some(std::time::Duration::from_secs(2)),
                });
            }
            return Ok((ChannelReport::default(), ChannelReport::default()));
        };
        let mail = self.channel(AlertChannel::Mail).await;
        let hook = self.channel(AlertChannel::Hook).await;
        let expired = Utc::now().to_rfc3339();
        if let Err(e) = self
            .state
            .compare_and_set(DELIVERY_LEASE, Some(&lease), &expired)
            .await
        {
            tracing::warn!(error = %e, "alert delivery lease not released: it expires by itself");
        }
        Ok((mail?, hook?))
    }

    /// Whether an enabled channel has something to tell.
    async fn anything_due(&self) -> Result<bool, JobError> {
        for channel in [AlertChannel::Mail, AlertChannel::Hook] {
            if self.enabled(channel) && !self.alerts.store().due(channel, 1).await?.is_empty() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Takes the delivery lease (`alerts.delivery` in the state store: when it ends) unless
    /// another delivery holds it; the value set, to release it with.
    async fn take_lease(&self) -> Result<Option<String>, JobError> {
        let now = Utc::now();
        let current = self.state.get(DELIVERY_LEASE).await?;
        if current
            .as_deref()
            .and_then(|v| DateTime::parse_from_rfc3339(v).ok())
            .is_some_and(|ends| ends > now)
        {
            return Ok(None);
        }
        let mine = (now + LEASE).to_rfc3339();
        Ok(self
            .state
            .compare_and_set(DELIVERY_LEASE, current.as_deref(), &mine)
            .await?
            .then_some(mine))
    }

    fn enabled(&self, channel: AlertChannel) -> bool {
        match channel {
            AlertChannel::Mail => !self.admins.is_empty(),
            AlertChannel::Hook => self.hook.is_some(),
        }
    }

    async fn channel(&self, channel: AlertChannel) -> Result<ChannelReport, JobError> {
        let store = self.alerts.store();
        let settings = self.alerts.settings();
        let mut report = ChannelReport::default();
        let (counts, Some(max_id)) = store.due_counts(channel).await? else {
            return Ok(report);
        };
        if !self.enabled(channel) {
            store.delivered(channel, 0, max_id).await?;
            return Ok(report);
        }
        let total: u64 = counts.iter().map(|(_, n)| n).sum();
        let now = Utc::now();
        let window =
            chrono::TimeDelta::from_std(settings.digest_window).unwrap_or(chrono::TimeDelta::MAX);
        let recent = store
            .opened_since(now.checked_sub_signed(window).unwrap_or(now))
            .await?;
        if total > settings.digest_threshold || recent > settings.digest_threshold {
            if !self.take_digest_turn(channel, now, window).await? {
                report.held = total;
                return Ok(report);
            }
            match channel {
                AlertChannel::Mail => {
                    let mail = digest_mail(&self.admins, &counts, total, settings);
                    self.mailer.send(&mail).await.map_err(|e| told(&e))?;
                }
                AlertChannel::Hook => {
                    let message = digest_message(&counts, total, settings);
                    self.post(&format!("digest_{max_id}"), &message).await?;
                }
            }
            store.delivered(channel, 0, max_id).await?;
            tracing::warn!(
                channel = channel.as_str(),
                alerts = total,
                "alert digest sent"
            );
            report.digests = 1;
            report.digested = total;
            return Ok(report);
        }
        let limit = usize::try_from(settings.digest_threshold)
            .unwrap_or(usize::MAX)
            .saturating_add(1);
        for a in store.due(channel, limit).await? {
            if a.state == AlertState::Resolved {
                report.skipped += 1;
            } else {
                match channel {
                    AlertChannel::Mail => {
                        let mail = alert_mail(&self.admins, &a, settings);
                        self.mailer.send(&mail).await.map_err(|e| told(&e))?;
                    }
                    AlertChannel::Hook => {
                        let message = alert_message(&a, settings);
                        self.post(&format!("alert_{}", a.id), &message).await?;
                    }
                }
                report.sent += 1;
            }
            store.delivered(channel, a.id, a.id).await?;
        }
        Ok(report)
    }

    async fn post(&self, id: &str, message: &serde_json::Value) -> Result<(), JobError> {
        match &self.hook {
            Some(hook) => hook.post(id, message).await.map_err(|e| told(&e)),
            None => Ok(()),
        }
    }

    /// Whether this delivery may send `channel`'s digest now: none was sent within the window,
    /// and of racing deliveries this one won.
    async fn take_digest_turn(
        &self,
        channel: AlertChannel,
        now: DateTime<Utc>,
        window: chrono::TimeDelta,
    ) -> Result<bool, JobError> {
        let key = format!("alerts.digest.{}", channel.as_str());
        let last = self.state.get(&key).await?;
        if let Some(at) = last
            .as_deref()
            .and_then(|v| DateTime::parse_from_rfc3339(v).ok())
            && now.signed_duration_since(at) < window
        {
            return Ok(false);
        }
        Ok(self
            .state
            .compare_and_set(&key, last.as_deref(), &now.to_rfc3339())
            .await?)
    }
}

/// A channel's failure: retried (a refused message is refused again, but what it tells is still
/// due, so the job gives up only after its retries).
fn told<E: Classified>(e: &E) -> JobError {
    JobError::classified(
        e.transience(),
        format!("alert not told: {}", error_chain(e)),
    )
}

/// What one check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CheckReport {
    /// Alerts raised (opened or counted).
    pub raised: u64,
    /// Alerts resolved.
    pub resolved: u64,
}

/// The periodic check ([`JobKind::CheckAlerts`]): raises what only time shows, resolves what
/// ended, then delivers.
#[derive(Clone)]
pub struct AlertCheck {
    /// The alerts.
    pub alerts: Alerts,
    /// The shipments (none: no booking to watch).
    pub shipments: Option<Arc<dyn ShipmentStore>>,
    /// The inbox, for the last order webhook.
    pub inbox: Arc<dyn WebhookInbox>,
    /// The queue, for the dead jobs requeued.
    pub queue: Arc<dyn JobQueue>,
}

impl AlertCheck {
    /// One check.
    ///
    /// # Errors
    /// [`JobError::Transient`] when the store, the inbox or the queue cannot be reached.
    pub async fn run(&self) -> Result<CheckReport, JobError> {
        let mut report = CheckReport::default();
        self.alerts.flush_folded(true).await?;
        self.stuck_bookings(&mut report).await?;
        self.requeued_jobs(&mut report).await?;
        self.silence(&mut report).await?;
        Ok(report)
    }

    async fn stuck_bookings(&self, report: &mut CheckReport) -> Result<(), JobError> {
        let Some(shipments) = &self.shipments else {
            return Ok(());
        };
        let stuck_after = self.alerts.settings().booking_stuck;
        if !stuck_after.is_zero() {
            let before = Utc::now()
                - chrono::TimeDelta::from_std(stuck_after).unwrap_or(chrono::TimeDelta::MAX);
            let filter = ShipmentFilter {
                status: Some(ShipmentStatus::Booking),
                limit: 1000,
                ..ShipmentFilter::default()
            };
            for s in shipments.list(&filter).await? {
                if s.updated_at > before {
                    continue;
                }
                let minutes = (Utc::now() - s.updated_at).num_minutes();
                self.alerts
                    .raise(NewAlert {
                        kind: AlertKind::BookingStuck,
                        subject: subject::shipment(s.id),
                        summary: format!(
                            "Enviament {} de la comanda {} encallat en BOOKING",
                            s.id, s.order_id
                        ),
                        detail: format!(
                            "L'enviament {id} (comanda {order}, venedora {vendor}) fa {minutes} \
                             minuts que és en estat BOOKING: el procés que el reservava a Koiki \
                             es va aturar a mitja crida.\n\nKoiki potser té el paquet. Comproveu \
                             a Koiki si hi ha un enviament de la comanda {order} per a aquesta \
                             venedora. Si no n'hi ha cap: `lazona shipments retry {id}`. Si n'hi \
                             ha: no el reserveu de nou.",
                            id = s.id,
                            order = s.order_id,
                            vendor = s.vendor_id,
                        ),
                    })
                    .await?;
                report.raised += 1;
            }
        }
        for subject in self
            .alerts
            .store()
            .open_subjects(AlertKind::BookingStuck)
            .await?
        {
            let Some(id) = subject::id_of(&subject, "shipment") else {
                continue;
            };
            let still = shipments
                .get(id)
                .await?
                .is_some_and(|s| s.status == ShipmentStatus::Booking);
            if !still
                && self
                    .alerts
                    .resolve(AlertKind::BookingStuck, &subject)
                    .await?
                    .is_some()
            {
                report.resolved += 1;
            }
        }
        Ok(())
    }

    async fn requeued_jobs(&self, report: &mut CheckReport) -> Result<(), JobError> {
        for subject in self
            .alerts
            .store()
            .open_subjects(AlertKind::JobDead)
            .await?
        {
            let Some(id) = subject::id_of(&subject, "job") else {
                continue;
            };
            if !self
                .queue
                .holds(JobId(id))
                .await
                .map_err(|e| JobError::from_error(&e))?
                && self
                    .alerts
                    .resolve(AlertKind::JobDead, &subject)
                    .await?
                    .is_some()
            {
                report.resolved += 1;
            }
        }
        Ok(())
    }

    async fn silence(&self, report: &mut CheckReport) -> Result<(), JobError> {
        let silence = self.alerts.settings().silence;
        if silence.is_zero() {
            return Ok(());
        }
        let filter = WebhookFilter {
            resource: Some(Resource::Order),
            limit: 1,
            ..WebhookFilter::default()
        };
        let last = self
            .inbox
            .list(&filter)
            .await?
            .first()
            .map(|w| w.received_at);
        let quiet_since =
            Utc::now() - chrono::TimeDelta::from_std(silence).unwrap_or(chrono::TimeDelta::MAX);
        if last.is_some_and(|at| at > quiet_since) {
            if self
                .alerts
                .resolve(AlertKind::ShopSilent, subject::SHOP)
                .await?
                .is_some()
            {
                report.resolved += 1;
            }
            return Ok(());
        }
        let hours = silence.as_secs().div_ceil(3600);
        let last = last.map_or_else(|| "mai".to_owned(), |at| at.to_rfc3339());
        self.alerts
            .raise(NewAlert {
                kind: AlertKind::ShopSilent,
                subject: subject::SHOP.to_owned(),
                summary: format!("La botiga no ha enviat cap comanda en {hours} hores"),
                detail: format!(
                    "El connector no ha rebut cap webhook de comanda des de: {last}.\n\nSi la \
                     botiga sí que ha tingut comandes, comproveu a WooCommerce (Configuració > \
                     Avançat > Webhooks) que els webhooks del connector són actius i apunten \
                     aquí. La reconciliació periòdica recupera les comandes que faltin; també \
                     `lazona reconcile --since {hours}h`.\n\nAquest avís es pot ajustar amb \
                     alerts.silence_hours (0 el desactiva)."
                ),
            })
            .await?;
        report.raised += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{MemoryAlertStore, MemoryMailer, MemoryStateStore};
    use crate::model::{AlertFilter, WebhookId, WebhookStatus, WebhookSummary};
    use crate::ports::{MockJobQueue, MockWebhookInbox};

    fn alert(kind: AlertKind, n: i64) -> NewAlert {
        NewAlert {
            kind,
            subject: subject::job(n),
            summary: format!("alert {n}"),
            detail: "detail".into(),
        }
    }

    fn delivery(settings: AlertSettings) -> (AlertDelivery, Arc<MemoryMailer>) {
        let mailer = Arc::new(MemoryMailer::new());
        let delivery = AlertDelivery {
            alerts: Alerts::new(Arc::new(MemoryAlertStore::new()), settings),
            mailer: mailer.clone(),
            admins: vec!["admin@example.coop".into()],
            hook: None,
            state: Arc::new(MemoryStateStore::new()),
        };
        (delivery, mailer)
    }

    #[tokio::test]
    async fn a_few_alerts_are_told_one_by_one_and_a_repeat_is_not_told_again() {
        let (d, mailer) = delivery(AlertSettings::default());
        d.alerts
            .raise(alert(AlertKind::JobDead, 1))
            .await
            .expect("raise");
        d.alerts
            .raise(alert(AlertKind::JobDead, 2))
            .await
            .expect("raise");
        let (mail, hook) = d.deliver().await.expect("told");
        assert_eq!((mail.sent, mail.digests), (2, 0));
        assert_eq!(hook, ChannelReport::default(), "no hook: nothing to post");
        d.alerts
            .raise(alert(AlertKind::JobDead, 1))
            .await
            .expect("a repeat");
        d.deliver().await.expect("told");
        let sent = mailer.sent();
        assert_eq!(sent.len(), 2, "the repeat is counted, not told");
        assert_eq!(sent[0].subject, "alert 1");
        assert!(
            sent[0].body.contains("lazona alerts resolve 1"),
            "{}",
            sent[0].body
        );
    }

    /// A delivery that finds another one running while an alert is due runs again in a moment
    /// (the other may have read what was due before this alert was written); with nothing due
    /// it just ends.
    #[tokio::test]
    async fn a_delivery_that_finds_another_running_runs_again_when_something_is_due() {
        let (d, mailer) = delivery(AlertSettings::default());
        let held = (Utc::now() + chrono::TimeDelta::seconds(60)).to_rfc3339();
        assert!(
            d.state
                .compare_and_set(DELIVERY_LEASE, None, &held)
                .await
                .expect("held")
        );
        d.deliver().await.expect("nothing due: done");
        d.alerts
            .raise(alert(AlertKind::JobDead, 1))
            .await
            .expect("raise");
        let err = d.deliver().await.expect_err("due, and the lease taken");
        assert!(
            matches!(
                err,
                JobError::Transient {
                    retry_after: Some(_),
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(mailer.sent().is_empty(), "told by one delivery only");
        let expired = Utc::now().to_rfc3339();
        d.state
            .compare_and_set(DELIVERY_LEASE, Some(&held), &expired)
            .await
            .expect("released");
        d.deliver().await.expect("told");
        assert_eq!(mailer.sent().len(), 1);
    }

    #[tokio::test]
    async fn a_storm_is_told_as_one_digest_per_window() {
        let (d, mailer) = delivery(AlertSettings::default());
        for n in 0..50 {
            d.alerts
                .raise(alert(AlertKind::JobDead, n))
                .await
                .expect("raise");
        }
        d.alerts
            .raise(alert(AlertKind::BookingStuck, 1))
            .await
            .expect("raise");
        let (mail, _) = d.deliver().await.expect("told");
        // Ten on their own, the other forty folded into one storm alert, and the other kind.
        assert_eq!((mail.digests, mail.digested, mail.sent), (1, 12, 0));
        let sent = mailer.sent();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].subject, "Connector La Zona: 12 alertes noves");
        assert!(
            sent[0].body.contains("11 tasques abandonades (job_dead)"),
            "{}",
            sent[0].body
        );
        assert!(
            sent[0].body.contains("1 enviaments encallats"),
            "{}",
            sent[0].body
        );

        // More within the window: held, told by the next digest once the window is over.
        for n in 50..60 {
            d.alerts
                .raise(alert(AlertKind::TrackingError, n))
                .await
                .expect("raise");
        }
        let (mail, _) = d.deliver().await.expect("held");
        assert_eq!((mail.digests, mail.held), (0, 10));
        assert_eq!(mailer.sent().len(), 1, "one digest per window");
        let key = "alerts.digest.mail";
        let last = d.state.get(key).await.expect("get").expect("set");
        let long_ago = (Utc::now() - chrono::TimeDelta::seconds(301)).to_rfc3339();
        assert!(
            d.state
                .compare_and_set(key, Some(&last), &long_ago)
                .await
                .expect("cas")
        );
        let (mail, _) = d.deliver().await.expect("told");
        assert_eq!((mail.digests, mail.digested), (1, 10));
        assert_eq!(mailer.sent().len(), 2);
        let (mail, _) = d.deliver().await.expect("nothing due");
        assert_eq!(mail, ChannelReport::default());
    }

    #[tokio::test]
    async fn a_kind_switched_off_is_not_raised_and_an_alert_resolved_before_told_is_not_told() {
        let settings = AlertSettings {
            off: vec![AlertKind::TrackingError],
            ..AlertSettings::default()
        };
        let (d, mailer) = delivery(settings);
        assert!(
            d.alerts
                .raise(alert(AlertKind::TrackingError, 1))
                .await
                .expect("raise")
                .is_none()
        );
        d.alerts
            .raise(alert(AlertKind::JobDead, 1))
            .await
            .expect("raise");
        d.alerts
            .resolve(AlertKind::JobDead, "job:1")
            .await
            .expect("resolve");
        let (mail, _) = d.deliver().await.expect("told");
        assert_eq!((mail.sent, mail.skipped), (0, 1));
        assert!(mailer.sent().is_empty());
        let all = d
            .alerts
            .store()
            .list(&AlertFilter::default())
            .await
            .expect("list");
        assert_eq!(all.len(), 1, "the switched-off kind was not stored");
    }

    fn order_webhook_at(at: DateTime<Utc>) -> WebhookSummary {
        WebhookSummary {
            id: WebhookId(1),
            resource: Resource::Order,
            topic: Some("order.created".into()),
            delivery_id: None,
            subject_id: Some(33),
            status: WebhookStatus::Processed,
            received_at: at,
            error: None,
            pruned: None,
        }
    }

    #[tokio::test]
    async fn a_requeued_dead_job_that_completed_and_a_shop_that_speaks_again_resolve_their_alerts()
    {
        let settings = AlertSettings {
            silence: Duration::from_secs(3600),
            ..AlertSettings::default()
        };
        let alerts = Alerts::new(Arc::new(MemoryAlertStore::new()), settings);
        alerts
            .raise(alert(AlertKind::JobDead, 7))
            .await
            .expect("raise");
        alerts
            .raise(alert(AlertKind::JobDead, 8))
            .await
            .expect("raise");
        let mut queue = MockJobQueue::new();
        // Job 7 was requeued and completed; job 8 is still dead.
        queue.expect_holds().returning(|id| Ok(id.0 == 8));
        let mut inbox = MockWebhookInbox::new();
        let mut quiet = true;
        inbox.expect_list().returning(move |_| {
            let at = if quiet {
                Utc::now() - chrono::TimeDelta::hours(2)
            } else {
                Utc::now()
            };
            quiet = false;
            Ok(vec![order_webhook_at(at)])
        });
        let check = AlertCheck {
            alerts: alerts.clone(),
            shipments: None,
            inbox: Arc::new(inbox),
            queue: Arc::new(queue),
        };
        let report = check.run().await.expect("checked");
        assert_eq!(
            report,
            CheckReport {
                raised: 1,
                resolved: 1
            }
        );
        let open = alerts
            .store()
            .open_subjects(AlertKind::JobDead)
            .await
            .expect("open");
        assert_eq!(open, ["job:8"]);
        assert_eq!(
            alerts
                .store()
                .open_subjects(AlertKind::ShopSilent)
                .await
                .expect("open"),
            ["shop"]
        );
        // An order arrives: the next check resolves the silence.
        let report = check.run().await.expect("checked");
        assert_eq!(
            report,
            CheckReport {
                raised: 0,
                resolved: 1
            }
        );
        assert!(
            alerts
                .store()
                .open_subjects(AlertKind::ShopSilent)
                .await
                .expect("open")
                .is_empty()
        );
    }

    #[tokio::test]
    async fn a_storm_of_one_kind_is_folded_into_one_counted_alert() {
        let alerts = Alerts::memory();
        for n in 0..100 {
            alerts
                .raise(alert(AlertKind::JobDead, n))
                .await
                .expect("raise");
        }
        alerts
            .raise(alert(AlertKind::BookingStuck, 1))
            .await
            .expect("another kind");
        alerts.flush_folded(true).await.expect("written");
        let all = alerts
            .store()
            .list(&AlertFilter::default())
            .await
            .expect("list");
        let storm: Vec<_> = all.iter().filter(|a| a.subject == subject::STORM).collect();
        assert_eq!(storm.len(), 1, "{all:?}");
        assert_eq!(storm[0].kind, AlertKind::JobDead);
        assert_eq!(
            all.iter().map(|a| a.count).sum::<u64>(),
            101,
            "every raise is counted"
        );
        assert_eq!(
            all.len(),
            10 + 1 + 1,
            "ten on their own, the storm, the other kind"
        );
    }
}
