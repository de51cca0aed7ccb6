//! In-memory adapters, for tests, examples and embedders: a [`ShipmentStore`] (for those who
//! keep shipments elsewhere), a [`Shop`] holding vendors, orders and users, and a [`Mailer`]
//! that keeps what it is given. Each holds everything in one mutex and loses it on drop;
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
    BookingOutcome, BookingRecorded, Claim, Order, PastBooking, PastBookingReason, ShipmentFilter,
    ShipmentMethod, ShipmentRecord, ShipmentStatus,
};
use domain::ports::{Email, Mailer, ShipmentStore, Shop, ShopUser};
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
            r.status = status;
            r.message = message.to_owned();
            r.notes = notes.to_owned();
            r.tracking_status_created_at = event_date;
            r.tracking_updated_at = Some(Utc::now());
            r.updated_at = Utc::now();
        }
        Ok(r.clone())
    }

    async fn mark_mailed(&self, id: i64) -> Result<ShipmentRecord, StoreError> {
        self.update(id, |r, _| {
            r.mailed_at = Some(Utc::now());
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
}

#[derive(Debug, Default)]
struct ShopData {
    vendors: HashMap<i64, VendorProfile>,
    orders: HashMap<i64, Order>,
    users: Vec<ShopUser>,
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
