//! In-memory adapters, for tests, examples and embedders: a [`ShipmentStore`] (for those who
//! keep shipments elsewhere), a [`Shop`] holding vendors, orders and users, a [`Mailer`] that
//! keeps what it is given, and the alerts', audit log's, named values' and mail events' stores. Each holds everything in one mutex and loses it on drop;
//! production uses the SQL store, the WordPress shop and the SMTP mailer beside this module.
//!
//! This file is also compiled into `domain`'s own unit tests (`#[path]`, as `domain::memory`
//! under `cfg(test)` only), whose use cases run on it: it names the domain as `domain::`, which
//! `domain` makes resolve to itself (`extern crate self as domain`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::error::{MailError, ShopError, StoreError};
use domain::model::shipment::VendorProfile;
use domain::model::{
    Alert, AlertChannel, AlertFilter, AlertKind, AlertState, AuditEntry, AuditFilter,
    BookingOutcome, BookingRecorded, Claim, KindCounts, MailEvent, MailEventFilter,
    MailEventStatus, MailUpdate, NewAlert, NewAuditEntry, NewMailEvent, Order, OrderNote,
    OrderPage, OrderUpdate, PastBooking, PastBookingReason, PruneReason, Pruned, Raised,
    RecordedMailEvent, ShipmentFilter, ShipmentMethod, ShipmentRecord, ShipmentStatus, ShopOrder,
    ShopWebhook,
};
use domain::ports::{
    AlertStore, AuditLog, Email, MailEventStore, Mailer, ShipmentStore, Shop, ShopUser, StateStore,
};
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

/// Locks `m`; a panic elsewhere cannot leave a value half-written: every change is one
/// assignment or one push.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Shipments in memory, unique per (order, vendor) like the SQL store.
#[derive(Debug, Default)]
pub struct MemoryShipmentStore {
    rows: Mutex<Vec<(ShipmentRecord, Option<Vec<u8>>)>>,
    past: Mutex<Vec<(PastBooking, Option<Vec<u8>>)>>,
}

impl MemoryShipmentStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn rows(&self) -> MutexGuard<'_, Vec<(ShipmentRecord, Option<Vec<u8>>)>> {
        lock(&self.rows)
    }

    /// Every shipment, oldest first.
    pub fn all(&self) -> Vec<ShipmentRecord> {
        self.rows().iter().map(|(r, _)| r.clone()).collect()
    }

    fn update<T>(
        &self,
        id: i64,
        f: impl FnOnce(&mut ShipmentRecord, &mut Option<Vec<u8>>) -> T,
    ) -> Result<T, StoreError> {
        let mut rows = self.rows();
        let (r, label) = rows
            .iter_mut()
            .find(|(r, _)| r.id == id)
            .ok_or(StoreError::NotFound(id))?;
        let out = f(r, label);
        r.updated_at = Utc::now();
        Ok(out)
    }
}

#[async_trait]
impl ShipmentStore for MemoryShipmentStore {
    async fn claim(
        &self,
        order_id: i64,
        vendor_id: i64,
        method: ShipmentMethod,
    ) -> Result<Claim, StoreError> {
        let mut rows = self.rows();
        if let Some((r, _)) = rows
            .iter()
            .find(|(r, _)| r.order_id == order_id && r.vendor_id == vendor_id)
        {
            return Ok(Claim::Exists(r.clone()));
        }
        let id = rows.iter().map(|(r, _)| r.id).max().unwrap_or(0) + 1;
        let now = Utc::now();
        let r = ShipmentRecord {
            id,
            order_id,
            vendor_id,
            method,
            status: ShipmentStatus::Booking,
            delivery_id: String::new(),
            request: String::new(),
            message: String::new(),
            notes: String::new(),
            has_label: false,
            tracking_status_created_at: None,
            tracking_updated_at: None,
            mailed_at: None,
            created_at: now,
            updated_at: now,
            booking_attempt: 0,
            order_withdrawn: None,
            noted_barcode: None,
            tracking_unmailed_since: None,
            mail_message_id: None,
            mail_state: None,
            mail_state_at: None,
            label_pruned: None,
        };
        rows.push((r.clone(), None));
        Ok(Claim::Claimed(r))
    }

