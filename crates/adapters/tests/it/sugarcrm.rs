//! The SugarCRM client against a `wiremock` server fed with the original's test payloads
//! (`tests/fixtures/sugarcrm_*`): login, search, get_entry, the roles of a member and of someone
//! who is not, an expired session, an unreachable CRM, and no secret in logs.

use adapters::config::CrmConfig;
use adapters::sugarcrm::{Found, SugarCrmClient};
use domain::error::CrmError;
use domain::ports::Crm;
use domain::service::customers::is_member;
use secrecy::SecretString;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const USER: &str = "connector";
const PASSWORD: &str = "crm-secret-password";
/// `md5_hex(PASSWORD)`.
const PASSWORD_MD5: &str = "d0858c8feda8827d1301a4fc05059221";
const SESSION: &str = "sess-4b1d9e";
const TIMEOUT: Duration = Duration::from_secs(5);
const REST_PATH: &str = "/service/v4_1/rest.php";

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).expect("fixture is JSON")
}

fn login_ok() -> Value {
    fixture(
        "sugarcrm_test_api_test_success_login_request_http_mock_response_return_value_json_return_value.json",
    )
}

fn search_ok() -> Value {
    fixture(
        "sugarcrm_test_search_test_success_search_request_http_mock_response_return_value_json_return_value.json",
    )
}

fn get_field_ok() -> Value {
    fixture(
        "sugarcrm_test_get_field_test_success_get_field_request_http_mock_response_return_value_json_return_value.json",
    )
}

fn config(server: &MockServer) -> CrmConfig {
    CrmConfig {
        rest_url: format!("{}{REST_PATH}", server.uri()),
        user: USER.into(),
        password: Some(SecretString::from(PASSWORD)),
        membership_roles: vec!["^member^".into(), "^is_partner^".into()],
    }
}

fn crm(server: &MockServer) -> SugarCrmClient {
    SugarCrmClient::new(&config(server), TIMEOUT).expect("client")
}

/// The fields of a form body.
fn form(body: &[u8]) -> HashMap<String, String> {
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("ascii");
                    out.push(u8::from_str_radix(hex, 16).expect("hex"));
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out).expect("utf-8")
    }
    std::str::from_utf8(body)
        .expect("a text body")
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// The `rest_data` of a call, as JSON.
fn rest_data(request: &Request) -> Value {
    let fields = form(&request.body);
    serde_json::from_str(fields.get("rest_data").expect("rest_data")).expect("JSON rest_data")
}

/// Matches the calls of one API method, optionally only with one session.
struct Call {
    method: &'static str,
    session: Option<&'static str>,
}

fn call(method: &'static str) -> Call {
    Call {
        method,
        session: None,
    }
}

fn call_with(method: &'static str, session: &'static str) -> Call {
    Call {
        method,
        session: Some(session),
    }
}

impl wiremock::Match for Call {
    fn matches(&self, request: &Request) -> bool {
        let fields = form(&request.body);
        fields.get("method").map(String::as_str) == Some(self.method)
            && fields.get("input_type").map(String::as_str) == Some("json")
            && fields.get("response_type").map(String::as_str) == Some("json")
            && self
                .session
                .is_none_or(|s| rest_data(request).get(0).and_then(Value::as_str) == Some(s))
    }
}

async fn answer(server: &MockServer, call: Call, body: Value) {
    Mock::given(method("POST"))
        .and(path(REST_PATH))
        .and(call)
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .mount(server)
        .await;
}

async fn requests(server: &MockServer, api_method: &str) -> Vec<Request> {
    server
        .received_requests()
        .await
        .expect("recording")
        .into_iter()
        .filter(|r| form(&r.body).get("method").map(String::as_str) == Some(api_method))
        .collect()
}

fn entry(field: &str, value: &str) -> Value {
    json!({"entry_list": [{"id": "x", "module_name": "Contacts",
        "name_value_list": {field: {"name": field, "value": value}}}]})
}

fn invalid_session() -> Value {
    json!({"name": "Invalid Session ID", "number": 11, "description": "The session ID is invalid"})
}

