//! Shipping decisions for an order, pure and without I/O (spec §4, §5.1, §5.4, §5.5).
//!
//! - [`plan`] splits an order by vendor and by shipping method: which vendors ship with Koiki,
//!   which are picked up at the shop and which are ignored.
//! - [`build_envio`] builds the Koiki `envio` for one vendor's part of the order.
//! - [`pair_results`] pairs Koiki's answers with the vendors they belong to, by request order.
//! - [`tracking_status`] maps a tracking report to a shipment status and message.
//!
//! Where this differs from the original connector, on purpose:
//! - the original paired the i-th Koiki answer with the i-th *line item*'s vendor (spec §12 #1);
//!   [`pair_results`] pairs it with the i-th *requested* group;
//! - a shipping line naming a vendor that has no line items crashed the original (§12 #14); here
//!   that vendor gets no group at all;
//! - an unknown vendor province code crashed the task (§12 #10); here it is
//!   [`EnvioError::UnknownProvince`];
//! - a vendor is in exactly one group: the first shipping line that names it decides its method
//!   (the original could list a vendor under two methods when an explicit line and the
//!   empty-meta fallback both named it).

use crate::model::shipment::{BookingResult, Envio, ShipmentStatus, TrackingReport, VendorProfile};
use crate::model::{LineItem, Order};
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
    /// Vendors to book with Koiki, one envio each. Empty means: do not call Koiki (§12 #3).
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

/// Why an envio cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvioError {
    /// The vendor's state is neither empty, nor one of the four Catalan province names, nor a
    /// Spanish subdivision code (§5.5). The original crashed; the caller records an error
    /// shipment for this vendor instead, and books the others.
    #[error("unknown province code {0:?}")]
    UnknownProvince(String),
}