    async fn release(&self, id: i64) -> Result<(), StoreError> {
        self.rows().retain(|(r, _)| {
            !(r.id == id && r.status == ShipmentStatus::Booking && r.booking_attempt == 0)
        });
        Ok(())
    }

    async fn record_booking(
        &self,
        id: i64,
        attempt: i64,
        o: &BookingOutcome,
    ) -> Result<BookingRecorded, StoreError> {
        let mut rows = self.rows();
        let (r, label) = rows
            .iter_mut()
            .find(|(r, _)| r.id == id)
            .ok_or(StoreError::NotFound(id))?;
        let mut past = lock(&self.past);
        let mut keep = |reason, status, delivery_id: &str, message: &str, pdf: Option<Vec<u8>>| {
            let next = past.iter().map(|(p, _)| p.id).max().unwrap_or(0) + 1;
            past.push((
                PastBooking {
                    id: next,
                    shipment_id: id,
                    delivery_id: delivery_id.to_owned(),
                    status,
                    message: message.to_owned(),
                    has_label: pdf.is_some(),
                    kept_at: Utc::now(),
                    reason,
                },
                pdf,
            ));
        };
        if r.booking_attempt != attempt {
            keep(
                PastBookingReason::Late,
                o.status,
                &o.delivery_id,
                &o.message,
                o.label_pdf.clone(),
            );
            return Ok(BookingRecorded::Aside(r.clone()));
        }
        if !r.delivery_id.is_empty() {
            keep(
                PastBookingReason::Superseded,
                r.status,
                &r.delivery_id,
                &r.message,
                label.clone(),
            );
        }
        r.status = o.status;
        r.delivery_id = o.delivery_id.clone();
        r.request = o.request.clone();
        r.message = o.message.clone();
        r.has_label = o.label_pdf.is_some();
        r.mailed_at = None;
        r.updated_at = Utc::now();
        *label = o.label_pdf.clone();
        Ok(BookingRecorded::Current(r.clone()))
    }

    async fn reserve_booking(
        &self,
        id: i64,
        from: ShipmentStatus,
        attempt: i64,
        stale_before: DateTime<Utc>,
    ) -> Result<Option<ShipmentRecord>, StoreError> {
        let mut rows = self.rows();
        Ok(match rows.iter_mut().find(|(r, _)| r.id == id) {
            Some((r, _))
                if r.status == from
                    && r.booking_attempt == attempt
                    && (r.status != ShipmentStatus::Booking || r.updated_at < stale_before) =>
            {
                r.status = ShipmentStatus::Booking;
                r.booking_attempt += 1;
                r.updated_at = Utc::now();
                Some(r.clone())
            }
            _ => None,
        })
    }

    async fn start_booking(
        &self,
        id: i64,
        attempt: i64,
        from: ShipmentStatus,
    ) -> Result<bool, StoreError> {
        let mut rows = self.rows();
        Ok(match rows.iter_mut().find(|(r, _)| r.id == id) {
            Some((r, _))
                if r.booking_attempt == attempt
                    && (r.status == ShipmentStatus::Booking || r.status == from) =>
            {
                r.status = ShipmentStatus::Booking;
                r.updated_at = Utc::now();
                true
            }
            _ => false,
        })
    }

    async fn end_booking(
        &self,
        id: i64,
        attempt: i64,
        to: ShipmentStatus,
    ) -> Result<bool, StoreError> {
        let mut rows = self.rows();
        Ok(match rows.iter_mut().find(|(r, _)| r.id == id) {
            Some((r, _)) if r.booking_attempt == attempt && r.status == ShipmentStatus::Booking => {
                r.status = to;
                r.updated_at = Utc::now();
                true
            }
            _ => false,
        })
    }

    async fn past_bookings(&self, id: i64) -> Result<Vec<PastBooking>, StoreError> {
        Ok(lock(&self.past)
            .iter()
            .filter(|(p, _)| p.shipment_id == id)
            .map(|(p, _)| p.clone())
            .collect())
    }

    async fn past_label(&self, id: i64, past_id: i64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(lock(&self.past)
            .iter()
            .find(|(p, _)| p.shipment_id == id && p.id == past_id)
            .and_then(|(_, pdf)| pdf.clone()))
    }

