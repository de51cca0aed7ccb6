//! The WordPress shop's WooCommerce listing and writes (orders modified after a time, webhooks,
//! order notes and updates) against wiremock: the exact requests sent and how the answers are
//! read.

use crate::http_clients::{BASIC, WP_PASSWORD, WP_USER, shop};
use chrono::{DateTime, TimeZone, Utc};
use domain::error::ShopError;
use domain::model::{OrderNote, OrderUpdate, ShopWebhook};
use domain::ports::Shop;
use domain::service::shop_sync::SHIPMENTS_META_KEY;
use serde_json::{Value, json};
use std::time::Duration;
use wiremock::matchers::{basic_auth, body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// An order as `GET wc/v3/orders` lists it (WooCommerce v3): two vendors, one Koiki shipping
/// line each.
fn wc_order(id: Value, status: &str, modified_gmt: &str) -> Value {
    json!({
        "id": id,
        "parent_id": 0,
        "status": status,
        "currency": "EUR",
        "version": "8.9.3",
        "prices_include_tax": true,
        "date_created": "2026-12-07T08:58:12",
        "date_created_gmt": "2026-12-07T07:58:12",
        "date_modified": modified_gmt,
        "date_modified_gmt": modified_gmt,
        "discount_total": "0.00",
        "shipping_total": "9.90",
        "total": "31.40",
        "customer_id": 12,
        "order_key": "wc_order_Xk2pQ",
        "billing": {
            "first_name": "John",
            "last_name": "Lennon",
            "company": "",
            "address_1": "Beatles Street 66",
            "address_2": "",
            "city": "Barcelona",
            "state": "B",
            "postcode": "08032",
            "country": "ES",
            "email": "lennon@example.com",
            "phone": "666666666"
        },
        "shipping": {
            "first_name": "John",
            "last_name": "Lennon",
            "company": "",
            "address_1": "Beatles Street 66",
            "address_2": "",
            "city": "Barcelona",
            "state": "B",
            "postcode": "08032",
            "country": "ES",
            "phone": ""
        },
        "payment_method": "stripe",
        "customer_note": "",
        "line_items": [
            {
                "id": 17,
                "name": "Suc Taronja 1l",
                "product_id": 301,
                "variation_id": 0,
                "quantity": 1,
                "subtotal": "3.50",
                "total": "3.50",
                "meta_data": [
                    {"id": 172, "key": "_vendor_id", "value": "6", "display_key": "Store", "display_value": "Quèviure"}
                ]
            },
            {
                "id": 18,
                "name": "Detergent 5l",
                "product_id": 302,
                "variation_id": 0,
                "quantity": 2,
                "subtotal": "18.00",
                "total": "18.00",
                "meta_data": [
                    {"id": 173, "key": "_vendor_id", "value": "7", "display_key": "Store", "display_value": "A granel"}
                ]
            }
        ],
        "shipping_lines": [
            {
                "id": 54,
                "method_title": "Enviament Koiki",
                "method_id": "wcfmmp_product_shipping_by_zone",
                "instance_id": "0",
                "total": "4.95",
                "meta_data": [
                    {"id": 190, "key": "vendor_id", "value": "6", "display_key": "Store", "display_value": "Quèviure"}
                ]
            },
            {
                "id": 55,
                "method_title": "Enviament Koiki",
                "method_id": "wcfmmp_product_shipping_by_zone",
                "instance_id": "0",
                "total": "4.95",
                "meta_data": [
                    {"id": 191, "key": "vendor_id", "value": "7", "display_key": "Store", "display_value": "A granel"}
                ]
            }
        ],
        "meta_data": [],
        "_links": {
            "self": [{"href": "https://lazona.example/wp-json/wc/v3/orders/1234"}],
            "collection": [{"href": "https://lazona.example/wp-json/wc/v3/orders"}]
        }
    })
}

/// A webhook configuration as `GET wc/v3/webhooks` lists it.
fn wc_webhook(id: i64, topic: &str, status: &str, delivery_url: &str) -> Value {
    let (resource, event) = topic.split_once('.').expect("resource.event");
    json!({
        "id": id,
        "name": format!("Connector {topic}"),
        "status": status,
        "topic": topic,
        "resource": resource,
        "event": event,
        "hooks": [format!("woocommerce_{resource}_{event}")],
        "delivery_url": delivery_url,
        "date_created": "2024-03-01T10:00:00",
        "date_created_gmt": "2024-03-01T09:00:00",
        "date_modified": "2026-12-01T10:00:00",
        "date_modified_gmt": "2026-12-01T09:00:00",
        "_links": {"self": [{"href": format!("https://lazona.example/wp-json/wc/v3/webhooks/{id}")}]}
    })
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("RFC 3339")
        .with_timezone(&Utc)
}

#[tokio::test]
async fn orders_are_listed_by_modification_with_every_parameter() {
    let server = MockServer::start().await;
    let first = wc_order(json!(1234), "processing", "2026-12-07T08:00:01");
    let second = wc_order(json!("1235"), "on-hold", "2026-12-07T09:30:00");
    Mock::given(method("GET"))
        .and(path("/wp-json/wc/v3/orders"))
        .and(query_param("modified_after", "2026-12-07T08:00:00"))
        .and(query_param("dates_are_gmt", "true"))
        .and(query_param("orderby", "modified"))
        .and(query_param("order", "asc"))
        .and(query_param("per_page", "50"))
        .and(query_param("page", "3"))
        .and(header("authorization", BASIC))
        .and(basic_auth(WP_USER, WP_PASSWORD))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([first, second])))
        .expect(1)
        .mount(&server)
        .await;
    // An instant given in another zone and with milliseconds: UTC, to the second.
    let after = DateTime::parse_from_rfc3339("2026-12-07T09:00:00.250+01:00")
        .expect("time")
        .with_timezone(&Utc);
    let page = shop(&server)
        .orders_modified_after(after, 3, 50)
        .await
        .expect("listed");

    assert_eq!(page.per_page, 50);
    let ids: Vec<i64> = page.orders.iter().map(|o| o.id).collect();
    assert_eq!(ids, [1234, 1235], "a string holding an integer is an id");
    assert_eq!(page.orders[0].status, "processing");
    assert_eq!(page.orders[1].status, "on-hold");
    assert_eq!(page.orders[0].modified, Some(at("2026-12-07T08:00:01Z")));
    assert_eq!(page.orders[1].modified, Some(at("2026-12-07T09:30:00Z")));
    assert_eq!(
        page.orders[0].body.as_ref(),
        serde_json::to_vec(&first).expect("JSON").as_slice(),
        "the body is the listed element, compact"
    );
    assert_eq!(
        page.orders[1].body.as_ref(),
        serde_json::to_vec(&second).expect("JSON").as_slice()
    );
    let body: Value = serde_json::from_slice(&page.orders[0].body).expect("JSON");
    assert_eq!(body["line_items"][0]["meta_data"][0]["key"], "_vendor_id");

    // Nothing but those six parameters.
    let requests = server.received_requests().await.expect("recorded");
    let mut params: Vec<(String, String)> = requests[0]
        .url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    params.sort();
    assert_eq!(
        params,
        [
            ("dates_are_gmt", "true"),
            ("modified_after", "2026-12-07T08:00:00"),
            ("order", "asc"),
            ("orderby", "modified"),
            ("page", "3"),
            ("per_page", "50"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
    );
}

#[tokio::test]
async fn an_empty_listing_is_an_empty_page_and_an_order_without_a_date_has_no_modification() {
    let server = MockServer::start().await;
    let mut undated = wc_order(json!(9), "pending", "");
    undated["date_modified_gmt"] = Value::Null;
    Mock::given(method("GET"))
        .and(path("/wp-json/wc/v3/orders"))
        .and(query_param("page", "1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([undated])))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/wp-json/wc/v3/orders"))
        .and(query_param("page", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .mount(&server)
        .await;
    let shop = shop(&server);
    let after = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .expect("t");
    let page = shop.orders_modified_after(after, 1, 100).await.expect("1");
    assert_eq!(page.orders.len(), 1);
    assert_eq!(page.orders[0].modified, None);
    let page = shop.orders_modified_after(after, 2, 100).await.expect("2");
    assert!(page.orders.is_empty());
    assert_eq!(page.per_page, 100);
}

#[tokio::test]
async fn a_listing_that_is_not_a_list_of_orders_with_ids_is_invalid() {
    let server = MockServer::start().await;
    let mut no_id = wc_order(json!(1), "processing", "2026-12-07T08:00:01");
    no_id["id"] = json!("12a");
    Mock::given(method("GET"))
        .and(path("/wp-json/wc/v3/orders"))
        .and(query_param("page", "1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([no_id])))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/wp-json/wc/v3/orders"))
        .and(query_param("page", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": 1})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/wp-json/wc/v3/orders"))
        .and(query_param("page", "3"))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>maintenance</html>"))
        .mount(&server)
        .await;
    let shop = shop(&server);
    let after = at("2026-12-07T08:00:00Z");
    for page in 1..=3 {
        let err = shop
            .orders_modified_after(after, page, 10)
            .await
            .expect_err("invalid");
        assert!(
            matches!(err, ShopError::InvalidResponse { .. }),
            "page {page}: {err:?}"
        );
    }
}

#[tokio::test]
async fn shop_write_errors_are_classified() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/wp-json/wc/v3/orders/1/notes"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "code": "woocommerce_rest_cannot_create",
            "message": "Sorry, you are not allowed to create resources.",
            "data": {"status": 401}
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/wp-json/wc/v3/orders/404/notes"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({
            "code": "woocommerce_rest_order_invalid_id",
            "message": "Invalid order ID.",
            "data": {"status": 404}
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/wp-json/wc/v3/orders"))
        .respond_with(
            ResponseTemplate::new(503)
                .insert_header("retry-after", "120")
                .set_body_string("Service Unavailable"),
        )
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/wp-json/wc/v3/webhooks/9"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "7"))
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/wp-json/wc/v3/orders/5"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "code": "rest_invalid_param",
            "message": "Invalid parameter(s): status",
            "data": {"status": 400}
        })))
        .mount(&server)
        .await;
    let shop = shop(&server);

    let err = shop.add_order_note(1, "x", false).await.unwrap_err();
    assert!(
        matches!(&err, ShopError::Rejected { reason } if reason.contains("401")),
        "{err:?}"
    );
    let err = shop.order_notes(404).await.unwrap_err();
    assert!(matches!(err, ShopError::NotFound { .. }), "{err:?}");
    let err = shop
        .orders_modified_after(at("2026-12-07T08:00:00Z"), 1, 100)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ShopError::Unavailable { retry_after: Some(d), .. } if d == Duration::from_secs(120)),
        "{err:?}"
    );
    let err = shop.set_webhook_status(9, "active").await.unwrap_err();
    assert!(
        matches!(err, ShopError::Unavailable { retry_after: Some(d), .. } if d == Duration::from_secs(7)),
        "{err:?}"
    );
    let update = OrderUpdate {
        status: Some("nonsense".into()),
        meta_data: Vec::new(),
    };
    let err = shop.update_order(5, &update).await.unwrap_err();
    assert!(matches!(err, ShopError::Rejected { .. }), "{err:?}");
    let err = shop.webhooks().await.unwrap_err();
    assert!(matches!(err, ShopError::NotFound { .. }), "{err:?}");
}

