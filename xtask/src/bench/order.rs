//! The benchmark's payload: a realistic WooCommerce REST API v3 order (about 4.5 KB), as
//! WooCommerce posts it for `order.created` on a WCFM multi-vendor shop: three line items from
//! two vendors, per-vendor shipping lines, taxes, a coupon, and the `_links` block.

use serde_json::{Value, json};

/// The order with `id` (and its derived `number` and `order_key`) set to `id`.
#[cfg(test)]
pub(crate) fn order(id: u64) -> Value {
    let mut order = template();
    set_id(&mut order, id);
    order
}

/// Gives `order` (a [`template`]) the id `id`, and the `number`, `order_key` and self link
/// that go with it.
pub(crate) fn set_id(order: &mut Value, id: u64) {
    order["id"] = json!(id);
    order["number"] = json!(id.to_string());
    order["order_key"] = json!(format!("wc_order_{id:013x}"));
    order["_links"]["self"][0]["href"] =
        json!(format!("https://lazona.example/wp-json/wc/v3/orders/{id}"));
}

fn vendor_meta(meta_id: u64, vendor: &str, store: &str) -> Value {
    json!({
        "id": meta_id,
        "key": "_vendor_id",
        "value": vendor,
        "display_key": "Store",
        "display_value": store
    })
}

fn line_item(
    id: u64,
    name: &str,
    product_id: u64,
    quantity: u32,
    unit_price: f64,
    vendor: (&str, &str),
    sku: &str,
) -> Value {
    let subtotal = unit_price * f64::from(quantity);
    let tax = subtotal * 0.21;
    json!({
        "id": id,
        "name": name,
        "product_id": product_id,
        "variation_id": 0,
        "quantity": quantity,
        "tax_class": "",
        "subtotal": format!("{subtotal:.2}"),
        "subtotal_tax": format!("{tax:.2}"),
        "total": format!("{subtotal:.2}"),
        "total_tax": format!("{tax:.2}"),
        "taxes": [{"id": 1, "total": format!("{tax:.4}"), "subtotal": format!("{tax:.4}")}],
        "meta_data": [vendor_meta(id * 10, vendor.0, vendor.1)],
        "sku": sku,
        "price": unit_price,
        "image": {
            "id": product_id + 1000,
            "src": format!("https://lazona.example/wp-content/uploads/2024/03/{sku}.jpg")
        },
        "parent_name": null
    })
}

fn shipping_line(id: u64, vendor: &str, total: &str, tax: &str) -> Value {
    json!({
        "id": id,
        "method_title": "Enviament a domicili",
        "method_id": "wcfmmp_product_shipping_by_zone",
        "instance_id": "0",
        "total": total,
        "total_tax": tax,
        "taxes": [{"id": 1, "total": tax, "subtotal": ""}],
        "meta_data": [
            {"id": id * 10, "key": "vendor_id", "value": vendor, "display_key": "vendor_id",
             "display_value": vendor},
            {"id": id * 10 + 1, "key": "package_qty", "value": "1", "display_key": "package_qty",
             "display_value": "1"}
        ]
    })
}

fn address(with_contact: bool) -> Value {
    let mut a = json!({
        "first_name": "Núria",
        "last_name": "Puig i Ferrer",
        "company": "Cooperativa La Fageda",
        "address_1": "Carrer de Sant Joan de Malta, 123, 4t 2a",
        "address_2": "Escala B",
        "city": "Barcelona",
        "state": "B",
        "postcode": "08018",
        "country": "ES"
    });
    if with_contact {
        a["email"] = json!("nuria.puig@example.coop");
        a["phone"] = json!("+34 612 345 678");
    } else {
        a["phone"] = json!("");
    }
    a
}