    async fn record_tracking(
        &self,
        id: i64,
        status: ShipmentStatus,
        message: &str,
        notes: &str,
        event_date: Option<String>,
    ) -> Result<ShipmentRecord, StoreError> {
        let mut rows = self.rows();
        let (r, _) = rows
            .iter_mut()
            .find(|(r, _)| r.id == id)
            .ok_or(StoreError::NotFound(id))?;
        if r.status != ShipmentStatus::Booking {
            if (r.status != status || r.message != message) && r.tracking_unmailed_since.is_none() {
                r.tracking_unmailed_since = Some(Utc::now());
            }
            r.status = status;
            r.message = message.to_owned();
            r.notes = notes.to_owned();
            r.tracking_status_created_at = event_date;
            r.tracking_updated_at = Some(Utc::now());
            r.updated_at = Utc::now();
        }
        Ok(r.clone())
    }

    async fn mark_tracking_mailed(
        &self,
        id: i64,
        since: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.update(id, |r, _| {
            let due = r.tracking_unmailed_since == Some(since);
            if due {
                r.tracking_unmailed_since = None;
            }
            due
        })
    }

    async fn mark_mailed(&self, id: i64) -> Result<ShipmentRecord, StoreError> {
        self.update(id, |r, _| {
            r.mailed_at = Some(Utc::now());
            r.clone()
        })
    }

    async fn update_mail(
        &self,
        id: i64,
        u: &MailUpdate,
    ) -> Result<Option<ShipmentRecord>, StoreError> {
        let mut rows = self.rows();
        let (r, _) = rows
            .iter_mut()
            .find(|(r, _)| r.id == id)
            .ok_or(StoreError::NotFound(id))?;
        if r.mail_message_id != u.seen_message_id || r.mail_state != u.seen_state {
            return Ok(None);
        }
        r.mail_message_id.clone_from(&u.message_id);
        r.mail_state = u.state;
        r.mail_state_at = u.at;
        if u.mailed {
            r.mailed_at = Some(Utc::now());
        }
        Ok(Some(r.clone()))
    }

    async fn mark_withdrawn(
        &self,
        order_id: i64,
        status: &str,
    ) -> Result<Vec<ShipmentRecord>, StoreError> {
        let mut marked = Vec::new();
        for (r, _) in self.rows().iter_mut() {
            if r.order_id == order_id && !r.delivery_id.is_empty() && r.order_withdrawn.is_none() {
                r.order_withdrawn = Some(status.to_owned());
                r.updated_at = Utc::now();
                marked.push(r.clone());
            }
        }
        Ok(marked)
    }

    async fn mark_noted(&self, id: i64, barcode: &str) -> Result<ShipmentRecord, StoreError> {
        self.update(id, |r, _| {
            r.noted_barcode = Some(barcode.to_owned());
            r.clone()
        })
    }

    async fn get(&self, id: i64) -> Result<Option<ShipmentRecord>, StoreError> {
        Ok(self
            .rows()
            .iter()
            .find(|(r, _)| r.id == id)
            .map(|(r, _)| r.clone()))
    }

