//! Shipping decisions for an order, pure and without I/O (spec §4, §5.1, §5.4, §5.5).
//!
//! - [`plan`] splits an order by vendor and by shipping method: which vendors ship with the
//!   carrier, which are picked up at the shop and which are ignored.
//! - [`build_parcel`] makes the parcel of one vendor's part of the order.
//! - [`pair_results`] pairs the carrier's answers with the vendors they belong to, by request
//!   order.
//! - [`tracking_status`] maps a tracking report to a shipment status and message.
//!
//! Where this differs from the original connector, on purpose:
//! - the original paired the i-th carrier answer with the i-th *line item*'s vendor (spec §12
//!   #1); [`pair_results`] pairs it with the i-th *requested* group;
//! - a shipping line naming a vendor that has no line items crashed the original (§12 #14); here
//!   that vendor gets no group at all;
//! - a vendor is in exactly one group: the first shipping line that names it decides its method
//!   (the original could list a vendor under two methods when an explicit line and the
//!   empty-meta fallback both named it).

use crate::model::shipment::{ShipmentStatus, VendorProfile};
use crate::model::{LineItem, Order, Parcel, ParcelBooking, Party, TrackingReport, TrackingState};
use serde_json::Value;

/// The line-item meta key holding the vendor (WCFM).
const LINE_ITEM_VENDOR_KEY: &str = "_vendor_id";
/// The shipping-line meta key holding the vendor (WCFM, no underscore).
const SHIPPING_LINE_VENDOR_KEY: &str = "vendor_id";

/// Which WooCommerce shipping `method_id`s mean what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShippingMethods {
    /// Methods booked with Koiki.
    pub koiki: Vec<String>,
    /// Methods picked up at the shop.
    pub local_pickup: Vec<String>,
}

impl Default for ShippingMethods {
    /// The original's mapping: Koiki for `wcfmmp_product_shipping_by_zone` and `flat_rate`, local
    /// pickup for `local_pickup`.
    fn default() -> Self {
        Self {
            koiki: vec![
                "wcfmmp_product_shipping_by_zone".to_owned(),
                "flat_rate".to_owned(),
            ],
            local_pickup: vec!["local_pickup".to_owned()],
        }
    }
}

/// One vendor's part of an order.
#[derive(Debug, Clone, PartialEq)]
pub struct VendorGroup {
    /// The vendor's WordPress user id.
    pub vendor_id: i64,
    /// The store name: the `display_value` of the vendor's first line item's `_vendor_id` meta.
    pub store_name: String,
    /// The shipping method the order gives this vendor; empty when no shipping line names it.
    pub method_id: String,
    /// The vendor's line items, in order.
    pub line_items: Vec<LineItem>,
}

/// An order split by vendor and shipping method. Every line-item vendor is in exactly one list.
///
/// Each list is in the first-appearance order of the vendors in the order's line items (line
/// items [5, 6, 5] give 5 then 6), whatever the order of the shipping lines.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ShipmentPlan {
    /// Vendors to book with the carrier, one parcel each. Empty means: do not call the carrier
    /// (§12 #3).
    pub koiki: Vec<VendorGroup>,
    /// Vendors whose customer picks up at the shop.
    pub local_pickup: Vec<VendorGroup>,
    /// Vendors with another method (`free_shipping`, ...) or named by no shipping line: they get
    /// no shipment, as in the original.
    pub ignored: Vec<VendorGroup>,
}

/// Why an order cannot be split by vendor. Retrying cannot help: the order itself is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A line item has no `_vendor_id` meta (the original raised too).
    #[error("line item {line_item_id} has no _vendor_id meta")]
    MissingVendor {
        /// The line item's id.
        line_item_id: i64,
    },
    /// A line item's `_vendor_id` is not an integer.
    #[error("line item {line_item_id} has a non-integer _vendor_id: {value}")]
    InvalidLineItemVendor {
        /// The line item's id.
        line_item_id: i64,
        /// The value, as JSON.
        value: String,
    },
    /// A shipping line's `vendor_id` is not an integer.
    #[error("shipping line {shipping_line_id} has a non-integer vendor_id: {value}")]
    InvalidShippingLineVendor {
        /// The shipping line's id.
        shipping_line_id: i64,
        /// The value, as JSON.
        value: String,
    },
}