/// The order, its id-dependent fields still blank (see [`set_id`]).
pub(crate) fn template() -> Value {
    let items = [
        line_item(
            311,
            "Oli d'oliva verge extra 1 l",
            4501,
            2,
            9.5,
            ("6", "Quèviure"),
            "QV-OLI-1L",
        ),
        line_item(
            312,
            "Mel de romaní 500 g",
            4502,
            1,
            7.25,
            ("6", "Quèviure"),
            "QV-MEL-500",
        ),
        line_item(
            313,
            "Samarreta de cotó orgànic",
            5120,
            1,
            18.0,
            ("11", "Teixits Solidaris"),
            "TS-SAM-M",
        ),
    ];
    let mut order = json!({
        "id": 0,
        "parent_id": 0,
        "status": "processing",
        "currency": "EUR",
        "version": "8.0.3",
        "prices_include_tax": false,
        "date_created": "2024-03-14T10:21:07",
        "date_created_gmt": "2024-03-14T09:21:07",
        "date_modified": "2024-03-14T10:21:09",
        "date_modified_gmt": "2024-03-14T09:21:09",
        "discount_total": "4.43",
        "discount_tax": "0.93",
        "shipping_total": "9.90",
        "shipping_tax": "2.08",
        "cart_tax": "8.83",
        "total": "58.58",
        "total_tax": "10.91",
        "customer_id": 27,
    });
    // Two halves: one `json!` this size exceeds the default macro recursion limit.
    let rest = json!({
        "order_key": "",
        "billing": address(true),
        "shipping": address(false),
        "payment_method": "redsys",
        "payment_method_title": "Targeta de crèdit o dèbit",
        "transaction_id": "402718",
        "customer_ip_address": "81.184.12.34",
        "customer_user_agent": "Mozilla/5.0 (X11; Linux x86_64; rv:123.0) Gecko/20100101 Firefox/123.0",
        "created_via": "checkout",
        "customer_note": "Si no hi som, deixeu-ho a la porteria, si us plau.",
        "date_completed": null,
        "date_completed_gmt": null,
        "date_paid": "2024-03-14T10:21:09",
        "date_paid_gmt": "2024-03-14T09:21:09",
        "cart_hash": "5c5f0d4b1b2fa7e3f0b6cc0e5f8d2a91",
        "number": "",
        "meta_data": [
            {"id": 9101, "key": "is_vat_exempt", "value": "no"},
            {"id": 9102, "key": "_wcfmmp_order_processed", "value": "yes"},
            {"id": 9103, "key": "_billing_nif", "value": "12345678Z"},
            {"id": 9104, "key": "_redsys_order_number", "value": "0000402718"}
        ],
        "line_items": items,
        "tax_lines": [{
            "id": 320,
            "rate_code": "ES-IVA-1",
            "rate_id": 1,
            "label": "IVA",
            "compound": false,
            "tax_total": "8.83",
            "shipping_tax_total": "2.08",
            "rate_percent": 21,
            "meta_data": []
        }],
        "shipping_lines": [
            shipping_line(318, "6", "4.95", "1.04"),
            shipping_line(319, "11", "4.95", "1.04")
        ],
        "fee_lines": [],
        "coupon_lines": [{
            "id": 321,
            "code": "benvinguda10",
            "discount": "4.43",
            "discount_tax": "0.93",
            "meta_data": []
        }],
        "refunds": [],
        "payment_url": "https://lazona.example/finalitza-la-compra/order-pay/0/",
        "currency_symbol": "€",
        "_links": {
            "self": [{"href": ""}],
            "collection": [{"href": "https://lazona.example/wp-json/wc/v3/orders"}],
            "customer": [{"href": "https://lazona.example/wp-json/wc/v3/customers/27"}]
        }
    });
    if let (Some(head), Value::Object(tail)) = (order.as_object_mut(), rest) {
        head.extend(tail);
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_like_a_woocommerce_order_of_about_4_5_kb() {
        let o = order(4242);
        let len = serde_json::to_vec(&o).expect("serializes").len();
        assert!((4200..=5000).contains(&len), "{len} bytes");
        assert_eq!(o["id"], 4242);
        assert_eq!(o["number"], "4242");
        assert_eq!(o["line_items"].as_array().map(Vec::len), Some(3));
        assert_eq!(o["line_items"][0]["meta_data"][0]["key"], "_vendor_id");
        assert_eq!(
            o["line_items"][0]["meta_data"][0]["display_value"],
            "Quèviure"
        );
        assert_eq!(
            o["shipping_lines"][0]["method_id"],
            "wcfmmp_product_shipping_by_zone"
        );
        assert_eq!(o["shipping_lines"][0]["meta_data"][0]["key"], "vendor_id");
    }
}