    async fn label(&self, id: i64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .rows()
            .iter()
            .find(|(r, _)| r.id == id)
            .and_then(|(_, l)| l.clone()))
    }

    async fn of_order(&self, order_id: i64) -> Result<Vec<ShipmentRecord>, StoreError> {
        Ok(self
            .rows()
            .iter()
            .filter(|(r, _)| r.order_id == order_id)
            .map(|(r, _)| r.clone())
            .collect())
    }

    async fn transition(
        &self,
        id: i64,
        from: ShipmentStatus,
        to: ShipmentStatus,
    ) -> Result<bool, StoreError> {
        let mut rows = self.rows();
        Ok(match rows.iter_mut().find(|(r, _)| r.id == id) {
            Some((r, _)) if r.status == from => {
                r.status = to;
                r.updated_at = Utc::now();
                true
            }
            _ => false,
        })
    }

    async fn list(&self, f: &ShipmentFilter) -> Result<Vec<ShipmentRecord>, StoreError> {
        let limit = if f.limit == 0 { 50 } else { f.limit };
        Ok(self
            .rows()
            .iter()
            .rev()
            .map(|(r, _)| r)
            .filter(|r| {
                f.order_id.is_none_or(|v| r.order_id == v)
                    && f.vendor_id.is_none_or(|v| r.vendor_id == v)
                    && f.status.is_none_or(|v| r.status == v)
                    && f.delivery_id.as_ref().is_none_or(|v| &r.delivery_id == v)
                    && f.before_id.is_none_or(|v| r.id < v)
                    && f.mail_message_id
                        .as_ref()
                        .is_none_or(|v| r.mail_message_id.as_ref() == Some(v))
            })
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .cloned()
            .collect())
    }

    async fn to_track(&self) -> Result<Vec<ShipmentRecord>, StoreError> {
        Ok(self
            .rows()
            .iter()
            .filter(|(r, _)| {
                !r.delivery_id.is_empty()
                    && !matches!(
                        r.status,
                        ShipmentStatus::Delivered | ShipmentStatus::Booking
                    )
            })
            .map(|(r, _)| r.clone())
            .collect())
    }

    async fn prune_labels(
        &self,
        delivered_before: Option<DateTime<Utc>>,
        booked_before: Option<DateTime<Utc>>,
        limit: usize,
    ) -> Result<u64, StoreError> {
        let due: Vec<i64> = self
            .rows()
            .iter()
            .filter(|(r, _)| r.label_pruned.is_none() && r.status != ShipmentStatus::Booking)
            .filter(|(r, _)| {
                if r.status == ShipmentStatus::Delivered {
                    delivered_before.is_some_and(|t| r.updated_at < t)
                } else {
                    booked_before.is_some_and(|t| r.created_at < t)
                }
            })
            .take(limit)
            .map(|(r, _)| r.id)
            .collect();
        self.clear_labels(&due, PruneReason::Retention).await
    }

    async fn clear_labels(&self, ids: &[i64], why: PruneReason) -> Result<u64, StoreError> {
        let now = Utc::now();
        let mut n = 0;
        for (r, label) in self.rows().iter_mut().filter(|(r, _)| ids.contains(&r.id)) {
            if r.label_pruned.is_none() || label.is_some() || !r.request.is_empty() {
                n += 1;
            }
            *label = None;
            r.has_label = false;
            r.request.clear();
            r.label_pruned = Some(Pruned { at: now, why });
        }
        for (b, label) in lock(&self.past)
            .iter_mut()
            .filter(|(b, _)| ids.contains(&b.shipment_id))
        {
            *label = None;
            b.has_label = false;
        }
        Ok(n)
    }
}

#[derive(Debug, Default)]
struct ShopData {
    vendors: HashMap<i64, VendorProfile>,
    orders: HashMap<i64, Order>,
    users: Vec<ShopUser>,
    listed: Vec<ShopOrder>,
    webhooks: Vec<ShopWebhook>,
    notes: HashMap<i64, Vec<OrderNote>>,
    updates: Vec<(i64, OrderUpdate)>,
}

/// A shop in memory: the vendors, orders and WordPress users it is given.
#[derive(Debug, Default)]
pub struct MemoryShop {
    data: Mutex<ShopData>,
}

impl MemoryShop {
    /// A shop with nothing in it.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the vendor `profile.id`.
    pub fn with_vendor(self, profile: VendorProfile) -> Self {
        lock(&self.data).vendors.insert(profile.id, profile);
        self
    }

    /// Adds (or replaces) the order `order.id`, for [`Shop::order`].
    pub fn with_order(self, order: Order) -> Self {
        lock(&self.data).orders.insert(order.id, order);
        self
    }

    /// Adds a WordPress user.
    pub fn with_user(self, user: ShopUser) -> Self {
        lock(&self.data).users.push(user);
        self
    }

    /// The WordPress users, as they are now (roles changed by [`Shop::set_user_roles`]).
    pub fn users(&self) -> Vec<ShopUser> {
        lock(&self.data).users.clone()
    }

    /// Adds an order to the listing [`Shop::orders_modified_after`] pages through.
    pub fn with_listed(self, order: ShopOrder) -> Self {
        lock(&self.data).listed.push(order);
        self
    }

    /// Adds a webhook configuration.
    pub fn with_webhook(self, webhook: ShopWebhook) -> Self {
        lock(&self.data).webhooks.push(webhook);
        self
    }

