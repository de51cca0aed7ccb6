//! The Koiki adapter's own rules: the envio of a parcel field by field (spec §5.1, the
//! original's expected payloads), Koiki's cleaning, its codes, and the parsing of its answers.

use super::cleaning::{UnknownProvince, clean_city, province_name, strip_country_prefix};
use super::wire::{Envio, TrackingAnswer, code_of, int_of, truncate_labels};
use super::*;
use domain::model::shipment::{ShipmentStatus, VendorProfile};
use domain::model::{Order, TrackingReport};
use domain::service::shipping::{
    ShippingMethods, VendorGroup, build_parcel, plan, tracking_status,
};
use serde_json::{Value, json};

/// The envio of one vendor's part of an order, as the connector books it: the domain's parcel,
/// in Koiki's format.
fn build_envio(
    order: &Order,
    group: &VendorGroup,
    vendor: &VendorProfile,
) -> Result<Envio, UnknownProvince> {
    Envio::from_parcel(&build_parcel(order, group, vendor))
}

fn order(body: &str) -> Order {
    serde_json::from_str(body).expect("fixture order parses")
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

fn order_of(line_items: Vec<Value>, shipping_lines: Vec<Value>) -> Order {
    serde_json::from_value(json!({"id": 1, "order_key": "wc_order_x",
        "line_items": line_items, "shipping_lines": shipping_lines}))
    .expect("order parses")
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

#[test]
fn only_the_string_101_is_a_booking_code() {
    assert_eq!(code_of(Some(&Value::from("101"))), "101");
    assert_ne!(code_of(Some(&Value::from(101))), "101");
    assert_eq!(code_of(None), "");
}

#[test]
fn tracking_codes_may_be_numeric_strings() {
    assert_eq!(int_of(Some(&Value::from(108))), Some(108));
    assert_eq!(int_of(Some(&Value::from("108"))), Some(108));
    assert_eq!(int_of(Some(&Value::from("x"))), None);
}

#[test]
fn labels_are_cut_in_the_logged_answer() {
    let answer = serde_json::json!({"envios": [{"etiqueta": "0123456789abcdef"}]});
    assert_eq!(
        truncate_labels(&answer)["envios"][0]["etiqueta"],
        "0123456789..."
    );
}

#[test]
fn urls_get_one_slash() {
    assert_eq!(
        join("https://h/services/", BOOKING_PATH),
        "https://h/services/rekis/api/altaEnvios"
    );
}

// --- Envio::from_parcel -------------------------------------------------------------------

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
    let envio = build_envio(&order, &group(6, "Q"), &sender("Barcelona", "", "")).expect("envio");
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
    let envio = build_envio(&order, &group(6, "Q"), &sender("Barcelona", "", "")).expect("envio");
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
        assert_eq!(province_name(input), Err(UnknownProvince(input.to_owned())));
    }
    let order = order_of(vec![], vec![]);
    assert_eq!(
        build_envio(&order, &group(6, "Q"), &sender("Barcelona", "DE-BY", "ES")),
        Err(UnknownProvince("DE-BY".to_owned()))
    );
}

#[test]
fn the_sender_country_defaults_to_es() {
    let order = order_of(vec![], vec![]);
    let envio = build_envio(&order, &group(6, "Q"), &sender("Barcelona", "", "")).expect("envio");
    assert_eq!(envio.pais_remi, "ES");
    let envio = build_envio(&order, &group(6, "Q"), &sender("Barcelona", "", "FR")).expect("envio");
    assert_eq!(envio.pais_remi, "FR");
}

// --- tracking_status ------------------------------------------------------------------

/// Reads a Koiki tracking answer the way the adapter does: `result[0]` or `error`.
fn report(body: &str) -> TrackingReport {
    let body: Value = serde_json::from_str(body).expect("fixture");
    if let Some(error) = body.get("error") {
        return TrackingAnswer::Error {
            code: error["code"].as_i64(),
            message: error["message"].as_str().unwrap_or_default().to_owned(),
        }
        .into();
    }
    let event = &body["result"][0];
    TrackingAnswer::Event {
        code: event["code"].as_i64(),
        description: event["codEstado"].as_str().unwrap_or_default().to_owned(),
        date: event["date"].as_str().map(str::to_owned),
        notes: event["notas"].as_str().unwrap_or_default().to_owned(),
    }
    .into()
}

fn event(code: Option<i64>, description: &str) -> TrackingReport {
    TrackingAnswer::Event {
        code,
        description: description.to_owned(),
        date: None,
        notes: String::new(),
    }
    .into()
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
