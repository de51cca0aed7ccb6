//! The Koiki and WordPress HTTP clients against `wiremock` servers fed with the upstream test
//! payloads (`tests/fixtures/`, copied from the original's test suite).

use adapters::config::{KoikiConfig, ShopConfig};
use adapters::koiki::{Envio, EnvioResult, KoikiClient, TrackingAnswer};
use adapters::wordpress::WordPressShop;
use domain::error::{ShippingError, ShopError, Transience, UnshippableParcel};
use domain::model::shipment::VendorProfile;
use domain::model::{Parcel, ParcelBooking, Party, TrackingReport, TrackingState};
use domain::ports::{ShippingProvider, Shop, ShopUser};
use secrecy::SecretString;
use serde_json::Value;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wiremock::matchers::{body_string, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "koiki-secret-token";
const TRACKING_TOKEN: &str = "tracking-secret-token";
const TIMEOUT: Duration = Duration::from_secs(5);

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).expect("fixture is JSON")
}

fn koiki_config(server: &MockServer) -> KoikiConfig {
    KoikiConfig {
        host: format!("{}/services/", server.uri()),
        auth_token: Some(SecretString::from(TOKEN)),
        tracking_host: server.uri(),
        tracking_auth_token: Some(SecretString::from(TRACKING_TOKEN)),
        tracking_url: String::new(),
    }
}

fn koiki(server: &MockServer) -> KoikiClient {
    KoikiClient::new(&koiki_config(server), TIMEOUT).expect("client")
}

/// The spec §5.1 worked example.
fn envio() -> Envio {
    Envio {
        num_pedido: "xxx".into(),
        bultos: 1,
        kilos: 0.0,
        tipo_servicio: 5,
        reembolso: 0.0,
        observaciones: "delivery testing".into(),
        nombre_desti: "James".into(),
        apellido_desti: "Bond".into(),
        direccion_desti: "Address 1".into(),
        direccion_adicional_desti: "address 2".into(),
        numero_calle_desti: String::new(),
        cod_postal_desti: "08025".into(),
        poblacion_desti: "Barcelona".into(),
        provincia_desti: "Barcelona".into(),
        pais_desti: "ES".into(),
        telefono_desti: "666554433".into(),
        email_desti: "email@example.com".into(),
        nombre_remi: "A granel".into(),
        apellido_remi: String::new(),
        numero_calle_remi: String::new(),
        direccion_remi: "Sant Antoni Maria Claret, 175".into(),
        cod_postal_remi: "08041".into(),
        poblacion_remi: "Barcelona".into(),
        provincia_remi: String::new(),
        pais_remi: "ES".into(),
        email_remi: "detergents@agranel.coop".into(),
        telefono_remi: "93333333".into(),
    }
}

fn one_envio() -> Vec<Envio> {
    vec![envio()]
}

async fn mock_booking(server: &MockServer, response: ResponseTemplate) {
    Mock::given(method("POST"))
        .and(path("/services/rekis/api/altaEnvios"))
        .respond_with(response)
        .expect(1)
        .mount(server)
        .await;
}

/// Koiki answering a booking with the original's successful answer.
async fn mock_booked(server: &MockServer) {
    mock_booking(
        server,
        ResponseTemplate::new(200).set_body_json(fixture(
            "api_test_shipment_test_create_shipment_successful_POST_rekis_api_altaEnvios.json",
        )),
    )
    .await;
}

async fn book_with(response: ResponseTemplate) -> Result<Vec<EnvioResult>, ShippingError> {
    let server = MockServer::start().await;
    mock_booking(&server, response).await;
    koiki(&server).book_envios(&one_envio()).await
}