    /// The notes written on an order, oldest first.
    pub fn notes(&self, order_id: i64) -> Vec<OrderNote> {
        lock(&self.data)
            .notes
            .get(&order_id)
            .cloned()
            .unwrap_or_default()
    }

    /// Every order update received, in order.
    pub fn updates(&self) -> Vec<(i64, OrderUpdate)> {
        lock(&self.data).updates.clone()
    }

    /// The webhook configurations as they are now.
    pub fn webhook_list(&self) -> Vec<ShopWebhook> {
        lock(&self.data).webhooks.clone()
    }
}

#[async_trait]
impl Shop for MemoryShop {
    async fn vendor(&self, vendor_id: i64) -> Result<VendorProfile, ShopError> {
        lock(&self.data)
            .vendors
            .get(&vendor_id)
            .cloned()
            .ok_or_else(|| ShopError::NotFound {
                what: format!("vendor {vendor_id}"),
            })
    }

    async fn order(&self, order_id: i64) -> Result<Order, ShopError> {
        lock(&self.data)
            .orders
            .get(&order_id)
            .cloned()
            .ok_or_else(|| ShopError::NotFound {
                what: format!("order {order_id}"),
            })
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<ShopUser>, ShopError> {
        Ok(lock(&self.data)
            .users
            .iter()
            .find(|u| u.email.eq_ignore_ascii_case(email))
            .cloned())
    }

    async fn set_user_roles(&self, user_id: i64, roles: &[String]) -> Result<ShopUser, ShopError> {
        let mut data = lock(&self.data);
        let user = data
            .users
            .iter_mut()
            .find(|u| u.id == user_id)
            .ok_or_else(|| ShopError::NotFound {
                what: format!("user {user_id}"),
            })?;
        user.roles = roles.to_vec();
        Ok(user.clone())
    }

    async fn orders_modified_after(
        &self,
        after: DateTime<Utc>,
        page: u32,
        per_page: u32,
    ) -> Result<OrderPage, ShopError> {
        let data = lock(&self.data);
        let mut listed: Vec<&ShopOrder> = data
            .listed
            .iter()
            .filter(|o| o.modified.is_some_and(|m| m > after))
            .collect();
        listed.sort_by_key(|o| (o.modified, o.id));
        let per_page = per_page.max(1) as usize;
        let start = (page.max(1) as usize - 1) * per_page;
        Ok(OrderPage {
            orders: listed
                .into_iter()
                .skip(start)
                .take(per_page)
                .cloned()
                .collect(),
            per_page,
        })
    }

    async fn webhooks(&self) -> Result<Vec<ShopWebhook>, ShopError> {
        Ok(lock(&self.data).webhooks.clone())
    }

    async fn set_webhook_status(&self, id: i64, status: &str) -> Result<ShopWebhook, ShopError> {
        let mut data = lock(&self.data);
        let webhook = data
            .webhooks
            .iter_mut()
            .find(|w| w.id == id)
            .ok_or_else(|| ShopError::NotFound {
                what: format!("webhook {id}"),
            })?;
        webhook.status = status.to_owned();
        Ok(webhook.clone())
    }

    async fn order_notes(&self, order_id: i64) -> Result<Vec<OrderNote>, ShopError> {
        Ok(self.notes(order_id))
    }

    async fn add_order_note(
        &self,
        order_id: i64,
        note: &str,
        customer_note: bool,
    ) -> Result<OrderNote, ShopError> {
        let mut data = lock(&self.data);
        let notes = data.notes.entry(order_id).or_default();
        let note = OrderNote {
            id: i64::try_from(notes.len()).unwrap_or(i64::MAX) + 1,
            note: note.to_owned(),
            customer_note,
        };
        notes.push(note.clone());
        Ok(note)
    }

    async fn update_order(&self, order_id: i64, update: &OrderUpdate) -> Result<(), ShopError> {
        let mut data = lock(&self.data);
        if let Some(status) = &update.status
            && let Some(order) = data.orders.get_mut(&order_id)
        {
            order.status.clone_from(status);
        }
        data.updates.push((order_id, update.clone()));
        Ok(())
    }
}

/// Named values in memory.
#[derive(Debug, Default)]
pub struct MemoryStateStore {
    values: Mutex<HashMap<String, String>>,
}

impl MemoryStateStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl StateStore for MemoryStateStore {
    async fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(lock(&self.values).get(key).cloned())
    }