#[tokio::test]
async fn webhooks_are_listed_and_their_status_set() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/wp-json/wc/v3/webhooks"))
        .and(query_param("per_page", "100"))
        .and(basic_auth(WP_USER, WP_PASSWORD))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            wc_webhook(1, "order.created", "active", "https://connector.example/api/deliveries/"),
            wc_webhook(2, "order.updated", "disabled", "https://connector.example/api/deliveries/"),
            {"id": "3", "name": null, "status": "paused", "topic": "customer.created", "delivery_url": "https://connector.example/api/customers/"}
        ])))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/wp-json/wc/v3/webhooks/2"))
        .and(basic_auth(WP_USER, WP_PASSWORD))
        .and(header("content-type", "application/json"))
        .and(body_json(json!({"status": "active"})))
        .respond_with(ResponseTemplate::new(200).set_body_json(wc_webhook(
            2,
            "order.updated",
            "active",
            "https://connector.example/api/deliveries/",
        )))
        .expect(1)
        .mount(&server)
        .await;
    let shop = shop(&server);

    let hooks = shop.webhooks().await.expect("listed");
    assert_eq!(
        hooks,
        [
            ShopWebhook {
                id: 1,
                name: "Connector order.created".into(),
                topic: "order.created".into(),
                status: "active".into(),
                delivery_url: "https://connector.example/api/deliveries/".into(),
            },
            ShopWebhook {
                id: 2,
                name: "Connector order.updated".into(),
                topic: "order.updated".into(),
                status: "disabled".into(),
                delivery_url: "https://connector.example/api/deliveries/".into(),
            },
            ShopWebhook {
                id: 3,
                name: String::new(),
                topic: "customer.created".into(),
                status: "paused".into(),
                delivery_url: "https://connector.example/api/customers/".into(),
            },
        ]
    );
    let updated = shop.set_webhook_status(2, "active").await.expect("set");
    assert_eq!((updated.id, updated.status.as_str()), (2, "active"));
    assert!(updated.is_active());
}