/// Why the carrier's answers cannot be paired with the requested vendors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PairingError {
    /// There is not one parcel per group.
    #[error("{groups} vendor groups but {parcels} parcels")]
    ParcelsMismatch {
        /// How many groups.
        groups: usize,
        /// How many parcels.
        parcels: usize,
    },
    /// The carrier did not answer once per parcel.
    #[error("{requested} parcels requested but {received} results received")]
    ResultsMismatch {
        /// How many parcels were sent.
        requested: usize,
        /// How many results came back.
        received: usize,
    },
}

/// Splits an order by vendor and by shipping method (spec §4).
///
/// Each line item belongs to the vendor of its first `_vendor_id` meta (a JSON number or a string
/// holding an integer); the store name is that meta's `display_value`. Each shipping line with a
/// `vendor_id` meta gives its `method_id` to that vendor. At the first shipping line without one
/// (WooCommerce sends a single `flat_rate` line with empty meta), the scan stops and every vendor
/// not named yet gets that line's method. A vendor named by two shipping lines keeps the first.
///
/// Vendors whose method is in `methods.koiki` go to [`ShipmentPlan::koiki`], in
/// `methods.local_pickup` to [`ShipmentPlan::local_pickup`], and any other method, or none, to
/// [`ShipmentPlan::ignored`]. A shipping line naming a vendor without line items makes no group.
/// Groups are in the first-appearance order of their vendor in the line items.
///
/// # Errors
/// [`PlanError::MissingVendor`] for a line item without `_vendor_id`,
/// [`PlanError::InvalidLineItemVendor`] and [`PlanError::InvalidShippingLineVendor`] for a vendor
/// id that is not an integer.
pub fn plan(order: &Order, methods: &ShippingMethods) -> Result<ShipmentPlan, PlanError> {
    let mut groups: Vec<VendorGroup> = Vec::new();
    for item in &order.line_items {
        let meta = item
            .meta_data
            .iter()
            .find(|m| m.key == LINE_ITEM_VENDOR_KEY)
            .ok_or(PlanError::MissingVendor {
                line_item_id: item.id,
            })?;
        let vendor_id =
            vendor_id_of(&meta.value).ok_or_else(|| PlanError::InvalidLineItemVendor {
                line_item_id: item.id,
                value: meta.value.to_string(),
            })?;
        match groups.iter_mut().find(|g| g.vendor_id == vendor_id) {
            Some(group) => group.line_items.push(item.clone()),
            None => groups.push(VendorGroup {
                vendor_id,
                store_name: meta.display_value.clone(),
                method_id: String::new(),
                line_items: vec![item.clone()],
            }),
        }
    }

    // vendor id → method id, first assignment wins.
    let mut assigned: Vec<(i64, &str)> = Vec::new();
    for line in &order.shipping_lines {
        let Some(meta) = line
            .meta_data
            .iter()
            .find(|m| m.key == SHIPPING_LINE_VENDOR_KEY)
        else {
            // The #142 fallback: this line's method for every vendor not named yet.
            for group in &groups {
                if !assigned.iter().any(|(id, _)| *id == group.vendor_id) {
                    assigned.push((group.vendor_id, &line.method_id));
                }
            }
            break;
        };
        let vendor_id =
            vendor_id_of(&meta.value).ok_or_else(|| PlanError::InvalidShippingLineVendor {
                shipping_line_id: line.id,
                value: meta.value.to_string(),
            })?;
        if !assigned.iter().any(|(id, _)| *id == vendor_id) {
            assigned.push((vendor_id, &line.method_id));
        }
    }

    let mut result = ShipmentPlan::default();
    for mut group in groups {
        if let Some((_, method)) = assigned.iter().find(|(id, _)| *id == group.vendor_id) {
            (*method).clone_into(&mut group.method_id);
        }
        if methods.koiki.contains(&group.method_id) {
            result.koiki.push(group);
        } else if methods.local_pickup.contains(&group.method_id) {
            result.local_pickup.push(group);
        } else {
            result.ignored.push(group);
        }
    }
    Ok(result)
}