    async fn compare_and_set(
        &self,
        key: &str,
        expected: Option<&str>,
        value: &str,
    ) -> Result<bool, StoreError> {
        let mut values = lock(&self.values);
        if values.get(key).map(String::as_str) != expected {
            return Ok(false);
        }
        values.insert(key.to_owned(), value.to_owned());
        Ok(true)
    }
}

/// Alerts in memory, one open per (kind, subject) like the SQL store.
#[derive(Debug, Default)]
pub struct MemoryAlertStore {
    alerts: Mutex<Vec<Alert>>,
}

impl MemoryAlertStore {
    /// A store with no alert.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every alert, oldest first.
    pub fn all(&self) -> Vec<Alert> {
        lock(&self.alerts).clone()
    }
}

fn resolve_in(a: &mut Alert, by: &str) {
    a.state = AlertState::Resolved;
    a.resolved_at = Some(Utc::now());
    a.resolved_by = Some(by.to_owned());
}

fn count_kinds<'a>(alerts: impl Iterator<Item = &'a Alert>) -> Vec<(AlertKind, u64)> {
    let mut counts: Vec<(AlertKind, u64)> = Vec::new();
    for a in alerts {
        match counts.iter_mut().find(|(k, _)| *k == a.kind) {
            Some((_, n)) => *n += 1,
            None => counts.push((a.kind, 1)),
        }
    }
    counts.sort();
    counts
}

#[async_trait]
impl AlertStore for MemoryAlertStore {
    async fn raise_times(&self, new: &NewAlert, times: u64) -> Result<Raised, StoreError> {
        let mut alerts = lock(&self.alerts);
        let now = Utc::now();
        if let Some(a) = alerts
            .iter_mut()
            .find(|a| a.state == AlertState::Open && a.kind == new.kind && a.subject == new.subject)
        {
            a.count += times;
            a.last_seen = now;
            a.detail.clone_from(&new.detail);
            return Ok(Raised::Repeated(a.clone()));
        }
        let alert = Alert {
            id: i64::try_from(alerts.len()).unwrap_or(i64::MAX) + 1,
            kind: new.kind,
            subject: new.subject.clone(),
            summary: new.summary.clone(),
            detail: new.detail.clone(),
            state: AlertState::Open,
            count: times,
            first_seen: now,
            last_seen: now,
            resolved_at: None,
            resolved_by: None,
            mail_due: true,
            hook_due: true,
        };
        alerts.push(alert.clone());
        Ok(Raised::Opened(alert))
    }

    async fn resolve(
        &self,
        kind: AlertKind,
        subject: &str,
        by: &str,
    ) -> Result<Option<Alert>, StoreError> {
        let mut alerts = lock(&self.alerts);
        Ok(alerts
            .iter_mut()
            .find(|a| a.state == AlertState::Open && a.kind == kind && a.subject == subject)
            .map(|a| {
                resolve_in(a, by);
                a.clone()
            }))
    }

    async fn resolve_id(&self, id: i64, by: &str) -> Result<Option<Alert>, StoreError> {
        let mut alerts = lock(&self.alerts);
        Ok(alerts.iter_mut().find(|a| a.id == id).map(|a| {
            if a.state == AlertState::Open {
                resolve_in(a, by);
            }
            a.clone()
        }))
    }

    async fn get(&self, id: i64) -> Result<Option<Alert>, StoreError> {
        Ok(lock(&self.alerts).iter().find(|a| a.id == id).cloned())
    }

    async fn list(&self, filter: &AlertFilter) -> Result<Vec<Alert>, StoreError> {
        let mut found: Vec<Alert> = lock(&self.alerts)
            .iter()
            .filter(|a| filter.state.is_none_or(|s| a.state == s))
            .filter(|a| filter.kind.is_none_or(|k| a.kind == k))
            .cloned()
            .collect();
        found.sort_by(|a, b| b.last_seen.cmp(&a.last_seen).then(b.id.cmp(&a.id)));
        found.truncate(if filter.limit == 0 { 100 } else { filter.limit });
        Ok(found)
    }