/// Log lines written while the guard lives (on this thread).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    /// DEBUG lines and above.
    fn capture(&self) -> tracing::subscriber::DefaultGuard {
        self.capture_at(tracing::Level::DEBUG)
    }

    fn capture_at(&self, level: tracing::Level) -> tracing::subscriber::DefaultGuard {
        let logs = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(level)
            .with_ansi(false)
            .with_writer(move || logs.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("logs")).into_owned()
    }
}

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("logs").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn booking_sends_the_original_body_and_decodes_the_label() {
    let server = MockServer::start().await;
    mock_booked(&server).await;
    let client = koiki(&server);
    let logs = Logs::default();
    let results = {
        let _guard = logs.capture();
        client.book_envios(&one_envio()).await.expect("booked")
    };

    assert_eq!(results.len(), 1);
    let result = &results[0];
    assert!(result.is_booked());
    assert_eq!(result.code, "101");
    assert_eq!(result.message, "OK");
    assert_eq!(result.barcode, "yyy");
    assert_eq!(result.reference, "123");
    assert_eq!(result.label_pdf, [0x69, 0xb7, 0x1d]); // base64 "abcd"

    let requests = server.received_requests().await.expect("recorded");
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0]
            .headers
            .get("content-type")
            .map(|v| v.as_bytes()),
        Some(&b"application/json"[..])
    );
    // The raw text keeps the key order Koiki saw.
    let raw = String::from_utf8(requests[0].body.clone()).expect("utf-8");
    assert!(
        raw.starts_with(r#"{"formatoEtiqueta":"PDF","envios":[{"numPedido":"xxx","bultos":1,"kilos":0.0,"tipoServicio":5,"#),
        "{raw}"
    );
    assert!(
        raw.ends_with(&format!(r#"}}],"token":"{TOKEN}"}}"#)),
        "{raw}"
    );
    let body: Value = serde_json::from_str(&raw).expect("JSON body");
    insta::assert_json_snapshot!(body, @r#"
    {
      "envios": [
        {
          "apellidoDesti": "Bond",
          "apellidoRemi": "",
          "bultos": 1,
          "codPostalDesti": "08025",
          "codPostalRemi": "08041",
          "direccionAdicionalDesti": "address 2",
          "direccionDesti": "Address 1",
          "direccionRemi": "Sant Antoni Maria Claret, 175",
          "emailDesti": "email@example.com",
          "emailRemi": "detergents@agranel.coop",
          "kilos": 0.0,
          "nombreDesti": "James",
          "nombreRemi": "A granel",
          "numPedido": "xxx",
          "numeroCalleDesti": "",
          "numeroCalleRemi": "",
          "observaciones": "delivery testing",
          "paisDesti": "ES",
          "paisRemi": "ES",
          "poblacionDesti": "Barcelona",
          "poblacionRemi": "Barcelona",
          "provinciaDesti": "Barcelona",
          "provinciaRemi": "",
          "reembolso": 0.0,
          "telefonoDesti": "666554433",
          "telefonoRemi": "93333333",
          "tipoServicio": 5
        }
      ],
      "formatoEtiqueta": "PDF",
      "token": "koiki-secret-token"
    }
    "#);

    let logs = logs.text();
    assert!(
        logs.contains(&format!(
            "Koiki request to {}/services/rekis/api/altaEnvios. body={{\"formatoEtiqueta\":\"PDF\"",
            server.uri()
        )),
        "{logs}"
    );
    assert!(logs.contains("Koiki response. status=200"), "{logs}");
    assert!(logs.contains(r#""etiqueta":"abcd...""#), "{logs}");
    assert!(!logs.contains(TOKEN), "{logs}");
    let debug = format!("{client:?}");
    assert!(
        !debug.contains(TOKEN) && !debug.contains(TRACKING_TOKEN),
        "{debug}"
    );
}

/// At INFO, a booking's lines say what was booked (orders, barcodes), never the receiver's
/// name, address, phone or e-mail; at DEBUG its body is logged with them redacted.
#[tokio::test]
async fn the_receivers_personal_data_stays_out_of_the_logs() {
    for level in [tracing::Level::INFO, tracing::Level::DEBUG] {
        let server = MockServer::start().await;
        mock_booked(&server).await;
        let logs = Logs::default();
        let _guard = logs.capture_at(level);
        koiki(&server)
            .book_envios(&one_envio())
            .await
            .expect("booked");
        let logs = logs.text();
        assert!(logs.contains("Koiki request to"), "{logs}");
        assert!(logs.contains("Koiki response. status=200"), "{logs}");
        for personal in [
            "James",
            "666554433",
            "email@example.com",
            "Address 1",
            "address 2",
        ] {
            assert!(!logs.contains(personal), "{level}: {personal} in {logs}");
        }
        if level == tracing::Level::DEBUG {
            assert!(logs.contains(r#""nombreDesti":"[redacted]""#), "{logs}");
        }
    }
}

#[tokio::test]
async fn long_labels_are_cut_in_the_logs() {
    let label = "JVBERi0xLjQKJcfsj6IKNSAwIG9iago8PC9MZW5ndGggNiAwIFI+PgpzdHJlYW0K";
    let server = MockServer::start().await;
    mock_booking(
        &server,
        ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "respuesta": "101", "mensaje": "OK",
            "envios": [{"numPedido": "456_xxx", "codBarras": "JJD00026901003806220001",
                        "etiqueta": label, "respuesta": "101", "mensaje": "OK"}]
        })),
    )
    .await;
    let logs = Logs::default();
    let results = {
        let _guard = logs.capture();
        koiki(&server)
            .book_envios(&one_envio())
            .await
            .expect("booked")
    };
    assert!(results[0].label_pdf.starts_with(b"%PDF-1.4"));
    let logs = logs.text();
    assert!(logs.contains(r#""etiqueta":"JVBERi0xLj...""#), "{logs}");
    assert!(!logs.contains(label), "{logs}");
}

#[tokio::test]
async fn an_envio_koiki_refused_is_a_result_with_its_code() {
    let results = book_with(ResponseTemplate::new(200).set_body_json(fixture(
        "api_test_shipment_test_create_shipment_failed_POST_rekis_api_altaEnvios.json",
    )))
    .await
    .expect("answered");
    assert_eq!(results.len(), 1);
    assert!(!results[0].is_booked());
    assert_eq!(results[0].code, "102");
    assert_eq!(results[0].message, "Missing field X");
    assert_eq!(results[0].reference, "124");
    assert!(results[0].barcode.is_empty());
    assert!(results[0].label_pdf.is_empty());
}

#[tokio::test]
async fn a_numeric_101_is_not_a_booking() {
    let results = book_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
        "envios": [{"numPedido": "1", "respuesta": 101, "mensaje": "OK"}]
    })))
    .await
    .expect("answered");
    assert!(!results[0].is_booked(), "{:?}", results[0]);
}

#[tokio::test]
async fn an_answer_without_envios_is_a_rejection() {
    let err = book_with(ResponseTemplate::new(200).set_body_json(fixture(
        "koiki_test_client_test_create_delivery_succesful_code_failed_response_POST_rekis_api_altaEnvios.json",
    )))
    .await
    .unwrap_err();
    match &err {
        ShippingError::Rejected { reason } => assert_eq!(reason, "102 TOKEN NOT FOUND"),
        other => panic!("{other:?}"),
    }

    let err = book_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
        "respuesta": "102", "mensaje": "TOKEN NOT FOUND"
    })))
    .await
    .unwrap_err();
    assert!(
        matches!(&err, ShippingError::Rejected { reason } if reason == "102 TOKEN NOT FOUND"),
        "{err:?}"
    );

    let err = book_with(
        ResponseTemplate::new(200).set_body_json(serde_json::json!({"error": "Bad Request"})),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ShippingError::Rejected { .. }), "{err:?}");
}

