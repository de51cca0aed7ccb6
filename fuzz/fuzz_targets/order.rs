//! The order parser processing runs (`domain::model::payload::order`, the lenient `Order`) on any
//! bytes, and what processing does next with a parsed order: `shipping::plan` (with the default
//! shipping methods and with none) and `shipping::build_parcel` for every vendor the carrier
//! ships for.
//!
//! Never panics. A plan puts every line item in exactly one vendor group, in order, each vendor
//! in one list according to its method, the store name from the vendor's first line item; an
//! error names a line that is at fault; the methods decide the lists, never whether the order can
//! be split. Every parcel is sent by its group's store and serialises (Koiki's envio of a parcel
//! is `adapters::koiki`'s, tested there).

#![no_main]

use domain::model::shipment::VendorProfile;
use domain::model::{LineItem, Order, ShippingLine};
use domain::service::shipping::{
    PlanError, ShipmentPlan, ShippingMethods, VendorGroup, build_parcel, plan,
};
use lazona_fuzz::processing_order;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(order) = processing_order(data) else {
        return;
    };
    let methods = ShippingMethods::default();
    let none = ShippingMethods {
        koiki: Vec::new(),
        local_pickup: Vec::new(),
    };
    match (plan(&order, &methods), plan(&order, &none)) {
        (Ok(planned), Ok(unplanned)) => {
            check_plan(&order, &methods, &planned);
            check_plan(&order, &none, &unplanned);
            assert!(
                unplanned.koiki.is_empty() && unplanned.local_pickup.is_empty(),
                "a vendor booked without a method"
            );
            let mut vendors = vendor_ids(&planned);
            vendors.sort_unstable();
            let mut all = vendor_ids(&unplanned);
            all.sort_unstable();
            assert_eq!(vendors, all, "the methods changed the vendors");

            let vendor = vendor();
            for group in &planned.koiki {
                let parcel = build_parcel(&order, group, &vendor);
                assert_eq!(parcel.sender.name, group.store_name);
                assert_eq!(parcel.vendor_id, group.vendor_id);
                serde_json::to_vec(&parcel).expect("a parcel serialises");
            }
        }
        (Err(e), Err(same)) => {
            assert_eq!(e, same, "the methods changed the error");
            check_error(&order, &e);
        }
        (planned, unplanned) => {
            panic!("the methods decided whether the order splits: {planned:?} / {unplanned:?}")
        }
    }
});

/// A vendor as the shop describes it, with a known province.
fn vendor() -> VendorProfile {
    VendorProfile {
        id: 6,
        phone: "+34 666 55 44 33".to_owned(),
        street: "Carrer de la Pau, 1".to_owned(),
        zip: "08001".to_owned(),
        city: "L'Hospitalet-de-Llobregat".to_owned(),
        state: "B".to_owned(),
        country: String::new(),
        email: "vendor@example.coop".to_owned(),
        store_name: String::new(),
    }
}

fn vendor_ids(plan: &ShipmentPlan) -> Vec<i64> {
    groups(plan).map(|(_, g)| g.vendor_id).collect()
}

fn groups(plan: &ShipmentPlan) -> impl Iterator<Item = (&'static str, &VendorGroup)> {
    let koiki = plan.koiki.iter().map(|g| ("koiki", g));
    let pickup = plan.local_pickup.iter().map(|g| ("local_pickup", g));
    let ignored = plan.ignored.iter().map(|g| ("ignored", g));
    koiki.chain(pickup).chain(ignored)
}

fn check_plan(order: &Order, methods: &ShippingMethods, plan: &ShipmentPlan) {
    let mut seen = Vec::new();
    let mut items = 0;
    for (list, group) in groups(plan) {
        assert!(
            !seen.contains(&group.vendor_id),
            "vendor {} in two groups",
            group.vendor_id
        );
        seen.push(group.vendor_id);
        assert!(!group.line_items.is_empty(), "a group without line items");
        assert!(
            is_subsequence(&group.line_items, &order.line_items),
            "a group's line items are not the order's, in order"
        );
        items += group.line_items.len();
        let store = group.line_items[0]
            .meta_data
            .iter()
            .find(|m| m.key == "_vendor_id")
            .map(|m| m.display_value.as_str());
        assert_eq!(Some(group.store_name.as_str()), store, "the store name");
        let koiki = methods.koiki.contains(&group.method_id);
        let pickup = methods.local_pickup.contains(&group.method_id);
        let expected = if koiki {
            "koiki"
        } else if pickup {
            "local_pickup"
        } else {
            "ignored"
        };
        assert_eq!(list, expected, "method {:?}", group.method_id);
    }
    assert_eq!(items, order.line_items.len(), "line items lost or doubled");

    // Each list follows the vendors' first appearance in the line items.
    for list in [&plan.koiki, &plan.local_pickup, &plan.ignored] {
        let firsts: Vec<usize> = list
            .iter()
            .map(|g| {
                order
                    .line_items
                    .iter()
                    .position(|item| *item == g.line_items[0])
                    .expect("a line item of the order")
            })
            .collect();
        assert!(firsts.is_sorted(), "groups out of order: {firsts:?}");
    }
}

fn is_subsequence(part: &[LineItem], whole: &[LineItem]) -> bool {
    let mut rest = whole.iter();
    part.iter().all(|item| rest.any(|w| w == item))
}

/// A plan error names a line that is at fault.
fn check_error(order: &Order, error: &PlanError) {
    let vendor_meta = |item: &LineItem| {
        item.meta_data
            .iter()
            .find(|m| m.key == "_vendor_id")
            .map(|m| m.value.to_string())
    };
    match error {
        PlanError::MissingVendor { line_item_id } => assert!(
            order
                .line_items
                .iter()
                .any(|i| i.id == *line_item_id && vendor_meta(i).is_none()),
            "{error}"
        ),
        PlanError::InvalidLineItemVendor {
            line_item_id,
            value,
        } => assert!(
            order
                .line_items
                .iter()
                .any(|i| i.id == *line_item_id && vendor_meta(i).as_ref() == Some(value)),
            "{error}"
        ),
        PlanError::InvalidShippingLineVendor {
            shipping_line_id,
            value,
        } => {
            let vendor_meta = |line: &ShippingLine| {
                line.meta_data
                    .iter()
                    .find(|m| m.key == "vendor_id")
                    .map(|m| m.value.to_string())
            };
            assert!(
                order
                    .shipping_lines
                    .iter()
                    .any(|l| l.id == *shipping_line_id && vendor_meta(l).as_ref() == Some(value)),
                "{error}"
            );
        }
    }
}