    async fn open_counts(&self) -> Result<Vec<(AlertKind, u64)>, StoreError> {
        let alerts = lock(&self.alerts);
        Ok(count_kinds(
            alerts.iter().filter(|a| a.state == AlertState::Open),
        ))
    }

    async fn open_subjects(&self, kind: AlertKind) -> Result<Vec<String>, StoreError> {
        Ok(lock(&self.alerts)
            .iter()
            .filter(|a| a.state == AlertState::Open && a.kind == kind)
            .map(|a| a.subject.clone())
            .collect())
    }

    async fn due(&self, channel: AlertChannel, limit: usize) -> Result<Vec<Alert>, StoreError> {
        Ok(lock(&self.alerts)
            .iter()
            .filter(|a| a.due(channel))
            .take(limit)
            .cloned()
            .collect())
    }

    async fn due_counts(
        &self,
        channel: AlertChannel,
    ) -> Result<(KindCounts, Option<i64>), StoreError> {
        let alerts = lock(&self.alerts);
        let due = || alerts.iter().filter(|a| a.due(channel));
        Ok((count_kinds(due()), due().map(|a| a.id).max()))
    }

    async fn opened_since(&self, since: DateTime<Utc>) -> Result<u64, StoreError> {
        let n = lock(&self.alerts)
            .iter()
            .filter(|a| a.first_seen >= since)
            .count();
        Ok(u64::try_from(n).unwrap_or(u64::MAX))
    }

    async fn delivered(&self, channel: AlertChannel, from: i64, to: i64) -> Result<(), StoreError> {
        for a in lock(&self.alerts)
            .iter_mut()
            .filter(|a| (from..=to).contains(&a.id))
        {
            match channel {
                AlertChannel::Mail => a.mail_due = false,
                AlertChannel::Hook => a.hook_due = false,
            }
        }
        Ok(())
    }

    async fn erase_details(&self, subjects: &[String], note: &str) -> Result<u64, StoreError> {
        let mut n = 0;
        for a in lock(&self.alerts)
            .iter_mut()
            .filter(|a| subjects.contains(&a.subject) && a.detail != note)
        {
            a.detail = note.to_owned();
            n += 1;
        }
        Ok(n)
    }

    async fn prune_details(
        &self,
        before: DateTime<Utc>,
        note: &str,
        limit: usize,
    ) -> Result<u64, StoreError> {
        let mut n = 0;
        for a in lock(&self.alerts)
            .iter_mut()
            .filter(|a| a.last_seen < before && a.detail != note)
            .take(limit)
        {
            a.detail = note.to_owned();
            n += 1;
        }
        Ok(n)
    }
}

/// The audit log in memory.
#[derive(Debug, Default)]
pub struct MemoryAuditLog {
    entries: Mutex<Vec<AuditEntry>>,
}

impl MemoryAuditLog {
    /// A log with nothing recorded.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every entry, oldest first.
    pub fn all(&self) -> Vec<AuditEntry> {
        lock(&self.entries).clone()
    }
}

/// Whether `filter` selects `e` (its limit and paging aside).
pub fn audit_selects(filter: &AuditFilter, e: &AuditEntry) -> bool {
    filter
        .actor
        .as_ref()
        .is_none_or(|a| *a == e.data.actor.name)
        && filter.action.is_none_or(|a| a == e.data.action)
        && filter.subject.as_ref().is_none_or(|s| *s == e.data.subject)
        && filter.since.is_none_or(|t| e.data.at >= t)
        && filter.before_id.is_none_or(|b| e.id < b)
}

#[async_trait]
impl AuditLog for MemoryAuditLog {
    async fn record(&self, entry: &NewAuditEntry) -> Result<i64, StoreError> {
        let mut entries = lock(&self.entries);
        let id = entries.last().map_or(1, |e| e.id + 1);
        entries.push(AuditEntry {
            id,
            data: entry.clone(),
        });
        Ok(id)
    }

    async fn list(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        let limit = usize::try_from(if filter.limit == 0 { 100 } else { filter.limit })
            .unwrap_or(usize::MAX);
        Ok(lock(&self.entries)
            .iter()
            .rev()
            .filter(|e| audit_selects(filter, e))
            .take(limit)
            .cloned()
            .collect())
    }
}