/// A vendor id: a JSON integer, or a string holding one (surrounding spaces allowed).
fn vendor_id_of(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The parcel of one vendor's part of an order (spec §5.1), with the details as the shop gave
/// them: the carrier's adapter cleans or converts what its API needs.
///
/// The recipient is the order's shipping address, with the billing phone and e-mail; the sender
/// is the group's store name and the vendor's profile. One package, of unknown weight (0 kg);
/// the notes are the customer's note on the order.
pub fn build_parcel(order: &Order, group: &VendorGroup, vendor: &VendorProfile) -> Parcel {
    let shipping = &order.shipping;
    Parcel {
        order_id: order.id,
        vendor_id: group.vendor_id,
        order_reference: order.order_key.clone(),
        packages: 1,
        weight_kg: 0.0,
        notes: order.customer_note.clone(),
        recipient: Party {
            name: shipping.first_name.clone(),
            surname: shipping.last_name.clone(),
            address_line_1: shipping.address_1.clone(),
            address_line_2: shipping.address_2.clone(),
            postcode: shipping.postcode.clone(),
            city: shipping.city.clone(),
            region: shipping.state.clone(),
            country: shipping.country.clone(),
            phone: order.billing.phone.clone(),
            email: order.billing.email.clone(),
        },
        sender: Party {
            name: group.store_name.clone(),
            surname: String::new(),
            address_line_1: vendor.street.clone(),
            address_line_2: String::new(),
            postcode: vendor.zip.clone(),
            city: vendor.city.clone(),
            region: vendor.state.clone(),
            country: vendor.country.clone(),
            phone: vendor.phone.clone(),
            email: vendor.email.clone(),
        },
    }
}

/// Pairs the carrier's answers with the vendors they answer: the i-th result answers the i-th
/// parcel, which was made for the i-th group (the original paired it with the i-th line item's
/// vendor, §12 #1).
///
/// # Errors
/// [`PairingError::ParcelsMismatch`] when there is not one parcel per group,
/// [`PairingError::ResultsMismatch`] when there is not one result per parcel; nothing is paired
/// then, since no answer can be trusted to belong to a vendor.
pub fn pair_results(
    groups: &[VendorGroup],
    parcels: &[Parcel],
    results: Vec<ParcelBooking>,
) -> Result<Vec<(VendorGroup, Parcel, ParcelBooking)>, PairingError> {
    if groups.len() != parcels.len() {
        return Err(PairingError::ParcelsMismatch {
            groups: groups.len(),
            parcels: parcels.len(),
        });
    }
    if results.len() != parcels.len() {
        return Err(PairingError::ResultsMismatch {
            requested: parcels.len(),
            received: results.len(),
        });
    }
    Ok(groups
        .iter()
        .cloned()
        .zip(parcels.iter().cloned())
        .zip(results)
        .map(|((group, parcel), result)| (group, parcel, result))
        .collect())
}

/// The shipment status and message a tracking report gives (spec §5.4, §3.2).
///
/// An error report gives [`ShipmentStatus::ErrorFromTracking`] with the error's message. An event
/// that leaves the parcel in transit gives [`ShipmentStatus::InProcess`], held up
/// [`ShipmentStatus::OnHold`], delivered [`ShipmentStatus::Delivered`], each with the event's
/// description. An event the carrier's adapter does not recognise gives
/// [`ShipmentStatus::ErrorFromTracking`] with `"{description}. Doesn't match any shipment
/// status"`.
pub fn tracking_status(report: &TrackingReport) -> (ShipmentStatus, String) {
    match report {
        TrackingReport::Error { message } => (ShipmentStatus::ErrorFromTracking, message.clone()),
        TrackingReport::Event {
            state, description, ..
        } => {
            let status = match state {
                TrackingState::InTransit => Some(ShipmentStatus::InProcess),
                TrackingState::HeldUp => Some(ShipmentStatus::OnHold),
                TrackingState::Delivered => Some(ShipmentStatus::Delivered),
                TrackingState::Unrecognised => None,
            };
            match status {
                Some(status) => (status, description.clone()),
                None => (
                    ShipmentStatus::ErrorFromTracking,
                    format!("{description}. Doesn't match any shipment status"),
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn order(body: &str) -> Order {
        serde_json::from_str(body).expect("fixture order parses")
    }

    fn ids(groups: &[VendorGroup]) -> Vec<i64> {
        groups.iter().map(|g| g.vendor_id).collect()
    }

    /// A vendor profile as the shop adapter builds it: WCFM settings plus the WP user's e-mail.
    fn vendor(id: i64, settings: &str, user: &str) -> VendorProfile {
        let settings: Value = serde_json::from_str(settings).expect("settings parse");
        let user: Value = serde_json::from_str(user).expect("user parses");
        let field = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        let address = &settings["address"];
        VendorProfile {
            id,
            phone: field(&settings["phone"]),
            street: field(&address["street_1"]),
            zip: field(&address["zip"]),
            city: field(&address["city"]),
            state: field(&address["state"]),
            country: field(&address["country"]),
            email: field(&user["email"]),
            store_name: String::new(),
        }
    }

    fn line_item(id: i64, vendor: Value, store: &str) -> Value {
        json!({"id": id, "quantity": 1, "meta_data": [
            {"id": id, "key": "_vendor_id", "value": vendor, "display_key": "Store",
             "display_value": store}]})
    }

    fn shipping_line(id: i64, method: &str, vendor: Option<Value>) -> Value {
        let meta = match vendor {
            Some(v) => json!([{"id": id, "key": "vendor_id", "value": v, "display_key": "Store",
                               "display_value": "x"}]),
            None => json!([]),
        };
        json!({"id": id, "method_id": method, "meta_data": meta})
    }

    fn order_of(line_items: Vec<Value>, shipping_lines: Vec<Value>) -> Order {
        serde_json::from_value(json!({"id": 1, "order_key": "wc_order_x",
            "line_items": line_items, "shipping_lines": shipping_lines}))
        .expect("order parses")
    }

    fn booked(barcode: &str) -> ParcelBooking {
        ParcelBooking::Booked {
            message: "OK".to_owned(),
            barcode: barcode.to_owned(),
            reference: barcode.to_owned(),
            label_pdf: Vec::new(),
        }
    }

    fn sender(city: &str, state: &str, country: &str) -> VendorProfile {
        VendorProfile {
            id: 6,
            phone: "+34666554433".to_owned(),
            street: "C/ queviure, 1".to_owned(),
            zip: "08791".to_owned(),
            city: city.to_owned(),
            state: state.to_owned(),
            country: country.to_owned(),
            email: "queviure@lazona.coop".to_owned(),
            store_name: String::new(),
        }
    }

    fn group(vendor_id: i64, store_name: &str) -> VendorGroup {
        VendorGroup {
            vendor_id,
            store_name: store_name.to_owned(),
            method_id: "flat_rate".to_owned(),
            line_items: Vec::new(),
        }
    }

    // --- plan -----------------------------------------------------------------------------

    #[test]
    fn default_methods_are_the_originals() {
        let methods = ShippingMethods::default();
        assert_eq!(
            methods.koiki,
            ["wcfmmp_product_shipping_by_zone", "flat_rate"]
        );
        assert_eq!(methods.local_pickup, ["local_pickup"]);
    }

    #[test]
    fn a_local_pickup_vendor_is_picked_up_and_a_zone_vendor_ships_with_koiki() {
        let order = order(include_str!(
            "../../tests/fixtures/api_test_shipment_setUp_data.json"
        ));
        let plan = plan(&order, &ShippingMethods::default()).expect("plan");
        assert_eq!(ids(&plan.koiki), [6]);
        assert_eq!(plan.koiki[0].store_name, "Quèviure");
        assert_eq!(plan.koiki[0].method_id, "wcfmmp_product_shipping_by_zone");
        assert_eq!(plan.koiki[0].line_items[0].id, 17);
        assert_eq!(ids(&plan.local_pickup), [7]);
        assert_eq!(plan.local_pickup[0].store_name, "A granel");
        assert!(plan.ignored.is_empty());
    }

    #[test]
    fn zone_shipping_and_flat_rate_both_ship_with_koiki() {
        let order = order(include_str!(
            "../../tests/fixtures/api_test_shipment_methods_setUp_data.json"
        ));
        let plan = plan(&order, &ShippingMethods::default()).expect("plan");
        assert_eq!(ids(&plan.koiki), [6, 7]);
        assert_eq!(plan.koiki[1].method_id, "flat_rate");
        assert!(plan.local_pickup.is_empty());
        assert!(plan.ignored.is_empty());
    }

    #[test]
    fn a_single_flat_rate_line_without_meta_sends_every_vendor_to_koiki() {
        let order = order(include_str!(
            "../../tests/fixtures/api_test_shipment_test_create_shipment_without_shipment_metadata_order_data.json"
        ));
        let plan = plan(&order, &ShippingMethods::default()).expect("plan");
        assert_eq!(ids(&plan.koiki), [6]);
        assert_eq!(plan.koiki[0].method_id, "flat_rate");

        let two_vendors = order_of(
            vec![line_item(1, json!("5"), "A"), line_item(2, json!(6), "B")],
            vec![shipping_line(1, "flat_rate", None)],
        );
        let plan = super::plan(&two_vendors, &ShippingMethods::default()).expect("plan");
        assert_eq!(ids(&plan.koiki), [5, 6]);
    }

    #[test]
    fn the_empty_meta_fallback_keeps_the_method_of_vendors_named_before_it() {
        let order = order_of(
            vec![line_item(1, json!("5"), "A"), line_item(2, json!("6"), "B")],
            vec![
                shipping_line(1, "local_pickup", Some(json!("6"))),
                shipping_line(2, "flat_rate", None),
                shipping_line(3, "local_pickup", Some(json!("5"))),
            ],
        );
        let plan = plan(&order, &ShippingMethods::default()).expect("plan");
        assert_eq!(ids(&plan.koiki), [5]);
        assert_eq!(ids(&plan.local_pickup), [6]);
    }

    #[test]
    fn line_items_from_5_6_5_give_two_groups_5_then_6() {
        let order = order(include_str!(
            "../../tests/fixtures/koiki_test_create_delivery_setUp_order.json"
        ));
        let plan = plan(&order, &ShippingMethods::default()).expect("plan");
        assert_eq!(ids(&plan.koiki), [5, 6]);
        let line_ids: Vec<i64> = plan.koiki[0].line_items.iter().map(|l| l.id).collect();
        assert_eq!(line_ids, [1, 3]);
        assert_eq!(plan.koiki[0].store_name, "A granel");
        assert_eq!(plan.koiki[1].store_name, "Quèviure");
    }

    #[test]
    fn groups_follow_the_line_items_not_the_shipping_lines() {
        let order = order_of(
            vec![
                line_item(1, json!("7"), "Seven"),
                line_item(2, json!("6"), "Six"),
            ],
            vec![
                shipping_line(1, "flat_rate", Some(json!("6"))),
                shipping_line(2, "wcfmmp_product_shipping_by_zone", Some(json!(7))),
            ],
        );
        let plan = plan(&order, &ShippingMethods::default()).expect("plan");
        assert_eq!(ids(&plan.koiki), [7, 6]);
    }

    #[test]
    fn a_vendor_with_another_method_or_no_shipping_line_is_ignored() {
        let order = order_of(
            vec![
                line_item(1, json!("5"), "A"),
                line_item(2, json!("6"), "B"),
                line_item(3, json!("7"), "C"),
            ],
            vec![
                shipping_line(1, "flat_rate", Some(json!("5"))),
                shipping_line(2, "free_shipping", Some(json!("6"))),
            ],
        );
        let plan = plan(&order, &ShippingMethods::default()).expect("plan");
        assert_eq!(ids(&plan.koiki), [5]);
        assert_eq!(ids(&plan.ignored), [6, 7]);
        assert_eq!(plan.ignored[0].method_id, "free_shipping");
        assert_eq!(plan.ignored[1].method_id, "");
    }

    #[test]
    fn a_shipping_line_vendor_without_line_items_makes_no_group() {
        let order = order_of(
            vec![line_item(1, json!("5"), "A")],
            vec![
                shipping_line(1, "flat_rate", Some(json!("5"))),
                shipping_line(2, "flat_rate", Some(json!("99"))),
            ],
        );
        let plan = plan(&order, &ShippingMethods::default()).expect("plan");
        assert_eq!(ids(&plan.koiki), [5]);
        assert!(plan.local_pickup.is_empty() && plan.ignored.is_empty());
    }

    #[test]
    fn an_order_with_only_local_pickup_has_no_koiki_groups() {
        let order = order_of(
            vec![line_item(1, json!("7"), "A")],
            vec![shipping_line(1, "local_pickup", Some(json!("7")))],
        );
        let plan = plan(&order, &ShippingMethods::default()).expect("plan");
        assert!(plan.koiki.is_empty());
        assert_eq!(ids(&plan.local_pickup), [7]);
    }

    #[test]
    fn a_line_item_without_vendor_meta_is_an_error() {
        let item: Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/koiki_test_woocommerce_models_test_line_item_without_vendor_data.json"
        ))
        .expect("fixture");
        let order = order_of(vec![item], vec![]);
        assert_eq!(
            plan(&order, &ShippingMethods::default()),
            Err(PlanError::MissingVendor { line_item_id: 1 })
        );
    }

    #[test]
    fn the_first_vendor_meta_of_a_line_item_wins() {
        let item = json!({"id": 1, "meta_data": [
            {"key": "_wcfmmp_order_item_processed", "value": "9"},
            {"key": "_vendor_id", "value": 5, "display_value": "First"},
            {"key": "_vendor_id", "value": 6, "display_value": "Second"}]});
        let order = order_of(vec![item], vec![shipping_line(1, "flat_rate", None)]);
        let plan = plan(&order, &ShippingMethods::default()).expect("plan");
        assert_eq!(ids(&plan.koiki), [5]);
        assert_eq!(plan.koiki[0].store_name, "First");
    }

    #[test]
    fn a_non_integer_vendor_id_is_an_error() {
        let order = order_of(vec![line_item(4, json!("abc"), "A")], vec![]);
        assert_eq!(
            plan(&order, &ShippingMethods::default()),
            Err(PlanError::InvalidLineItemVendor {
                line_item_id: 4,
                value: "\"abc\"".to_owned()
            })
        );
        let order = order_of(vec![line_item(4, json!(5.5), "A")], vec![]);
        assert!(matches!(
            plan(&order, &ShippingMethods::default()),
            Err(PlanError::InvalidLineItemVendor { .. })
        ));
        let order = order_of(
            vec![line_item(4, json!("5"), "A")],
            vec![shipping_line(8, "flat_rate", Some(json!(["5"])))],
        );
        assert!(matches!(
            plan(&order, &ShippingMethods::default()),
            Err(PlanError::InvalidShippingLineVendor {
                shipping_line_id: 8,
                ..
            })
        ));
    }

    // --- build_parcel ---------------------------------------------------------------------

    #[test]
    fn the_worked_example_parcel_carries_the_details_as_the_shop_gave_them() {
        let order = order(include_str!(
            "../../tests/fixtures/koiki_test_create_delivery_setUp_order.json"
        ));
        let plan = plan(&order, &ShippingMethods::default()).expect("plan");
        let vendor5 = vendor(
            5,
            include_str!(
                "../../tests/fixtures/koiki_test_create_delivery_setUp_GET_wp_json_wcfmmp_v1_settings_id_5.json"
            ),
            include_str!(
                "../../tests/fixtures/koiki_test_create_delivery_setUp_GET_wp_json_wp_v2_users_5_context_edit.json"
            ),
        );
        let parcel = build_parcel(&order, &plan.koiki[0], &vendor5);

        assert_eq!((parcel.order_id, parcel.vendor_id), (order.id, 5));
        assert_eq!(parcel.order_reference, "xxx");
        assert_eq!((parcel.packages, parcel.weight_kg), (1, 0.0));
        assert_eq!(parcel.notes, "delivery testing");
        let to = &parcel.recipient;
        assert_eq!((to.name.as_str(), to.surname.as_str()), ("James", "Bond"));
        assert_eq!(to.address_line_1, "Address 1");
        assert_eq!(to.address_line_2, "address 2");
        assert_eq!(to.postcode, "08025");
        assert_eq!(to.city, "Barcelona");
        assert_eq!(to.region, order.shipping.state);
        assert_eq!(to.country, "ES");
        assert_eq!(to.phone, order.billing.phone);
        assert_eq!(to.email, "email@example.com");
        let from = &parcel.sender;
        assert_eq!(
            (from.name.as_str(), from.surname.as_str()),
            ("A granel", "")
        );
        assert_eq!(from.address_line_1, "Sant Antoni Maria Claret, 175");
        assert_eq!(from.address_line_2, "");
        assert_eq!(from.postcode, "08041");
        assert_eq!(from.city, vendor5.city);
        assert_eq!(from.region, vendor5.state);
        assert_eq!(from.country, vendor5.country);
        assert_eq!(from.phone, "93333333");
        assert_eq!(from.email, "detergents@agranel.coop");
    }

    // --- pair_results ---------------------------------------------------------------------

    #[test]
    fn each_result_goes_to_the_vendor_it_was_requested_for() {
        // Line items [A, A, B] with the shipping lines listed B first: the original gave B's
        // answer to A's second line item.
        let order = order_of(
            vec![
                line_item(1, json!("10"), "A"),
                line_item(2, json!("10"), "A"),
                line_item(3, json!("20"), "B"),
            ],
            vec![
                shipping_line(1, "flat_rate", Some(json!("20"))),
                shipping_line(2, "wcfmmp_product_shipping_by_zone", Some(json!("10"))),
            ],
        );
        let plan = plan(&order, &ShippingMethods::default()).expect("plan");
        let parcels: Vec<Parcel> = plan
            .koiki
            .iter()
            .map(|g| {
                let profile = sender("Barcelona", "B", "ES");
                build_parcel(&order, g, &profile)
            })
            .collect();
        let results = vec![booked("barcode-A"), booked("barcode-B")];
        let paired = pair_results(&plan.koiki, &parcels, results).expect("paired");

        assert_eq!(paired.len(), 2);
        assert_eq!(paired[0].0.vendor_id, 10);
        assert_eq!(paired[0].1.sender.name, "A");
        assert_eq!(paired[0].2.barcode(), "barcode-A");
        assert_eq!(paired[1].0.vendor_id, 20);
        assert_eq!(paired[1].1.sender.name, "B");
        assert_eq!(paired[1].2.barcode(), "barcode-B");
    }

    #[test]
    fn a_result_count_that_differs_from_the_request_is_an_error() {
        let groups = [group(1, "A"), group(2, "B")];
        let order = order_of(vec![], vec![]);
        let profile = sender("Barcelona", "", "");
        let parcels: Vec<Parcel> = groups
            .iter()
            .map(|g| build_parcel(&order, g, &profile))
            .collect();
        assert_eq!(
            pair_results(&groups, &parcels, vec![booked("x")]),
            Err(PairingError::ResultsMismatch {
                requested: 2,
                received: 1
            })
        );
        assert_eq!(
            pair_results(&groups, &parcels, vec![]),
            Err(PairingError::ResultsMismatch {
                requested: 2,
                received: 0
            })
        );
        assert_eq!(
            pair_results(&groups, &parcels[..1], vec![booked("x")]),
            Err(PairingError::ParcelsMismatch {
                groups: 2,
                parcels: 1
            })
        );
    }

    // --- tracking_status ------------------------------------------------------------------

    fn event(state: TrackingState, description: &str) -> TrackingReport {
        TrackingReport::Event {
            state,
            description: description.to_owned(),
            date: None,
            notes: String::new(),
        }
    }

    #[test]
    fn a_delivered_parcel_is_delivered_with_its_description() {
        assert_eq!(
            tracking_status(&event(TrackingState::Delivered, "Envío entregado")),
            (ShipmentStatus::Delivered, "Envío entregado".to_owned())
        );
    }

    #[test]
    fn an_unrecognised_event_is_a_tracking_error() {
        assert_eq!(
            tracking_status(&event(TrackingState::Unrecognised, "Unknown state")),
            (
                ShipmentStatus::ErrorFromTracking,
                "Unknown state. Doesn't match any shipment status".to_owned()
            )
        );
    }

    #[test]
    fn a_tracking_error_is_a_tracking_error_with_its_message() {
        let report = TrackingReport::Error {
            message: "CODE NOT FOUND".to_owned(),
        };
        assert_eq!(
            tracking_status(&report),
            (
                ShipmentStatus::ErrorFromTracking,
                "CODE NOT FOUND".to_owned()
            )
        );
    }

    #[test]
    fn parcels_in_transit_and_held_up_are_in_process_and_on_hold() {
        assert_eq!(
            tracking_status(&event(TrackingState::InTransit, "En proces")),
            (ShipmentStatus::InProcess, "En proces".to_owned())
        );
        assert_eq!(
            tracking_status(&event(TrackingState::HeldUp, "Particularitat")),
            (ShipmentStatus::OnHold, "Particularitat".to_owned())
        );
    }
}
