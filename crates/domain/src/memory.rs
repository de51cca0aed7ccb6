//! An in-memory [`ShipmentStore`]: for tests, examples and embedders who keep shipments
//! elsewhere. It holds everything in one mutex and loses it on drop; production uses the SQL
//! store of the `adapters` crate.

use crate::error::StoreError;
use crate::model::{
    BookingOutcome, Claim, ShipmentFilter, ShipmentMethod, ShipmentRecord, ShipmentStatus,
};
use crate::ports::ShipmentStore;
use async_trait::async_trait;
use chrono::Utc;
use std::sync::{Mutex, MutexGuard};

/// Shipments in memory, unique per (order, vendor) like the SQL store.
#[derive(Debug, Default)]
pub struct MemoryShipmentStore {
    rows: Mutex<Vec<(ShipmentRecord, Option<Vec<u8>>)>>,
}

impl MemoryShipmentStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn rows(&self) -> MutexGuard<'_, Vec<(ShipmentRecord, Option<Vec<u8>>)>> {
        // A panic elsewhere cannot leave a row half-written: every change is one assignment.
        self.rows.lock().unwrap_or_else(|p| p.into_inner())
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
        };
        rows.push((r.clone(), None));
        Ok(Claim::Claimed(r))
    }

    async fn release(&self, id: i64) -> Result<(), StoreError> {
        self.rows()
            .retain(|(r, _)| !(r.id == id && r.status == ShipmentStatus::Booking));
        Ok(())
    }

    async fn record_booking(
        &self,
        id: i64,
        o: &BookingOutcome,
    ) -> Result<ShipmentRecord, StoreError> {
        self.update(id, |r, label| {
            r.status = o.status;
            r.delivery_id = o.delivery_id.clone();
            r.request = o.request.clone();
            r.message = o.message.clone();
            r.has_label = o.label_pdf.is_some();
            r.mailed_at = None;
            *label = o.label_pdf.clone();
            r.clone()
        })
    }

    async fn record_tracking(
        &self,
        id: i64,
        status: ShipmentStatus,
        message: &str,
        notes: &str,
        event_date: Option<String>,
    ) -> Result<ShipmentRecord, StoreError> {
        self.update(id, |r, _| {
            r.status = status;
            r.message = message.to_owned();
            r.notes = notes.to_owned();
            r.tracking_status_created_at = event_date;
            r.tracking_updated_at = Some(Utc::now());
            r.clone()
        })
    }

    async fn mark_mailed(&self, id: i64) -> Result<(), StoreError> {
        self.update(id, |r, _| r.mailed_at = Some(Utc::now()))
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
            .filter(|(r, _)| !r.delivery_id.is_empty() && r.status != ShipmentStatus::Delivered)
            .map(|(r, _)| r.clone())
            .collect())
    }
}