#[tokio::test]
async fn order_notes_are_read_and_added() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/wp-json/wc/v3/orders/1234/notes"))
        .and(basic_auth(WP_USER, WP_PASSWORD))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            {
                "id": 281,
                "author": "WooCommerce",
                "date_created": "2026-12-07T09:10:00",
                "date_created_gmt": "2026-12-07T08:10:00",
                "note": "Order status changed from Pending payment to Processing.",
                "customer_note": false
            },
            {
                "id": "282",
                "author": "lazona",
                "date_created": "2026-12-07T09:12:00",
                "date_created_gmt": "2026-12-07T08:12:00",
                "note": "El teu paquet s'envia amb Koiki.",
                "customer_note": true
            }
        ])))
        .expect(1)
        .mount(&server)
        .await;
    let note = "El teu paquet de Quèviure s'envia amb Koiki. Codi de seguiment: 9900001.";
    Mock::given(method("POST"))
        .and(path("/wp-json/wc/v3/orders/1234/notes"))
        .and(basic_auth(WP_USER, WP_PASSWORD))
        .and(header("content-type", "application/json"))
        .and(body_json(json!({"note": note, "customer_note": true})))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "id": 283,
            "author": "wcfm-user",
            "date_created": "2026-12-07T09:20:00",
            "date_created_gmt": "2026-12-07T08:20:00",
            "note": note,
            "customer_note": true
        })))
        .expect(1)
        .mount(&server)
        .await;
    let shop = shop(&server);

    let notes = shop.order_notes(1234).await.expect("notes");
    assert_eq!(
        notes,
        [
            OrderNote {
                id: 281,
                note: "Order status changed from Pending payment to Processing.".into(),
                customer_note: false,
            },
            OrderNote {
                id: 282,
                note: "El teu paquet s'envia amb Koiki.".into(),
                customer_note: true,
            },
        ]
    );
    let added = shop.add_order_note(1234, note, true).await.expect("added");
    assert_eq!(
        added,
        OrderNote {
            id: 283,
            note: note.into(),
            customer_note: true,
        }
    );
}