fn invalid_login() -> Value {
    json!({"name": "Invalid Login", "number": 10,
           "description": "Login attempt failed please check the username and password"})
}

/// Log lines written while the guard lives (on this thread).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    fn capture(&self) -> tracing::subscriber::DefaultGuard {
        let logs = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
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
async fn login_sends_the_md5_password_once_and_every_call_starts_with_the_session() {
    let server = MockServer::start().await;
    answer(
        &server,
        call("login"),
        json!({"id": SESSION, "module_name": "Users"}),
    )
    .await;
    answer(&server, call_with("search_by_module", SESSION), search_ok()).await;
    answer(
        &server,
        call_with("get_entry", SESSION),
        entry("stic_relationship_type_c", "^member^,^volunteer^"),
    )
    .await;
    let crm = crm(&server);
    let logs = Logs::default();
    {
        let _guard = logs.capture();
        for _ in 0..2 {
            let roles = crm
                .membership_roles("partner@email.com")
                .await
                .expect("roles");
            assert_eq!(roles, ["^member^", "^volunteer^"]);
        }
    }

    let logins = requests(&server, "login").await;
    assert_eq!(logins.len(), 1, "one login for both lookups");
    assert_eq!(
        rest_data(&logins[0]),
        json!({"user_auth": {"user_name": USER, "password": PASSWORD_MD5}})
    );
    assert_eq!(
        logins[0].method.as_str(),
        "POST",
        "secrets stay out of URLs"
    );
    assert!(logins[0].url.query().is_none(), "{}", logins[0].url);
    let searches = requests(&server, "search_by_module").await;
    assert_eq!(searches.len(), 2);
    assert_eq!(
        rest_data(&searches[0]),
        json!([
            SESSION,
            "partner@email.com",
            ["Accounts", "Contacts"],
            0,
            1,
            "",
            ["id"],
            false,
            false
        ])
    );
    let entries = requests(&server, "get_entry").await;
    assert_eq!(entries.len(), 2, "only the Contact was found, twice");
    assert_eq!(
        rest_data(&entries[0]),
        json!([SESSION, "Contacts", "CONTACT_RECORD_ID", [], [], false])
    );

    let logs = logs.text();
    assert!(
        logs.contains(&format!(
            "SugarCRM request to {}{REST_PATH}, method=login",
            server.uri()
        )),
        "{logs}"
    );
    assert!(
        logs.contains("SugarCRM searching email in CRM: partner@email.com"),
        "{logs}"
    );
    assert!(
        logs.contains("Found account_id: None, contact_id: CONTACT_RECORD_ID"),
        "{logs}"
    );
    for secret in [PASSWORD, PASSWORD_MD5, SESSION] {
        assert!(!logs.contains(secret), "{secret} in the logs: {logs}");
    }
    let debug = format!("{crm:?}");
    assert!(
        !debug.contains(PASSWORD) && !debug.contains(PASSWORD_MD5),
        "{debug}"
    );
}

#[tokio::test]
async fn the_originals_numeric_session_id_is_accepted() {
    let server = MockServer::start().await;
    answer(&server, call("login"), login_ok()).await;
    answer(&server, call_with("search_by_module", "111"), search_ok()).await;
    let found = crm(&server)
        .search("partner@email.com")
        .await
        .expect("found");
    assert_eq!(
        found,
        Found {
            account_id: None,
            contact_id: Some("CONTACT_RECORD_ID".into()),
        }
    );
}

#[tokio::test]
async fn a_refused_login_is_an_authentication_error_with_the_crms_words() {
    let server = MockServer::start().await;
    answer(&server, call("login"), invalid_login()).await;
    let crm = crm(&server);
    let logs = Logs::default();
    let err = {
        let _guard = logs.capture();
        crm.membership_roles("partner@email.com").await.unwrap_err()
    };
    let CrmError::Authentication { reason } = &err else {
        panic!("{err:?}");
    };
    assert!(reason.contains("Invalid Login"), "{reason}");
    assert!(requests(&server, "search_by_module").await.is_empty());
    let logs = logs.text();
    assert!(!logs.contains(PASSWORD_MD5), "{logs}");
    // The next lookup tries to log in again (the credentials may have been fixed).
    let _ = crm.membership_roles("partner@email.com").await.unwrap_err();
    assert_eq!(requests(&server, "login").await.len(), 2);
}