#[tokio::test]
async fn an_answer_with_fewer_envios_than_sent_is_invalid() {
    let server = MockServer::start().await;
    mock_booking(
        &server,
        ResponseTemplate::new(200).set_body_json(fixture(
            "api_test_shipment_test_create_shipment_successful_POST_rekis_api_altaEnvios.json",
        )),
    )
    .await;
    let request = vec![envio(), envio()];
    let err = koiki(&server).book_envios(&request).await.unwrap_err();
    assert!(
        matches!(err, ShippingError::InvalidResponse { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_label_that_is_not_base64_is_invalid() {
    let err = book_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
        "envios": [{"numPedido": "1", "codBarras": "b", "etiqueta": "not base64!", "respuesta": "101"}]
    })))
    .await
    .unwrap_err();
    assert!(
        matches!(err, ShippingError::InvalidResponse { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_body_that_is_not_json_is_invalid() {
    let html = format!("<html>{}</html>", "x".repeat(500));
    let err = book_with(ResponseTemplate::new(200).set_body_string(html))
        .await
        .unwrap_err();
    match err {
        ShippingError::InvalidResponse { reason } => {
            assert!(reason.contains("status 200"), "{reason}");
            assert!(reason.contains("<html>xxx"), "{reason}");
            assert!(reason.len() < 400, "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_booking_answered_by_a_server_error_may_have_happened() {
    // A 500, 502 or 504 says nothing of whether Koiki booked: not to be sent again on its own.
    for status in [500, 502, 504] {
        let err = book_with(ResponseTemplate::new(status).set_body_string("oops"))
            .await
            .unwrap_err();
        match &err {
            ShippingError::Indeterminate { reason } => {
                assert!(reason.contains(&format!("status {status}")), "{reason}")
            }
            other => panic!("{status}: {other:?}"),
        }
        assert_eq!(err.transience(), Transience::Permanent);
        assert!(err.to_string().contains("may have booked"), "{err}");
    }
}

#[tokio::test]
async fn throttling_and_503_are_unavailable() {
    let err = book_with(ResponseTemplate::new(503).set_body_string("down for maintenance"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ShippingError::Unavailable {
                retry_after: None,
                ..
            }
        ),
        "{err:?}"
    );

    let err = book_with(ResponseTemplate::new(429).insert_header("Retry-After", "7"))
        .await
        .unwrap_err();
    match err {
        ShippingError::Unavailable { retry_after, .. } => {
            assert_eq!(retry_after, Some(Duration::from_secs(7)));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn other_client_errors_are_rejections() {
    let err = book_with(ResponseTemplate::new(400).set_body_json(fixture(
        "koiki_test_client_test_create_delivery_failed_response_POST_rekis_api_altaEnvios.json",
    )))
    .await
    .unwrap_err();
    match err {
        ShippingError::Rejected { reason } => assert!(reason.contains("Bad Request"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_booking_without_an_answer_in_time_may_have_happened() {
    let server = MockServer::start().await;
    mock_booking(
        &server,
        ResponseTemplate::new(200)
            .set_body_json(fixture(
                "api_test_shipment_test_create_shipment_successful_POST_rekis_api_altaEnvios.json",
            ))
            .set_delay(Duration::from_secs(2)),
    )
    .await;
    let client =
        KoikiClient::new(&koiki_config(&server), Duration::from_millis(200)).expect("client");
    let err = client.book_envios(&one_envio()).await.unwrap_err();
    match err {
        ShippingError::Indeterminate { reason } => {
            assert!(reason.contains("timed out"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_tracking_call_without_an_answer_in_time_is_unavailable() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(2)))
        .mount(&server)
        .await;
    let client =
        KoikiClient::new(&koiki_config(&server), Duration::from_millis(200)).expect("client");
    let err = client.track("BARCODE").await.unwrap_err();
    match err {
        ShippingError::Unavailable { reason, .. } => {
            assert!(reason.contains("timed out"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_refused_connection_is_unavailable() {
    // A port nothing listens on (wiremock pools its servers: a dropped one keeps answering).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let cfg = KoikiConfig {
        host: format!("http://127.0.0.1:{port}"),
        auth_token: Some(SecretString::from(TOKEN)),
        tracking_host: format!("http://127.0.0.1:{port}"),
        tracking_auth_token: None,
        tracking_url: String::new(),
    };
    let err = KoikiClient::new(&cfg, TIMEOUT)
        .expect("client")
        .book_envios(&one_envio())
        .await
        .unwrap_err();
    assert!(matches!(err, ShippingError::Unavailable { .. }), "{err:?}");
}

#[tokio::test]
async fn nothing_to_book_sends_nothing() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;
    let results = koiki(&server)
        .book_envios(&[])
        .await
        .expect("nothing to do");
    assert!(results.is_empty());
}

async fn track_with(response: ResponseTemplate) -> Result<TrackingAnswer, ShippingError> {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/kis/api/v1/service/track/see"))
        .and(wiremock::matchers::body_json(serde_json::json!({
            "code": "JJD00026901005395958001", "token": TRACKING_TOKEN
        })))
        .respond_with(response)
        .expect(1)
        .mount(&server)
        .await;
    koiki(&server).track_see("JJD00026901005395958001").await
}

#[tokio::test]
async fn tracking_reports_the_newest_event() {
    let report = track_with(ResponseTemplate::new(200).set_body_json(fixture(
        "api_test_tasks_test_update_delivery_status_success_POST_kis_api_v1_service_track_see.json",
    )))
    .await
    .expect("tracked");
    assert_eq!(
        report,
        TrackingAnswer::Event {
            code: Some(108),
            description: "Envío entregado".into(),
            date: Some("2021-07-26T09:49:37+0000".into()),
            notes: String::new(),
        }
    );
}

#[tokio::test]
async fn tracking_passes_unknown_codes_and_numeric_strings_on() {
    let report = track_with(ResponseTemplate::new(200).set_body_json(fixture(
        "api_test_tasks_test_update_delivery_status_unknown_code_POST_kis_api_v1_service_track_see.json",
    )))
    .await
    .expect("tracked");
    assert!(
        matches!(&report, TrackingAnswer::Event { code: Some(9999), description, .. } if description == "Unknown state"),
        "{report:?}"
    );

    let report = track_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
        "result": [{"codEstado": "Envio en Reparto", "code": "901", "notas": "porta 2"}]
    })))
    .await
    .expect("tracked");
    assert_eq!(
        report,
        TrackingAnswer::Event {
            code: Some(901),
            description: "Envio en Reparto".into(),
            date: None,
            notes: "porta 2".into(),
        }
    );
}

#[tokio::test]
async fn tracking_errors_are_reports() {
    let report = track_with(ResponseTemplate::new(200).set_body_json(fixture(
        "api_test_tasks_test_update_delivery_status_response_error_POST_kis_api_v1_service_track_see.json",
    )))
    .await
    .expect("answered");
    assert_eq!(
        report,
        TrackingAnswer::Error {
            code: Some(101),
            message: "CODE NOT FOUND".into(),
        }
    );
}

#[tokio::test]
async fn tracking_server_errors_are_unavailable() {
    let err = track_with(ResponseTemplate::new(500).set_body_json(fixture(
        "api_test_admin_test_update_delivery_status_wrong_api_response_POST_kis_api_v1_service_track_see.json",
    )))
    .await
    .unwrap_err();
    assert!(matches!(err, ShippingError::Unavailable { .. }), "{err:?}");

    let err = track_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({})))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ShippingError::InvalidResponse { .. }),
        "{err:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// WordPress

pub(crate) const WP_USER: &str = "wcfm-user";
pub(crate) const WP_PASSWORD: &str = "wcfm-password";
/// `Basic base64("wcfm-user:wcfm-password")`.
pub(crate) const BASIC: &str = "Basic d2NmbS11c2VyOndjZm0tcGFzc3dvcmQ=";

pub(crate) fn shop(server: &MockServer) -> WordPressShop {
    let cfg = ShopConfig {
        host: format!("{}/", server.uri()),
        user: WP_USER.into(),
        password: Some(SecretString::from(WP_PASSWORD)),
        partner_role: "partner".into(),
        write_back: false,
        complete_on_delivery: false,
    };
    WordPressShop::new(&cfg, TIMEOUT).expect("client")
}

async fn mock_get(server: &MockServer, at: &str, status: u16, body: Value) {
    Mock::given(method("GET"))
        .and(path(at))
        .and(header("authorization", BASIC))
        .respond_with(ResponseTemplate::new(status).set_body_json(body))
        .expect(1)
        .mount(server)
        .await;
}

async fn mock_user(server: &MockServer, id: i64, body: Value) {
    Mock::given(method("GET"))
        .and(path(format!("/wp-json/wp/v2/users/{id}")))
        .and(query_param("context", "edit"))
        .and(header("authorization", BASIC))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .expect(1)
        .mount(server)
        .await;
}

#[tokio::test]
async fn a_vendor_is_its_wcfm_settings_and_its_user_email() {
    let server = MockServer::start().await;
    mock_get(
        &server,
        "/wp-json/wcfmmp/v1/settings/id/5",
        200,
        fixture("koiki_test_create_delivery_setUp_GET_wp_json_wcfmmp_v1_settings_id_5.json"),
    )
    .await;
    mock_user(
        &server,
        5,
        fixture("koiki_test_create_delivery_setUp_GET_wp_json_wp_v2_users_5_context_edit.json"),
    )
    .await;
    let shop = shop(&server);
    let logs = Logs::default();
    let vendor = {
        let _guard = logs.capture();
        shop.vendor(5).await.expect("vendor")
    };
    assert_eq!(
        vendor,
        VendorProfile {
            id: 5,
            phone: "93333333".into(),
            street: "Sant Antoni Maria Claret, 175".into(),
            zip: "08041".into(),
            city: "Barcelona".into(),
            state: String::new(),
            country: "ES".into(),
            email: "detergents@agranel.coop".into(),
            store_name: String::new(),
        }
    );
    let logs = logs.text();
    assert!(
        logs.contains(&format!(
            "Wcfmpp request. url={}/wp-json/wcfmmp/v1/settings/id/5",
            server.uri()
        )),
        "{logs}"
    );
    assert!(!logs.contains(WP_PASSWORD), "{logs}");
    let debug = format!("{shop:?}");
    assert!(!debug.contains(WP_PASSWORD), "{debug}");
}

#[tokio::test]
async fn a_vendor_with_empty_settings_has_empty_fields() {
    let server = MockServer::start().await;
    mock_get(
        &server,
        "/wp-json/wcfmmp/v1/settings/id/6",
        200,
        fixture("api_test_shipment_setUp_GET_wp_json_wcfmmp_v1_settings_id_6.json"),
    )
    .await;
    mock_user(
        &server,
        6,
        fixture("api_test_shipment_setUp_GET_wp_json_wp_v2_users_6_context_edit.json"),
    )
    .await;
    let vendor = shop(&server).vendor(6).await.expect("vendor");
    assert_eq!(
        vendor,
        VendorProfile {
            id: 6,
            country: "ES".into(),
            email: "test@test.es".into(),
            ..VendorProfile::default()
        }
    );
}

#[tokio::test]
async fn a_vendor_with_php_empty_arrays_is_read_leniently() {
    let server = MockServer::start().await;
    mock_get(
        &server,
        "/wp-json/wcfmmp/v1/settings/id/8",
        200,
        serde_json::json!({"phone": 933333333, "address": []}),
    )
    .await;
    mock_user(
        &server,
        8,
        serde_json::json!({"id": 8, "email": "v@x.coop", "roles": []}),
    )
    .await;
    let vendor = shop(&server).vendor(8).await.expect("vendor");
    assert_eq!(vendor.phone, "933333333");
    assert_eq!(vendor.street, "");
    assert_eq!(vendor.email, "v@x.coop");
}

#[tokio::test]
async fn an_unknown_vendor_is_not_found() {
    let server = MockServer::start().await;
    mock_get(
        &server,
        "/wp-json/wcfmmp/v1/settings/id/99",
        404,
        serde_json::json!({"code": "rest_no_route"}),
    )
    .await;
    let err = shop(&server).vendor(99).await.unwrap_err();
    assert!(matches!(err, ShopError::NotFound { .. }), "{err:?}");
}

#[tokio::test]
async fn shop_errors_are_classified() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/wp-json/wc/v3/orders/1"))
        .respond_with(ResponseTemplate::new(503).insert_header("retry-after", "30"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/wp-json/wc/v3/orders/2"))
        .respond_with(ResponseTemplate::new(401).set_body_string("nope"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/wp-json/wc/v3/orders/3"))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>"))
        .mount(&server)
        .await;
    let shop = shop(&server);
    let err = shop.order(1).await.unwrap_err();
    assert!(
        matches!(err, ShopError::Unavailable { retry_after: Some(d), .. } if d == Duration::from_secs(30)),
        "{err:?}"
    );
    let err = shop.order(2).await.unwrap_err();
    assert!(matches!(err, ShopError::Rejected { .. }), "{err:?}");
    let err = shop.order(3).await.unwrap_err();
    assert!(matches!(err, ShopError::InvalidResponse { .. }), "{err:?}");
}

#[tokio::test]
async fn an_order_is_fetched_from_woocommerce() {
    let server = MockServer::start().await;
    mock_get(
        &server,
        "/wp-json/wc/v3/orders/2",
        200,
        fixture("api_test_admin_test_retry_delivery_GET_wp_json_wc_v3_orders_2.json"),
    )
    .await;
    let order = shop(&server).order(2).await.expect("order");
    assert_eq!(order.id, 2);
    assert_eq!(order.order_key, "xxx");
    assert_eq!(order.shipping.first_name, "John");
    assert_eq!(order.billing.email, "lennon@example.com");
    assert_eq!(order.line_items.len(), 2);
    assert_eq!(order.line_items[1].meta_data[0].display_value, "Tenda Poma");
    assert_eq!(
        order.shipping_lines[0].method_id,
        "wcfmmp_product_shipping_by_zone"
    );
}

#[tokio::test]
async fn a_user_is_found_by_email() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/wp-json/wp/v2/users"))
        .and(query_param("search", "email@email.com"))
        .and(header("authorization", BASIC))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(
            "wordpress_test_wpuser_test_fetch_wp_user_GET_wp_json_wp_v2_users_search.json",
        )))
        .expect(1)
        .mount(&server)
        .await;
    mock_user(
        &server,
        13,
        fixture(
            "wordpress_test_wpuser_test_fetch_wp_user_GET_wp_json_wp_v2_users_context_edit.json",
        ),
    )
    .await;
    let user = shop(&server)
        .user_by_email("email@email.com")
        .await
        .expect("looked up");
    assert_eq!(
        user,
        Some(ShopUser {
            id: 13,
            email: "email@email.com".into(),
            roles: vec!["testrole".into()],
        })
    );
}

#[tokio::test]
async fn no_user_matches_an_unknown_email() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/wp-json/wp/v2/users"))
        .and(query_param("search", "nobody@x.coop"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!([])))
        .expect(1)
        .mount(&server)
        .await;
    let user = shop(&server)
        .user_by_email("nobody@x.coop")
        .await
        .expect("looked up");
    assert_eq!(user, None);
}

#[tokio::test]
async fn a_search_hit_with_another_email_is_not_the_user() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/wp-json/wp/v2/users"))
        .and(query_param("search", "mail@email.com"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!([{"id": 13}])))
        .mount(&server)
        .await;
    mock_user(
        &server,
        13,
        fixture(
            "wordpress_test_wpuser_test_fetch_wp_user_GET_wp_json_wp_v2_users_context_edit.json",
        ),
    )
    .await;
    let user = shop(&server)
        .user_by_email("mail@email.com")
        .await
        .expect("looked up");
    assert_eq!(user, None);
}

#[tokio::test]
async fn roles_are_set_with_a_form() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/wp-json/wp/v2/users/13"))
        .and(header("authorization", BASIC))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .and(body_string("roles=test_partner_role%2Ccustomer"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(
            "wordpress_test_wpuser_test_update_wp_user_POST_wp_json_wp_v2_users.json",
        )))
        .expect(1)
        .mount(&server)
        .await;
    let user = shop(&server)
        .set_user_roles(13, &["test_partner_role".into(), "customer".into()])
        .await
        .expect("updated");
    assert_eq!(
        user,
        ShopUser {
            id: 13,
            email: "email@email.com".into(),
            roles: vec!["test_partner_role".into()],
        }
    );
}

#[tokio::test]
async fn a_host_with_a_password_is_never_printed_in_an_error_or_a_log() {
    let logs = Logs::default();
    let _capture = logs.capture();
    // Nothing listens on port 1: the calls fail to connect.
    let shop = WordPressShop::new(
        &ShopConfig {
            host: "http://user:Secr3t@127.0.0.1:1/".into(),
            user: WP_USER.into(),
            password: Some(SecretString::from(WP_PASSWORD)),
            partner_role: "partner".into(),
            write_back: false,
            complete_on_delivery: false,
        },
        TIMEOUT,
    )
    .expect("client");
    let err = shop.order(1).await.unwrap_err();
    assert!(matches!(err, ShopError::Unavailable { .. }), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("Secr3t"), "{err:?}");

    let koiki = KoikiClient::new(
        &KoikiConfig {
            host: "http://k:Secr3t@127.0.0.1:1/services/".into(),
            auth_token: Some(SecretString::from(TOKEN)),
            tracking_host: "http://k:Secr3t@127.0.0.1:1".into(),
            tracking_auth_token: Some(SecretString::from(TRACKING_TOKEN)),
            tracking_url: String::new(),
        },
        TIMEOUT,
    )
    .expect("client");
    let err = koiki.book_envios(&one_envio()).await.unwrap_err();
    assert!(!format!("{err} {err:?}").contains("Secr3t"), "{err:?}");
    let logs = logs.text();
    assert!(logs.contains("Shop request for"), "{logs}");
    assert!(logs.contains("Koiki request to"), "{logs}");
    assert!(!logs.contains("Secr3t"), "{logs}");
}

/// The spec §5.1 worked example as the domain's parcel: the details as the shop gave them, before
/// Koiki's cleaning (the recipient's phone with its prefix, the sender's country not given).
fn parcel() -> Parcel {
    let party = |name: &str, line_1: &str, line_2: &str, postcode: &str| Party {
        name: name.into(),
        address_line_1: line_1.into(),
        address_line_2: line_2.into(),
        postcode: postcode.into(),
        city: "Barcelona".into(),
        ..Party::default()
    };
    Parcel {
        order_id: 33,
        vendor_id: 5,
        order_reference: "xxx".into(),
        packages: 1,
        weight_kg: 0.0,
        notes: "delivery testing".into(),
        recipient: Party {
            surname: "Bond".into(),
            region: "Barcelona".into(),
            country: "ES".into(),
            phone: "+34666554433".into(),
            email: "email@example.com".into(),
            ..party("James", "Address 1", "address 2", "08025")
        },
        sender: Party {
            phone: "93333333".into(),
            email: "detergents@agranel.coop".into(),
            ..party("A granel", "Sant Antoni Maria Claret, 175", "", "08041")
        },
    }
}

#[tokio::test]
async fn the_port_books_a_parcel_with_the_very_body_of_its_envio() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/services/rekis/api/altaEnvios"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(
            "api_test_shipment_test_create_shipment_successful_POST_rekis_api_altaEnvios.json",
        )))
        .expect(2)
        .mount(&server)
        .await;
    let client = koiki(&server);
    let wire = client.book_envios(&one_envio()).await.expect("booked");
    let booked = client.book(&[parcel()]).await.expect("booked");

    let requests = server.received_requests().await.expect("recorded");
    assert_eq!(
        String::from_utf8_lossy(&requests[1].body),
        String::from_utf8_lossy(&requests[0].body),
        "the parcel is sent as its envio, byte for byte"
    );
    assert_eq!(
        booked,
        [ParcelBooking::Booked {
            barcode: "yyy".into(),
            reference: "123".into(),
            message: "OK".into(),
            label_pdf: wire[0].label_pdf.clone(),
        }]
    );
    assert_eq!(
        client.request_for(&parcel()).expect("Koiki takes it"),
        serde_json::to_string_pretty(&envio()).expect("JSON"),
        "the shipment keeps the envio sent"
    );
}

#[tokio::test]
async fn the_port_answers_in_the_domains_words() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/services/rekis/api/altaEnvios"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(
            "api_test_shipment_test_create_shipment_failed_POST_rekis_api_altaEnvios.json",
        )))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/kis/api/v1/service/track/see"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(
            "api_test_tasks_test_update_delivery_status_success_POST_kis_api_v1_service_track_see.json",
        )))
        .expect(1)
        .mount(&server)
        .await;
    let client = koiki(&server);
    assert_eq!(
        client.book(&[parcel()]).await.expect("answered"),
        [ParcelBooking::Refused {
            reason: "Missing field X".into()
        }]
    );
    assert_eq!(
        client
            .track("JJD00026901005395958001")
            .await
            .expect("tracked"),
        TrackingReport::Event {
            state: TrackingState::Delivered,
            description: "Envío entregado".into(),
            date: Some("2021-07-26T09:49:37+0000".into()),
            notes: String::new(),
        }
    );

    // A sender's region Koiki does not know: the parcel is not taken, and nothing is sent.
    let mut unknown = parcel();
    unknown.sender.region = "DE-BY".into();
    assert_eq!(
        client.request_for(&unknown),
        Err(UnshippableParcel {
            reason: "unknown province code \"DE-BY\"".into()
        })
    );
    let err = client.book(&[unknown]).await.unwrap_err();
    assert!(matches!(err, ShippingError::Rejected { .. }), "{err:?}");
}