/// Why Koiki's answers cannot be paired with the requested vendors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PairingError {
    /// There is not one envio per group.
    #[error("{groups} vendor groups but {envios} envios")]
    EnviosMismatch {
        /// How many groups.
        groups: usize,
        /// How many envios.
        envios: usize,
    },
    /// Koiki did not answer once per envio (for example `envios: []` on a token error).
    #[error("{requested} envios requested but {received} results received")]
    ResultsMismatch {
        /// How many envios were sent.
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

/// Builds the Koiki envio for one vendor's part of an order, field by field as spec §5.1 says.
///
/// The recipient comes from the order's shipping address, with the billing phone and e-mail; the
/// sender from the group's store name and the vendor's profile. Cities are cleaned
/// (`'` and `-` become spaces, `ç` becomes `c`); the recipient's province is sent raw, the
/// sender's normalised to a province name (§5.5); the sender's country defaults to `ES`.
///
/// # Errors
/// [`EnvioError::UnknownProvince`] when the vendor's state is not a known Spanish code: the
/// caller records an error shipment for this vendor rather than failing the whole order.
pub fn build_envio(
    order: &Order,
    group: &VendorGroup,
    vendor: &VendorProfile,
) -> Result<Envio, EnvioError> {
    let shipping = &order.shipping;
    Ok(Envio {
        num_pedido: order.order_key.clone(),
        bultos: 1,
        kilos: 0.0,
        tipo_servicio: 5,
        reembolso: 0.0,
        observaciones: order.customer_note.clone(),
        nombre_desti: shipping.first_name.clone(),
        apellido_desti: shipping.last_name.clone(),
        direccion_desti: shipping.address_1.clone(),
        direccion_adicional_desti: shipping.address_2.clone(),
        numero_calle_desti: String::new(),
        cod_postal_desti: shipping.postcode.clone(),
        poblacion_desti: clean_city(&shipping.city),
        provincia_desti: shipping.state.clone(),
        pais_desti: shipping.country.clone(),
        telefono_desti: strip_country_prefix(&order.billing.phone),
        email_desti: order.billing.email.clone(),
        nombre_remi: group.store_name.clone(),
        apellido_remi: String::new(),
        numero_calle_remi: String::new(),
        direccion_remi: vendor.street.clone(),
        cod_postal_remi: vendor.zip.clone(),
        poblacion_remi: clean_city(&vendor.city),
        provincia_remi: province_name(&vendor.state)?,
        pais_remi: if vendor.country.is_empty() {
            "ES".to_owned()
        } else {
            vendor.country.clone()
        },
        email_remi: vendor.email.clone(),
        telefono_remi: vendor.phone.clone(),
    })
}

/// The original's town-name filter: `'` and `-` become spaces, `ç`/`Ç` become `c`/`C`.
fn clean_city(city: &str) -> String {
    city.chars()
        .map(|c| match c {
            '\'' | '-' => ' ',
            'ç' => 'c',
            'Ç' => 'C',
            other => other,
        })
        .collect()
}

/// The original's `phone[3:]` when the phone matches `^\+\d{2}` (`+34666554433` → `666554433`,
/// `+34 666…` keeps its leading space). Digits are ASCII here, where Python's `\d` also took
/// other Unicode digits.
fn strip_country_prefix(phone: &str) -> String {
    let mut chars = phone.chars();
    let prefixed = chars.next() == Some('+')
        && chars.next().is_some_and(|c| c.is_ascii_digit())
        && chars.next().is_some_and(|c| c.is_ascii_digit());
    if prefixed {
        chars.as_str().to_owned()
    } else {
        phone.to_owned()
    }
}

/// The four Catalan province names the original accepted as input.
const CATALAN_PROVINCE_NAMES: [&str; 4] = ["Barcelona", "Girona", "Tarragona", "Lleida"];

/// Spanish ISO 3166-2 subdivisions (`ES-<code>`), with pycountry 20.7.3's names as the original
/// sent them. The provinces are as listed in spec §5.5; the autonomous communities and cities
/// resolve too, as in the original.
const SPANISH_SUBDIVISIONS: [(&str, &str); 69] = [
    // Provinces.
    ("A", "Alicante"),
    ("AB", "Albacete"),
    ("AL", "Almería"),
    ("AV", "Ávila"),
    ("B", "Barcelona"),
    ("BA", "Badajoz"),
    ("BI", "Bizkaia"),
    ("BU", "Burgos"),
    ("C", "A Coruña"),
    ("CA", "Cádiz"),
    ("CC", "Cáceres"),
    ("CO", "Córdoba"),
    ("CR", "Ciudad Real"),
    ("CS", "Castellón"),
    ("CU", "Cuenca"),
    ("GC", "Las Palmas"),
    ("GI", "Girona"),
    ("GR", "Granada"),
    ("GU", "Guadalajara"),
    ("H", "Huelva"),
    ("HU", "Huesca"),
    ("J", "Jaén"),
    ("L", "Lleida"),
    ("LE", "León"),
    ("LO", "La Rioja"),
    ("LU", "Lugo"),
    ("M", "Madrid"),
    ("MA", "Málaga"),
    ("MU", "Murcia"),
    ("NA", "Navarra / Nafarroa"),
    ("O", "Asturias"),
    ("OR", "Ourense"),
    ("P", "Palencia"),
    ("PM", "Balears"),
    ("PO", "Pontevedra"),
    ("S", "Cantabria"),
    ("SA", "Salamanca"),
    ("SE", "Sevilla"),
    ("SG", "Segovia"),
    ("SO", "Soria"),
    ("SS", "Gipuzkoa"),
    ("T", "Tarragona"),
    ("TE", "Teruel"),
    ("TF", "Santa Cruz de Tenerife"),
    ("TO", "Toledo"),
    ("V", "Valencia / València"),
    ("VA", "Valladolid"),
    ("VI", "Álava"),
    ("Z", "Zaragoza"),
    ("ZA", "Zamora"),
    // Autonomous communities and cities.
    ("AN", "Andalucía"),
    ("AR", "Aragón"),
    ("AS", "Asturias, Principado de"),
    ("CB", "Cantabria"),
    ("CE", "Ceuta"),
    ("CL", "Castilla y León"),
    ("CM", "Castilla-La Mancha"),
    ("CN", "Canarias"),
    ("CT", "Catalunya"),
    ("EX", "Extremadura"),
    ("GA", "Galicia"),
    ("IB", "Illes Balears"),
    ("MC", "Murcia, Región de"),
    ("MD", "Madrid, Comunidad de"),
    ("ML", "Melilla"),
    (
        "NC",
        "Navarra, Comunidad Foral de / Nafarroako Foru Komunitatea",
    ),
    ("PV", "País Vasco / Euskal Herria"),
    ("RI", "La Rioja"),
    ("VC", "Valenciana, Comunidad / Valenciana, Comunitat"),
];

/// The original's `State(code)` as a name (§5.5): empty passes through, the four Catalan names map
/// to themselves (exact case), any other input is looked up as `ES-<input>`, ignoring case.
fn province_name(state: &str) -> Result<String, EnvioError> {
    if state.is_empty() {
        return Ok(String::new());
    }
    if let Some(name) = CATALAN_PROVINCE_NAMES.iter().find(|n| **n == state) {
        return Ok((*name).to_owned());
    }
    SPANISH_SUBDIVISIONS
        .iter()
        .find(|(code, _)| code.eq_ignore_ascii_case(state))
        .map(|(_, name)| (*name).to_owned())
        .ok_or_else(|| EnvioError::UnknownProvince(state.to_owned()))
}

/// Pairs Koiki's answers with the vendors they answer: the i-th result answers the i-th envio,
/// which was built for the i-th group (the original paired it with the i-th line item's vendor,
/// §12 #1).
///
/// # Errors
/// [`PairingError::EnviosMismatch`] when there is not one envio per group,
/// [`PairingError::ResultsMismatch`] when there is not one result per envio; nothing is paired
/// then, since no answer can be trusted to belong to a vendor.
pub fn pair_results(
    groups: &[VendorGroup],
    envios: &[Envio],
    results: Vec<BookingResult>,
) -> Result<Vec<(VendorGroup, Envio, BookingResult)>, PairingError> {
    if groups.len() != envios.len() {
        return Err(PairingError::EnviosMismatch {
            groups: groups.len(),
            envios: envios.len(),
        });
    }
    if results.len() != envios.len() {
        return Err(PairingError::ResultsMismatch {
            requested: envios.len(),
            received: results.len(),
        });
    }
    Ok(groups
        .iter()
        .cloned()
        .zip(envios.iter().cloned())
        .zip(results)
        .map(|((group, envio), result)| (group, envio, result))
        .collect())
}

/// Koiki codes meaning the parcel is on its way.
const IN_PROCESS_CODES: [i64; 4] = [100, 102, 103, 114];
/// Koiki codes meaning something held the parcel up.
const ON_HOLD_CODES: [i64; 3] = [111, 112, 113];
/// Koiki's code for a delivered parcel.
const DELIVERED_CODE: i64 = 108;

/// The shipment status and message a tracking report gives (spec §5.4, §3.2).
///
/// An error report gives [`ShipmentStatus::ErrorFromTracking`] with the error's message. An event
/// with code 100, 102, 103 or 114 gives [`ShipmentStatus::InProcess`]; 111 to 113 and 900 to 906
/// [`ShipmentStatus::OnHold`]; 108 [`ShipmentStatus::Delivered`], each with the event's
/// description (`codEstado`). Any other code, or none, gives
/// [`ShipmentStatus::ErrorFromTracking`] with `"{codEstado}. Doesn't match any shipment status"`.
pub fn tracking_status(report: &TrackingReport) -> (ShipmentStatus, String) {
    match report {
        TrackingReport::Error { message, .. } => {
            (ShipmentStatus::ErrorFromTracking, message.clone())
        }
        TrackingReport::Event {
            code, description, ..
        } => {
            let status = match *code {
                Some(c) if IN_PROCESS_CODES.contains(&c) => Some(ShipmentStatus::InProcess),
                Some(c) if ON_HOLD_CODES.contains(&c) || (900..=906).contains(&c) => {
                    Some(ShipmentStatus::OnHold)
                }
                Some(DELIVERED_CODE) => Some(ShipmentStatus::Delivered),
                _ => None,
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

    fn booked(barcode: &str) -> BookingResult {
        BookingResult {
            code: "101".to_owned(),
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

    // --- build_envio ----------------------------------------------------------------------

    #[test]
    fn the_worked_example_envio_matches_field_by_field() {
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
        let envio = build_envio(&order, &plan.koiki[0], &vendor5).expect("envio");

        assert_eq!(envio.num_pedido, "xxx");
        assert_eq!(envio.bultos, 1);
        assert_eq!(envio.kilos, 0.0);
        assert_eq!(envio.tipo_servicio, 5);
        assert_eq!(envio.reembolso, 0.0);
        assert_eq!(envio.observaciones, "delivery testing");
        assert_eq!(envio.nombre_desti, "James");
        assert_eq!(envio.apellido_desti, "Bond");
        assert_eq!(envio.direccion_desti, "Address 1");
        assert_eq!(envio.direccion_adicional_desti, "address 2");
        assert_eq!(envio.numero_calle_desti, "");
        assert_eq!(envio.cod_postal_desti, "08025");
        assert_eq!(envio.poblacion_desti, "Barcelona");
        assert_eq!(envio.provincia_desti, "Barcelona");
        assert_eq!(envio.pais_desti, "ES");
        assert_eq!(envio.telefono_desti, "666554433");
        assert_eq!(envio.email_desti, "email@example.com");
        assert_eq!(envio.nombre_remi, "A granel");
        assert_eq!(envio.apellido_remi, "");
        assert_eq!(envio.numero_calle_remi, "");
        assert_eq!(envio.direccion_remi, "Sant Antoni Maria Claret, 175");
        assert_eq!(envio.cod_postal_remi, "08041");
        assert_eq!(envio.poblacion_remi, "Barcelona");
        assert_eq!(envio.provincia_remi, "");
        assert_eq!(envio.pais_remi, "ES");
        assert_eq!(envio.email_remi, "detergents@agranel.coop");
        assert_eq!(envio.telefono_remi, "93333333");

        assert_contains_subset(
            &envio,
            include_str!("../../tests/fixtures/koiki_test_create_delivery_setUp_expected.json"),
        );
    }

    #[test]
    fn the_second_vendor_of_the_worked_example_matches_its_expected_subset() {
        let order = order(include_str!(
            "../../tests/fixtures/koiki_test_create_delivery_setUp_order.json"
        ));
        let plan = plan(&order, &ShippingMethods::default()).expect("plan");
        let vendor6 = vendor(
            6,
            include_str!(
                "../../tests/fixtures/koiki_test_create_delivery_setUp_GET_wp_json_wcfmmp_v1_settings_id_6.json"
            ),
            include_str!(
                "../../tests/fixtures/koiki_test_create_delivery_setUp_GET_wp_json_wp_v2_users_6_context_edit.json"
            ),
        );
        let envio = build_envio(&order, &plan.koiki[1], &vendor6).expect("envio");
        assert_contains_subset(
            &envio,
            include_str!("../../tests/fixtures/koiki_test_create_delivery_setUp_expected_2.json"),
        );
    }

    /// The original's `assertDictContainsSubset` on the serialised envio.
    fn assert_contains_subset(envio: &Envio, expected: &str) {
        let actual = serde_json::to_value(envio).expect("serialises");
        let expected: Value = serde_json::from_str(expected).expect("fixture");
        for (key, value) in expected.as_object().expect("object") {
            assert_eq!(&actual[key], value, "field {key}");
        }
    }

    #[test]
    fn the_sender_city_is_cleaned_and_the_phone_kept_as_is() {
        let order = order_of(vec![], vec![]);
        let envio = build_envio(
            &order,
            &group(6, "Quèviure"),
            &sender("Sant Llorenç d'Hortons", "B", "ES"),
        )
        .expect("envio");
        assert_contains_subset(
            &envio,
            include_str!(
                "../../tests/fixtures/koiki_test_models_test_sender_with_town_name_filtering_expected.json"
            ),
        );
    }

    #[test]
    fn cities_lose_apostrophes_hyphens_and_cedillas() {
        assert_eq!(
            clean_city("Sant Llorenç d'Hortons"),
            "Sant Llorenc d Hortons"
        );
        assert_eq!(clean_city("Bell-lloc d'Urgell"), "Bell lloc d Urgell");
        assert_eq!(clean_city("ÇA"), "CA");

        let mut order = order_of(vec![], vec![]);
        order.shipping.city = "Bell-lloc d'Urgell".to_owned();
        let envio =
            build_envio(&order, &group(6, "Q"), &sender("Barcelona", "", "")).expect("envio");
        assert_eq!(envio.poblacion_desti, "Bell lloc d Urgell");
    }

    #[test]
    fn the_recipient_phone_loses_a_plus_and_two_digits_only() {
        assert_eq!(strip_country_prefix("+34666554433"), "666554433");
        assert_eq!(strip_country_prefix("666554433"), "666554433");
        assert_eq!(strip_country_prefix("+34 666554433"), " 666554433");
        assert_eq!(strip_country_prefix("+3"), "+3");
        assert_eq!(strip_country_prefix("+ 34666"), "+ 34666");
        assert_eq!(strip_country_prefix(""), "");
    }

    #[test]
    fn the_recipient_province_is_sent_raw() {
        let mut order = order_of(vec![], vec![]);
        order.shipping.state = "B".to_owned();
        let envio =
            build_envio(&order, &group(6, "Q"), &sender("Barcelona", "", "")).expect("envio");
        assert_eq!(envio.provincia_desti, "B");
    }

    #[test]
    fn province_codes_become_names_and_catalan_names_pass() {
        for (input, name) in [
            ("B", "Barcelona"),
            ("GI", "Girona"),
            ("T", "Tarragona"),
            ("L", "Lleida"),
            ("b", "Barcelona"),
            ("gi", "Girona"),
            ("Barcelona", "Barcelona"),
            ("Girona", "Girona"),
            ("Tarragona", "Tarragona"),
            ("Lleida", "Lleida"),
            ("M", "Madrid"),
            ("V", "Valencia / València"),
            ("CT", "Catalunya"),
            ("", ""),
        ] {
            assert_eq!(province_name(input).as_deref(), Ok(name), "{input}");
        }
    }

    #[test]
    fn an_unknown_province_is_an_error_not_a_crash() {
        for input in ["invalid", "DE-BY", "Madrid", "ES-B"] {
            assert_eq!(
                province_name(input),
                Err(EnvioError::UnknownProvince(input.to_owned()))
            );
        }
        let order = order_of(vec![], vec![]);
        assert_eq!(
            build_envio(&order, &group(6, "Q"), &sender("Barcelona", "DE-BY", "ES")),
            Err(EnvioError::UnknownProvince("DE-BY".to_owned()))
        );
    }

    #[test]
    fn the_sender_country_defaults_to_es() {
        let order = order_of(vec![], vec![]);
        let envio =
            build_envio(&order, &group(6, "Q"), &sender("Barcelona", "", "")).expect("envio");
        assert_eq!(envio.pais_remi, "ES");
        let envio =
            build_envio(&order, &group(6, "Q"), &sender("Barcelona", "", "FR")).expect("envio");
        assert_eq!(envio.pais_remi, "FR");
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
        let envios: Vec<Envio> = plan
            .koiki
            .iter()
            .map(|g| {
                let profile = sender("Barcelona", "B", "ES");
                build_envio(&order, g, &profile).expect("envio")
            })
            .collect();
        let results = vec![booked("barcode-A"), booked("barcode-B")];
        let paired = pair_results(&plan.koiki, &envios, results).expect("paired");

        assert_eq!(paired.len(), 2);
        assert_eq!(paired[0].0.vendor_id, 10);
        assert_eq!(paired[0].1.nombre_remi, "A");
        assert_eq!(paired[0].2.barcode, "barcode-A");
        assert_eq!(paired[1].0.vendor_id, 20);
        assert_eq!(paired[1].1.nombre_remi, "B");
        assert_eq!(paired[1].2.barcode, "barcode-B");
    }

    #[test]
    fn a_result_count_that_differs_from_the_request_is_an_error() {
        let groups = [group(1, "A"), group(2, "B")];
        let order = order_of(vec![], vec![]);
        let profile = sender("Barcelona", "", "");
        let envios: Vec<Envio> = groups
            .iter()
            .map(|g| build_envio(&order, g, &profile).expect("envio"))
            .collect();
        assert_eq!(
            pair_results(&groups, &envios, vec![booked("x")]),
            Err(PairingError::ResultsMismatch {
                requested: 2,
                received: 1
            })
        );
        assert_eq!(
            pair_results(&groups, &envios, vec![]),
            Err(PairingError::ResultsMismatch {
                requested: 2,
                received: 0
            })
        );
        assert_eq!(
            pair_results(&groups, &envios[..1], vec![booked("x")]),
            Err(PairingError::EnviosMismatch {
                groups: 2,
                envios: 1
            })
        );
    }

    // --- tracking_status ------------------------------------------------------------------

    /// Reads a Koiki tracking answer the way the adapter does: `result[0]` or `error`.
    fn report(body: &str) -> TrackingReport {
        let body: Value = serde_json::from_str(body).expect("fixture");
        if let Some(error) = body.get("error") {
            return TrackingReport::Error {
                code: error["code"].as_i64(),
                message: error["message"].as_str().unwrap_or_default().to_owned(),
            };
        }
        let event = &body["result"][0];
        TrackingReport::Event {
            code: event["code"].as_i64(),
            description: event["codEstado"].as_str().unwrap_or_default().to_owned(),
            date: event["date"].as_str().map(str::to_owned),
            notes: event["notas"].as_str().unwrap_or_default().to_owned(),
        }
    }

    fn event(code: Option<i64>, description: &str) -> TrackingReport {
        TrackingReport::Event {
            code,
            description: description.to_owned(),
            date: None,
            notes: String::new(),
        }
    }

    #[test]
    fn tracking_code_108_is_delivered_with_its_description() {
        let report = report(include_str!(
            "../../tests/fixtures/api_test_tasks_test_update_delivery_status_success_POST_kis_api_v1_service_track_see.json"
        ));
        assert_eq!(
            tracking_status(&report),
            (ShipmentStatus::Delivered, "Envío entregado".to_owned())
        );
    }

    #[test]
    fn an_unknown_tracking_code_is_a_tracking_error() {
        let report = report(include_str!(
            "../../tests/fixtures/api_test_tasks_test_update_delivery_status_unknown_code_POST_kis_api_v1_service_track_see.json"
        ));
        assert_eq!(
            tracking_status(&report),
            (
                ShipmentStatus::ErrorFromTracking,
                "Unknown state. Doesn't match any shipment status".to_owned()
            )
        );
        assert_eq!(
            tracking_status(&event(None, "No code")).0,
            ShipmentStatus::ErrorFromTracking
        );
    }

    #[test]
    fn a_tracking_error_is_a_tracking_error_with_its_message() {
        let report = report(include_str!(
            "../../tests/fixtures/api_test_tasks_test_update_delivery_status_response_error_POST_kis_api_v1_service_track_see.json"
        ));
        assert_eq!(
            tracking_status(&report),
            (
                ShipmentStatus::ErrorFromTracking,
                "CODE NOT FOUND".to_owned()
            )
        );
    }

    #[test]
    fn tracking_codes_map_to_in_process_and_on_hold() {
        for code in [100, 102, 103, 114] {
            assert_eq!(
                tracking_status(&event(Some(code), "En proces")),
                (ShipmentStatus::InProcess, "En proces".to_owned())
            );
        }
        for code in [111, 112, 113, 900, 901, 902, 903, 904, 905, 906] {
            assert_eq!(
                tracking_status(&event(Some(code), "Particularitat")),
                (ShipmentStatus::OnHold, "Particularitat".to_owned())
            );
        }
        for code in [101, 104, 110, 899, 907] {
            assert_eq!(
                tracking_status(&event(Some(code), "X")).0,
                ShipmentStatus::ErrorFromTracking,
                "{code}"
            );
        }
    }
}