#[tokio::test]
async fn a_login_without_a_configured_password_is_refused_without_a_call() {
    let server = MockServer::start().await;
    let cfg = CrmConfig {
        password: None,
        ..config(&server)
    };
    let crm = SugarCrmClient::new(&cfg, TIMEOUT).expect("client");
    let err = crm.login().await.unwrap_err();
    assert!(matches!(err, CrmError::Authentication { .. }), "{err:?}");
    assert!(
        server
            .received_requests()
            .await
            .expect("recording")
            .is_empty()
    );
}

#[tokio::test]
async fn a_login_answer_without_a_session_is_invalid() {
    let server = MockServer::start().await;
    answer(&server, call("login"), json!({"module_name": "Users"})).await;
    let err = crm(&server).login().await.unwrap_err();
    assert!(matches!(err, CrmError::InvalidResponse { .. }), "{err:?}");
}

#[tokio::test]
async fn a_search_answer_without_entry_list_is_invalid() {
    let server = MockServer::start().await;
    answer(&server, call("login"), login_ok()).await;
    answer(
        &server,
        call("search_by_module"),
        json!({"result_count": 0}),
    )
    .await;
    let err = crm(&server).search("x@y.z").await.unwrap_err();
    let CrmError::InvalidResponse { reason } = &err else {
        panic!("{err:?}");
    };
    assert!(reason.contains("entry_list"), "{reason}");
}

#[tokio::test]
async fn a_search_reads_modules_by_name_and_skips_empty_ones() {
    let server = MockServer::start().await;
    answer(&server, call("login"), login_ok()).await;
    answer(
        &server,
        call("search_by_module"),
        json!({"entry_list": [
            {"name": "Contacts", "records": [{"id": {"name": "id", "value": "C1"}}]},
            {"name": "Accounts", "records": [{"id": {"name": "id", "value": "A1"}}, {"id": {"name": "id", "value": "A2"}}]}
        ]}),
    )
    .await;
    let found = crm(&server).search("x@y.z").await.expect("found");
    assert_eq!(
        found,
        Found {
            account_id: Some("A1".into()),
            contact_id: Some("C1".into()),
        }
    );

    let server = MockServer::start().await;
    answer(&server, call("login"), login_ok()).await;
    answer(&server, call("search_by_module"), json!({"entry_list": []})).await;
    let crm = crm(&server);
    assert_eq!(crm.search("x@y.z").await.expect("found"), Found::default());
    assert!(
        crm.membership_roles("x@y.z")
            .await
            .expect("roles")
            .is_empty(),
        "unknown to the CRM: no roles"
    );
    assert!(requests(&server, "get_entry").await.is_empty());
}

#[tokio::test]
async fn get_field_reads_the_value_of_the_field() {
    let server = MockServer::start().await;
    answer(&server, call("login"), login_ok()).await;
    answer(&server, call("get_entry"), get_field_ok()).await;
    let value = crm(&server)
        .field("Contacts", "CONTACT_RECORD_ID", "myfield")
        .await
        .expect("read");
    assert_eq!(value.as_deref(), Some("FIELD_VALUE_ID"));
}