#[tokio::test]
async fn an_order_update_sends_only_what_is_set() {
    let server = MockServer::start().await;
    let completed = wc_order(json!(1234), "completed", "2026-12-08T10:00:00");
    Mock::given(method("PUT"))
        .and(path("/wp-json/wc/v3/orders/1234"))
        .and(basic_auth(WP_USER, WP_PASSWORD))
        .and(header("content-type", "application/json"))
        .and(body_json(json!({"status": "completed"})))
        .respond_with(ResponseTemplate::new(200).set_body_json(&completed))
        .expect(1)
        .mount(&server)
        .await;
    let shipments = json!([{"vendor_id": 6, "barcode": "9900001", "status": "in_process"}]);
    Mock::given(method("PUT"))
        .and(path("/wp-json/wc/v3/orders/1235"))
        .and(basic_auth(WP_USER, WP_PASSWORD))
        .and(body_json(json!({
            "meta_data": [
                {"key": SHIPMENTS_META_KEY, "value": shipments},
                {"key": "_lazona_note", "value": "x"}
            ]
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(&completed))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/wp-json/wc/v3/orders/1236"))
        .and(body_json(json!({})))
        .respond_with(ResponseTemplate::new(200).set_body_json(&completed))
        .expect(1)
        .mount(&server)
        .await;
    let shop = shop(&server);

    shop.update_order(
        1234,
        &OrderUpdate {
            status: Some("completed".into()),
            meta_data: Vec::new(),
        },
    )
    .await
    .expect("status only");
    shop.update_order(
        1235,
        &OrderUpdate {
            status: None,
            meta_data: vec![
                (SHIPMENTS_META_KEY.into(), shipments.clone()),
                ("_lazona_note".into(), json!("x")),
            ],
        },
    )
    .await
    .expect("meta only");
    shop.update_order(1236, &OrderUpdate::default())
        .await
        .expect("nothing set");
}

#[tokio::test]
async fn an_update_answered_without_json_is_invalid() {
    let server = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(path("/wp-json/wc/v3/orders/1"))
        .respond_with(ResponseTemplate::new(200).set_body_string("OK"))
        .mount(&server)
        .await;
    let err = shop(&server)
        .update_order(
            1,
            &OrderUpdate {
                status: Some("completed".into()),
                meta_data: Vec::new(),
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ShopError::InvalidResponse { .. }), "{err:?}");
}

#[tokio::test]
async fn a_vendor_has_its_wcfm_store_name() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/wp-json/wcfmmp/v1/settings/id/6"))
        .and(basic_auth(WP_USER, WP_PASSWORD))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "store_name": "Quèviure",
            "store_slug": "queviure",
            "store_email": "botiga@queviure.coop",
            "phone": "933333333",
            "address": {
                "street_1": "Carrer de Sants, 1",
                "street_2": "",
                "city": "Barcelona",
                "zip": "08014",
                "country": "ES",
                "state": "B"
            }
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/wp-json/wp/v2/users/6"))
        .and(query_param("context", "edit"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": 6, "email": "v6@x.coop", "roles": ["wcfm_vendor"]})),
        )
        .mount(&server)
        .await;
    let vendor = shop(&server).vendor(6).await.expect("vendor");
    assert_eq!(vendor.store_name, "Quèviure");
    assert_eq!(vendor.city, "Barcelona");
    assert_eq!(vendor.email, "v6@x.coop");
}