/// Mail events in memory, deduplicated per (provider, dedupe key) like the SQL store.
#[derive(Debug, Default)]
pub struct MemoryMailEventStore {
    events: Mutex<Vec<MailEvent>>,
}

impl MemoryMailEventStore {
    /// A store with no event.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every event, oldest first.
    pub fn all(&self) -> Vec<MailEvent> {
        lock(&self.events).clone()
    }
}

#[async_trait]
impl MailEventStore for MemoryMailEventStore {
    async fn record(&self, event: &NewMailEvent) -> Result<RecordedMailEvent, StoreError> {
        let mut events = lock(&self.events);
        if let Some(key) = &event.dedupe_key
            && let Some(e) = events.iter().find(|e| {
                e.data.provider == event.provider && e.data.dedupe_key.as_ref() == Some(key)
            })
        {
            return Ok(RecordedMailEvent::Duplicate {
                id: e.id,
                status: e.data.status,
            });
        }
        let id = i64::try_from(events.len()).unwrap_or(i64::MAX) + 1;
        events.push(MailEvent {
            id,
            received_at: Utc::now(),
            data: event.clone(),
        });
        Ok(RecordedMailEvent::Inserted(id))
    }

    async fn settle(
        &self,
        id: i64,
        status: MailEventStatus,
        shipment_id: Option<i64>,
        error: Option<String>,
    ) -> Result<(), StoreError> {
        if let Some(e) = lock(&self.events).iter_mut().find(|e| e.id == id) {
            e.data.status = status;
            e.data.shipment_id = shipment_id;
            e.data.error = error;
        }
        Ok(())
    }

    async fn get(&self, id: i64) -> Result<Option<MailEvent>, StoreError> {
        Ok(lock(&self.events).iter().find(|e| e.id == id).cloned())
    }

    async fn list(&self, f: &MailEventFilter) -> Result<Vec<MailEvent>, StoreError> {
        let limit = if f.limit == 0 { 100 } else { f.limit };
        Ok(lock(&self.events)
            .iter()
            .rev()
            .filter(|e| {
                f.shipment_id.is_none_or(|v| e.data.shipment_id == Some(v))
                    && f.status.is_none_or(|v| e.data.status == v)
                    && f.before_id.is_none_or(|v| e.id < v)
            })
            .take(limit)
            .cloned()
            .collect())
    }
}

/// A mailer that sends nothing and keeps every message, in order.
#[derive(Debug, Default)]
pub struct MemoryMailer {
    sent: Mutex<Vec<Email>>,
}

impl MemoryMailer {
    /// A mailer that has sent nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// The messages sent so far, oldest first.
    pub fn sent(&self) -> Vec<Email> {
        lock(&self.sent).clone()
    }
}

#[async_trait]
impl Mailer for MemoryMailer {
    async fn send(&self, email: &Email) -> Result<(), MailError> {
        lock(&self.sent).push(email.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_memory_shop_answers_what_it_holds_and_not_found_otherwise() {
        let shop = MemoryShop::new()
            .with_vendor(VendorProfile {
                id: 6,
                email: "v@example.com".into(),
                store_name: String::new(),
                ..VendorProfile::default()
            })
            .with_user(ShopUser {
                id: 9,
                email: "Member@Example.com".into(),
                roles: vec!["customer".into()],
            });
        assert_eq!(shop.vendor(6).await.expect("vendor").email, "v@example.com");
        assert!(matches!(
            shop.vendor(7).await,
            Err(ShopError::NotFound { .. })
        ));
        assert!(matches!(
            shop.order(1).await,
            Err(ShopError::NotFound { .. })
        ));
        let user = shop
            .user_by_email("member@example.com")
            .await
            .expect("lookup")
            .expect("found, whatever the case");
        let partner = vec!["partner".to_owned()];
        assert_eq!(
            shop.set_user_roles(user.id, &partner)
                .await
                .expect("set")
                .roles,
            partner
        );
        assert_eq!(shop.users()[0].roles, partner);
        assert!(matches!(
            shop.set_user_roles(10, &partner).await,
            Err(ShopError::NotFound { .. })
        ));
    }
}