#[tokio::test]
async fn get_field_errors_are_invalid_answers_and_missing_records_are_none() {
    async fn field_with(body: Value) -> Result<Option<String>, CrmError> {
        let server = MockServer::start().await;
        answer(&server, call("login"), login_ok()).await;
        answer(&server, call("get_entry"), body).await;
        crm(&server).field("Contacts", "C1", "myfield").await
    }
    let err = field_with(json!({"result": []})).await.unwrap_err();
    assert!(matches!(err, CrmError::InvalidResponse { .. }), "{err:?}");
    let err = field_with(entry("otherfield", "v")).await.unwrap_err();
    let CrmError::InvalidResponse { reason } = &err else {
        panic!("{err:?}");
    };
    assert!(reason.contains("myfield"), "{reason}");
    let err = field_with(json!({"entry_list": [{"id": "C1"}]}))
        .await
        .unwrap_err();
    assert!(matches!(err, CrmError::InvalidResponse { .. }), "{err:?}");
    let err =
        field_with(json!({"name": "Module Does Not Exist", "number": 20, "description": "x"}))
            .await
            .unwrap_err();
    assert!(matches!(err, CrmError::InvalidResponse { .. }), "{err:?}");
    let err = field_with(
        json!({"name": "Access Denied", "number": 40, "description": "You do not have access"}),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, CrmError::Authentication { .. }), "{err:?}");

    assert_eq!(
        field_with(json!({"entry_list": []})).await.expect("none"),
        None
    );
    let deleted = json!({"entry_list": [{"id": "C1", "module_name": "Contacts", "name_value_list": {
        "warning": {"name": "warning", "value": "Access to this object is denied since it has been deleted or does not exist"},
        "deleted": {"name": "deleted", "value": "1"}}}]});
    assert_eq!(field_with(deleted).await.expect("none"), None);
    let php_empty = json!({"entry_list": [{"id": "C1", "name_value_list": []}]});
    assert_eq!(field_with(php_empty).await.expect("none"), None);
}

/// A CRM where `email`'s Account and Contact have these relationship roles.
async fn crm_with_roles(account: &str, contact: &str) -> (MockServer, SugarCrmClient) {
    let server = MockServer::start().await;
    answer(&server, call("login"), login_ok()).await;
    answer(
        &server,
        call("search_by_module"),
        json!({"entry_list": [
            {"name": "Accounts", "records": [{"id": {"name": "id", "value": "A1"}}]},
            {"name": "Contacts", "records": [{"id": {"name": "id", "value": "C1"}}]}
        ]}),
    )
    .await;
    for (id, roles) in [("A1", account), ("C1", contact)] {
        Mock::given(method("POST"))
            .and(path(REST_PATH))
            .and(call("get_entry"))
            .and(move |r: &Request| rest_data(r).get(2).and_then(Value::as_str) == Some(id))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(entry("stic_relationship_type_c", roles)),
            )
            .mount(&server)
            .await;
    }
    let crm = self::crm(&server);
    (server, crm)
}

#[tokio::test]
async fn a_partner_has_a_membership_role_in_the_account_or_the_contact() {
    let membership = config(&MockServer::start().await).membership_roles;
    let (_server, crm) = crm_with_roles("^member^", "").await;
    let roles = crm.membership_roles("p@x.coop").await.expect("roles");
    assert_eq!(roles, ["^member^"]);
    assert!(is_member(&roles, &membership));

    let (_server, crm) = crm_with_roles("^volunteer^", "^is_partner^,^volunteer^").await;
    let roles = crm.membership_roles("p@x.coop").await.expect("roles");
    assert_eq!(roles, ["^volunteer^", "^is_partner^"], "each role once");
    assert!(is_member(&roles, &membership));
}

#[tokio::test]
async fn someone_without_a_membership_role_is_not_a_partner() {
    let membership = config(&MockServer::start().await).membership_roles;
    let (_server, crm) = crm_with_roles("^volunteer^", "^donor^").await;
    let roles = crm.membership_roles("p@x.coop").await.expect("roles");
    assert_eq!(roles, ["^volunteer^", "^donor^"]);
    assert!(!is_member(&roles, &membership));

    let (_server, crm) = crm_with_roles("", "").await;
    assert!(
        crm.membership_roles("p@x.coop")
            .await
            .expect("roles")
            .is_empty()
    );
}

#[tokio::test]
async fn an_expired_session_is_renewed_once_and_the_call_repeated() {
    let server = MockServer::start().await;
    // The first login opens "old", which the CRM forgets; the second opens "new".
    Mock::given(method("POST"))
        .and(path(REST_PATH))
        .and(call("login"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "old"})))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    answer(&server, call("login"), json!({"id": "new"})).await;
    answer(&server, call_with("search_by_module", "old"), search_ok()).await;
    answer(&server, call_with("get_entry", "old"), invalid_session()).await;
    answer(
        &server,
        call_with("get_entry", "new"),
        entry("stic_relationship_type_c", "^member^"),
    )
    .await;
    answer(&server, call_with("search_by_module", "new"), search_ok()).await;

    let crm = crm(&server);
    let roles = crm
        .membership_roles("partner@email.com")
        .await
        .expect("roles");
    assert_eq!(roles, ["^member^"]);
    assert_eq!(requests(&server, "login").await.len(), 2, "one new login");
    let entries = requests(&server, "get_entry").await;
    assert_eq!(entries.len(), 2, "the call was repeated once");
    assert_eq!(rest_data(&entries[1]).get(0), Some(&json!("new")));

    // The new session is kept.
    crm.membership_roles("partner@email.com")
        .await
        .expect("roles");
    assert_eq!(requests(&server, "login").await.len(), 2);
}

#[tokio::test]
async fn a_session_rejected_right_after_login_is_an_authentication_error() {
    let server = MockServer::start().await;
    answer(&server, call("login"), login_ok()).await;
    answer(&server, call("search_by_module"), invalid_session()).await;
    let err = crm(&server).search("x@y.z").await.unwrap_err();
    assert!(matches!(err, CrmError::Authentication { .. }), "{err:?}");
    assert_eq!(
        requests(&server, "login").await.len(),
        2,
        "one retry, no loop"
    );
}

#[tokio::test]
async fn a_crm_that_is_down_is_unavailable() {
    // 5xx and 429, with the CRM's Retry-After.
    for (status, retry) in [(503, Some(30)), (500, None), (429, Some(5))] {
        let server = MockServer::start().await;
        let mut response = ResponseTemplate::new(status).set_body_string("down");
        if let Some(s) = retry {
            response = response.insert_header("retry-after", s.to_string().as_str());
        }
        Mock::given(method("POST"))
            .and(path(REST_PATH))
            .respond_with(response)
            .mount(&server)
            .await;
        let err = crm(&server).membership_roles("x@y.z").await.unwrap_err();
        assert!(
            matches!(&err, CrmError::Unavailable { retry_after, .. } if *retry_after == retry.map(Duration::from_secs)),
            "{status}: {err:?}"
        );
    }

    // Nobody listening (wiremock pools its servers: a dropped one keeps answering).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let cfg = CrmConfig {
        rest_url: format!("http://127.0.0.1:{port}{REST_PATH}"),
        ..config(&MockServer::start().await)
    };
    let err = SugarCrmClient::new(&cfg, TIMEOUT)
        .expect("client")
        .membership_roles("x@y.z")
        .await
        .unwrap_err();
    assert!(matches!(err, CrmError::Unavailable { .. }), "{err:?}");

    // Too slow.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(REST_PATH))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(login_ok())
                .set_delay(Duration::from_secs(3)),
        )
        .mount(&server)
        .await;
    let err = SugarCrmClient::new(&config(&server), Duration::from_millis(300))
        .expect("client")
        .login()
        .await
        .unwrap_err();
    let CrmError::Unavailable { reason, .. } = &err else {
        panic!("{err:?}");
    };
    assert!(reason.contains("timed out"), "{reason}");
}

#[tokio::test]
async fn other_answers_are_classified() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(REST_PATH))
        .respond_with(ResponseTemplate::new(401).set_body_string("basic auth"))
        .mount(&server)
        .await;
    let err = crm(&server).login().await.unwrap_err();
    assert!(matches!(err, CrmError::Authentication { .. }), "{err:?}");

    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(REST_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>Maintenance</html>"))
        .mount(&server)
        .await;
    let err = crm(&server).login().await.unwrap_err();
    assert!(matches!(err, CrmError::InvalidResponse { .. }), "{err:?}");
    assert!(
        matches!(
            err.transience(),
            domain::error::Transience::Transient { .. }
        ),
        "a confused CRM is retried"
    );
}
